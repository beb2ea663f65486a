// `dslab reward` end to end, and `dslab rl` with its result (R1 stage 4):
// config errors exit 2 naming the key with nothing written; --keys lists the
// [rm] keys; a SIGKILLed run leaves no result and --resume (on another thread
// count) ends with exactly the numbers, trunk and head of an uninterrupted
// run; an RL run scores its general prompts with the result, and refuses a
// file that is not a reward model.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "experiments/results.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kRmTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/rm_tiny.toml";
const std::string kGrpoTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/grpo_tiny.toml";
const std::string kTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";

TEST(RewardCli, KeysListTheRmTable) {
  std::string out;
  ASSERT_EQ(test::run_dslab("reward --keys", &out), 0);
  for (const char* key : {"rm.steps", "rm.pairs_per_step", "rm.corruption", "rm.init", "model.dim", "data.path"})
    EXPECT_THAT(out, HasSubstr(key));
  EXPECT_THAT(out, Not(HasSubstr("\ntrain.")));
  EXPECT_THAT(out, Not(HasSubstr("\nrl.")));
  ASSERT_EQ(test::run_dslab("rl --keys", &out), 0);
  for (const char* key : {"rl.general_prompts", "rl.general_prefix", "reward.model", "reward.preference"})
    EXPECT_THAT(out, HasSubstr(key));
}

TEST(RewardCli, BadConfigExitsTwoAndWritesNothing) {
  const std::string d = test::temp_dir("reward_cli_bad");
  const std::string out = d + "/rm.h5";
  std::string msg;
  EXPECT_EQ(test::run_dslab("reward " + kRmTiny + " --set rm.corruption=garble --out " + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("rm.corruption"));
  EXPECT_THAT(msg, HasSubstr("shuffle_words"));
  EXPECT_EQ(test::run_dslab("reward " + kRmTiny + " --set rm.response_bytes=90 --out " + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("model.max_seq_len"));
  EXPECT_EQ(test::run_dslab("reward " + kRmTiny + " --set train.steps=3 --out " + out, &msg), 2);
  EXPECT_EQ(test::run_dslab("reward " + kRmTiny + " --set rm.init=" + d + "/missing.h5 --out " + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("rm.init"));
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(checkpoint_path(out)));
  // An RL run: general prompts need a reward model, and reward.model must be one.
  const std::string rl_out = d + "/rl.h5";
  EXPECT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set rl.general_prompts=2 --out " + rl_out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("reward.model"));
  const std::string corpus = test::write_text_corpus(d, 60000);
  ASSERT_EQ(test::run_dslab("train " + kTiny + " --set data.path=" + corpus +
                                " --set train.steps=2 --set train.warmup_steps=0 --set train.eval_every=0 --out " + d +
                                "/lm.h5", &msg), 0) << msg;
  EXPECT_EQ(test::run_dslab("rl " + kGrpoTiny + " --set rl.general_prompts=2 --set reward.model=" + d +
                                "/lm.h5 --out " + rl_out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("reward.model"));
  EXPECT_THAT(msg, HasSubstr("not a dslab reward result"));
  EXPECT_FALSE(fs::exists(rl_out));
}

void expect_same_reward_run(const std::string& a, const std::string& b) {
  const Metrics ma = read_metrics(a), mb = read_metrics(b);
  for (const char* name : {"step", "loss", "accuracy", "margin", "grad_norm", "val_loss", "val_accuracy"}) {
    ASSERT_TRUE(ma.count(name) && mb.count(name)) << name;
    EXPECT_EQ(ma.at(name), mb.at(name)) << name;
  }
  LearnedRewardModel<float> x = read_reward_model(a), y = read_reward_model(b);
  const Arena<float>&ax = x.trunk.params.arena(), &ay = y.trunk.params.arena();
  ASSERT_EQ(ax.size(), ay.size());
  EXPECT_EQ(0, std::memcmp(ax.data(), ay.data(), ax.size() * sizeof(float)));
  EXPECT_EQ(x.head, y.head);
}

TEST(RewardCli, KilledRunResumesToTheUninterruptedNumbers) {
  const std::string d = test::temp_dir("reward_cli_resume");
  const std::string sets = " --set rm.steps=12 --set rm.checkpoint_every=1 --set rm.eval_every=4";
  std::string msg;
  ASSERT_EQ(test::run_dslab("reward " + kRmTiny + sets + " --threads 2 --out " + d + "/straight.h5", &msg), 0) << msg;
  std::vector<std::string> args = {"reward", kRmTiny, "--out", d + "/killed.h5", "--threads", "1"};
  {
    std::istringstream words(sets);
    for (std::string w; words >> w;) args.push_back(w);
  }
  const std::string ckpt = checkpoint_path(d + "/killed.h5");
  ASSERT_TRUE(test::kill_dslab_when_file_exists(args, ckpt)) << "the run ended before it could be killed";
  EXPECT_FALSE(fs::exists(d + "/killed.h5"));
  ASSERT_TRUE(fs::exists(ckpt));
  EXPECT_EQ(test::run_dslab("reward " + kRmTiny + sets + " --out " + d + "/killed.h5", &msg), 2);
  EXPECT_THAT(msg, HasSubstr("--resume"));
  ASSERT_EQ(test::run_dslab("reward " + kRmTiny + sets + " --threads 1 --resume --out " + d + "/killed.h5", &msg), 0)
      << msg;
  EXPECT_FALSE(fs::exists(ckpt));
  expect_same_reward_run(d + "/straight.h5", d + "/killed.h5");
}

// Half the prompts general: rm_score and the general metrics are recorded,
// the task metrics too; the same numbers on 1 and 2 threads.
TEST(RewardCli, RlScoresGeneralPromptsWithTheRewardModel) {
  const std::string d = test::temp_dir("reward_cli_rl");
  std::string msg;
  ASSERT_EQ(test::run_dslab("reward " + kRmTiny + " --set rm.steps=4 --out " + d + "/rm.h5", &msg), 0) << msg;
  const std::string sets = " --set rl.general_prompts=2 --set rl.general_prefix=16 --set reward.model=" + d + "/rm.h5";
  ASSERT_EQ(test::run_dslab("rl " + kGrpoTiny + sets + " --threads 1 --out " + d + "/a.h5", &msg), 0) << msg;
  EXPECT_THAT(msg, HasSubstr("| rm "));
  ASSERT_EQ(test::run_dslab("rl " + kGrpoTiny + sets + " --threads 2 --out " + d + "/b.h5", &msg), 0) << msg;
  const Metrics a = read_metrics(d + "/a.h5"), b = read_metrics(d + "/b.h5");
  for (const char* name : {"rm_score", "general_ref_nll", "general_kl_exact", "general_vocab_words",
                           "general_distinct_words", "accuracy", "reward_mean", "loss"}) {
    ASSERT_TRUE(a.count(name)) << name;
    EXPECT_EQ(a.at(name).size(), 4u) << name;
    EXPECT_EQ(a.at(name), b.at(name)) << name;
  }
  EXPECT_NE(a.at("rm_score")[0], 0.0);
}

}  // namespace
}  // namespace dslab
