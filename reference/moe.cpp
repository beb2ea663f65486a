#include "reference/moe.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "reference/args_error.hpp"
#include "reference/fp8_linear.hpp"
#include "reference/linear.hpp"
#include "reference/simd.hpp"

namespace dslab {

void validate(const MoeArgs& a) {
  const auto v = [](auto x) { return value_text(x); };
  const std::string E = v(a.n_routed_experts);
  require(a.dim > 0, {"model.dim"}, "model.dim = " + v(a.dim) + " must be > 0");
  require(a.moe_inter_dim > 0, {"model.moe_inter_dim"}, "model.moe_inter_dim = " + v(a.moe_inter_dim) + " must be > 0");
  require(a.n_routed_experts > 0, {"model.n_routed_experts"},
          "model.n_routed_experts = " + E + " must be > 0 in an MoE layer");
  require(a.n_shared_experts >= 0, {"model.n_shared_experts"},
          "model.n_shared_experts = " + v(a.n_shared_experts) + " must be >= 0");
  require(a.n_activated_experts > 0, {"model.n_activated_experts"},
          "model.n_activated_experts = " + v(a.n_activated_experts) + " must be > 0");
  require(a.n_activated_experts <= a.n_routed_experts, {"model.n_activated_experts", "model.n_routed_experts"},
          "model.n_activated_experts = " + v(a.n_activated_experts) + " must be <= model.n_routed_experts = " + E);
  require(a.n_expert_groups > 0, {"model.n_expert_groups"},
          "model.n_expert_groups = " + v(a.n_expert_groups) + " must be > 0");
  require(a.n_routed_experts % a.n_expert_groups == 0, {"model.n_expert_groups", "model.n_routed_experts"},
          "model.n_expert_groups = " + v(a.n_expert_groups) + " must divide model.n_routed_experts = " + E);
  require(a.n_limited_groups > 0, {"model.n_limited_groups"},
          "model.n_limited_groups = " + v(a.n_limited_groups) + " must be > 0");
  require(a.n_limited_groups <= a.n_expert_groups, {"model.n_limited_groups", "model.n_expert_groups"},
          "model.n_limited_groups = " + v(a.n_limited_groups) + " must be <= model.n_expert_groups = " +
              v(a.n_expert_groups));
  const int kept = a.n_limited_groups * (a.n_routed_experts / a.n_expert_groups);
  require(a.n_activated_experts <= kept,
          {"model.n_activated_experts", "model.n_limited_groups", "model.n_expert_groups"},
          "model.n_activated_experts = " + v(a.n_activated_experts) + " exceeds the " + v(kept) +
              " experts of the model.n_limited_groups groups a token may use");
  require(a.route_scale > 0 && std::isfinite(a.route_scale), {"model.route_scale"},
          "model.route_scale = " + v(a.route_scale) + " must be positive and finite");
  require(a.capacity_factor >= 0 && std::isfinite(a.capacity_factor), {"model.capacity_factor"},
          "model.capacity_factor = " + v(a.capacity_factor) + " must be >= 0 and finite (0 keeps every token)");
}

ScoreFunc parse_score_func(const std::string& name) {
  if (const auto f = parse_enum<ScoreFunc>(name)) return *f;
  throw std::invalid_argument("score_func '" + name + "' is not allowed; allowed: " + names_text<ScoreFunc>());
}

BiasUpdate parse_bias_update(const std::string& name) {
  const auto rule = parse_enum<BiasUpdate>(name);
  if (rule && *rule != BiasUpdate::None) return *rule;
  throw std::invalid_argument("bias update '" + name + "' is not allowed; allowed: " +
                              names_text<BiasUpdate>("", BiasUpdate::None));
}

// ---------------------------------------------------------------------------
// Gate
// ---------------------------------------------------------------------------

template <class T>
void select_experts(int* chosen, const T* biased, bool has_bias, const MoeArgs& a) {
  const int E = a.n_routed_experts, K = a.n_activated_experts, G = a.n_expert_groups;
  auto better = [biased](int i, int j) { return biased[i] > biased[j] || (biased[i] == biased[j] && i < j); };
  std::vector<int> candidates(E);
  std::iota(candidates.begin(), candidates.end(), 0);
  if (G > 1) {
    // Group-limited routing: keep the experts of the n_limited_groups best groups.
    const int per = E / G;
    std::vector<T> group_score(G);
    for (int g = 0; g < G; ++g) {
      std::vector<int> members(candidates.begin() + g * per, candidates.begin() + (g + 1) * per);
      std::sort(members.begin(), members.end(), better);
      group_score[g] = has_bias ? biased[members[0]] + biased[members[1]] : biased[members[0]];
    }
    std::vector<int> groups(G);
    std::iota(groups.begin(), groups.end(), 0);
    std::stable_sort(groups.begin(), groups.end(),
                     [&](int g, int h) { return group_score[g] > group_score[h]; });
    groups.resize(a.n_limited_groups);
    std::sort(groups.begin(), groups.end());
    candidates.clear();
    for (int g : groups)
      for (int e = g * per; e < (g + 1) * per; ++e) candidates.push_back(e);
  }
  std::partial_sort(candidates.begin(), candidates.begin() + K, candidates.end(), better);
  std::copy(candidates.begin(), candidates.begin() + K, chosen);
}

template <class T>
void gate_forward(Routing<T>& r, const Tensor2<T>& x, const Tensor2<T>& gate_weight,
                  const Tensor1<T>& bias, const MoeArgs& a) {
  linear_forward(r.scores, x, gate_weight);  // logits z [N, E], turned into s in place; never FP8 (V3)
  route_logits(r, r.scores, bias, a);
}

template <class T>
void route_logits(Routing<T>& r, const Tensor2<T>& logits, const Tensor1<T>& bias, const MoeArgs& a) {
  const int N = logits.shape(0), E = a.n_routed_experts, K = a.n_activated_experts;
  if (int(logits.shape(1)) != E)
    throw std::invalid_argument("MoE: logits have " + std::to_string(logits.shape(1)) +
                                " columns; n_routed_experts = " + std::to_string(E));
  const bool has_bias = bias.size() > 0;
  if (has_bias && int(bias.size()) != E)
    throw std::invalid_argument("MoE: the expert bias has " + std::to_string(bias.size()) +
                                " entries; n_routed_experts = " + std::to_string(E));
  if (has_bias && a.n_expert_groups > 1 && E / a.n_expert_groups < 2)
    throw std::invalid_argument("MoE: group scores with a bias sum each group's top 2: groups need >= 2 experts");
  r.n_tokens = N;
  r.n_experts = E;
  r.topk = K;
  if (&logits != &r.scores) r.scores = logits;
  r.indices.assign(size_t(N) * K, 0);
  ensure_shape(r.weights, {size_t(N), size_t(K)});
  r.kept.assign(size_t(N) * K, 1);
#pragma omp parallel for schedule(static) if (long(N) * E >= kParallelMinWork)
  for (int t = 0; t < N; ++t) {
    T* s = &r.scores(t, 0);
    if (a.score_func == ScoreFunc::Softmax) {  // Eq. (20)
      simd::softmax_row(s, s, E, simd::SoftmaxArith::Scalar);
    } else {
      for (int e = 0; e < E; ++e) s[e] = T(1) / (T(1) + std::exp(-s[e]));
    }
    std::vector<T> biased(s, s + E);  // s + b picks the experts (Eq. (24))
    if (has_bias)
      for (int e = 0; e < E; ++e) biased[e] += bias(e);
    int* chosen = &r.indices[size_t(t) * K];
    select_experts(chosen, biased.data(), has_bias, a);
    T sum = 0;
    for (int k = 0; k < K; ++k) sum += s[chosen[k]];
    for (int k = 0; k < K; ++k) {
      const T g = a.score_func == ScoreFunc::Sigmoid ? s[chosen[k]] / sum : s[chosen[k]];
      r.weights(t, k) = g * T(a.route_scale);
    }
  }
  if (a.capacity_factor > 0) {
    // Each expert keeps its capacity's worth of highest-scoring tokens.
    const size_t capacity = size_t(std::ceil(a.capacity_factor * double(N) * K / E));
#pragma omp parallel for schedule(static) if (long(E) * N * K >= kParallelMinWork)
    for (int e = 0; e < E; ++e) {
      std::vector<size_t> slots;
      for (size_t sl = 0; sl < r.indices.size(); ++sl)
        if (r.indices[sl] == e) slots.push_back(sl);
      if (slots.size() <= capacity) continue;
      std::stable_sort(slots.begin(), slots.end(),
                       [&](size_t u, size_t v) { return r.scores(u / K, e) > r.scores(v / K, e); });
      for (size_t j = capacity; j < slots.size(); ++j) {
        r.kept[slots[j]] = 0;
        r.weights.data()[slots[j]] = 0;
      }
    }
  }
}

template <class T>
void gate_weights_backward(Tensor2<T>& dscores, const Tensor2<T>& dweights, const Routing<T>& r,
                           const MoeArgs& a) {
  const int N = r.n_tokens, K = r.topk;
  const T rs = T(a.route_scale);
#pragma omp parallel for schedule(static) if (long(N) * K >= kParallelMinWork)
  for (int t = 0; t < N; ++t) {
    const size_t row = size_t(t) * K;
    if (a.score_func == ScoreFunc::Softmax) {  // g_k = rs * s_k
      for (int k = 0; k < K; ++k)
        if (r.kept[row + k]) dscores(t, r.index(t, k)) += rs * dweights(t, k);
    } else {  // g_k = rs * s_k / S, S = sum over the chosen experts
      T S = 0, dot = 0;
      for (int k = 0; k < K; ++k) S += r.scores(t, r.index(t, k));
      for (int k = 0; k < K; ++k)
        if (r.kept[row + k]) dot += dweights(t, k) * r.scores(t, r.index(t, k));
      for (int k = 0; k < K; ++k) {
        const T dg = r.kept[row + k] ? dweights(t, k) : T(0);
        dscores(t, r.index(t, k)) += rs * (dg - dot / S) / S;
      }
    }
  }
}

template <class T>
void gate_logits_backward(Tensor2<T>& dlogits, const Tensor2<T>& dscores, const Routing<T>& r, ScoreFunc f) {
  const int N = r.n_tokens, E = r.n_experts;
  ensure_shape(dlogits, {size_t(N), size_t(E)});
#pragma omp parallel for schedule(static) if (long(N) * E >= kParallelMinWork)
  for (int t = 0; t < N; ++t) {
    if (f == ScoreFunc::Softmax) {  // dz = s * (ds - <ds, s>)
      T dot = 0;
      for (int e = 0; e < E; ++e) dot += dscores(t, e) * r.scores(t, e);
      for (int e = 0; e < E; ++e) dlogits(t, e) = r.scores(t, e) * (dscores(t, e) - dot);
    } else {  // dz = ds * s (1 - s)
      for (int e = 0; e < E; ++e) dlogits(t, e) = dscores(t, e) * r.scores(t, e) * (T(1) - r.scores(t, e));
    }
  }
}

template <class T>
void gate_scores_backward(Tensor2<T>& dx, Tensor2<T>& dgate_weight, const Tensor2<T>& dscores,
                          const Tensor2<T>& x, const Tensor2<T>& gate_weight, const Routing<T>& r,
                          const MoeArgs& a, WeightGradQueue<T>* defer) {
  Tensor2<T> dlogits;
  gate_logits_backward(dlogits, dscores, r, a.score_func);
  Tensor2<T> dx_gate;
  linear_backward(dx_gate, dgate_weight, dlogits, x, gate_weight, {.fp8 = nullptr, .defer = defer});
  dx += dx_gate;
}

// ---------------------------------------------------------------------------
// The MoE layer
// ---------------------------------------------------------------------------

namespace {
template <class T> FfnWeights<T> ffn_shapes(int dim, int inter) {
  FfnWeights<T> w;
  w.w1 = Tensor2<T>::from_shape({size_t(inter), size_t(dim)});
  w.w2 = Tensor2<T>::from_shape({size_t(dim), size_t(inter)});
  w.w3 = Tensor2<T>::from_shape({size_t(inter), size_t(dim)});
  return w;
}
template <class T> void add_ffn_refs(std::vector<ParamRef<T>>& r, const std::string& p, FfnWeights<T>& w) {
  r.push_back(param_ref(p + "w1.weight", w.w1));
  r.push_back(param_ref(p + "w2.weight", w.w2));
  r.push_back(param_ref(p + "w3.weight", w.w3));
}
}  // namespace

template <class T> MoeParams<T>::MoeParams(const MoeArgs& a) {
  validate(a);
  gate = Tensor2<T>::from_shape({size_t(a.n_routed_experts), size_t(a.dim)});
  for (int e = 0; e < a.n_routed_experts; ++e) experts.push_back(ffn_shapes<T>(a.dim, a.moe_inter_dim));
  if (a.n_shared_experts > 0) shared = ffn_shapes<T>(a.dim, a.n_shared_experts * a.moe_inter_dim);
  zero();
}

template <class T> std::vector<ParamRef<T>> MoeParams<T>::refs(const std::string& prefix) {
  std::vector<ParamRef<T>> r;
  r.push_back(param_ref(prefix + "gate.weight", gate));
  for (size_t e = 0; e < experts.size(); ++e) add_ffn_refs(r, prefix + "experts." + std::to_string(e) + ".", experts[e]);
  if (shared.w1.size() > 0) add_ffn_refs(r, prefix + "shared_experts.", shared);
  return r;
}

template <class T> void MoeParams<T>::init(uint64_t seed, double std) {
  Rng rng(seed);
  for (auto& p : refs())
    for (size_t j = 0; j < p.size(); ++j) p.data[j] = T(std * rng.normal());
}

template <class T> void MoeParams<T>::zero() {
  for (auto& p : refs()) std::fill(p.data, p.data + p.size(), T(0));
}

template <class T>
void moe_forward(Tensor2<T>& y, MoeCache<T>& c, const Tensor2<T>& x, const MoeParams<T>& p,
                 const Tensor1<T>& bias, const MoeArgs& a, const LinearPolicy<T>& linears) {
  const int N = x.shape(0), D = a.dim, E = a.n_routed_experts, K = a.n_activated_experts;
  if (int(x.shape(1)) != D)
    throw std::invalid_argument("MoE: x has " + std::to_string(x.shape(1)) + " columns; dim = " + std::to_string(D));
  gate_forward(c.routing, x, p.gate, bias, a);
  const Routing<T>& r = c.routing;
  c.slots.assign(E, {});
  for (size_t sl = 0; sl < r.indices.size(); ++sl)
    if (r.kept[sl]) c.slots[r.indices[sl]].push_back(int(sl));
  c.expert_in.resize(E);
  c.expert_cache.resize(E);
  assign_zeros(c.expert_out, {size_t(N) * K, size_t(D)});
  Tensor2<T>& out = c.out;
  for (int e = 0; e < E; ++e) {  // each expert on its own tokens (the GEMMs are threaded)
    const std::vector<int>& slots = c.slots[e];
    ensure_shape(c.expert_in[e], {slots.size(), size_t(D)});
    if (slots.empty()) continue;
    for (size_t j = 0; j < slots.size(); ++j)
      std::copy_n(&x(slots[j] / K, 0), D, &c.expert_in[e](j, 0));
    ffn_forward(out, c.expert_cache[e], c.expert_in[e], p.experts[e], linears);
    for (size_t j = 0; j < slots.size(); ++j) std::copy_n(&out(j, 0), D, &c.expert_out(slots[j], 0));
  }
  if (a.n_shared_experts > 0) {
    ffn_forward(y, c.shared_cache, x, p.shared, linears);
  } else {
    assign_zeros(y, {size_t(N), size_t(D)});
  }
#pragma omp parallel for schedule(static) if (long(N) * K * D >= kParallelMinWork)
  for (int t = 0; t < N; ++t)  // Eq. (18): shared + sum_k g_{t,k} FFN_k(x_t)
    for (int k = 0; k < K; ++k) {
      const T g = r.weights(t, k);
      const T* o = &c.expert_out(size_t(t) * K + k, 0);
      for (int d = 0; d < D; ++d) y(t, d) += g * o[d];
    }
}

template <class T>
void moe_backward(Tensor2<T>& dx, MoeParams<T>& dp, const Tensor2<T>& dy,
                  const Tensor2<T>* dscores_extra, const Tensor2<T>& x, MoeCache<T>& c,
                  const MoeParams<T>& p, const MoeArgs& a, const LinearPolicy<T>& linears) {
  const int N = x.shape(0), D = a.dim, E = a.n_routed_experts, K = a.n_activated_experts;
  const Routing<T>& r = c.routing;
  // d g_{t,k} = <dy_t, FFN_k(x_t)>
  Tensor2<T>& dweights = c.dweights;
  assign_zeros(dweights, {size_t(N), size_t(K)});
#pragma omp parallel for schedule(static) if (long(N) * K * D >= kParallelMinWork)
  for (int t = 0; t < N; ++t)
    for (int k = 0; k < K; ++k) {
      const T* o = &c.expert_out(size_t(t) * K + k, 0);
      T s = 0;
      for (int d = 0; d < D; ++d) s += dy(t, d) * o[d];
      dweights(t, k) = s;
    }
  // Experts: d FFN_k(x_t) = g_{t,k} dy_t; their input gradients land in per-slot rows.
  Tensor2<T>& dx_slot = c.dx_slot;
  assign_zeros(dx_slot, {size_t(N) * K, size_t(D)});
  Tensor2<T>& dout = c.dout;
  Tensor2<T>& dx_e = c.dx_e;
  for (int e = 0; e < E; ++e) {
    const std::vector<int>& slots = c.slots[e];
    if (slots.empty()) continue;
    ensure_shape(dout, {slots.size(), size_t(D)});
    for (size_t j = 0; j < slots.size(); ++j) {
      const T g = r.weights.data()[slots[j]];
      for (int d = 0; d < D; ++d) dout(j, d) = g * dy(slots[j] / K, d);
    }
    ffn_backward(dx_e, dp.experts[e], dout, c.expert_in[e], c.expert_cache[e], p.experts[e], c.ffn, linears);
    for (size_t j = 0; j < slots.size(); ++j) std::copy_n(&dx_e(j, 0), D, &dx_slot(slots[j], 0));
  }
  if (a.n_shared_experts > 0) {
    ffn_backward(dx, dp.shared, dy, x, c.shared_cache, p.shared, c.ffn, linears);
  } else {
    assign_zeros(dx, {size_t(N), size_t(D)});
  }
#pragma omp parallel for schedule(static) if (long(N) * K * D >= kParallelMinWork)
  for (int t = 0; t < N; ++t)
    for (int k = 0; k < K; ++k)
      for (int d = 0; d < D; ++d) dx(t, d) += dx_slot(size_t(t) * K + k, d);
  // Gate: through the gate values, plus the balance losses' d/ds.
  Tensor2<T>& dscores = c.dscores;
  assign_zeros(dscores, {size_t(N), size_t(E)});
  gate_weights_backward(dscores, dweights, r, a);
  if (dscores_extra) dscores += *dscores_extra;
  gate_scores_backward(dx, dp.gate, dscores, x, p.gate, r, a, linears.defer);
}

// ---------------------------------------------------------------------------
// Load balancing
// ---------------------------------------------------------------------------

Placement Placement::contiguous(int n_experts, int n_devices) {
  if (n_devices < 1 || n_devices > n_experts)
    throw std::invalid_argument("placement: " + std::to_string(n_devices) +
                                " devices is not allowed; it must be 1..n_routed_experts (" +
                                std::to_string(n_experts) + ")");
  Placement pl;
  pl.n_devices = n_devices;
  for (int e = 0; e < n_experts; ++e) pl.device_of_expert.push_back(int(long(e) * n_devices / n_experts));
  return pl;
}

void Placement::validate(int n_experts) const {
  if (int(device_of_expert.size()) != n_experts)
    throw std::invalid_argument("placement: it names " + std::to_string(device_of_expert.size()) +
                                " experts; n_routed_experts = " + std::to_string(n_experts));
  std::vector<int> count(std::max(n_devices, 0), 0);
  for (int d : device_of_expert) {
    if (d < 0 || d >= n_devices)
      throw std::invalid_argument("placement: device " + std::to_string(d) + " is outside 0.." +
                                  std::to_string(n_devices - 1));
    ++count[d];
  }
  for (int d = 0; d < n_devices; ++d)
    if (count[d] == 0) throw std::invalid_argument("placement: device " + std::to_string(d) + " holds no expert");
}

void BalanceArgs::validate() const {
  const auto v = [](auto x) { return value_text(x); };
  const std::pair<const char*, double> alphas[] = {
      {"balance.aux_alpha", aux_alpha}, {"balance.seq_aux_alpha", seq_aux_alpha},
      {"balance.device_alpha", device_alpha}, {"balance.comm_alpha", comm_alpha}};
  for (const auto& [key, alpha] : alphas)
    require(alpha >= 0 && std::isfinite(alpha), {key}, std::string(key) + " = " + v(alpha) + " must be >= 0 (0: off)");
  require(n_devices >= 1, {"balance.n_devices"}, "balance.n_devices = " + v(n_devices) + " must be >= 1");
  require(max_devices_per_token >= 1, {"balance.max_devices_per_token"},
          "balance.max_devices_per_token = " + v(max_devices_per_token) + " must be >= 1");
  require(max_devices_per_token <= n_devices, {"balance.max_devices_per_token", "balance.n_devices"},
          "balance.max_devices_per_token = " + v(max_devices_per_token) + " must be <= balance.n_devices = " +
              v(n_devices));
  require(bias_gamma > 0 && std::isfinite(bias_gamma), {"balance.bias_gamma"},
          "balance.bias_gamma = " + v(bias_gamma) + " must be positive and finite");
}

namespace {

// load_i over tokens [t0, t1).
template <class T> std::vector<double> load_rows(const Routing<T>& r, int t0, int t1) {
  std::vector<double> load(r.n_experts, 0.0);
  for (size_t sl = size_t(t0) * r.topk; sl < size_t(t1) * r.topk; ++sl) load[r.indices[sl]] += 1;
  return load;
}

// S_t = sum_j s_{j,t}, which normalises s'_{.,t} = s_{.,t} / S_t (for softmax
// S_t = 1 up to rounding, and the softmax Jacobian removes the normalisation's
// gradient, so dividing changes nothing there).
template <class T> double row_sum(const Routing<T>& r, int t) {
  double S = 0;
  for (int e = 0; e < r.n_experts; ++e) S += double(r.scores(t, e));
  return S;
}

// P_i over tokens [t0, t1): (1/T) sum_t s'_{i,t}  (Eq. (23))
template <class T> std::vector<double> prob_rows(const Routing<T>& r, int t0, int t1) {
  std::vector<double> P(r.n_experts, 0.0);
  for (int t = t0; t < t1; ++t) {
    const double S = row_sum(r, t);
    for (int e = 0; e < r.n_experts; ++e) P[e] += double(r.scores(t, e)) / S;
  }
  for (double& p : P) p /= (t1 - t0);
  return P;
}

// dscores += d/ds of sum_i coef_i P_i over tokens [t0, t1), scaled by `scale`.
template <class T>
void add_prob_gradient(Tensor2<T>& dscores, const Routing<T>& r, int t0, int t1,
                       const std::vector<double>& coef, double scale) {
  const int E = r.n_experts;
  const double per_token = scale / (t1 - t0);
#pragma omp parallel for schedule(static) if (long(t1 - t0) * E >= kParallelMinWork)
  for (int t = t0; t < t1; ++t) {
    // s' = s / S: ds_j = (ds'_j - sum_i ds'_i s'_i) / S
    const double S = row_sum(r, t);
    double dot = 0;
    for (int e = 0; e < E; ++e) dot += coef[e] * double(r.scores(t, e)) / S;
    for (int e = 0; e < E; ++e) dscores(t, e) += T(per_token * (coef[e] - dot) / S);
  }
}

// alpha sum_i f_i P_i over tokens [t0, t1) (Eq. (21)-(23)), gradient scaled by `scale`.
template <class T>
double fp_loss_rows(const Routing<T>& r, int t0, int t1, double alpha, double scale, Tensor2<T>* dscores) {
  const int E = r.n_experts, K = r.topk, n = t1 - t0;
  std::vector<double> f = load_rows(r, t0, t1);
  for (double& v : f) v *= double(E) / (double(K) * n);
  const std::vector<double> P = prob_rows(r, t0, t1);
  double L = 0;
  for (int e = 0; e < E; ++e) L += f[e] * P[e];
  if (dscores) {
    for (double& v : f) v *= alpha;
    add_prob_gradient(*dscores, r, t0, t1, f, scale);
  }
  return alpha * L;
}

template <class T> void check_dscores(const Routing<T>& r, const Tensor2<T>* dscores) {
  if (dscores && (int(dscores->shape(0)) != r.n_tokens || int(dscores->shape(1)) != r.n_experts))
    throw std::invalid_argument("balance loss: dscores must be [tokens, n_routed_experts]");
}

}  // namespace

template <class T> std::vector<double> expert_load(const Routing<T>& r) { return load_rows(r, 0, r.n_tokens); }

template <class T> std::vector<double> expert_fraction(const Routing<T>& r) {
  std::vector<double> f = expert_load(r);
  for (double& v : f) v *= double(r.n_experts) / (double(r.topk) * r.n_tokens);
  return f;
}

template <class T> std::vector<double> expert_probability(const Routing<T>& r) {
  return prob_rows(r, 0, r.n_tokens);
}

template <class T> double expert_balance_loss(const Routing<T>& r, double alpha, Tensor2<T>* dscores) {
  check_dscores(r, dscores);
  return fp_loss_rows(r, 0, r.n_tokens, alpha, 1.0, dscores);
}

template <class T>
double device_balance_loss(const Routing<T>& r, const Placement& pl, double alpha, Tensor2<T>* dscores) {
  check_dscores(r, dscores);
  pl.validate(r.n_experts);
  const std::vector<double> f = expert_fraction(r), P = expert_probability(r);
  std::vector<double> f_dev(pl.n_devices, 0.0), P_dev(pl.n_devices, 0.0), size(pl.n_devices, 0.0);
  for (int e = 0; e < r.n_experts; ++e) {
    const int d = pl.device_of_expert[e];
    f_dev[d] += f[e];
    P_dev[d] += P[e];
    size[d] += 1;
  }
  double L = 0;
  for (int d = 0; d < pl.n_devices; ++d) L += (f_dev[d] /= size[d]) * P_dev[d];
  if (dscores) {
    std::vector<double> coef(r.n_experts);
    for (int e = 0; e < r.n_experts; ++e) coef[e] = alpha * f_dev[pl.device_of_expert[e]];
    add_prob_gradient(*dscores, r, 0, r.n_tokens, coef, 1.0);
  }
  return alpha * L;
}

template <class T>
double comm_balance_loss(const Routing<T>& r, const Placement& pl, int max_devices_per_token, double alpha,
                         Tensor2<T>* dscores) {
  check_dscores(r, dscores);
  pl.validate(r.n_experts);
  if (max_devices_per_token < 1 || max_devices_per_token > pl.n_devices)
    throw std::invalid_argument("communication balance: M = " + std::to_string(max_devices_per_token) +
                                " devices per token is not allowed; it must be 1..n_devices (" +
                                std::to_string(pl.n_devices) + ")");
  std::vector<double> sent(pl.n_devices, 0.0), P_dev(pl.n_devices, 0.0);
  std::vector<uint8_t> reached(pl.n_devices);
  for (int t = 0; t < r.n_tokens; ++t) {
    std::fill(reached.begin(), reached.end(), 0);
    for (int k = 0; k < r.topk; ++k) reached[pl.device_of_expert[r.index(t, k)]] = 1;
    for (int d = 0; d < pl.n_devices; ++d) sent[d] += reached[d];
  }
  const std::vector<double> P = expert_probability(r);
  for (int e = 0; e < r.n_experts; ++e) P_dev[pl.device_of_expert[e]] += P[e];
  double L = 0;
  for (int d = 0; d < pl.n_devices; ++d) {
    sent[d] *= double(pl.n_devices) / (double(max_devices_per_token) * r.n_tokens);  // f''_d
    L += sent[d] * P_dev[d];
  }
  if (dscores) {
    std::vector<double> coef(r.n_experts);
    for (int e = 0; e < r.n_experts; ++e) coef[e] = alpha * sent[pl.device_of_expert[e]];
    add_prob_gradient(*dscores, r, 0, r.n_tokens, coef, 1.0);
  }
  return alpha * L;
}

template <class T>
double sequence_balance_loss(const Routing<T>& r, int seq_len, double alpha, Tensor2<T>* dscores) {
  check_dscores(r, dscores);
  if (seq_len < 1 || r.n_tokens % seq_len != 0)
    throw std::invalid_argument("sequence-wise balance: seq_len = " + std::to_string(seq_len) +
                                " must be positive and divide the " + std::to_string(r.n_tokens) + " tokens");
  const int B = r.n_tokens / seq_len;
  double L = 0;
  for (int b = 0; b < B; ++b) L += fp_loss_rows(r, b * seq_len, (b + 1) * seq_len, alpha, 1.0 / B, dscores);
  return L / B;
}

double max_violation(const std::vector<double>& load) {
  if (load.empty()) throw std::invalid_argument("MaxVio: no experts");
  const double mean = std::accumulate(load.begin(), load.end(), 0.0) / double(load.size());
  if (!(mean > 0)) throw std::invalid_argument("MaxVio: no tokens were routed");
  return (*std::max_element(load.begin(), load.end()) - mean) / mean;
}

std::vector<double> device_load(const std::vector<double>& load, const Placement& pl) {
  pl.validate(int(load.size()));
  std::vector<double> dev(pl.n_devices, 0.0);
  for (size_t e = 0; e < load.size(); ++e) dev[pl.device_of_expert[e]] += load[e];
  return dev;
}

template <class T>
void update_bias(Tensor1<T>& bias, const std::vector<double>& load, double gamma, BiasUpdate rule) {
  if (bias.size() != load.size())
    throw std::invalid_argument("bias update: " + std::to_string(bias.size()) + " biases for " +
                                std::to_string(load.size()) + " experts");
  if (rule == BiasUpdate::None) return;
  const double mean = std::accumulate(load.begin(), load.end(), 0.0) / double(load.size());
  for (size_t e = 0; e < load.size(); ++e) {
    const double gap = mean - load[e];  // > 0: underloaded, raise its bias
    if (rule == BiasUpdate::Sign) {
      bias(e) += T(gamma * double((gap > 0) - (gap < 0)));
    } else if (mean > 0) {
      bias(e) += T(gamma * gap / mean);
    }
  }
}

template <class T>
void balance_losses(std::map<std::string, double>& values, Tensor2<T>& dscores, const Routing<T>& r,
                    int seq_len, const BalanceArgs& b) {
  assign_zeros(dscores, {size_t(r.n_tokens), size_t(r.n_experts)});
  if (b.aux_alpha > 0) values["aux"] += expert_balance_loss(r, b.aux_alpha, &dscores);
  if (b.seq_aux_alpha > 0) values["seq_aux"] += sequence_balance_loss(r, seq_len, b.seq_aux_alpha, &dscores);
  if (b.device_alpha > 0 || b.comm_alpha > 0) {
    const Placement pl = Placement::contiguous(r.n_experts, b.n_devices);
    if (b.device_alpha > 0) values["device"] += device_balance_loss(r, pl, b.device_alpha, &dscores);
    if (b.comm_alpha > 0)
      values["comm"] += comm_balance_loss(r, pl, b.max_devices_per_token, b.comm_alpha, &dscores);
  }
}

#define DSLAB_MOE_INSTANTIATE(T)                                                                            \
  template void select_experts<T>(int*, const T*, bool, const MoeArgs&);                                   \
  template void route_logits<T>(Routing<T>&, const Tensor2<T>&, const Tensor1<T>&, const MoeArgs&);        \
  template void gate_logits_backward<T>(Tensor2<T>&, const Tensor2<T>&, const Routing<T>&, ScoreFunc);      \
  template void gate_forward<T>(Routing<T>&, const Tensor2<T>&, const Tensor2<T>&, const Tensor1<T>&,      \
                                const MoeArgs&);                                                           \
  template void gate_weights_backward<T>(Tensor2<T>&, const Tensor2<T>&, const Routing<T>&, const MoeArgs&); \
  template void gate_scores_backward<T>(Tensor2<T>&, Tensor2<T>&, const Tensor2<T>&, const Tensor2<T>&,    \
                                        const Tensor2<T>&, const Routing<T>&, const MoeArgs&,              \
                                        WeightGradQueue<T>*);                                              \
  template struct MoeParams<T>;                                                                            \
  template void moe_forward<T>(Tensor2<T>&, MoeCache<T>&, const Tensor2<T>&, const MoeParams<T>&,          \
                               const Tensor1<T>&, const MoeArgs&, const LinearPolicy<T>&);                 \
  template void moe_backward<T>(Tensor2<T>&, MoeParams<T>&, const Tensor2<T>&, const Tensor2<T>*,          \
                                const Tensor2<T>&, MoeCache<T>&, const MoeParams<T>&, const MoeArgs&,       \
                                const LinearPolicy<T>&);                                                   \
  template std::vector<double> expert_load<T>(const Routing<T>&);                                          \
  template std::vector<double> expert_fraction<T>(const Routing<T>&);                                      \
  template std::vector<double> expert_probability<T>(const Routing<T>&);                                   \
  template double expert_balance_loss<T>(const Routing<T>&, double, Tensor2<T>*);                          \
  template double device_balance_loss<T>(const Routing<T>&, const Placement&, double, Tensor2<T>*);        \
  template double comm_balance_loss<T>(const Routing<T>&, const Placement&, int, double, Tensor2<T>*);     \
  template double sequence_balance_loss<T>(const Routing<T>&, int, double, Tensor2<T>*);                   \
  template void update_bias<T>(Tensor1<T>&, const std::vector<double>&, double, BiasUpdate);       \
  template void balance_losses<T>(std::map<std::string, double>&, Tensor2<T>&, const Routing<T>&, int,   \
                                  const BalanceArgs&);

DSLAB_MOE_INSTANTIATE(float)
DSLAB_MOE_INSTANTIATE(double)

}  // namespace dslab
