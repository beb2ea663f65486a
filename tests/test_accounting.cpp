// reference/accounting against three oracles it does not share code with:
// - DeepSeek's published configs (FACTS.md, DeepSeek-V3 inference/configs)
//   and the totals the reports publish for them; each config's tensors listed
//   one by one as DeepSeek-V3's inference/model.py builds them;
// - the tensors of the reference Transformer (its parameters plus the expert
//   biases it keeps as buffers) and the caches its decode functions allocate;
// - closed forms for tiny configs, counted by hand here.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "reference/accounting.hpp"
#include "reference/attention.hpp"
#include "reference/mla.hpp"
#include "reference/transformer.hpp"

namespace dslab {
namespace {

// ---------------------------------------------------------------------------
// DeepSeek's published configs

// A DeepSeek model as inference/configs/*.json describes it (FACTS.md's table):
// MLA with decoupled RoPE, MoE from layer n_dense on.
struct DeepSeekConfig {
  int vocab_size, dim, inter_dim, moe_inter_dim, n_layers, n_dense_layers, n_heads;
  int n_routed, n_shared, n_activated, n_expert_groups, n_limited_groups;
  ScoreFunc score_func;
  int q_lora_rank;
};

const DeepSeekConfig kV3{129280, 7168, 18432, 2048, 61, 3, 128, 256, 1, 8, 8, 4,
                         ScoreFunc::Sigmoid, 1536};
const DeepSeekConfig kV2{102400, 5120, 12288, 1536, 60, 1, 128, 160, 2, 6, 8, 3,
                         ScoreFunc::Softmax, 1536};
const DeepSeekConfig kV2Lite{102400, 2048, 10944, 1408, 27, 1, 16, 64, 2, 6, 1, 1,
                             ScoreFunc::Softmax, 0};

ModelArgs model_args(const DeepSeekConfig& c) {
  ModelArgs m;
  m.vocab_size = c.vocab_size;
  m.dim = c.dim;
  m.inter_dim = c.inter_dim;
  m.n_layers = c.n_layers;
  m.n_dense_layers = c.n_dense_layers;
  m.n_heads = c.n_heads;
  m.n_kv_heads = c.n_heads;
  m.attn = AttnKind::Mla;
  m.mla = MlaArgs{.q_lora_rank = c.q_lora_rank, .kv_lora_rank = 512, .qk_nope_head_dim = 128,
                  .qk_rope_head_dim = 64, .v_head_dim = 128};
  m.moe = MoeArgs{.moe_inter_dim = c.moe_inter_dim, .n_routed_experts = c.n_routed,
                  .n_shared_experts = c.n_shared, .n_activated_experts = c.n_activated,
                  .n_expert_groups = c.n_expert_groups, .n_limited_groups = c.n_limited_groups,
                  .score_func = c.score_func};
  // V3's sigmoid gate carries Eq. (24)'s bias.
  if (c.score_func == ScoreFunc::Sigmoid) m.balance.bias_update = BiasUpdate::Sign;
  return m;
}

// model.py's Transformer.__init__ (world_size 1), tensor by tensor: name and
// element count. A routed expert's tensors are marked, so that the activated
// count can keep n_activated of them per layer.
struct Tensor {
  std::string name;
  int64_t size;
  bool routed_expert = false;
};

std::vector<Tensor> model_py_tensors(const DeepSeekConfig& c) {
  std::vector<Tensor> t;
  const int64_t D = c.dim, H = c.n_heads, rq = c.q_lora_rank, dc = 512, dn = 128, dr = 64, dv = 128;
  t.push_back({"embed.weight", int64_t(c.vocab_size) * D});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    if (rq > 0) {
      t.push_back({p + "attn.wq_a.weight", rq * D});
      t.push_back({p + "attn.q_norm.weight", rq});
      t.push_back({p + "attn.wq_b.weight", H * (dn + dr) * rq});
    } else {
      t.push_back({p + "attn.wq.weight", H * (dn + dr) * D});
    }
    t.push_back({p + "attn.wkv_a.weight", (dc + dr) * D});
    t.push_back({p + "attn.kv_norm.weight", dc});
    t.push_back({p + "attn.wkv_b.weight", H * (dn + dv) * dc});
    t.push_back({p + "attn.wo.weight", D * H * dv});
    if (l < c.n_dense_layers) {  // MLP(dim, inter_dim)
      for (const char* w : {"w1", "w2", "w3"})
        t.push_back({p + "ffn." + w + ".weight", D * c.inter_dim});
    } else {  // MoE
      t.push_back({p + "ffn.gate.weight", c.n_routed * D});
      if (c.dim == 7168) t.push_back({p + "ffn.gate.bias", c.n_routed});  // model.py's rule
      for (int e = 0; e < c.n_routed; ++e)
        for (const char* w : {"w1", "w2", "w3"})
          t.push_back({p + "ffn.experts." + std::to_string(e) + "." + w + ".weight",
                       D * c.moe_inter_dim, true});
      for (const char* w : {"w1", "w2", "w3"})  // MLP(dim, n_shared_experts * moe_inter_dim)
        t.push_back({p + "ffn.shared_experts." + w + ".weight", D * c.n_shared * c.moe_inter_dim});
    }
    t.push_back({p + "attn_norm.weight", D});
    t.push_back({p + "ffn_norm.weight", D});
  }
  t.push_back({"norm.weight", D});
  t.push_back({"head.weight", int64_t(c.vocab_size) * D});
  return t;
}

// All of model.py's tensors, and those one token multiplies by: not the
// embedding, and n_activated of each layer's n_routed experts.
std::pair<int64_t, int64_t> model_py_counts(const DeepSeekConfig& c) {
  int64_t total = 0, routed = 0;
  for (const Tensor& x : model_py_tensors(c)) {
    total += x.size;
    if (x.routed_expert) routed += x.size;
  }
  const int64_t embedding = int64_t(c.vocab_size) * c.dim;
  const int64_t activated = total - embedding - routed + routed / c.n_routed * c.n_activated;
  return {total, activated};
}

struct Published {
  const char* name;
  DeepSeekConfig config;
  double total_b, activated_b;  // as the reports publish them, in billions
  double total_unit;            // the last digit published
  double total_ours, activated_ours;  // FACTS.md, "independent checks already passed"
};

class PublishedConfigs : public ::testing::TestWithParam<Published> {};

// The totals round to the published figures. The activated counts are
// published to two digits and depend on what is counted (here: everything a
// token multiplies by, no embedding lookup), so they must lie within 3%.
TEST_P(PublishedConfigs, TotalsMatchTheReportsAndModelPyTensors) {
  const Published& p = GetParam();
  const ModelArgs m = model_args(p.config);
  const ParamCounts total = total_params(m), act = activated_params(m);
  const auto [py_total, py_activated] = model_py_counts(p.config);
  EXPECT_EQ(total.total(), py_total);
  EXPECT_EQ(act.total(), py_activated);
  EXPECT_LE(std::abs(total.total() / 1e9 - p.total_b), p.total_unit / 2) << total.total();
  EXPECT_LE(std::abs(act.total() / 1e9 - p.activated_b) / p.activated_b, 0.03) << act.total();
  EXPECT_NEAR(total.total() / 1e9, p.total_ours, 0.005);
  EXPECT_NEAR(act.total() / 1e9, p.activated_ours, 0.005);
  // The inference configs have no MTP module; only the embedding and the
  // routed experts differ between total and activated.
  EXPECT_EQ(total.mtp, 0);
  EXPECT_EQ(act.embedding, 0);
  EXPECT_EQ(total.moe_routed_experts * p.config.n_activated,
            act.moe_routed_experts * p.config.n_routed);
  EXPECT_EQ(total.total() - total.embedding - total.moe_routed_experts,
            act.total() - act.moe_routed_experts);
}

INSTANTIATE_TEST_SUITE_P(
    DeepSeek, PublishedConfigs,
    ::testing::Values(Published{"V3", kV3, 671, 37, 1, 671.03, 36.63},
                      Published{"V2", kV2, 236, 21, 1, 235.74, 20.85},
                      Published{"V2Lite", kV2Lite, 15.7, 2.4, 0.1, 15.71, 2.45}),
    [](const auto& info) { return std::string(info.param.name); });

// Sec. 2.1.3 and FACTS.md: V3 caches d_c + d_h^R = 512 + 64 = 576 numbers per
// token and layer, 576 x 61 = 35,136 per token, 1.76% of MHA's
// 2 n_h d_h l = 2 x 128 x 128 x 61 = 1,998,848.
TEST(Accounting, V3KvCache) {
  const ModelArgs m = model_args(kV3);
  EXPECT_EQ(decode_path(m), DecodePath::Absorbed);
  EXPECT_EQ(kv_cache_per_layer(m), 576);
  EXPECT_EQ(kv_cache_per_token(m), 35136);
  EXPECT_EQ(attention_head_dim(m), 128);
  const int64_t mha = 61 * mha_cache_per_layer(128, attention_head_dim(m));
  EXPECT_EQ(mha, 1998848);
  EXPECT_NEAR(100.0 * 35136 / mha, 1.76, 0.005);
  // The naive path keeps every head's key (192) and value (128).
  EXPECT_EQ(kv_cache_per_layer(m, DecodePath::Naive), 128 * (192 + 128));
}

// Sec. 2.1.3: with d_c = 4 d_h and d_h^R = d_h / 2, V2 caches 9/2 d_h per
// token and layer; 34.6K numbers per token over its 60 layers (V2 report).
TEST(Accounting, V2KvCache) {
  const ModelArgs m = model_args(kV2);
  const int64_t d_h = attention_head_dim(m);
  EXPECT_EQ(2 * kv_cache_per_layer(m), 9 * d_h);
  EXPECT_EQ(std::round(kv_cache_per_token(m) / 100.0) / 10, 34.6);
}

// ---------------------------------------------------------------------------
// Closed forms of tiny configs, counted by hand

ModelArgs tiny_mha(int n_kv_heads) {
  ModelArgs m;
  m.vocab_size = 50;
  m.dim = 16;
  m.n_layers = 1;
  m.n_heads = 4;
  m.n_kv_heads = n_kv_heads;
  m.inter_dim = 24;
  return m;
}

// One dense MHA layer: embedding and head V D each; W^Q, W^K, W^V, W^O D x D
// each; w1, w2, w3 D x F each; attn_norm and ffn_norm D each; the final norm D.
TEST(Accounting, OneLayerMhaModel) {
  const ModelArgs m = tiny_mha(4);
  const int64_t V = 50, D = 16, F = 24;
  const ParamCounts c = total_params(m);
  EXPECT_EQ(c.total(), V * D * 2 + 4 * D * D + 3 * D * F + 2 * D + D);
  EXPECT_EQ(c.attention, 4 * D * D);
  EXPECT_EQ(c.dense_ffn, 3 * D * F);
  EXPECT_EQ(c.norms, 3 * D);
  EXPECT_EQ(c.moe_routed_experts + c.moe_shared_experts + c.moe_gate + c.mtp, 0);
  EXPECT_EQ(activated_params(m).total(), c.total() - V * D);  // no embedding lookup
  // The weights: every matrix but the embedding, 2 FLOPs per entry.
  EXPECT_EQ(weight_flops_per_token(m), 2.0 * (V * D + 4 * D * D + 3 * D * F));
  // Keys and values of 4 heads of d_h = 4; at context C each head scores C
  // keys and sums C values of d_h: 2 x 4 x (4 + 4) x C.
  EXPECT_EQ(kv_cache_per_layer(m), 2 * 4 * 4);
  EXPECT_EQ(naive_attention_flops(m, 10), 2.0 * 4 * (4 + 4) * 10);
  EXPECT_EQ(decode_flops_per_token(m, 10, DecodePath::Naive),
            weight_flops_per_token(m) + 2.0 * 4 * 8 * 10);
  // Prefill of 9 tokens: token t attends t positions, 5 on average.
  EXPECT_EQ(prefill_flops_per_token(m, 9), weight_flops_per_token(m) + 2.0 * 4 * 8 * 5);
}

// GQA with 2 key/value heads and MQA with 1: W^K and W^V shrink to
// [n_kv d_h, D], and so does the cache.
TEST(Accounting, GroupedAndMultiQueryAttention) {
  const int64_t D = 16, d_h = 4;
  for (int n_kv : {2, 1}) {
    const ModelArgs m = tiny_mha(n_kv);
    EXPECT_EQ(attention_params(m).matrices, 2 * D * D + 2 * D * n_kv * d_h) << n_kv;
    EXPECT_EQ(kv_cache_per_layer(m), 2 * n_kv * d_h) << n_kv;
    EXPECT_EQ(kv_cache_per_layer(m), mha_cache_per_layer(n_kv, d_h)) << n_kv;
  }
}

ModelArgs tiny_mla(int q_lora_rank, MlaRope rope) {
  ModelArgs m = tiny_mha(4);
  m.attn = AttnKind::Mla;
  m.mla = MlaArgs{.q_lora_rank = q_lora_rank, .kv_lora_rank = 10, .qk_nope_head_dim = 6,
                  .qk_rope_head_dim = 2, .v_head_dim = 5, .rope = rope};
  return m;
}

// MLA with D = 16, H = 4, d_c = 10, d_h = 6, d_h^R = 2, d_v = 5.
TEST(Accounting, MlaAttentionLayer) {
  const int64_t D = 16, H = 4, dc = 10, dn = 6, dr = 2, dv = 5;
  // No query compression (V2-Lite): wq [H (d_h + d_h^R), D].
  const AttentionParams direct = attention_params(tiny_mla(0, MlaRope::Decoupled));
  EXPECT_EQ(direct.matrices, H * 8 * D + (dc + dr) * D + H * (dn + dv) * dc + D * H * dv);
  EXPECT_EQ(direct.norms, dc);  // kv_norm
  // d'_c = 12: W^DQ [12, D], W^UQ with W^QR [H (d_h + d_h^R), 12], and q_norm [12].
  const AttentionParams low_rank = attention_params(tiny_mla(12, MlaRope::Decoupled));
  EXPECT_EQ(low_rank.matrices - direct.matrices, 12 * D + H * 8 * 12 - H * 8 * D);
  EXPECT_EQ(low_rank.norms, 12 + dc);
  // Decoupled and no RoPE cache c_KV and k^R; full RoPE keeps every head's key and value.
  const ModelArgs decoupled = tiny_mla(0, MlaRope::Decoupled), none = tiny_mla(0, MlaRope::None),
                  full = tiny_mla(0, MlaRope::Full);
  EXPECT_EQ(kv_cache_per_layer(decoupled), dc + dr);
  EXPECT_EQ(kv_cache_per_layer(none), dc + dr);
  EXPECT_EQ(decode_path(full), DecodePath::Naive);
  EXPECT_EQ(kv_cache_per_layer(full), H * (dn + dr + dv));
  // Per query and context position: naive 2 H (d_qk + d_v), absorbed
  // 2 H (d_c + d_h^R) + 2 H d_c, recomputing k^C 2 H d_h d_c.
  EXPECT_EQ(naive_attention_flops(decoupled, 3), 2.0 * H * (8 + dv) * 3);
  EXPECT_EQ(absorbed_attention_flops(decoupled, 3), 2.0 * H * (dc + dr) * 3 + 2.0 * H * dc * 3);
  EXPECT_EQ(key_recompute_flops(full, 3), 2.0 * H * dn * dc * 3);
  EXPECT_EQ(decode_flops_per_token(full, 3, DecodePath::LatentRecompute),
            weight_flops_per_token(full) + absorbed_attention_flops(full, 3) +
                key_recompute_flops(full, 3));
}

// v3_gate: V3's gate, sigmoid scores and Eq. (24)'s bias; else softmax without a bias.
ModelArgs tiny_moe(bool v3_gate) {
  ModelArgs m = tiny_mha(4);
  m.n_layers = 3;
  m.n_dense_layers = 1;
  m.moe = MoeArgs{.moe_inter_dim = 8, .n_routed_experts = 6, .n_shared_experts = 2,
                  .n_activated_experts = 2};
  if (v3_gate) {
    m.moe.score_func = ScoreFunc::Sigmoid;
    m.balance.bias_update = BiasUpdate::Sign;
  }
  return m;
}

// Two MoE layers of 6 routed experts (2 per token) and 2 shared experts of
// moe_inter_dim 8 after one dense layer of inter_dim 24.
TEST(Accounting, MoeLayers) {
  const int64_t D = 16, expert = 3 * D * 8;
  for (bool bias : {false, true}) {
    const ModelArgs m = tiny_moe(/*v3_gate=*/bias);
    const ParamCounts c = total_params(m), act = activated_params(m);
    EXPECT_EQ(n_moe_layers(m), 2);
    EXPECT_EQ(n_dense_ffn_layers(m), 1);
    EXPECT_EQ(c.dense_ffn, 3 * D * 24);
    EXPECT_EQ(c.moe_routed_experts, 2 * 6 * expert);
    EXPECT_EQ(act.moe_routed_experts, 2 * 2 * expert);
    EXPECT_EQ(c.moe_shared_experts, 2 * 2 * expert);
    EXPECT_EQ(act.moe_shared_experts, c.moe_shared_experts);  // every token runs them
    // The centroids e_i [6, D] of Eq. (20), and Eq. (24)'s b [6] when there is one.
    EXPECT_EQ(c.moe_gate, 2 * (6 * D + (bias ? 6 : 0)));
    EXPECT_EQ(act.moe_gate, c.moe_gate);
  }
}

// The FLOPs count every activated matrix entry once (2 FLOPs each) and never
// an expert bias, whichever gate carries it: a sigmoid gate without a bias and
// a softmax gate with one count the same.
TEST(Accounting, WeightFlopsSkipExpertBiasesOnly) {
  const int64_t D = 16, V = 50;  // the head [V, D]; the embedding is a lookup
  for (const ScoreFunc f : {ScoreFunc::Softmax, ScoreFunc::Sigmoid})
    for (const BiasUpdate b : {BiasUpdate::None, BiasUpdate::Sign}) {
      ModelArgs m = tiny_moe(false);
      m.moe.score_func = f;
      m.balance.bias_update = b;
      const int64_t attention = 4 * D * D, dense = 3 * D * 24, expert = 3 * D * 8;
      const int64_t moe_layer = attention + (2 + 2) * expert + 6 * D;  // 2 routed + 2 shared, the gate
      const int64_t matrices = V * D + (attention + dense) + 2 * moe_layer;
      EXPECT_EQ(weight_flops_per_token(m), 2.0 * double(matrices))
          << name_of(f) << ", bias_update " << name_of(b);
    }
}

// MTP modules: enorm, hnorm [D], eh_proj [D, 2D], a block and a norm [D]; not activated.
TEST(Accounting, MtpModules) {
  const int64_t D = 16, F = 24;
  ModelArgs m = tiny_mha(4);
  m.mtp.depth = 2;
  const int64_t block = 4 * D * D + 2 * D + 3 * D * F;  // attention, attn_norm, ffn_norm, FFN
  EXPECT_EQ(mtp_module_params(m), 2 * D + 2 * D * D + block + D);
  EXPECT_EQ(total_params(m).mtp, 2 * mtp_module_params(m));
  EXPECT_EQ(activated_params(m).mtp, 0);
  EXPECT_EQ(activated_params(m).total(), activated_params(tiny_mha(4)).total());
  // In an MoE model the module's block is an MoE block with all its experts and gate.
  ModelArgs moe = tiny_moe(true);
  moe.mtp.depth = 1;
  const int64_t moe_ffn = (6 + 2) * 3 * D * 8 + 6 * D + 6;
  EXPECT_EQ(mtp_module_params(moe), 2 * D + 2 * D * D + 4 * D * D + 2 * D + moe_ffn + D);
}

// ---------------------------------------------------------------------------
// Against the reference Transformer

// The reference's tensors: trained parameters, plus the expert biases it keeps as buffers.
int64_t reference_tensors(const ModelArgs& m) {
  Transformer<float> model(m);
  int64_t biases = 0;
  for (const auto& b : model.params.buffers()) biases += int64_t(b.size());
  return int64_t(model.num_parameters()) + biases;
}

// The reference's 2-D tensors one token multiplies by: every matrix but the
// embedding, with n_activated of each MoE layer's n_routed experts.
double reference_activated_matrices(const ModelArgs& m) {
  TransformerParams<float> p(m);
  double matrices = 0;
  for (const auto& r : p.refs())
    if (r.shape.size() == 2 && r.name != "embed.weight" && r.name.rfind("mtp.", 0) != 0)
      matrices += double(r.size());
  const double expert = 3.0 * m.dim * m.moe.moe_inter_dim;
  return matrices -
         double(n_moe_layers(m)) * (m.moe.n_routed_experts - m.moe.n_activated_experts) * expert;
}

struct Case {
  const char* name;
  ModelArgs args;
};

std::vector<Case> reference_cases() {
  std::vector<Case> cases;
  cases.push_back({"mha", tiny_mha(4)});
  cases.push_back({"gqa", tiny_mha(2)});
  cases.push_back({"mla_decoupled", tiny_mla(12, MlaRope::Decoupled)});
  cases.push_back({"mla_none", tiny_mla(0, MlaRope::None)});
  cases.push_back({"mla_full", tiny_mla(0, MlaRope::Full)});
  cases.push_back({"moe_softmax", tiny_moe(false)});
  cases.push_back({"moe_sigmoid_bias", tiny_moe(true)});
  ModelArgs mtp = tiny_mha(2);
  mtp.n_layers = 2;
  mtp.mtp.depth = 3;
  cases.push_back({"dense_mtp", mtp});
  ModelArgs moe_mtp = tiny_moe(true);
  moe_mtp.mtp.depth = 2;
  cases.push_back({"moe_sigmoid_bias_mtp", moe_mtp});
  ModelArgs mla_moe = tiny_moe(true);
  mla_moe.attn = AttnKind::Mla;
  mla_moe.mla = tiny_mla(12, MlaRope::Decoupled).mla;
  mla_moe.mtp.depth = 1;
  cases.push_back({"mla_sigmoid_bias_mtp", mla_moe});
  return cases;
}

// Every gate here is V3's (sigmoid with a bias) or a softmax one without;
// reference/accounting.hpp says how weight_flops_per_token counts the other two.
TEST(Accounting, TotalsEqualTheReferenceTensors) {
  for (const Case& c : reference_cases()) {
    EXPECT_EQ(total_params(c.args).total(), reference_tensors(c.args)) << c.name;
    EXPECT_EQ(weight_flops_per_token(c.args), 2 * reference_activated_matrices(c.args)) << c.name;
  }
}

// The cache per token and layer is what the reference's decode functions
// allocate per position: MlaLatentCache (c_KV, k^R), MlaNaiveCache (keys,
// values of every head) or KvCache (keys, values of every key/value head).
TEST(Accounting, KvCacheIsWhatTheReferenceDecodesWith) {
  for (const Case& c : reference_cases()) {
    const ModelArgs& m = c.args;
    int64_t per_position = 0;
    if (m.attn == AttnKind::Mla) {
      const MlaLatentCache<float> latent(m.mla_args(), 1);
      const MlaNaiveCache<float> naive(m.mla_args(), 1);
      EXPECT_EQ(kv_cache_per_layer(m, DecodePath::Absorbed), int64_t(latent.kv.size() + latent.pe.size()))
          << c.name;
      EXPECT_EQ(kv_cache_per_layer(m, DecodePath::Naive), int64_t(naive.k.size() + naive.v.size()))
          << c.name;
      per_position = decode_path(m) == DecodePath::Absorbed ? latent.kv.size() + latent.pe.size()
                                                            : naive.k.size() + naive.v.size();
    } else {
      const AttentionShape s{1, 1, m.n_heads, m.n_kv_heads, m.head_dim(), m.head_dim(), 1.0};
      const KvCache<float> kv(s, 1);
      per_position = kv.k.size() + kv.v.size();
    }
    EXPECT_EQ(kv_cache_per_layer(m), per_position) << c.name;
    EXPECT_EQ(kv_cache_per_token(m), m.n_layers * per_position) << c.name;
  }
}

// ---------------------------------------------------------------------------
// RL training memory (Sec. 2.5, Fig. 5)

// The parts in the order RlMemory lists them, and their sum.
std::vector<int64_t> parts(const RlMemory& r) {
  return {r.policy_weights, r.policy_gradients, r.policy_optimizer, r.reference_weights,
          r.value_weights,  r.value_gradients,  r.value_optimizer,  r.reward_weights};
}

int64_t sum_of_parts(const RlMemory& r) {
  int64_t s = 0;
  for (int64_t x : parts(r)) s += x;
  return s;
}

// Every setting of the value and reward model, in the default and V3's precisions
// and one whose four byte counts all differ (so that no part can take another's).
std::vector<RlMemoryArgs> rl_settings() {
  std::vector<RlMemoryArgs> out;
  RlMemoryArgs odd;
  odd.weight_bytes = 1;
  odd.gradient_bytes = 4;
  odd.optimizer_bytes = 6;
  odd.frozen_bytes = 3;
  for (RlMemoryArgs a : {RlMemoryArgs{}, RlMemoryArgs::deepseek_v3(), odd})
    for (const ValueModel v : enum_values<ValueModel>())
      for (const RewardModel r : enum_values<RewardModel>()) {
        a.value_model = v;
        a.reward_model = r;
        out.push_back(a);
      }
  return out;
}

// The one-layer MHA model counted by hand (OneLayerMhaModel): P = 2 V D + 4 D^2
// + 3 D F + 3 D = 3,824. Mixed-precision AdamW: the policy 2 P + 2 P + 12 P,
// the reference 2 P; PPO's value model of the policy's size 16 P again, the
// reward model 2 P.
TEST(RlMemory, TinyModelByHand) {
  const ModelArgs m = tiny_mha(4);
  const int64_t V = 50, D = 16, F = 24, P = 2 * V * D + 4 * D * D + 3 * D * F + 3 * D;
  ASSERT_EQ(P, 3824);
  const RlMemory ppo = rl_training_memory(m, RlAlgorithm::Ppo);
  const RlMemory grpo = rl_training_memory(m, RlAlgorithm::Grpo);
  EXPECT_EQ(parts(ppo), (std::vector<int64_t>{2 * P, 2 * P, 12 * P, 2 * P, 2 * P, 2 * P, 12 * P,
                                               2 * P}));
  EXPECT_EQ(ppo.total, 36 * P);
  EXPECT_EQ(parts(grpo), (std::vector<int64_t>{2 * P, 2 * P, 12 * P, 2 * P, 0, 0, 0, 2 * P}));
  EXPECT_EQ(grpo.total, 20 * P);
  // R1's rule-based rewards and a value head [1, D] with its bias: D + 1 = 17.
  RlMemoryArgs a;
  a.value_model = ValueModel::Head;
  a.reward_model = RewardModel::RuleBased;
  EXPECT_EQ(rl_training_memory(m, RlAlgorithm::Ppo, a).total, 18 * P + 16 * (D + 1));
  EXPECT_EQ(rl_training_memory(m, RlAlgorithm::Grpo, a).total, 18 * P);
  // V3's precision: 2 + 4 + (4 + 2 + 2) = 14 bytes per trained parameter.
  const RlMemoryArgs v3 = RlMemoryArgs::deepseek_v3();
  EXPECT_EQ(rl_training_memory(m, RlAlgorithm::Ppo, v3).total, (14 + 2 + 14 + 2) * P);
  EXPECT_EQ(rl_training_memory(m, RlAlgorithm::Grpo, v3).total, (14 + 2 + 2) * P);
}

// PPO less GRPO is the value model, its gradients and optimizer states, exactly,
// and nothing else differs; every total is the sum of its parts. Over the
// reference-checked models (their P equals the reference Transformer's tensors).
TEST(RlMemory, PpoMinusGrpoIsTheValueModel) {
  for (const Case& c : reference_cases())
    for (const RlMemoryArgs& a : rl_settings()) {
      const ModelArgs& m = c.args;
      const std::string what = std::string(c.name) + ", value " +
                               std::string(name_of(a.value_model)) + ", reward " +
                               std::string(name_of(a.reward_model)) + ", weight bytes " +
                               std::to_string(a.weight_bytes);
      const RlMemory ppo = rl_training_memory(m, RlAlgorithm::Ppo, a);
      const RlMemory grpo = rl_training_memory(m, RlAlgorithm::Grpo, a);
      const int64_t P = reference_tensors(m);
      const int64_t Nv = a.value_model == ValueModel::Policy ? P : int64_t(m.dim) + 1;
      const int64_t trained = a.weight_bytes + a.gradient_bytes + a.optimizer_bytes;
      EXPECT_EQ(ppo.total - grpo.total, Nv * trained) << what;
      EXPECT_EQ(ppo.total - grpo.total, ppo.value_weights + ppo.value_gradients + ppo.value_optimizer)
          << what;
      EXPECT_EQ(ppo.value_weights, Nv * a.weight_bytes) << what;
      EXPECT_EQ(ppo.value_gradients, Nv * a.gradient_bytes) << what;
      EXPECT_EQ(ppo.value_optimizer, Nv * a.optimizer_bytes) << what;
      EXPECT_EQ(grpo.value_weights + grpo.value_gradients + grpo.value_optimizer, 0) << what;
      std::vector<int64_t> p = parts(ppo), g = parts(grpo);
      for (size_t i : {4, 5, 6}) p[i] = g[i] = 0;  // the value model's parts
      EXPECT_EQ(p, g) << what;
      EXPECT_EQ(ppo.total, sum_of_parts(ppo)) << what;
      EXPECT_EQ(grpo.total, sum_of_parts(grpo)) << what;
      const int64_t R = a.reward_model == RewardModel::Policy ? P : 0;
      EXPECT_EQ(grpo.total, P * trained + (P + R) * a.frozen_bytes) << what;
    }
}

// DeepSeek-V3 as the policy: P = 671,026,419,200, model.py's tensors counted
// one by one (model_py_counts). Defaults: PPO 36 P = 24.16 TB, GRPO 20 P =
// 13.42 TB, ratio 1.8; V3's precision with R1's rule-based rewards: GRPO
// 16 P = 10.74 TB, PPO 30 P, ratio 1.875.
TEST(RlMemory, DeepSeekV3FollowsFromItsParameterCount) {
  const ModelArgs m = model_args(kV3);
  const int64_t P = model_py_counts(kV3).first;
  EXPECT_NEAR(P / 1e9, 671.03, 0.005);
  const RlMemory ppo = rl_training_memory(m, RlAlgorithm::Ppo);
  const RlMemory grpo = rl_training_memory(m, RlAlgorithm::Grpo);
  EXPECT_EQ(ppo.total, 36 * P);
  EXPECT_EQ(grpo.total, 20 * P);
  EXPECT_EQ(ppo.policy_optimizer, 12 * P);
  EXPECT_EQ(ppo.value_weights + ppo.value_gradients + ppo.value_optimizer, 16 * P);
  EXPECT_NEAR(grpo.total / 1e12, 13.42, 0.005);
  EXPECT_DOUBLE_EQ(double(ppo.total) / double(grpo.total), 1.8);
  RlMemoryArgs r1 = RlMemoryArgs::deepseek_v3();
  r1.reward_model = RewardModel::RuleBased;
  const RlMemory grpo_r1 = rl_training_memory(m, RlAlgorithm::Grpo, r1);
  EXPECT_EQ(grpo_r1.policy_gradients, 4 * P);
  EXPECT_EQ(grpo_r1.policy_optimizer, 8 * P);
  EXPECT_EQ(grpo_r1.reward_weights, 0);
  EXPECT_EQ(grpo_r1.total, 16 * P);
  EXPECT_EQ(rl_training_memory(m, RlAlgorithm::Ppo, r1).total, 30 * P);
  // A value head instead: D + 1 = 7,169 parameters, 14 bytes each.
  r1.value_model = ValueModel::Head;
  EXPECT_EQ(rl_training_memory(m, RlAlgorithm::Ppo, r1).total, 16 * P + 14 * 7169);
}

TEST(RlMemory, ArgsValidateWithKeyPaths) {
  const ModelArgs m = tiny_mha(4);
  auto error_of = [&](void (*set)(RlMemoryArgs&)) {
    RlMemoryArgs a;
    set(a);
    try {
      rl_training_memory(m, RlAlgorithm::Grpo, a);
    } catch (const ArgsError& e) {
      return e.keys().at(0) + ": " + e.what();
    }
    return std::string("no error");
  };
  EXPECT_EQ(error_of([](RlMemoryArgs& a) { a.weight_bytes = 0; }),
            "rl_memory.weight_bytes: rl_memory.weight_bytes = 0 must be in [1, 64] bytes per "
            "parameter");
  EXPECT_EQ(error_of([](RlMemoryArgs& a) { a.gradient_bytes = 65; }),
            "rl_memory.gradient_bytes: rl_memory.gradient_bytes = 65 must be in [1, 64] bytes per "
            "parameter");
  EXPECT_EQ(error_of([](RlMemoryArgs& a) { a.optimizer_bytes = -1; }),
            "rl_memory.optimizer_bytes: rl_memory.optimizer_bytes = -1 must be in [0, 64] bytes "
            "per parameter");
  EXPECT_EQ(error_of([](RlMemoryArgs& a) { a.frozen_bytes = 0; }),
            "rl_memory.frozen_bytes: rl_memory.frozen_bytes = 0 must be in [1, 64] bytes per "
            "parameter");
  EXPECT_EQ(error_of([](RlMemoryArgs& a) { a.optimizer_bytes = 0; }), "no error");  // plain SGD
  EXPECT_EQ(names_text<RlAlgorithm>(), "ppo, grpo");
  EXPECT_EQ(parse_enum<ValueModel>("head"), ValueModel::Head);
  EXPECT_EQ(parse_enum<RewardModel>("rule_based"), RewardModel::RuleBased);
}

}  // namespace
}  // namespace dslab
