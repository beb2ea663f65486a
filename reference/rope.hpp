// Rotary position embedding (RoPE), the RoPE_Theta of Eq. (10)-(13), as DeepSeek's
// model.py applies it: the feature pairs (x[2i], x[2i+1]) of each head are rotated
// by the angle pos * freq_i, freq_i = theta^(-2i/d). Used in place on q and k.
//   x [N, n_heads * d] with N = B*T, position of row n = n % T.
//   backward: the inverse rotation (the transpose), applied to the gradient.
//
// YaRN context extension, as model.py's precompute_freqs_cis applies it to MLA's
// decoupled RoPE when the model's max_seq_len exceeds original_seq_len (the
// context it was pre-trained on): with rope_factor s,
//   freq_i <- freq_i / s * (1 - smooth_i) + freq_i * smooth_i,
//   smooth_i = 1 - clamp((i - low) / (high - low), 0, 1),
// low and high the pair indices whose wavelength turns beta_fast and beta_slow
// times over original_seq_len tokens: fast pairs keep their frequency, slow ones
// are divided by s, a linear ramp in between.
#pragma once

#include <utility>
#include <vector>

#include "reference/tensor.hpp"

namespace dslab {

// model.py's ModelArgs names.
struct Yarn {
  int original_seq_len = 4096;
  double rope_factor = 40;
  double beta_fast = 32, beta_slow = 1;
};

// freq_i = theta^(-2i/d), i < d/2 (d even).
std::vector<double> rope_frequencies(int head_dim, double theta);
// The same frequencies after YaRN's correction (model.py precompute_freqs_cis).
std::vector<double> yarn_frequencies(int head_dim, double theta, const Yarn& yarn);

// model.py find_correction_dim: the pair index i whose wavelength 2 pi / freq_i
// makes `rotations` turns in seq_len tokens: d log(seq_len / (2 pi rotations)) / (2 log theta).
double yarn_correction_dim(double rotations, int head_dim, double theta, int seq_len);
// model.py find_correction_range: floor(dim(beta_fast)), ceil(dim(beta_slow)), clamped to
// [0, d-1] (the full width d, as model.py clamps, though pairs only run to d/2 - 1).
std::pair<int, int> yarn_correction_range(int head_dim, double theta, const Yarn& yarn);

// cos and sin of every angle pos * freq_i: [max_seq_len, d/2] each, computed in double.
struct RopeTable {
  int d = 0;
  std::vector<double> freq;  // [d/2]
  Tensor2<double> cos, sin;
  RopeTable() = default;
  RopeTable(int max_seq_len, int head_dim, double theta);                   // plain RoPE
  RopeTable(int max_seq_len, int head_dim, double theta, const Yarn& yarn);  // YaRN frequencies
  RopeTable(int max_seq_len, std::vector<double> frequencies);
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
