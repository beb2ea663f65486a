// Tensors and random numbers shared by every reference layer.
//
// Tensors are xtensor containers, row-major. Activations are token-major:
// a batch of B sequences of T tokens is stored as N = B*T rows.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

namespace dslab {

template <class T> using Tensor1 = xt::xtensor<T, 1>;
template <class T> using Tensor2 = xt::xtensor<T, 2>;
template <class T> using Tensor3 = xt::xtensor<T, 3>;
template <class T> using Tensor4 = xt::xtensor<T, 4>;

// Resizes t to `shape` when it differs; keeps the buffer otherwise.
template <class T, size_t R>
void ensure_shape(xt::xtensor<T, R>& t, const std::array<size_t, R>& shape) {
  if (!std::equal(shape.begin(), shape.end(), t.shape().begin())) t.resize(shape);
}

// A named view of one parameter (or its gradient, or an optimizer moment).
template <class T> struct ParamRef {
  std::string name;          // DeepSeek-style, e.g. "layers.0.attn.wq.weight"
  T* data;
  std::vector<size_t> shape;
  size_t size() const {
    size_t n = 1;
    for (size_t d : shape) n *= d;
    return n;
  }
};

template <class E> ParamRef<typename E::value_type> param_ref(const std::string& name, E& t) {
  return {name, t.data(), std::vector<size_t>(t.shape().begin(), t.shape().end())};
}

// SplitMix64: a small, portable generator. Every random number in dslab comes
// from here, so a seed means the same numbers on every platform and library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  // An independent generator for stream `stream` of `seed` (e.g. the batch of
  // one step). The start state is hashed, so streams s and s+1 do not walk
  // the same sequence shifted by one draw.
  Rng(uint64_t seed, uint64_t stream) : state_(mix(seed ^ mix(stream + 0x632BE59BD9B4E019ull))) {}
  uint64_t next() { return mix(state_ += 0x9E3779B97F4A7C15ull); }
  double uniform() { return (next() >> 11) * 0x1.0p-53; }       // [0, 1)
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }  // [0, n)
  double normal();                                               // N(0, 1), Box-Muller
 private:
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

}  // namespace dslab
