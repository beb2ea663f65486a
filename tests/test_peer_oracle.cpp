// dslab's GRPO / PPO losses (reference/grpo.hpp, reference/ppo.hpp) against the peer
// libraries' own functions on the same tensors: verl 0.5.0's core_algos and TRL 0.23.0's
// GRPOTrainer._compute_loss, through tests/oracle/peer_grpo.py run by .venv/bin/python
// (made by scripts/peers; the tests skip, saying so, without it).
//
// Tolerances: every number is float64 on both sides; the peers sum padded [S, W] tensors
// in torch's order, dslab sums sequence by sequence, so equal formulas agree to a few
// ulps times the number of terms: 1e-12 (normwise relative) leaves a wide margin and is
// still far below any convention difference. Where the conventions differ by design the
// documented relation is tested instead of equality:
//   verl token-mean (and its clip fractions) divide by N + 1e-8 (masked_mean): verl = ours * N / (N + 1e-8);
//   verl has no TRL Dr. GRPO mode: seq-mean-token-sum-norm (sum / W) = S * ours dr_grpo_trl;
//   verl low_var_kl clamps k3 to [-10, 10]: verl = min(ours, 10), its gradient 0 where clamped;
//   verl's whitening in GAE uses masked_mean's N + 1e-8 for the mean and variance: 1e-7;
//   verl gives a group of one the advantage r / (1 + eps) (mean 0, std 1), dslab 0.
#include <gtest/gtest.h>

#include <H5Cpp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "reference/grpo.hpp"
#include "reference/ppo.hpp"
#include "reference/tensor.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

constexpr double kTol = 1e-12;
constexpr int kMissing = 77;  // peer_grpo.py's exit status when verl or TRL does not import

std::vector<int> ints(const std::vector<size_t>& x) { return {x.begin(), x.end()}; }

std::vector<size_t> offsets_of(const std::vector<size_t>& lengths) {
  std::vector<size_t> o = {0};
  for (size_t n : lengths) o.push_back(o.back() + n);
  return o;
}

// Ratios pi_theta / pi_old on both sides of 1 -+ 0.2, 1 + 0.28 and the dual clip 3, none
// at a kink.
constexpr double kRatios[] = {0.5, 0.7, 0.9, 1.0, 1.1, 1.24, 1.35, 2.0, 3.5, 5.0, 0.62, 1.05};

// P = 2 prompts, G = 3 completions; advantages from group_advantages of random rewards,
// so that every token of a sequence has its sequence's advantage (TRL takes one per sequence).
PolicyBatch make_batch(uint64_t seed, const std::vector<size_t>& lengths) {
  PolicyBatch b;
  b.group_size = 3;
  b.offsets = offsets_of(lengths);
  Rng rng(seed);
  std::vector<double> rewards(lengths.size());
  for (double& r : rewards) r = rng.uniform();
  b.advantages = broadcast_to_tokens(b.offsets, group_advantages(rewards, b.group_size, AdvantageArgs{}));
  for (size_t t = 0; t < b.n_tokens(); ++t) {
    const double old = std::log(0.05 + 0.9 * rng.uniform());
    b.old_logp.push_back(old);
    b.logp.push_back(old + std::log(kRatios[(t * 7 + seed) % std::size(kRatios)]));
    b.ref_logp.push_back(old + 0.6 * rng.normal());
  }
  return b;
}

struct PolicyCase {
  std::string name;
  GrpoArgs args;
  PolicyBatch batch;
  bool verl = true;
  std::string trl;  // TRL loss_type, "" for none
};

struct ValueCase {
  std::string name;
  Aggregation agg;
  int max_len;
  std::vector<size_t> offsets;
  std::vector<double> values, old_values, returns;
  PpoArgs args;
};

struct GaeCase {
  std::string name;
  std::vector<size_t> offsets;
  std::vector<double> rewards, logp, ref_logp, values;
  double beta;
  PpoArgs args;
};

struct AdvCase {
  std::string name;
  std::vector<size_t> offsets;
  std::vector<double> rewards;
  int group_size;
  AdvantageArgs args;
};

struct Cases {
  std::vector<PolicyCase> policy;
  std::vector<double> kl_logp, kl_ref;
  std::vector<ValueCase> value;
  std::vector<GaeCase> gae;
  std::vector<AdvCase> adv;
};

