// Rollouts (reference/rollout.hpp) and exact token log-probabilities with
// their backward (reference/logprobs.hpp).
//
// Oracles: greedy decoding without a cache (sampler.hpp's generate_tokens);
// the same sequence sampled alone or with another thread count; a closed-form
// nucleus; the unstopped rollout of the same streams for the stop strings;
// finite differences (double) for the backward; the sampling-time
// log-probabilities for the recomputed ones.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference/args_error.hpp"
#include "reference/logprobs.hpp"
#include "reference/rollout.hpp"
#include "reference/sampler.hpp"
#include "tests/finite_difference.hpp"
#include "tests/model_gradcheck.hpp"

namespace dslab {
namespace {

ModelArgs small_model(AttnKind attn = AttnKind::Mha, bool moe = false) {
  ModelArgs a;
  a.vocab_size = 128;
  a.dim = 32;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.inter_dim = 48;
  a.max_seq_len = 40;
  a.init_std = 0.3;
  a.attn = attn;
  a.mla = MlaArgs{.q_lora_rank = 8, .kv_lora_rank = 8, .qk_nope_head_dim = 4, .qk_rope_head_dim = 4,
                  .v_head_dim = 4};
  if (moe) {
    a.moe = MoeArgs{.moe_inter_dim = 8, .n_routed_experts = 4, .n_shared_experts = 1, .n_activated_experts = 2};
    a.n_dense_layers = 1;
  }
  return a;
}

std::vector<std::vector<int>> some_prompts() {
  return {{'a', 'b', 'c'}, {'x'}, {'h', 'e', 'l', 'l', 'o', ' '}, {'q', 'r'}};
}

TEST(Rollout, GreedyEqualsGenerateTokens) {
  Transformer<float> model(small_model());
  model.init_weights(5);
  RolloutArgs ra;
  ra.group_size = 2;
  ra.max_new_tokens = 20;
  ra.temperature = 0;
  const auto prompts = some_prompts();
  const auto out = sample_completions(model, prompts, ra, 1, 0);
  ASSERT_EQ(out.size(), prompts.size() * 2);
  SampleArgs sa;
  sa.tokens = ra.max_new_tokens;
  sa.temperature = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].prompt, int(i / 2));
    EXPECT_EQ(out[i].tokens, generate_tokens(model, prompts[i / 2], sa)) << "completion " << i;
    EXPECT_FALSE(out[i].stopped);
  }
}

// Sequence k of a batch of 8 is the sequence sampled alone on stream k, and
// the thread count changes nothing.
TEST(Rollout, SequencesDoNotDependOnBatchOrThreads) {
  Transformer<float> model(small_model(AttnKind::Mha, true));
  model.init_weights(6);
  RolloutArgs ra;
  ra.group_size = 2;
  ra.max_new_tokens = 24;
  ra.temperature = 1.0;
  ra.top_k = 40;
  ra.top_p = 0.95;
  const auto prompts = some_prompts();
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = sample_completions(model, prompts, ra, 42, 7);
  omp_set_num_threads(3);
  const auto three = sample_completions(model, prompts, ra, 42, 7);
  omp_set_num_threads(threads);
  ASSERT_EQ(one.size(), 8u);
  for (size_t k = 0; k < one.size(); ++k) {
    EXPECT_EQ(one[k].tokens, three[k].tokens) << k;
    EXPECT_EQ(one[k].logprobs, three[k].logprobs) << k;
    const auto alone = sample_sequences(model, {prompts[k / 2]}, {uint64_t(k)}, ra, 42, 7);
    EXPECT_EQ(alone[0].tokens, one[k].tokens) << "sequence " << k << " alone";
    for (size_t t = 0; t < alone[0].logprobs.size() && t < one[k].logprobs.size(); ++t)
      EXPECT_NEAR(alone[0].logprobs[t], one[k].logprobs[t], 1e-5);
  }
  // Group members differ (each its own stream); another step gives other samples.
  ra.group_size = 4;
  const auto group = sample_completions(model, {prompts[0]}, ra, 42, 7);
  for (int i = 0; i < 4; ++i)
    for (int j = i + 1; j < 4; ++j) EXPECT_NE(group[i].tokens, group[j].tokens) << i << " " << j;
  EXPECT_NE(sample_completions(model, prompts, ra, 42, 8)[0].tokens, one[0].tokens);
}

