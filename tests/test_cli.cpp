// The dslab program end to end: exit statuses, nothing written on bad input,
// a killed run leaves no result, --resume equals an uninterrupted run, the
// same numbers for 1 and 2 threads, and `dslab run` skipping and resuming,
// and running stages: an RL run on the result of a train run.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "experiments/results.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";
const std::string kGrpoTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/grpo_tiny.toml";

struct Dir {
  std::string path, corpus;
  explicit Dir(const std::string& name)
      : path(test::temp_dir(name)), corpus(test::write_text_corpus(path, 60000)) {}
  std::string operator/(const std::string& f) const { return path + "/" + f; }
  // Train options for the tiny config on this folder's corpus.
  std::string tiny(const std::string& extra) const {
    return kTiny + " --set data.path=" + corpus + " " + extra;
  }
};

// Metrics that must repeat exactly (timing columns excluded).
void expect_same_run(const std::string& a, const std::string& b) {
  const Metrics ma = read_metrics(a), mb = read_metrics(b);
  for (const char* name : {"step", "train_loss", "grad_norm", "lr", "val_step", "val_loss"}) {
    ASSERT_TRUE(ma.count(name) && mb.count(name)) << name;
    EXPECT_EQ(ma.at(name), mb.at(name)) << name;
  }
  const RunConfig cfg = parse_run_config_text(read_config_text(a));
  Transformer<float> x(cfg.model), y(cfg.model);
  read_model(a, x);
  read_model(b, y);
  auto px = x.params.refs(), py = y.params.refs();
  for (size_t i = 0; i < px.size(); ++i)
    EXPECT_EQ(0, std::memcmp(px[i].data, py[i].data, px[i].size() * sizeof(float))) << px[i].name;
}

// Starts a long training run and SIGKILLs it as soon as its first checkpoint exists.
void train_and_kill(const Dir& d, const std::string& out, const std::vector<std::string>& sets) {
  std::vector<std::string> args = {"train", kTiny, "--out", out, "--threads", "1",
                                   "--set", "data.path=" + d.corpus};
  for (const auto& s : sets) args.insert(args.end(), {"--set", s});
  ASSERT_TRUE(test::kill_dslab_when_file_exists(args, checkpoint_path(out)))
      << "the run ended before it could be killed";
}

TEST(Cli, VersionNamesTheCommit) {
  std::string out;
  EXPECT_EQ(test::run_dslab("--version", &out), 0);
  EXPECT_THAT(out, HasSubstr("dslab "));
  EXPECT_THAT(out, HasSubstr("(git "));
}

TEST(Cli, BadConfigExitsTwoAndWritesNothing) {
  Dir d("cli_bad_config");
  std::ofstream(d / "bad.toml") << "[model]\ndim = 64\ndimm = 3\n";
  std::string out;
  EXPECT_EQ(test::run_dslab("train " + d / "bad.toml" + " --out " + d / "r.h5", &out), 2);
  EXPECT_THAT(out, HasSubstr(d / "bad.toml" + ":3"));
  EXPECT_THAT(out, HasSubstr("model.dimm"));
  EXPECT_EQ(test::run_dslab("train " + d.tiny("--set model.n_heads=four --out " + d / "r.h5"), &out), 2);
  EXPECT_THAT(out, HasSubstr("model.n_heads"));
  EXPECT_EQ(test::run_dslab("train " + d.tiny("--set train.lr=-1 --out " + d / "r.h5"), &out), 2);
  EXPECT_THAT(out, HasSubstr("train.lr"));
  EXPECT_EQ(test::run_dslab("train " + kTiny + " --set data.path=" + d / "missing.txt" + " --out " +
                                d / "r.h5", &out), 2);
  EXPECT_THAT(out, HasSubstr("missing.txt"));
  EXPECT_EQ(test::run_dslab("train " + d.tiny("--threads 0 --out " + d / "r.h5"), &out), 2);
  EXPECT_EQ(test::run_dslab("train --no-such-option", &out), 2);
  EXPECT_FALSE(fs::exists(d / "r.h5"));
  EXPECT_FALSE(fs::exists(checkpoint_path(d / "r.h5")));
}

