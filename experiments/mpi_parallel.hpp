// Data parallelism over Open MPI (reference/data_parallel.hpp's contract).
//
// `mpirun -np N dslab train ...` starts N copies of dslab; each finds itself
// launched by mpirun (launched_by_mpirun), opens an MpiSession, and gives the
// trainer an MpiDataParallel. Every rank holds the whole model and the same
// batch; rank r runs its block of the step's micro-batches. The gradient sum
// keeps the micro-batch order with two collectives:
//   MPI_Alltoallv  each rank sends slice j of each of its gradients to rank j,
//                  which then holds slice j of every micro-batch, in m order,
//                  and adds them up left to right;
//   MPI_Allgatherv the summed slices go to every rank.
// So each rank adds n/N numbers per micro-batch and the result does not
// depend on N (a reduce-scatter and all-gather, with the order fixed by us
// rather than by MPI's reduction algorithms, which do not promise one).
//
// Without mpirun (no OMPI_COMM_WORLD_SIZE / PMI_SIZE in the environment) MPI
// is never initialised: a plain `dslab train` runs as it always has.
#pragma once

#include <string>
#include <vector>

#include "reference/data_parallel.hpp"

namespace dslab {

// True when this process was started by mpirun (or another MPI launcher) with
// more than zero ranks; false for a plain run.
bool launched_by_mpirun();
// Whether this dslab was built with MPI (DSLAB_MPI).
bool built_with_mpi();

// MPI_Init_thread (funneled: only the main thread calls MPI; OpenMP threads do
// not) for the lifetime of the object, then MPI_Finalize. One per process.
class MpiSession {
 public:
  MpiSession();
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Ends every rank of the job at once with `status` (MPI_Abort), after this
  // rank has said why; for failures after the ranks have started to work
  // together, when the others may be waiting in a collective.
  [[noreturn]] void abort(int status) const;
  // Whether `ok` holds on every rank; the ranks' first failure message (by
  // rank) is returned in `why` with the rank that had it.
  bool all_ok(bool ok, const std::string& message, int& failed_rank, std::string& why) const;

 private:
  int rank_ = 0, size_ = 1;
};

class MpiDataParallel : public DataParallel {
 public:
  explicit MpiDataParallel(const MpiSession& session) : rank_(session.rank()), size_(session.size()) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void sum_in_order(const std::vector<const float*>& local, size_t n, float* out) override;
  std::vector<double> all_gather(const std::vector<double>& local) override;
  bool any(bool flag) override;

 private:
  int rank_, size_;
  std::vector<float> send_, recv_;  // kept from step to step
};

}  // namespace dslab
