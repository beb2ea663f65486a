#include "simulators/balance/replay.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace dslab::balance {

namespace {

MoeArgs gate_args(const ReplayGate& g, int n_experts) {
  MoeArgs a;
  a.n_routed_experts = n_experts;
  a.n_activated_experts = g.topk;
  a.n_expert_groups = g.groups;
  a.n_limited_groups = g.limited_groups;
  a.score_func = g.score_func;
  return a;
}

// Loads of one batch [N, E] routed with `bias` (empty: none).
std::vector<double> batch_load(const Tensor3<float>& logits, int b, const Tensor1<float>& bias,
                               const MoeArgs& a, Routing<float>& r) {
  const size_t N = logits.shape(1), E = logits.shape(2);
  Tensor2<float> z({N, E});
  std::copy_n(&logits(b, 0, 0), N * E, z.data());
  route_logits(r, z, bias, a);
  return expert_load(r);
}

void add_to(std::vector<double>& sum, const std::vector<double>& v) {
  for (size_t i = 0; i < v.size(); ++i) sum[i] += v[i];
}

}  // namespace

std::string Controller::name() const {
  if (!has_bias) return "none";
  std::ostringstream s;
  s << name_of(rule) << " gamma=" << gamma;
  return s.str();
}

void validate(const ReplayGate& g, int E) {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
  };
  const std::string experts = std::to_string(E) + " experts (the logits' last dimension)";
  require(g.groups > 0 && E % g.groups == 0,
          "--groups " + std::to_string(g.groups) + " must divide the " + experts);
  require(g.limited_groups > 0 && g.limited_groups <= g.groups,
          "--limited-groups " + std::to_string(g.limited_groups) + " must be 1..--groups (" +
              std::to_string(g.groups) + ")");
  require(g.groups == 1 || E / g.groups >= 2,
          "--groups " + std::to_string(g.groups) + " leaves fewer than 2 experts per group of the " + experts +
              "; a biased group score sums its top 2");
  const int reachable = g.limited_groups * (E / g.groups);
  require(g.topk > 0 && g.topk <= reachable,
          "--topk " + std::to_string(g.topk) + " must be 1.." + std::to_string(reachable) + " for the " +
              experts + (g.groups > 1 ? " in --limited-groups kept groups" : ""));
}

void validate(const Controller& c) {
  if (c.has_bias && !(c.gamma > 0 && std::isfinite(c.gamma))) {
    std::ostringstream s;
    s << "--gamma " << c.gamma << " is not allowed: a bias update rate must be positive and finite";
    throw std::invalid_argument(s.str());
  }
}

ReplayReport replay(const Tensor3<float>& logits, const ReplayGate& g, const Controller& c) {
  const int B = logits.shape(0), E = logits.shape(2);
  validate(g, E);
  validate(c);
  const MoeArgs a = gate_args(g, E);
  Tensor1<float> bias = c.has_bias ? Tensor1<float>(xt::zeros<float>({size_t(E)})) : Tensor1<float>();
  Routing<float> r;
  ReplayReport rep;
  rep.load.assign(E, 0.0);
  for (int b = 0; b < B; ++b) {  // Eq. (24): route with b, then update b from this batch's loads
    const std::vector<double> load = batch_load(logits, b, bias, a, r);
    rep.maxvio_batch.push_back(max_violation(load));
    add_to(rep.load, load);
    if (c.has_bias) update_bias(bias, load, c.gamma, c.rule);
  }
  rep.load_final.assign(E, 0.0);
  for (int b = 0; b < B; ++b) add_to(rep.load_final, batch_load(logits, b, bias, a, r));
  double sum = 0;
  for (double v : rep.maxvio_batch) sum += v;
  rep.maxvio_batch_mean = B > 0 ? sum / B : 0;
  rep.maxvio_global = max_violation(rep.load);
  rep.maxvio_global_final = max_violation(rep.load_final);
  rep.bias.assign(E, 0.0);
  if (c.has_bias)
    for (int e = 0; e < E; ++e) rep.bias[e] = bias(e);
  return rep;
}

}  // namespace dslab::balance