// Probabilities 0.5, 0.3, 0.15, 0.05 (logits = their logs).
TEST(Rollout, TopPKeepsTheSmallestSetWithMassAtLeastP) {
  const std::vector<double> p = {0.15, 0.5, 0.05, 0.3};
  std::vector<float> logits;
  for (double x : p) logits.push_back(float(std::log(x)));
  SampleArgs a;
  auto dist = [&](double top_p, int top_k = 0, double temperature = 1) {
    a.top_p = top_p, a.top_k = top_k, a.temperature = temperature;
    return sampling_distribution(logits.data(), 4, a);
  };
  auto d = dist(0.75);  // 0.5 < 0.75 <= 0.8: tokens 1 and 3
  EXPECT_NEAR(d[1], 0.5 / 0.8, 1e-6);
  EXPECT_NEAR(d[3], 0.3 / 0.8, 1e-6);
  EXPECT_EQ(d[0], 0.0);
  EXPECT_EQ(d[2], 0.0);
  d = dist(0.9);  // 0.8 < 0.9 <= 0.95: three tokens
  EXPECT_NEAR(d[0], 0.15 / 0.95, 1e-6);
  EXPECT_EQ(d[2], 0.0);
  d = dist(0.3);  // the most likely token alone
  EXPECT_NEAR(d[1], 1.0, 1e-12);
  d = dist(1.0);
  EXPECT_NEAR(d[2], 0.05, 1e-6);
  d = dist(0.9, 2);  // top_k first: {1, 3} renormalised (0.625, 0.375), then 0.625 < 0.9
  EXPECT_NEAR(d[1], 0.625, 1e-6);
  EXPECT_NEAR(d[3], 0.375, 1e-6);
  // Temperature 2: p_i^(1/2) normalised; sqrt: .707, .548, .387, .224 (sum 1.866)
  const double s = std::sqrt(0.5) + std::sqrt(0.3) + std::sqrt(0.15) + std::sqrt(0.05);
  d = dist(0.6, 0, 2.0);  // 0.379 < 0.6 <= 0.672: tokens 1, 3
  const double kept = std::sqrt(0.5) + std::sqrt(0.3);
  EXPECT_LT(std::sqrt(0.5) / s, 0.6);
  EXPECT_GE(kept / s, 0.6);
  EXPECT_NEAR(d[1], std::sqrt(0.5) / kept, 1e-6);
  EXPECT_EQ(d[0], 0.0);
}

// A stop string ends a completion at its first occurrence, stop string
// included; the tokens up to there are those of the unstopped rollout.
TEST(Rollout, StopStringsEndSequences) {
  Transformer<float> model(small_model());
  model.init_weights(8);
  RolloutArgs ra;
  ra.group_size = 4;
  ra.max_new_tokens = 30;
  ra.temperature = 1.5;
  const auto prompts = some_prompts();
  const auto free = sample_completions(model, prompts, ra, 3, 1);
  const std::string t0 = free[0].text();
  ra.stop = {t0.substr(4, 2), "\x01\x02\x03"};
  const auto stopped = sample_completions(model, prompts, ra, 3, 1);
  int n_stopped = 0;
  for (size_t i = 0; i < free.size(); ++i) {
    const std::string f = free[i].text(), s = stopped[i].text();
    size_t end = f.size();
    for (const std::string& st : ra.stop)
      if (size_t at = f.find(st); at != std::string::npos) end = std::min(end, at + st.size());
    EXPECT_EQ(s, f.substr(0, end)) << "completion " << i;
    EXPECT_EQ(stopped[i].stopped, end < f.size() || (end == f.size() && f.ends_with(ra.stop[0]))) << i;
    EXPECT_EQ(stopped[i].logprobs.size(), stopped[i].tokens.size());
    n_stopped += stopped[i].stopped;
  }
  EXPECT_TRUE(stopped[0].stopped);
  EXPECT_LE(stopped[0].tokens.size(), 6u);
  EXPECT_GE(n_stopped, 1);
}

