#include "simulators/balance/dynamics.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace dslab::balance {

Method parse_method(const std::string& name) {
  if (name == "none") return Method::None;
  if (name == "aux") return Method::Aux;
  if (name == "sequence") return Method::Sequence;
  if (name == "device") return Method::Device;
  if (name == "bias-sign") return Method::BiasSign;
  if (name == "bias-proportional") return Method::BiasProportional;
  throw std::invalid_argument("--method '" + name +
                              "' is not allowed; allowed: none, aux, sequence, device, bias-sign, bias-proportional");
}

std::string method_name(Method m) {
  switch (m) {
    case Method::None: return "none";
    case Method::Aux: return "aux";
    case Method::Sequence: return "sequence";
    case Method::Device: return "device";
    case Method::BiasSign: return "bias-sign";
    case Method::BiasProportional: return "bias-proportional";
  }
  return "?";
}

namespace {
bool uses_alpha(Method m) { return m == Method::Aux || m == Method::Sequence || m == Method::Device; }
bool uses_bias(Method m) { return m == Method::BiasSign || m == Method::BiasProportional; }
}  // namespace

void validate(const DynamicsConfig& c) {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
  };
  require(c.experts >= 2 && c.experts <= 1024, "--experts must be 2..1024");
  require(c.topk >= 1 && c.topk < c.experts, "--topk must be 1..experts-1");
  require(c.dim >= 1 && c.dim <= 1024, "--dim must be 1..1024");
  require(c.clusters >= 1 && c.clusters <= 4096, "--clusters must be 1..4096");
  require(std::isfinite(c.zipf) && c.zipf >= 0, "--zipf must be >= 0 (0: equally frequent clusters)");
  require(std::isfinite(c.noise) && c.noise >= 0, "--noise must be >= 0");
  require(c.seq_topic >= 0 && c.seq_topic <= 1, "--seq-topic must be in [0, 1]");
  require(c.preferred >= 1 && c.preferred <= c.experts, "--preferred must be 1..experts");
  require(std::isfinite(c.popularity) && c.popularity >= 0, "--popularity must be >= 0 (0: all experts alike)");
  require(c.quality_min >= 0 && c.quality_min <= c.quality_max && c.quality_max <= 1,
          "--quality-min and --quality-max must satisfy 0 <= min <= max <= 1");
  require(c.steps >= 1 && c.steps <= 10000000, "--steps must be 1..10^7");
  require(c.seq_len >= 1 && c.batch >= c.seq_len && c.batch % c.seq_len == 0 && c.batch <= 1 << 20,
          "--batch must be a multiple of --seq-len, at most 2^20");
  require(std::isfinite(c.lr) && c.lr >= 0, "--lr must be >= 0 and finite");
  require(std::isfinite(c.init_std) && c.init_std >= 0, "--init-std must be >= 0 and finite");
  require(c.alpha >= 0 && std::isfinite(c.alpha), "--alpha must be >= 0 and finite");
  require(c.gamma >= 0 && std::isfinite(c.gamma), "--gamma must be >= 0 and finite");
  require(uses_alpha(c.method) || c.alpha == 0,
          "--alpha applies to the aux, sequence and device methods only (got --method " + method_name(c.method) + ")");
  require(uses_bias(c.method) || c.gamma == 0,
          "--gamma applies to bias-sign and bias-proportional only (got --method " + method_name(c.method) + ")");
  require(c.devices >= 1 && c.devices <= c.experts, "--devices must be 1..experts");
  require(c.val_tokens >= c.batch && c.val_tokens <= 1 << 24, "--val-tokens must be at least --batch, at most 2^24");
  require(c.record_every >= 1, "--record-every must be >= 1");
}

namespace {

// The synthetic task: cluster centres, frequencies, expert qualities.
struct Task {
  int E, K, D, C;
  Tensor2<double> centres;   // [C, D]
  std::vector<double> cdf;   // cumulative cluster frequencies
  Tensor2<double> quality;   // [C, E]
  std::vector<std::vector<uint8_t>> preferred;  // [C][E]

