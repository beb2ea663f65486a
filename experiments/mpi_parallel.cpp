#include "experiments/mpi_parallel.hpp"

#include <climits>
#include <cstdlib>
#include <iostream>
#include <stdexcept>

#if DSLAB_HAS_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only (the C++ bindings are deprecated)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace dslab {

bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

#if DSLAB_HAS_MPI

namespace {

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(std::string(what) + " failed (MPI error " + std::to_string(rc) + ")");
}

int as_count(size_t n, const char* what) {
  if (n > size_t(INT_MAX))
    throw std::runtime_error(std::string(what) + ": " + std::to_string(n) + " numbers exceed MPI's int count");
  return int(n);
}

}  // namespace

bool built_with_mpi() { return true; }

MpiSession::MpiSession() {
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiSession::~MpiSession() { MPI_Finalize(); }

void MpiSession::abort(int status) const {
  std::cerr.flush();
  MPI_Abort(MPI_COMM_WORLD, status);
  std::_Exit(status);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

bool MpiSession::all_ok(bool ok, const std::string& message, int& failed_rank, std::string& why) const {
  std::vector<int> oks(size_t(size_), 0);
  int mine = ok ? 1 : 0;
  check(MPI_Allgather(&mine, 1, MPI_INT, oks.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
  failed_rank = -1;
  for (int r = 0; r < size_ && failed_rank < 0; ++r)
    if (!oks[size_t(r)]) failed_rank = r;
  if (failed_rank < 0) return true;
  int length = rank_ == failed_rank ? as_count(message.size(), "message") : 0;
  check(MPI_Bcast(&length, 1, MPI_INT, failed_rank, MPI_COMM_WORLD), "MPI_Bcast");
  why = rank_ == failed_rank ? message : std::string(size_t(length), ' ');
  check(MPI_Bcast(why.data(), length, MPI_CHAR, failed_rank, MPI_COMM_WORLD), "MPI_Bcast");
  return false;
}

void MpiDataParallel::sum_in_order(const std::vector<const float*>& local, size_t n, float* out) {
  const size_t P = size_t(size_), L = local.size(), me = size_t(rank_);
  const auto lo = [&](size_t j) { return n * j / P; };
  const size_t mine = lo(me + 1) - lo(me);
  // Slice j of each local gradient, for rank j: [j][l][k].
  send_.resize(L * n);
  std::vector<int> send_counts(P), send_displs(P), recv_counts(P), recv_displs(P);
  size_t at = 0;
  for (size_t j = 0; j < P; ++j) {
    const size_t len = lo(j + 1) - lo(j);
    send_counts[j] = as_count(L * len, "sum_in_order");
    send_displs[j] = as_count(at, "sum_in_order");
    for (size_t l = 0; l < L; ++l, at += len) std::copy(local[l] + lo(j), local[l] + lo(j + 1), send_.data() + at);
    recv_counts[j] = as_count(L * mine, "sum_in_order");
    recv_displs[j] = as_count(j * L * mine, "sum_in_order");
  }
  // From rank i, slice `me` of its micro-batches i*L .. i*L+L-1: [m][k] in micro-batch order.
  recv_.resize(P * L * mine);
  check(MPI_Alltoallv(send_.data(), send_counts.data(), send_displs.data(), MPI_FLOAT, recv_.data(),
                      recv_counts.data(), recv_displs.data(), MPI_FLOAT, MPI_COMM_WORLD),
        "MPI_Alltoallv");
  float* sum = out + lo(me);
  std::copy(recv_.begin(), recv_.begin() + long(mine), sum);
  for (size_t m = 1; m < P * L; ++m)
    for (size_t k = 0; k < mine; ++k) sum[k] += recv_[m * mine + k];
  std::vector<int> counts(P), displs(P);
  for (size_t j = 0; j < P; ++j) {
    counts[j] = as_count(lo(j + 1) - lo(j), "sum_in_order");
    displs[j] = as_count(lo(j), "sum_in_order");
  }
  check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out, counts.data(), displs.data(), MPI_FLOAT,
                       MPI_COMM_WORLD),
        "MPI_Allgatherv");
}

std::vector<double> MpiDataParallel::all_gather(const std::vector<double>& local) {
  const int n = as_count(local.size(), "all_gather");
  std::vector<int> lengths(static_cast<size_t>(size_));
  check(MPI_Allgather(&n, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
  for (int len : lengths)
    if (len != n) throw std::logic_error("all_gather: the ranks hold statistics of different lengths");
  std::vector<double> all(local.size() * size_t(size_));
  check(MPI_Allgather(local.data(), n, MPI_DOUBLE, all.data(), n, MPI_DOUBLE, MPI_COMM_WORLD), "MPI_Allgather");
  return all;
}

bool MpiDataParallel::any(bool flag) {
  int mine = flag ? 1 : 0, any = 0;
  check(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
  return any != 0;
}

#else  // built without MPI: a plain program that says so when mpirun starts it

bool built_with_mpi() { return false; }

namespace {
[[noreturn]] void no_mpi() {
  throw std::runtime_error("this dslab was built without MPI (libopenmpi-dev was not found at configure time)");
}
}  // namespace

MpiSession::MpiSession() { no_mpi(); }
MpiSession::~MpiSession() = default;
void MpiSession::abort(int status) const { std::_Exit(status); }
bool MpiSession::all_ok(bool, const std::string&, int&, std::string&) const { no_mpi(); }
void MpiDataParallel::sum_in_order(const std::vector<const float*>&, size_t, float*) { no_mpi(); }
std::vector<double> MpiDataParallel::all_gather(const std::vector<double>&) { no_mpi(); }
bool MpiDataParallel::any(bool) { no_mpi(); }

#endif

}  // namespace dslab
