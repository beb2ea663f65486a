// The GRPO objective (reference/grpo.hpp), Eq. (28), and the clipped surrogate
// of Eq. (27): finite differences of the loss for every aggregation x KL
// estimator x clip setting, PyTorch autograd on the same tensors
// (tests/oracle/grpo_oracle.py, TRL's and verl's formulas), closed forms (zero
// loss with a non-zero gradient at mu = 1, zero advantage for equal rewards, the
// KL estimators enumerated over a 256-token vocabulary, verl issue #593's
// aggregation example), and group and process-supervision advantages by hand.
#include <gtest/gtest.h>

#include <H5Cpp.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "reference/args_error.hpp"
#include "reference/grpo.hpp"
#include "reference/tensor.hpp"
#include "tests/finite_difference.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

constexpr int kVocab = 256;

// Per-token ratios pi_theta / pi_old, kept >= 2% away from every kink
// (1 - 0.2, 1 + 0.2, 1 + 0.28, dual clip 3), so finite differences see a
// smooth function; they put tokens inside and outside each clip.
constexpr double kRatios[] = {0.5, 0.7, 0.9, 1.0, 1.1, 1.24, 1.35, 2.0, 3.5, 5.0, 0.62, 1.05};

// P = 2 prompts, G = 3 completions each, lengths 1 to 6.
PolicyBatch make_batch(uint64_t seed, bool with_logits, std::vector<double>* logits = nullptr,
                       std::vector<double>* ref_logits = nullptr) {
  const std::vector<size_t> lengths = {3, 1, 5, 6, 2, 4};
  PolicyBatch b;
  b.group_size = 3;
  b.offsets = {0};
  for (size_t n : lengths) b.offsets.push_back(b.offsets.back() + n);
  const size_t N = b.offsets.back();
  Rng rng(seed);
  for (size_t t = 0; t < N; ++t) {
    const double old = std::log(0.05 + 0.9 * rng.uniform());
    const double ratio = kRatios[(t * 7 + seed) % std::size(kRatios)];
    b.old_logp.push_back(old);
    b.logp.push_back(old + std::log(ratio));
    b.ref_logp.push_back(old + 0.6 * rng.normal());
    double A = rng.normal();
    if (std::abs(A) < 0.1) A = A < 0 ? -0.3 : 0.3;
    b.advantages.push_back(A);
  }
  if (with_logits) {
    logits->resize(N * kVocab);
    ref_logits->resize(N * kVocab);
    for (auto& z : *logits) z = rng.normal();
    for (size_t j = 0; j < logits->size(); ++j) (*ref_logits)[j] = (*logits)[j] + 0.5 * rng.normal();
    b.kl_exact.resize(N);
    for (size_t t = 0; t < N; ++t)
      b.kl_exact[t] = kl_exact(logits->data() + t * kVocab, ref_logits->data() + t * kVocab, kVocab);
  }
  return b;
}

struct ClipSetting {
  const char* name;
  double eps, eps_low, eps_high, c;
};
constexpr ClipSetting kClips[] = {
    {"symmetric", 0.2, 0, 0, 0}, {"clip_higher", 0.2, 0.2, 0.28, 0}, {"clip_higher_dual", 0.2, 0.2, 0.28, 3}};

GrpoArgs args_of(Aggregation agg, KlEstimator kl, const ClipSetting& c) {
  GrpoArgs a;
  a.aggregation = agg;
  a.kl_estimator = kl;
  a.beta = 0.3;
  a.clip_eps = c.eps;
  a.clip_eps_low = c.eps_low;
  a.clip_eps_high = c.eps_high;
  a.clip_c = c.c;
  a.max_response_length = agg == Aggregation::DrGrpoTrl ? 8 : 0;
  a.validate();
  return a;
}