  Task(const DynamicsConfig& c) : E(c.experts), K(c.topk), D(c.dim), C(c.clusters) {
    Rng rng(c.seed, 1);
    centres = Tensor2<double>::from_shape({size_t(C), size_t(D)});
    for (auto& v : centres) v = rng.normal();
    double sum = 0;
    for (int k = 0; k < C; ++k) cdf.push_back(sum += std::pow(k + 1.0, -c.zipf));
    for (double& v : cdf) v /= sum;
    quality = Tensor2<double>::from_shape({size_t(C), size_t(E)});
    preferred.assign(C, std::vector<uint8_t>(E, 0));
    // Expert e is popular in proportion to (e + 1)^-popularity; each cluster
    // draws its preferred experts without replacement by popularity.
    std::vector<double> weight(E);
    for (int e = 0; e < E; ++e) weight[e] = std::pow(e + 1.0, -c.popularity);
    for (int k = 0; k < C; ++k) {
      std::vector<double> w = weight;
      for (int j = 0; j < c.preferred; ++j) {
        double u = rng.uniform() * std::accumulate(w.begin(), w.end(), 0.0);
        int e = 0;
        while (e < E - 1 && (u -= w[e]) >= 0) ++e;
        while (w[e] == 0) e = (e + 1) % E;  // rounding at the end of the range
        preferred[k][e] = 1;
        w[e] = 0;
      }
      for (int e = 0; e < E; ++e)
        quality(k, e) = preferred[k][e] ? 1.0 : c.quality_min + (c.quality_max - c.quality_min) * rng.uniform();
    }
  }
  int draw_cluster(Rng& rng) const {
    const double u = rng.uniform();
    return int(std::upper_bound(cdf.begin(), cdf.end() - 1, u) - cdf.begin());
  }
};

// One batch: features [B, D] and clusters, sequence by sequence.
void draw_batch(Tensor2<double>& x, std::vector<int>& cluster, const Task& task, const DynamicsConfig& c,
                int tokens, Rng& rng) {
  ensure_shape(x, {size_t(tokens), size_t(task.D)});
  cluster.resize(tokens);
  for (int s = 0; s < tokens / c.seq_len; ++s) {
    const int topic = task.draw_cluster(rng);
    for (int i = 0; i < c.seq_len; ++i) {
      const int t = s * c.seq_len + i;
      cluster[t] = rng.uniform() < c.seq_topic ? topic : task.draw_cluster(rng);
      for (int d = 0; d < task.D; ++d) x(t, d) = task.centres(cluster[t], d) + c.noise * rng.normal();
    }
  }
}

// Mean task loss 1 - sum_k w_k q_k with w_k = g_k / sum_j g_j, the gate values
// renormalised over the chosen experts; d/dg in *dweights when given. The
// renormalisation makes the signal relative: a chosen expert worse than the
// other chosen ones is pushed down until an unchosen one replaces it.
double task_loss(const Routing<double>& r, const std::vector<int>& cluster, const Task& task,
                 Tensor2<double>* dweights) {
  const int T = r.n_tokens, K = r.topk;
  double L = 0;
  for (int t = 0; t < T; ++t) {
    double G = 0, served = 0;
    for (int k = 0; k < K; ++k) G += r.weights(t, k);
    for (int k = 0; k < K; ++k) served += r.weights(t, k) / G * task.quality(cluster[t], r.index(t, k));
    L += 1 - served;
    if (dweights)
      for (int k = 0; k < K; ++k)
        (*dweights)(t, k) = -(task.quality(cluster[t], r.index(t, k)) - served) / (G * T);
  }
  return L / T;
}

MoeArgs router_args(const DynamicsConfig& c) {
  MoeArgs a;
  a.dim = c.dim;
  a.moe_inter_dim = 1;
  a.n_routed_experts = c.experts;
  a.n_activated_experts = c.topk;
  a.score_func = c.score_func;
  return a;
}

}  // namespace

