// AdamW with decoupled weight decay (Loshchilov & Hutter), global-norm
// gradient clipping, and the warm-up + cosine learning-rate schedule.
//   m = b1 m + (1-b1) g ;  v = b2 v + (1-b2) g^2
//   p -= lr * ( m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p )
// Weight decay applies to matrices (embedding, projections, head), not to
// the RMSNorm gains.
#pragma once

#include <cstdint>
#include <vector>

#include "reference/tensor.hpp"

namespace dslab {

struct AdamWArgs {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

// The parameters an update runs over: a model's arenas (the same layout for
// parameters and gradients), or any list of tensors. Either way the work is cut
// into fixed chunks of each tensor, so sums and updates do not depend on the
// thread count, and an arena gives bitwise what its list of tensors gives.
template <class T> struct Segment {
  T* data;
  size_t size, rank;  // rank >= 2: a matrix (weight decay applies)
};
template <class T> std::vector<Segment<T>> segments(Arena<T>& arena);
template <class T> std::vector<Segment<T>> segments(const std::vector<ParamRef<T>>& tensors);

template <class T> class AdamW {
 public:
  AdamW() = default;
  explicit AdamW(const std::vector<Segment<T>>& params);  // zero moments laid out as params
  explicit AdamW(const std::vector<ParamRef<T>>& params) : AdamW(segments(params)) {}
  // One update of every parameter; `grads` lines up with `params`.
  void step(const std::vector<Segment<T>>& params, const std::vector<Segment<T>>& grads, double lr,
            const AdamWArgs& args);
  void step(const std::vector<ParamRef<T>>& params, const std::vector<ParamRef<T>>& grads, double lr,
            const AdamWArgs& args) {
    step(segments(params), segments(grads), lr, args);
  }
  // The moments of parameter i, laid out as its tensor.
  T* m_of(size_t i) { return m.data() + offset[i]; }
  T* v_of(size_t i) { return v.data() + offset[i]; }
  const T* m_of(size_t i) const { return m.data() + offset[i]; }
  const T* v_of(size_t i) const { return v.data() + offset[i]; }
  size_t size_of(size_t i) const { return (i + 1 < offset.size() ? offset[i + 1] : m.size()) - offset[i]; }
  int64_t t = 0;               // updates taken so far
  std::vector<T> m, v;         // first and second moments, one buffer each
  std::vector<size_t> offset;  // where parameter i starts in m and v
};

// sqrt(sum of squares) over all gradients, accumulated in double in a fixed order.
template <class T> double global_grad_norm(const std::vector<Segment<T>>& grads);
template <class T> double global_grad_norm(const std::vector<ParamRef<T>>& grads) {
  return global_grad_norm(segments(grads));
}

// When norm > max_norm, scales all gradients by max_norm / (norm + 1e-6), the
// factor torch.nn.utils.clip_grad_norm_ uses. max_norm <= 0 disables.
template <class T> void clip_grad_norm(const std::vector<Segment<T>>& grads, double norm, double max_norm);
template <class T> void clip_grad_norm(const std::vector<ParamRef<T>>& grads, double norm, double max_norm) {
  clip_grad_norm(segments(grads), norm, max_norm);
}

struct LrSchedule {
  double lr = 1e-3, min_lr = 1e-4;
  int64_t warmup_steps = 0, total_steps = 1;
  // Linear warm-up from lr/warmup to lr, then cosine decay to min_lr at total_steps.
  double at(int64_t step) const;
};

}  // namespace dslab
