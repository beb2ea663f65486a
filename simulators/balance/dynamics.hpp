// Load-balancing dynamics of a learned router (review Sec. 2.2.3).
//
// A router (the reference gate, reference/moe.hpp: W_g [E, dim], softmax or
// sigmoid, top-K) is trained by SGD on synthetic tokens:
//   - token features x = mu_c + noise * N(0, I) come from C clusters whose
//     frequencies are Zipf-skewed, p(c) ~ (c + 1)^-zipf;
//   - a sequence of seq_len tokens has a topic cluster: a share seq_topic of
//     its tokens come from it, the rest from the global mixture;
//   - cluster c prefers `preferred` experts (quality 1), drawn without
//     replacement with expert e's popularity ~ (e + 1)^-popularity; every
//     other expert has quality q_{c,e} ~ U(quality_min, quality_max);
//   - the task loss of token t is 1 - sum_k w_{t,k} q_{c_t, e_{t,k}}, w the gate
//     values renormalised over the chosen experts: 0 when every chosen expert
//     is preferred.
// Left alone, the router follows the skewed frequencies and overloads the
// popular experts and those of frequent clusters. Balancing methods: none, the expert-level
// aux loss (Eq. (21)-(23)), V3's sequence-wise loss, V2's device-level loss,
// and the auxiliary-loss-free bias (Eq. (24)) with the sign or proportional update.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/moe.hpp"

namespace dslab::balance {

enum class Method { None, Aux, Sequence, Device, BiasSign, BiasProportional };
Method parse_method(const std::string& name);  // none, aux, sequence, device, bias-sign, bias-proportional
std::string method_name(Method m);

struct DynamicsConfig {
  int experts = 16, topk = 2, dim = 16, clusters = 32;
  double zipf = 1.0;
  int preferred = 4;
  double popularity = 1.0;
  double noise = 0.5;
  double seq_topic = 0.25;
  double quality_min = 0.4, quality_max = 0.8;
  ScoreFunc score_func = ScoreFunc::Sigmoid;  // as V3
  int steps = 2000;
  int batch = 1024;  // tokens per step, a multiple of seq_len
  int seq_len = 64;
  double lr = 0.1;   // SGD on W_g
  double init_std = 0.01;
  Method method = Method::None;
  double alpha = 0;  // aux, sequence, device
  double gamma = 0;  // bias-sign, bias-proportional
  int devices = 4;   // device: experts placed contiguously
  int val_tokens = 8192;
  int record_every = 10;
  uint64_t seed = 1;
};

// Throws std::invalid_argument naming the option and what is allowed.
void validate(const DynamicsConfig& c);

struct DynamicsReport {
  // Every record_every steps, on that step's training batch.
  std::vector<int> step;
  std::vector<double> maxvio_batch, task_loss, balance_loss;
  // Mean training MaxVio_batch over the last 20% of the steps.
  double maxvio_batch_tail = 0;
  // After training, on val_tokens held-out tokens routed in batches of `batch`:
  double maxvio_global = 0;       // loads summed over the whole validation set
  double maxvio_batch_val = 0;    // mean over the validation batches
  double val_task_loss = 0;
  double specialization = 0;      // share of assignments to the token's cluster's preferred experts
  std::vector<double> val_load_share;     // [E], sums to 1
  std::vector<double> device_load_share;  // [devices]
  std::vector<double> bias;               // [E] final bias (zeros without a bias method)
};

DynamicsReport run_dynamics(const DynamicsConfig& c);

}  // namespace dslab::balance
