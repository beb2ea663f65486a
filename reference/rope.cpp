#include "reference/rope.hpp"

#include <cmath>
#include <stdexcept>

namespace dslab {

RopeTable::RopeTable(int max_seq_len, int head_dim, double theta) : d(head_dim) {
  if (head_dim % 2 != 0) throw std::invalid_argument("RoPE needs an even head dimension");
  const size_t half = head_dim / 2;
  cos.resize({size_t(max_seq_len), half});
  sin.resize({size_t(max_seq_len), half});
  for (int t = 0; t < max_seq_len; ++t)
    for (size_t i = 0; i < half; ++i) {
      const double freq = 1.0 / std::pow(theta, double(2 * i) / head_dim);
      cos(t, i) = std::cos(t * freq);
      sin(t, i) = std::sin(t * freq);
    }
}

namespace {

// Rotates every pair by +angle (sign = 1) or -angle (sign = -1).
template <class T>
void rotate(Tensor2<T>& x, int seq_len, int n_heads, const RopeTable& table, double sign) {
  const long N = x.shape(0), width = x.shape(1);
  const int d = table.d, half = d / 2;
#pragma omp parallel for schedule(static)
  for (long n = 0; n < N; ++n) {
    const long t = n % seq_len;
    for (int h = 0; h < n_heads; ++h) {
      T* p = x.data() + n * width + long(h) * d;
      for (int i = 0; i < half; ++i) {
        const T c = T(table.cos(t, i)), s = T(sign * table.sin(t, i));
        const T a = p[2 * i], b = p[2 * i + 1];
        p[2 * i] = a * c - b * s;
        p[2 * i + 1] = a * s + b * c;
      }
    }
  }
}

}  // namespace

template <class T>
void rope_forward(Tensor2<T>& x, int seq_len, int n_heads, const RopeTable& table) {
  rotate(x, seq_len, n_heads, table, 1.0);
}

template <class T>
void rope_backward(Tensor2<T>& dx, int seq_len, int n_heads, const RopeTable& table) {
  rotate(dx, seq_len, n_heads, table, -1.0);
}

template void rope_forward<float>(Tensor2<float>&, int, int, const RopeTable&);
template void rope_forward<double>(Tensor2<double>&, int, int, const RopeTable&);
template void rope_backward<float>(Tensor2<float>&, int, int, const RopeTable&);
template void rope_backward<double>(Tensor2<double>&, int, int, const RopeTable&);

}  // namespace dslab
