// The rules of the model's configuration, called directly on hand-made args:
// every XArgs::validate() (MlaArgs, MoeArgs, BalanceArgs, MtpArgs, Fp8Args,
// ModelArgs, TrainArgs) throws ArgsError naming the keys of the broken rule
// and what is allowed, and lets valid args pass; the enum name tables parse
// and print every closed set; the config reports the same rules with file and
// line, and the program exits with status 2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "experiments/config.hpp"
#include "reference/args_error.hpp"
#include "reference/enum_names.hpp"
#include "reference/model_args.hpp"
#include "reference/trainer.hpp"
#include "reference/transformer.hpp"
#include "tests/test_support.hpp"

using testing::ElementsAre;
using testing::HasSubstr;

namespace dslab {
namespace {

using Keys = std::vector<std::string>;

// The ArgsError `f` throws (a test failure if it throws none).
struct Thrown {
  Keys keys;
  std::string message;
};
Thrown args_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const ArgsError& e) {
    return {e.keys(), e.what()};
  }
  ADD_FAILURE() << "no ArgsError";
  return {};
}

void expect_error(const std::function<void()>& f, const Keys& keys, const std::string& message) {
  const Thrown e = args_error(f);
  EXPECT_EQ(e.keys, keys) << e.message;
  EXPECT_EQ(e.message, message);
}

// A small MoE model that passes every rule: 8 experts in 4 groups, top-2.
ModelArgs moe_model() {
  ModelArgs m;
  m.dim = 32;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.n_layers = 3;
  m.moe.n_routed_experts = 8;
  m.moe.n_activated_experts = 2;
  m.moe.n_expert_groups = 4;
  m.moe.n_limited_groups = 2;
  return m;
}

ModelArgs mla_model() {
  ModelArgs m;
  m.attn = AttnKind::Mla;
  return m;
}

// ---------------------------------------------------------------------------
// Name tables

template <NamedEnum E> void expect_round_trip() {
  std::set<std::string_view> seen;
  for (E e : enum_values<E>()) {
    EXPECT_EQ(parse_enum<E>(name_of(e)), e) << name_of(e);
    EXPECT_TRUE(seen.insert(name_of(e)).second) << "twice: " << name_of(e);
  }
  EXPECT_EQ(parse_enum<E>("no-such-name"), std::nullopt);
  EXPECT_EQ(enum_names<E>().size(), enum_values<E>().size());
}

TEST(EnumNames, EveryClosedSetRoundTrips) {
  expect_round_trip<AttnKind>();
  expect_round_trip<MlaRope>();
  expect_round_trip<ScoreFunc>();
  expect_round_trip<BiasUpdate>();
  expect_round_trip<fp8::Granularity>();
  expect_round_trip<fp8::ScaleRounding>();
  expect_round_trip<fp8::Saturation>();
  expect_round_trip<fp8::Rounding>();
  expect_round_trip<fp8::RecipeKind>();
}

TEST(EnumNames, NamesFollowTheEnumOrder) {
  EXPECT_EQ(name_of(AttnKind::Mha), "mha");
  EXPECT_EQ(name_of(AttnKind::Mla), "mla");
  EXPECT_EQ(name_of(MlaRope::Full), "full");
  EXPECT_EQ(name_of(BiasUpdate::None), "none");
  EXPECT_EQ(name_of(fp8::Granularity::Tile1x128), "tile");
  EXPECT_EQ(name_of(fp8::ScaleRounding::PowerOfTwo), "pow2");
  EXPECT_EQ(name_of(fp8::RecipeKind::V3), "v3");
  EXPECT_EQ(names_text<ScoreFunc>(), "softmax, sigmoid");
  EXPECT_EQ(names_text<MlaRope>("\""), "\"decoupled\", \"none\", \"full\"");
  EXPECT_EQ(names_text<BiasUpdate>("", BiasUpdate::None), "sign, proportional");
  EXPECT_EQ(enum_names<fp8::Granularity>(), (std::vector<std::string>{"tensor", "row", "tile", "block", "mx"}));
}

