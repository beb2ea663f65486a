// Linear layer without bias, PyTorch/DeepSeek layout: W is [out, in].
//   forward:  y[N,out] = x[N,in] W^T
//   backward: dx[N,in] = dy W ;  dW[out,in] += dy^T x
// Convention for every reference layer: parameter gradients accumulate (+=),
// so a weight used twice (a shared head, say) collects both contributions;
// activation gradients are overwritten.
// In float, inside an fp8::Autocast scope, the GEMMs take FP8 inputs
// (reference/fp8_linear.hpp).
#pragma once

#include "reference/tensor.hpp"

namespace dslab {

template <class T> void linear_forward(Tensor2<T>& y, const Tensor2<T>& x, const Tensor2<T>& w);

template <class T>
void linear_backward(Tensor2<T>& dx, Tensor2<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x,
                     const Tensor2<T>& w);

}  // namespace dslab
