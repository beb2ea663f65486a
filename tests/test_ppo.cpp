// PPO's advantage and value parts (reference/ppo.hpp), Eq. (27): GAE against
// its closed forms (lambda = 1: discounted return minus value; lambda = 0: the
// TD residual), GAE, whitening and the clipped value loss against PyTorch
// (tests/oracle/grpo_oracle.py, verl's formulas), finite differences of the
// value loss, the KL penalty in the reward, and validate().
#include <gtest/gtest.h>

#include <H5Cpp.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "reference/args_error.hpp"
#include "reference/ppo.hpp"
#include "reference/tensor.hpp"
#include "tests/finite_difference.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

const std::vector<size_t> kOffsets = {0, 4, 5, 11, 14};

std::vector<double> random_values(size_t n, uint64_t seed, double scale = 1) {
  Rng rng(seed);
  std::vector<double> x(n);
  for (auto& v : x) v = scale * rng.normal();
  return x;
}

TEST(Ppo, GaeWithLambdaOneIsDiscountedReturnMinusValue) {
  const size_t N = kOffsets.back();
  const std::vector<double> r = random_values(N, 1), V = random_values(N, 2);
  PpoArgs a;
  a.gamma = 0.9;
  a.lam = 1;
  a.whiten_advantages = false;
  const Gae g = gae(kOffsets, r, V, a);
  for (size_t i = 0; i + 1 < kOffsets.size(); ++i)
    for (size_t t = kOffsets[i]; t < kOffsets[i + 1]; ++t) {
      double ret = 0, discount = 1;
      for (size_t k = t; k < kOffsets[i + 1]; ++k) ret += discount * r[k], discount *= a.gamma;
      EXPECT_NEAR(g.advantages[t], ret - V[t], 1e-13) << t;
      EXPECT_NEAR(g.returns[t], ret, 1e-13) << t;
    }
}

TEST(Ppo, GaeWithLambdaZeroIsTheTdResidual) {
  const size_t N = kOffsets.back();
  const std::vector<double> r = random_values(N, 3), V = random_values(N, 4);
  PpoArgs a;
  a.gamma = 0.8;
  a.lam = 0;
  a.whiten_advantages = false;
  const Gae g = gae(kOffsets, r, V, a);
  for (size_t i = 0; i + 1 < kOffsets.size(); ++i)
    for (size_t t = kOffsets[i]; t < kOffsets[i + 1]; ++t) {
      const double next = t + 1 < kOffsets[i + 1] ? V[t + 1] : 0.0;
      EXPECT_NEAR(g.advantages[t], r[t] + a.gamma * next - V[t], 1e-14) << t;
    }
}

TEST(Ppo, WhitenedAdvantagesHaveMeanZeroAndUnitStd) {
  const size_t N = kOffsets.back();
  PpoArgs a;
  const Gae g = gae(kOffsets, random_values(N, 5, 3), random_values(N, 6), a);
  double mean = 0, var = 0;
  for (double x : g.advantages) mean += x;
  mean /= double(N);
  for (double x : g.advantages) var += (x - mean) * (x - mean);
  var /= double(N - 1);
  EXPECT_NEAR(mean, 0.0, 1e-14);
  EXPECT_NEAR(var, 1.0, 1e-8);
}

TEST(Ppo, OutcomeRewardOnTheLastTokenAndKlInTheReward) {
  const std::vector<double> r = outcome_token_rewards({0, 3, 3, 5}, {1.5, 2, -1});
  EXPECT_EQ(r, (std::vector<double>{0, 0, 1.5, 0, -1}));
  std::vector<double> rewards = r;
  const std::vector<double> logp = {-1, -2, -0.5, -3, -1}, ref = {-1.5, -2, -1, -2, -1};
  const double kl_mean = add_kl_penalty(rewards, logp, ref, 0.1, KlEstimator::K1);
  double sum = 0;
  for (size_t t = 0; t < r.size(); ++t) {
    EXPECT_DOUBLE_EQ(rewards[t], r[t] - 0.1 * (logp[t] - ref[t]));
    sum += logp[t] - ref[t];
  }
  EXPECT_DOUBLE_EQ(kl_mean, sum / 5);
  EXPECT_THROW(add_kl_penalty(rewards, logp, ref, 0.1, KlEstimator::K3Ratio), std::invalid_argument);

  // With the KL in the reward the policy loss has none: same loss and gradient as beta = 0.
  PolicyBatch b;
  b.offsets = {0, 2, 5};
  b.group_size = 2;
  b.logp = logp;
  b.old_logp = {-1.1, -2, -0.4, -3.2, -1};
  b.ref_logp = ref;
  b.advantages = {1, 1, -1, -1, -1};
  GrpoArgs reward_kl, no_kl;
  reward_kl.kl_placement = KlPlacement::Reward;
  reward_kl.kl_estimator = KlEstimator::K1;
  no_kl.beta = 0;
  std::vector<double> d1, d2;
  const PolicyLoss L1 = policy_loss(b, reward_kl, d1), L2 = policy_loss(b, no_kl, d2);
  EXPECT_EQ(L1.loss, L2.loss);
  EXPECT_EQ(L1.kl_loss, 0.0);
  EXPECT_EQ(d1, d2);
  EXPECT_DOUBLE_EQ(L1.kl_mean, sum / 5);
}

