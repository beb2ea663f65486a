// The config system: schema checks, cross-field rules, extends, overrides,
// the effective-config text and experiment expansion. Every error message is
// checked for the file, the line and the key it must name.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>

#include "experiments/config.hpp"
#include "experiments/experiment.hpp"
#include "tests/test_support.hpp"

using testing::HasSubstr;
using testing::Not;

namespace dslab {
namespace {

std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
  return path;
}

// The message of the ConfigError `f` throws (a test failure if it throws none).
std::string config_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError";
  return "";
}

std::string load_error(const std::string& path, const std::vector<std::string>& overrides = {}) {
  return config_error([&] { load_run_config(path, overrides); });
}

// A config file whose only content is `body`, loaded with `overrides`.
std::string error_for(const std::string& body, const std::vector<std::string>& overrides = {}) {
  const std::string dir = test::temp_dir("config_error_for");
  return load_error(write(dir, "c.toml", body), overrides);
}

void expect_same_fields(const RunConfig& a, const RunConfig& b) {
  const auto bits = [](double x) { return std::bit_cast<uint64_t>(x); };
  EXPECT_EQ(a.model.vocab_size, b.model.vocab_size);
  EXPECT_EQ(a.model.dim, b.model.dim);
  EXPECT_EQ(a.model.n_layers, b.model.n_layers);
  EXPECT_EQ(a.model.n_heads, b.model.n_heads);
  EXPECT_EQ(a.model.n_kv_heads, b.model.n_kv_heads);
  EXPECT_EQ(a.model.inter_dim, b.model.inter_dim);
  EXPECT_EQ(a.model.max_seq_len, b.model.max_seq_len);
  EXPECT_EQ(bits(a.model.rope_theta), bits(b.model.rope_theta));
  EXPECT_EQ(bits(a.model.norm_eps), bits(b.model.norm_eps));
  EXPECT_EQ(bits(a.model.init_std), bits(b.model.init_std));
  EXPECT_EQ(a.model.attn, b.model.attn);
  EXPECT_EQ(a.model.mla.q_lora_rank, b.model.mla.q_lora_rank);
  EXPECT_EQ(a.model.mla.kv_lora_rank, b.model.mla.kv_lora_rank);
  EXPECT_EQ(a.model.mla.qk_nope_head_dim, b.model.mla.qk_nope_head_dim);
  EXPECT_EQ(a.model.mla.qk_rope_head_dim, b.model.mla.qk_rope_head_dim);
  EXPECT_EQ(a.model.mla.v_head_dim, b.model.mla.v_head_dim);
  EXPECT_EQ(a.model.mla.rope, b.model.mla.rope);
  EXPECT_EQ(bits(a.model.mla.rope_factor), bits(b.model.mla.rope_factor));
  EXPECT_EQ(bits(a.model.mla.mscale), bits(b.model.mla.mscale));
  EXPECT_EQ(a.train.steps, b.train.steps);
  EXPECT_EQ(a.train.batch_size, b.train.batch_size);
  EXPECT_EQ(a.train.seq_len, b.train.seq_len);
  EXPECT_EQ(bits(a.train.lr), bits(b.train.lr));
  EXPECT_EQ(bits(a.train.min_lr), bits(b.train.min_lr));
  EXPECT_EQ(a.train.warmup_steps, b.train.warmup_steps);
  EXPECT_EQ(bits(a.train.adamw.beta1), bits(b.train.adamw.beta1));
  EXPECT_EQ(bits(a.train.adamw.beta2), bits(b.train.adamw.beta2));
  EXPECT_EQ(bits(a.train.adamw.eps), bits(b.train.adamw.eps));
  EXPECT_EQ(bits(a.train.adamw.weight_decay), bits(b.train.adamw.weight_decay));
  EXPECT_EQ(bits(a.train.grad_clip), bits(b.train.grad_clip));
  EXPECT_EQ(a.train.seed, b.train.seed);
  EXPECT_EQ(a.train.eval_every, b.train.eval_every);
  EXPECT_EQ(a.train.eval_batches, b.train.eval_batches);
  EXPECT_EQ(a.train.checkpoint_every, b.train.checkpoint_every);
  EXPECT_EQ(a.data.path, b.data.path);
  EXPECT_EQ(bits(a.data.val_fraction), bits(b.data.val_fraction));
  EXPECT_EQ(a.train.init, b.train.init);
  EXPECT_EQ(bits(a.train.task_text.share), bits(b.train.task_text.share));
  EXPECT_EQ(a.train.task_text.response, b.train.task_text.response);
  EXPECT_EQ(a.train.task_text.loss, b.train.task_text.loss);
  EXPECT_EQ(a.train.task_text.task.kind, b.train.task_text.task.kind);
  EXPECT_EQ(a.train.task_text.task.n_numbers, b.train.task_text.task.n_numbers);
}

const std::string kTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";

TEST(Config, TinyLoads) {
  const RunConfig c = load_run_config(kTiny);
  EXPECT_EQ(c.train.steps, 40);
  EXPECT_EQ(c.data.path, "kjv");
  EXPECT_EQ(c.model.dim, 64);
  EXPECT_EQ(c.model.n_kv_heads, 2);
  EXPECT_THAT(test::read_file(kTiny), HasSubstr("\nsteps = 40\n"));
}

TEST(Config, UnsetKeysTakeTheStructDefaults) {
  const std::string dir = test::temp_dir("config_defaults");
  RunConfig expected;
  expect_same_fields(load_run_config(write(dir, "empty.toml", "# nothing set\n")), expected);
}

TEST(Config, UnknownKeySuggestsTheNearest) {
  const std::string dir = test::temp_dir("config_unknown");
  const std::string path = write(dir, "c.toml", "[model]\ndim = 64\ndimm = 3\n");
  const std::string e = load_error(path);
  EXPECT_THAT(e, HasSubstr(path + ":3: unknown key 'model.dimm' (did you mean 'model.dim'? "
                                  "keys of [model]: vocab_size, dim, n_layers"));

  EXPECT_THAT(error_for("[model]\n\nseq_len = 64\n"),
              HasSubstr(":3: unknown key 'model.seq_len' (did you mean 'train.seq_len'?"));
  EXPECT_THAT(error_for("[modle]\ndim = 64\n"),
              HasSubstr(":1: unknown top-level key 'modle' (did you mean 'model'?"));
  EXPECT_THAT(error_for("dim = 64\n"), HasSubstr(":1: unknown top-level key 'dim' (did you mean 'model.dim'?"));
  const std::string far = error_for("[train]\nsteps = 4\nqqqqqqqqqq = 1\n");
  EXPECT_THAT(far, HasSubstr(":3: unknown key 'train.qqqqqqqqqq' (keys of [train]: steps,"));
  EXPECT_THAT(far, Not(HasSubstr("did you mean")));
}

