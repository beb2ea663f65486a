// Data parallelism as the training loop sees it: N ranks each run some of a
// step's M micro-batches (train.micro_batches), then agree on the step's
// gradient and statistics. The loop (reference/trainer.cpp) fixes the order:
// micro-batch m = 0..M-1 of the step's rows, rank r holding the contiguous
// block m = r*M/N .. (r+1)*M/N - 1, and every sum over micro-batches taken
// in m order, so a step's numbers are the same bits for every N that divides
// M, and equal one process accumulating the same M micro-batches (N = 1).
//
// This header is the whole contract; an implementation moves the data (the
// dslab program's is Open MPI's collectives, experiments/mpi_parallel.*).
#pragma once

#include <cstddef>
#include <vector>

namespace dslab {

class DataParallel {
 public:
  virtual ~DataParallel() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // local: this rank's M/N micro-batch gradients, n floats each, in m order.
  // out [n] = g_0 + g_1 + ... + g_{M-1} elementwise, added left to right in
  // m order (out = g_0, then out += g_1, ...), on every rank.
  virtual void sum_in_order(const std::vector<const float*>& local, size_t n, float* out) = 0;
  // Every rank's `local` (all of one length), concatenated in rank order.
  virtual std::vector<double> all_gather(const std::vector<double>& local) = 0;
  // True on every rank when `flag` is true on any.
  virtual bool any(bool flag) = 0;
};

}  // namespace dslab
