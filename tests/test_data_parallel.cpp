// Micro-batches and data parallelism (train.micro_batches, reference/data_parallel.hpp,
// `mpirun -np N dslab train`).
//
// One process: a step of M micro-batches is the mean of M separate
// forward/backward passes of the model, added in micro-batch order (checked
// against those passes run here on a copy of the model, bitwise), its losses
// are their means and its MoE loads their sums; for a dense model it is the
// whole batch's gradient up to rounding.
// Under mpirun (when Open MPI was found): N = 1, 2 and 4 ranks give the
// single-process M-micro-batch run bit for bit (weights and every metric but
// the timings), with MoE, the bias update and MTP on; a rank count that does
// not divide M, a bad config, or a command other than train, exits 2 with one message; a rank killed with
// SIGKILL ends the job naming it and leaves no result, and the kept
// checkpoint resumes on another rank count to the uninterrupted numbers; SIGTERM to mpirun stops
// every rank with a checkpoint that one process resumes.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "experiments/config.hpp"
#include "experiments/results.hpp"
#include "reference/data.hpp"
#include "reference/trainer.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";

ModelArgs moe_mtp_model() {
  ModelArgs a;
  a.vocab_size = 256;
  a.dim = 32;
  a.n_layers = 2;
  a.n_heads = 2;
  a.n_kv_heads = 2;
  a.inter_dim = 64;
  a.max_seq_len = 32;
  a.moe.n_routed_experts = 4;
  a.moe.n_activated_experts = 2;
  a.moe.moe_inter_dim = 16;
  a.n_dense_layers = 1;
  a.balance.seq_aux_alpha = 0.01;
  a.balance.bias_update = BiasUpdate::Sign;
  a.mtp.depth = 1;
  return a;
}

TrainArgs few_steps(int micro_batches) {
  TrainArgs t;
  t.steps = 3;
  t.batch_size = 8;
  t.micro_batches = micro_batches;
  t.seq_len = 16;
  t.warmup_steps = 1;
  t.grad_clip = 0;  // the gradient arena then holds the step's gradient itself
  t.eval_every = 0;
  t.eval_batches = 1;
  return t;
}

ByteCorpus corpus() {
  std::string text;
  for (int i = 0; text.size() < 20000; ++i) text += "In the beginning " + std::to_string(i * 7919 % 1000) + " was. ";
  return ByteCorpus::from_text(text, 0.1);
}

TEST(MicroBatches, AStepIsTheMeanOfItsMicroBatchesInOrder) {
  const ByteCorpus c = corpus();
  for (int M : {2, 4}) {
    Trainer trainer(moe_mtp_model(), few_steps(M), c);
    trainer.train_step();  // a step in, so the bias and the moments have moved
    Transformer<float> copy = trainer.model;
    const Batch b = train_batch(c.train, 8, 16, trainer.args.seed, trainer.step);
    trainer.train_step();

    const size_t n = copy.grads.arena().size(), rows = 8 / M, window = rows * 16;
    std::vector<float> sum;
    double main = 0;
    std::vector<std::vector<double>> loads;
    copy.mtp_lambda = copy.args.mtp.lambda_at(1, 3);
    for (int m = 0; m < M; ++m) {
      const std::vector<int> in(b.inputs.begin() + m * window, b.inputs.begin() + (m + 1) * window);
      const std::vector<int> tg(b.targets.begin() + m * window, b.targets.begin() + (m + 1) * window);
      copy.zero_grad();
      copy.forward(in, tg, int(rows), 16);
      copy.backward();
      const float* g = copy.grads.arena().data();
      if (m == 0) sum.assign(g, g + n);
      else for (size_t i = 0; i < n; ++i) sum[i] += g[i];
      main += copy.loss_parts().at("main");
      const auto l = copy.expert_loads();
      if (loads.empty()) loads = l;
      else for (size_t k = 0; k < l.size(); ++k) for (size_t e = 0; e < l[k].size(); ++e) loads[k][e] += l[k][e];
    }
    for (float& x : sum) x *= 1.0f / float(M);
    EXPECT_EQ(0, std::memcmp(sum.data(), trainer.model.grads.arena().data(), n * sizeof(float))) << "M = " << M;
    EXPECT_EQ(trainer.metrics.at("train_loss").back(), main / M) << "M = " << M;
    ASSERT_EQ(loads.size(), 2u);  // the MoE layer and the MTP module's MoE block
    for (int e = 0; e < 4; ++e)
      EXPECT_EQ(trainer.metrics.at("layers.1.load." + std::to_string(e)).back(), loads[0][size_t(e)]);
    double tokens = 0;
    for (double x : loads[0]) tokens += x;
    EXPECT_EQ(tokens, 8 * 16 * 2);  // every token of the step, K = 2 each
  }
}

