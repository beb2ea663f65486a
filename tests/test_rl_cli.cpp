// `dslab rl` end to end: config errors exit 2 naming file, line and key with
// nothing written; --keys lists the RL keys; a SIGKILLed run leaves no result
// and --resume (on another thread count) ends with exactly the numbers,
// weights and samples of an uninterrupted run; rl.init starts from a
// `dslab train` result of the same model and refuses another model.
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <H5Cpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "experiments/results.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kGrpoTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/grpo_tiny.toml";
const std::string kTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";

// Rewards that vary on a fresh model (the completion ends at a lower-case
// letter; the reward is minus its length), so every update moves the policy.
const std::string kVarying =
    " --set rollout.stop=e --set reward.accuracy=0 --set reward.format=0 --set reward.overlong=1"
    " --set reward.max_length=48 --set reward.cache_length=48";

std::vector<std::string> samples_of(const std::string& path) {
  H5::H5File f(path, H5F_ACC_RDONLY);
  H5::DataSet ds = f.openDataSet("samples/completions");
  const size_t n = size_t(ds.getSpace().getSimpleExtentNpoints());
  std::vector<char*> p(n);
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  ds.read(p.data(), type);
  std::vector<std::string> out;
  for (char* s : p) out.emplace_back(s ? s : "");
  H5::DataSet::vlenReclaim(p.data(), type, ds.getSpace());
  return out;
}

void expect_same_rl_run(const std::string& a, const std::string& b) {
  const Metrics ma = read_metrics(a), mb = read_metrics(b);
  for (const char* name : {"step", "reward_mean", "accuracy", "response_length", "loss", "kl",
                           "clip_fraction", "entropy", "grad_norm", "zero_std_fraction"}) {
    ASSERT_TRUE(ma.count(name) && mb.count(name)) << name;
    EXPECT_EQ(ma.at(name), mb.at(name)) << name;
  }
  if (ma.count("value_loss")) {
    EXPECT_EQ(ma.at("value_loss"), mb.at("value_loss"));
  }
  const RunConfig cfg = parse_rl_config_text(read_config_text(a));
  Transformer<float> x(cfg.model), y(cfg.model);
  read_model(a, x);
  read_model(b, y);
  const Arena<float>&ax = x.params.arena(), &ay = y.params.arena();
  ASSERT_EQ(ax.size(), ay.size());
  EXPECT_EQ(0, std::memcmp(ax.data(), ay.data(), ax.size() * sizeof(float)));
  EXPECT_EQ(samples_of(a), samples_of(b));
}

