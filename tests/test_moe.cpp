// The DeepSeekMoE reference (reference/moe.hpp): finite differences for the
// layer and every balance loss, the gate against DeepSeek's semantics on
// constructed cases, closed forms of the losses and of MaxVio, the bias
// update's direction, and thread-count invariance.
//
// Finite differences: Richardson-extrapolated central differences in double
// (as in test_gradcheck.cpp), tolerance 1e-8 of the largest analytic
// component. The selection is piecewise constant; each check also asserts
// that no perturbation changed it (or the capacity drops), so the function
// differentiated is the smooth piece the analytic gradient describes.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "tests/finite_difference.hpp"
#include "reference/moe.hpp"

namespace dslab {
namespace {

constexpr double kTolerance = 1e-8;

using test::gradient_error;

template <size_t R>
Tensor<double, R> random_tensor(Rng& rng, const std::array<size_t, R>& shape, double scale = 1.0) {
  Tensor<double, R> t(shape);
  for (auto& x : t) x = scale * rng.normal();
  return t;
}

double dot(const Tensor2<double>& a, const Tensor2<double>& b) {
  double s = 0;
  for (size_t j = 0; j < a.size(); ++j) s += a.data()[j] * b.data()[j];
  return s;
}

class Moe : public ::testing::Test {
 protected:
  void SetUp() override { omp_set_num_threads(1); }
};

// Coefficients of the four balance losses; zero switches one off.
struct Alphas {
  double expert = 0, device = 0, comm = 0, seq = 0;
};

struct Case {
  std::string name;
  MoeArgs args;
  bool bias;
  Alphas alphas;
};

MoeArgs small_args(ScoreFunc f, int groups, int limited, double route_scale, double capacity) {
  MoeArgs a;
  a.dim = 6;
  a.moe_inter_dim = 4;
  a.n_routed_experts = 8;
  a.n_shared_experts = 2;
  a.n_activated_experts = 3;
  a.n_expert_groups = groups;
  a.n_limited_groups = limited;
  a.route_scale = route_scale;
  a.score_func = f;
  a.capacity_factor = capacity;
  return a;
}

constexpr int kTokens = 12, kSeqLen = 4, kDevices = 4, kMaxDevices = 2;

// Every balance loss of the routing, its gradient added to *dscores when given.
double balance_total(const Routing<double>& r, const Alphas& al, Tensor2<double>* dscores) {
  const Placement pl = Placement::contiguous(r.n_experts, kDevices);
  double L = 0;
  if (al.expert) L += expert_balance_loss(r, al.expert, dscores);
  if (al.device) L += device_balance_loss(r, pl, al.device, dscores);
  if (al.comm) L += comm_balance_loss(r, pl, kMaxDevices, al.comm, dscores);
  if (al.seq) L += sequence_balance_loss(r, kSeqLen, al.seq, dscores);
  return L;
}

// The layer and all balance losses against finite differences, for every
// parameter tensor and the input.
void check_layer(const Case& c) {
  SCOPED_TRACE(c.name);
  const MoeArgs& a = c.args;
  Rng rng(7);
  MoeParams<double> p(a);
  p.init(8, 0.5);
  auto x = random_tensor<2>(rng, {size_t(kTokens), size_t(a.dim)});
  const auto R = random_tensor<2>(rng, {size_t(kTokens), size_t(a.dim)});
  Tensor1<double> bias;
  if (c.bias) bias = random_tensor<1>(rng, {size_t(a.n_routed_experts)}, 0.05);

  MoeCache<double> cache;
  Tensor2<double> y;
  moe_forward(y, cache, x, p, bias, a);
  const std::vector<int> indices = cache.routing.indices;
  const std::vector<uint8_t> kept = cache.routing.kept;
  bool selection_changed = false;
  auto loss = [&] {
    MoeCache<double> cc;
    Tensor2<double> yy;
    moe_forward(yy, cc, x, p, bias, a);
    selection_changed |= cc.routing.indices != indices || cc.routing.kept != kept;
    return dot(yy, R) + balance_total(cc.routing, c.alphas, nullptr);
  };

  Tensor2<double> dscores = xt::zeros<double>({size_t(kTokens), size_t(a.n_routed_experts)});
  balance_total(cache.routing, c.alphas, &dscores);
  MoeParams<double> dp(a);
  Tensor2<double> dx;
  moe_backward(dx, dp, R, &dscores, x, cache, p, a);

  EXPECT_LE(gradient_error(loss, x.data(), dx.data(), x.size()), kTolerance) << "x";
  auto params = p.refs(), grads = dp.refs();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_LE(gradient_error(loss, params[i].data, grads[i].data, params[i].size()), kTolerance)
        << params[i].name;
  EXPECT_FALSE(selection_changed) << "a perturbation changed the selection: pick other inputs";
}

TEST_F(Moe, LayerGradientSoftmax) {
  check_layer({"softmax, no groups", small_args(ScoreFunc::Softmax, 1, 1, 1.0, 0.0), false, {0.3, 0.2, 0.1, 0.4}});
}

TEST_F(Moe, LayerGradientSigmoidGroupsBias) {
  check_layer({"sigmoid, groups, bias", small_args(ScoreFunc::Sigmoid, 4, 2, 2.5, 0.0), true, {0.3, 0.2, 0.1, 0.4}});
}

TEST_F(Moe, LayerGradientWithCapacityDropping) {
  for (ScoreFunc f : {ScoreFunc::Softmax, ScoreFunc::Sigmoid}) {
    Case c{"capacity 1.0", small_args(f, 2, 1, 16.0, 1.0), false, {0.1, 0, 0, 0}};
    check_layer(c);
    // The case must actually drop tokens.
    Rng rng(7);
    MoeParams<double> p(c.args);
    p.init(8, 0.5);
    auto x = random_tensor<2>(rng, {size_t(kTokens), size_t(c.args.dim)});
    Routing<double> r;
    gate_forward(r, x, p.gate, Tensor1<double>(), c.args);
    EXPECT_GT(std::count(r.kept.begin(), r.kept.end(), 0), 0);
  }
}

// Each balance loss alone, differentiated through the gate (logits -> scores).
TEST_F(Moe, EachBalanceLossGradient) {
  const std::vector<std::pair<std::string, Alphas>> losses = {
      {"expert", {0.7, 0, 0, 0}}, {"device", {0, 0.7, 0, 0}}, {"comm", {0, 0, 0.7, 0}}, {"sequence", {0, 0, 0, 0.7}}};
  for (ScoreFunc f : {ScoreFunc::Softmax, ScoreFunc::Sigmoid})
    for (const auto& [name, al] : losses) {
      SCOPED_TRACE(name + (f == ScoreFunc::Softmax ? " softmax" : " sigmoid"));
      const MoeArgs a = small_args(f, 1, 1, 1.0, 0.0);
      Rng rng(11);
      auto x = random_tensor<2>(rng, {size_t(kTokens), size_t(a.dim)});
      auto w = random_tensor<2>(rng, {size_t(a.n_routed_experts), size_t(a.dim)});
      Routing<double> r;
      gate_forward(r, x, w, Tensor1<double>(), a);
      const std::vector<int> indices = r.indices;
      bool changed = false;
      auto loss = [&] {
        Routing<double> rr;
        gate_forward(rr, x, w, Tensor1<double>(), a);
        changed |= rr.indices != indices;
        return balance_total(rr, al, nullptr);
      };
      Tensor2<double> ds = xt::zeros<double>({size_t(kTokens), size_t(a.n_routed_experts)});
      balance_total(r, al, &ds);
      Tensor2<double> dx = xt::zeros<double>(x.shape()), dw = xt::zeros<double>(w.shape());
      gate_scores_backward(dx, dw, ds, x, w, r, a);
      EXPECT_LE(gradient_error(loss, x.data(), dx.data(), x.size()), kTolerance) << "x";
      EXPECT_LE(gradient_error(loss, w.data(), dw.data(), w.size()), kTolerance) << "gate.weight";
      EXPECT_FALSE(changed);
    }
}

// A routing built by hand: scores [N, E] (rows of a softmax) and indices.
Routing<double> make_routing(const Tensor2<double>& scores, const std::vector<int>& indices, int topk) {
  Routing<double> r;
  r.n_tokens = scores.shape(0);
  r.n_experts = scores.shape(1);
  r.topk = topk;
  r.scores = scores;
  r.indices = indices;
  r.weights = xt::zeros<double>({size_t(r.n_tokens), size_t(topk)});
  r.kept.assign(indices.size(), 1);
  return r;
}

Tensor2<double> random_softmax_rows(Rng& rng, int N, int E) {
  Tensor2<double> s = random_tensor<2>(rng, {size_t(N), size_t(E)});
  for (int t = 0; t < N; ++t) {
    double sum = 0;
    for (int e = 0; e < E; ++e) sum += (s(t, e) = std::exp(s(t, e)));
    for (int e = 0; e < E; ++e) s(t, e) /= sum;
  }
  return s;
}

// Token t picks experts tK .. tK+K-1 (mod E): every expert gets N K / E tokens,
// every device the same share, and every sequence of E/K tokens is balanced too.
std::vector<int> round_robin(int N, int E, int K) {
  std::vector<int> idx;
  for (int t = 0; t < N; ++t)
    for (int k = 0; k < K; ++k) idx.push_back((t * K + k) % E);
  return idx;
}

// With f_i = 1 for every expert, sum_i f_i P_i = sum_i P_i = 1 whatever P is:
// every loss equals its alpha (Megatron-Core's "equals coeff at perfect balance").
TEST_F(Moe, LossesEqualAlphaAtPerfectBalance) {
  const int E = 8, K = 2, N = 16, D = 4;
  Rng rng(3);
  const Routing<double> r = make_routing(random_softmax_rows(rng, N, E), round_robin(N, E, K), K);
  for (double f : expert_fraction(r)) EXPECT_EQ(f, 1.0);
  const double alpha = 0.37;
  EXPECT_NEAR(expert_balance_loss<double>(r, alpha, nullptr), alpha, 1e-15);
  EXPECT_NEAR(device_balance_loss<double>(r, Placement::contiguous(E, D), alpha, nullptr), alpha, 1e-15);
  // Round robin with K = 2 and 2 experts per device reaches one device per token.
  EXPECT_NEAR(comm_balance_loss<double>(r, Placement::contiguous(E, D), 1, alpha, nullptr), alpha, 1e-15);
  EXPECT_NEAR(sequence_balance_loss<double>(r, E / K, alpha, nullptr), alpha, 1e-15);
  EXPECT_EQ(max_violation(expert_load(r)), 0.0);
}

// The degeneracy of Sec. 2.2.3: with uniform P the loss is alpha for every f,
// balanced or not; with non-uniform P it depends on f.
TEST_F(Moe, ExpertLossValueIgnoresFWhenPIsUniform) {
  const int E = 8, K = 2, N = 16;
  Tensor2<double> uniform = xt::ones<double>({size_t(N), size_t(E)}) / double(E);
  const std::vector<int> collapsed(size_t(N) * K, 0);
  std::vector<int> skewed = round_robin(N, E, K);
  for (size_t j = 0; j < skewed.size(); j += 3) skewed[j] = 0;
  for (const auto& idx : {round_robin(N, E, K), skewed}) {
    const Routing<double> r = make_routing(uniform, idx, K);
    EXPECT_NEAR(expert_balance_loss<double>(r, 1.0, nullptr), 1.0, 1e-15);
  }
  std::vector<int> two_experts;
  for (int t = 0; t < N; ++t) two_experts.insert(two_experts.end(), {0, 1});
  const Routing<double> r = make_routing(uniform, two_experts, K);
  EXPECT_NEAR(expert_balance_loss<double>(r, 1.0, nullptr), 1.0, 1e-15);
  EXPECT_DOUBLE_EQ(max_violation(expert_load(r)), E / 2.0 - 1.0);
  Rng rng(4);
  const Routing<double> peaked = make_routing(random_softmax_rows(rng, N, E), two_experts, K);
  EXPECT_GT(std::abs(expert_balance_loss<double>(peaked, 1.0, nullptr) - 1.0), 1e-3);
}

// MaxVio: 0 at equal loads, E - 1 when one expert takes everything, and
// invariant to scaling the loads.
TEST_F(Moe, MaxViolationClosedForms) {
  const int E = 6;
  EXPECT_EQ(max_violation(std::vector<double>(E, 5.0)), 0.0);
  std::vector<double> one(E, 0.0);
  one[2] = 40;
  EXPECT_DOUBLE_EQ(max_violation(one), E - 1.0);
  const std::vector<double> load = {3, 9, 4, 4, 1, 3};
  std::vector<double> scaled = load;
  for (double& v : scaled) v *= 7;
  EXPECT_DOUBLE_EQ(max_violation(load), max_violation(scaled));
  EXPECT_THROW(max_violation(std::vector<double>(E, 0.0)), std::invalid_argument);
  const Placement pl = Placement::contiguous(E, 3);
  const std::vector<double> dev = device_load(load, pl);
  EXPECT_EQ(dev, (std::vector<double>{12, 8, 4}));
}

// Eq. (24): overloaded experts' biases go down by gamma, underloaded up by
// gamma; the proportional rule moves by gamma * relative gap and keeps the sum.
TEST_F(Moe, BiasUpdateDirection) {
  const std::vector<double> load = {10, 2, 6, 6, 1};  // mean 5
  const double gamma = 0.001;
  Tensor1<double> b = xt::zeros<double>({load.size()});
  update_bias(b, load, gamma, BiasUpdate::Sign);
  const double mean = 5.0;
  for (size_t e = 0; e < load.size(); ++e) {
    const double expected = load[e] > mean ? -gamma : (load[e] < mean ? gamma : 0.0);
    EXPECT_EQ(b(e), expected) << e;
  }
  Tensor1<double> bp = xt::zeros<double>({load.size()});
  update_bias(bp, load, gamma, BiasUpdate::Proportional);
  double sum = 0;
  for (size_t e = 0; e < load.size(); ++e) {
    EXPECT_NEAR(bp(e), gamma * (mean - load[e]) / mean, 1e-18);
    sum += bp(e);
  }
  EXPECT_NEAR(sum, 0.0, 1e-18);
}

// A gate whose logits are set directly: x = identity rows, W_g = logits^T.
struct DirectGate {
  Tensor2<double> x, w;
  explicit DirectGate(const Tensor2<double>& logits) : w(xt::transpose(logits)) {
    const size_t N = logits.shape(0);
    x = xt::zeros<double>({N, N});
    for (size_t t = 0; t < N; ++t) x(t, t) = 1;
  }
  Routing<double> route(const MoeArgs& a, const Tensor1<double>& bias = {}) const {
    Routing<double> r;
    MoeArgs b = a;
    b.dim = int(x.shape(1));
    gate_forward(r, x, w, bias, b);
    return r;
  }
};

// The bias changes which experts are picked, never the gate values: they are
// the unbiased scores of the picked experts.
TEST_F(Moe, BiasChangesSelectionOnly) {
  MoeArgs a = small_args(ScoreFunc::Sigmoid, 1, 1, 1.0, 0.0);
  a.n_activated_experts = 2;
  Rng rng(5);
  const DirectGate g(random_tensor<2>(rng, {4, size_t(a.n_routed_experts)}));
  const Routing<double> plain = g.route(a);
  Tensor1<double> bias = xt::zeros<double>({size_t(a.n_routed_experts)});
  const int last = a.n_routed_experts - 1;
  bias(last) = 10.0;  // forces the last expert in
  const Routing<double> biased = g.route(a, bias);
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(biased.index(t, 0), last);
    double sum = 0;
    for (int k = 0; k < 2; ++k) sum += biased.scores(t, biased.index(t, k));
    for (int k = 0; k < 2; ++k)
      EXPECT_NEAR(biased.weights(t, k), biased.scores(t, biased.index(t, k)) / sum, 1e-15);
    for (int e = 0; e < a.n_routed_experts; ++e) EXPECT_EQ(biased.scores(t, e), plain.scores(t, e));
  }
}

// Group scores: the max score without a bias, the sum of the top two biased
// scores with one. Group 0 has one strong expert, group 1 two good ones.
TEST_F(Moe, GroupScoreIsMaxWithoutBiasAndTopTwoSumWithBias) {
  MoeArgs a = small_args(ScoreFunc::Sigmoid, 2, 1, 1.0, 0.0);
  a.n_routed_experts = 8;
  a.n_activated_experts = 2;
  Tensor2<double> logits = {{3.0, -2.0, -2.5, -3.0, 1.5, 1.4, -2.2, -2.7}};
  const DirectGate g(logits);
  const Routing<double> no_bias = g.route(a);
  EXPECT_EQ(no_bias.index(0, 0), 0);  // group 0 wins on its max
  EXPECT_EQ(no_bias.index(0, 1), 1);  // and only its experts can be picked
  const Routing<double> zero_bias = g.route(a, xt::zeros<double>({8}));
  EXPECT_EQ(zero_bias.index(0, 0), 4);  // group 1 wins on 1.5 + 1.4 > 3.0 - 2.0 (as sigmoids)
  EXPECT_EQ(zero_bias.index(0, 1), 5);
}

// Sigmoid weights are renormalised to sum to route_scale; softmax weights are
// route_scale times the scores and do not sum to it.
TEST_F(Moe, RenormalisationAndRouteScale) {
  Rng rng(6);
  const DirectGate g(random_tensor<2>(rng, {5, 8}));
  for (ScoreFunc f : {ScoreFunc::Softmax, ScoreFunc::Sigmoid}) {
    MoeArgs a1 = small_args(f, 1, 1, 1.0, 0.0), a2 = small_args(f, 1, 1, 2.5, 0.0);
    const Routing<double> r1 = g.route(a1), r2 = g.route(a2);
    for (int t = 0; t < 5; ++t) {
      double sum = 0;
      for (int k = 0; k < a1.n_activated_experts; ++k) {
        EXPECT_NEAR(r2.weights(t, k), 2.5 * r1.weights(t, k), 1e-15);
        sum += r1.weights(t, k);
      }
      if (f == ScoreFunc::Sigmoid) EXPECT_NEAR(sum, 1.0, 1e-15);
      else EXPECT_LT(sum, 1.0 - 1e-6);
    }
  }
}

// Capacity: no expert keeps more than ceil(cf N K / E) tokens, and the kept
// ones are the highest-scoring that chose it.
TEST_F(Moe, CapacityKeepsTheHighestScores) {
  MoeArgs a = small_args(ScoreFunc::Softmax, 1, 1, 1.0, 0.5);
  Rng rng(9);
  Tensor2<double> logits = random_tensor<2>(rng, {40, 8});
  for (size_t t = 0; t < 40; ++t) logits(t, 0) += 2.0;  // expert 0 overloaded
  const Routing<double> r = DirectGate(logits).route(a);
  const size_t capacity = size_t(std::ceil(0.5 * 40 * 3 / 8.0));
  for (int e = 0; e < 8; ++e) {
    double lowest_kept = 2, highest_dropped = -1;
    size_t kept = 0;
    for (size_t sl = 0; sl < r.indices.size(); ++sl) {
      if (r.indices[sl] != e) continue;
      const double s = r.scores(sl / 3, e);
      if (r.kept[sl]) {
        ++kept;
        lowest_kept = std::min(lowest_kept, s);
      } else {
        highest_dropped = std::max(highest_dropped, s);
        EXPECT_EQ(r.weights.data()[sl], 0.0);
      }
    }
    EXPECT_LE(kept, capacity) << e;
    EXPECT_LT(highest_dropped, lowest_kept) << e;
  }
  EXPECT_GT(std::count(r.kept.begin(), r.kept.end(), 0), 0);
}

TEST_F(Moe, BadArgumentsNameTheKey) {
  MoeArgs a = small_args(ScoreFunc::Softmax, 3, 1, 1.0, 0.0);
  try {
    validate(a);
    FAIL() << "8 experts in 3 groups passed";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("n_expert_groups"), std::string::npos) << e.what();
  }
  a = small_args(ScoreFunc::Softmax, 4, 1, 1.0, 0.0);  // 2 experts per kept group < K = 3
  EXPECT_THROW(validate(a), std::invalid_argument);
  EXPECT_THROW(parse_score_func("relu"), std::invalid_argument);
  EXPECT_THROW(Placement::contiguous(8, 9), std::invalid_argument);
}

