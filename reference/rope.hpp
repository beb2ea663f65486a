// Rotary position embedding (RoPE), the RoPE_Theta of Eq. (10)-(13), as DeepSeek's
// model.py applies it: the feature pairs (x[2i], x[2i+1]) of each head are rotated
// by the angle pos * freq_i, freq_i = theta^(-2i/d). Used in place on q and k.
//   x [N, n_heads * d] with N = B*T, position of row n = n % T.
//   backward: the inverse rotation (the transpose), applied to the gradient.

#pragma once

#include "reference/tensor.hpp"

namespace dslab {

// cos and sin of every angle: [max_seq_len, d/2] each, computed in double.
struct RopeTable {
  int d = 0;
  Tensor2<double> cos, sin;
  RopeTable() = default;
  RopeTable(int max_seq_len, int head_dim, double theta);
};

// The rotation of one head: the table.d numbers at p, pairs (p[2i], p[2i+1]),
// by +pos*freq_i (sign = 1) or -pos*freq_i (sign = -1, the inverse).
template <class T> void rope_rotate(T* p, long pos, const RopeTable& table, double sign);

// rope_rotate on every row n of x [N, width] (position n % seq_len) and every head
// h < n_heads: the table.d numbers from column h * head_stride + offset. MHA's heads
// are the whole row (head_stride = d, offset 0); MLA rotates q_R inside each query
// head (head_stride d_nope + d_rope, offset d_nope) and the one k_R (n_heads 1).
template <class T>
void rope_rotate_heads(Tensor2<T>& x, int seq_len, int n_heads, int head_stride, int offset,
                       const RopeTable& table, double sign);

template <class T>
void rope_forward(Tensor2<T>& x, int seq_len, int n_heads, const RopeTable& table);

template <class T>
void rope_backward(Tensor2<T>& dx, int seq_len, int n_heads, const RopeTable& table);

}  // namespace dslab
