// Replay of captured router logits through the auxiliary-loss-free
// controllers (review Sec. 2.2.3, Eq. (24)).
//
// logits [B, N, E]: B batches of N tokens, captured from a training run (one
// MoE layer's z = x W_g^T). Every controller starts from b = 0 and, batch by
// batch, routes the batch with the reference gate (s + b picks the top-K),
// records its loads, then updates b with the sign or proportional rule:
//   sign:          b_i += gamma * sign(mean load - load_i)
//   proportional:  b_i += gamma * (mean load - load_i) / mean load
// "none" routes with b = 0 throughout: it is the captured run's own balance.
//
// The logits are fixed, so the router does not react to the bias as it would
// in training: a replay measures what the controller alone does to the load
// of a given score distribution. The loss-based methods change the router's
// weights and cannot be replayed without training.
#pragma once

#include <string>
#include <vector>

#include "reference/moe.hpp"

namespace dslab::balance {

struct ReplayGate {
  int topk = 0;
  ScoreFunc score_func = ScoreFunc::Sigmoid;
  int groups = 1, limited_groups = 1;  // n_expert_groups, n_limited_groups
};

struct Controller {
  bool has_bias = false;  // false: "none"
  BiasUpdate rule = BiasUpdate::Sign;
  double gamma = 0;
  std::string name() const;  // "none", "sign gamma=0.001", ...
};

// Throws std::invalid_argument naming the option (--topk, --groups,
// --limited-groups, --gamma) and what is allowed for E experts.
void validate(const ReplayGate& g, int n_experts);
void validate(const Controller& c);

struct ReplayReport {
  std::vector<double> maxvio_batch;   // [B], each batch routed with the bias of the steps before it
  double maxvio_batch_mean = 0;
  double maxvio_global = 0;           // loads summed over the B replayed batches
  std::vector<double> load;           // [E] those summed loads (the controller's load during the replay)
  std::vector<double> load_final;     // [E] every batch routed again with the final bias
  double maxvio_global_final = 0;
  std::vector<double> bias;           // [E] the final bias
};

ReplayReport replay(const Tensor3<float>& logits, const ReplayGate& g, const Controller& c);

}  // namespace dslab::balance