TEST(Cli, ExistingResultIsNeverOverwritten) {
  Dir d("cli_existing");
  std::ofstream(d / "r.h5") << "precious";
  std::string out;
  EXPECT_EQ(test::run_dslab("train " + d.tiny("--out " + d / "r.h5"), &out), 2);
  EXPECT_THAT(out, HasSubstr("already exists"));
  EXPECT_EQ(test::read_file(d / "r.h5"), "precious");
}

// One writer per --out: while another process holds FILE.h5.lock (here, this
// test), train, rl, eval and reward refuse with exit 2 and write nothing; once
// it is released the run goes ahead and removes the lock file at the end.
TEST(Cli, ASecondWriterOfOneResultIsRefused) {
  Dir d("cli_lock");
  const std::string out = d / "r.h5";
  const std::string lock = out + ".lock";
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const std::string rm = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/rm_tiny.toml";
  for (const std::string& cmd : {"train " + d.tiny("--set train.steps=2 --set train.warmup_steps=0"), "rl " + kGrpoTiny, "reward " + rm}) {
    std::string msg;
    EXPECT_EQ(test::run_dslab(cmd + " --out " + out, &msg), 2) << cmd;
    EXPECT_THAT(msg, HasSubstr("is being written by another dslab process")) << cmd;
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(checkpoint_path(out)));
  }
  ::close(fd);  // released
  std::string msg;
  ASSERT_EQ(test::run_dslab("train " + d.tiny("--set train.steps=2 --set train.warmup_steps=0 --set train.eval_every=0 --out " + out), &msg), 0)
      << msg;
  EXPECT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(lock));
}

// train.init: the run starts from a result's weights. With a learning rate
// of 1e-12 one step leaves them where they were, far from a fresh start;
// a missing file is exit 2 naming the key, with nothing written.
TEST(Cli, TrainInitStartsFromAResultsWeights) {
  Dir d("cli_train_init");
  std::string out;
  ASSERT_EQ(test::run_dslab("train " + d.tiny("--out " + d / "a.h5 --set train.steps=6"), &out), 0) << out;
  const std::string still = " --set train.steps=1 --set train.lr=1e-12 --set train.min_lr=1e-12 "
                            "--set train.warmup_steps=0 --set train.seed=7";
  ASSERT_EQ(test::run_dslab("train " + d.tiny("--out " + d / "b.h5" + still + " --set train.init=" + d / "a.h5"), &out), 0)
      << out;
  ASSERT_EQ(test::run_dslab("train " + d.tiny("--out " + d / "c.h5" + still), &out), 0) << out;
  const RunConfig cfg = parse_run_config_text(read_config_text(d / "a.h5"));
  Transformer<float> a(cfg.model), b(cfg.model), c(cfg.model);
  read_model(d / "a.h5", a);
  read_model(d / "b.h5", b);
  read_model(d / "c.h5", c);
  const Arena<float>&pa = a.params.arena(), &pb = b.params.arena(), &pc = c.params.arena();
  double moved = 0, fresh = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    moved = std::max(moved, double(std::abs(pb.data()[i] - pa.data()[i])));
    fresh = std::max(fresh, double(std::abs(pc.data()[i] - pa.data()[i])));
  }
  EXPECT_LT(moved, 1e-6);
  EXPECT_GT(fresh, 1e-2);

  EXPECT_EQ(test::run_dslab("train " + d.tiny("--out " + d / "m.h5 --set train.init=" + d / "missing.h5"), &out), 2);
  EXPECT_THAT(out, HasSubstr("train.init: "));
  EXPECT_THAT(out, HasSubstr("missing.h5"));
  EXPECT_FALSE(fs::exists(d / "m.h5"));
}

