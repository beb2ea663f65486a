#include "simulators/balance/degeneracy.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <stdexcept>

#include "reference/moe.hpp"

namespace dslab::balance {

void validate(const DegeneracyConfig& c) {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
  };
  require(c.experts >= 3 && c.experts <= 1024, "--experts must be 3..1024");
  require(c.topk >= 1 && 2 * c.topk < c.experts,
          "--topk must be at least 1 and below experts/2: the uniform_P_skewed_f state sends half the "
          "tokens to K experts and half to K others, and needs an expert left unused");
  require(c.tokens >= 2 && c.tokens <= 65536 && c.tokens % 2 == 0, "--tokens must be even and 2..65536");
  require((long(c.tokens) * c.topk) % c.experts == 0,
          "--tokens times --topk must be a multiple of --experts, so that an exactly balanced state exists");
  require(std::isfinite(c.alpha) && c.alpha > 0, "--alpha must be positive and finite");
  require(!c.epsilons.empty(), "at least one epsilon is needed");
  for (double e : c.epsilons) require(std::isfinite(e) && e > 0 && e <= 10, "epsilons must be in (0, 10]");
  require(c.fd_samples >= 1 && c.fd_samples <= (1 << 24), "--fd-samples must be 1..16777216");
}

namespace {

MoeArgs router_args(const DegeneracyConfig& c) {
  MoeArgs a;
  a.dim = 1;
  a.moe_inter_dim = 1;
  a.n_routed_experts = c.experts;
  a.n_activated_experts = c.topk;
  a.score_func = ScoreFunc::Softmax;
  return a;
}

// alpha sum_i f_i P_i of logits z; its gradient in *dz when given.
double loss_of(const Tensor2<double>& z, const DegeneracyConfig& c, Routing<double>& r, Tensor2<double>* dz) {
  route_logits(r, z, Tensor1<double>(), router_args(c));
  if (!dz) return expert_balance_loss<double>(r, c.alpha, nullptr);
  Tensor2<double> ds = xt::zeros<double>(z.shape());
  const double L = expert_balance_loss(r, c.alpha, &ds);
  gate_logits_backward(*dz, ds, r, ScoreFunc::Softmax);
  return L;
}

// The gap between the K-th and (K+1)-th largest of row[0..E): a perturbation
// of the row below it cannot change the selection. O(E).
double row_margin(const double* z, int E, int K, std::vector<double>& row) {
  row.assign(z, z + E);
  std::nth_element(row.begin(), row.begin() + K, row.end(), std::greater<>());  // row[K]: (K+1)-th largest
  return *std::min_element(row.begin(), row.begin() + K) - row[K];
}

// The smallest gap over tokens.
double selection_margin(const Tensor2<double>& z, int K) {
  const size_t T = z.shape(0), E = z.shape(1);
  double margin = INFINITY;
  std::vector<double> row;
  for (size_t t = 0; t < T; ++t) margin = std::min(margin, row_margin(&z(t, 0), int(E), K, row));
  return margin;
}

// L(z') - L(z) for z' = z with row t replaced by `row`: every other token's
// selection and probabilities stay, so f and P change by token t's part only,
// f_i by (E/(K T)) ([i chosen now] - [i chosen before]) and P_i by
// (s'_i/S' - s_i/S)/T. The difference is formed from those changes, not as a
// difference of two losses of size alpha. O(E).
class RowChange {
 public:
  RowChange(const Routing<double>& r, const std::vector<double>& f, const std::vector<double>& P,
            const DegeneracyConfig& c)
      : r_(r), f_(f), P_(P), c_(c), z1_(Tensor2<double>::from_shape({1, size_t(c.experts)})),
        dcount_(c.experts) {}

  double operator()(int t, const double* row) {
    const int E = c_.experts, K = c_.topk, T = c_.tokens;
    std::copy_n(row, E, z1_.data());
    route_logits(r1_, z1_, Tensor1<double>(), router_args(c_));
    std::fill(dcount_.begin(), dcount_.end(), 0.0);
    for (int k = 0; k < K; ++k) {
      dcount_[r_.index(t, k)] -= 1;
      dcount_[r1_.index(0, k)] += 1;
    }
    double S0 = 0, S1 = 0;
    for (int i = 0; i < E; ++i) S0 += r_.scores(t, i), S1 += r1_.scores(0, i);
    double dL = 0;
    for (int i = 0; i < E; ++i) {
      const double dP = (r1_.scores(0, i) / S1 - r_.scores(t, i) / S0) / T;
      const double df = double(E) / (double(K) * T) * dcount_[i];
      dL += df * (P_[i] + dP) + f_[i] * dP;
    }
    return c_.alpha * dL;
  }