TEST(Rollout, ArgsAndContextAreChecked) {
  auto key_of = [](RolloutArgs a) {
    try {
      a.validate();
    } catch (const ArgsError& e) {
      return e.keys().at(0);
    }
    return std::string("none");
  };
  RolloutArgs a;
  EXPECT_EQ(key_of(a), "none");
  a.top_p = 0;
  EXPECT_EQ(key_of(a), "rollout.top_p");
  a = {}, a.group_size = 0;
  EXPECT_EQ(key_of(a), "rollout.group_size");
  a = {}, a.temperature = -1;
  EXPECT_EQ(key_of(a), "rollout.temperature");
  a = {}, a.max_new_tokens = 0;
  EXPECT_EQ(key_of(a), "rollout.max_new_tokens");
  a = {}, a.top_k = -2;
  EXPECT_EQ(key_of(a), "rollout.top_k");
  a = {}, a.stop = {""};
  EXPECT_EQ(key_of(a), "rollout.stop");
  Transformer<float> model(small_model());
  RolloutArgs ra;
  ra.max_new_tokens = 35;  // 6 + 35 > max_seq_len 40
  try {
    sample_completions(model, some_prompts(), ra, 1, 0);
    FAIL() << "a prompt that does not fit";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("max_seq_len"), std::string::npos) << e.what();
  }
  ra.max_new_tokens = 34;  // 6 + 34 = 40 fits
  EXPECT_EQ(sample_completions(model, some_prompts(), ra, 1, 0).size(), 32u);
  EXPECT_THROW(sample_completions(model, {{}}, RolloutArgs{}, 1, 0), std::invalid_argument);
}

// The full forward recomputes the sampling-time log-probabilities (same
// temperature, top_k and top_p not entering them).
TEST(Logprobs, RecomputedEqualsSamplingTime) {
  for (AttnKind attn : {AttnKind::Mha, AttnKind::Mla}) {
    Transformer<float> model(small_model(attn, true));
    model.init_weights(9);
    RolloutArgs ra;
    ra.group_size = 3;
    ra.max_new_tokens = 25;
    ra.temperature = 0.7;
    ra.top_k = 20;
    const auto prompts = some_prompts();
    const auto out = sample_completions(model, prompts, ra, 5, 2);
    TokenLogprobs<float> lp;
    const PaddedBatch b = rollout_batch(prompts, out);
    token_logprobs(model, lp, b, ra.temperature);
    size_t n = 0;
    for (const auto& c : out) n += c.tokens.size();
    ASSERT_EQ(lp.logp.size(), n);
    const double gap = max_logprob_gap(out, lp);
    EXPECT_LE(gap, 1e-4) << name_of(attn);
    EXPECT_GT(gap, 0.0) << "two computations in float agree bitwise: suspicious";
    for (size_t r = 0; r < n; ++r) {
      EXPECT_GE(lp.entropy[r], 0.0f);
      EXPECT_LE(lp.entropy[r], std::log(128.0f) + 1e-4f);
    }
    // At another temperature the log-probabilities differ.
    TokenLogprobs<float> lp1;
    token_logprobs(model, lp1, b, 1.0);
    EXPECT_GT(max_logprob_gap(out, lp1), 1e-2);
  }
}

ModelArgs fd_model(AttnKind attn) {
  ModelArgs a;
  a.vocab_size = 24;
  a.dim = 8;
  a.n_layers = 2;
  a.n_heads = 2;
  a.n_kv_heads = 2;
  a.inter_dim = 12;
  a.max_seq_len = 12;
  a.init_std = 0.5;
  a.attn = attn;
  a.mla = MlaArgs{.q_lora_rank = 4, .kv_lora_rank = 4, .qk_nope_head_dim = 2, .qk_rope_head_dim = 2,
                  .v_head_dim = 2};
  a.moe = MoeArgs{.moe_inter_dim = 4, .n_routed_experts = 4, .n_shared_experts = 1, .n_activated_experts = 2};
  a.n_dense_layers = 1;
  return a;
}