Cases make_cases() {
  Cases c;
  const std::vector<size_t> lengths = {3, 1, 5, 6, 2, 4};
  struct Clip {
    const char* name;
    double eps_low, eps_high, c;
  };
  const Clip clips[] = {{"clip", 0.2, 0.2, 0}, {"clip_higher", 0.2, 0.28, 0}, {"dual_clip", 0.2, 0.28, 3}};
  const std::map<Aggregation, std::string> trl_type = {{Aggregation::SeqMeanTokenMean, "grpo"},
                                                       {Aggregation::TokenMean, "bnpo"},
                                                       {Aggregation::DrGrpoTrl, "dr_grpo"}};
  for (Aggregation agg : enum_values<Aggregation>())
    for (KlEstimator kl : {KlEstimator::K1, KlEstimator::K2, KlEstimator::K3})
      for (const Clip& clip : clips)
        for (int max_len : {0, 8}) {
          if (max_len && agg != Aggregation::DrGrpoTrl && agg != Aggregation::DrGrpoVerl) continue;
          PolicyCase k;
          k.name = std::string(name_of(agg)) + "." + std::string(name_of(kl)) + "." + clip.name + ".L" +
                   std::to_string(max_len);
          k.args.aggregation = agg;
          k.args.kl_estimator = kl;
          k.args.clip_eps_low = clip.eps_low;
          k.args.clip_eps_high = clip.eps_high;
          k.args.clip_c = clip.c;
          k.args.max_response_length = max_len;
          k.batch = make_batch(300 + c.policy.size(), lengths);
          if (kl == KlEstimator::K3 && clip.c == 0 && trl_type.count(agg)) k.trl = trl_type.at(agg);
          c.policy.push_back(k);
        }
  // TRL without a reference model (beta = 0), "dapo" (sum / tokens of the batch), and an
  // empty completion, which TRL's clamp(min=1) and dslab leave out of the sum but count in S
  // (verl's seq-mean-token-mean divides it by 0: no verl answer there).
  for (const auto& [agg, type, beta, lens] :
       {std::tuple{Aggregation::SeqMeanTokenMean, "grpo", 0.0, lengths},
        std::tuple{Aggregation::TokenMean, "dapo", 0.04, lengths},
        std::tuple{Aggregation::SeqMeanTokenMean, "grpo", 0.04, std::vector<size_t>{3, 0, 5, 6, 2, 4}},
        std::tuple{Aggregation::TokenMean, "bnpo", 0.04, std::vector<size_t>{3, 0, 5, 6, 2, 4}},
        std::tuple{Aggregation::DrGrpoTrl, "dr_grpo", 0.04, std::vector<size_t>{3, 0, 5, 6, 2, 4}}}) {
    PolicyCase k;
    k.name = std::string("trl.") + type + ".beta" + std::to_string(beta) + ".S" + std::to_string(lens[1]);
    k.args.aggregation = agg;
    k.args.beta = beta;
    k.args.clip_eps_high = 0.28;
    k.batch = make_batch(400 + c.policy.size(), lens);
    k.verl = agg != Aggregation::SeqMeanTokenMean || lens[1] != 0;
    k.trl = type;
    c.policy.push_back(k);
  }

  // log r = ref - logp from -4 to 4: k3 passes verl's clamp at 10 near log r = 2.6.
  for (int j = 0; j <= 40; ++j) {
    const double logp = std::log(0.05 + 0.9 * ((j * 37) % 41) / 41.0);
    c.kl_logp.push_back(logp);
    c.kl_ref.push_back(logp - 4.0 + 0.2 * j + 0.013);
  }

  Rng rng(7);
  const std::vector<size_t> offsets = offsets_of(lengths);
  const size_t N = offsets.back();
  for (Aggregation agg : enum_values<Aggregation>())
    for (double clip : {0.2, 0.5}) {
      ValueCase v{std::string(name_of(agg)) + ".clip" + std::to_string(clip), agg,
                  agg == Aggregation::DrGrpoVerl ? 8 : 0, offsets, {}, {}, {}, PpoArgs{}};
      v.args.value_clip = clip;
      v.args.value_coef = 1;  // verl's vf_loss; the coefficient is applied by its caller
      for (size_t t = 0; t < N; ++t) {
        v.old_values.push_back(rng.normal());
        v.values.push_back(v.old_values.back() + 0.6 * rng.normal());
        v.returns.push_back(rng.normal());
      }
      c.value.push_back(v);
    }

  for (const auto& [gamma, lam, whiten] : {std::tuple{1.0, 0.95, true}, std::tuple{0.99, 0.9, true},
                                           std::tuple{0.97, 1.0, false}}) {
    GaeCase g{"gamma" + std::to_string(gamma) + ".lam" + std::to_string(lam) + (whiten ? ".whiten" : ""),
              offsets, {}, {}, {}, {}, 0.05, PpoArgs{}};
    g.args.gamma = gamma;
    g.args.lam = lam;
    g.args.whiten_advantages = whiten;
    for (size_t i = 0; i < lengths.size(); ++i) g.rewards.push_back(rng.uniform() < 0.5 ? 0.0 : 1.0);
    for (size_t t = 0; t < N; ++t) {
      g.logp.push_back(std::log(0.05 + 0.9 * rng.uniform()));
      g.ref_logp.push_back(g.logp.back() + 0.5 * rng.normal());
      g.values.push_back(rng.normal());
    }
    c.gae.push_back(g);
  }

  // P = 3 prompts of G = 4: random rewards, ties, and a group of equal rewards (0.1, whose
  // mean is not exactly 0.1 in floating point); then G = 1, where verl and dslab differ.
  const std::vector<size_t> lens12 = {2, 3, 1, 4, 2, 2, 3, 1, 5, 1, 2, 3};
  std::vector<double> rewards12;
  for (int i = 0; i < 4; ++i) rewards12.push_back(rng.uniform());
  for (double r : {1.0, 0.0, 1.0, 1.0}) rewards12.push_back(r);
  for (int i = 0; i < 4; ++i) rewards12.push_back(0.1);
  for (double eps : {1e-6, 1e-4})
    for (bool mean_only : {false, true}) {
      AdvCase a{"G4.eps" + std::to_string(eps) + (mean_only ? ".mean_only" : ""), offsets_of(lens12), rewards12, 4,
                AdvantageArgs{}};
      a.args.std_eps = eps;
      a.args.mean_only = mean_only;
      c.adv.push_back(a);
    }
  AdvCase one{"G1", offsets_of({2, 3, 1}), {0.3, 1.0, -0.5}, 1, AdvantageArgs{}};
  one.args.std_eps = 1e-6;
  c.adv.push_back(one);
  return c;
}

