// Decoding MHA, GQA and MQA with a K/V cache (reference/mha.hpp, reference/attention.hpp):
// mha_decode token by token must give, at every position, the row of the
// full recomputation Transformer::block_forward does for the whole sequence
// (wq, wk, wv; rope_forward on q and k; attention_forward; wo).
//
// Both compute the same sums in the same order up to the GEMM blocking, so in
// double they agree to rounding, about 1e-15 relative; the bound is 1e-12. A
// wrong RoPE position, a wrong kv head for a query head or a cache off by one
// position gives O(1) differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "reference/attention.hpp"
#include "reference/linear.hpp"
#include "reference/mha.hpp"
#include "reference/rope.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

constexpr double kTolerance = 1e-12;

Tensor2<double> random_matrix(Rng& rng, size_t rows, size_t cols, double std) {
  Tensor2<double> m = xt::zeros<double>({rows, cols});
  for (double& x : m) x = std * rng.normal();
  return m;
}

using test::relative_error;

// dim 12, 4 query heads of width 4, n_kv_heads key/value heads.
struct Layer {
  static constexpr int D = 12, H = 4, d = 4, T = 11;
  AttentionShape s;
  RopeTable rope{T, d, 10000.0};
  Tensor2<double> wq, wk, wv, wo, x;
  explicit Layer(int n_kv_heads) : s{1, T, H, n_kv_heads, d, d, 1.0 / std::sqrt(double(d))} {
    Rng rng(7);
    // Large weights, so attention is far from uniform.
    wq = random_matrix(rng, H * d, D, 1.5);
    wk = random_matrix(rng, n_kv_heads * d, D, 1.5);
    wv = random_matrix(rng, n_kv_heads * d, D, 1.0);
    wo = random_matrix(rng, D, H * d, 1.0);
    x = random_matrix(rng, T, D, 1.0);
  }
  MhaWeights<double> weights() const {
    MhaWeights<double> m;
    m.wq = wq, m.wk = wk, m.wv = wv, m.wo = wo;
    return m;
  }
  // The whole sequence at once, as Transformer::block_forward does it.   [T, D]
  Tensor2<double> full() const {
    Tensor2<double> q, k, v, o, out;
    Tensor4<double> probs;
    linear_forward(q, x, wq);
    linear_forward(k, x, wk);
    linear_forward(v, x, wv);
    rope_forward(q, T, s.n_heads, rope);
    rope_forward(k, T, s.n_kv_heads, rope);
    attention_forward(o, probs, q, k, v, s);
    linear_forward(out, o, wo);
    return out;
  }
};

void check_decoding(int n_kv_heads) {
  const Layer l(n_kv_heads);
  const Tensor2<double> full = l.full();
  KvCache<double> cache(l.s, Layer::T);
  EXPECT_EQ(cache.k.shape(1), size_t(n_kv_heads * Layer::d));
  std::vector<double> out(Layer::D);
  for (int t = 0; t < Layer::T; ++t) {
    mha_decode(out.data(), &l.x(t, 0), cache, l.weights(), l.s, l.rope);
    EXPECT_LE(relative_error(out.data(), &full(t, 0), Layer::D), kTolerance)
        << "K/V-cache decoding vs full recomputation at position " << t;
  }
  EXPECT_EQ(cache.len, Layer::T);
  // The cache is full: one more token must throw, not write past the end.
  EXPECT_THROW(mha_decode(out.data(), &l.x(0, 0), cache, l.weights(), l.s, l.rope),
               std::invalid_argument);
}

TEST(AttentionDecode, MhaEqualsFullRecomputation) { check_decoding(4); }
TEST(AttentionDecode, GqaEqualsFullRecomputation) { check_decoding(2); }
TEST(AttentionDecode, MqaEqualsFullRecomputation) { check_decoding(1); }

TEST(AttentionDecode, RopeTableMustCoverThePosition) {
  const Layer l(2);
  KvCache<double> cache(l.s, Layer::T + 1);
  std::vector<double> out(Layer::D);
  for (int t = 0; t < Layer::T; ++t)
    mha_decode(out.data(), &l.x(t, 0), cache, l.weights(), l.s, l.rope);
  EXPECT_THROW(mha_decode(out.data(), &l.x(0, 0), cache, l.weights(), l.s, l.rope),
               std::invalid_argument);
}

}  // namespace
}  // namespace dslab