// Values 0.05 .. 0.45 away from the old values (clip 0.2): tokens inside and
// outside the clip, neither at |v - old| = 0.2 nor where the two errors tie.
struct ValueCase {
  std::vector<double> values, old_values, returns;
};
ValueCase value_case(uint64_t seed) {
  const size_t N = kOffsets.back();
  Rng rng(seed);
  ValueCase c;
  c.old_values = random_values(N, seed + 1);
  c.returns = random_values(N, seed + 2);
  for (size_t t = 0; t < N; ++t) {
    const double step = (t % 2 ? 0.05 : 0.3) + 0.15 * rng.uniform();
    c.values.push_back(c.old_values[t] + (rng.uniform() < 0.5 ? -step : step));
  }
  return c;
}

TEST(Ppo, ValueLossGradientMatchesFiniteDifferences) {
  for (Aggregation agg : enum_values<Aggregation>()) {
    SCOPED_TRACE(name_of(agg));
    ValueCase c = value_case(9);
    PpoArgs a;
    std::vector<double> dv, scratch;
    const ValueLoss L = value_loss(kOffsets, c.values, c.old_values, c.returns, a, dv, agg);
    EXPECT_GT(L.clip_fraction, 0.0);
    EXPECT_LT(L.clip_fraction, 1.0);
    const auto f = [&] { return value_loss(kOffsets, c.values, c.old_values, c.returns, a, scratch, agg).loss; };
    EXPECT_LE(test::gradient_error(f, c.values.data(), dv.data(), dv.size()), 1e-8);
  }
}

// One token, old value 0, clip 0.2: v = 1, R = 0: unclipped (1)^2 > (0.2)^2, loss
// 0.5 * 1 * coef, gradient coef * 1; v = 1, R = 2: clipped (0.2 - 2)^2 = 3.24 > 1,
// loss 0.5 * 3.24 * coef, gradient 0. value_clip = 0: no clip.
TEST(Ppo, ValueClipByHand) {
  PpoArgs a;
  a.value_coef = 0.5;
  std::vector<double> dv;
  ValueLoss L = value_loss({0, 1}, {1.0}, {0.0}, {0.0}, a, dv);
  EXPECT_DOUBLE_EQ(L.loss, 0.25);
  EXPECT_DOUBLE_EQ(dv[0], 0.5);
  EXPECT_EQ(L.clip_fraction, 0.0);
  L = value_loss({0, 1}, {1.0}, {0.0}, {2.0}, a, dv);
  EXPECT_DOUBLE_EQ(L.loss, 0.5 * 0.5 * 3.24);
  EXPECT_EQ(dv[0], 0.0);
  EXPECT_EQ(L.clip_fraction, 1.0);
  a.value_clip = 0;
  L = value_loss({0, 1}, {1.0}, {0.0}, {2.0}, a, dv);
  EXPECT_DOUBLE_EQ(L.loss, 0.25);
  EXPECT_DOUBLE_EQ(dv[0], -0.5);
}

void write_string_attr(H5::Group& g, const std::string& name, const std::string& value) {
  const H5::StrType type(H5::PredType::C_S1, value.size());
  g.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value);
}