TEST(Grpo, LossGradientMatchesFiniteDifferencesForEveryVariant) {
  for (Aggregation agg : enum_values<Aggregation>())
    for (KlEstimator kl : enum_values<KlEstimator>())
      for (const ClipSetting& c : kClips) {
        SCOPED_TRACE(std::string(name_of(agg)) + " " + std::string(name_of(kl)) + " " + c.name);
        const GrpoArgs a = args_of(agg, kl, c);
        std::vector<double> logits, ref_logits;
        PolicyBatch b = make_batch(7, kl == KlEstimator::Exact, &logits, &ref_logits);
        std::vector<double> dlogp, scratch;
        const PolicyLoss L = policy_loss(b, a, dlogp);
        EXPECT_GT(L.clip_fraction, 0.0);
        EXPECT_LT(L.clip_fraction, 0.5);
        EXPECT_GT(L.clip_low_fraction, 0.0);
        EXPECT_GT(L.clip_high_fraction, 0.0);
        EXPECT_EQ(L.dual_clip_fraction > 0, c.c > 0);
        EXPECT_NEAR(L.loss, L.pg_loss + L.kl_loss, 1e-15 * (1 + std::abs(L.loss)));
        const auto f = [&] { return policy_loss(b, a, scratch).loss; };
        EXPECT_LE(test::gradient_error(f, b.logp.data(), dlogp.data(), dlogp.size()), 1e-8);
      }
}

// Exact KL: L depends on the logits only through KL_t; d L / d logits_t =
// dkl[t] * d KL_t / d logits_t (the documented contract), checked by finite
// differences over whole logit rows of three positions.
TEST(Grpo, ExactKlGradientWithRespectToLogitsMatchesFiniteDifferences) {
  for (Aggregation agg : enum_values<Aggregation>()) {
    SCOPED_TRACE(name_of(agg));
    const GrpoArgs a = args_of(agg, KlEstimator::Exact, kClips[1]);
    std::vector<double> logits, ref_logits;
    PolicyBatch b = make_batch(11, true, &logits, &ref_logits);
    std::vector<double> dlogp;
    const PolicyLoss L = policy_loss(b, a, dlogp);
    ASSERT_EQ(L.dkl.size(), b.n_tokens());
    for (size_t t : {size_t(0), size_t(4), b.n_tokens() - 1}) {
      std::vector<double> dkl_dz(kVocab), dz(kVocab);
      kl_exact(logits.data() + t * kVocab, ref_logits.data() + t * kVocab, kVocab, dkl_dz.data());
      for (int j = 0; j < kVocab; ++j) dz[j] = L.dkl[t] * dkl_dz[j];
      const auto f = [&] {
        PolicyBatch c = b;
        c.kl_exact[t] = kl_exact(logits.data() + t * kVocab, ref_logits.data() + t * kVocab, kVocab);
        std::vector<double> unused;
        return policy_loss(c, a, unused).loss;
      };
      EXPECT_LE(test::gradient_error(f, logits.data() + t * kVocab, dz.data(), kVocab), 1e-7) << "token " << t;
    }
  }
}

TEST(Grpo, KlExactGradientMatchesFiniteDifferencesAndFloatAgrees) {
  Rng rng(5);
  std::vector<double> z(kVocab), zr(kVocab), dz(kVocab);
  for (int j = 0; j < kVocab; ++j) z[j] = 2 * rng.normal(), zr[j] = rng.normal();
  const double kl = kl_exact(z.data(), zr.data(), kVocab, dz.data());
  EXPECT_GT(kl, 0.1);
  const auto f = [&] { return kl_exact(z.data(), zr.data(), kVocab); };
  EXPECT_LE(test::gradient_error(f, z.data(), dz.data(), kVocab), 1e-8);
  std::vector<float> zf(z.begin(), z.end()), zrf(zr.begin(), zr.end());
  std::vector<double> dzf(kVocab);
  EXPECT_NEAR(kl_exact(zf.data(), zrf.data(), kVocab, dzf.data()), kl, 1e-5);
  EXPECT_LE(test::relative_error(dzf.data(), dz.data(), kVocab), 1e-5);
}