// Task text in a training config: [data]'s task keys and [task] reach
// TrainArgs::task_text; they are training keys only; [task] still reaches an
// RL config's problems.
TEST(Config, TaskTextKeysOfTrainingConfigs) {
  const std::string dir = test::temp_dir("config_task_text");
  const std::string path = write(dir, "t.toml",
                                 "[train]\ninit = \"base.h5\"\n[data]\ntask_share = 0.25\nresponse = \"trace\"\n"
                                 "loss = \"response\"\n[task]\nkind = \"addition\"\nmax_digits = 4\n");
  const RunConfig c = load_run_config(path);
  EXPECT_EQ(c.train.init, "base.h5");
  EXPECT_EQ(c.train.task_text.share, 0.25);
  EXPECT_EQ(c.train.task_text.response, TaskResponse::Trace);
  EXPECT_EQ(c.train.task_text.loss, LossOn::Response);
  EXPECT_EQ(c.train.task_text.task.kind, TaskKind::Addition);
  EXPECT_EQ(c.train.task_text.task.max_digits, 4);
  expect_same_fields(parse_run_config_text(c.text), c);
  EXPECT_THAT(error_for("[data]\nloss = \"prompt\"\n"),
              HasSubstr(":2: data.loss = \"prompt\" is not allowed: expected one of all, response"));
  EXPECT_THAT(error_for("[task]\nmin_digits = 5\nmax_digits = 4\n"), HasSubstr("task.max_digits"));
  const std::string rl = write(dir, "rl.toml", "[data]\ntask_share = 0.5\n");
  const std::string e = config_error([&] { load_rl_config(rl); });
  EXPECT_THAT(e, HasSubstr(":2: unknown key 'data.task_share' (keys of [data]: path, val_fraction)"));
  const RunConfig r = load_rl_config(write(dir, "rl2.toml", "[task]\nkind = \"addition\"\n"));
  EXPECT_EQ(r.rl.task.kind, TaskKind::Addition);
  EXPECT_THAT(r.text, Not(HasSubstr("task_share")));
}

TEST(Config, WrongTypeNamesKeyAndValue) {
  const std::string dir = test::temp_dir("config_type");
  const std::string path = write(dir, "c.toml", "[model]\ndim = 64\nn_heads = \"four\"\n");
  EXPECT_EQ(load_error(path), path + ":3: model.n_heads must be an integer, got string \"four\"");
  EXPECT_THAT(error_for("[model]\ndim = 64.0\n"),
              HasSubstr(":2: model.dim must be an integer, got float 64.0"));
  EXPECT_THAT(error_for("[data]\npath = 3\n"), HasSubstr(":2: data.path must be a string, got integer 3"));
  EXPECT_THAT(error_for("[train]\nlr = [1]\n"), HasSubstr(":2: train.lr must be a float, got an array"));
  EXPECT_THAT(error_for("model = 3\n"), HasSubstr(":1: model must be the table [model], got integer 3"));
  // A float key takes an integer.
  const std::string ok = write(dir, "ok.toml", "[model]\nrope_theta = 500000\n");
  EXPECT_EQ(load_run_config(ok).model.rope_theta, 500000.0);
}

TEST(Config, OutOfRangeSaysWhatIsAllowed) {
  const std::string dir = test::temp_dir("config_range");
  const std::string path = write(dir, "c.toml", "[model]\n# width\ndim = -4\n");
  EXPECT_EQ(load_error(path), path + ":3: model.dim = -4 is out of range: allowed 1 .. 65536");
  EXPECT_THAT(error_for("[data]\nval_fraction = 1\n"),
              HasSubstr(":2: data.val_fraction = 1.0 is out of range: allowed (0, 1)"));
  EXPECT_THAT(error_for("[train]\nbeta2 = 1.0\n"),
              HasSubstr(":2: train.beta2 = 1.0 is out of range: allowed [0, 1)"));
  EXPECT_THAT(error_for("[train]\nlr = nan\n"), HasSubstr(":2: train.lr = nan is out of range"));
  EXPECT_THAT(error_for("[data]\npath = \"\"\n"), HasSubstr(":2: data.path = \"\" is not allowed"));
  EXPECT_THAT(error_for("[model]\nvocab_size = 255\n"),
              HasSubstr(":2: model.vocab_size = 255 is out of range: allowed 256 .. "));
  EXPECT_THAT(error_for("[train]\neval_batches = 0\n"),
              HasSubstr(":2: train.eval_batches = 0 is out of range: allowed 1 .. "));
  // The ends of a closed range are allowed.
  const std::string ends = write(dir, "ends.toml",
                                 "[model]\ndim = 65536\nn_heads = 1\nn_kv_heads = 1\n[train]\nwarmup_steps = 0\n"
                                 "min_lr = 0\ngrad_clip = 0\nbeta1 = 0\n");
  EXPECT_EQ(load_run_config(ends).model.dim, 65536);
}

TEST(Config, CrossFieldRulesNameBothKeys) {
  // The message is located at the key set last.
  EXPECT_THAT(error_for("[model]\nn_heads = 4\ndim = 66\n"),
              HasSubstr(":3: model.dim = 66 must be a multiple of model.n_heads = 4"));
  EXPECT_THAT(error_for("[model]\nn_heads = 4\nn_kv_heads = 3\n"),
              HasSubstr(":3: model.n_heads = 4 must be a multiple of model.n_kv_heads = 3"));
  EXPECT_THAT(error_for("[model]\nn_heads = 2\nn_kv_heads = 4\n"),
              HasSubstr(":3: model.n_heads = 2 must be a multiple of model.n_kv_heads = 4"));
  EXPECT_THAT(error_for("[model]\ndim = 12\nn_heads = 4\nn_kv_heads = 4\n"),
              HasSubstr(":3: head_dim = model.dim / model.n_heads = 12 / 4 = 3 must be even"));
  EXPECT_THAT(error_for("[model]\nmax_seq_len = 32\n[train]\nseq_len = 64\n"),
              HasSubstr(":4: train.seq_len = 64 must be <= model.max_seq_len = 32"));
  EXPECT_THAT(error_for("[train]\nlr = 0.001\nmin_lr = 0.01\n"),
              HasSubstr(":3: train.min_lr = 0.01 must be <= train.lr = 0.001"));
  EXPECT_THAT(error_for("[train]\nsteps = 40\n"),
              HasSubstr(":2: train.warmup_steps = " + std::to_string(TrainArgs{}.warmup_steps) +
                        " must be <= train.steps = 40"));
  // An override set last carries the blame; the file's key is named with its line.
  const std::string dir = test::temp_dir("config_cross");
  const std::string path = write(dir, "c.toml", "[model]\ndim = 64\nn_heads = 4\n");
  EXPECT_EQ(load_error(path, {"model.n_heads=3"}),
            "--set model.n_heads=3: model.dim = 64 must be a multiple of model.n_heads = 3 "
            "(head_dim = dim / n_heads); model.dim set at " + path + ":2");
}

