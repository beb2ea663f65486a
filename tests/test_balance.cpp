// The load-balancing simulator (simulators/balance/) and `dslab sim balance`.
//
// Degeneracy: the closed forms of Sec. 2.2.3 -- at uniform P the loss is alpha
// for any f (value), while the gradient in the logits is
// (alpha/T) p (f - <f, p>), which tends to (alpha/(T E)) (f_j - 1) as p tends
// to uniform and vanishes only at balanced f; the analytic gradient against
// finite differences. Dynamics: a method that balances must lower MaxVio below
// no balancing; runs are bitwise reproducible for any thread count. The
// command: JSON keys, and bad input naming the option, exit status 2.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "simulators/balance/degeneracy.hpp"
#include "simulators/balance/dynamics.hpp"
#include "tests/test_support.hpp"

namespace dslab::balance {
namespace {

class Balance : public ::testing::Test {
 protected:
  void SetUp() override { omp_set_num_threads(1); }
};

const StateReport& state(const DegeneracyReport& r, const std::string& name) {
  for (const auto& s : r.states)
    if (s.name == name) return s;
  throw std::runtime_error("no state " + name);
}

DegeneracyConfig small_degeneracy() {
  DegeneracyConfig c;
  c.experts = 8;
  c.topk = 2;
  c.tokens = 16;
  c.alpha = 0.3;
  c.epsilons = {0.1, 1e-3};
  return c;
}

// Every state's analytic gradient matches finite differences and the closed form.
TEST_F(Balance, DegeneracyGradientsAreChecked) {
  const DegeneracyReport r = run_degeneracy(small_degeneracy());
  ASSERT_GE(r.states.size(), 6u);
  for (const auto& s : r.states) {
    EXPECT_LE(s.grad_fd_error, 1e-6) << s.name;
    EXPECT_LE(s.grad_closed_form_error, 1e-12) << s.name;
  }
}

// Above fd_samples coordinates the check samples them and recomputes only the
// perturbed token's row: it must still find the analytic gradient right, at a
// size where the full check would take minutes, and check the coordinates it says.
TEST_F(Balance, DegeneracySampledGradientCheck) {
  DegeneracyConfig c;
  c.experts = 64;
  c.topk = 6;
  c.tokens = 512;
  c.alpha = 0.3;
  c.epsilons = {0.1, 1e-3};
  c.fd_samples = 300;
  const DegeneracyReport r = run_degeneracy(c);
  for (const auto& s : r.states) {
    EXPECT_EQ(s.fd_checked, 300) << s.name;
    EXPECT_GT(s.fd_step, 0.0) << s.name;
    EXPECT_LE(s.grad_fd_error, 1e-6) << s.name;
    EXPECT_LE(s.grad_closed_form_error, 1e-12) << s.name;
  }
  // The same small problem checked both ways: every coordinate, and a sample.
  c = small_degeneracy();
  c.fd_samples = c.experts * c.tokens;
  for (const auto& s : run_degeneracy(c).states) EXPECT_EQ(s.fd_checked, c.experts * c.tokens) << s.name;
  c.fd_samples = c.experts * c.tokens - 1;
  for (const auto& s : run_degeneracy(c).states) {
    EXPECT_EQ(s.fd_checked, c.fd_samples) << s.name;
    EXPECT_LE(s.grad_fd_error, 1e-6) << s.name;
  }
}

// Value: P exactly uniform with f on 2K of E experts gives loss alpha and no
// spread over f. Gradient: not zero, and it raises the unused experts.
TEST_F(Balance, UniformPValueIsDegenerateGradientIsNot) {
  const DegeneracyConfig c = small_degeneracy();
  const DegeneracyReport r = run_degeneracy(c);
  const StateReport& s = state(r, "uniform_P_skewed_f");
  EXPECT_NEAR(s.loss, c.alpha, 1e-14);
  EXPECT_LE(s.value_spread_over_f, 1e-14);
  EXPECT_LE(s.value_grad_f_norm, 1e-14);
  EXPECT_DOUBLE_EQ(s.max_vio, double(c.experts) / (2 * c.topk) - 1);
  EXPECT_GT(s.grad_norm, 1e-3 * c.alpha);
  EXPECT_GT(s.alignment, 0.5);
  for (int j = 0; j < c.experts; ++j) {
    if (s.f[j] == 0) {
      EXPECT_GT(s.push[j], 0.0) << "unused expert " << j << " is not raised";
    }
  }
}

// As p -> uniform with every token on experts 0..K-1, the loss tends to alpha
// and the push on expert j to (alpha/E)(1 - f_j): the balancing direction.
TEST_F(Balance, NearUniformPGradientTendsToTheBalancingDirection) {
  const DegeneracyConfig c = small_degeneracy();
  const DegeneracyReport r = run_degeneracy(c);
  const StateReport& s = state(r, "uniform_p_skewed_f(eps=0.001)");
  EXPECT_DOUBLE_EQ(s.max_vio, double(c.experts) / c.topk - 1);
  EXPECT_NEAR(s.loss, c.alpha, 1e-2 * c.alpha);
  for (int j = 0; j < c.experts; ++j) {
    const double limit = c.alpha / c.experts * (1 - s.f[j]);
    EXPECT_NEAR(s.push[j], limit, 1e-2 * std::abs(limit)) << j;
  }
  EXPECT_GT(s.alignment, 0.999);
}

// At f = 1 the gradient vanishes whatever p is; the value is alpha.
TEST_F(Balance, BalancedFHasZeroGradient) {
  const DegeneracyConfig c = small_degeneracy();
  const DegeneracyReport r = run_degeneracy(c);
  const StateReport& s = state(r, "balanced");
  EXPECT_EQ(s.max_vio, 0.0);
  EXPECT_NEAR(s.loss, c.alpha, 1e-14);
  EXPECT_LE(s.grad_norm, 1e-15 * c.alpha);
  EXPECT_FALSE(s.alignment_defined);
}

TEST_F(Balance, DegeneracyRejectsBadSizes) {
  DegeneracyConfig c = small_degeneracy();
  c.topk = 4;  // 2K = E
  EXPECT_THROW(run_degeneracy(c), std::invalid_argument);
  c = small_degeneracy();
  c.tokens = 15;
  EXPECT_THROW(run_degeneracy(c), std::invalid_argument);
  c = small_degeneracy();
  c.fd_samples = 0;
  EXPECT_THROW(run_degeneracy(c), std::invalid_argument);
}

DynamicsConfig small_dynamics(Method m) {
  DynamicsConfig c;
  c.experts = 8;
  c.clusters = 16;
  c.dim = 8;
  c.steps = 300;
  c.batch = 256;
  c.seq_len = 32;
  c.val_tokens = 1024;
  c.method = m;
  if (m == Method::Aux) c.alpha = 1.0;
  if (m == Method::BiasSign || m == Method::BiasProportional) c.gamma = 1e-3;
  return c;
}

// Without balancing the router follows the skew; the aux loss and both bias
// updates (Eq. (24)) must lower the imbalance. A bias update with the wrong
// sign would raise it.
TEST_F(Balance, BalancingMethodsLowerMaxVio) {
  const double none = run_dynamics(small_dynamics(Method::None)).maxvio_global;
  EXPECT_GT(none, 1.0);
  for (Method m : {Method::Aux, Method::BiasSign, Method::BiasProportional}) {
    const DynamicsReport r = run_dynamics(small_dynamics(m));
    EXPECT_LT(r.maxvio_global, 0.5 * none) << method_name(m);
  }
}

TEST_F(Balance, DynamicsSameBitsForAnyThreadCount) {
  DynamicsConfig cs = small_dynamics(Method::Sequence);
  cs.alpha = 0.3;
  cs.steps = 20;
  cs.val_tokens = cs.batch;
  cs.record_every = 1;
  const DynamicsReport a = run_dynamics(cs);
  omp_set_num_threads(2);
  const DynamicsReport b = run_dynamics(cs);
  EXPECT_EQ(a.maxvio_batch, b.maxvio_batch);
  EXPECT_EQ(a.task_loss, b.task_loss);
  EXPECT_EQ(a.balance_loss, b.balance_loss);
  EXPECT_EQ(a.val_load_share, b.val_load_share);
}

TEST_F(Balance, DynamicsRejectsOptionsOfOtherMethods) {
  DynamicsConfig c = small_dynamics(Method::None);
  c.gamma = 0.01;
  EXPECT_THROW(run_dynamics(c), std::invalid_argument);
  c = small_dynamics(Method::BiasSign);
  c.alpha = 0.1;
  EXPECT_THROW(run_dynamics(c), std::invalid_argument);
  EXPECT_THROW(parse_method("sinkhorn"), std::invalid_argument);
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(BalanceCli, DegeneracyWritesEveryState) {
  const std::string dir = test::temp_dir("balance_cli");
  const std::string out = dir + "/d.json";
  std::string log;
  ASSERT_EQ(test::run_dslab("sim balance degeneracy --experts 8 --topk 2 --tokens 16 --alpha 0.5 --json " + out, &log), 0)
      << log;
  const auto doc = read_json(out);
  EXPECT_EQ(doc["alpha"], 0.5);
  std::vector<std::string> names;
  for (const auto& s : doc["states"]) {
    names.push_back(s["name"]);
    for (const char* key :
         {"f", "P", "loss", "grad_norm", "grad_fd_error", "fd_checked", "alignment", "value_spread_over_f"})
      EXPECT_TRUE(s.contains(key)) << key;
  }
  for (const char* want : {"balanced", "uniform_P_skewed_f", "collapsed"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  EXPECT_TRUE(std::any_of(names.begin(), names.end(),
                          [](const std::string& n) { return n.rfind("uniform_p_skewed_f", 0) == 0; }));
}

TEST(BalanceCli, DynamicsWritesCurvesAndFinals) {
  const std::string dir = test::temp_dir("balance_cli_dyn");
  const std::string out = dir + "/r.json";
  std::string log;
  ASSERT_EQ(test::run_dslab("sim balance dynamics --method bias-sign --gamma 0.001 --experts 8 --clusters 8 "
                            "--steps 50 --batch 128 --seq-len 32 --val-tokens 256 --record-every 10 --json " + out,
                            &log),
            0)
      << log;
  const auto doc = read_json(out);
  EXPECT_EQ(doc["config"]["method"], "bias-sign");
  EXPECT_EQ(doc["curves"]["step"].size(), 6u);  // 0, 10, ..., 40 and the last step
  for (const char* key : {"maxvio_global", "maxvio_batch_val", "val_task_loss", "specialization", "bias"})
    EXPECT_TRUE(doc.contains(key)) << key;
}

TEST(BalanceCli, BadInputExitsTwoNamingTheOption) {
  const std::string dir = test::temp_dir("balance_cli_bad");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"degeneracy --experts 16 --topk 8 --tokens 64", "--topk"},
      {"degeneracy --experts 16 --topk 2 --tokens 63", "--tokens"},
      {"degeneracy --fd-samples 0", "--fd-samples"},
      {"dynamics --method sinkhorn", "--method"},
      {"dynamics --method none --alpha 0.1", "--alpha"},
      {"dynamics --score-func relu", "score_func"},
      {"dynamics --batch 100 --seq-len 64", "--batch"},
  };
  for (const auto& [args, what] : cases) {
    std::string log;
    EXPECT_EQ(test::run_dslab("sim balance " + args + " --json " + dir + "/x.json", &log), 2) << args;
    EXPECT_NE(log.find(what), std::string::npos) << args << ": " << log;
  }
  std::string log;
  EXPECT_EQ(test::run_dslab("sim balance degeneracy --experts 8 --topk 2 --tokens 16 --json " + dir +
                                "/no/such/folder/x.json",
                            &log), 2);
  EXPECT_NE(log.find("cannot write"), std::string::npos) << log;
}

}  // namespace
}  // namespace dslab::balance
