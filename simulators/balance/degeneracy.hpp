// The f_i * P_i degeneracy of the expert-level balance loss (review Sec. 2.2.3).
//
// The review observes that with P uniform, L = alpha sum_i f_i P_i equals
// alpha for every distribution f, and concludes that the loss then "fails to
// push toward balanced utilization". This study separates two statements:
//   value:    at uniform P the loss cannot tell balanced f from skewed f
//             (its spread over all feasible f is zero) -- this holds;
//   gradient: f carries no gradient, so what trains the router is
//             dL/dz_{t,j} = (alpha/T) p_{t,j} (f_j - sum_i f_i p_{t,i}),
//             which at uniform p is (alpha/(T E)) (f_j - 1): exactly the
//             direction that lowers overloaded experts' logits. It vanishes
//             only when f is balanced, not when P is uniform.
// For a family of routing states (router logits z [T, E], softmax, top-K, no
// bias, no groups) it reports f, P, the loss, the value's sensitivity to f,
// and the analytic gradient checked against finite differences, its norm and
// its alignment with the balancing direction.
//
// Cost: the analytic path (routing, f, P, loss, gradient, closed form,
// alignment) is linear in T*E. The finite-difference check is exact (every
// coordinate, the loss recomputed over all T tokens for each) when T*E <=
// fd_samples; above that it checks fd_samples coordinates drawn at random, and
// for each recomputes only the perturbed token's routing (softmax and top-K of
// its row; no other token's f or P part changes), so V3's setting (E = 256,
// K = 8, T = 4096) runs in seconds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/tensor.hpp"

namespace dslab::balance {

struct DegeneracyConfig {
  int experts = 16;
  int topk = 2;
  int tokens = 64;
  double alpha = 1.0;
  uint64_t seed = 1;
  // Logit scales of the "uniform_p_skewed_f" states: p -> uniform as eps -> 0
  // while every token keeps picking experts 0..K-1.
  std::vector<double> epsilons = {1.0, 0.1, 0.01};
  // Coordinates of dL/dz checked by finite differences: all of them when
  // T*E <= fd_samples, else this many drawn at random (seeded).
  int fd_samples = 1024;
};

// Throws std::invalid_argument naming the option and what is allowed.
void validate(const DegeneracyConfig& c);

struct StateReport {
  std::string name, description;
  std::vector<double> load, f, P;  // [E]
  double max_vio = 0;
  double loss = 0;  // alpha sum_i f_i P_i
  // Value side: max minus min of alpha sum_i f_i P_i over every feasible f
  // (0 <= f_i <= E/K, sum_i f_i = E) at this P; and the norm of alpha (P - mean P),
  // the loss's gradient in f along that simplex. Both are 0 exactly when P is uniform.
  double value_spread_over_f = 0;
  double value_grad_f_norm = 0;
  // Gradient side, with respect to the logits z [T, E].
  double grad_norm = 0;            // ||dL/dz||_F
  // Errors below are relative to max(max |analytic|, alpha/(T E)).
  double grad_fd_error = 0;           // max |finite difference - analytic|
  double grad_closed_form_error = 0;  // max |(alpha/T) p (f - <f,p>) - analytic|
  double fd_step = 0;              // the finite-difference step used (below the selection margin)
  int fd_checked = 0;              // coordinates checked: T*E, or fd_samples when sampled
  bool alignment_defined = false;  // false when f is balanced (no balancing direction)
  double alignment = 0;            // cos(-dL/dz, d) with d_{t,j} = 1 - f_j
  std::vector<double> push;        // -sum_t dL/dz_{t,j} per expert: > 0 raises expert j
};

struct DegeneracyReport {
  DegeneracyConfig config;
  std::vector<StateReport> states;
};

DegeneracyReport run_degeneracy(const DegeneracyConfig& c);

}  // namespace dslab::balance