// attn = "mla" brings its own head dims: the MHA rules on dim / n_heads and
// n_kv_heads no longer apply, the RoPE variant's do.
TEST(Config, MlaKeys) {
  const std::string dir = test::temp_dir("config_mla");
  const RunConfig c = load_run_config(
      write(dir, "mla.toml",
            "[model]\nattn = \"mla\"\ndim = 66\nn_heads = 4\nn_kv_heads = 3\nq_lora_rank = 24\n"
            "kv_lora_rank = 20\nqk_nope_head_dim = 10\nqk_rope_head_dim = 6\nv_head_dim = 12\n"
            "rope = \"full\"\nrope_factor = 40\nmscale = 0.707\n"));
  EXPECT_TRUE(c.model.attn == AttnKind::Mla);
  EXPECT_EQ(c.model.mla_args().q_lora_rank, 24);
  EXPECT_EQ(c.model.mla_args().kv_lora_rank, 20);
  EXPECT_EQ(c.model.mla_args().qk_head_dim(), 16);
  EXPECT_EQ(c.model.mla_args().v_head_dim, 12);
  EXPECT_EQ(c.model.mla_args().rope, MlaRope::Full);
  EXPECT_EQ(c.model.mla_args().rope_factor, 40.0);
  EXPECT_EQ(c.model.mla_args().mscale, 0.707);
  expect_same_fields(parse_run_config_text(c.text), c);
  EXPECT_THAT(error_for("[model]\nattn = \"gqa\"\n"),
              HasSubstr(":2: model.attn = \"gqa\" is not allowed: expected one of mha, mla"));
  EXPECT_THAT(error_for("[model]\nattn = \"mla\"\nrope = \"partial\"\n"),
              HasSubstr(":3: model.rope = \"partial\" is not allowed: expected one of decoupled, "
                        "none, full"));
  EXPECT_THAT(error_for("[model]\nattn = \"mla\"\nqk_rope_head_dim = 3\n"),
              HasSubstr(":3: model.qk_rope_head_dim = 3 must be even and > 0 with model.rope = "
                        "\"decoupled\""));
  EXPECT_THAT(error_for("[model]\nattn = \"mla\"\nqk_rope_head_dim = 0\n"),
              HasSubstr(":3: model.qk_rope_head_dim = 0 must be even and > 0"));
  EXPECT_THAT(error_for("[model]\nattn = \"mla\"\nrope = \"full\"\nqk_nope_head_dim = 7\n"),
              HasSubstr(":4: model.qk_nope_head_dim + model.qk_rope_head_dim = 23 must be even"));
  EXPECT_THAT(error_for("[model]\nattn = \"mla\"\nkv_lora_rank = 0\n"),
              HasSubstr(":3: model.kv_lora_rank = 0 is out of range"));
  EXPECT_THAT(error_for("[model]\nattn = \"mla\"\nrope_factor = 0.5\n"),
              HasSubstr(":3: model.rope_factor = 0.5 is out of range"));
  // No RoPE at all may have no decoupled dims.
  EXPECT_EQ(load_run_config(write(dir, "nope.toml",
                                  "[model]\nattn = \"mla\"\nrope = \"none\"\nqk_rope_head_dim = 0\n"))
                .model.mla.qk_rope_head_dim,
            0);
}

TEST(Config, SyntaxErrorHasFileAndLine) {
  const std::string dir = test::temp_dir("config_syntax");
  const std::string path = write(dir, "c.toml", "[model]\ndim = 64\nn_heads = = 4\n");
  EXPECT_THAT(load_error(path), HasSubstr(path + ":3: TOML syntax error"));
  EXPECT_THAT(error_for("[model]\ndim = 64\ndim = 32\n"), HasSubstr(":3: TOML syntax error"));
  EXPECT_THAT(load_error(dir + "/missing.toml"), HasSubstr(dir + "/missing.toml: cannot read"));
}

TEST(Config, ExtendsOverridesKeyByKeyAndChains) {
  const std::string dir = test::temp_dir("config_extends");
  write(dir, "root.toml", "[model]\nn_layers = 3\ninter_dim = 100\n[train]\nseed = 5\n");
  write(dir, "base.toml", "extends = \"root.toml\"\n[model]\ndim = 32\nn_layers = 6\n");
  const std::string child =
      write(dir, "sub/child.toml", "extends = \"../base.toml\"\n[model]\ndim = 64\n");
  const RunConfig c = load_run_config(child);
  EXPECT_EQ(c.model.dim, 64);         // child over base
  EXPECT_EQ(c.model.n_layers, 6);     // base over root
  EXPECT_EQ(c.model.inter_dim, 100);  // root
  EXPECT_EQ(c.train.seed, 5u);        // root, another table
  EXPECT_EQ(c.model.n_heads, ModelArgs{}.n_heads);
  // Overrides come after extends.
  EXPECT_EQ(load_run_config(child, {"model.n_layers=2"}).model.n_layers, 2);
  // An error inside a base names the base.
  write(dir, "bad_base.toml", "[model]\n\ndim = 0\n");
  const std::string bad = write(dir, "bad.toml", "extends = \"bad_base.toml\"\n");
  EXPECT_THAT(load_error(bad), HasSubstr(dir + "/bad_base.toml:3: model.dim = 0 is out of range"));
}

TEST(Config, ExtendsCycleAndMissingBase) {
  const std::string dir = test::temp_dir("config_cycle");
  const std::string a = write(dir, "a.toml", "extends = \"b.toml\"\n");
  write(dir, "b.toml", "# b\nextends = \"a.toml\"\n");
  const std::string e = load_error(a);
  EXPECT_THAT(e, HasSubstr(dir + "/b.toml:2: extends = \"a.toml\" makes a cycle: " + a + " -> " + dir +
                           "/b.toml -> " + a));
  const std::string self = write(dir, "self.toml", "extends = \"self.toml\"\n");
  EXPECT_THAT(load_error(self), HasSubstr(self + ":1: extends = \"self.toml\" makes a cycle"));
  const std::string orphan = write(dir, "orphan.toml", "extends = \"nope.toml\"\n");
  EXPECT_EQ(load_error(orphan), orphan + ":1: extends = \"nope.toml\": no such file " + dir + "/nope.toml");
  EXPECT_THAT(error_for("extends = 3\n"), HasSubstr(":1: extends must be a string"));
}