 private:
  const Routing<double>& r_;
  const std::vector<double>&f_, &P_;
  const DegeneracyConfig& c_;
  Tensor2<double> z1_;
  Routing<double> r1_;
  std::vector<double> dcount_;
};

double norm(const Tensor2<double>& a) {
  double s = 0;
  for (double v : a) s += v * v;
  return std::sqrt(s);
}

StateReport analyse(const std::string& name, const std::string& description, Tensor2<double> z,
                    const DegeneracyConfig& c) {
  const int T = c.tokens, E = c.experts, K = c.topk;
  StateReport s;
  s.name = name;
  s.description = description;
  Routing<double> r;
  Tensor2<double> g;
  s.loss = loss_of(z, c, r, &g);
  s.load = expert_load(r);
  s.f = expert_fraction(r);
  s.P = expert_probability(r);
  s.max_vio = max_violation(s.load);

  // Value side: the loss over every feasible f at this P.
  std::vector<double> sorted = s.P;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  const double top = std::accumulate(sorted.begin(), sorted.begin() + K, 0.0);
  const double bottom = std::accumulate(sorted.end() - K, sorted.end(), 0.0);
  s.value_spread_over_f = c.alpha * double(E) / K * (top - bottom);
  const double meanP = std::accumulate(s.P.begin(), s.P.end(), 0.0) / E;
  for (double p : s.P) s.value_grad_f_norm += (p - meanP) * (p - meanP);
  s.value_grad_f_norm = c.alpha * std::sqrt(s.value_grad_f_norm);

  // Gradient side.
  s.grad_norm = norm(g);
  double max_g = 0, max_cf = 0;
  for (int t = 0; t < T; ++t) {
    double fp = 0;
    for (int j = 0; j < E; ++j) fp += s.f[j] * r.scores(t, j);
    for (int j = 0; j < E; ++j) {
      const double cf = c.alpha / T * r.scores(t, j) * (s.f[j] - fp);
      max_cf = std::max(max_cf, std::abs(cf - g(t, j)));
      max_g = std::max(max_g, std::abs(g(t, j)));
    }
  }
  // Errors are relative to the larger of max|analytic| and alpha/(T E), the
  // size of the gradient of a unit imbalance at uniform p: at balance the
  // gradient is exactly zero and only rounding is left.
  const double scale = std::max(max_g, c.alpha / (double(T) * E));
  s.grad_closed_form_error = max_cf / scale;

  // Finite differences (Richardson-extrapolated central differences), with a
  // step well inside the selection margin.
  const size_t n = z.size();
  double max_err = 0;
  auto richardson = [](auto&& central, double h) { return (4 * central(h / 2) - central(h)) / 3; };
  if (n <= size_t(c.fd_samples)) {  // every coordinate, the whole loss each time
    s.fd_step = std::min(5e-4, selection_margin(z, K) / 8);
    Routing<double> rr;
    for (size_t j = 0; j < n; ++j) {
      double* x = z.data() + j;
      const double x0 = *x;
      auto central = [&](double h) {
        *x = x0 + h;
        const double up = loss_of(z, c, rr, nullptr);
        *x = x0 - h;
        const double down = loss_of(z, c, rr, nullptr);
        *x = x0;
        return (up - down) / (2 * h);
      };
      max_err = std::max(max_err, std::abs(richardson(central, s.fd_step) - g.data()[j]));
    }
    s.fd_checked = int(n);
  } else {  // fd_samples random coordinates, the perturbed token's row only; its own margin
    Rng rng(c.seed, 0x5A3D1E);
    RowChange change(r, s.f, s.P, c);
    std::vector<double> row(E), scratch;
    s.fd_step = 5e-4;
    for (int k = 0; k < c.fd_samples; ++k) {
      const int t = int(rng.below(T)), j = int(rng.below(E));
      std::copy_n(&z(t, 0), E, row.begin());
      const double step = std::min(5e-4, row_margin(row.data(), E, K, scratch) / 8);
      s.fd_step = std::min(s.fd_step, step);
      auto central = [&](double h) {
        row[j] = z(t, j) + h;
        const double up = change(t, row.data());
        row[j] = z(t, j) - h;
        const double down = change(t, row.data());
        row[j] = z(t, j);
        return (up - down) / (2 * h);
      };
      max_err = std::max(max_err, std::abs(richardson(central, step) - g(t, j)));
    }
    s.fd_checked = c.fd_samples;
  }
  s.grad_fd_error = max_err / scale;

  // Alignment with d_{t,j} = 1 - f_j (raise underloaded, lower overloaded experts).
  double dd = 0, gd = 0;
  for (int j = 0; j < E; ++j) dd += T * (1 - s.f[j]) * (1 - s.f[j]);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < E; ++j) gd += -g(t, j) * (1 - s.f[j]);
  s.alignment_defined = dd > 0 && s.grad_norm > 0;
  s.alignment = s.alignment_defined ? gd / (std::sqrt(dd) * s.grad_norm) : 0.0;
  s.push.assign(E, 0.0);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < E; ++j) s.push[j] -= g(t, j);
  return s;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

