// MLA (reference/mla.hpp): gradients against finite differences for every
// variant, and decoding with the latent (absorbed) and the naive cache against
// each other and against the full forward.
//
// Finite differences: L = sum(out * R) for a fixed random R, one Richardson
// step on the central difference with h = 5e-4, as test_gradcheck.cpp
// explains; a tensor passes when max|numeric - analytic| <= 1e-8 max|analytic|.
//
// Decoding: the absorbed and naive forms and the batched forward compute the
// same numbers in different orders (the absorbed one contracts W^UK with the
// query instead of with c_KV), so in double they agree to rounding, about
// 1e-15 relative; the bound is 1e-12. A missing rotation, a wrong head slice
// or a cache off by one position gives O(1) differences.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tests/model_gradcheck.hpp"
#include "reference/mla.hpp"
#include "reference/transformer.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

constexpr double kGradTolerance = 1e-8;
constexpr double kDecodeTolerance = 1e-12;

using test::gradient_error;

// Small, with every width different so a swapped dimension cannot pass.
MlaArgs small_args(MlaRope rope, int q_lora_rank) {
  MlaArgs a;
  a.dim = 8;
  a.n_heads = 3;
  a.q_lora_rank = q_lora_rank;
  a.kv_lora_rank = 5;
  a.qk_nope_head_dim = 4;
  a.qk_rope_head_dim = 2;
  a.v_head_dim = 3;
  a.rope = rope;
  a.norm_eps = 1e-6;
  return a;
}

// Random weights (RMSNorm gains around 1), scaled so attention is far from uniform.
MlaWeights<double> random_weights(const MlaArgs& a, uint64_t seed) {
  MlaWeights<double> w(a);
  Rng rng(seed);
  for (auto& p : w.refs(""))
    for (size_t j = 0; j < p.size(); ++j)
      p.data[j] = p.shape.size() == 1 ? 1.0 + 0.3 * rng.normal() : 0.6 * rng.normal();
  return w;
}

Tensor2<double> random_matrix(Rng& rng, size_t rows, size_t cols) {
  Tensor2<double> t({rows, cols});
  for (auto& x : t) x = rng.normal();
  return t;
}

RopeTable rope_table(const MlaArgs& a, int max_len) { return a.rope_table(max_len, 10000.0); }

class Mla : public ::testing::Test {
 protected:
  void SetUp() override { omp_set_num_threads(1); }
};

void check_gradients(const MlaArgs& a) {
  a.validate();
  const int B = 2, T = 5;
  const RopeTable rope = rope_table(a, T);
  MlaWeights<double> w = random_weights(a, 31);
  Rng rng(32);
  Tensor2<double> x = random_matrix(rng, B * T, a.dim);
  const Tensor2<double> R = random_matrix(rng, B * T, a.dim);
  auto loss = [&] {
    Tensor2<double> out;
    MlaCache<double> cache;
    mla_forward(out, cache, x, w, a, rope, B, T);
    double s = 0;
    for (size_t j = 0; j < out.size(); ++j) s += out.data()[j] * R.data()[j];
    return s;
  };
  Tensor2<double> out, dx;
  MlaCache<double> cache;
  mla_forward(out, cache, x, w, a, rope, B, T);
  // Weight gradients accumulate: start from random values and check the increment.
  MlaWeights<double> g0 = random_weights(a, 33), g = g0;
  mla_backward(dx, g, R, cache, w, a, rope);
  EXPECT_LE(gradient_error(loss, x.data(), dx.data(), x.size()), kGradTolerance) << "x";
  auto params = w.refs(""), grads = g.refs(""), grads0 = g0.refs("");
  ASSERT_EQ(params.size(), a.q_lora_rank > 0 ? 7u : 5u);
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<double> added(grads[i].size());
    for (size_t j = 0; j < added.size(); ++j) added[j] = grads[i].data[j] - grads0[i].data[j];
    EXPECT_LE(gradient_error(loss, params[i].data, added.data(), added.size()), kGradTolerance)
        << params[i].name;
  }
}