// ---------------------------------------------------------------------------
// PyTorch autograd on the same tensors.

void write_string_attr(H5::Group& g, const std::string& name, const std::string& value) {
  const H5::StrType type(H5::PredType::C_S1, value.size());
  g.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value);
}

std::vector<int> ints(const std::vector<size_t>& x) { return {x.begin(), x.end()}; }

TEST(GrpoOracle, LossAndGradientsMatchTorchForEveryVariant) {
  if (!std::filesystem::exists("/usr/bin/python3"))
    GTEST_SKIP() << "/usr/bin/python3 is missing: run scripts/test, which installs it with torch and h5py";
  struct Case {
    std::string name;
    GrpoArgs args;
    PolicyBatch batch;
    std::vector<double> logits, ref_logits;
  };
  std::vector<Case> cases;
  for (Aggregation agg : enum_values<Aggregation>())
    for (KlEstimator kl : enum_values<KlEstimator>())
      for (const ClipSetting& c : kClips) {
        Case k;
        k.name = std::string(name_of(agg)) + "." + std::string(name_of(kl)) + "." + c.name;
        k.args = args_of(agg, kl, c);
        k.batch = make_batch(100 + cases.size(), kl == KlEstimator::Exact, &k.logits, &k.ref_logits);
        cases.push_back(std::move(k));
      }
  {  // KL in the reward: the loss has no KL term.
    Case k;
    k.name = "reward_placement";
    k.args = args_of(Aggregation::SeqMeanTokenMean, KlEstimator::K1, kClips[0]);
    k.args.kl_placement = KlPlacement::Reward;
    k.batch = make_batch(99, false);
    cases.push_back(std::move(k));
  }

  const std::string dir = test::temp_dir("grpo_oracle");
  const std::string in = dir + "/in.h5", out = dir + "/out.h5";
  {
    H5::H5File f(in, H5F_ACC_TRUNC);
    H5::Group root = f.createGroup("policy");
    for (const Case& k : cases) {
      H5::Group g = root.createGroup(k.name);
      const GrpoArgs& a = k.args;
      write_string_attr(g, "aggregation", std::string(name_of(a.aggregation)));
      write_string_attr(g, "kl", std::string(name_of(a.kl_estimator)));
      write_string_attr(g, "placement", std::string(name_of(a.kl_placement)));
      oracle::write_attr(g, "beta", a.beta);
      oracle::write_attr(g, "eps_low", a.eps_low());
      oracle::write_attr(g, "eps_high", a.eps_high());
      oracle::write_attr(g, "clip_c", a.clip_c);
      oracle::write_attr(g, "max_len", a.max_response_length);
      const PolicyBatch& b = k.batch;
      const size_t N = b.n_tokens();
      oracle::write_ints(g, "offsets", ints(b.offsets));
      oracle::write_array(g, "logp", b.logp.data(), {N});
      oracle::write_array(g, "old_logp", b.old_logp.data(), {N});
      oracle::write_array(g, "ref_logp", b.ref_logp.data(), {N});
      oracle::write_array(g, "adv", b.advantages.data(), {N});
      if (!k.logits.empty()) {
        oracle::write_array(g, "logits", k.logits.data(), {N, size_t(kVocab)});
        oracle::write_array(g, "ref_logits", k.ref_logits.data(), {N, size_t(kVocab)});
      }
    }
  }
  const std::string error = oracle::run_script("grpo_oracle.py", in, out);
  ASSERT_EQ(error, "");
  H5::H5File f(out, H5F_ACC_RDONLY);
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    std::vector<double> dlogp;
    const PolicyLoss L = policy_loss(k.batch, k.args, dlogp);
    const oracle::Array loss = oracle::read_array(f, "policy/" + k.name + "/loss");
    EXPECT_LE(std::abs(L.loss - loss.data[0]), 1e-10 * std::abs(loss.data[0]));
    oracle::expect_close("dlogp", dlogp.data(), {dlogp.size()}, oracle::read_array(f, "policy/" + k.name + "/dlogp"),
                         1e-10);
    if (!k.logits.empty()) {
      const size_t N = k.batch.n_tokens();
      std::vector<double> dz(N * kVocab);
      for (size_t t = 0; t < N; ++t) {
        kl_exact(k.logits.data() + t * kVocab, k.ref_logits.data() + t * kVocab, kVocab, dz.data() + t * kVocab);
        for (int j = 0; j < kVocab; ++j) dz[t * kVocab + j] *= L.dkl[t];
      }
      oracle::expect_close("dlogits", dz.data(), {N, size_t(kVocab)},
                           oracle::read_array(f, "policy/" + k.name + "/dlogits"), 1e-10);
    }
  }
}