DegeneracyReport run_degeneracy(const DegeneracyConfig& c) {
  validate(c);
  const int T = c.tokens, E = c.experts, K = c.topk;
  const size_t sT = size_t(T), sE = size_t(E);
  DegeneracyReport rep;
  rep.config = c;
  uint64_t stream = 0;

  {  // Token t prefers experts tK .. tK+K-1 (mod E): f_i = 1 exactly.
    Rng rng(c.seed, ++stream);
    Tensor2<double> z = Tensor2<double>::from_shape({sT, sE});
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < E; ++j) z(t, j) = 0.3 * rng.normal();
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < K; ++k) z(t, (t * K + k) % E) += 3.0;
    rep.states.push_back(analyse("balanced", "round-robin preferences plus noise: f = 1 exactly, P near uniform", z, c));
  }
  for (double eps : c.epsilons) {  // p -> uniform while the choices stay on experts 0..K-1
    Tensor2<double> z = Tensor2<double>::from_shape({sT, sE});
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < E; ++j) z(t, j) = eps * double(E - j) / E;
    rep.states.push_back(analyse("uniform_p_skewed_f(eps=" + fmt(eps) + ")",
                                 "z_tj = eps (E - j)/E for every token: each p_t within O(eps) of uniform, "
                                 "every token picks experts 0..K-1",
                                 z, c));
  }
  {  // Pairs p = u + delta, u - delta: P exactly uniform, tokens peaked, f on 2K experts.
    const double kappa = 0.5;
    Tensor2<double> z = Tensor2<double>::from_shape({sT, sE});
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < E; ++j) {
        const double v = 1.0 - 2.0 * j / (E - 1);
        const double sign = t % 2 == 0 ? 1.0 : -1.0;
        z(t, j) = std::log((1.0 + sign * kappa * v) / E);
      }
    rep.states.push_back(analyse("uniform_P_skewed_f",
                                 "token pairs with p = (1 +/- 0.5 v)/E, v from 1 to -1: the batch mean P is "
                                 "uniform, each token is peaked, f sits on the first and last K experts",
                                 z, c));
  }
  {  // Every token strongly prefers experts 0..K-1.
    Rng rng(c.seed, ++stream);
    Tensor2<double> z = Tensor2<double>::from_shape({sT, sE});
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < E; ++j) z(t, j) = 0.3 * rng.normal() + (j < K ? 4.0 : 0.0);
    rep.states.push_back(analyse("collapsed", "every token prefers experts 0..K-1 by 4 logits (plus noise)", z, c));
  }
  {  // Zipf-like preference: z_tj = -log(j+1) + noise.
    Rng rng(c.seed, ++stream);
    Tensor2<double> z = Tensor2<double>::from_shape({sT, sE});
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < E; ++j) z(t, j) = -std::log(j + 1.0) + 0.5 * rng.normal();
    rep.states.push_back(analyse("zipf", "z_tj = -log(j+1) + N(0, 0.25): popular experts by rank", z, c));
  }
  {  // A freshly initialised router: z ~ N(0, 1).
    Rng rng(c.seed, ++stream);
    Tensor2<double> z = Tensor2<double>::from_shape({sT, sE});
    for (auto& v : z) v = rng.normal();
    rep.states.push_back(analyse("random", "z ~ N(0, 1), as at initialisation", z, c));
  }
  return rep;
}

}  // namespace dslab::balance