// The parse functions keep their messages, built from the tables.
TEST(EnumNames, ParseFunctionsNameWhatIsAllowed) {
  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([] { parse_mla_rope("partial"); }), "rope = \"partial\": allowed \"decoupled\", \"none\", \"full\"");
  EXPECT_EQ(message([] { parse_score_func("relu"); }), "score_func 'relu' is not allowed; allowed: softmax, sigmoid");
  EXPECT_EQ(message([] { parse_bias_update("none"); }),
            "bias update 'none' is not allowed; allowed: sign, proportional");
  EXPECT_EQ(parse_bias_update("proportional"), BiasUpdate::Proportional);
  EXPECT_EQ(message([] { fp8::parse_granularity("diagonal"); }),
            "unknown granularity 'diagonal'; allowed: tensor, row, tile (1x128), block (128x128), mx (1x32, E8M0 scales)");
  EXPECT_EQ(message([] { fp8::parse_rounding("up"); }), "unknown rounding 'up'; allowed: truncate, floor, nearest");
  EXPECT_EQ(std::string(mla_rope_name(MlaRope::Decoupled)), "decoupled");
  EXPECT_EQ(fp8::granularity_name(fp8::Granularity::Block1x32), "mx");
  EXPECT_EQ(fp8::rounding_name(fp8::Rounding::Floor), "floor");
}

// ---------------------------------------------------------------------------
// ModelArgs: the dense model and MHA

TEST(ModelArgsValidate, DefaultsAndSmallModelsPass) {
  EXPECT_NO_THROW(ModelArgs{}.validate());
  EXPECT_NO_THROW(moe_model().validate());
  EXPECT_NO_THROW(mla_model().validate());
  ModelArgs mqa;
  mqa.n_kv_heads = 1;
  EXPECT_NO_THROW(mqa.validate());
}

TEST(ModelArgsValidate, MhaRules) {
  ModelArgs m;
  m.dim = 130;
  expect_error([&] { m.validate(); }, {"model.dim", "model.n_heads"},
               "model.dim = 130 must be a multiple of model.n_heads = 4 (head_dim = dim / n_heads)");
  m = ModelArgs{};
  m.n_kv_heads = 3;
  expect_error([&] { m.validate(); }, {"model.n_heads", "model.n_kv_heads"},
               "model.n_heads = 4 must be a multiple of model.n_kv_heads = 3 (each key/value head serves an "
               "equal group of query heads)");
  m = ModelArgs{};
  m.dim = 72;
  m.n_heads = 8;  // head_dim 9
  m.n_kv_heads = 8;
  expect_error([&] { m.validate(); }, {"model.dim", "model.n_heads"},
               "head_dim = model.dim / model.n_heads = 72 / 8 = 9 must be even (RoPE rotates pairs of dimensions)");
  // MLA has no such rules: its heads are not dim / n_heads wide.
  m.attn = AttnKind::Mla;
  EXPECT_NO_THROW(m.validate());
}

TEST(ModelArgsValidate, WidthsMustBePositive) {
  ModelArgs m;
  m.n_heads = 0;
  expect_error([&] { m.validate(); }, {"model.n_heads"}, "model.n_heads = 0 must be > 0");
  m = ModelArgs{};
  m.norm_eps = 0;
  expect_error([&] { m.validate(); }, {"model.norm_eps"}, "model.norm_eps = 0 must be > 0");
  m = ModelArgs{};
  m.n_dense_layers = -1;
  expect_error([&] { m.validate(); }, {"model.n_dense_layers"}, "model.n_dense_layers = -1 must be >= 0");
}

// ---------------------------------------------------------------------------
// MlaArgs