// f = sum_r w_r logp_r + sum_r c_r . z_r + sum_n e_n . h_final_n, z_r = logits_r / T:
// the backward with dlogp = w, dz_extra = c, dh_extra = e against finite
// differences of f, for parameters of every kind.
void check_logprob_gradients(AttnKind attn) {
  Transformer<double> model(fd_model(attn));
  model.init_weights(13);
  Rng rng(17);
  test::randomize_gains(model, rng);
  const double T = 0.7;
  const std::vector<std::vector<int>> prompts = {{1, 2, 3}, {4}};
  std::vector<Completion> comps(3);
  comps[0].prompt = 0, comps[0].tokens = {5, 6, 7, 8};
  comps[1].prompt = 1, comps[1].tokens = {9, 10};
  comps[2].prompt = 0, comps[2].tokens = {11, 12, 13, 14, 15, 16};
  const PaddedBatch b = rollout_batch(prompts, comps);
  ASSERT_EQ(b.seq_len, 9);
  TokenLogprobs<double> lp;
  token_logprobs(model, lp, b, T);
  const size_t R = lp.logp.size(), V = 24, N = size_t(b.batch) * b.seq_len, D = 8;
  ASSERT_EQ(R, 12u);
  std::vector<double> w(R);
  for (double& x : w) x = rng.normal();
  Tensor2<double> c = xt::zeros<double>({R, V}), e = xt::zeros<double>({N, D});
  for (double& x : c) x = 0.3 * rng.normal();
  for (double& x : e) x = 0.3 * rng.normal();
  auto f = [&] {
    TokenLogprobs<double> l;
    token_logprobs(model, l, b, T);
    double s = 0;
    for (size_t r = 0; r < R; ++r) {
      s += w[r] * l.logp[r];
      for (size_t v = 0; v < V; ++v) s += c(r, v) * l.acts.logits(l.rows[r], v) / T;
    }
    for (size_t n = 0; n < N; ++n)
      for (size_t d = 0; d < D; ++d) s += e(n, d) * l.acts.h_final(n, d);
    return s;
  };
  model.zero_grad();
  token_logprobs(model, lp, b, T);
  token_logprobs_backward(model, lp, w, &c, &e);
  const auto params = model.params.refs();
  const auto grads = model.grads.refs();
  const std::vector<std::string> names = {
      "embed.weight", "layers.0.attn_norm.weight", "layers.0.ffn.w1.weight", "layers.1.ffn.gate.weight",
      "layers.1.ffn.experts.2.w2.weight", "layers.1.ffn.shared_experts.w3.weight", "norm.weight", "head.weight",
      attn == AttnKind::Mha ? "layers.1.attn.wk.weight" : "layers.1.attn.wkv_b.weight",
      attn == AttnKind::Mha ? "layers.0.attn.wq.weight" : "layers.0.attn.kv_norm.weight"};
  for (const std::string& name : names) {
    size_t i = 0;
    while (i < params.size() && params[i].name != name) ++i;
    ASSERT_LT(i, params.size()) << name;
    double err = 0, scale = 0;
    const size_t n = params[i].size(), stride = std::max<size_t>(1, n / 24);
    for (size_t j = 0; j < n; j += stride) {
      err = std::max(err, std::abs(test::numeric_derivative(f, params[i].data + j) - grads[i].data[j]));
      scale = std::max(scale, std::abs(grads[i].data[j]));
    }
    EXPECT_GT(scale, 0.0) << name;
    EXPECT_LE(err, 1e-6 * std::max(scale, 1.0)) << name;
  }
}

TEST(Logprobs, BackwardMatchesFiniteDifferencesMha) { check_logprob_gradients(AttnKind::Mha); }
TEST(Logprobs, BackwardMatchesFiniteDifferencesMla) { check_logprob_gradients(AttnKind::Mla); }

// Right padding is harmless: each row's log-probabilities equal its own
// unpadded forward's (double, to rounding).
TEST(Logprobs, PaddingDoesNotChangeLogprobs) {
  Transformer<double> model(fd_model(AttnKind::Mha));
  model.init_weights(21);
  const std::vector<std::vector<int>> prompts = {{1, 2}, {3, 4, 5}};
  std::vector<Completion> comps(2);
  comps[0].prompt = 0, comps[0].tokens = {6, 7};
  comps[1].prompt = 1, comps[1].tokens = {8, 9, 10, 11, 12};
  TokenLogprobs<double> both;
  token_logprobs(model, both, rollout_batch(prompts, comps), 1.0);
  TokenLogprobs<double> first;
  token_logprobs(model, first, rollout_batch(prompts, {comps[0]}), 1.0);
  ASSERT_EQ(first.logp.size(), 2u);
  for (size_t r = 0; r < 2; ++r) EXPECT_NEAR(first.logp[r], both.logp[r], 1e-12);
  // A response token at position 0 has no prefix.
  PaddedBatch bad{1, 2, {1, 2}, {1, 1}};
  EXPECT_THROW(token_logprobs(model, first, bad, 1.0), std::invalid_argument);
}

}  // namespace
}  // namespace dslab
