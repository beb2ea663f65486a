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
#pragma omp parallel for schedule(static)
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