TEST(Config, Overrides) {
  const std::string dir = test::temp_dir("config_overrides");
  const std::string path = write(dir, "c.toml", "[model]\ndim = 64\n[data]\npath = \"kjv\"\n");
  const RunConfig c = load_run_config(path, {"model.dim=128", "train.lr = 0.002", "model.dim=32"});
  EXPECT_EQ(c.model.dim, 32);  // in order
  EXPECT_EQ(c.train.lr, 0.002);
  EXPECT_EQ(load_error(path, {"model.dim=abc"}),
            "--set model.dim=abc: model.dim must be an integer (1 .. 65536)");
  EXPECT_EQ(load_error(path, {"model.dim=\"64\""}),
            "--set model.dim=\"64\": model.dim must be an integer, got string \"64\"");
  EXPECT_EQ(load_error(path, {"model.dim=0"}),
            "--set model.dim=0: model.dim = 0 is out of range: allowed 1 .. 65536");
  EXPECT_THAT(load_error(path, {"model.dimm=3"}),
              HasSubstr("--set model.dimm=3: unknown key 'model.dimm' (did you mean 'model.dim'?"));
  EXPECT_EQ(load_error(path, {"data.val_fraction=x"}),
            "--set data.val_fraction=x: data.val_fraction must be a float in (0, 1)");
  EXPECT_THAT(load_error(path, {"train.steps"}), HasSubstr("--set train.steps: expected key.path=value"));
  // A string key takes raw text when the value is not a TOML string.
  EXPECT_EQ(load_run_config(path, {"data.path=corpora/my text.txt"}).data.path, "corpora/my text.txt");
  EXPECT_EQ(load_run_config(path, {"data.path=\"quoted\""}).data.path, "quoted");
  EXPECT_EQ(load_run_config(path, {"data.path=2024"}).data.path, "2024");
  EXPECT_THAT(load_error(path, {"data.path="}), HasSubstr("--set data.path=: data.path = \"\" is not allowed"));
}

TEST(Config, TextListsEveryKeyAndRoundTrips) {
  const std::string dir = test::temp_dir("config_text");
  const RunConfig c = load_run_config(kTiny, {"train.lr=0.30000000000000004", "data.path=a \"b\"\\c"});
  const RunConfig back = parse_run_config_text(c.text);
  expect_same_fields(c, back);
  EXPECT_EQ(back.text, c.text);
  EXPECT_EQ(back.data.path, "a \"b\"\\c");
  // One line per schema key, under [model], [train], [data] in that order.
  size_t assignments = 0;
  std::istringstream lines(c.text);
  for (std::string line; std::getline(lines, line);) assignments += line.find(" = ") != std::string::npos;
  EXPECT_EQ(assignments, describe_config_keys().size());
  const size_t model = c.text.find("[model]\n"), train = c.text.find("\n[train]\n"),
               data = c.text.find("\n[data]\n");
  EXPECT_EQ(model, 0u);
  EXPECT_LT(model, train);
  EXPECT_LT(train, data);
  EXPECT_NE(data, std::string::npos);
  // Floats come back bit for bit.
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200; ++i) {
    const double lr = std::uniform_real_distribution<double>(1e-9, 10)(rng);
    const double frac = std::ldexp(std::uniform_real_distribution<double>(0.5, 1)(rng), -int(i % 40) - 1);
    char a[64], b[64];
    std::snprintf(a, sizeof a, "train.lr=%.17g", lr);
    std::snprintf(b, sizeof b, "data.val_fraction=%.17g", frac);
    const RunConfig r = load_run_config(kTiny, {a, b, "train.min_lr=0"});
    ASSERT_EQ(std::bit_cast<uint64_t>(r.train.lr), std::bit_cast<uint64_t>(lr)) << a;
    const RunConfig p = parse_run_config_text(r.text);
    ASSERT_EQ(std::bit_cast<uint64_t>(p.train.lr), std::bit_cast<uint64_t>(lr)) << r.text;
    ASSERT_EQ(std::bit_cast<uint64_t>(p.data.val_fraction), std::bit_cast<uint64_t>(frac)) << r.text;
    ASSERT_EQ(p.text, r.text);
  }
  EXPECT_THAT(config_error([] { parse_run_config_text("extends = \"x.toml\"\n"); }),
              HasSubstr("<config text>:1: extends is not allowed"));
  EXPECT_THAT(config_error([] { parse_run_config_text("[model]\ndim = 6\nn_heads = 4\n"); }),
              HasSubstr("<config text>:3: model.dim = 6 must be a multiple of model.n_heads = 4 "
                        "(head_dim = dim / n_heads); model.dim set at <config text>:2"));
}

TEST(Config, DescribeKeysShowsTypeRangeAndDefault) {
  const auto lines = describe_config_keys();
  ASSERT_FALSE(lines.empty());
  const auto line_of = [&](const std::string& key) {
    for (const std::string& l : lines)
      if (l.rfind(key + " ", 0) == 0) return l;
    return std::string();
  };
  EXPECT_THAT(line_of("model.dim"), HasSubstr("integer  1 .. 65536"));
  EXPECT_THAT(line_of("model.dim"), HasSubstr("default " + std::to_string(ModelArgs{}.dim) + " "));
  EXPECT_THAT(line_of("train.steps"), HasSubstr("default " + std::to_string(TrainArgs{}.steps) + " "));
  EXPECT_THAT(line_of("train.beta2"), HasSubstr("float"));
  EXPECT_THAT(line_of("data.path"), HasSubstr("default \"" + DataArgs{}.path + "\""));
  EXPECT_THAT(line_of("train.weight_decay"), HasSubstr("weight decay"));
}

TEST(Config, ResolveDataPath) {
  const char* saved[] = {"DSLAB_DATA", "XDG_CACHE_HOME", "HOME"};
  std::vector<std::pair<std::string, std::optional<std::string>>> old;
  for (const char* n : saved) {
    const char* v = std::getenv(n);
    old.emplace_back(n, v ? std::optional<std::string>(v) : std::nullopt);
  }
  setenv("DSLAB_DATA", "/d", 1);
  setenv("XDG_CACHE_HOME", "/x", 1);
  setenv("HOME", "/h", 1);
  EXPECT_EQ(resolve_data_path("kjv"), "/d/kjv.txt");
  unsetenv("DSLAB_DATA");
  EXPECT_EQ(resolve_data_path("kjv"), "/x/dslab/kjv.txt");
  unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(resolve_data_path("kjv"), "/h/.cache/dslab/kjv.txt");
  EXPECT_EQ(resolve_data_path("some/file.txt"), "some/file.txt");
  for (const auto& [n, v] : old) v ? setenv(n.c_str(), v->c_str(), 1) : unsetenv(n.c_str());
}