TEST(MicroBatches, ADenseModelGetsTheWholeBatchGradient) {
  ModelArgs a = moe_mtp_model();
  a.moe.n_routed_experts = 0;
  a.mtp.depth = 0;
  a.balance = {};
  const ByteCorpus c = corpus();
  Trainer whole(a, few_steps(1), c), split(a, few_steps(4), c);
  whole.train_step();
  split.train_step();
  const size_t n = whole.model.grads.arena().size();
  const float* g = whole.model.grads.arena().data();
  const float* h = split.model.grads.arena().data();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, double(std::abs(g[i] - h[i])));
    norm = std::max(norm, double(std::abs(g[i])));
  }
  EXPECT_GT(norm, 0);
  EXPECT_LT(diff / norm, 1e-5);  // the same function, summed in another order (float)
  EXPECT_NE(diff, 0);             // ... and not the same code path
  EXPECT_NEAR(whole.metrics.at("train_loss")[0], split.metrics.at("train_loss")[0], 1e-6);
}

TEST(MicroBatches, AMicroBatchCountThatDoesNotDivideTheBatchIsRefused) {
  const std::string dir = test::temp_dir("micro_bad");
  std::string out;
  EXPECT_EQ(test::run_dslab("train " + kTiny + " --set data.path=" + test::write_text_corpus(dir, 60000) +
                                " --set train.micro_batches=3 --out " + dir + "/r.h5",
                            &out),
            2);
  EXPECT_THAT(out, HasSubstr("train.micro_batches = 3 must divide train.batch_size = 8"));
  EXPECT_FALSE(fs::exists(dir + "/r.h5"));
}

// ---------------------------------------------------------------------------
// Under mpirun

#ifdef DSLAB_MPIEXEC
constexpr bool kHaveMpi = true;
const std::string kMpiexec = DSLAB_MPIEXEC;
#else
constexpr bool kHaveMpi = false;
const std::string kMpiexec;
#endif

// mpirun as root and with more ranks than cores, as on a CI machine. Under
// LeakSanitizer the ranks keep Open MPI's plugins loaded and unwind fully, so
// that tests/lsan_openmpi.supp can tell Open MPI's own allocations from dslab's.
std::string mpi_env() {
  const char* asan = std::getenv("ASAN_OPTIONS");
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
         "OMPI_MCA_mca_base_component_disable_dlclose=1 ASAN_OPTIONS=" +
         std::string(asan ? std::string(asan) + ":" : "") + "fast_unwind_on_malloc=0 LSAN_OPTIONS=suppressions=" +
         std::string(DSLAB_SOURCE_DIR) + "/tests/lsan_openmpi.supp";
}
const std::string kMpiEnv = mpi_env();

