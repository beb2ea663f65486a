// model_args_from_deepseek_json: DeepSeek's inference configs (tests/fixtures/,
// copies of the DeepSeek-V3 repository's inference/configs) read into
// ModelArgs key by key, model.py's defaults for missing keys, YaRN as model.py
// applies it, and every bad value named with its key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "experiments/commands.hpp"
#include "experiments/deepseek_config.hpp"
#include "tests/test_support.hpp"

using testing::HasSubstr;

namespace dslab {
namespace {

const std::string kFixtures = std::string(DSLAB_SOURCE_DIR) + "/tests/fixtures/";

std::string write(const std::string& name, const std::string& text) {
  static const std::string dir = test::temp_dir("deepseek_config");
  std::ofstream(dir + "/" + name) << text;
  return dir + "/" + name;
}

TEST(DeepSeekConfig, V3ReadsEveryKeyIntoModelArgs) {
  const ModelArgs m = model_args_from_deepseek_json(kFixtures + "deepseek_v3_671B.json");
  EXPECT_EQ(m.vocab_size, 129280);
  EXPECT_EQ(m.dim, 7168);
  EXPECT_EQ(m.inter_dim, 18432);
  EXPECT_EQ(m.n_layers, 61);
  EXPECT_EQ(m.n_dense_layers, 3);
  EXPECT_EQ(m.n_heads, 128);
  EXPECT_EQ(m.attn, AttnKind::Mla);
  EXPECT_EQ(m.mla.rope, MlaRope::Decoupled);
  EXPECT_EQ(m.mla.q_lora_rank, 1536);
  EXPECT_EQ(m.mla.kv_lora_rank, 512);
  EXPECT_EQ(m.mla.qk_nope_head_dim, 128);
  EXPECT_EQ(m.mla.qk_rope_head_dim, 64);
  EXPECT_EQ(m.mla.v_head_dim, 128);
  EXPECT_EQ(m.moe.moe_inter_dim, 2048);
  EXPECT_EQ(m.moe.n_routed_experts, 256);
  EXPECT_EQ(m.moe.n_shared_experts, 1);
  EXPECT_EQ(m.moe.n_activated_experts, 8);
  EXPECT_EQ(m.moe.n_expert_groups, 8);
  EXPECT_EQ(m.moe.n_limited_groups, 4);
  EXPECT_EQ(m.moe.route_scale, 2.5);
  EXPECT_EQ(m.moe.score_func, ScoreFunc::Sigmoid);
  EXPECT_TRUE(m.has_expert_bias());  // V3's gate bias, Eq. (24)
  EXPECT_EQ(m.mtp.depth, 0);         // no MTP module in model.py
  // Left to model.py's defaults: max_seq_len 16384 > original_seq_len 4096,
  // so YaRN is in effect with rope_factor 40 and mscale 1.
  EXPECT_EQ(m.max_seq_len, 16384);
  EXPECT_EQ(m.rope_theta, 10000.0);
  EXPECT_EQ(m.mla.rope_factor, 40.0);
  EXPECT_EQ(m.mla.mscale, 1.0);
}

// model.py's softmax scale: qk_head_dim^-0.5, times (0.1 mscale ln(rope_factor) + 1)^2
// when max_seq_len > original_seq_len (MLA.__init__).
TEST(DeepSeekConfig, YarnSoftmaxScaleAsModelPy) {
  const ModelArgs lite = model_args_from_deepseek_json(kFixtures + "deepseek_v2_lite_16B.json");
  EXPECT_EQ(lite.mla.mscale, 0.707);
  EXPECT_EQ(lite.mla.q_lora_rank, 0);
  EXPECT_FALSE(lite.has_expert_bias());
  const double yarn = 0.1 * 0.707 * std::log(40.0) + 1.0;
  EXPECT_DOUBLE_EQ(lite.mla_args().softmax_scale(), yarn * yarn / std::sqrt(192.0));
  // Within the trained context, no YaRN factor.
  const ModelArgs short_context =
      model_args_from_deepseek_json(write("short.json", "{\"max_seq_len\": 4096}"));
  EXPECT_EQ(short_context.mla.rope_factor, 40.0);  // read as written; model.py's condition is off
  EXPECT_FALSE(short_context.mla_args().yarn());
  EXPECT_DOUBLE_EQ(short_context.mla_args().softmax_scale(), 1 / std::sqrt(192.0));
  const ModelArgs longer = model_args_from_deepseek_json(
      write("longer.json", "{\"original_seq_len\": 2048, \"max_seq_len\": 4096, \"rope_factor\": 8}"));
  EXPECT_EQ(longer.mla.rope_factor, 8.0);
  EXPECT_TRUE(longer.mla_args().yarn());
  EXPECT_EQ(longer.mla.original_seq_len, 2048);
}

// model.py's defaults are the 16B (V2-Lite) config.
TEST(DeepSeekConfig, MissingKeysTakeModelPyDefaults) {
  const ModelArgs empty = model_args_from_deepseek_json(write("empty.json", "{}"));
  const ModelArgs lite = model_args_from_deepseek_json(kFixtures + "deepseek_v2_lite_16B.json");
  EXPECT_EQ(empty.dim, lite.dim);
  EXPECT_EQ(empty.n_layers, lite.n_layers);
  EXPECT_EQ(empty.moe.n_routed_experts, lite.moe.n_routed_experts);
  EXPECT_EQ(empty.mla.kv_lora_rank, lite.mla.kv_lora_rank);
  EXPECT_EQ(empty.mla.mscale, 1.0);  // the fixture sets 0.707; model.py's default is 1
}

std::string error_of(const std::string& name, const std::string& text) {
  try {
    model_args_from_deepseek_json(write(name, text));
  } catch (const BadInput& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DeepSeekConfig, BadValuesNameTheirKey) {
  EXPECT_THAT(error_of("hf.json", "{\"num_hidden_layers\": 61}"),
              HasSubstr("unknown key \"num_hidden_layers\""));
  EXPECT_THAT(error_of("big.json", "{\"dim\": 3000000000}"),
              HasSubstr("\"dim\" = 3000000000 must be <= 2147483647"));
  EXPECT_THAT(error_of("factor.json", "{\"rope_factor\": \"x\"}"),
              HasSubstr("\"rope_factor\" = \"x\" must be a number"));
  EXPECT_THAT(error_of("beta.json", "{\"beta_fast\": null}"),
              HasSubstr("\"beta_fast\" = null must be a number"));
  // The layers' own rules (MoeArgs, MlaArgs) apply too.
  EXPECT_THAT(error_of("groups.json", "{\"n_expert_groups\": 3}"), HasSubstr("n_expert_groups"));
  EXPECT_THAT(error_of("limited.json", "{\"n_expert_groups\": 4, \"n_limited_groups\": 5}"),
              HasSubstr("n_limited_groups"));
  EXPECT_THAT(error_of("rope.json", "{\"qk_rope_head_dim\": 3}"), HasSubstr("qk_rope_head_dim"));
  EXPECT_THAT(error_of("mscale.json", "{\"mscale\": 0}"), HasSubstr("mscale"));
  // Found by tests/fuzz/fuzz_deepseek_json: a number past double's range escaped as JSON's out_of_range.
  EXPECT_THAT(error_of("overflow.json", "{\"vocab_size\": 12e9280}"), HasSubstr("a number out of range"));
}

}  // namespace
}  // namespace dslab
