// dslab info MODEL [--json]: parameter counts, KV cache and FLOPs per token of
// a model, by closed form from its config; with --decode-time, also the
// measured time per token of decoding its attention layers with the cache.
//
// MODEL is a dslab run config (*.toml, dense SwiGLU FFN, attn = "mha" or
// "mla") or one of DeepSeek's published inference config.json files (the keys
// of DeepSeek-V3's inference/model.py ModelArgs, read as model.py reads them:
// a missing key takes model.py's default, an unknown key is an error).
//
// Conventions:
// - params_activated: the parameters one token multiplies by: everything but
//   the embedding table (a lookup) and the routed experts it is not sent to.
// - KV cache (Sec. 2.1): MHA/GQA/MQA 2 n_kv d_h per layer; MLA (d_c + d_h^R)
//   per layer (c_KV and k_R). MLA with rope = "full" cannot absorb W^UK, so it
//   keeps the naive cache H (d_nope + d_rope + d_v), or else keeps the latent
//   cache and recomputes k_C = W^UK c_KV for every cached token at every step.
// - FLOPs: 2 per multiply-add. Weights: 2 x activated matrix parameters.
//   Attention per layer for a query at context C (positions attended):
//   naive 2 H (d_qk + d_v) C; absorbed MLA 2 H (d_c + d_rope) C + 2 H d_c C.
//   Prefill averages a causal sequence of C tokens: context (C + 1) / 2.
// - Decode time (--decode-time, dslab configs only): the attention sub-layers
//   of all layers for one token at context C (the query attends C positions),
//   float, weights from Transformer::init_weights, with the cache the reference
//   decodes with: MLA decoupled/none the latent cache (mla_decode_absorbed),
//   MLA full the naive cache (mla_decode_naive), MHA/GQA/MQA the K/V cache
//   (mha_decode). The cache is filled by decoding C - 1 random tokens
//   (untimed); then the step at position C - 1 is timed `repeats` times after
//   3 untimed ones, resetting the caches' length before each; the median wall
//   time and the median CPU time of the process (all threads; less sensitive to
//   other processes on a shared machine) are reported. Norms, FFN, embedding
//   and head are left out: they do not depend on the context. Time does not
//   depend on the weights' values, so trained weights are not needed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/io.hpp"
#include "reference/attention.hpp"
#include "reference/mla.hpp"
#include "reference/transformer.hpp"