// An experiment directory with a base config of n_heads 4, warmup 2.
std::string experiment_dir(const std::string& name) {
  const std::string dir = test::temp_dir(name);
  write(dir, "configs/base.toml",
        "[model]\ndim = 32\nn_heads = 4\nn_kv_heads = 4\n[train]\nsteps = 10\nwarmup_steps = 2\n");
  return dir;
}

TEST(Experiment, ExpandsTheCartesianProductInFileOrder) {
  const std::string dir = experiment_dir("experiment_expand");
  const std::string path = write(dir, "gqa.toml", R"(description = "GQA sweep"
config = "configs/base.toml"

[smoke]
"train.steps" = 4
train.eval_every = 2

[[runs]]
name = "baseline"

[[runs]]
name = "gqa"
[runs.set]
"train.seed" = [7, 8]
"model.n_kv_heads" = [1, 2, 4]
"train.lr" = 0.002
"data.path" = ["a/b.txt"]
)");
  const Experiment e = load_experiment(path);
  EXPECT_EQ(e.name, "gqa");
  EXPECT_EQ(e.path, path);
  EXPECT_EQ(e.description, "GQA sweep");
  EXPECT_EQ(e.config_path, dir + "/configs/base.toml");
  EXPECT_EQ(e.smoke_overrides, (std::vector<std::string>{"train.steps=4", "train.eval_every=2"}));
  const std::vector<int> seeds = {7, 8}, kv_heads = {1, 2, 4};
  ASSERT_EQ(e.runs.size(), 1 + seeds.size() * kv_heads.size());
  EXPECT_EQ(e.runs[0].name, "baseline");
  EXPECT_TRUE(e.runs[0].overrides.empty());
  size_t i = 1;
  for (int seed : seeds) {
    for (int kv : kv_heads) {
      const ExperimentRun& r = e.runs[i++];
      EXPECT_EQ(r.name, "gqa-seed=" + std::to_string(seed) + "-n_kv_heads=" + std::to_string(kv) +
                            "-path=a_b.txt");
      EXPECT_EQ(r.overrides, (std::vector<std::string>{
                                 "train.seed=" + std::to_string(seed),
                                 "model.n_kv_heads=" + std::to_string(kv), "train.lr=0.002",
                                 "data.path=\"a/b.txt\""}));
      const RunConfig c = load_run_config(e.config_path, r.overrides);
      EXPECT_EQ(c.model.n_kv_heads, kv);
      EXPECT_EQ(c.data.path, "a/b.txt");
    }
  }
}

TEST(Experiment, ABadSweepValueNamesTheRun) {
  const std::string dir = experiment_dir("experiment_bad_sweep");
  const std::string path = write(dir, "e.toml", R"(description = "d"
config = "configs/base.toml"
[[runs]]
name = "gqa"
[runs.set]
"model.n_kv_heads" = [1, 3]
)");
  EXPECT_THAT(config_error([&] { load_experiment(path); }),
              HasSubstr(path + ":6: run 'gqa-n_kv_heads=3': model.n_heads = 4 must be a multiple of "
                        "model.n_kv_heads = 3 (each key/value head serves an equal group of query "
                        "heads); model.n_heads set at " + dir + "/configs/base.toml:3"));
  const std::string typo = write(dir, "typo.toml", R"(description = "d"
config = "configs/base.toml"
[[runs]]
name = "x"
set = { "model.dimm" = 3 }
)");
  EXPECT_THAT(config_error([&] { load_experiment(typo); }),
              HasSubstr(typo + ":5: run 'x': unknown key 'model.dimm' (did you mean 'model.dim'?"));
  // Smoke overrides are checked with every run: warmup 2 > steps 1.
  const std::string smoke = write(dir, "smoke.toml", R"(description = "d"
config = "configs/base.toml"
[smoke]
"train.steps" = 1
[[runs]]
name = "x"
)");
  EXPECT_THAT(config_error([&] { load_experiment(smoke); }),
              HasSubstr(smoke + ":4: [smoke] with run 'x': train.warmup_steps = 2 must be <= "
                        "train.steps = 1"));
}

TEST(Experiment, MalformedFilesNameTheProblem) {
  const std::string dir = experiment_dir("experiment_malformed");
  const auto error_of = [&](const std::string& body) {
    const std::string path = write(dir, "e.toml", body);
    return config_error([&] { load_experiment(path); });
  };
  const std::string head = "description = \"d\"\nconfig = \"configs/base.toml\"\n";
  EXPECT_THAT(error_of(head + "[[runs]]\nname = \"a\"\n[[runs]]\nname = \"a\"\n"),
              HasSubstr("e.toml:5: duplicate run name 'a' (also at " + dir + "/e.toml:3)"));
  EXPECT_THAT(error_of(head + "[[runs]]\nname = \"a-seed=1\"\n[[runs]]\nname = \"a\"\n"
                              "set = { \"train.seed\" = [1] }\n"),
              HasSubstr("e.toml:5: duplicate run name 'a-seed=1'"));
  EXPECT_THAT(error_of("config = \"configs/base.toml\"\n[[runs]]\nname = \"a\"\n"),
              HasSubstr("e.toml: missing description"));
  EXPECT_THAT(error_of("description = \"d\"\n[[runs]]\nname = \"a\"\n"),
              HasSubstr("e.toml:2: run 'a' has no config: give its [[runs]] entry config = "));
  EXPECT_THAT(error_of("description = \"d\"\n"), HasSubstr("e.toml: missing config"));
  EXPECT_THAT(error_of(head), HasSubstr("e.toml: no runs"));
  EXPECT_THAT(error_of("description = \"two\\nlines\"\n"),
              HasSubstr("e.toml:1: description must be one non-empty line"));
  EXPECT_THAT(error_of("description = \"d\"\nconfig = \"nope.toml\"\n"),
              HasSubstr("e.toml:2: config = \"nope.toml\": no such file " + dir + "/nope.toml"));
  EXPECT_THAT(error_of(head + "descripton = \"x\"\n"),
              HasSubstr("e.toml:3: unknown key 'descripton' (did you mean 'description'?"));
  EXPECT_THAT(error_of(head + "[[runs]]\nname = \"a/b\"\n"), HasSubstr("e.toml:4: name must be letters"));
  EXPECT_THAT(error_of(head + "[[runs]]\nset = { \"train.seed\" = 1 }\n"),
              HasSubstr("e.toml:3: a [[runs]] entry needs a name"));
  EXPECT_THAT(error_of(head + "[[runs]]\nname = \"a\"\nsteps = 3\n"),
              HasSubstr("e.toml:5: unknown key 'steps' in [[runs]]"));
  EXPECT_THAT(error_of(head + "[[runs]]\nname = \"a\"\n[runs.set]\n\"train.seed\" = []\n"),
              HasSubstr("e.toml:6: run 'a': train.seed = [] sweeps no value"));
  EXPECT_THAT(error_of(head + "[smoke]\n\"train.seed\" = [1, 2]\n[[runs]]\nname = \"a\"\n"),
              HasSubstr("e.toml:4: [smoke] train.seed takes one value"));
  EXPECT_THAT(error_of(head + "[[runs]]\nname = \"a\"\n[runs.set]\n\"train.seed\" = 1.5\n"),
              HasSubstr("e.toml:6: run 'a': train.seed must be an integer, got float 1.5"));
}

