// dslab info MODEL [--json]: parameter counts, KV cache and FLOPs per token of
// a model, by closed form from its config; with --decode-time, also the
// measured time per token of decoding its attention layers with the cache.
//
// MODEL is a dslab run config (*.toml) or one of DeepSeek's published
// inference config.json files (experiments/deepseek_config.hpp: the keys of
// DeepSeek-V3's inference/model.py ModelArgs, read as model.py reads them: a
// missing key takes model.py's default, an unknown key is an error). Either
// becomes a ModelArgs.
//
// Conventions:
// - What is counted, and every formula: reference/accounting.hpp.
// - KV cache comparison: the same model with MHA, GQA (--gqa-groups key/value
//   heads) and MQA of the per-head width d_h (qk_nope_head_dim for MLA), and
//   for MLA its latent cache (d_c + d_h^R) and its naive cache.
// - FLOPs: the decode path the reference uses ("decode") and, for MLA, the
//   others: naive, absorbed or, with rope = "full", latent with the keys
//   recomputed every step. Prefill averages a causal sequence of C tokens.
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
// - RL training memory ("rl_training_memory"): bytes of weights, gradients and
//   optimizer states of the models PPO and GRPO keep for this model as the
//   policy (rl_training_memory in reference/accounting.hpp), with
//   RlMemoryArgs' defaults: mixed-precision AdamW (BF16 weights 2 and
//   gradients 2, FP32 master copy, m and v 12 bytes per trained parameter),
//   frozen reference and reward models in BF16, a value model and a reward
//   model of the policy's size (DeepSeekMath's PPO). "ppo_over_grpo" is the
//   ratio of the totals; the settings used are printed under "args".
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
#include "experiments/deepseek_config.hpp"
#include "reference/accounting.hpp"
#include "experiments/io.hpp"
#include "reference/attention.hpp"
#include "reference/mla.hpp"
#include "reference/transformer.hpp"