TEST(RlCli, BadConfigExitsTwoAndWritesNothing) {
  const std::string d = test::temp_dir("rl_cli_bad");
  const std::string out = d + "/r.h5";
  std::string msg;
  std::ofstream(d + "/typo.toml") << "[grpo]\nbeta = 0.1\nclip_epsilon = 0.2\n";
  EXPECT_EQ(test::run_dslab("rl " + d + "/typo.toml --out " + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr(d + "/typo.toml:3"));
  EXPECT_THAT(msg, HasSubstr("grpo.clip_epsilon"));
  EXPECT_THAT(msg, HasSubstr("grpo.clip_eps"));  // the hint
  std::ofstream(d + "/train.toml") << "[train]\nsteps = 3\n";
  EXPECT_EQ(test::run_dslab("rl " + d + "/train.toml --out " + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("unknown top-level key 'train'"));
  EXPECT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set grpo.aggregation=mean --out " + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("seq_mean_token_mean"));
  EXPECT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set rl.mini_batches=3 --out " + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("rl.mini_batches"));
  EXPECT_THAT(msg, HasSubstr("rl.prompts_per_step set at " + kGrpoTiny));
  EXPECT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set rollout.max_new_tokens=96 --out " + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("model.max_seq_len"));
  EXPECT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set train.steps=2 --out " + out, &msg), 2);
  EXPECT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set rl.init=" + d + "/missing.h5 --out " + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("rl.init"));
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(checkpoint_path(out)));
}

// A fresh model samples every byte; /samples keeps them as printable ASCII with \xHH escapes.
TEST(RlCli, SamplesAreStoredAsEscapedText) {
  const std::string d = test::temp_dir("rl_cli_samples");
  std::string msg;
  ASSERT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set rl.steps=1 --out " + d + "/r.h5", &msg), 0) << msg;
  size_t escapes = 0;
  for (const std::string& c : samples_of(d + "/r.h5")) {
    for (unsigned char b : c) EXPECT_TRUE((b >= 0x20 && b < 0x7f) || b == '\n' || b == '\t') << int(b);
    for (size_t at = c.find("\\x"); at != std::string::npos; at = c.find("\\x", at + 1)) ++escapes;
  }
  EXPECT_GT(escapes, 0u);
}

TEST(RlCli, KeysListTheRlTables) {
  std::string out;
  ASSERT_EQ(test::run_dslab("rl --keys", &out), 0);
  for (const char* key : {"rl.steps", "rl.init", "grpo.aggregation", "grpo.kl_estimator", "rollout.top_p",
                          "rollout.stop", "task.kind", "reward.language", "model.dim"})
    EXPECT_THAT(out, HasSubstr(key));
  EXPECT_THAT(out, Not(HasSubstr("\ntrain.steps ")));  // no [train] key (other descriptions may name one)
  ASSERT_EQ(test::run_dslab("train --keys", &out), 0);
  EXPECT_THAT(out, Not(HasSubstr("\ngrpo.")));
}

void kill_resume_and_compare(const std::string& name, const std::string& extra) {
  const std::string d = test::temp_dir(name);
  const std::string sets =
      kVarying + extra + " --set rl.steps=12 --set rl.checkpoint_every=1 --set rl.sample_every=3";
  std::string msg;
  ASSERT_EQ(test::run_dslab("rl " + kGrpoTiny + sets + " --threads 2 --out " + d + "/straight.h5", &msg), 0) << msg;

  // The same run, killed as soon as its first checkpoint exists.
  std::vector<std::string> args = {"rl", kGrpoTiny, "--out", d + "/killed.h5", "--threads", "1"};
  {
    std::istringstream words(sets);
    for (std::string w; words >> w;) args.push_back(w);
  }
  const std::string ckpt = checkpoint_path(d + "/killed.h5");
  ASSERT_TRUE(test::kill_dslab_when_file_exists(args, ckpt)) << "the run ended before it could be killed";
  EXPECT_FALSE(fs::exists(d + "/killed.h5"));
  ASSERT_TRUE(fs::exists(ckpt));

  EXPECT_EQ(test::run_dslab("rl " + kGrpoTiny + sets + " --out " + d + "/killed.h5", &msg), 2);
  EXPECT_THAT(msg, HasSubstr("--resume"));
  ASSERT_EQ(test::run_dslab("rl " + kGrpoTiny + sets + " --threads 1 --resume --out " + d + "/killed.h5", &msg), 0)
      << msg;
  EXPECT_FALSE(fs::exists(ckpt));
  expect_same_rl_run(d + "/straight.h5", d + "/killed.h5");
}

TEST(RlCli, KilledRunResumesToTheUninterruptedNumbers) { kill_resume_and_compare("rl_cli_resume", ""); }

TEST(RlCli, KilledPpoRunResumesToTheUninterruptedNumbers) {
  kill_resume_and_compare("rl_cli_resume_ppo", " --set rl.algorithm=ppo");
  kill_resume_and_compare("rl_cli_resume_critic", " --set rl.algorithm=ppo --set rl.value_model=policy");
}

// kill -9 at 20 moments drawn at random over the run, each time resuming:
// only whole files under the final names, and in the end the numbers,
// weights and samples of an unbroken run.
TEST(RlCli, KilledAtTwentyRandomMomentsResumesToTheUninterruptedNumbers) {
  const std::string d = test::temp_dir("rl_cli_kill_loop");
  const std::string sets = kVarying + " --set rl.steps=10 --set rl.checkpoint_every=1 --set rl.sample_every=3";
  std::string msg;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(test::run_dslab("rl " + kGrpoTiny + sets + " --threads 1 --out " + d + "/straight.h5", &msg), 0) << msg;
  // Kills within the first sixth of an unbroken run's time after each start:
  // spread over the run (each start resumes), most of them land.
  const double window = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 6;
  const std::string out = d + "/k.h5", ckpt = checkpoint_path(out);
  std::vector<std::string> args = {"rl", kGrpoTiny, "--out", out, "--resume", "--threads", "1"};
  {
    std::istringstream words(sets);
    for (std::string w; words >> w;) args.push_back(w);
  }
  const int killed = test::kill_dslab_at_random_moments(
      args, 20, window, 20261207,
      [&] {
        if (fs::exists(out)) {
          EXPECT_TRUE(result_complete(out));
        }
        if (fs::exists(ckpt)) {
          EXPECT_NO_THROW(read_metrics(ckpt));
        }
      },
      [&] { return fs::exists(out); });
  EXPECT_GE(killed, 15) << "too few kills landed while the run was going";
  if (!fs::exists(out)) {
    ASSERT_EQ(test::spawn_and_wait(args), 0);
  }
  EXPECT_FALSE(fs::exists(ckpt));
  expect_same_rl_run(d + "/straight.h5", out);
}

TEST(RlCli, InitStartsFromATrainResultOfTheSameModel) {
  const std::string d = test::temp_dir("rl_cli_init");
  const std::string corpus = test::write_text_corpus(d, 60000);
  std::string msg;
  ASSERT_EQ(test::run_dslab("train " + kTiny + " --set data.path=" + corpus +
                                " --set train.steps=3 --set train.warmup_steps=0 --set train.eval_every=0 --out " + d + "/base.h5", &msg), 0)
      << msg;
  // One RL step with beta = 0 and rewards that are all 0 (a fresh-ish model
  // never answers) leaves the weights where they started: the base's.
  ASSERT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set rl.steps=1 --set grpo.beta=0 --set rl.init=" + d +
                                "/base.h5 --out " + d + "/rl.h5", &msg), 0) << msg;
  ASSERT_EQ(read_metrics(d + "/rl.h5").at("zero_std_fraction"), std::vector<double>{1.0});
  const RunConfig cfg = parse_rl_config_text(read_config_text(d + "/rl.h5"));
  Transformer<float> base(cfg.model), after(cfg.model);
  read_model(d + "/base.h5", base);
  read_model(d + "/rl.h5", after);
  EXPECT_EQ(0, std::memcmp(base.params.arena().data(), after.params.arena().data(),
                           base.params.arena().size() * sizeof(float)));
  EXPECT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set model.dim=32 --set rl.init=" + d + "/base.h5 --out " + d +
                                "/other.h5", &msg), 2);
  EXPECT_THAT(msg, HasSubstr("rl.init"));
  EXPECT_FALSE(fs::exists(d + "/other.h5"));
}

}  // namespace
}  // namespace dslab
