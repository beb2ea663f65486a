// Token embedding: a lookup table, weight [vocab_size, dim].
//   forward:  x[n,:] = W[token_n,:]              x [N, dim]
//   backward: dW[token_n,:] += dx[n,:]
#pragma once

#include "reference/tensor.hpp"

namespace dslab {

template <class T>
void embedding_forward(Tensor2<T>& x, const std::vector<int>& tokens, const Tensor2<T>& w);

template <class T>
void embedding_backward(Tensor2<T>& dw, const Tensor2<T>& dx, const std::vector<int>& tokens);

}  // namespace dslab
