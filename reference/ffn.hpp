// SwiGLU feed-forward network, DeepSeek's names:
//   ffn(x) = w2( silu(w1 x) * (w3 x) ),  silu(a) = a * sigmoid(a)
//   w1, w3 [inter_dim, dim]   w2 [dim, inter_dim]   x, y [N, dim]
//   cache h1 = w1 x, h3 = w3 x, gated = silu(h1) * h3   each [N, inter_dim]
#pragma once

#include "reference/linear.hpp"
#include "reference/tensor.hpp"

namespace dslab {

template <class T> struct FfnWeights {
  Tensor2<T> w1, w2, w3;
};

template <class T> struct FfnCache {
  Tensor2<T> h1, h3, gated;
};

// The backward's temporaries, kept by the caller between calls (fresh buffers
// would cost a page fault per 4 KiB on every call); they hold nothing.
template <class T> struct FfnScratch {
  Tensor2<T> dgated, dh1, dx3;  // [N, inter_dim], [N, inter_dim], [N, dim]
};

template <class T>
void ffn_forward(Tensor2<T>& y, FfnCache<T>& cache, const Tensor2<T>& x, const FfnWeights<T>& w,
                 const LinearPolicy<T>& linears = {});

// dx is overwritten; grads accumulate into dw.
template <class T>
void ffn_backward(Tensor2<T>& dx, FfnWeights<T>& dw, const Tensor2<T>& dy, const Tensor2<T>& x,
                  const FfnCache<T>& cache, const FfnWeights<T>& w, FfnScratch<T>& scratch,
                  const LinearPolicy<T>& linears = {});

}  // namespace dslab