TEST_F(Mla, GradientsDecoupled) { check_gradients(small_args(MlaRope::Decoupled, 6)); }
TEST_F(Mla, GradientsDecoupledWithoutQueryCompression) {
  check_gradients(small_args(MlaRope::Decoupled, 0));
}
TEST_F(Mla, GradientsNoRope) { check_gradients(small_args(MlaRope::None, 6)); }
TEST_F(Mla, GradientsFullRope) { check_gradients(small_args(MlaRope::Full, 6)); }
TEST_F(Mla, GradientsFullRopeWithoutDecoupledDims) {
  MlaArgs a = small_args(MlaRope::Full, 0);
  a.qk_rope_head_dim = 0;
  check_gradients(a);
}
// YaRN is on when max_seq_len > original_seq_len (model.py), whatever rope_factor.
TEST_F(Mla, GradientsWithYarnScale) {
  MlaArgs a = small_args(MlaRope::Decoupled, 6);
  a.rope_factor = 40;
  a.mscale = 0.707;
  a.max_seq_len = 16384;
  check_gradients(a);
}
// Over a full-RoPE head of 3 pairs YaRN also changes the frequencies of pairs 1 and 2.
TEST_F(Mla, GradientsWithYarnFullRope) {
  MlaArgs a = small_args(MlaRope::Full, 6);
  a.rope_factor = 40;
  a.max_seq_len = 16384;
  check_gradients(a);
}

// The whole transformer with attn = "mla": every coordinate of every
// parameter (gains random too), two layers, positions that RoPE rotates.
void check_model_gradients(const std::string& rope, int q_lora_rank) {
  ModelArgs args;
  args.vocab_size = 11;
  args.dim = 8;
  args.n_layers = 2;
  args.n_heads = 2;
  args.inter_dim = 12;
  args.max_seq_len = 8;
  args.init_std = 0.4;
  args.attn = AttnKind::Mla;
  args.mla.q_lora_rank = q_lora_rank;
  args.mla.kv_lora_rank = 5;
  args.mla.qk_nope_head_dim = 4;
  args.mla.qk_rope_head_dim = 2;
  args.mla.v_head_dim = 3;
  args.mla.rope = parse_mla_rope(rope);
  const int batch = 2, seq_len = 5;
  Rng rng(61);
  std::vector<int> tokens, targets;
  for (int n = 0; n < batch * seq_len; ++n) {
    tokens.push_back(int(rng.below(args.vocab_size)));
    targets.push_back(int(rng.below(args.vocab_size)));
  }
  Transformer<double> model(args);
  model.init_weights(62);
  test::randomize_gains(model, rng);
  auto loss = [&] { return model.forward(tokens, targets, batch, seq_len); };
  const size_t attn_tensors = q_lora_rank > 0 ? 7 : 5;
  ASSERT_EQ(model.params.refs().size(), 1 + (attn_tensors + 5) * size_t(args.n_layers) + 2);
  test::expect_parameter_gradients(model, loss, kGradTolerance);
}

TEST_F(Mla, ModelGradientsDecoupled) { check_model_gradients("decoupled", 6); }
TEST_F(Mla, ModelGradientsNoRopeDirectWq) { check_model_gradients("none", 0); }
TEST_F(Mla, ModelGradientsFullRope) { check_model_gradients("full", 6); }

