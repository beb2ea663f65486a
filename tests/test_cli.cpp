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

// No temporary file (FILE.tmp-PID) left in `dir`.
void expect_no_temporaries(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << "left behind: " << e.path();
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
  // The OpenBLAS kernel family, as OpenBLAS itself is told to choose it.
  EXPECT_EQ(test::run_dslab_with_env("OPENBLAS_CORETYPE=Haswell", "--version", &out), 0);
  EXPECT_THAT(out, HasSubstr("OpenBLAS kernels: Haswell"));
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

// A damaged file where dslab reads one (--resume, train.init, sample): exit 2
// naming it, never exit 1 or a crash (the readers' errors are the input's).
TEST(Cli, DamagedResultsAndCheckpointsExitTwoNamingTheFile) {
  Dir d("cli_damaged");
  const std::string sets = " --set train.steps=4 --set train.warmup_steps=0 --set train.checkpoint_every=0";
  std::string msg;
  ASSERT_EQ(test::run_dslab("train " + d.tiny(sets + " --out " + d / "good.h5"), &msg), 0) << msg;
  const std::string bytes = test::read_file(d / "good.h5");
  std::ofstream(d / "cut.h5", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  std::ofstream(checkpoint_path(d / "r.h5"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_EQ(test::run_dslab("train " + d.tiny(sets + " --resume --out " + d / "r.h5"), &msg), 2);
  EXPECT_THAT(msg, HasSubstr(checkpoint_path(d / "r.h5")));
  EXPECT_EQ(test::run_dslab("train " + d.tiny(sets + " --set train.init=" + d / "cut.h5" + " --out " + d / "i.h5"), &msg), 2);
  EXPECT_THAT(msg, HasSubstr(d / "cut.h5"));
  EXPECT_EQ(test::run_dslab("sample " + d / "cut.h5" + " --tokens 4", &msg), 2);
  EXPECT_THAT(msg, HasSubstr(d / "cut.h5"));
  // A complete result is no checkpoint: --resume from it is refused, naming it.
  fs::copy_file(d / "good.h5", checkpoint_path(d / "g.h5"));
  EXPECT_EQ(test::run_dslab("train " + d.tiny(sets + " --resume --out " + d / "g.h5"), &msg), 2);
  EXPECT_THAT(msg, HasSubstr("not a checkpoint"));
  EXPECT_FALSE(fs::exists(d / "r.h5") || fs::exists(d / "i.h5") || fs::exists(d / "g.h5"));
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
  expect_no_temporaries(d.path);

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

// ---- faults: kill -9 at random moments, a full disk, signals to a sweep ----

std::vector<std::string> with_sets(std::vector<std::string> args, const std::vector<std::string>& sets) {
  for (const auto& s : sets) args.insert(args.end(), {"--set", s});
  return args;
}

std::string as_set_args(const std::vector<std::string>& sets) {
  std::string text;
  for (const auto& s : sets) text += " --set " + s;
  return text;
}

// Under the final names only whole files: the result complete or absent, the
// checkpoint (when there is one) readable with its metrics.
void expect_only_whole_files(const std::string& out) {
  if (fs::exists(out)) {
    EXPECT_TRUE(result_complete(out)) << out << " exists but is not a complete result";
  }
  const std::string ckpt = checkpoint_path(out);
  if (fs::exists(ckpt)) {
    EXPECT_NO_THROW(read_metrics(ckpt)) << ckpt << " is not a readable checkpoint";
  }
}

// d/sweep.toml: the tiny config for 150 steps on d's corpus, seeds 1 and 2
// (runs s-seed=1, s-seed=2), a checkpoint every `checkpoint_every` steps.
void write_two_seed_sweep(const Dir& d, int checkpoint_every) {
  fs::create_directories(d / "configs");
  fs::copy_file(kTiny, d / "configs/tiny.toml");
  std::ofstream(d / "sweep.toml") << "description = \"two seeds\"\nconfig = \"configs/tiny.toml\"\n"
                                  << "[[runs]]\nname = \"s\"\n[runs.set]\n\"data.path\" = \"" << d.corpus << "\"\n"
                                  << "\"train.steps\" = 150\n\"train.checkpoint_every\" = " << checkpoint_every
                                  << "\n\"train.seed\" = [1, 2]\n";
}

// Every *.lock in `dir` free (its holder gone), waiting at most a minute.
bool wait_until_unlocked(const std::string& dir) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    bool all_free = true;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() != ".lock") continue;
      const int fd = ::open(e.path().c_str(), O_RDONLY);
      if (fd < 0) continue;  // removed meanwhile: its holder ended
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) all_free = false;
      ::close(fd);
    }
    if (all_free) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Seconds since `start`.
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The kills fall within the first sixth of an unbroken run's time after each
// start, so that twenty of them spread over the run (each start resumes from
// the last checkpoint) and most land before it ends.
TEST(Cli, TrainKilledAtTwentyRandomMomentsResumesToTheUninterruptedNumbers) {
  Dir d("cli_kill_loop");
  const std::vector<std::string> sets = {"train.steps=150", "train.checkpoint_every=3", "train.eval_every=10"};
  std::string msg;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(test::run_dslab("train " + d.tiny(as_set_args(sets) + " --threads 1 --out " + d / "straight.h5"), &msg),
            0) << msg;
  const double window = seconds_since(start) / 6;
  const std::string out = d / "k.h5";
  const auto args = with_sets({"train", kTiny, "--out", out, "--resume", "--threads", "1", "--set",
                               "data.path=" + d.corpus}, sets);
  const int killed = test::kill_dslab_at_random_moments(
      args, 20, window, 20261207, [&] { expect_only_whole_files(out); }, [&] { return fs::exists(out); });
  EXPECT_GE(killed, 15) << "too few kills landed while the run was going";
  if (!fs::exists(out)) {
    ASSERT_EQ(test::spawn_and_wait(args), 0);
  }
  EXPECT_FALSE(fs::exists(checkpoint_path(out)));
  expect_no_temporaries(d.path);
  expect_same_run(d / "straight.h5", out);
}

// dslab run killed outright: its children stop too (PR_SET_PDEATHSIG), and the
// same command, again and again, ends with the numbers of an unbroken sweep.
TEST(Cli, RunKilledAtTwentyRandomMomentsResumesEveryRun) {
  Dir d("cli_run_kill_loop");
  write_two_seed_sweep(d, 3);
  std::string msg;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(test::run_dslab("run " + d / "sweep.toml" + " --jobs 2 --threads 2 --results " + d / "straight", &msg), 0)
      << msg;
  // A tenth: each kill lets the children finish their step and checkpoint (SIGTERM), so a sweep gains more per kill.
  const double window = seconds_since(start) / 10;
  const std::string dir = d / "killed/sweep";
  const std::vector<std::string> args = {"run", d / "sweep.toml", "--jobs", "2", "--threads", "2", "--results",
                                         d / "killed"};
  const auto complete = [&] { return result_complete(dir + "/s-seed=1.h5") && result_complete(dir + "/s-seed=2.h5"); };
  const int killed = test::kill_dslab_at_random_moments(
      args, 20, window, 7,
      [&] {
        ASSERT_TRUE(fs::exists(dir) ? wait_until_unlocked(dir) : true) << "a child outlived its dslab run";
        for (const char* run : {"/s-seed=1.h5", "/s-seed=2.h5"}) expect_only_whole_files(dir + run);
      },
      complete);
  EXPECT_GE(killed, 12) << "too few kills landed while the sweep was going";
  if (!complete()) {
    ASSERT_EQ(test::spawn_and_wait(args), 0);
  }
  for (const char* run : {"/s-seed=1.h5", "/s-seed=2.h5"}) expect_same_run(d / "straight/sweep" + run, dir + run);
}

// A full disk (here RLIMIT_FSIZE, which fails writes with EFBIG as a full disk
// does with ENOSPC): exit 1 naming the file and the cause, no result, no
// temporary file, the checkpoint from before intact and resumable, and other
// results untouched.
TEST(Cli, AFullDiskFailsCleanlyAndKeepsTheCheckpointAndEarlierResults) {
  Dir d("cli_disk_full");
  const std::vector<std::string> sets = {"train.steps=300", "train.checkpoint_every=2"};
  std::string msg;
  ASSERT_EQ(test::run_dslab("train " + d.tiny(as_set_args(sets) + " --threads 1 --out " + d / "straight.h5"), &msg),
            0) << msg;
  const std::string straight_bytes = test::read_file(d / "straight.h5");

  const std::string out = d / "r.h5", ckpt = checkpoint_path(out);
  train_and_kill(d, out, sets);
  ASSERT_TRUE(fs::exists(ckpt));
  const std::string ckpt_bytes = test::read_file(ckpt);
  const auto args = with_sets({"train", kTiny, "--out", out, "--resume", "--threads", "1", "--set",
                               "data.path=" + d.corpus}, sets);
  test::SpawnOptions full;
  full.file_size_limit = 64 << 10;  // below any checkpoint of the tiny model
  full.log = d / "full.log";
  EXPECT_EQ(test::spawn_and_wait(args, full), 1);
  const std::string log = test::read_file(full.log);
  EXPECT_THAT(log, HasSubstr("cannot write " + ckpt));
  EXPECT_THAT(log, HasSubstr("File too large"));
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(test::read_file(ckpt), ckpt_bytes);
  EXPECT_EQ(test::read_file(d / "straight.h5"), straight_bytes);
  expect_no_temporaries(d.path);
  for (const auto& e : fs::directory_iterator(d.path)) EXPECT_NE(e.path().extension(), ".lock") << "left behind: " << e.path();

  // The result itself not fitting: no checkpoint is due, the final write fails whole.
  const std::string one = d / "one.h5";
  test::SpawnOptions small = full;
  small.log = d / "one.log";
  EXPECT_EQ(test::spawn_and_wait(with_sets({"train", kTiny, "--out", one, "--threads", "1", "--set",
                                            "data.path=" + d.corpus},
                                           {"train.steps=4", "train.checkpoint_every=100", "train.warmup_steps=0"}),
                                 small), 1);
  EXPECT_THAT(test::read_file(small.log), HasSubstr("cannot write " + one));
  EXPECT_FALSE(fs::exists(one));

  ASSERT_EQ(test::spawn_and_wait(args), 0);  // room again: the kept checkpoint resumes
  expect_same_run(d / "straight.h5", out);
}

// Ctrl-C (SIGINT to the process group) and SIGTERM to dslab run alone: each
// stops the sweep with exit 130, the runs with their checkpoints and no child
// left, and the same command finishes it with the unbroken sweep's numbers.
TEST(Cli, SignalsStopASweepWithCheckpointsAndItResumes) {
  Dir d("cli_sweep_signals");
  write_two_seed_sweep(d, 5);
  std::string msg;
  ASSERT_EQ(test::run_dslab("run " + d / "sweep.toml" + " --jobs 2 --threads 2 --results " + d / "straight", &msg), 0)
      << msg;
  const std::string dir = d / "stopped/sweep";
  const std::vector<std::string> args = {"run", d / "sweep.toml", "--jobs", "2", "--threads", "2", "--results",
                                         d / "stopped"};
  const auto checkpoint_times = [&] {
    std::vector<fs::file_time_type> t;
    for (const char* run : {"/s-seed=1.h5", "/s-seed=2.h5"})
      t.push_back(fs::exists(checkpoint_path(dir + run)) ? fs::last_write_time(checkpoint_path(dir + run))
                                                          : fs::file_time_type::min());
    return t;
  };
  for (const int sig : {SIGINT, SIGTERM}) {
    // Signalled once both runs have written a checkpoint of their own (the
    // second time: a new one), so that both are in their training loops.
    const auto before = checkpoint_times();
    const auto both_checkpointed = [&] {
      const auto now = checkpoint_times();
      return now[0] != before[0] && now[1] != before[1];
    };
    test::SpawnOptions o;
    o.own_process_group = sig == SIGINT;
    o.log = d / ("signal-" + std::to_string(sig) + ".log");
    const int pid = test::spawn_dslab(args, o);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!both_checkpointed() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ::kill(sig == SIGINT ? -pid : pid, sig);
    EXPECT_EQ(test::wait_dslab(pid, 60), 130) << test::read_file(o.log);
    const std::string log = test::read_file(o.log);
    EXPECT_THAT(log, HasSubstr("the same command resumes the sweep")) << log;
    EXPECT_THAT(log, HasSubstr("[s-seed=1] stopped at step"));
    EXPECT_THAT(log, HasSubstr("[s-seed=2] stopped at step"));
    for (const char* run : {"/s-seed=1.h5", "/s-seed=2.h5"}) {
      EXPECT_FALSE(fs::exists(dir + run)) << "the runs were to be stopped before their end";
      EXPECT_TRUE(fs::exists(checkpoint_path(dir + run)));
      EXPECT_FALSE(fs::exists(dir + run + ".lock")) << "a child was still running";
    }
  }
  ASSERT_EQ(test::spawn_and_wait(args), 0);
  for (const char* run : {"/s-seed=1.h5", "/s-seed=2.h5"}) expect_same_run(d / "straight/sweep" + run, dir + run);
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

// dslab export writes a Hugging Face DeepseekV3 checkpoint that dslab sample reads
// back to the same text; a model DeepseekV3 cannot describe and a damaged
// checkpoint exit 2, naming what is wrong, and leave no folder half written.
TEST(Cli, ExportedCheckpointSamplesTheSameTextAndBadOnesExitTwo) {
  Dir d("cli_export");
  const std::string mla = "--set model.attn=mla --set model.n_routed_experts=4 --set model.n_activated_experts=2 "
                          "--set model.score_func=sigmoid --set balance.bias_update=sign --set train.steps=6";
  std::string a, b, msg;
  ASSERT_EQ(test::run_dslab("train " + d.tiny(mla + " --out " + d / "m.h5"), &msg), 0) << msg;
  ASSERT_EQ(test::run_dslab("export " + d / "m.h5" + " --out " + d / "hf", &msg), 0) << msg;
  EXPECT_TRUE(fs::exists(d / "hf/config.json"));
  ASSERT_EQ(test::run_dslab("sample " + d / "m.h5" + " --prompt 'the lord' --tokens 30 --seed 5", &a), 0) << a;
  ASSERT_EQ(test::run_dslab("sample " + d / "hf" + " --prompt 'the lord' --tokens 30 --seed 5", &b), 0) << b;
  EXPECT_EQ(a, b) << "the exported checkpoint is the same model";

  ASSERT_EQ(test::run_dslab("train " + d.tiny("--set train.steps=6 --out " + d / "mha.h5")), 0);
  EXPECT_EQ(test::run_dslab("export " + d / "mha.h5" + " --out " + d / "hf_mha", &msg), 2);
  EXPECT_NE(msg.find("attn = \"mha\""), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(d / "hf_mha"));
  EXPECT_EQ(test::run_dslab("export " + d / "m.h5" + " --out " + d / "x" + " --dtype F16", &msg), 2);
  EXPECT_NE(msg.find("F32, BF16, F64"), std::string::npos) << msg;

  // A damaged header: exit 2 naming the file.
  {
    std::fstream f(d / "hf/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(9);
    f.write("#", 1);
  }
  EXPECT_EQ(test::run_dslab("sample " + d / "hf" + " --tokens 5", &msg), 2);
  EXPECT_NE(msg.find("model.safetensors: not a valid safetensors file"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dslab