// ---------------------------------------------------------------------------
// Closed forms.

// mu = 1 (logp == old_logp) and beta = 0: rho = 1, l_t = -A_i, and the
// sequence-mean of token-means is -1/S sum_i A_i = 0 because the group
// advantages are centred; the gradient -A_i / (S n_i) is not 0 (TRL #2703).
TEST(Grpo, OnPolicyWithoutKlHasZeroLossAndNonZeroGradient) {
  PolicyBatch b = make_batch(3, false);
  b.logp = b.old_logp;
  const std::vector<double> rewards = {1, 0, 0, 0.5, 1, 0.25};
  const std::vector<double> adv = group_advantages(rewards, 3, AdvantageArgs{});
  b.advantages = broadcast_to_tokens(b.offsets, adv);
  GrpoArgs a;
  a.beta = 0;
  std::vector<double> dlogp;
  const PolicyLoss L = policy_loss(b, a, dlogp);
  EXPECT_NEAR(L.loss, 0.0, 1e-15);
  EXPECT_EQ(L.clip_fraction, 0.0);
  EXPECT_EQ(L.ratio_mean, 1.0);
  const double S = 6;
  double max_grad = 0;
  for (size_t i = 0; i < 6; ++i) {
    const double n = double(b.offsets[i + 1] - b.offsets[i]);
    for (size_t t = b.offsets[i]; t < b.offsets[i + 1]; ++t) {
      EXPECT_NEAR(dlogp[t], -adv[i] / (S * n), 1e-16);
      max_grad = std::max(max_grad, std::abs(dlogp[t]));
    }
  }
  EXPECT_GT(max_grad, 0.01);
}

// A group whose rewards are all equal has advantage exactly 0, hence exactly
// zero policy gradient, whatever the ratios; 0.7 * 3 / 3 != 0.7 in double, so
// the centred rewards alone would leave ~1e-16 / std_eps ~ 1e-12.
TEST(Grpo, AllEqualRewardsGiveZeroAdvantageAndZeroGradient) {
  for (AdvantageScope scope : enum_values<AdvantageScope>()) {
    AdvantageArgs aa;
    aa.scope = scope;
    const std::vector<double> rewards = {0.7, 0.7, 0.7, 1, 0, 0.25};
    const std::vector<double> adv = group_advantages(rewards, 3, aa);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(adv[i], 0.0) << name_of(scope);
    for (int i = 3; i < 6; ++i) EXPECT_NE(adv[i], 0.0) << name_of(scope);
    PolicyBatch b = make_batch(4, false);
    b.advantages = broadcast_to_tokens(b.offsets, adv);
    for (const ClipSetting& c : kClips) {
      GrpoArgs a = args_of(Aggregation::TokenMean, KlEstimator::K3, c);
      a.beta = 0;
      std::vector<double> dlogp;
      policy_loss(b, a, dlogp);
      for (size_t t = 0; t < b.offsets[3]; ++t) EXPECT_EQ(dlogp[t], 0.0) << c.name;
      double rest = 0;
      for (size_t t = b.offsets[3]; t < b.n_tokens(); ++t) rest += std::abs(dlogp[t]);
      EXPECT_GT(rest, 0.0) << c.name;
    }
  }
}