TEST(MlaArgsValidate, RopeNeedsPairs) {
  MlaArgs a = mla_model().mla_args();
  EXPECT_NO_THROW(a.validate());
  a.qk_rope_head_dim = 3;
  expect_error([&] { a.validate(); }, {"model.rope", "model.qk_rope_head_dim"},
               "model.qk_rope_head_dim = 3 must be even and > 0 with model.rope = \"decoupled\" (RoPE rotates pairs)");
  a.qk_rope_head_dim = 0;
  expect_error([&] { a.validate(); }, {"model.rope", "model.qk_rope_head_dim"},
               "model.qk_rope_head_dim = 0 must be even and > 0 with model.rope = \"decoupled\" (RoPE rotates pairs)");
  a.rope = MlaRope::None;
  EXPECT_NO_THROW(a.validate());
  a.rope = MlaRope::Full;
  a.qk_rope_head_dim = 3;  // 32 + 3
  expect_error([&] { a.validate(); }, {"model.rope", "model.qk_nope_head_dim", "model.qk_rope_head_dim"},
               "model.qk_nope_head_dim + model.qk_rope_head_dim = 35 must be even with model.rope = \"full\" "
               "(RoPE rotates pairs)");
  a.qk_rope_head_dim = 0;  // 32 + 0: full RoPE needs no decoupled dims
  EXPECT_NO_THROW(a.validate());
}

TEST(MlaArgsValidate, Widths) {
  MlaArgs a = mla_model().mla_args();
  a.kv_lora_rank = 0;
  expect_error([&] { a.validate(); }, {"model.kv_lora_rank"}, "model.kv_lora_rank = 0 must be > 0");
  a = mla_model().mla_args();
  a.q_lora_rank = -1;
  expect_error([&] { a.validate(); }, {"model.q_lora_rank"}, "model.q_lora_rank = -1 must be >= 0 (0: a direct wq)");
  a = mla_model().mla_args();
  a.rope_factor = 0.5;
  expect_error([&] { a.validate(); }, {"model.rope_factor"}, "model.rope_factor = 0.5 must be >= 1");
}

// ModelArgs::validate checks MLA's rules through MlaArgs::validate, with the model's widths.
TEST(MlaArgsValidate, ReachedThroughTheModel) {
  ModelArgs m = mla_model();
  m.mla.qk_rope_head_dim = 5;
  expect_error([&] { m.validate(); }, {"model.rope", "model.qk_rope_head_dim"},
               "model.qk_rope_head_dim = 5 must be even and > 0 with model.rope = \"decoupled\" (RoPE rotates pairs)");
}

// ---------------------------------------------------------------------------
// MoeArgs and the model's MoE rules

TEST(MoeArgsValidate, ExpertCounts) {
  MoeArgs a = moe_model().moe_args();
  EXPECT_NO_THROW(validate(a));
  a.n_activated_experts = 9;
  expect_error([&] { validate(a); }, {"model.n_activated_experts", "model.n_routed_experts"},
               "model.n_activated_experts = 9 must be <= model.n_routed_experts = 8");
  a = moe_model().moe_args();
  a.n_activated_experts = 5;  // 2 groups of 2 experts kept
  expect_error([&] { validate(a); }, {"model.n_activated_experts", "model.n_limited_groups", "model.n_expert_groups"},
               "model.n_activated_experts = 5 exceeds the 4 experts of the model.n_limited_groups groups a token "
               "may use");
  a = moe_model().moe_args();
  a.route_scale = 0;
  expect_error([&] { validate(a); }, {"model.route_scale"}, "model.route_scale = 0 must be positive and finite");
  a = moe_model().moe_args();
  a.capacity_factor = -1;
  expect_error([&] { validate(a); }, {"model.capacity_factor"},
               "model.capacity_factor = -1 must be >= 0 and finite (0 keeps every token)");
}