void write_inputs(const Cases& c, const std::string& path) {
  H5::H5File f(path, H5F_ACC_TRUNC);
  H5::Group policy = f.createGroup("policy");
  for (const PolicyCase& k : c.policy) {
    H5::Group g = policy.createGroup(k.name);
    const GrpoArgs& a = k.args;
    oracle::write_attr(g, "aggregation", std::string(name_of(a.aggregation)));
    oracle::write_attr(g, "kl", std::string(name_of(a.kl_estimator)));
    oracle::write_attr(g, "beta", a.beta);
    oracle::write_attr(g, "eps_low", a.eps_low());
    oracle::write_attr(g, "eps_high", a.eps_high());
    oracle::write_attr(g, "clip_c", a.clip_c);
    oracle::write_attr(g, "max_len", a.max_response_length);
    oracle::write_attr(g, "verl", int(k.verl));
    oracle::write_attr(g, "trl", k.trl);
    const size_t N = k.batch.n_tokens();
    oracle::write_ints(g, "offsets", ints(k.batch.offsets));
    oracle::write_array(g, "logp", k.batch.logp.data(), {N});
    oracle::write_array(g, "old_logp", k.batch.old_logp.data(), {N});
    oracle::write_array(g, "ref_logp", k.batch.ref_logp.data(), {N});
    oracle::write_array(g, "adv", k.batch.advantages.data(), {N});
  }
  {
    H5::Group g = f.createGroup("kl").createGroup("sweep");
    oracle::write_array(g, "logp", c.kl_logp.data(), {c.kl_logp.size()});
    oracle::write_array(g, "ref_logp", c.kl_ref.data(), {c.kl_ref.size()});
  }
  H5::Group value = f.createGroup("value");
  for (const ValueCase& v : c.value) {
    H5::Group g = value.createGroup(v.name);
    oracle::write_attr(g, "aggregation", std::string(name_of(v.agg)));
    oracle::write_attr(g, "value_clip", v.args.value_clip);
    oracle::write_attr(g, "max_len", v.max_len);
    oracle::write_ints(g, "offsets", ints(v.offsets));
    oracle::write_array(g, "values", v.values.data(), {v.values.size()});
    oracle::write_array(g, "old_values", v.old_values.data(), {v.values.size()});
    oracle::write_array(g, "returns", v.returns.data(), {v.values.size()});
  }
  H5::Group gae = f.createGroup("gae");
  for (const GaeCase& k : c.gae) {
    H5::Group g = gae.createGroup(k.name);
    oracle::write_attr(g, "gamma", k.args.gamma);
    oracle::write_attr(g, "lam", k.args.lam);
    oracle::write_attr(g, "beta", k.beta);
    oracle::write_ints(g, "offsets", ints(k.offsets));
    oracle::write_array(g, "rewards", k.rewards.data(), {k.rewards.size()});
    oracle::write_array(g, "logp", k.logp.data(), {k.logp.size()});
    oracle::write_array(g, "ref_logp", k.ref_logp.data(), {k.logp.size()});
    oracle::write_array(g, "values", k.values.data(), {k.logp.size()});
  }
  H5::Group adv = f.createGroup("adv");
  for (const AdvCase& a : c.adv) {
    H5::Group g = adv.createGroup(a.name);
    oracle::write_attr(g, "group_size", a.group_size);
    oracle::write_attr(g, "epsilon", a.args.std_eps);
    oracle::write_attr(g, "mean_only", int(a.args.mean_only));
    oracle::write_ints(g, "offsets", ints(a.offsets));
    oracle::write_array(g, "rewards", a.rewards.data(), {a.rewards.size()});
  }
}