// Exact enumeration over a 256-token vocabulary, pi_theta = p, pi_ref = q random:
// E_p[k1] = E_p[k3] = KL(p || q); the expected gradient (w.r.t. the logits z of p,
// d logp_v / dz = e_v - p) of k3 is not grad KL, that of rho * k3 with pi_old = p
// (rho = 1 in value, differentiated) is, and so is k2's.
TEST(Grpo, KlEstimatorsEnumeratedOverTheVocabulary) {
  Rng rng(21);
  std::vector<double> z(kVocab), zr(kVocab), grad_kl(kVocab);
  for (int j = 0; j < kVocab; ++j) z[j] = 1.5 * rng.normal(), zr[j] = 1.5 * rng.normal();
  const double kl = kl_exact(z.data(), zr.data(), kVocab, grad_kl.data());
  // log p, log q by hand (log-sum-exp).
  auto log_softmax = [](const std::vector<double>& x) {
    double m = x[0];
    for (double xi : x) m = std::max(m, xi);
    double s = 0;
    for (double xi : x) s += std::exp(xi - m);
    std::vector<double> out(x.size());
    for (size_t j = 0; j < x.size(); ++j) out[j] = x[j] - m - std::log(s);
    return out;
  };
  const std::vector<double> lp = log_softmax(z), lq = log_softmax(zr);
  double direct = 0;
  for (int v = 0; v < kVocab; ++v) direct += std::exp(lp[v]) * (lp[v] - lq[v]);
  EXPECT_NEAR(kl, direct, 1e-13);
  EXPECT_GT(kl, 0.5);

  auto expectation = [&](KlEstimator e, std::vector<double>* grad) {
    double value = 0;
    grad->assign(kVocab, 0.0);
    for (int v = 0; v < kVocab; ++v) {
      const double pv = std::exp(lp[v]);
      const KlTerm k = kl_estimate(lp[v], lp[v], lq[v], e);
      value += pv * k.value;
      for (int j = 0; j < kVocab; ++j) (*grad)[j] += pv * k.dlogp * ((j == v) - std::exp(lp[j]));
    }
    return value;
  };
  std::vector<double> g1, g2, g3, g3r;
  EXPECT_NEAR(expectation(KlEstimator::K1, &g1), kl, 1e-13);
  EXPECT_NEAR(expectation(KlEstimator::K3, &g3), kl, 1e-13);
  EXPECT_NEAR(expectation(KlEstimator::K3Ratio, &g3r), kl, 1e-13);
  expectation(KlEstimator::K2, &g2);
  EXPECT_GT(test::relative_error(g3.data(), grad_kl.data(), kVocab), 0.1);
  EXPECT_GT(test::relative_error(g1.data(), grad_kl.data(), kVocab), 0.9);  // E[grad k1] = 0
  EXPECT_LE(test::relative_error(g3r.data(), grad_kl.data(), kVocab), 1e-12);
  EXPECT_LE(test::relative_error(g2.data(), grad_kl.data(), kVocab), 1e-12);
}

