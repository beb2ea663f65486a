// Rotary position embedding (RoPE), as DeepSeek's model.py applies it: the
// feature pairs (x[2i], x[2i+1]) of each head are rotated by the angle
// pos * theta^(-2i/d). Used in place on q and k.
//   x [N, n_heads * d] with N = B*T, position of row n = n % T.
//   backward: the inverse rotation, applied to the gradient.
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

template <class T>
void rope_forward(Tensor2<T>& x, int seq_len, int n_heads, const RopeTable& table);

template <class T>
void rope_backward(Tensor2<T>& dx, int seq_len, int n_heads, const RopeTable& table);

}  // namespace dslab