// The cases, and peer_grpo.py run once on them for every test of this program.
class PeerOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cases_ = new Cases(make_cases());
    const std::string python = DSLAB_SOURCE_DIR "/.venv/bin/python";
    if (!std::filesystem::exists(python)) {
      skip_ = python + " is missing: run scripts/peers to install verl and TRL into .venv";
      return;
    }
    const std::string dir = test::temp_dir("peer_oracle");
    const std::string in = dir + "/in.h5";
    out_ = dir + "/out.h5";
    write_inputs(*cases_, in);
    int status = 0;
    error_ = oracle::run_script("peer_grpo.py", in, out_, python, &status);
    if (status == kMissing) skip_ = error_;
  }
  static void TearDownTestSuite() {
    delete cases_;
    cases_ = nullptr;
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_EQ(error_, "");
    file_ = std::make_unique<H5::H5File>(out_, H5F_ACC_RDONLY);
  }
  oracle::Array read(const std::string& path) const { return oracle::read_array(*file_, path); }
  double scalar(const std::string& path) const { return read(path).data.at(0); }
  bool has(const std::string& path) const { return file_->nameExists(path); }

  static inline Cases* cases_ = nullptr;
  static inline std::string skip_, error_, out_;
  std::unique_ptr<H5::H5File> file_;
};

// verl's aggregate over dslab's, by design (see the top of the file).
double verl_factor(Aggregation agg, const std::vector<size_t>& offsets) {
  const double N = double(offsets.back()), S = double(offsets.size() - 1);
  if (agg == Aggregation::TokenMean) return N / (N + 1e-8);
  if (agg == Aggregation::DrGrpoTrl) return S;
  return 1.0;
}

std::vector<double> scaled(std::vector<double> x, double f) {
  for (double& v : x) v *= f;
  return x;
}

void expect_scalar(const std::string& what, double ours, double peer, double tol = kTol) {
  EXPECT_LE(std::abs(ours - peer), tol * std::max(1.0, std::abs(peer))) << what << ": ours " << ours << ", peer " << peer;
}