// Bitwise the same output and gradients on 1 and 2 threads (float).
TEST_F(Moe, SameBitsForAnyThreadCount) {
  MoeArgs a = small_args(ScoreFunc::Sigmoid, 4, 2, 2.5, 1.25);
  a.dim = 32;
  a.moe_inter_dim = 16;
  a.n_routed_experts = 16;
  a.n_activated_experts = 4;
  MoeParams<float> p(a);
  p.init(1, 0.2);
  Rng rng(2);
  Tensor2<float> x = Tensor2<float>::from_shape({256, size_t(a.dim)}), dy = x;
  for (auto& v : x) v = float(rng.normal());
  for (auto& v : dy) v = float(rng.normal());
  Tensor1<float> bias = xt::zeros<float>({size_t(a.n_routed_experts)});
  for (auto& v : bias) v = float(0.01 * rng.normal());
  auto run = [&](int threads, Tensor2<float>& y, Tensor2<float>& dx, std::vector<float>& grads) {
    omp_set_num_threads(threads);
    MoeCache<float> c;
    moe_forward(y, c, x, p, bias, a);
    MoeParams<float> dp(a);
    moe_backward<float>(dx, dp, dy, nullptr, x, c, p, a);
    grads.clear();
    for (auto& g : dp.refs()) grads.insert(grads.end(), g.data, g.data + g.size());
  };
  Tensor2<float> y1, y2, dx1, dx2;
  std::vector<float> g1, g2;
  run(1, y1, dx1, g1);
  run(2, y2, dx2, g2);
  EXPECT_TRUE(std::equal(y1.begin(), y1.end(), y2.begin()));
  EXPECT_TRUE(std::equal(dx1.begin(), dx1.end(), dx2.begin()));
  EXPECT_EQ(g1, g2);
}

}  // namespace
}  // namespace dslab
