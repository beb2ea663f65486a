#include "reference/rope.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace dslab {

std::vector<double> rope_frequencies(int head_dim, double theta) {
  if (head_dim % 2 != 0) throw std::invalid_argument("RoPE needs an even head dimension");
  std::vector<double> freq(head_dim / 2);
  for (size_t i = 0; i < freq.size(); ++i)
    freq[i] = 1.0 / std::pow(theta, double(2 * i) / head_dim);
  return freq;
}

double yarn_correction_dim(double rotations, int head_dim, double theta, int seq_len) {
  return head_dim * std::log(seq_len / (rotations * 2 * std::numbers::pi)) / (2 * std::log(theta));
}

std::pair<int, int> yarn_correction_range(int head_dim, double theta, const Yarn& y) {
  const int L = y.original_seq_len;
  const int low = int(std::floor(yarn_correction_dim(y.beta_fast, head_dim, theta, L)));
  const int high = int(std::ceil(yarn_correction_dim(y.beta_slow, head_dim, theta, L)));
  return {std::max(low, 0), std::min(high, head_dim - 1)};
}

std::vector<double> yarn_frequencies(int head_dim, double theta, const Yarn& y) {
  std::vector<double> freq = rope_frequencies(head_dim, theta);
  const auto [low, high] = yarn_correction_range(head_dim, theta, y);
  // model.py linear_ramp_factor(low, high, d/2): 0 up to low, 1 from high on.
  const double top = low == high ? high + 0.001 : high;
  for (size_t i = 0; i < freq.size(); ++i) {
    const double ramp = std::clamp((double(i) - low) / (top - low), 0.0, 1.0);
    const double smooth = 1 - ramp;
    freq[i] = freq[i] / y.rope_factor * (1 - smooth) + freq[i] * smooth;
  }
  return freq;
}

RopeTable::RopeTable(int max_seq_len, int head_dim, double theta)
    : RopeTable(max_seq_len, rope_frequencies(head_dim, theta)) {}

RopeTable::RopeTable(int max_seq_len, int head_dim, double theta, const Yarn& yarn)
    : RopeTable(max_seq_len, yarn_frequencies(head_dim, theta, yarn)) {}

RopeTable::RopeTable(int max_seq_len, std::vector<double> frequencies)
    : d(int(2 * frequencies.size())), freq(std::move(frequencies)) {
  const size_t half = freq.size();
  cos.resize({size_t(max_seq_len), half});
  sin.resize({size_t(max_seq_len), half});
  for (int t = 0; t < max_seq_len; ++t)
    for (size_t i = 0; i < half; ++i) {
      cos(t, i) = std::cos(t * freq[i]);
      sin(t, i) = std::sin(t * freq[i]);
    }
}

template <class T> void rope_rotate(T* p, long pos, const RopeTable& table, double sign) {
  const int half = table.d / 2;
  for (int i = 0; i < half; ++i) {
    const T c = T(table.cos(pos, i)), s = T(sign * table.sin(pos, i));
    const T a = p[2 * i], b = p[2 * i + 1];
    p[2 * i] = a * c - b * s;
    p[2 * i + 1] = a * s + b * c;
  }
}

template <class T>
void rope_rotate_heads(Tensor2<T>& x, int seq_len, int n_heads, int head_stride, int offset,
                       const RopeTable& table, double sign) {
  const long N = x.shape(0), width = x.shape(1);
#pragma omp parallel for schedule(static) if (N * width >= kParallelMinWork)
  for (long n = 0; n < N; ++n)
    for (int h = 0; h < n_heads; ++h)
      rope_rotate(x.data() + n * width + long(h) * head_stride + offset, n % seq_len, table, sign);
}

template <class T>
void rope_forward(Tensor2<T>& x, int seq_len, int n_heads, const RopeTable& table) {
  rope_rotate_heads(x, seq_len, n_heads, table.d, 0, table, 1.0);
}

template <class T>
void rope_backward(Tensor2<T>& dx, int seq_len, int n_heads, const RopeTable& table) {
  rope_rotate_heads(dx, seq_len, n_heads, table.d, 0, table, -1.0);
}

#define DSLAB_INSTANTIATE(T)                                                                     \
  template void rope_rotate<T>(T*, long, const RopeTable&, double);                             \
  template void rope_rotate_heads<T>(Tensor2<T>&, int, int, int, int, const RopeTable&, double); \
  template void rope_forward<T>(Tensor2<T>&, int, int, const RopeTable&);                       \
  template void rope_backward<T>(Tensor2<T>&, int, int, const RopeTable&);
DSLAB_INSTANTIATE(float)
DSLAB_INSTANTIATE(double)
#undef DSLAB_INSTANTIATE

}  // namespace dslab