// The group rules, once checked only when a config was read, are the model's.
TEST(MoeArgsValidate, GroupRulesHoldOutsideTheConfig) {
  ModelArgs m = moe_model();
  m.moe.n_expert_groups = 3;
  expect_error([&] { m.validate(); }, {"model.n_expert_groups", "model.n_routed_experts"},
               "model.n_expert_groups = 3 must divide model.n_routed_experts = 8");
  EXPECT_THROW(Transformer<double>{m}, ArgsError);
  m = moe_model();
  m.moe.n_limited_groups = 5;
  expect_error([&] { m.validate(); }, {"model.n_limited_groups", "model.n_expert_groups"},
               "model.n_limited_groups = 5 must be <= model.n_expert_groups = 4");
  EXPECT_THROW(Transformer<float>{m}, ArgsError);
  m = moe_model();
  m.moe.n_expert_groups = 0;
  expect_error([&] { m.validate(); }, {"model.n_expert_groups"}, "model.n_expert_groups = 0 must be > 0");
}

TEST(MoeArgsValidate, ModelNeedsAnMoeLayer) {
  ModelArgs m = moe_model();
  m.n_dense_layers = 3;
  expect_error([&] { m.validate(); }, {"model.n_dense_layers", "model.n_layers"},
               "model.n_dense_layers = 3 leaves no MoE layer among model.n_layers = 3; it must be < n_layers (or "
               "set model.n_routed_experts = 0)");
  m.moe.n_routed_experts = 0;  // a dense model ignores n_dense_layers
  EXPECT_NO_THROW(m.validate());
}

// ---------------------------------------------------------------------------
// BalanceArgs and the balance of the model

TEST(BalanceArgsValidate, OwnFields) {
  BalanceArgs b;
  EXPECT_NO_THROW(b.validate());
  b.n_devices = 2;
  b.max_devices_per_token = 3;
  expect_error([&] { b.validate(); }, {"balance.max_devices_per_token", "balance.n_devices"},
               "balance.max_devices_per_token = 3 must be <= balance.n_devices = 2");
  b = BalanceArgs{};
  b.seq_aux_alpha = -0.5;
  expect_error([&] { b.validate(); }, {"balance.seq_aux_alpha"}, "balance.seq_aux_alpha = -0.5 must be >= 0 (0: off)");
  b = BalanceArgs{};
  b.bias_gamma = 0;
  expect_error([&] { b.validate(); }, {"balance.bias_gamma"}, "balance.bias_gamma = 0 must be positive and finite");
}

TEST(BalanceArgsValidate, AgainstTheModelsExperts) {
  const Keys dense_keys = {"model.n_routed_experts", "balance.aux_alpha", "balance.seq_aux_alpha",
                           "balance.device_alpha", "balance.comm_alpha", "balance.bias_update"};
  const std::string dense_message =
      "load balancing needs MoE layers: set model.n_routed_experts > 0, or leave every balance.*_alpha at 0 and "
      "balance.bias_update = \"none\"";
  ModelArgs m;
  m.balance.aux_alpha = 0.01;
  expect_error([&] { m.validate(); }, dense_keys, dense_message);
  m = ModelArgs{};
  m.balance.bias_update = BiasUpdate::Sign;
  expect_error([&] { m.validate(); }, dense_keys, dense_message);
  m = ModelArgs{};
  m.balance.max_devices_per_token = 3;  // a dense model has no devices to balance
  EXPECT_NO_THROW(m.validate());
  m = moe_model();
  m.balance.n_devices = 9;
  expect_error([&] { m.validate(); }, {"balance.n_devices", "model.n_routed_experts"},
               "balance.n_devices = 9 must be <= model.n_routed_experts = 8");
  m.balance.n_devices = 2;
  m.balance.max_devices_per_token = 3;
  expect_error([&] { m.validate(); }, {"balance.max_devices_per_token", "balance.n_devices"},
               "balance.max_devices_per_token = 3 must be <= balance.n_devices = 2");
  m.balance.max_devices_per_token = 2;
  m.balance.comm_alpha = 0.1;
  m.balance.bias_update = BiasUpdate::Proportional;
  EXPECT_NO_THROW(m.validate());
}

// ---------------------------------------------------------------------------
// MtpArgs