TEST(Experiment, SweepIsANotebookWithParameters) {
  const std::string dir = experiment_dir("experiment_sweep");
  write(dir, "nb.ipynb", "{}");
  const std::string ok = write(dir, "s.toml",
                               "description = \"a sweep\"\nnotebook = \"nb.ipynb\"\n[sweep]\npp = [4, 8]\n");
  const Experiment e = load_experiment(ok);
  EXPECT_EQ(e.notebook, dir + "/nb.ipynb");
  EXPECT_TRUE(e.config_path.empty());
  EXPECT_TRUE(e.runs.empty());
  const auto error_of = [&](const std::string& body) {
    const std::string path = write(dir, "e.toml", body);
    return config_error([&] { load_experiment(path); });
  };
  EXPECT_THAT(error_of("description = \"d\"\nnotebook = \"none.ipynb\"\n"),
              HasSubstr("e.toml:2: notebook = \"none.ipynb\": no such file"));
  EXPECT_THAT(error_of("description = \"d\"\nnotebook = \"nb.ipynb\"\n[[runs]]\nname = \"a\"\n"),
              HasSubstr("has no [[runs]]"));
  EXPECT_THAT(error_of("description = \"d\"\nconfig = \"configs/base.toml\"\n[sweep]\nx = 1\n"
                       "[[runs]]\nname = \"a\"\n"),
              HasSubstr("[sweep] belongs to a notebook-only experiment"));
  const std::string with_notebook = write(
      dir, "t.toml",
      "description = \"d\"\nconfig = \"configs/base.toml\"\nnotebook = \"nb.ipynb\"\n[[runs]]\nname = \"a\"\n");
  EXPECT_EQ(load_experiment(with_notebook).notebook, dir + "/nb.ipynb");
  EXPECT_EQ(load_experiment(with_notebook).runs.size(), 1u);
}

// An experiment directory with a train config (base.toml) and an RL config
// (grpo.toml, the shipped grpo_tiny.toml).
std::string stages_dir(const std::string& name) {
  const std::string dir = experiment_dir(name);
  std::filesystem::copy_file(std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/grpo_tiny.toml",
                             dir + "/configs/grpo.toml");
  return dir;
}

TEST(Experiment, CommandAndConfigPerRun) {
  const std::string dir = stages_dir("experiment_command");
  const std::string path = write(dir, "e.toml", R"(description = "d"
command = "rl"
config = "configs/grpo.toml"
[[runs]]
name = "base"
command = "train"
config = "configs/base.toml"
[runs.set]
"train.seed" = 3
[[runs]]
name = "rl"
[runs.set]
"rl.steps" = 2
)");
  const Experiment e = load_experiment(path);
  EXPECT_EQ(e.command, RunKind::Rl);
  ASSERT_EQ(e.runs.size(), 2u);
  EXPECT_EQ(e.runs[0].command, RunKind::Train);
  EXPECT_EQ(e.runs[0].config_path, dir + "/configs/base.toml");
  EXPECT_EQ(e.runs[1].command, RunKind::Rl);
  EXPECT_EQ(e.runs[1].config_path, dir + "/configs/grpo.toml");
  EXPECT_EQ(load_rl_config(e.runs[1].config_path, e.runs[1].overrides).rl.rl.steps, 2);

  const auto error_of = [&](const std::string& body) {
    const std::string p = write(dir, "bad.toml", body);
    return config_error([&] { load_experiment(p); });
  };
  EXPECT_THAT(error_of("description = \"d\"\ncommand = \"sft\"\n"),
              HasSubstr("bad.toml:2: command must be one of \"train\", \"rl\", \"eval\", \"reward\" (the dslab command of the runs), "
                        "got string \"sft\""));
  EXPECT_THAT(error_of("description = \"d\"\nconfig = \"configs/base.toml\"\n[[runs]]\nname = \"a\"\ncommand = 1\n"),
              HasSubstr("bad.toml:5: command must be one of \"train\", \"rl\""));
  EXPECT_THAT(error_of("description = \"d\"\n[[runs]]\nname = \"a\"\nconfig = \"configs/none.toml\"\n"),
              HasSubstr("bad.toml:4: config = \"configs/none.toml\": no such file " + dir + "/configs/none.toml"));
  // Each run is validated with its own kind: rl.steps is no key of a train config.
  EXPECT_THAT(error_of("description = \"d\"\nconfig = \"configs/base.toml\"\n[[runs]]\nname = \"a\"\n"
                       "set = { \"rl.steps\" = 2 }\n"),
              HasSubstr("bad.toml:5: run 'a': unknown key 'rl.steps'"));
  EXPECT_THAT(error_of("description = \"d\"\ncommand = \"rl\"\nconfig = \"configs/grpo.toml\"\n[[runs]]\n"
                       "name = \"a\"\nset = { \"train.steps\" = 2 }\n"),
              HasSubstr("bad.toml:6: run 'a': unknown key 'train.steps'"));
  // A config of the other kind: the error says which run read it as what.
  EXPECT_THAT(error_of("description = \"d\"\ncommand = \"rl\"\nconfig = \"configs/base.toml\"\n[[runs]]\nname = \"a\"\n"),
              HasSubstr("base.toml:5: unknown top-level key 'train'"));
  EXPECT_THAT(error_of("description = \"d\"\ncommand = \"rl\"\nconfig = \"configs/base.toml\"\n[[runs]]\nname = \"a\"\n"),
              HasSubstr(" (reading " + dir + "/configs/base.toml as an rl config for run 'a')"));
  EXPECT_THAT(error_of("description = \"d\"\nconfig = \"configs/grpo.toml\"\n[[runs]]\nname = \"a\"\n"),
              HasSubstr("grpo.toml:16: unknown top-level key 'rl'"));
  // No top-level config: every entry names one, else the one that does not is named.
  EXPECT_EQ(load_experiment(write(dir, "own.toml", "description = \"d\"\n[[runs]]\nname = \"a\"\n"
                                                   "config = \"configs/base.toml\"\n"))
                .runs.at(0).config_path,
            dir + "/configs/base.toml");
  EXPECT_THAT(error_of("description = \"d\"\n[[runs]]\nname = \"a\"\nconfig = \"configs/base.toml\"\n"
                       "[[runs]]\nname = \"b\"\n"),
              HasSubstr("bad.toml:5: run 'b' has no config"));
}