TEST_F(PeerOracle, PolicyLossMatchesVerlComputePolicyLossAndAggLoss) {
  int compared = 0;
  for (const PolicyCase& k : cases_->policy) {
    if (!k.verl) continue;
    SCOPED_TRACE(k.name);
    std::vector<double> dlogp;
    const PolicyLoss L = policy_loss(k.batch, k.args, dlogp);
    const double f = verl_factor(k.args.aggregation, k.batch.offsets);
    const double N = double(k.batch.n_tokens()), mean_factor = N / (N + 1e-8);
    const std::string p = "policy/" + k.name + "/verl/";
    expect_scalar("loss", f * L.loss, scalar(p + "loss"));
    const std::vector<double> g = scaled(dlogp, f);
    oracle::expect_close("dlogp", g.data(), {g.size()}, read(p + "dlogp"), kTol);
    expect_scalar("pg_clipfrac", L.clip_fraction * mean_factor, scalar(p + "pg_clipfrac"));
    expect_scalar("pg_clipfrac_lower", L.dual_clip_fraction * mean_factor, scalar(p + "pg_clipfrac_lower"));
    ++compared;
  }
  EXPECT_GE(compared, 50);
}

TEST(PeerOracleCases, ClipSettingsReachEveryBranch) {
  const Cases cases = make_cases();
  // The comparisons above would be weak if no token were clipped or dual-clipped.
  double low = 0, high = 0, dual = 0;
  for (const PolicyCase& k : cases.policy) {
    std::vector<double> dlogp;
    const PolicyLoss L = policy_loss(k.batch, k.args, dlogp);
    low += L.clip_low_fraction, high += L.clip_high_fraction, dual += L.dual_clip_fraction;
  }
  EXPECT_GT(low, 0);
  EXPECT_GT(high, 0);
  EXPECT_GT(dual, 0);
}

TEST_F(PeerOracle, PolicyLossMatchesTrlComputeLoss) {
  int compared = 0;
  for (const PolicyCase& k : cases_->policy) {
    if (k.trl.empty()) continue;
    SCOPED_TRACE(k.name);
    std::vector<double> dlogp;
    const PolicyLoss L = policy_loss(k.batch, k.args, dlogp);
    const std::string p = "policy/" + k.name + "/trl/";
    expect_scalar("loss", L.loss, scalar(p + "loss"));
    oracle::expect_close("dlogp", dlogp.data(), {dlogp.size()}, read(p + "dlogp"), kTol);
    expect_scalar("clip_ratio/low_mean", L.clip_low_fraction, scalar(p + "clip_low"));
    expect_scalar("clip_ratio/high_mean", L.clip_high_fraction, scalar(p + "clip_high"));
    expect_scalar("clip_ratio/region_mean", L.clip_fraction, scalar(p + "clip_region"));
    if (k.args.beta != 0) expect_scalar("kl", L.kl_mean, scalar(p + "kl"));
    ++compared;
  }
  EXPECT_GE(compared, 10);
}

TEST_F(PeerOracle, KlEstimatorsMatchVerlKlPenaltyUpToItsClamp) {
  const std::vector<std::pair<KlEstimator, std::string>> kinds = {
      {KlEstimator::K1, "k1"}, {KlEstimator::K2, "k2"}, {KlEstimator::K3, "low_var_kl"}};
  size_t clamped = 0;
  for (const auto& [kl, name] : kinds) {
    SCOPED_TRACE(name);
    const oracle::Array value = read("kl/sweep/" + name + "/value"), grad = read("kl/sweep/" + name + "/dlogp");
    ASSERT_EQ(value.data.size(), cases_->kl_logp.size());
    for (size_t t = 0; t < value.data.size(); ++t) {
      const double logp = cases_->kl_logp[t], ref = cases_->kl_ref[t];
      KlTerm k = kl_estimate(logp, logp, ref, kl);
      if (kl == KlEstimator::K3 && k.value > 10) {  // verl: clamp(k3, -10, 10)
        k = {10.0, 0.0};
        ++clamped;
      }
      expect_scalar("value at " + std::to_string(t), k.value, value.data[t]);
      expect_scalar("dlogp at " + std::to_string(t), k.dlogp, grad.data[t]);
    }
  }
  EXPECT_GT(clamped, 0u);
  EXPECT_LT(clamped, cases_->kl_logp.size() / 2);
}

