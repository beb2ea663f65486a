// Vector loops for the reference's elementwise work (xsimd batches).
//
// An array of n elements is walked as whole batches plus one padded partial
// batch, so every element goes through the same vector code: its result does
// not depend on where a loop was cut or on the thread count. Sums are taken
// lane by lane, then across the lanes, in an order fixed by n alone.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include <xsimd/xsimd.hpp>

namespace dslab::simd {

template <class T> using Batch = xsimd::batch<T>;
template <class T> constexpr long kWidth = long(Batch<T>::size);

// Calls f(i, w) for i = 0, W, 2W, ... with w = min(W, n - i) valid elements.
template <class T, class F> void for_each_batch(long n, F&& f) {
  long i = 0;
  for (; i + kWidth<T> <= n; i += kWidth<T>) f(i, kWidth<T>);
  if (i < n) f(i, n - i);
}

// w elements from x; lanes past w hold `pad`.
template <class T> Batch<T> load(const T* x, long w, T pad = T(0)) {
  if (w == kWidth<T>) return Batch<T>::load_unaligned(x);
  alignas(64) T buf[kWidth<T>];
  std::fill(std::copy(x, x + w, buf), buf + kWidth<T>, pad);
  return Batch<T>::load_aligned(buf);
}

// Stores the first w lanes of b.
template <class T> void store(T* y, const Batch<T>& b, long w) {
  if (w == kWidth<T>) return b.store_unaligned(y);
  alignas(64) T buf[kWidth<T>];
  b.store_aligned(buf);
  std::copy(buf, buf + w, y);
}

// max_i x[i] (n >= 1).
template <class T> T max(const T* x, long n) {
  Batch<T> m(-std::numeric_limits<T>::infinity());
  for_each_batch<T>(n, [&](long i, long w) {
    m = xsimd::max(m, load(x + i, w, -std::numeric_limits<T>::infinity()));
  });
  alignas(64) T lanes[kWidth<T>];
  m.store_aligned(lanes);
  return *std::max_element(lanes, lanes + kWidth<T>);
}

// sum_i x[i] * y[i].
template <class T> T dot(const T* x, const T* y, long n) {
  Batch<T> s(T(0));
  for_each_batch<T>(n, [&](long i, long w) { s += load(x + i, w) * load(y + i, w); });
  return xsimd::hadd(s);
}

// sum_i x[i] * y[i] * z[i].
template <class T> T dot(const T* x, const T* y, const T* z, long n) {
  Batch<T> s(T(0));
  for_each_batch<T>(n, [&](long i, long w) { s += load(x + i, w) * load(y + i, w) * load(z + i, w); });
  return xsimd::hadd(s);
}

// y[i] = exp(x[i] - shift); returns sum_i y[i]. y may be x.
template <class T> T exp_shifted_sum(T* y, const T* x, T shift, long n) {
  Batch<T> s(T(0));
  for_each_batch<T>(n, [&](long i, long w) {
    // Padded lanes hold -inf, whose exp is 0.
    const Batch<T> e = xsimd::exp(load(x + i, w, -std::numeric_limits<T>::infinity()) - shift);
    store(y + i, e, w);
    s += e;
  });
  return xsimd::hadd(s);
}

// How a softmax row rounds. Every variant computes
//   y_i = exp(x_i - m) / sum_j exp(x_j - m),   m = max_j x_j,
// but not with the same roundings, and each caller keeps the one its numbers
// (trained weights, committed results) were made with:
//   Vector        xsimd exp, lane-wise sum (exp_shifted_sum), y_i * (1 / sum):
//                 attention, Eq. (4) and (16)
//   VectorDivide  the same exps and sum, y_i / sum: cross-entropy
//   Scalar        std::exp, summed left to right, y_i / sum: the MoE gate, Eq. (20),
//                 MLA's absorbed decoding, the sampler
enum class SoftmaxArith { Vector, VectorDivide, Scalar };

// m and sum above: log sum_j exp(x_j) = m + log(sum).
template <class T> struct SoftmaxSums {
  T max, sum;
};

// Softmax of one row: y [n] from x [n], n >= 1; y may be x (in place).
template <class T>
SoftmaxSums<T> softmax_row(T* y, const T* x, long n, SoftmaxArith how = SoftmaxArith::Vector) {
  const T m = max(x, n);
  T sum = 0;
  if (how == SoftmaxArith::Scalar) {
    for (long i = 0; i < n; ++i) sum += (y[i] = std::exp(x[i] - m));
  } else {
    sum = exp_shifted_sum(y, x, m, n);
  }
  if (how == SoftmaxArith::Vector) {
    const T inv = T(1) / sum;
    for (long i = 0; i < n; ++i) y[i] *= inv;
  } else {
    for (long i = 0; i < n; ++i) y[i] /= sum;
  }
  return {m, sum};
}

}  // namespace dslab::simd