// verl issue #593's comparison, built from its two numbers: sequence A has 1
// token of loss 10, sequence B 5 tokens of loss 2 (loss l_t = -A_t at rho = 1,
// beta = 0). token-mean (10 + 5*2) / 6 = 3.3333, seq-mean (10 + 2) / 2 = 6.0;
// seq-mean-token-sum (10 + 10) / 2 = 10; Dr. GRPO with L_max = 5: TRL 20 / (2*5)
// = 2, verl 20 / 5 = 4; with L_max = 8: 20 / 16 and 20 / 8.
TEST(Grpo, AggregationsOnVerlIssue593Example) {
  PolicyBatch b;
  b.group_size = 2;
  b.offsets = {0, 1, 6};
  b.advantages = {-10, -2, -2, -2, -2, -2};
  b.logp = b.old_logp = b.ref_logp = std::vector<double>(6, -1.0);
  auto loss = [&](Aggregation agg, int max_len = 0) {
    GrpoArgs a;
    a.aggregation = agg;
    a.beta = 0;
    a.max_response_length = max_len;
    std::vector<double> dlogp;
    return policy_loss(b, a, dlogp).loss;
  };
  EXPECT_DOUBLE_EQ(loss(Aggregation::TokenMean), 20.0 / 6);
  EXPECT_NEAR(loss(Aggregation::TokenMean), 3.3333, 1e-4);
  EXPECT_DOUBLE_EQ(loss(Aggregation::SeqMeanTokenMean), 6.0);
  EXPECT_DOUBLE_EQ(loss(Aggregation::SeqMeanTokenSum), 10.0);
  EXPECT_DOUBLE_EQ(loss(Aggregation::DrGrpoTrl), 2.0);
  EXPECT_DOUBLE_EQ(loss(Aggregation::DrGrpoVerl), 4.0);
  EXPECT_DOUBLE_EQ(loss(Aggregation::DrGrpoTrl, 8), 20.0 / 16);
  EXPECT_DOUBLE_EQ(loss(Aggregation::DrGrpoVerl, 8), 20.0 / 8);
  EXPECT_THROW(loss(Aggregation::DrGrpoVerl, 4), std::invalid_argument);  // shorter than B
}

// Outcome advantages for the group {1, 0, 0, 1} and the batch {1, 0, 0, 1 | 1, 1, 1, 0}:
// mean 0.5; Bessel std sqrt(1/3), population std 0.5 (ratio sqrt(4/3), FACTS.md).
TEST(Grpo, GroupAdvantagesByHand) {
  const std::vector<double> r = {1, 0, 0, 1, 1, 1, 1, 0};
  AdvantageArgs a;
  std::vector<double> A = group_advantages(r, 4, a);
  const double s1 = std::sqrt(1.0 / 3), s2 = std::sqrt(0.75 / 3);  // group 2: mean .75, sum sq .75
  const double expect_bessel[] = {0.5 / (s1 + 1e-4), -0.5 / (s1 + 1e-4), -0.5 / (s1 + 1e-4), 0.5 / (s1 + 1e-4),
                                  0.25 / (s2 + 1e-4), 0.25 / (s2 + 1e-4), 0.25 / (s2 + 1e-4), -0.75 / (s2 + 1e-4)};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(A[i], expect_bessel[i], 1e-14) << i;
  a.std_bessel = false;
  a.std_eps = 1e-6;
  A = group_advantages(r, 4, a);
  EXPECT_NEAR(A[0], 0.5 / (0.5 + 1e-6), 1e-14);
  EXPECT_NEAR(A[7], -0.75 / (std::sqrt(0.75 / 4) + 1e-6), 1e-14);
  a.mean_only = true;
  A = group_advantages(r, 4, a);
  EXPECT_EQ(A[0], 0.5);
  EXPECT_EQ(A[7], -0.75);
  // Batch scope: group means, std over all 8 (mean 5/8, sum of squares 15/8, Bessel /7).
  a = AdvantageArgs{};
  a.scope = AdvantageScope::Batch;
  A = group_advantages(r, 4, a);
  const double sb = std::sqrt((15.0 / 8) / 7);
  EXPECT_NEAR(A[0], 0.5 / (sb + 1e-4), 1e-14);
  EXPECT_NEAR(A[7], -0.75 / (sb + 1e-4), 1e-14);
  EXPECT_THROW(group_advantages(r, 3, a), std::invalid_argument);
}