TEST(Cli, KilledRunLeavesNoResultAndResumeEqualsUninterrupted) {
  Dir d("cli_resume");
  const std::vector<std::string> sets = {"train.steps=300", "train.checkpoint_every=2",
                                         "train.eval_every=50"};
  std::string set_args;
  for (const auto& s : sets) set_args += " --set " + s;
  ASSERT_EQ(test::run_dslab("train " + d.tiny(set_args + " --threads 1 --out " + d / "straight.h5")), 0);

  train_and_kill(d, d / "killed.h5", sets);
  EXPECT_FALSE(fs::exists(d / "killed.h5"));
  ASSERT_TRUE(fs::exists(checkpoint_path(d / "killed.h5")));
  for (const auto& e : fs::directory_iterator(d.path))
    EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << e.path();

  std::string out;
  EXPECT_EQ(test::run_dslab("train " + d.tiny(set_args + " --out " + d / "killed.h5"), &out), 2)
      << "an unfinished run's checkpoint must not be silently replaced";
  ASSERT_EQ(test::run_dslab("train " + d.tiny(set_args + " --threads 1 --resume --out " +
                                              d / "killed.h5"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("resuming from"));
  EXPECT_FALSE(fs::exists(checkpoint_path(d / "killed.h5")));
  expect_same_run(d / "straight.h5", d / "killed.h5");
}

TEST(Cli, SameNumbersForOneAndTwoThreads) {
  Dir d("cli_threads");
  ASSERT_EQ(test::run_dslab("train " + d.tiny("--threads 1 --out " + d / "t1.h5")), 0);
  ASSERT_EQ(test::run_dslab("train " + d.tiny("--threads 2 --out " + d / "t2.h5")), 0);
  expect_same_run(d / "t1.h5", d / "t2.h5");
}

TEST(Cli, RunSkipsCompleteRunsAndResumesUnfinishedOnes) {
  Dir d("cli_run");
  fs::create_directories(d / "configs");
  fs::copy_file(kTiny, d / "configs/tiny.toml");
  std::ofstream(d / "sweep.toml") << "description = \"two seeds\"\n"
                                  << "config = \"configs/tiny.toml\"\n"
                                  << "[smoke]\n\"train.steps\" = 6\n\"train.eval_every\" = 2\n"
                                  << "[[runs]]\nname = \"s\"\n[runs.set]\n"
                                  << "\"data.path\" = \"" << d.corpus << "\"\n"
                                  << "\"train.steps\" = 12\n\"train.seed\" = [1, 2]\n";
  const std::string results = d / "results";
  std::string out;
  ASSERT_EQ(test::run_dslab("run " + d / "sweep.toml" + " --dry-run --results " + results, &out), 0);
  EXPECT_THAT(out, HasSubstr("s-seed=1"));
  EXPECT_THAT(out, HasSubstr("[new]"));
  EXPECT_FALSE(fs::exists(results));

  ASSERT_EQ(test::run_dslab("run " + d / "sweep.toml" + " --jobs 2 --results " + results, &out), 0)
      << out;
  const std::string r1 = results + "/sweep/s-seed=1.h5", r2 = results + "/sweep/s-seed=2.h5";
  ASSERT_TRUE(result_complete(r1) && result_complete(r2));
  EXPECT_NE(read_metrics(r1).at("train_loss"), read_metrics(r2).at("train_loss"));
  const auto written = fs::last_write_time(r1);

  fs::remove(r2);
  ASSERT_EQ(test::run_dslab("run " + d / "sweep.toml" + " --results " + results, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("[s-seed=1] complete, skipped"));
  EXPECT_EQ(fs::last_write_time(r1), written);
  EXPECT_TRUE(result_complete(r2));

  // A sweep killed mid-run: the unfinished run resumes from its checkpoint.
  fs::remove(r2);
  train_and_kill(d, r2, {"train.steps=300", "train.checkpoint_every=2", "train.seed=2"});
  ASSERT_EQ(test::run_dslab("run " + d / "sweep.toml" + " --dry-run --results " + results, &out), 0);
  EXPECT_THAT(out, HasSubstr("[resumable]"));

  ASSERT_EQ(test::run_dslab("run " + d / "sweep.toml" + " --smoke --results " + results, &out), 0)
      << out;
  EXPECT_TRUE(result_complete(results + "/smoke/sweep/s-seed=1.h5"));
  EXPECT_EQ(read_metrics(results + "/smoke/sweep/s-seed=1.h5").at("step").size(), 6u);
}

// tiny.toml and grpo_tiny.toml have the same model but max_seq_len (the RoPE
// table, no weights), so an RL stage starts from the train stage's weights.
TEST(Cli, RunStartsAStageOnceTheRunItReferencesIsComplete) {
  Dir d("cli_stages");
  fs::create_directories(d / "configs");
  fs::copy_file(kTiny, d / "configs/tiny.toml");
  fs::copy_file(kGrpoTiny, d / "configs/grpo_tiny.toml");
  // The RL entry comes first: the reference, not the file order, orders the runs.
  std::ofstream(d / "stages.toml") << "description = \"a base, then GRPO on it\"\n"
                                   << "config = \"configs/tiny.toml\"\n"
                                   << "[smoke]\n\"train.steps\" = 3\n\"train.warmup_steps\" = 0\n"
                                   << "\"train.eval_every\" = 0\n\"rl.steps\" = 1\n"
                                   << "[[runs]]\nname = \"rl\"\ncommand = \"rl\"\nconfig = \"configs/grpo_tiny.toml\"\n"
                                   << "[runs.set]\n\"rl.init\" = \"@base\"\n"
                                   << "[[runs]]\nname = \"base\"\n[runs.set]\n\"data.path\" = \"" << d.corpus << "\"\n";
  const std::string results = d / "results";
  const std::string base = results + "/smoke/stages/base.h5", rl = results + "/smoke/stages/rl.h5";
  std::string out;
  ASSERT_EQ(test::run_dslab("run " + d / "stages.toml" + " --smoke --dry-run --results " + results, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("rl  dslab rl " + d / "configs/grpo_tiny.toml" + "  " + rl + "  [new]  rl.init=\"" +
                             base + "\"  rl.steps=1  needs base"));
  EXPECT_THAT(out, HasSubstr("base  dslab train " + d / "configs/tiny.toml"));
  EXPECT_FALSE(fs::exists(results));

  ASSERT_EQ(test::run_dslab("run " + d / "stages.toml" + " --smoke --jobs 2 --results " + results, &out), 0) << out;
  ASSERT_TRUE(result_complete(base) && result_complete(rl)) << out;
  EXPECT_LT(out.find("[base] wrote"), out.find("[rl] GRPO")) << out;
  const RunConfig cfg = parse_rl_config_text(read_config_text(rl));
  EXPECT_EQ(cfg.rl.rl.init, base);
  EXPECT_EQ(cfg.rl.rl.steps, 1);
  EXPECT_EQ(read_metrics(base).at("step").size(), 3u);
  const auto written = fs::last_write_time(rl);
  ASSERT_EQ(test::run_dslab("run " + d / "stages.toml" + " --smoke --results " + results, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("[base] complete, skipped"));
  EXPECT_THAT(out, HasSubstr("[rl] complete, skipped"));
  EXPECT_EQ(fs::last_write_time(rl), written);

  // A stage that fails leaves the runs that need it, directly or not, not run.
  std::ofstream(d / "broken.toml") << "description = \"a stage that fails\"\ncommand = \"rl\"\n"
                                   << "config = \"configs/grpo_tiny.toml\"\n"
                                   << "[[runs]]\nname = \"c\"\nset = { \"data.path\" = \"@b\" }\n"
                                   << "[[runs]]\nname = \"a\"\nset = { \"rl.init\" = \"" << d / "missing.h5" << "\" }\n"
                                   << "[[runs]]\nname = \"b\"\nset = { \"rl.init\" = \"@a\" }\n";
  EXPECT_EQ(test::run_dslab("run " + d / "broken.toml" + " --jobs 3 --results " + results, &out), 1);
  EXPECT_THAT(out, HasSubstr("1 run(s) did not finish: a; 2 not run: c (needs b, which was not run), "
                             "b (needs a, which failed)"));
  EXPECT_FALSE(fs::exists(results + "/broken/b.h5"));

  // "@EXPERIMENT/NAME": another experiment's run is not run here; until it is
  // complete nothing starts (exit 2, naming what to run first); then it is used.
  std::ofstream(d / "after.toml") << "description = \"GRPO on the stages experiment's base\"\ncommand = \"rl\"\n"
                                  << "config = \"configs/grpo_tiny.toml\"\n[smoke]\n\"rl.steps\" = 1\n"
                                  << "[[runs]]\nname = \"rl\"\nset = { \"rl.init\" = \"@stages/base\" }\n";
  EXPECT_EQ(test::run_dslab("run " + d / "after.toml" + " --results " + results, &out), 2);
  EXPECT_THAT(out, HasSubstr("run rl needs stages/base (" + results + "/stages/base.h5), which is not complete: "
                             "run `dslab run experiments/stages.toml` first, with the same --results"));
  EXPECT_FALSE(fs::exists(results + "/after"));
  ASSERT_EQ(test::run_dslab("run " + d / "after.toml" + " --smoke --results " + results, &out), 0) << out;
  EXPECT_EQ(parse_rl_config_text(read_config_text(results + "/smoke/after/rl.h5")).rl.rl.init, base);
}

TEST(Cli, ListShowsOneLinePerExperiment) {
  Dir d("cli_list");
  fs::create_directories(d / "configs");
  fs::copy_file(kTiny, d / "configs/tiny.toml");
  std::ofstream(d / "a.toml") << "description = \"first\"\nconfig = \"configs/tiny.toml\"\n"
                              << "[[runs]]\nname = \"x\"\n[runs.set]\n\"train.seed\" = [1, 2, 3]\n";
  std::ofstream(d / "b.toml") << "description = \"broken\"\n";
  std::string out;
  ASSERT_EQ(test::run_dslab("list " + d.path, &out), 0);
  EXPECT_THAT(out, HasSubstr("a"));
  EXPECT_THAT(out, HasSubstr("3 runs  first"));
  EXPECT_THAT(out, HasSubstr("invalid"));
  EXPECT_EQ(test::run_dslab("list " + d / "nowhere", &out), 2);
}

TEST(Cli, SampleContinuesThePrompt) {
  Dir d("cli_sample");
  ASSERT_EQ(test::run_dslab("train " + d.tiny("--out " + d / "m.h5")), 0);
  std::string a, b;
  ASSERT_EQ(test::run_dslab("sample " + d / "m.h5" + " --prompt 'the lord' --tokens 40 --seed 5", &a), 0);
  EXPECT_EQ(a.rfind("the lord", 0), 0u) << a;
  EXPECT_GE(a.size(), 48u);
  ASSERT_EQ(test::run_dslab("sample " + d / "m.h5" + " --prompt 'the lord' --tokens 40 --seed 5", &b), 0);
  EXPECT_EQ(a, b) << "same seed, same sample";
  EXPECT_EQ(test::run_dslab("sample " + d / "none.h5" + " --tokens 5", &a), 2);
  EXPECT_EQ(test::run_dslab("sample " + d / "m.h5" + " --tokens 0", &a), 2);
}

}  // namespace
}  // namespace dslab
