// Causal scaled dot-product attention over heads, Eq. (4) of the review:
//   o_{t,i} = sum_{j<=t} softmax_j(scale * q_{t,i} . k_{j,i}) v_{j,i}
// MHA, GQA and MQA differ only in n_kv_heads: query head h reads key/value
// head h / (n_heads / n_kv_heads).
//   q [N, n_heads*head_dim]   k [N, n_kv_heads*head_dim]   v [N, n_kv_heads*v_head_dim]
//   out [N, n_heads*v_head_dim]   cache probs [B, n_heads, T, T] (zero above the diagonal)
#pragma once

#include "reference/tensor.hpp"

namespace dslab {

struct AttentionShape {
  int batch = 0, seq_len = 0;
  int n_heads = 0, n_kv_heads = 0;
  int head_dim = 0, v_head_dim = 0;
  double softmax_scale = 0;  // usually head_dim^-1/2
};

template <class T>
void attention_forward(Tensor2<T>& out, Tensor4<T>& probs, const Tensor2<T>& q,
                       const Tensor2<T>& k, const Tensor2<T>& v, const AttentionShape& s);

// dq, dk, dv are overwritten.
template <class T>
void attention_backward(Tensor2<T>& dq, Tensor2<T>& dk, Tensor2<T>& dv, const Tensor2<T>& dout,
                        const Tensor2<T>& q, const Tensor2<T>& k, const Tensor2<T>& v,
                        const Tensor4<T>& probs, const AttentionShape& s);

}  // namespace dslab
