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

template <class T> class AdamW {
 public:
  AdamW() = default;
  explicit AdamW(const std::vector<ParamRef<T>>& params);
  // One update of every parameter; `grads` lines up with `params`.
  void step(const std::vector<ParamRef<T>>& params, const std::vector<ParamRef<T>>& grads,
            double lr, const AdamWArgs& args);
  int64_t t = 0;                  // updates taken so far
  std::vector<Tensor1<T>> m, v;   // first and second moments, one per parameter
};

// sqrt(sum of squares) over all gradients, accumulated in double in a fixed order.
template <class T> double global_grad_norm(const std::vector<ParamRef<T>>& grads);

// When norm > max_norm, scales all gradients by max_norm / (norm + 1e-6), the
// factor torch.nn.utils.clip_grad_norm_ uses. max_norm <= 0 disables.
template <class T> void clip_grad_norm(const std::vector<ParamRef<T>>& grads, double norm,
                                       double max_norm);

struct LrSchedule {
  double lr = 1e-3, min_lr = 1e-4;
  int64_t warmup_steps = 0, total_steps = 1;
  // Linear warm-up from lr/warmup to lr, then cosine decay to min_lr at total_steps.
  double at(int64_t step) const;
};

}  // namespace dslab