TEST(MtpArgsValidate, DepthAndLambdas) {
  MtpArgs a;
  EXPECT_NO_THROW(a.validate());
  a.depth = -1;
  expect_error([&] { a.validate(); }, {"mtp.depth"}, "mtp.depth = -1 must be >= 0 (0: next-token prediction only)");
  a = MtpArgs{};
  a.lambda = -0.3;
  expect_error([&] { a.validate(); }, {"mtp.lambda"}, "mtp.lambda = -0.3 must be >= 0");
  a = MtpArgs{};
  a.lambda_switch = 1.5;
  expect_error([&] { a.validate(); }, {"mtp.lambda_switch"},
               "mtp.lambda_switch = 1.5 must be in [0, 1] (a fraction of train.steps)");
  ModelArgs m;
  m.mtp.depth = -2;
  expect_error([&] { m.validate(); }, {"mtp.depth"}, "mtp.depth = -2 must be >= 0 (0: next-token prediction only)");
}

// ---------------------------------------------------------------------------
// Fp8Args: the recipe is judged as a whole, every error names every fp8 key

const Keys kFp8Keys = {"fp8.recipe", "fp8.format", "fp8.grad_format", "fp8.act_granularity",
                       "fp8.weight_granularity", "fp8.grad_granularity", "fp8.scale", "fp8.accum_bits",
                       "fp8.promote_every"};

TEST(Fp8ArgsValidate, TheV3RecipeAndItsVariantsPass) {
  fp8::Fp8Args a;
  EXPECT_NO_THROW(a.validate());
  EXPECT_FALSE(a.to_recipe().enabled);
  a.recipe = fp8::RecipeKind::V3;
  EXPECT_NO_THROW(a.validate());
  const fp8::Recipe r = a.to_recipe();
  EXPECT_TRUE(r.enabled);
  EXPECT_EQ(r.activation.granularity, fp8::Granularity::Tile1x128);
  EXPECT_EQ(r.weight.granularity, fp8::Granularity::Block128x128);
  a.act_granularity = fp8::Granularity::Block1x32;
  a.scale = fp8::ScaleRounding::PowerOfTwo;
  a.format = "e5m6";
  EXPECT_NO_THROW(a.validate());
}

TEST(Fp8ArgsValidate, EveryRuleNamesItsKey) {
  fp8::Fp8Args a;
  a.act_granularity = fp8::Granularity::Block1x32;  // checked while the recipe is none, too
  expect_error([&] { a.validate(); }, kFp8Keys,
               "fp8.act_granularity: 1x32 (mx) groups use E8M0 scales: scale rounding must be pow2, not exact");
  EXPECT_THROW(a.to_recipe(), ArgsError);
  a = fp8::Fp8Args{};
  a.grad_format = "fp8";
  const Thrown bad_format = args_error([&] { a.validate(); });
  EXPECT_EQ(bad_format.keys, kFp8Keys);
  EXPECT_THAT(bad_format.message, HasSubstr("fp8.grad_format: unknown format 'fp8'; allowed: e4m3"));
  a = fp8::Fp8Args{};
  a.accum_bits = 41;
  expect_error([&] { a.validate(); }, kFp8Keys,
               "fp8.accum_bits = 41: allowed 0 (fp32 sums) or 1 .. 40 kept mantissa bits");
  a = fp8::Fp8Args{};
  a.promote_every = -1;
  expect_error([&] { a.validate(); }, kFp8Keys, "fp8.promote_every = -1: allowed >= 0");
  a = fp8::Fp8Args{};
  a.accum_bits = 14;
  a.promote_every = 48;
  expect_error([&] { a.validate(); }, kFp8Keys,
               "fp8.promote_every = 48 must be 0 (never) or a multiple of 32 (products per WGMMA step)");
  a.promote_every = 0;
  expect_error([&] { a.validate(); }, kFp8Keys,
               "fp8.promote_every = 0 (no promotion) needs scales constant along K, but fp8.act_granularity = "
               "\"tile\" changes the scale every 128 elements; allowed with it: tensor, row");
  a.promote_every = 256;
  expect_error([&] { a.validate(); }, kFp8Keys,
               "fp8.promote_every = 256 must divide the 128-wide scale groups of fp8.act_granularity = \"tile\"");
  ModelArgs m;
  m.fp8 = a;
  EXPECT_EQ(args_error([&] { m.validate(); }).keys, kFp8Keys);
}