// The same numbers, bit for bit, for any thread count (parallel loops only
// over independent outputs).
TEST_F(Mla, ModelIsBitwiseTheSameForAnyThreadCount) {
  ModelArgs args;
  args.vocab_size = 32;
  args.dim = 32;
  args.n_layers = 2;
  args.n_heads = 4;
  args.inter_dim = 48;
  args.max_seq_len = 16;
  args.attn = AttnKind::Mla;
  args.mla.q_lora_rank = 12;
  args.mla.kv_lora_rank = 10;
  args.mla.qk_nope_head_dim = 6;
  args.mla.qk_rope_head_dim = 4;
  args.mla.v_head_dim = 5;
  const int batch = 3, seq_len = 16;
  Rng rng(71);
  std::vector<int> tokens, targets;
  for (int n = 0; n < batch * seq_len; ++n) {
    tokens.push_back(int(rng.below(args.vocab_size)));
    targets.push_back(int(rng.below(args.vocab_size)));
  }
  auto gradients = [&](int threads) {
    omp_set_num_threads(threads);
    Transformer<float> model(args);
    model.init_weights(72);
    model.zero_grad();
    model.forward(tokens, targets, batch, seq_len);
    model.backward();
    std::vector<float> g;
    for (const auto& r : model.grads.refs()) g.insert(g.end(), r.data, r.data + r.size());
    return g;
  };
  const std::vector<float> one = gradients(1), three = gradients(3);
  ASSERT_EQ(one.size(), three.size());
  EXPECT_EQ(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)), 0);
}

// ---------------------------------------------------------------------------
// Decoding

using test::relative_error;

// One sequence of T tokens: the batched forward's rows, and decoding token by token.
struct Sequence {
  static constexpr int T = 12;
  MlaArgs a;
  RopeTable rope;
  MlaWeights<double> w;
  Tensor2<double> x, full;  // [T, D] each
  explicit Sequence(const MlaArgs& args)
      : a(args), rope(rope_table(args, T)), w(random_weights(args, 41)) {
    Rng rng(42);
    x = random_matrix(rng, T, a.dim);
    MlaCache<double> cache;
    mla_forward(full, cache, x, w, a, rope, 1, T);
  }
};

void check_decoding(const MlaArgs& a) {
  const Sequence s(a);
  MlaNaiveCache<double> naive(a, Sequence::T);
  std::vector<double> out_naive(a.dim), out_absorbed(a.dim);
  std::optional<MlaLatentCache<double>> latent;
  if (a.rope != MlaRope::Full) latent.emplace(a, Sequence::T);
  for (int t = 0; t < Sequence::T; ++t) {
    const double* x = &s.x(t, 0);
    mla_decode_naive(out_naive.data(), x, naive, s.w, a, s.rope);
    EXPECT_LE(relative_error(out_naive.data(), &s.full(t, 0), a.dim), kDecodeTolerance)
        << "naive cache vs full forward at position " << t;
    if (!latent) continue;
    mla_decode_absorbed(out_absorbed.data(), x, *latent, s.w, a, s.rope);
    EXPECT_LE(relative_error(out_absorbed.data(), out_naive.data(), a.dim), kDecodeTolerance)
        << "absorbed vs naive at position " << t;
    EXPECT_LE(relative_error(out_absorbed.data(), &s.full(t, 0), a.dim), kDecodeTolerance)
        << "absorbed vs full forward at position " << t;
  }
  EXPECT_EQ(naive.len, Sequence::T);
}

TEST_F(Mla, DecodingDecoupled) { check_decoding(small_args(MlaRope::Decoupled, 6)); }
TEST_F(Mla, DecodingDecoupledWithoutQueryCompression) {
  check_decoding(small_args(MlaRope::Decoupled, 0));
}
TEST_F(Mla, DecodingNoRope) { check_decoding(small_args(MlaRope::None, 6)); }
TEST_F(Mla, DecodingFullRopeNaiveCache) { check_decoding(small_args(MlaRope::Full, 6)); }
TEST_F(Mla, DecodingWithYarnScale) {
  MlaArgs a = small_args(MlaRope::Decoupled, 6);
  a.rope_factor = 40;
  a.mscale = 1.0;
  a.max_seq_len = 16384;
  check_decoding(a);
}
TEST_F(Mla, DecodingWithYarnFullRopeNaiveCache) {
  MlaArgs a = small_args(MlaRope::Full, 6);
  a.rope_factor = 40;
  a.max_seq_len = 16384;
  ASSERT_NE(a.rope_table(1, 10000.0).freq, rope_frequencies(a.rope_dim(), 10000.0));
  check_decoding(a);
}