TEST_F(PeerOracle, ValueLossMatchesVerlComputeValueLoss) {
  for (const ValueCase& v : cases_->value) {
    SCOPED_TRACE(v.name);
    std::vector<double> dvalues;
    const ValueLoss L = value_loss(v.offsets, v.values, v.old_values, v.returns, v.args, dvalues, v.agg, v.max_len);
    const double f = verl_factor(v.agg, v.offsets), N = double(v.offsets.back());
    const std::string p = "value/" + v.name + "/";
    expect_scalar("loss", f * L.loss, scalar(p + "loss"));
    const std::vector<double> g = scaled(dvalues, f);
    oracle::expect_close("dvalues", g.data(), {g.size()}, read(p + "dvalues"), kTol);
    expect_scalar("vf_clipfrac", L.clip_fraction * N / (N + 1e-8), scalar(p + "clipfrac"));
    EXPECT_GT(L.clip_fraction, 0);
  }
}

TEST_F(PeerOracle, KlRewardAndGaeMatchVerlComputeRewardsAndComputeGaeAdvantageReturn) {
  for (const GaeCase& k : cases_->gae) {
    SCOPED_TRACE(k.name);
    std::vector<double> rewards = outcome_token_rewards(k.offsets, k.rewards);
    add_kl_penalty(rewards, k.logp, k.ref_logp, k.beta, KlEstimator::K1);
    const std::string p = "gae/" + k.name + "/";
    oracle::expect_close("token_rewards", rewards.data(), {rewards.size()}, read(p + "token_rewards"), kTol);
    const Gae g = gae(k.offsets, rewards, k.values, k.args);
    oracle::expect_close("returns", g.returns.data(), {g.returns.size()}, read(p + "returns"), kTol);
    if (k.args.whiten_advantages) {
      // verl whitens with masked_mean's N + 1e-8 in the mean and the variance.
      oracle::expect_close("advantages", g.advantages.data(), {g.advantages.size()}, read(p + "advantages"), 1e-7);
    } else {
      // verl always whitens; its returns are A + V before that: A = R - V.
      std::vector<double> a = read(p + "returns").data;
      for (size_t t = 0; t < a.size(); ++t) a[t] -= k.values[t];
      EXPECT_LE(oracle::relative_error(g.advantages.data(), a), kTol);
    }
  }
}

TEST_F(PeerOracle, GroupAdvantagesMatchVerlComputeGrpoOutcomeAdvantage) {
  for (const AdvCase& a : cases_->adv) {
    SCOPED_TRACE(a.name);
    const std::vector<double> ours =
        broadcast_to_tokens(a.offsets, group_advantages(a.rewards, a.group_size, a.args));
    const oracle::Array verl = read("adv/" + a.name + "/advantages");
    ASSERT_EQ(verl.data.size(), ours.size());
    const size_t S = a.rewards.size(), G = size_t(a.group_size);
    for (size_t i = 0; i < S; ++i) {
      const size_t g0 = i / G * G;
      const bool all_equal =
          std::all_of(a.rewards.begin() + g0, a.rewards.begin() + g0 + G, [&](double r) { return r == a.rewards[g0]; });
      for (size_t t = a.offsets[i]; t < a.offsets[i + 1]; ++t) {
        if (G == 1) {
          // verl: mean 0 and std 1 for a group of one, so A = r / (1 + eps); dslab: no signal, 0.
          EXPECT_EQ(ours[t], 0.0);
          expect_scalar("group of one", a.rewards[i] / (1 + a.args.std_eps), verl.data[t]);
        } else if (all_equal) {
          // dslab: exactly 0; verl: the rounding of the mean over (0 + eps).
          EXPECT_EQ(ours[t], 0.0);
          EXPECT_LE(std::abs(verl.data[t]), 1e-15 / a.args.std_eps);
        } else {
          expect_scalar("advantage at " + std::to_string(t), ours[t], verl.data[t]);
        }
      }
    }
  }
}

TEST_F(PeerOracle, PeerVersionsArePinnedOnes) {
  const std::string req = test::read_file(DSLAB_SOURCE_DIR "/scripts/peers-requirements.txt");
  H5::Attribute verl = file_->openAttribute("verl_version"), trl = file_->openAttribute("trl_version");
  std::string v, t;
  verl.read(verl.getStrType(), v);
  trl.read(trl.getStrType(), t);
  EXPECT_NE(req.find("verl==" + v + "\n"), std::string::npos) << v;
  EXPECT_NE(req.find("trl==" + t + "\n"), std::string::npos) << t;
}

}  // namespace
}  // namespace dslab