TEST(PpoOracle, GaeAndValueLossMatchTorch) {
  if (!std::filesystem::exists("/usr/bin/python3"))
    GTEST_SKIP() << "/usr/bin/python3 is missing: run scripts/test, which installs it with torch and h5py";
  const size_t N = kOffsets.back();
  const std::vector<int> offsets(kOffsets.begin(), kOffsets.end());
  struct GaeCase {
    std::string name;
    PpoArgs args;
    std::vector<double> rewards, values;
  };
  std::vector<GaeCase> gaes;
  for (bool whiten : {false, true})
    for (double lam : {0.0, 0.95, 1.0}) {
      GaeCase c;
      c.name = "lam" + std::to_string(int(lam * 100)) + (whiten ? "_whiten" : "");
      c.args.gamma = 0.97;
      c.args.lam = lam;
      c.args.whiten_advantages = whiten;
      c.rewards = random_values(N, 30 + gaes.size());
      c.values = random_values(N, 60 + gaes.size());
      gaes.push_back(c);
    }
  const ValueCase vc = value_case(17);

  const std::string dir = test::temp_dir("ppo_oracle");
  const std::string in = dir + "/in.h5", out = dir + "/out.h5";
  {
    H5::H5File f(in, H5F_ACC_TRUNC);
    H5::Group groot = f.createGroup("gae");
    for (const GaeCase& c : gaes) {
      H5::Group g = groot.createGroup(c.name);
      oracle::write_attr(g, "gamma", c.args.gamma);
      oracle::write_attr(g, "lam", c.args.lam);
      oracle::write_attr(g, "whiten", int(c.args.whiten_advantages));
      oracle::write_ints(g, "offsets", offsets);
      oracle::write_array(g, "rewards", c.rewards.data(), {N});
      oracle::write_array(g, "values", c.values.data(), {N});
    }
    H5::Group vroot = f.createGroup("value");
    for (Aggregation agg : enum_values<Aggregation>()) {
      H5::Group g = vroot.createGroup(std::string(name_of(agg)));
      write_string_attr(g, "aggregation", std::string(name_of(agg)));
      oracle::write_attr(g, "value_clip", PpoArgs{}.value_clip);
      oracle::write_attr(g, "value_coef", PpoArgs{}.value_coef);
      oracle::write_attr(g, "max_len", 0);
      oracle::write_ints(g, "offsets", offsets);
      oracle::write_array(g, "values", vc.values.data(), {N});
      oracle::write_array(g, "old_values", vc.old_values.data(), {N});
      oracle::write_array(g, "returns", vc.returns.data(), {N});
    }
  }
  const std::string error = oracle::run_script("grpo_oracle.py", in, out);
  ASSERT_EQ(error, "");
  H5::H5File f(out, H5F_ACC_RDONLY);
  for (const GaeCase& c : gaes) {
    SCOPED_TRACE(c.name);
    const Gae g = gae(kOffsets, c.rewards, c.values, c.args);
    oracle::expect_close("advantages", g.advantages.data(), {N}, oracle::read_array(f, "gae/" + c.name + "/advantages"),
                         1e-10);
    oracle::expect_close("returns", g.returns.data(), {N}, oracle::read_array(f, "gae/" + c.name + "/returns"), 1e-10);
  }
  for (Aggregation agg : enum_values<Aggregation>()) {
    const std::string name(name_of(agg));
    SCOPED_TRACE(name);
    std::vector<double> dv;
    const ValueLoss L = value_loss(kOffsets, vc.values, vc.old_values, vc.returns, PpoArgs{}, dv, agg);
    const double theirs = oracle::read_array(f, "value/" + name + "/loss").data[0];
    EXPECT_LE(std::abs(L.loss - theirs), 1e-10 * std::abs(theirs));
    oracle::expect_close("dvalues", dv.data(), {N}, oracle::read_array(f, "value/" + name + "/dvalues"), 1e-10);
  }
}

TEST(Ppo, ValidateNamesTheKeys) {
  auto keys_of = [](const PpoArgs& a) {
    try {
      a.validate();
    } catch (const ArgsError& e) {
      return e.keys();
    }
    return std::vector<std::string>{};
  };
  EXPECT_TRUE(keys_of(PpoArgs{}).empty());
  PpoArgs a;
  a.gamma = 1.5;
  EXPECT_EQ(keys_of(a), std::vector<std::string>{"ppo.gamma"});
  a = PpoArgs{};
  a.lam = -0.1;
  EXPECT_EQ(keys_of(a), std::vector<std::string>{"ppo.lam"});
  a = PpoArgs{};
  a.value_clip = -1;
  EXPECT_EQ(keys_of(a), std::vector<std::string>{"ppo.value_clip"});
  a = PpoArgs{};
  a.value_coef = -1;
  EXPECT_EQ(keys_of(a), std::vector<std::string>{"ppo.value_coef"});
}

}  // namespace
}  // namespace dslab