int run_mpi(int ranks, const std::string& args, std::string* output) {
  const std::string cmd = "env " + kMpiEnv + " OMP_NUM_THREADS=1 " + kMpiexec + " -np " + std::to_string(ranks) +
                          " " + std::string(DSLAB_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string text;
  char buf[4096];
  while (size_t k = fread(buf, 1, sizeof buf, p)) text.append(buf, k);
  const int status = pclose(p);
  if (output) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct MpiRun : ::testing::Test {
  void SetUp() override {
    if (!kHaveMpi) GTEST_SKIP() << "dslab was built without MPI (libopenmpi-dev not found)";
    dir = test::temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    corpus = test::write_text_corpus(dir, 60000);
  }
  std::string args(const std::string& out, const std::string& extra = "") const {
    return kTiny + " --set data.path=" + corpus + " --set train.steps=8 --set train.micro_batches=4" +
           " --set model.n_routed_experts=4 --set model.moe_inter_dim=32 --set balance.bias_update=sign" +
           " --set balance.seq_aux_alpha=0.01 --set mtp.depth=1 --threads 1 --out " + out + " " + extra;
  }
  std::string dir, corpus;
};

// Every dataset of the result but the timing columns, byte for byte.
void expect_same_result(const std::string& a, const std::string& b) {
  const Metrics ma = read_metrics(a), mb = read_metrics(b);
  EXPECT_GT(ma.size(), 20u);
  for (const auto& [name, values] : ma) {
    if (name == "step_seconds" || name == "tokens_per_second" || name == "peak_rss_mib") continue;
    ASSERT_TRUE(mb.count(name)) << name;
    EXPECT_EQ(values, mb.at(name)) << name;
  }
  const RunConfig cfg = parse_run_config_text(read_config_text(a));
  Transformer<float> x(cfg.model), y(cfg.model);
  read_model(a, x);
  read_model(b, y);
  auto px = x.params.refs(), py = y.params.refs();
  for (auto& b : x.params.buffers()) px.push_back(b);
  for (auto& b : y.params.buffers()) py.push_back(b);
  ASSERT_EQ(px.size(), py.size());
  for (size_t i = 0; i < px.size(); ++i)
    EXPECT_EQ(0, std::memcmp(px[i].data, py[i].data, px[i].size() * sizeof(float))) << px[i].name;
}

// mpirun -np `ranks` dslab ARGS in the background, its output to `log`; returns mpirun's pid.
int start_mpi(int ranks, const std::string& args, const std::string& log) {
  const std::string cmd = "env " + kMpiEnv + " OMP_NUM_THREADS=1 " + kMpiexec + " -np " + std::to_string(ranks) +
                          " " + DSLAB_BINARY + " " + args + " > " + log + " 2>&1 & echo $!";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  int pid = 0;
  if (fscanf(p, "%d", &pid) != 1) pid = -1;
  pclose(p);
  return pid;
}

// Polls `done` every 20 ms for two minutes at most; its last answer.
bool wait_for(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (!done() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return done();
}

// mpirun is not this process's child: polls until `pid` is gone.
bool wait_gone(int pid) {
  return wait_for([pid] { return kill(pid, 0) != 0; });
}

TEST_F(MpiRun, EveryRankCountGivesTheSingleProcessNumbers) {
  std::string log;
  ASSERT_EQ(test::run_dslab("train " + args(dir + "/one.h5"), &log), 0) << log;
  for (int n : {1, 2, 4}) {
    const std::string out = dir + "/np" + std::to_string(n) + ".h5";
    ASSERT_EQ(run_mpi(n, "train " + args(out), &log), 0) << log;
    if (n > 1) {
      EXPECT_THAT(log, HasSubstr("on each of " + std::to_string(n) + " ranks"));
    }
    expect_same_result(dir + "/one.h5", out);
  }
}

TEST_F(MpiRun, BadRankCountsAndConfigsExitTwoWithOneMessage) {
  std::string log;
  EXPECT_EQ(run_mpi(3, "train " + args(dir + "/r.h5"), &log), 2) << log;
  EXPECT_THAT(log, HasSubstr("train.micro_batches = 4 is not a multiple of the 3 ranks"));
  EXPECT_EQ(run_mpi(2, "train " + args(dir + "/r.h5", "--set model.dimm=3"), &log), 2) << log;
  const size_t first = log.find("unknown key 'model.dimm'");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("unknown key", first + 1), std::string::npos) << "printed by more than one rank:\n" << log;
  EXPECT_FALSE(fs::exists(dir + "/r.h5"));
  // Only train is data parallel: another command says so once instead of running once per rank.
  EXPECT_EQ(run_mpi(2, "rl " + std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/grpo_tiny.toml --out " + dir +
                           "/rl.h5", &log), 2) << log;
  const size_t said = log.find("'rl' does not run under mpirun");
  ASSERT_NE(said, std::string::npos) << log;
  EXPECT_EQ(log.find("does not run under mpirun", said + 30), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir + "/rl.h5"));
}

TEST_F(MpiRun, AKilledRankEndsTheJobAndTheCheckpointResumesOnOtherRankCounts) {
  const std::string sets = "--set train.steps=60 --set train.checkpoint_every=2";
  std::string log;
  ASSERT_EQ(test::run_dslab("train " + args(dir + "/straight.h5", sets), &log), 0) << log;

  const std::string out = dir + "/r.h5", ckpt = checkpoint_path(out), log_path = dir + "/killed.log";
  const int mpirun_pid = start_mpi(2, "train " + args(out, sets), log_path);
  ASSERT_GT(mpirun_pid, 0);
  // Rank 1 is the child of mpirun whose environment says OMPI_COMM_WORLD_RANK=1.
  const auto rank1 = [&]() -> int {
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string pid = e.path().filename().string();
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat(e.path() / "stat");
      std::string s((std::istreambuf_iterator<char>(stat)), {});
      const size_t close = s.rfind(')');
      if (close == std::string::npos) continue;
      int ppid = 0;
      char state = 0;
      if (std::sscanf(s.c_str() + close + 1, " %c %d", &state, &ppid) != 2 || ppid != mpirun_pid) continue;
      std::ifstream env(e.path() / "environ");
      const std::string vars((std::istreambuf_iterator<char>(env)), {});
      if (vars.find(std::string("OMPI_COMM_WORLD_RANK=1") + '\0') != std::string::npos) return std::stoi(pid);
    }
    return 0;
  };
  ASSERT_TRUE(wait_for([&] { return fs::exists(ckpt); })) << test::read_file(log_path);
  const int victim = rank1();
  ASSERT_GT(victim, 0) << "no rank 1 under mpirun " << mpirun_pid;
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_TRUE(wait_gone(mpirun_pid)) << "mpirun still running";
  const std::string killed_log = test::read_file(log_path);
  EXPECT_THAT(killed_log, HasSubstr("rank 1"));
  EXPECT_FALSE(fs::exists(out)) << killed_log;
  ASSERT_TRUE(fs::exists(ckpt));
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().string().find(".tmp-") != std::string::npos) ADD_FAILURE() << "left behind: " << e.path();
  }

  // Resumed on 4 ranks: the uninterrupted single-process numbers.
  ASSERT_EQ(run_mpi(4, "train " + args(out, sets + " --resume"), &log), 0) << log;
  EXPECT_THAT(log, HasSubstr("resuming from"));
  expect_same_result(dir + "/straight.h5", out);
}