namespace dslab {

namespace {

using Json = nlohmann::ordered_json;

// The parameter counts under the names `dslab info` prints.
Json params_json(const ParamCounts& c) {
  return {{"embedding", c.embedding}, {"attention", c.attention}, {"dense_ffn", c.dense_ffn},
          {"moe_routed_experts", c.moe_routed_experts}, {"moe_shared_experts", c.moe_shared_experts},
          {"moe_gate", c.moe_gate}, {"norms", c.norms}, {"head", c.head}, {"mtp", c.mtp}};
}

Json cache_entry(int64_t elements) {
  return {{"elements", elements}, {"bf16_bytes", 2 * elements}, {"fp8_bytes", elements}};
}

Json rl_memory_entry(const RlMemory& r) {
  return {{"policy_weights", r.policy_weights},       {"policy_gradients", r.policy_gradients},
          {"policy_optimizer", r.policy_optimizer},   {"reference_weights", r.reference_weights},
          {"value_weights", r.value_weights},         {"value_gradients", r.value_gradients},
          {"value_optimizer", r.value_optimizer},     {"reward_weights", r.reward_weights},
          {"total", r.total}};
}

// PPO and GRPO side by side, bytes per part (reference/accounting.hpp).
Json rl_memory_json(const ModelArgs& m, const RlMemoryArgs& a) {
  const RlMemory ppo = rl_training_memory(m, RlAlgorithm::Ppo, a);
  const RlMemory grpo = rl_training_memory(m, RlAlgorithm::Grpo, a);
  Json j;
  j["args"] = {{"weight_bytes", a.weight_bytes},
               {"gradient_bytes", a.gradient_bytes},
               {"optimizer_bytes", a.optimizer_bytes},
               {"frozen_bytes", a.frozen_bytes},
               {"value_model", std::string(name_of(a.value_model))},
               {"value_model_params", value_model_params(m, a.value_model)},
               {"reward_model", std::string(name_of(a.reward_model))},
               {"reward_model_params", reward_model_params(m, a.reward_model)}};
  j[std::string(name_of(RlAlgorithm::Ppo))] = rl_memory_entry(ppo);
  j[std::string(name_of(RlAlgorithm::Grpo))] = rl_memory_entry(grpo);
  j["ppo_over_grpo"] = double(ppo.total) / double(grpo.total);
  return j;
}

// Everything `dslab info` reports but the decode time, by closed form
// (reference/accounting.hpp). `source` names the kind of file the model came from.
Json describe(const ModelArgs& m, const std::string& source, int64_t context, int64_t gqa_groups) {
  const ParamCounts total = total_params(m), act = activated_params(m);
  const bool mla = m.attn == AttnKind::Mla;
  const int64_t L = m.n_layers;
  const int64_t kv = kv_cache_per_token(m);
  Json j;
  j["source"] = source;
  j["attn"] = std::string(name_of(m.attn));
  if (mla) j["rope"] = std::string(name_of(m.mla.rope));
  j["params_total"] = total.total();
  j["params_activated"] = act.total();
  j["params_breakdown"] = params_json(total);
  j["params_activated_breakdown"] = params_json(act);
  j["kv_cache_elements_per_token"] = kv;
  j["kv_cache_bytes_per_token"] = {{"bf16", 2 * kv}, {"fp8", kv}};
  // MHA/GQA/MQA with the same query heads and per-head width d_h.
  const int64_t d_h = attention_head_dim(m), H = m.n_heads;
  const int64_t groups = std::min(gqa_groups, H);
  Json cmp;
  cmp["mha"] = cache_entry(L * mha_cache_per_layer(H, d_h));
  cmp["gqa"] = cache_entry(L * mha_cache_per_layer(groups, d_h));
  cmp["gqa"]["n_kv_heads"] = groups;
  cmp["mqa"] = cache_entry(L * mha_cache_per_layer(1, d_h));
  if (mla) {
    cmp["mla"] = cache_entry(L * kv_cache_per_layer(m, DecodePath::Absorbed));
    cmp["mla_naive"] = cache_entry(L * kv_cache_per_layer(m, DecodePath::Naive));
  }
  cmp["head_dim"] = d_h;
  j["kv_cache_comparison"] = cmp;

  const double C = double(context);
  Json f;
  f["context"] = context;
  f["weights"] = weight_flops_per_token(m);
  f["prefill"] = prefill_flops_per_token(m, C);
  const double naive = decode_flops_per_token(m, C, DecodePath::Naive);
  if (!mla) {
    f["decode"] = naive;
  } else if (m.mla.rope == MlaRope::Full) {
    f["decode"] = naive;
    f["decode_naive"] = naive;
    f["decode_latent_recompute"] = decode_flops_per_token(m, C, DecodePath::LatentRecompute);
  } else {
    const double absorbed = decode_flops_per_token(m, C, DecodePath::Absorbed);
    f["decode"] = absorbed;
    f["decode_naive"] = naive;
    f["decode_absorbed"] = absorbed;
  }
  j["flops_per_token"] = f;
  j["rl_training_memory"] = rl_memory_json(m, RlMemoryArgs{});
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
  const Json& rl = j["rl_training_memory"];
  const Json& a = rl["args"];
  line("RL training memory (bytes)", "");
  std::printf("    weights %d, gradients %d, optimizer %d, frozen %d bytes per parameter; value "
              "model %s, reward model %s\n",
              a["weight_bytes"].get<int>(), a["gradient_bytes"].get<int>(),
              a["optimizer_bytes"].get<int>(), a["frozen_bytes"].get<int>(),
              a["value_model"].get<std::string>().c_str(),
              a["reward_model"].get<std::string>().c_str());
  std::printf("    %-32s %12s %12s\n", "", "ppo", "grpo");
  for (const auto& [k, v] : rl["ppo"].items())
    std::printf("    %-32s %12s %12s\n", k.c_str(), (human(v.get<double>()) + "B").c_str(),
                (human(rl["grpo"][k].get<double>()) + "B").c_str());
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, "%.4g", rl["ppo_over_grpo"].get<double>());
  line("  ppo / grpo", ratio);
}

// ---------------------------------------------------------------------------
// Decode time

// Wall and CPU time of one token through the attention sub-layers of all
// layers, at each context (ascending); see the conventions at the top of this file.
Json measure_decode_time(const ModelArgs& m, const std::vector<int64_t>& contexts, int repeats) {
  constexpr int kWarmup = 3;
  const int L = m.n_layers, max_len = int(contexts.back());
  Transformer<float> model(m);
  model.init_weights(1);
  const MlaArgs mla = m.mla_args();
  const bool latent = (m.attn == AttnKind::Mla) && mla.rope != MlaRope::Full;
  const RopeTable rope(max_len, (m.attn == AttnKind::Mla) ? mla.rope_dim() : m.head_dim(), m.rope_theta);
  const AttentionShape shape{1, max_len, m.n_heads, m.n_kv_heads, m.head_dim(), m.head_dim(),
                             1.0 / std::sqrt(double(m.head_dim()))};
  std::vector<MlaLatentCache<float>> latent_cache;
  std::vector<MlaNaiveCache<float>> naive_cache;
  std::vector<KvCache<float>> kv_cache;
  for (int l = 0; l < L; ++l) {
    if (latent)
      latent_cache.emplace_back(mla, max_len);
    else if ((m.attn == AttnKind::Mla))
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
        mla_decode_absorbed(out.data(), x.data(), latent_cache[l], std::get<MlaWeights<float>>(w.attn), mla, rope);
      else if ((m.attn == AttnKind::Mla))
        mla_decode_naive(out.data(), x.data(), naive_cache[l], std::get<MlaWeights<float>>(w.attn), mla, rope);
      else
      {
        const MhaWeights<float>& mha = std::get<MhaWeights<float>>(w.attn);
        mha_decode(out.data(), x.data(), kv_cache[l], mha, shape, rope);
      }
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
    cache_bytes.push_back(double(C) * L * kv_cache_per_layer(m) * bytes_per_element);
  }
  Json j;
  j["what"] = "attention sub-layers of all layers, one token at context C (C positions attended)";
  j["cache"] = latent ? "latent (c_KV, k_R; absorbed)"
                      : (m.attn == AttnKind::Mla) ? "naive (full keys and values)" : "K/V";
  j["decode_function"] = latent ? "mla_decode_absorbed" : (m.attn == AttnKind::Mla) ? "mla_decode_naive"
                                                                      : "mha_decode";
  j["scalar"] = "float";
  j["threads"] = use_threads(0);
  j["repeats"] = repeats;
  j["contexts"] = contexts;
  j["seconds_per_token_median"] = median;
  j["seconds_per_token_min"] = fastest;
  j["cpu_seconds_per_token_median"] = cpu_median;
  j["cache_bytes_per_token"] = cache_bytes;  // C x elements per token and layer x L x 4
  j["attention_weight_bytes"] = double(L) * attention_params(m).matrices * bytes_per_element;
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
  const bool deepseek = ext == ".json";
  const ModelArgs m = deepseek ? model_args_from_deepseek_json(o.model)
                               : load_run_config(o.model, o.sets).model;
  Json j = describe(m, deepseek ? "DeepSeek config.json" : "dslab config", o.context, o.gqa_groups);
  if (o.decode_time) {
    std::vector<int64_t> contexts = o.contexts;
    std::sort(contexts.begin(), contexts.end());
    contexts.erase(std::unique(contexts.begin(), contexts.end()), contexts.end());
    if (contexts.back() > m.max_seq_len)
      throw BadInput("--contexts: " + std::to_string(contexts.back()) +
                     " exceeds model.max_seq_len = " + std::to_string(m.max_seq_len) +
                     "; raise it with --set model.max_seq_len=" + std::to_string(contexts.back()));
    j["decode_time"] = measure_decode_time(m, contexts, o.repeats);
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