// ---------------------------------------------------------------------------
// TrainArgs: how a run fits its model

TEST(TrainArgsValidate, RunRules) {
  const ModelArgs m;  // max_seq_len 256
  TrainArgs t;
  EXPECT_NO_THROW(t.validate(m));
  t.seq_len = 257;
  expect_error([&] { t.validate(m); }, {"train.seq_len", "model.max_seq_len"},
               "train.seq_len = 257 must be <= model.max_seq_len = 256");
  ModelArgs with_mtp;
  with_mtp.mtp.depth = 2;
  t = TrainArgs{};
  t.seq_len = 2;
  expect_error([&] { t.validate(with_mtp); }, {"train.seq_len", "mtp.depth"},
               "train.seq_len = 2 must be > mtp.depth = 2 (depth k predicts the token k+1 places ahead within the "
               "sequence)");
  EXPECT_NO_THROW(t.validate(m));  // without MTP any seq_len fits
  t = TrainArgs{};
  t.min_lr = 0.002;
  t.lr = 0.001;
  expect_error([&] { t.validate(m); }, {"train.min_lr", "train.lr"},
               "train.min_lr = 0.002 must be <= train.lr = 0.001");
  t = TrainArgs{};
  t.steps = 10;
  expect_error([&] { t.validate(m); }, {"train.warmup_steps", "train.steps"},
               "train.warmup_steps = 100 must be <= train.steps = 10");
}

// ---------------------------------------------------------------------------
// The config reports the reference's rules with file and line

const std::string kSource = DSLAB_SOURCE_DIR;

TEST(ConfigRules, ErrorsCarryTheFileAndLineOfTheKeys) {
  const std::string dir = test::temp_dir("args_config");
  const std::string path = dir + "/c.toml";
  std::ofstream(path) << "[model]\nn_routed_experts = 8\nn_expert_groups = 3\n";
  try {
    load_run_config(path);
    FAIL() << "8 experts in 3 groups loaded";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), path + ":3: model.n_expert_groups = 3 must divide model.n_routed_experts = 8; "
                                            "model.n_routed_experts set at " + path + ":2");
  }
  try {
    load_run_config(path, {"model.n_expert_groups=4", "model.n_limited_groups=5"});
    FAIL() << "5 of 4 groups loaded";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "--set model.n_limited_groups=5: model.n_limited_groups = 5 must be <= "
                                     "model.n_expert_groups = 4; model.n_expert_groups set at --set "
                                     "model.n_expert_groups=4");
  }
}

// The choices of every enum key are its table's names.
TEST(ConfigRules, EnumKeysOfferTheNamesOfTheirTables) {
  const auto choices_of = [](const std::string& key) {
    for (const std::string& line : describe_config_keys())
      if (line.rfind(key + " ", 0) == 0) {
        const size_t at = line.find("one of ");
        EXPECT_NE(at, std::string::npos) << line;
        std::set<std::string> names;
        std::string rest = line.substr(at + 7, line.find("  ", at) - at - 7);
        for (size_t b = 0; b <= rest.size();) {
          const size_t e = std::min(rest.find(", ", b), rest.size());
          names.insert(rest.substr(b, e - b));
          b = e + 2;
        }
        return names;
      }
    ADD_FAILURE() << "no key " << key;
    return std::set<std::string>{};
  };
  const auto names = [](std::vector<std::string> v) { return std::set<std::string>(v.begin(), v.end()); };
  EXPECT_EQ(choices_of("model.attn"), names(enum_names<AttnKind>()));
  EXPECT_EQ(choices_of("model.rope"), names(enum_names<MlaRope>()));
  EXPECT_EQ(choices_of("model.score_func"), names(enum_names<ScoreFunc>()));
  EXPECT_EQ(choices_of("balance.bias_update"), names(enum_names<BiasUpdate>()));
  EXPECT_EQ(choices_of("fp8.recipe"), names(enum_names<fp8::RecipeKind>()));
  EXPECT_EQ(choices_of("fp8.scale"), names(enum_names<fp8::ScaleRounding>()));
  for (const char* key : {"fp8.act_granularity", "fp8.weight_granularity", "fp8.grad_granularity"})
    EXPECT_EQ(choices_of(key), names(enum_names<fp8::Granularity>())) << key;
}