TEST_F(MpiRun, SigtermToMpirunStopsEveryRankWithACheckpoint) {
  // No periodic checkpoints: the one left behind is the stop's own.
  const std::string sets = "--set train.steps=300 --set train.checkpoint_every=0";
  std::string log;
  ASSERT_EQ(test::run_dslab("train " + args(dir + "/straight.h5", sets), &log), 0) << log;

  const std::string out = dir + "/r.h5", ckpt = checkpoint_path(out), log_path = dir + "/stopped.log";
  const int mpirun_pid = start_mpi(2, "train " + args(out, sets), log_path);
  ASSERT_GT(mpirun_pid, 0);
  wait_for([&] { return test::read_file(log_path).find("step 1/300") != std::string::npos; });
  ASSERT_EQ(kill(mpirun_pid, SIGTERM), 0);
  ASSERT_TRUE(wait_gone(mpirun_pid)) << "mpirun still running";
  const std::string stopped_log = test::read_file(log_path);
  ASSERT_FALSE(fs::exists(out)) << "the run ended before the signal:\n" << stopped_log;
  ASSERT_TRUE(fs::exists(ckpt)) << stopped_log;

  // Resumed by one process: the uninterrupted numbers.
  ASSERT_EQ(test::run_dslab("train " + args(out, sets + " --resume"), &log), 0) << log;
  EXPECT_THAT(log, HasSubstr("resuming from"));
  expect_same_result(dir + "/straight.h5", out);
}

}  // namespace
}  // namespace dslab