DynamicsReport run_dynamics(const DynamicsConfig& c) {
  validate(c);
  const Task task(c);
  const MoeArgs a = router_args(c);
  const Placement placement = Placement::contiguous(c.experts, c.devices);
  const BiasUpdate rule = c.method == Method::BiasProportional ? BiasUpdate::Proportional : BiasUpdate::Sign;

  Tensor2<double> W = Tensor2<double>::from_shape({size_t(c.experts), size_t(c.dim)});
  {
    Rng rng(c.seed, 2);
    for (auto& v : W) v = c.init_std * rng.normal();
  }
  Tensor1<double> bias;
  if (uses_bias(c.method)) bias = xt::zeros<double>({size_t(c.experts)});

  DynamicsReport rep;
  Rng data(c.seed, 3);
  Tensor2<double> x, dweights, dscores, dx, dW;
  std::vector<int> cluster;
  Routing<double> r;
  double tail_sum = 0;
  int tail_count = 0;
  const int tail_start = c.steps - std::max(1, c.steps / 5);
  for (int step = 0; step < c.steps; ++step) {
    draw_batch(x, cluster, task, c, c.batch, data);
    gate_forward(r, x, W, bias, a);
    dweights = xt::zeros<double>({size_t(c.batch), size_t(c.topk)});
    const double L_task = task_loss(r, cluster, task, &dweights);
    dscores = xt::zeros<double>({size_t(c.batch), size_t(c.experts)});
    gate_weights_backward(dscores, dweights, r, a);
    double L_bal = 0;
    if (c.method == Method::Aux) L_bal = expert_balance_loss(r, c.alpha, &dscores);
    if (c.method == Method::Sequence) L_bal = sequence_balance_loss(r, c.seq_len, c.alpha, &dscores);
    if (c.method == Method::Device) L_bal = device_balance_loss(r, placement, c.alpha, &dscores);
    dx = xt::zeros<double>(x.shape());
    dW = xt::zeros<double>(W.shape());
    gate_scores_backward(dx, dW, dscores, x, W, r, a);
    W -= c.lr * dW;
    const std::vector<double> load = expert_load(r);
    if (uses_bias(c.method)) update_bias(bias, load, c.gamma, rule);  // Eq. (24), after the step
    const double vio = max_violation(load);
    if (step >= tail_start) {
      tail_sum += vio;
      ++tail_count;
    }
    if (step % c.record_every == 0 || step == c.steps - 1) {
      rep.step.push_back(step);
      rep.maxvio_batch.push_back(vio);
      rep.task_loss.push_back(L_task);
      rep.balance_loss.push_back(L_bal);
    }
  }
  rep.maxvio_batch_tail = tail_sum / tail_count;

  // Held-out tokens, routed with the final router and bias.
  Rng val(c.seed, 4);
  std::vector<double> total(c.experts, 0.0);
  double loss_sum = 0, vio_sum = 0, hits = 0;
  const int batches = c.val_tokens / c.batch;
  for (int b = 0; b < batches; ++b) {
    draw_batch(x, cluster, task, c, c.batch, val);
    gate_forward(r, x, W, bias, a);
    loss_sum += task_loss(r, cluster, task, nullptr);
    const std::vector<double> load = expert_load(r);
    vio_sum += max_violation(load);
    for (int e = 0; e < c.experts; ++e) total[e] += load[e];
    for (int t = 0; t < c.batch; ++t)
      for (int k = 0; k < c.topk; ++k) hits += task.preferred[cluster[t]][r.index(t, k)];
  }
  rep.maxvio_global = max_violation(total);
  rep.maxvio_batch_val = vio_sum / batches;
  rep.val_task_loss = loss_sum / batches;
  rep.specialization = hits / (double(batches) * c.batch * c.topk);
  const double sum = std::accumulate(total.begin(), total.end(), 0.0);
  for (double v : total) rep.val_load_share.push_back(v / sum);
  for (double v : device_load(total, placement)) rep.device_load_share.push_back(v / sum);
  rep.bias.assign(c.experts, 0.0);
  for (size_t e = 0; e < bias.size(); ++e) rep.bias[e] = bias(e);
  return rep;
}

}  // namespace dslab::balance
