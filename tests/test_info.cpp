// dslab info: parameter counts against the published totals of DeepSeek-V3,
// V2 and V2-Lite (tests/fixtures/, their inference config.json keys) and
// against the tensors of the reference transformer; KV-cache sizes against
// the figures in the review and the V2/V3 reports; FLOPs against the model's
// tensors and the attention closed forms; bad input exits with status 2.
// --decode-time: one measurement per context, with the cache bytes read per
// token equal to the context times the closed-form cache per token (the
// times themselves are not checked: tests never time).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/config.hpp"
#include "reference/transformer.hpp"
#include "tests/test_support.hpp"

using testing::HasSubstr;

namespace dslab {
namespace {

using Json = nlohmann::json;

const std::string kFixtures = std::string(DSLAB_SOURCE_DIR) + "/tests/fixtures/";

Json info(const std::string& model, const std::string& options = "") {
  std::string out;
  const int rc = test::run_dslab("info " + model + " --json " + options, &out);
  EXPECT_EQ(rc, 0) << out;
  return Json::parse(out);
}

std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir + "/" + name) << text;
  return dir + "/" + name;
}

// Published: total and activated parameters, in billions, as the reports give them.
struct Published {
  std::string file;
  double total_b, activated_b, total_unit;  // total_unit: the last digit published
};

// The totals must round to the published figures. Activated counts are
// published to two digits and depend on what is counted: here everything a
// token multiplies by (no embedding lookup), which gives 36.6B, 20.9B and
// 2.45B; they must lie within 3% of 37B, 21B and 2.4B.
class PublishedTotals : public ::testing::TestWithParam<Published> {};