// rollout.stop is a list of strings: one string is a list of one, the
// effective text writes the list and reads back the same, --set takes either
// form; in an experiment a list of strings is one value and a list of lists
// sweeps it.
TEST(Config, StringListKeys) {
  const std::string dir = stages_dir("config_string_list");
  const std::string grpo = dir + "/configs/grpo.toml";
  const RunConfig one = load_rl_config(grpo);
  EXPECT_EQ(one.rl.rollout.stop, std::vector<std::string>{"</answer>"});  // grpo_tiny.toml: stop = "</answer>"
  const RunConfig two = load_rl_config(grpo, {R"(rollout.stop=["</answer>", "\n\n"])"});
  EXPECT_EQ(two.rl.rollout.stop, (std::vector<std::string>{"</answer>", "\n\n"}));
  EXPECT_THAT(two.text, HasSubstr(R"(stop = ["</answer>", "\n\n"])"));
  EXPECT_EQ(parse_rl_config_text(two.text).text, two.text);
  EXPECT_EQ(parse_rl_config_text(two.text).rl.rollout.stop, two.rl.rollout.stop);
  EXPECT_EQ(load_rl_config(grpo, {"rollout.stop=END"}).rl.rollout.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(load_rl_config(grpo, {"rollout.stop=[]"}).rl.rollout.stop.empty());
  EXPECT_THAT(config_error([&] { load_rl_config(grpo, {R"(rollout.stop=["a", ""])"}); }),
              HasSubstr("a list of non-empty strings"));
  EXPECT_THAT(config_error([&] { load_rl_config(grpo, {"rollout.stop=[1, 2]"}); }),
              HasSubstr("rollout.stop must be a list of strings (or one string), got an array"));

  const std::string path = write(dir, "e.toml", R"(description = "d"
command = "rl"
config = "configs/grpo.toml"
[[runs]]
name = "one"
[runs.set]
"rollout.stop" = ["</answer>", "\n\n"]
[[runs]]
name = "swept"
[runs.set]
"rollout.stop" = [["</answer>"], ["x", "y"]]
)");
  const Experiment e = load_experiment(path);
  ASSERT_EQ(e.runs.size(), 3u);
  EXPECT_EQ(e.runs[0].name, "one");
  EXPECT_EQ(load_rl_config(e.runs[0].config_path, e.runs[0].overrides).rl.rollout.stop,
            (std::vector<std::string>{"</answer>", "\n\n"}));
  EXPECT_EQ(load_rl_config(e.runs[2].config_path, e.runs[2].overrides).rl.rollout.stop,
            (std::vector<std::string>{"x", "y"}));
  EXPECT_NE(e.runs[1].name, e.runs[2].name);
}

TEST(Experiment, ReferencesNameRunsAndResolveToTheirResults) {
  const std::string dir = stages_dir("experiment_references");
  // The RL entry comes first: a reference may name a run defined later.
  const std::string path = write(dir, "e.toml", R"(description = "d"
config = "configs/base.toml"
[[runs]]
name = "rl"
command = "rl"
config = "configs/grpo.toml"
[runs.set]
"rl.init" = ["@base-seed=1", "@base-seed=2"]
"data.path" = "@base-seed=1"
[[runs]]
name = "base"
[runs.set]
"train.seed" = [1, 2]
)");
  const Experiment e = load_experiment(path);
  ASSERT_EQ(e.runs.size(), 4u);
  const ExperimentRun& rl1 = e.runs[0];
  const ExperimentRun& rl2 = e.runs[1];
  EXPECT_EQ(rl1.name, "rl-init=_base-seed=1");
  EXPECT_EQ(rl2.name, "rl-init=_base-seed=2");
  EXPECT_EQ(rl1.overrides, (std::vector<std::string>{"rl.init=\"@base-seed=1\"", "data.path=\"@base-seed=1\""}));
  ASSERT_EQ(rl1.references.size(), 2u);
  EXPECT_EQ(rl1.references[0].run, "base-seed=1");
  EXPECT_EQ(rl1.references[0].at, path + ":8");
  EXPECT_EQ(rl1.references[1].override_index, 1u);
  EXPECT_EQ(rl1.needs, std::vector<std::string>{"base-seed=1"});
  EXPECT_EQ(rl2.needs, (std::vector<std::string>{"base-seed=2", "base-seed=1"}));
  EXPECT_TRUE(e.runs[2].needs.empty());
  EXPECT_TRUE(e.runs[2].references.empty());

  const std::string results = "/some where/e";
  EXPECT_EQ(run_result_path(results, "base-seed=2"), "/some where/e/base-seed=2.h5");
  EXPECT_EQ(resolved_overrides(rl2, results),
            (std::vector<std::string>{"rl.init=\"/some where/e/base-seed=2.h5\"",
                                      "data.path=\"/some where/e/base-seed=1.h5\""}));
  EXPECT_EQ(resolved_overrides(e.runs[3], results), e.runs[3].overrides);
  const RunConfig c = load_rl_config(rl2.config_path, resolved_overrides(rl2, results));
  EXPECT_EQ(c.rl.rl.init, "/some where/e/base-seed=2.h5");
  EXPECT_EQ(c.data.path, "/some where/e/base-seed=1.h5");
}

// "@EXPERIMENT/RUN": a run of another experiment of the same folder, at
// <results>/EXPERIMENT/RUN.h5; not a run of this one, so not in needs.
TEST(Experiment, ReferencesToAnotherExperimentsRun) {
  const std::string dir = stages_dir("experiment_external_references");
  write(dir, "pre.toml", "description = \"d\"\nconfig = \"configs/base.toml\"\n[[runs]]\nname = \"base\"\n");
  const std::string path = write(dir, "e.toml", R"(description = "d"
command = "rl"
config = "configs/grpo.toml"
[[runs]]
name = "rl"
[runs.set]
"rl.init" = "@pre/base"
)");
  const Experiment e = load_experiment(path);
  ASSERT_EQ(e.runs.size(), 1u);
  ASSERT_EQ(e.runs[0].references.size(), 1u);
  EXPECT_EQ(e.runs[0].references[0].experiment, "pre");
  EXPECT_EQ(e.runs[0].references[0].run, "base");
  EXPECT_TRUE(e.runs[0].needs.empty());
  EXPECT_EQ(resolved_overrides(e.runs[0], "/r/e"), std::vector<std::string>{"rl.init=\"/r/pre/base.h5\""});
  const std::string bad = write(dir, "bad.toml", R"(description = "d"
command = "rl"
config = "configs/grpo.toml"
[[runs]]
name = "rl"
[runs.set]
"rl.init" = "@nowhere/base"
)");
  EXPECT_THAT(config_error([&] { load_experiment(bad); }),
              HasSubstr(dir + "/bad.toml:7: run 'rl': rl.init = \"@nowhere/base\" must name a run of an experiment "
                              "in the same folder (\"@EXPERIMENT/RUN\"); no file " + dir + "/nowhere.toml"));
}

TEST(Experiment, UnknownReferencesAndCyclesNameTheRunAndTheReference) {
  const std::string dir = stages_dir("experiment_bad_references");
  const auto error_of = [&](const std::string& runs) {
    const std::string p = write(dir, "e.toml", "description = \"d\"\nconfig = \"configs/base.toml\"\n" + runs);
    return config_error([&] { load_experiment(p); });
  };
  const std::string base = "[[runs]]\nname = \"base\"\n";
  EXPECT_THAT(error_of(base + "[[runs]]\nname = \"rl\"\ncommand = \"rl\"\nconfig = \"configs/grpo.toml\"\n"
                              "[runs.set]\n\"rl.init\" = \"@bsae\"\n"),
              HasSubstr(dir + "/e.toml:10: run 'rl': rl.init = \"@bsae\" names no run of this experiment "
                              "(did you mean '@base'? runs: base, rl)"));
  EXPECT_THAT(error_of("[[runs]]\nname = \"a\"\nset = { \"data.path\" = \"@\" }\n"),
              HasSubstr("e.toml:5: run 'a': data.path = \"@\" names no run of this experiment"));
  EXPECT_THAT(error_of("[[runs]]\nname = \"a\"\nset = { \"data.path\" = \"@a\" }\n"),
              HasSubstr("e.toml:5: run 'a': data.path = \"@a\" makes a cycle of references: a -> a"));
  EXPECT_THAT(error_of(base + "[[runs]]\nname = \"a\"\nset = { \"data.path\" = \"@b-path=_a\" }\n"
                              "[[runs]]\nname = \"b\"\nset = { \"data.path\" = [\"@base\", \"@a\"] }\n"),
              HasSubstr("e.toml:10: run 'b-path=_a': data.path = \"@a\" makes a cycle of references: "
                        "a -> b-path=_a -> a"));
  // A reference is a string: a key of another type rejects it where it stands.
  EXPECT_THAT(error_of(base + "[[runs]]\nname = \"a\"\nset = { \"train.steps\" = \"@base\" }\n"),
              HasSubstr("e.toml:7: run 'a': train.steps must be an integer, got string \"@base\""));
}

TEST(Experiment, SmokeKeysApplyToTheRunsWhoseConfigHasThem) {
  const std::string dir = stages_dir("experiment_smoke_routing");
  const std::string head = R"(description = "d"
config = "configs/base.toml"
[smoke]
"train.steps" = 4
"rl.steps" = 1
"data.val_fraction" = 0.2
)";
  const std::string stages = R"([[runs]]
name = "base"
[[runs]]
name = "rl"
command = "rl"
config = "configs/grpo.toml"
)";
  const Experiment e = load_experiment(write(dir, "e.toml", head + stages));
  EXPECT_EQ(e.smoke_overrides, (std::vector<std::string>{"train.steps=4", "rl.steps=1", "data.val_fraction=0.2"}));
  ASSERT_EQ(e.runs.size(), 2u);
  EXPECT_EQ(e.runs[0].smoke_overrides, (std::vector<std::string>{"train.steps=4", "data.val_fraction=0.2"}));
  EXPECT_EQ(e.runs[1].smoke_overrides, (std::vector<std::string>{"rl.steps=1", "data.val_fraction=0.2"}));
  const RunConfig smoke_rl = load_rl_config(e.runs[1].config_path, e.runs[1].smoke_overrides);
  EXPECT_EQ(smoke_rl.rl.rl.steps, 1);
  EXPECT_EQ(smoke_rl.data.val_fraction, 0.2);

  const auto error_of = [&](const std::string& body) {
    const std::string p = write(dir, "bad.toml", body);
    return config_error([&] { load_experiment(p); });
  };
  // Smoke values are validated with the runs they apply to only.
  EXPECT_THAT(error_of("description = \"d\"\nconfig = \"configs/base.toml\"\n[smoke]\n\"rl.steps\" = 0\n" + stages),
              HasSubstr("bad.toml:4: [smoke] with run 'rl': rl.steps = 0 is out of range"));
  EXPECT_THAT(error_of(head + "[[runs]]\nname = \"base\"\n"),
              HasSubstr("bad.toml:5: [smoke] rl.steps applies to no run: no train config has that key"));
  EXPECT_THAT(error_of("description = \"d\"\nconfig = \"configs/base.toml\"\n[smoke]\n\"train.stesp\" = 3\n" + stages),
              HasSubstr("bad.toml:4: [smoke] train.stesp applies to no run: no train or rl config has that key "
                        "(did you mean 'train.steps'?)"));
  EXPECT_THAT(error_of("description = \"d\"\nconfig = \"configs/base.toml\"\n[smoke]\n\"data.path\" = \"@base\"\n" +
                       stages),
              HasSubstr("bad.toml:4: [smoke] data.path = \"@base\": [smoke] takes no run references"));
}

TEST(Experiment, EveryShippedExperimentLoads) {
  namespace fs = std::filesystem;
  int count = 0;
  for (const auto& f : fs::directory_iterator(std::string(DSLAB_SOURCE_DIR) + "/experiments"))
    if (f.path().extension() == ".toml") {
      EXPECT_NO_THROW(load_experiment(f.path().string())) << f.path();
      ++count;
    }
  EXPECT_GE(count, 1);
}

}  // namespace
}  // namespace dslab
