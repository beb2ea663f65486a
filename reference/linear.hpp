// Linear layer without bias, PyTorch/DeepSeek layout: W is [out, in].
//   forward:  y[N,out] = x[N,in] W^T
//   backward: dx[N,in] = dy W                (B: the input gradient)
//             dW[out,in] += dy^T x           (W: the weight gradient)
// Convention for every reference layer: parameter gradients accumulate (+=),
// so a weight used twice (a shared head, say) collects both contributions;
// activation gradients are overwritten.
//
// Every linear call takes a LinearPolicy, passed down explicitly by the block
// that owns the layer (nothing is read from thread-local state):
//   fp8    float only: the GEMMs take FP8 inputs under this recipe
//          (reference/fp8_linear.hpp); null: full precision. Double ignores it.
//   defer  a zero-bubble split backward: the weight-gradient GEMM is queued
//          (dy copied, x referenced) and run later by WeightGradQueue::run,
//          the W pass; null: computed at once.
#pragma once

#include <vector>

#include "reference/fp8_linear.hpp"
#include "reference/tensor.hpp"

namespace dslab {

template <class T> class WeightGradQueue;

template <class T> struct LinearPolicy {
  const fp8::Recipe* fp8 = nullptr;
  WeightGradQueue<T>* defer = nullptr;
};

template <class T>
void linear_forward(Tensor2<T>& y, const Tensor2<T>& x, const Tensor2<T>& w,
                    const LinearPolicy<T>& policy = {});

// dx is overwritten; dW += dy^T x now, or queued in policy.defer.
template <class T>
void linear_backward(Tensor2<T>& dx, Tensor2<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x,
                     const Tensor2<T>& w, const LinearPolicy<T>& policy = {});

// The two halves of linear_backward.
template <class T>
void linear_backward_input(Tensor2<T>& dx, const Tensor2<T>& dy, const Tensor2<T>& w,
                           const fp8::Recipe* fp8 = nullptr);
template <class T>
void linear_backward_weight(Tensor2<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x,
                            const fp8::Recipe* fp8 = nullptr);

// The W pass of a split backward: the weight-gradient GEMMs of the linear
// layers whose backward ran with this queue, in the order they were queued,
// so B then W adds into each dW exactly as the whole backward does.
template <class T> class WeightGradQueue {
 public:
  struct Entry {
    Tensor2<T>* dw;           // accumulates dy^T x
    Tensor2<T> dy;            // [N, out], kept from the B pass
    const Tensor2<T>* x;      // [N, in], the layer's cached input (alive until the next forward)
    const fp8::Recipe* fp8;
  };
  void push(Tensor2<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x, const fp8::Recipe* fp8) {
    entries_.push_back({&dw, dy, &x, fp8});
  }
  // Runs and clears every queued weight gradient.
  void run() {
    for (Entry& e : entries_) linear_backward_weight(*e.dw, e.dy, *e.x, e.fp8);
    entries_.clear();
  }
  const std::vector<Entry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<Entry> entries_;
};

}  // namespace dslab