// dslab exits with status 2 and prints the rule's message, word for word.
TEST(ConfigRules, TheProgramExitsTwoWithTheSameText) {
  const std::string dir = test::temp_dir("args_cli");
  const std::string moe = kSource + "/experiments/configs/moe_balance_base.toml";
  const std::string tiny = kSource + "/experiments/configs/tiny.toml";
  const std::string fp8 = kSource + "/experiments/configs/fp8_base.toml";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {tiny + " --set model.dim=66",
       "dslab: config error: --set model.dim=66: model.dim = 66 must be a multiple of model.n_heads = 4 "
       "(head_dim = dim / n_heads); model.n_heads set at " + tiny + ":8\n"},
      {moe + " --set model.n_expert_groups=3",
       "dslab: config error: --set model.n_expert_groups=3: model.n_expert_groups = 3 must divide "
       "model.n_routed_experts = 8; model.n_routed_experts set at " + moe + ":14\n"},
      {moe + " --set balance.n_devices=2 --set balance.max_devices_per_token=3",
       "dslab: config error: --set balance.max_devices_per_token=3: balance.max_devices_per_token = 3 must be <= "
       "balance.n_devices = 2; balance.n_devices set at --set balance.n_devices=2\n"},
      {tiny + " --set balance.bias_update=sign",
       "dslab: config error: --set balance.bias_update=sign: load balancing needs MoE layers: set "
       "model.n_routed_experts > 0, or leave every balance.*_alpha at 0 and balance.bias_update = \"none\"\n"},
      {tiny + " --set model.attn=mla --set model.rope=full --set model.qk_rope_head_dim=3",
       "dslab: config error: --set model.qk_rope_head_dim=3: model.qk_nope_head_dim + model.qk_rope_head_dim = 35 "
       "must be even with model.rope = \"full\" (RoPE rotates pairs); model.rope set at --set model.rope=full\n"},
      {fp8 + " --set fp8.recipe=v3 --set fp8.accum_bits=14 --set fp8.promote_every=48",
       "dslab: config error: --set fp8.promote_every=48: fp8.promote_every = 48 must be 0 (never) or a multiple "
       "of 32 (products per WGMMA step); fp8.recipe set at --set fp8.recipe=v3; fp8.accum_bits set at --set "
       "fp8.accum_bits=14\n"},
      {tiny + " --set train.min_lr=1",
       "dslab: config error: --set train.min_lr=1: train.min_lr = 1 must be <= train.lr = 0.003; train.lr set "
       "at " + tiny + ":18\n"},
      {fp8 + " --set fp8.grad_granularity=diagonal",
       "dslab: config error: --set fp8.grad_granularity=diagonal: fp8.grad_granularity = \"diagonal\" is not "
       "allowed: expected one of tile, block, row, tensor, mx\n"},
  };
  for (const auto& [args, expected] : cases) {
    std::string out;
    EXPECT_EQ(test::run_dslab("train " + args + " --out " + dir + "/r.h5", &out), 2) << args;
    EXPECT_EQ(out, expected) << args;
  }
}

}  // namespace
}  // namespace dslab