namespace dslab {

namespace {

using Json = nlohmann::ordered_json;

// The architecture, whichever file it came from.
struct Arch {
  std::string source;           // "dslab config" or "DeepSeek config.json"
  int64_t vocab_size = 0, dim = 0, n_layers = 0;
  int64_t n_dense_layers = 0, inter_dim = 0;  // dense SwiGLU FFN layers come first
  int64_t moe_inter_dim = 0, n_routed_experts = 0, n_shared_experts = 0, n_activated_experts = 0;
  int64_t mtp_depth = 0;        // Multi-Token Prediction modules (dslab configs)
  std::string score_func = "softmax";
  bool gate_bias = false;       // the per-expert selection bias of Eq. (24)
  bool mla = false;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0, head_dim = 0;  // MHA/GQA/MQA
  int64_t q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0,
          v_head_dim = 0;
  std::string rope = "decoupled";
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

Arch from_model_args(const ModelArgs& m) {
  Arch a;
  a.source = "dslab config";
  a.vocab_size = m.vocab_size;
  a.dim = m.dim;
  a.n_layers = m.n_layers;
  a.n_dense_layers = m.n_routed_experts > 0 ? m.n_dense_layers : m.n_layers;
  a.inter_dim = m.inter_dim;
  a.moe_inter_dim = m.moe_inter_dim;
  a.n_routed_experts = m.n_routed_experts;
  a.n_shared_experts = m.n_shared_experts;
  a.n_activated_experts = m.n_activated_experts;
  a.score_func = m.score_func;
  a.gate_bias = m.has_expert_bias();
  a.mtp_depth = m.mtp.depth;
  a.mla = m.is_mla();
  a.n_heads = m.n_heads;
  a.n_kv_heads = m.n_kv_heads;
  a.head_dim = m.head_dim();
  a.q_lora_rank = m.q_lora_rank;
  a.kv_lora_rank = m.kv_lora_rank;
  a.qk_nope_head_dim = m.qk_nope_head_dim;
  a.qk_rope_head_dim = m.qk_rope_head_dim;
  a.v_head_dim = m.v_head_dim;
  a.rope = m.rope;
  return a;
}

// DeepSeek-V3 inference/model.py ModelArgs: every key and its default.
const std::map<std::string, Json>& deepseek_keys() {
  static const std::map<std::string, Json> keys = {
      {"max_batch_size", 8}, {"max_seq_len", 4096 * 4}, {"dtype", "bf16"},
      {"scale_fmt", nullptr}, {"vocab_size", 102400}, {"dim", 2048}, {"inter_dim", 10944},
      {"moe_inter_dim", 1408}, {"n_layers", 27}, {"n_dense_layers", 1}, {"n_heads", 16},
      {"n_routed_experts", 64}, {"n_shared_experts", 2}, {"n_activated_experts", 6},
      {"n_expert_groups", 1}, {"n_limited_groups", 1}, {"score_func", "softmax"},
      {"route_scale", 1.0}, {"q_lora_rank", 0}, {"kv_lora_rank", 512},
      {"qk_nope_head_dim", 128}, {"qk_rope_head_dim", 64}, {"v_head_dim", 128},
      {"original_seq_len", 4096}, {"rope_theta", 10000.0}, {"rope_factor", 40},
      {"beta_fast", 32}, {"beta_slow", 1}, {"mscale", 1.0}};
  return keys;
}

Arch from_deepseek_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw BadInput("cannot read '" + path + "'");
  Json j;
  try {
    j = Json::parse(in);
  } catch (const Json::parse_error& e) {
    throw BadInput(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw BadInput(path + ": expected a JSON object of model.py ModelArgs keys");
  std::string allowed;
  for (const auto& [k, v] : deepseek_keys()) allowed += (allowed.empty() ? "" : ", ") + k;
  for (const auto& [k, v] : j.items())
    if (!deepseek_keys().count(k))
      throw BadInput(path + ": unknown key \"" + k + "\"; DeepSeek's inference configs use " +
                     allowed);
  auto integer = [&](const std::string& key, int64_t min) {
    const Json& v = j.contains(key) ? j[key] : deepseek_keys().at(key);
    if (!v.is_number_integer() || v.get<int64_t>() < min)
      throw BadInput(path + ": \"" + key + "\" = " + v.dump() + " must be an integer >= " +
                     std::to_string(min));
    return v.get<int64_t>();
  };
  Arch a;
  a.source = "DeepSeek config.json";
  a.vocab_size = integer("vocab_size", 1);
  a.dim = integer("dim", 1);
  a.n_layers = integer("n_layers", 1);
  a.n_dense_layers = integer("n_dense_layers", 0);
  a.inter_dim = integer("inter_dim", 1);
  a.moe_inter_dim = integer("moe_inter_dim", 1);
  a.n_routed_experts = integer("n_routed_experts", 1);
  a.n_shared_experts = integer("n_shared_experts", 0);
  a.n_activated_experts = integer("n_activated_experts", 1);
  a.mla = true;
  a.n_heads = integer("n_heads", 1);
  a.q_lora_rank = integer("q_lora_rank", 0);
  a.kv_lora_rank = integer("kv_lora_rank", 1);
  a.qk_nope_head_dim = integer("qk_nope_head_dim", 1);
  a.qk_rope_head_dim = integer("qk_rope_head_dim", 0);
  a.v_head_dim = integer("v_head_dim", 1);
  const Json& sf = j.contains("score_func") ? j["score_func"] : deepseek_keys().at("score_func");
  if (!sf.is_string() || (sf != "softmax" && sf != "sigmoid"))
    throw BadInput(path + ": \"score_func\" = " + sf.dump() + ": allowed \"softmax\", \"sigmoid\"");
  a.score_func = sf.get<std::string>();
  a.gate_bias = a.score_func == "sigmoid";  // V3's model.py gives the sigmoid gate its bias
  if (a.n_dense_layers > a.n_layers)
    throw BadInput(path + ": \"n_dense_layers\" = " + std::to_string(a.n_dense_layers) +
                   " must be <= \"n_layers\" = " + std::to_string(a.n_layers));
  if (a.n_activated_experts > a.n_routed_experts)
    throw BadInput(path + ": \"n_activated_experts\" = " + std::to_string(a.n_activated_experts) +
                   " must be <= \"n_routed_experts\" = " + std::to_string(a.n_routed_experts));
  return a;
}

// ---------------------------------------------------------------------------
// Parameters

struct Counts {
  int64_t embedding = 0, attention = 0, dense_ffn = 0, moe_routed_experts = 0,
          moe_shared_experts = 0, moe_gate = 0, norms = 0, head = 0, mtp = 0;
  int64_t total() const {
    return embedding + attention + dense_ffn + moe_routed_experts + moe_shared_experts + moe_gate +
           norms + head + mtp;
  }
  Json json() const {
    return {{"embedding", embedding}, {"attention", attention}, {"dense_ffn", dense_ffn},
            {"moe_routed_experts", moe_routed_experts}, {"moe_shared_experts", moe_shared_experts},
            {"moe_gate", moe_gate}, {"norms", norms}, {"head", head}, {"mtp", mtp}};
  }
};

// One attention layer's matrices and its norms (q_norm, kv_norm) separately.
struct AttentionParams {
  int64_t matrices = 0, norms = 0;
};

AttentionParams attention_params(const Arch& a) {
  const int64_t D = a.dim, H = a.n_heads;
  if (!a.mla) return {D * H * a.head_dim * 2 + D * a.n_kv_heads * a.head_dim * 2, 0};
  AttentionParams p;
  const int64_t rq = a.q_lora_rank, dc = a.kv_lora_rank;
  // wq_a and wq_b, or wq
  p.matrices = rq > 0 ? D * rq + rq * H * a.qk_head_dim() : D * H * a.qk_head_dim();
  p.norms = (rq > 0 ? rq : 0) + dc;                            // q_norm, kv_norm
  p.matrices += D * (dc + a.qk_rope_head_dim);                 // wkv_a
  p.matrices += dc * H * (a.qk_nope_head_dim + a.v_head_dim);  // wkv_b
  p.matrices += H * a.v_head_dim * D;                          // wo
  return p;
}

// One MTP module (reference/mtp.hpp): enorm, hnorm, eh_proj [D, 2D], its block
// (an MoE block when the model has routed experts, as V3's) and its norm; the
// embedding and head are the main model's.
int64_t mtp_module_params(const Arch& a, const AttentionParams& attn) {
  const int64_t D = a.dim, expert = 3 * D * a.moe_inter_dim;
  const int64_t ffn = a.n_routed_experts > 0
                          ? (a.n_routed_experts + a.n_shared_experts) * expert +
                                a.n_routed_experts * (D + (a.gate_bias ? 1 : 0))
                          : 3 * D * a.inter_dim;
  return 2 * D + 2 * D * D + attn.matrices + 2 * D + attn.norms + ffn + D;
}

// All parameters (activated = false) or those one token multiplies by in the
// main model (MTP modules, used only in training and drafting, are not activated).
Counts count_params(const Arch& a, bool activated) {
  Counts c;
  const int64_t D = a.dim, L = a.n_layers, moe_layers = a.n_layers - a.n_dense_layers;
  const AttentionParams attn = attention_params(a);
  c.embedding = activated ? 0 : a.vocab_size * D;
  c.attention = L * attn.matrices;
  c.dense_ffn = a.n_dense_layers * 3 * D * a.inter_dim;
  const int64_t expert = 3 * D * a.moe_inter_dim;
  const int64_t routed = activated ? a.n_activated_experts : a.n_routed_experts;
  c.moe_routed_experts = moe_layers * routed * expert;
  c.moe_shared_experts = moe_layers * a.n_shared_experts * expert;
  // The gate's weight [n_routed, D], and the per-expert bias where there is one.
  c.moe_gate = moe_layers * a.n_routed_experts * (D + (a.gate_bias ? 1 : 0));
  c.norms = L * (2 * D + attn.norms) + D;  // attn_norm, ffn_norm (+ q_norm, kv_norm); final norm
  c.head = a.vocab_size * D;
  c.mtp = activated ? 0 : a.mtp_depth * mtp_module_params(a, attn);
  return c;
}

// ---------------------------------------------------------------------------
// KV cache and FLOPs

// Elements cached per token and layer when decoding.
int64_t kv_cache_per_layer(const Arch& a) {
  if (!a.mla) return 2 * a.n_kv_heads * a.head_dim;
  if (a.rope == "full") return a.n_heads * (a.qk_head_dim() + a.v_head_dim);
  return a.kv_lora_rank + a.qk_rope_head_dim;
}

// Attention FLOPs of one query at context C (positions attended), one layer.
double naive_attention_flops(const Arch& a, double C) {
  if (!a.mla) return 2.0 * a.n_heads * 2 * a.head_dim * C;
  return 2.0 * a.n_heads * (a.qk_head_dim() + a.v_head_dim) * C;
}
double absorbed_attention_flops(const Arch& a, double C) {
  return 2.0 * a.n_heads * (a.kv_lora_rank + a.qk_rope_head_dim) * C +
         2.0 * a.n_heads * a.kv_lora_rank * C;
}
// rope = "full" from the latent cache: k_C = W^UK c_KV for every cached token, every step.
double recompute_keys_flops(const Arch& a, double C) {
  return 2.0 * a.n_heads * a.qk_nope_head_dim * a.kv_lora_rank * C;
}

Json cache_entry(int64_t elements) {
  return {{"elements", elements}, {"bf16_bytes", 2 * elements}, {"fp8_bytes", elements}};
}

Json describe(const Arch& a, int64_t context, int64_t gqa_groups) {
  const Counts total = count_params(a, false), act = count_params(a, true);
  const int64_t L = a.n_layers;
  const int64_t kv = L * kv_cache_per_layer(a);
  Json j;
  j["source"] = a.source;
  j["attn"] = a.mla ? "mla" : "mha";
  if (a.mla) j["rope"] = a.rope;
  j["params_total"] = total.total();
  j["params_activated"] = act.total();
  j["params_breakdown"] = total.json();
  j["params_activated_breakdown"] = act.json();
  j["kv_cache_elements_per_token"] = kv;
  j["kv_cache_bytes_per_token"] = {{"bf16", 2 * kv}, {"fp8", kv}};
  // MHA/GQA/MQA with the same query heads; per-head width d_h = qk_nope_head_dim for MLA.
  const int64_t d_h = a.mla ? a.qk_nope_head_dim : a.head_dim, H = a.n_heads;
  const int64_t groups = std::min(gqa_groups, H);
  Json cmp;
  cmp["mha"] = cache_entry(L * 2 * H * d_h);
  cmp["gqa"] = cache_entry(L * 2 * groups * d_h);
  cmp["gqa"]["n_kv_heads"] = groups;
  cmp["mqa"] = cache_entry(L * 2 * d_h);
  if (a.mla) {
    cmp["mla"] = cache_entry(L * (a.kv_lora_rank + a.qk_rope_head_dim));
    cmp["mla_naive"] = cache_entry(L * H * (a.qk_head_dim() + a.v_head_dim));
  }
  cmp["head_dim"] = d_h;
  j["kv_cache_comparison"] = cmp;

  // Matrices only: everything activated but the norm gains and the V3 gate bias.
  const double weight_flops =
      2.0 * double(act.total() - act.norms -
                   (a.score_func == "sigmoid" ? (L - a.n_dense_layers) * a.n_routed_experts : 0));
  const double C = double(context);
  Json f;
  f["context"] = context;
  f["weights"] = weight_flops;
  f["prefill"] = weight_flops + L * naive_attention_flops(a, (C + 1) / 2);
  const double naive = weight_flops + L * naive_attention_flops(a, C);
  if (!a.mla) {
    f["decode"] = naive;
  } else if (a.rope == "full") {
    f["decode"] = naive;
    f["decode_naive"] = naive;
    f["decode_latent_recompute"] =
        weight_flops + L * (absorbed_attention_flops(a, C) + recompute_keys_flops(a, C));
  } else {
    const double absorbed = weight_flops + L * absorbed_attention_flops(a, C);
    f["decode"] = absorbed;
    f["decode_naive"] = naive;
    f["decode_absorbed"] = absorbed;
  }
  j["flops_per_token"] = f;
  return j;
}

std::string human(double x) {
  char buf[32];
  const char* units[] = {"", "K", "M", "B", "T"};
  int u = 0;
  while (std::abs(x) >= 1000 && u < 4) {
    x /= 1000;
    ++u;
  }
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.3g%s", x, units[u]);
  return buf;
}

void print_text(const std::string& model, const Json& j) {
  auto line = [](const std::string& key, const std::string& value) {
    std::printf("  %-34s %s\n", key.c_str(), value.c_str());
  };
  std::printf("%s (%s, attn %s%s)\n", model.c_str(), j["source"].get<std::string>().c_str(),
              j["attn"].get<std::string>().c_str(),
              j.contains("rope") ? (", rope " + j["rope"].get<std::string>()).c_str() : "");
  line("params total", human(j["params_total"].get<double>()) + " (" +
                           std::to_string(j["params_total"].get<int64_t>()) + ")");
  const double activated = j["params_activated"].get<double>();
  line("params activated per token",
       human(activated) + " (" + std::to_string(j["params_activated"].get<int64_t>()) + ")");
  for (const auto& [k, v] : j["params_breakdown"].items())
    if (v.get<int64_t>() > 0)
      line("  " + k, human(v.get<double>()) + " total, " +
                         human(j["params_activated_breakdown"][k].get<double>()) + " activated");
  const int64_t kv = j["kv_cache_elements_per_token"];
  line("KV cache per token (all layers)", std::to_string(kv) + " elements, " +
                                              human(2.0 * kv) + "B bf16, " + human(double(kv)) +
                                              "B fp8");
  for (const auto& [k, v] : j["kv_cache_comparison"].items()) {
    if (!v.is_object()) continue;
    char share[64];
    std::snprintf(share, sizeof share, " (this model's cache is %.3g%% of it)",
                  100.0 * kv / v["elements"].get<double>());
    const std::string heads =
        v.contains("n_kv_heads") ? " (" + v["n_kv_heads"].dump() + " kv heads)" : "";
    line("  as " + k + heads, std::to_string(v["elements"].get<int64_t>()) + " elements" + share);
  }
  const Json& f = j["flops_per_token"];
  line("FLOPs per token at context " + f["context"].dump(), "");
  for (const auto& [k, v] : f.items())
    if (k != "context") line("  " + k, human(v.get<double>()));
}

// ---------------------------------------------------------------------------
// Decode time

// Wall and CPU time of one token through the attention sub-layers of all
// layers, at each context (ascending); see the conventions at the top of this file.
Json measure_decode_time(const ModelArgs& m, const Arch& arch, const std::vector<int64_t>& contexts,
                         int repeats) {
  constexpr int kWarmup = 3;
  const int L = m.n_layers, max_len = int(contexts.back());
  Transformer<float> model(m);
  model.init_weights(1);
  const MlaArgs mla = m.mla();
  const bool latent = m.is_mla() && mla.rope != MlaRope::Full;
  const RopeTable rope(max_len, m.is_mla() ? mla.rope_dim() : m.head_dim(), m.rope_theta);
  const AttentionShape shape{1, max_len, m.n_heads, m.n_kv_heads, m.head_dim(), m.head_dim(),
                             1.0 / std::sqrt(double(m.head_dim()))};
  std::vector<MlaLatentCache<float>> latent_cache;
  std::vector<MlaNaiveCache<float>> naive_cache;
  std::vector<KvCache<float>> kv_cache;
  for (int l = 0; l < L; ++l) {
    if (latent)
      latent_cache.emplace_back(mla, max_len);
    else if (m.is_mla())
      naive_cache.emplace_back(mla, max_len);
    else
      kv_cache.emplace_back(shape, max_len);
  }
  // One token through every layer's attention sub-layer; each layer's cache grows by one.
  std::vector<float> x(m.dim), out(m.dim);
  auto token = [&] {
    for (int l = 0; l < L; ++l) {
      const BlockParams<float>& w = model.params.layers[l];
      if (latent)
        mla_decode_absorbed(out.data(), x.data(), latent_cache[l], w.mla, mla, rope);
      else if (m.is_mla())
        mla_decode_naive(out.data(), x.data(), naive_cache[l], w.mla, mla, rope);
      else
        mha_decode(out.data(), x.data(), kv_cache[l], w.wq, w.wk, w.wv, w.wo, shape, rope);
    }
  };
  auto set_len = [&](int len) {
    for (auto& c : latent_cache) c.len = len;
    for (auto& c : naive_cache) c.len = len;
    for (auto& c : kv_cache) c.len = len;
  };
  Rng rng(2);
  auto random_token = [&] {
    for (float& v : x) v = float(rng.normal());
  };

  using Clock = std::chrono::steady_clock;
  auto cpu_seconds = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  };
  auto median_of = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double bytes_per_element = sizeof(float);
  Json median = Json::array(), fastest = Json::array(), cpu_median = Json::array(),
       cache_bytes = Json::array();
  int len = 0;
  for (const int64_t C : contexts) {
    for (; len < C - 1; ++len) {
      random_token();
      token();
    }
    random_token();
    std::vector<double> seconds, cpu;
    for (int r = 0; r < kWarmup + repeats; ++r) {
      set_len(int(C) - 1);
      const double c0 = cpu_seconds();
      const auto t0 = Clock::now();
      token();
      const std::chrono::duration<double> dt = Clock::now() - t0;
      const double c1 = cpu_seconds();
      if (r >= kWarmup) {
        seconds.push_back(dt.count());
        cpu.push_back(c1 - c0);
      }
    }
    len = int(C);
    median.push_back(median_of(seconds));
    fastest.push_back(*std::min_element(seconds.begin(), seconds.end()));
    cpu_median.push_back(median_of(cpu));
    cache_bytes.push_back(double(C) * L * kv_cache_per_layer(arch) * bytes_per_element);
  }
  Json j;
  j["what"] = "attention sub-layers of all layers, one token at context C (C positions attended)";
  j["cache"] = latent ? "latent (c_KV, k_R; absorbed)"
                      : m.is_mla() ? "naive (full keys and values)" : "K/V";
  j["decode_function"] = latent ? "mla_decode_absorbed" : m.is_mla() ? "mla_decode_naive"
                                                                      : "mha_decode";
  j["scalar"] = "float";
  j["threads"] = use_threads(0);
  j["repeats"] = repeats;
  j["contexts"] = contexts;
  j["seconds_per_token_median"] = median;
  j["seconds_per_token_min"] = fastest;
  j["cpu_seconds_per_token_median"] = cpu_median;
  j["cache_bytes_per_token"] = cache_bytes;  // C x elements per token and layer x L x 4
  j["attention_weight_bytes"] = double(L) * attention_params(arch).matrices * bytes_per_element;
  return j;
}

void print_decode_time(const Json& d) {
  std::printf("Decode time per token, %s\n  cache %s, %s, %d thread(s), median of %d\n",
              d["what"].get<std::string>().c_str(), d["cache"].get<std::string>().c_str(),
              d["scalar"].get<std::string>().c_str(), d["threads"].get<int>(),
              d["repeats"].get<int>());
  std::printf("  %10s %14s %14s %14s %18s\n", "context", "median (us)", "min (us)",
              "CPU med. (us)", "cache read (KB)");
  for (size_t i = 0; i < d["contexts"].size(); ++i)
    std::printf("  %10lld %14.2f %14.2f %14.2f %18.1f\n", d["contexts"][i].get<long long>(),
                1e6 * d["seconds_per_token_median"][i].get<double>(),
                1e6 * d["seconds_per_token_min"][i].get<double>(),
                1e6 * d["cpu_seconds_per_token_median"][i].get<double>(),
                d["cache_bytes_per_token"][i].get<double>() / 1e3);
}

struct InfoOptions {
  std::string model;
  bool json = false;
  int64_t context = 4096, gqa_groups = 8;
  std::vector<std::string> sets;
  bool decode_time = false;
  std::vector<int64_t> contexts{128, 512, 2048};
  int repeats = 50;
};

void run_info(const InfoOptions& o) {
  namespace fs = std::filesystem;
  if (!fs::is_regular_file(o.model))
    throw BadInput("'" + o.model + "' is not a file; give a dslab config (.toml) or a DeepSeek "
                   "config.json");
  const std::string ext = fs::path(o.model).extension().string();
  if (ext != ".json" && ext != ".toml")
    throw BadInput("'" + o.model + "': expected a .toml dslab config or a .json DeepSeek config");
  if (ext == ".json" && (!o.sets.empty() || o.decode_time))
    throw BadInput("--set and --decode-time need a dslab config (.toml); '" + o.model +
                   "' is a DeepSeek config.json");
  ModelArgs m;
  Arch a;
  if (ext == ".json") {
    a = from_deepseek_json(o.model);
  } else {
    m = load_run_config(o.model, o.sets).model;
    a = from_model_args(m);
  }
  Json j = describe(a, o.context, o.gqa_groups);
  if (o.decode_time) {
    std::vector<int64_t> contexts = o.contexts;
    std::sort(contexts.begin(), contexts.end());
    contexts.erase(std::unique(contexts.begin(), contexts.end()), contexts.end());
    if (contexts.back() > m.max_seq_len)
      throw BadInput("--contexts: " + std::to_string(contexts.back()) +
                     " exceeds model.max_seq_len = " + std::to_string(m.max_seq_len) +
                     "; raise it with --set model.max_seq_len=" + std::to_string(contexts.back()));
    j["decode_time"] = measure_decode_time(m, a, contexts, o.repeats);
  }
  if (o.json) {
    write_json(std::cout, j);
  } else {
    print_text(o.model, j);
    if (o.decode_time) print_decode_time(j["decode_time"]);
  }
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto o = std::make_shared<InfoOptions>();
  auto* cmd = app.add_subcommand(
      "info", "Parameters (total, activated), KV cache and FLOPs per token of a model config");
  cmd->add_option("model", o->model, "A dslab config (.toml) or DeepSeek's config.json")
      ->required();
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->add_option("--context", o->context, "Context length for the FLOPs per token")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30))
      ->capture_default_str();
  cmd->add_option("--gqa-groups", o->gqa_groups, "Key/value heads of the GQA comparison")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  cmd->add_option("--set", o->sets,
                  "Override a key of a dslab config: key.path=value (repeatable)");
  cmd->add_flag("--decode-time", o->decode_time,
                "Measure the time per token of decoding the attention layers with the cache "
                "(dslab configs)");
  cmd->add_option("--contexts", o->contexts, "Context lengths for --decode-time")
      ->delimiter(',')
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  cmd->add_option("--repeats", o->repeats, "Timed steps per context for --decode-time (median)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->callback([o] { run_info(*o); });
}

}  // namespace dslab
