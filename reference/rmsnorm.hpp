// RMSNorm: y = x / rms(x) * g,  rms(x) = sqrt(mean(x^2) + eps).
//   x, y [N, dim];  g [dim];  cache rstd [N] = 1 / rms(x)
//   backward: dx = rstd * (g*dy) - x * rstd^3 / dim * sum(g*dy*x)
//             dg += sum_n dy * x * rstd
#pragma once

#include "reference/tensor.hpp"

namespace dslab {

template <class T>
void rmsnorm_forward(Tensor2<T>& y, Tensor1<T>& rstd, const Tensor2<T>& x, const Tensor1<T>& g,
                     double eps);

template <class T>
void rmsnorm_backward(Tensor2<T>& dx, Tensor1<T>& dg, const Tensor2<T>& dy, const Tensor2<T>& x,
                      const Tensor1<T>& g, const Tensor1<T>& rstd);

}  // namespace dslab