// The latent cache holds d_c + d_rope numbers per token; the naive one
// H * (d_nope + d_rope) + H * d_v.
TEST_F(Mla, CacheSizes) {
  const MlaArgs a = small_args(MlaRope::Decoupled, 6);
  const MlaLatentCache<double> latent(a, 10);
  const MlaNaiveCache<double> naive(a, 10);
  EXPECT_EQ(latent.kv.size() + latent.pe.size(), 10u * (5 + 2));
  EXPECT_EQ(naive.k.size() + naive.v.size(), 10u * (3 * (4 + 2) + 3 * 3));
}

TEST_F(Mla, AbsorbedDecodingRefusesFullRope) {
  const MlaArgs a = small_args(MlaRope::Full, 6);
  const Sequence s(a);
  MlaLatentCache<double> latent(a, Sequence::T);
  std::vector<double> out(a.dim);
  EXPECT_THROW(mla_decode_absorbed(out.data(), &s.x(0, 0), latent, s.w, a, s.rope),
               std::invalid_argument);
}

TEST_F(Mla, DecodingPastTheCacheThrows) {
  const MlaArgs a = small_args(MlaRope::Decoupled, 6);
  const Sequence s(a);
  MlaLatentCache<double> latent(a, 2);
  std::vector<double> out(a.dim);
  mla_decode_absorbed(out.data(), &s.x(0, 0), latent, s.w, a, s.rope);
  mla_decode_absorbed(out.data(), &s.x(1, 0), latent, s.w, a, s.rope);
  EXPECT_THROW(mla_decode_absorbed(out.data(), &s.x(2, 0), latent, s.w, a, s.rope),
               std::invalid_argument);
}

TEST_F(Mla, ValidateNamesTheBadField) {
  MlaArgs a = small_args(MlaRope::Decoupled, 6);
  a.qk_rope_head_dim = 3;
  EXPECT_THROW(a.validate(), std::invalid_argument);
  a.rope = MlaRope::None;
  EXPECT_NO_THROW(a.validate());
  EXPECT_THROW(parse_mla_rope("partial"), std::invalid_argument);
  for (MlaRope r : {MlaRope::Decoupled, MlaRope::None, MlaRope::Full})
    EXPECT_EQ(parse_mla_rope(mla_rope_name(r)), r);
}

// Float runs the same code: its forward agrees with double's to float rounding.
TEST_F(Mla, FloatMatchesDouble) {
  const MlaArgs a = small_args(MlaRope::Decoupled, 6);
  const Sequence s(a);
  MlaWeights<float> wf(a);
  auto from = s.w;  // refs() needs a mutable object
  const auto src = from.refs("");
  const auto dst = wf.refs("");
  for (size_t i = 0; i < src.size(); ++i)
    std::transform(src[i].data, src[i].data + src[i].size(), dst[i].data,
                   [](double v) { return float(v); });
  Tensor2<float> xf = xt::cast<float>(s.x), outf, dxf;
  MlaCache<float> cache;
  mla_forward(outf, cache, xf, wf, a, s.rope, 1, Sequence::T);
  const Tensor2<double> back = xt::cast<double>(outf);
  EXPECT_LE(relative_error(back.data(), s.full.data(), back.size()), 1e-5);
  // The backward of the same upstream gradient, dout = the double output.
  MlaCache<double> cache_d;
  Tensor2<double> out_d, dx_d;
  mla_forward(out_d, cache_d, s.x, s.w, a, s.rope, 1, Sequence::T);
  MlaWeights<double> g(a);
  mla_backward(dx_d, g, out_d, cache_d, s.w, a, s.rope);
  MlaWeights<float> gf(a);
  const Tensor2<float> doutf = xt::cast<float>(out_d);
  mla_backward(dxf, gf, doutf, cache, wf, a, s.rope);
  const Tensor2<double> dx_back = xt::cast<double>(dxf);
  EXPECT_LE(relative_error(dx_back.data(), dx_d.data(), dx_d.size()), 1e-4);
}

}  // namespace
}  // namespace dslab