TEST_P(PublishedTotals, MatchTheReports) {
  const Published& p = GetParam();
  const Json j = info(kFixtures + p.file);
  const double total = j["params_total"].get<double>() / 1e9;
  const double activated = j["params_activated"].get<double>() / 1e9;
  EXPECT_LE(std::abs(total - p.total_b), p.total_unit / 2) << total << "B";
  EXPECT_LE(std::abs(activated - p.activated_b) / p.activated_b, 0.03) << activated << "B";
  // The parts add up, and only the routed experts and the embedding differ.
  int64_t sum = 0, sum_act = 0;
  for (const auto& [k, v] : j["params_breakdown"].items()) sum += v.get<int64_t>();
  for (const auto& [k, v] : j["params_activated_breakdown"].items()) sum_act += v.get<int64_t>();
  EXPECT_EQ(sum, j["params_total"].get<int64_t>());
  EXPECT_EQ(sum_act, j["params_activated"].get<int64_t>());
  for (const auto& [k, v] : j["params_breakdown"].items()) {
    if (k != "moe_routed_experts" && k != "embedding") {
      EXPECT_EQ(v, j["params_activated_breakdown"][k]) << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DeepSeek, PublishedTotals,
                         ::testing::Values(Published{"deepseek_v3_671B.json", 671, 37, 1},
                                           Published{"deepseek_v2_236B.json", 236, 21, 1},
                                           Published{"deepseek_v2_lite_16B.json", 15.7, 2.4, 0.1}));

// Sec. 2.1 and FACTS: V3 caches 576 x 61 = 35,136 elements per token, 1.76% of
// MHA's 2 n_h d_h l = 1,998,848.
TEST(Info, V3KvCache) {
  const Json j = info(kFixtures + "deepseek_v3_671B.json");
  EXPECT_EQ(j["kv_cache_elements_per_token"], 35136);
  EXPECT_EQ(j["kv_cache_bytes_per_token"]["bf16"], 2 * 35136);
  EXPECT_EQ(j["kv_cache_bytes_per_token"]["fp8"], 35136);
  const Json& cmp = j["kv_cache_comparison"];
  EXPECT_EQ(cmp["mha"]["elements"], 1998848);
  EXPECT_NEAR(100.0 * 35136 / cmp["mha"]["elements"].get<double>(), 1.76, 0.005);
  EXPECT_EQ(cmp["mqa"]["elements"], 2 * 128 * 61);
  EXPECT_EQ(cmp["gqa"]["elements"], 2 * 8 * 128 * 61);
  EXPECT_EQ(info(kFixtures + "deepseek_v3_671B.json", "--gqa-groups 16")["kv_cache_comparison"]
               ["gqa"]["elements"],
            2 * 16 * 128 * 61);
}

// Review Sec. 2.1.3: with d_c = 4 d_h and d_h^R = d_h / 2, V2 caches 9/2 d_h l
// per token; the V2 report's 34.6K elements.
TEST(Info, V2KvCache) {
  const Json j = info(kFixtures + "deepseek_v2_236B.json");
  const double per_layer = j["kv_cache_elements_per_token"].get<double>() / 60;
  EXPECT_EQ(per_layer / 128, 4.5);
  EXPECT_EQ(std::round(j["kv_cache_elements_per_token"].get<double>() / 100) / 10, 34.6);
}

// model.py's ModelArgs defaults are the 16B (V2-Lite) config: an empty
// config.json reads as that file.
TEST(Info, MissingKeysTakeModelPyDefaults) {
  const std::string dir = test::temp_dir("info_defaults");
  const Json empty = info(write(dir, "empty.json", "{}"));
  const Json lite = info(kFixtures + "deepseek_v2_lite_16B.json");
  EXPECT_EQ(empty["params_total"], lite["params_total"]);
  EXPECT_EQ(empty["params_activated"], lite["params_activated"]);
}

// A dslab config: the closed form equals the reference transformer's tensor
// count; the weight FLOPs are twice its matrices other than the embedding.
void check_dslab_config(const std::string& path, int64_t kv_per_layer) {
  const RunConfig cfg = load_run_config(path);
  Transformer<float> model(cfg.model);
  const Json j = info(path);
  EXPECT_EQ(j["params_total"].get<size_t>(), model.num_parameters()) << path;
  double matrices = 0;
  for (const auto& p : model.params.refs())
    if (p.shape.size() == 2 && p.name != "embed.weight") matrices += double(p.size());
  EXPECT_EQ(j["flops_per_token"]["weights"].get<double>(), 2 * matrices) << path;
  EXPECT_EQ(j["params_activated"].get<double>(),
            double(model.num_parameters()) - double(cfg.model.vocab_size) * cfg.model.dim);
  EXPECT_EQ(j["kv_cache_elements_per_token"], kv_per_layer * cfg.model.n_layers) << path;
}

TEST(Info, DslabMhaConfig) {
  const std::string tiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";
  const RunConfig c = load_run_config(tiny);
  check_dslab_config(tiny, 2 * c.model.n_kv_heads * c.model.head_dim());
}

TEST(Info, DslabMlaConfigs) {
  const std::string dir = test::temp_dir("info_mla");
  const std::string base =
      "[model]\ndim = 64\nn_heads = 4\nn_layers = 3\nattn = \"mla\"\nkv_lora_rank = 24\n"
      "qk_nope_head_dim = 16\nqk_rope_head_dim = 8\nv_head_dim = 12\n";
  check_dslab_config(write(dir, "decoupled.toml", base + "q_lora_rank = 32\n"), 24 + 8);
  check_dslab_config(write(dir, "none.toml", base + "rope = \"none\"\n"), 24 + 8);
  // Full RoPE keeps the naive cache: every head's key and value.
  check_dslab_config(write(dir, "full.toml", base + "rope = \"full\"\n"), 4 * (16 + 8 + 12));
}

// Per layer and query at context C: naive 2 H (d_qk + d_v) C, absorbed
// 2 H (d_c + d_rope) C + 2 H d_c C; prefill averages (C + 1) / 2 over a
// causal sequence.
TEST(Info, AttentionFlops) {
  const Json a = info(kFixtures + "deepseek_v3_671B.json", "--context 1000");
  const Json b = info(kFixtures + "deepseek_v3_671B.json", "--context 3000");
  const double L = 61, H = 128, C = 1000;
  const Json &fa = a["flops_per_token"], &fb = b["flops_per_token"];
  EXPECT_EQ(fa["context"], 1000);
  EXPECT_EQ(fa["weights"], fb["weights"]);
  EXPECT_DOUBLE_EQ(fa["decode_naive"].get<double>() - fa["weights"].get<double>(),
                   L * 2 * H * (192 + 128) * C);
  EXPECT_DOUBLE_EQ(fa["decode_absorbed"].get<double>() - fa["weights"].get<double>(),
                   L * (2 * H * (512 + 64) * C + 2 * H * 512 * C));
  EXPECT_EQ(fa["decode"], fa["decode_absorbed"]);
  EXPECT_DOUBLE_EQ(fb["prefill"].get<double>() - fa["prefill"].get<double>(),
                   L * 2 * H * (192 + 128) * (3001.0 - 1001.0) / 2);
}

// Sec. 2.5, Fig. 5: with the defaults (mixed-precision AdamW 2 + 2 + 12 bytes per
// trained parameter, BF16 frozen models, value and reward models of the
// policy's size) PPO keeps 36 bytes per policy parameter and GRPO 20; PPO less
// GRPO is the value model, its gradients and its optimizer states. P is the
// params_total that matches the reports (PublishedTotals).
TEST(Info, RlTrainingMemoryOfV3) {
  const Json j = info(kFixtures + "deepseek_v3_671B.json");
  const int64_t P = j["params_total"];
  const Json& rl = j["rl_training_memory"];
  const Json &ppo = rl["ppo"], &grpo = rl["grpo"];
  EXPECT_EQ(rl["args"]["value_model"], "policy");
  EXPECT_EQ(rl["args"]["reward_model"], "policy");
  EXPECT_EQ(rl["args"]["value_model_params"], P);
  const std::vector<std::pair<std::string, int64_t>> per_param = {
      {"policy_weights", 2},  {"policy_gradients", 2}, {"policy_optimizer", 12},
      {"reference_weights", 2}, {"value_weights", 2},  {"value_gradients", 2},
      {"value_optimizer", 12}, {"reward_weights", 2}};
  for (const auto& [k, bytes] : per_param) {
    EXPECT_EQ(ppo[k].get<int64_t>(), bytes * P) << k;
    const bool value = k.rfind("value_", 0) == 0;
    EXPECT_EQ(grpo[k].get<int64_t>(), value ? 0 : bytes * P) << k;
  }
  EXPECT_EQ(ppo["total"].get<int64_t>(), 36 * P);
  EXPECT_EQ(grpo["total"].get<int64_t>(), 20 * P);
  int64_t sum_ppo = 0, sum_grpo = 0;
  for (const auto& [k, v] : ppo.items())
    if (k != "total") sum_ppo += v.get<int64_t>();
  for (const auto& [k, v] : grpo.items())
    if (k != "total") sum_grpo += v.get<int64_t>();
  EXPECT_EQ(sum_ppo, ppo["total"].get<int64_t>());
  EXPECT_EQ(sum_grpo, grpo["total"].get<int64_t>());
  EXPECT_EQ(ppo["total"].get<int64_t>() - grpo["total"].get<int64_t>(),
            ppo["value_weights"].get<int64_t>() + ppo["value_gradients"].get<int64_t>() +
                ppo["value_optimizer"].get<int64_t>());
  EXPECT_DOUBLE_EQ(rl["ppo_over_grpo"].get<double>(), 1.8);
  EXPECT_NEAR(grpo["total"].get<double>() / 1e12, 13.42, 0.005);
  // The text output names the section and the ratio.
  std::string out;
  ASSERT_EQ(test::run_dslab("info " + kFixtures + "deepseek_v3_671B.json", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("RL training memory"));
  EXPECT_THAT(out, testing::ContainsRegex("ppo / grpo +1\\.8\n"));
}

// A dslab config: the same closed form from the reference transformer's tensor count.
TEST(Info, RlTrainingMemoryOfADslabConfig) {
  const std::string tiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";
  const Json j = info(tiny);
  const int64_t P = int64_t(Transformer<float>(load_run_config(tiny).model).num_parameters());
  EXPECT_EQ(j["rl_training_memory"]["ppo"]["total"].get<int64_t>(), 36 * P);
  EXPECT_EQ(j["rl_training_memory"]["grpo"]["total"].get<int64_t>(), 20 * P);
}

TEST(Info, BadInputExitsWithStatus2) {
  const std::string dir = test::temp_dir("info_bad");
  std::string out;
  auto info_of = [&](const std::string& name, const std::string& text) {
    return test::run_dslab("info " + write(dir, name, text), &out);
  };
  EXPECT_EQ(info_of("hf.json", "{\"hidden_size\": 4096}"), 2);
  EXPECT_THAT(out, HasSubstr("unknown key \"hidden_size\""));
  EXPECT_THAT(out, HasSubstr("kv_lora_rank"));
  EXPECT_EQ(info_of("broken.json", "{\"dim\": "), 2);
  EXPECT_THAT(out, HasSubstr("not valid JSON"));
  EXPECT_EQ(info_of("type.json", "{\"dim\": \"big\"}"), 2);
  EXPECT_THAT(out, HasSubstr("\"dim\" = \"big\" must be an integer >= 1"));
  EXPECT_EQ(info_of("neg.json", "{\"n_heads\": 0}"), 2);
  EXPECT_THAT(out, HasSubstr("\"n_heads\" = 0 must be an integer >= 1"));
  EXPECT_EQ(info_of("score.json", "{\"score_func\": \"relu\"}"), 2);
  EXPECT_THAT(out, HasSubstr("allowed \"softmax\", \"sigmoid\""));
  EXPECT_EQ(info_of("dense.json", "{\"n_dense_layers\": 30}"), 2);
  EXPECT_THAT(out, HasSubstr("\"n_dense_layers\" = 30 must be <= \"n_layers\" = 27"));
  EXPECT_EQ(test::run_dslab("info " + dir + "/missing.json", &out), 2);
  EXPECT_THAT(out, HasSubstr("is not a file"));
  EXPECT_EQ(info_of("model.txt", "dim = 4"), 2);
  EXPECT_THAT(out, HasSubstr("expected a .toml dslab config or a .json DeepSeek config"));
  EXPECT_EQ(info_of("bad.toml", "[model]\nattn = \"gqa\"\n"), 2);
  EXPECT_THAT(out, HasSubstr("model.attn"));
  EXPECT_EQ(test::run_dslab("info " + kFixtures + "deepseek_v3_671B.json --context 0", &out), 2);
}

// --set overrides a dslab config's keys as `dslab train --set` does.
TEST(Info, SetOverridesTheConfig) {
  const std::string tiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";
  const RunConfig c = load_run_config(tiny);
  const Json j = info(tiny, "--set model.n_kv_heads=1 --set model.n_layers=3");
  EXPECT_EQ(j["kv_cache_elements_per_token"], 3 * 2 * 1 * c.model.head_dim());
}

// Each variant decodes with the cache the reference keeps for it; the cache
// read per token is C x (elements per token, all layers) x 4 bytes (float) and
// the weights read are the reference model's attention matrices.
TEST(Info, DecodeTimeReportsEveryContextAndItsCacheRead) {
  const std::string dir = test::temp_dir("info_decode");
  const std::string mla =
      "[train]\nseq_len = 16\n[model]\ndim = 32\nn_heads = 2\nn_layers = 2\nmax_seq_len = 16\n"
      "attn = \"mla\"\n"
      "kv_lora_rank = 12\nqk_nope_head_dim = 8\nqk_rope_head_dim = 4\nv_head_dim = 6\n";
  const std::string tiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";
  struct Case {
    std::string config, function;
  };
  const std::vector<Case> cases = {
      {tiny, "mha_decode"},
      {write(dir, "decoupled.toml", mla), "mla_decode_absorbed"},
      {write(dir, "none.toml", mla + "rope = \"none\"\n"), "mla_decode_absorbed"},
      {write(dir, "full.toml", mla + "rope = \"full\"\n"), "mla_decode_naive"}};
  for (const Case& c : cases) {
    const Json j = info(c.config, "--decode-time --contexts 9,1,4 --repeats 3");
    const Json& d = j["decode_time"];
    EXPECT_EQ(d["decode_function"], c.function) << c.config;
    EXPECT_EQ(d["contexts"], Json::parse("[1, 4, 9]")) << c.config;
    ASSERT_EQ(d["seconds_per_token_median"].size(), 3u);
    for (int i = 0; i < 3; ++i) {
      const double C = d["contexts"][i].get<double>();
      EXPECT_GT(d["seconds_per_token_min"][i].get<double>(), 0) << c.config;
      EXPECT_LE(d["seconds_per_token_min"][i], d["seconds_per_token_median"][i]) << c.config;
      EXPECT_GE(d["cpu_seconds_per_token_median"][i].get<double>(), 0) << c.config;
      EXPECT_EQ(d["cache_bytes_per_token"][i].get<double>(),
                C * j["kv_cache_elements_per_token"].get<double>() * 4)
          << c.config;
    }
    // The attention matrices of the reference model: 2-D tensors named "layers.N.attn.*".
    TransformerParams<float> params(load_run_config(c.config).model);
    double matrices = 0;
    for (const auto& p : params.refs())
      if (p.name.find(".attn.") != std::string::npos && p.shape.size() == 2) matrices += p.size();
    EXPECT_EQ(d["attention_weight_bytes"].get<double>(), 4 * matrices) << c.config;
  }
}

TEST(Info, DecodeTimeBadInputExitsWithStatus2) {
  const std::string tiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";
  std::string out;
  EXPECT_EQ(test::run_dslab("info " + tiny + " --decode-time --contexts 65", &out), 2);
  EXPECT_THAT(out, HasSubstr("exceeds model.max_seq_len = 64; raise it with --set "
                             "model.max_seq_len=65"));
  EXPECT_EQ(test::run_dslab("info " + tiny + " --decode-time --contexts 0", &out), 2);
  EXPECT_EQ(test::run_dslab("info " + kFixtures + "deepseek_v3_671B.json --decode-time", &out), 2);
  EXPECT_THAT(out, HasSubstr("need a dslab config (.toml)"));
  EXPECT_EQ(test::run_dslab("info " + tiny + " --set model.dim=0", &out), 2);
  EXPECT_THAT(out, HasSubstr("model.dim"));
}

TEST(Info, TextOutputNamesTheTotals) {
  std::string out;
  ASSERT_EQ(test::run_dslab("info " + kFixtures + "deepseek_v3_671B.json", &out), 0) << out;
  const Json j = info(kFixtures + "deepseek_v3_671B.json");
  EXPECT_THAT(out, HasSubstr("params total"));
  EXPECT_THAT(out, HasSubstr("671B (" + j["params_total"].dump() + ")"));
  EXPECT_THAT(out, HasSubstr(j["kv_cache_elements_per_token"].dump() + " elements"));
}

}  // namespace
}  // namespace dslab