// Process supervision, DeepSeekMath Sec. 4.1.3, one group of two sequences:
// sequence 0 (5 tokens) has steps ending at tokens 1 and 4 with rewards 1, 0;
// sequence 1 (4 tokens) steps ending at 0 and 2 with rewards 0.5, 1.
// Step rewards {1, 0, 0.5, 1}: mean 0.625, deviations .375, -.625, -.125, .375,
// sum of squares 0.6875, Bessel std sqrt(0.6875 / 3); std_eps 0.
TEST(Grpo, ProcessSupervisionAdvantagesByHand) {
  StepRewards st;
  st.step_offsets = {0, 2, 4};
  st.end_token = {1, 4, 0, 2};
  st.reward = {1, 0, 0.5, 1};
  const std::vector<size_t> offsets = {0, 5, 9};
  AdvantageArgs a;
  a.std_eps = 0;
  const std::vector<double> A = process_advantages(st, offsets, 2, a);
  const double s = std::sqrt(0.6875 / 3);
  const double r0 = 0.375 / s, r1 = -0.625 / s, r2 = -0.125 / s, r3 = 0.375 / s;
  const double expect[] = {r0 + r1, r0 + r1, r1, r1, r1, r2 + r3, r3, r3, 0};
  ASSERT_EQ(A.size(), 9u);
  for (int t = 0; t < 9; ++t) EXPECT_NEAR(A[t], expect[t], 1e-14) << t;
  // Equal step rewards in the group: no signal.
  st.reward = {0.7, 0.7, 0.7, 0.7};
  for (double x : process_advantages(st, offsets, 2, a)) EXPECT_EQ(x, 0.0);
  st.end_token = {1, 5, 0, 2};  // past the end of sequence 0
  EXPECT_THROW(process_advantages(st, offsets, 2, a), std::invalid_argument);
}

TEST(Grpo, ValidateNamesTheKeys) {
  auto keys_of = [](const GrpoArgs& a) {
    try {
      a.validate();
    } catch (const ArgsError& e) {
      return e.keys();
    }
    return std::vector<std::string>{};
  };
  EXPECT_TRUE(keys_of(GrpoArgs{}).empty());
  GrpoArgs a;
  a.beta = -0.1;
  EXPECT_EQ(keys_of(a), std::vector<std::string>{"grpo.beta"});
  a = GrpoArgs{};
  a.clip_eps = 1.5;
  EXPECT_EQ(keys_of(a), std::vector<std::string>{"grpo.clip_eps"});
  a = GrpoArgs{};
  a.clip_c = 0.5;
  EXPECT_EQ(keys_of(a), std::vector<std::string>{"grpo.clip_c"});
  a = GrpoArgs{};
  a.kl_estimator = KlEstimator::Exact;
  a.kl_placement = KlPlacement::Reward;
  EXPECT_EQ(keys_of(a), (std::vector<std::string>{"grpo.kl_estimator", "grpo.kl_placement"}));
  a = GrpoArgs{};
  a.advantages.std_eps = -1;
  EXPECT_EQ(keys_of(a), std::vector<std::string>{"grpo.std_eps"});
  a = GrpoArgs{};
  a.max_response_length = -1;
  EXPECT_EQ(keys_of(a), std::vector<std::string>{"grpo.max_response_length"});
  EXPECT_EQ(parse_enum<Aggregation>("dr_grpo_verl"), Aggregation::DrGrpoVerl);
  EXPECT_EQ(parse_enum<KlEstimator>("k3_ratio"), KlEstimator::K3Ratio);
  EXPECT_EQ(names_text<KlPlacement>(), "loss, reward");
  EXPECT_EQ(names_text<AdvantageScope>(), "group, batch");
}

TEST(Grpo, BadBatchesAreErrors) {
  PolicyBatch b = make_batch(1, false);
  std::vector<double> dlogp;
  b.group_size = 4;  // 6 sequences
  EXPECT_THROW(policy_loss(b, GrpoArgs{}, dlogp), std::invalid_argument);
  b = make_batch(1, false);
  b.ref_logp.pop_back();
  EXPECT_THROW(policy_loss(b, GrpoArgs{}, dlogp), std::invalid_argument);
  b = make_batch(1, false);
  GrpoArgs a;
  a.kl_estimator = KlEstimator::Exact;  // no kl_exact values
  EXPECT_THROW(policy_loss(b, a, dlogp), std::invalid_argument);
}

}  // namespace
}  // namespace dslab
