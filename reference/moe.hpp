// DeepSeekMoE (review Sec. 2.2): shared experts plus fine-grained routed
// SwiGLU experts, DeepSeek's gate, and every load-balancing method of
// Sec. 2.2.3 (Eq. (21)-(24)) with its metrics.
//
// Shapes, with N tokens (rows of x), E = n_routed_experts, K = n_activated_experts:
//   x, y            [N, dim]
//   gate.weight     [E, dim]       logits z = x W_g^T         [N, E]
//   scores s        [N, E]         softmax(z) or sigmoid(z)   (Eq. (20))
//   bias b          [E]            used only to pick the top-K (Eq. (24)); empty = none
//   indices         [N, K]         the chosen experts, best first
//   weights g       [N, K]         s at the chosen experts (renormalised for sigmoid)
//                                  times route_scale; 0 where capacity dropped the token
//   experts[e]      SwiGLU of moe_inter_dim (reference/ffn.hpp)
//   shared          one SwiGLU of n_shared_experts * moe_inter_dim: the sum of
//                   n_shared_experts experts of moe_inter_dim is exactly this
//                   (DeepSeek's model.py builds it the same way)
//
//   y_t = shared(x_t) + sum_k g_{t,k} expert_{indices[t,k]}(x_t)     (Eq. (18)-(19))
// The residual u_t of Eq. (18) is added by the transformer block, not here.
//
// Gradients flow through the gate values g (hence through s, W_g and x), never
// through the selection, which is piecewise constant.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "reference/enum_names.hpp"
#include "reference/ffn.hpp"
#include "reference/linear.hpp"
#include "reference/tensor.hpp"

namespace dslab {

enum class ScoreFunc { Softmax, Sigmoid };
template <> struct EnumNames<ScoreFunc> {
  static constexpr std::array<std::string_view, 2> names = {"softmax", "sigmoid"};
};

// DeepSeek's config keys (inference/model.py ModelArgs), plus the V2 capacity factor.
struct MoeArgs {
  int dim = 0;
  int moe_inter_dim = 0;
  int n_routed_experts = 0;
  int n_shared_experts = 0;
  int n_activated_experts = 0;
  int n_expert_groups = 1;
  int n_limited_groups = 1;
  double route_scale = 1.0;
  ScoreFunc score_func = ScoreFunc::Softmax;
  // Each expert takes at most ceil(capacity_factor * N * K / E) tokens, those
  // with the highest scores (ties: earlier token); the others are dropped for
  // that expert. 0 keeps every token.
  double capacity_factor = 0.0;
};

// Throws ArgsError (reference/args_error.hpp) for the first broken rule, naming
// the run-config keys, which sit in [model] (model.n_expert_groups, ...), and
// what is allowed.
void validate(const MoeArgs& a);
ScoreFunc parse_score_func(const std::string& name);  // a name of EnumNames<ScoreFunc>

// ---------------------------------------------------------------------------
// Gate
// ---------------------------------------------------------------------------

template <class T> struct Routing {
  int n_tokens = 0, n_experts = 0, topk = 0;
  Tensor2<T> scores;                // s [N, E]
  std::vector<int> indices;         // [N, K]
  Tensor2<T> weights;               // g [N, K]
  std::vector<uint8_t> kept;        // [N, K]; 0 where capacity dropped the token
  int index(int t, int k) const { return indices[size_t(t) * topk + k]; }
};

// The official gate's selection for one token: `biased` [E] are s + b. With
// groups, a group's score is its max (no bias) or the sum of its two best
// biased scores (with bias); only the n_limited_groups best groups stay.
// Writes the top-K experts, best first (ties: lower index).
template <class T>
void select_experts(int* chosen, const T* biased, bool has_bias, const MoeArgs& a);

// logits [N, E] -> scores -> selection -> gate values; capacity dropping if asked.
// `logits` may be r.scores itself (it is turned into the scores in place).
template <class T>
void route_logits(Routing<T>& r, const Tensor2<T>& logits, const Tensor1<T>& bias, const MoeArgs& a);

// z = x W_g^T, then route_logits.
template <class T>
void gate_forward(Routing<T>& r, const Tensor2<T>& x, const Tensor2<T>& gate_weight,
                  const Tensor1<T>& bias, const MoeArgs& a);

// dscores [N, E] += d loss / d s through the gate values g, given dweights [N, K].
template <class T>
void gate_weights_backward(Tensor2<T>& dscores, const Tensor2<T>& dweights, const Routing<T>& r,
                           const MoeArgs& a);

// dlogits [N, E] (overwritten) from d loss / d s through softmax or sigmoid.
template <class T>
void gate_logits_backward(Tensor2<T>& dlogits, const Tensor2<T>& dscores, const Routing<T>& r, ScoreFunc f);

// From d loss / d s: dlogits, then dx (accumulated) and dgate_weight (accumulated).
template <class T>
void gate_scores_backward(Tensor2<T>& dx, Tensor2<T>& dgate_weight, const Tensor2<T>& dscores,
                          const Tensor2<T>& x, const Tensor2<T>& gate_weight, const Routing<T>& r,
                          const MoeArgs& a, WeightGradQueue<T>* defer = nullptr);

// ---------------------------------------------------------------------------
// The MoE layer
// ---------------------------------------------------------------------------

template <class T> struct MoeParams {
  Tensor2<T> gate;                  // gate.weight [E, dim]
  std::vector<FfnWeights<T>> experts;
  FfnWeights<T> shared;             // empty tensors when n_shared_experts = 0
  Tensor1<T> bias;                  // b [E] of Eq. (24): selection only, not trained, not in refs();
                                    // empty: no bias (the model sets it when balance.bias_update != None)
  MoeParams() = default;
  explicit MoeParams(const MoeArgs& a);
  std::vector<ParamRef<T>> refs(const std::string& prefix = "");  // "gate.weight", "experts.3.w1.weight", ...
  void init(uint64_t seed, double std);                           // N(0, std^2) for every weight
  void zero();
};

template <class T> struct MoeCache {
  Routing<T> routing;
  std::vector<std::vector<int>> slots;   // per expert: the slots t*K + k it serves, ascending
  std::vector<Tensor2<T>> expert_in;     // per expert: its tokens' rows of x
  std::vector<FfnCache<T>> expert_cache;
  Tensor2<T> expert_out;                 // [N*K, dim], row t*K + k (0 where dropped)
  FfnCache<T> shared_cache;
  // Temporaries of forward and backward, kept between calls (fresh buffers
  // would cost a page fault per 4 KiB on every call); they hold nothing.
  Tensor2<T> out, dweights, dx_slot, dout, dx_e, dscores;
  FfnScratch<T> ffn;
};

template <class T>
void moe_forward(Tensor2<T>& y, MoeCache<T>& cache, const Tensor2<T>& x, const MoeParams<T>& p,
                 const Tensor1<T>& bias, const MoeArgs& a, const LinearPolicy<T>& linears = {});

// dx is overwritten; grads accumulate into dp. dscores_extra [N, E] (or null)
// is d loss / d s from the balance losses below. The cache's temporaries are reused.
template <class T>
void moe_backward(Tensor2<T>& dx, MoeParams<T>& dp, const Tensor2<T>& dy,
                  const Tensor2<T>* dscores_extra, const Tensor2<T>& x, MoeCache<T>& cache,
                  const MoeParams<T>& p, const MoeArgs& a, const LinearPolicy<T>& linears = {});

// ---------------------------------------------------------------------------
// Load balancing (Sec. 2.2.3). f counts the selection (before capacity
// dropping) and carries no gradient; P is a mean of normalised scores
//   s'_{i,t} = s_{i,t} / sum_j s_{j,t}   (= s for softmax; V3 Eq. (19) for sigmoid),
// so every loss below equals its alpha when the load is perfectly balanced.
// Each loss returns its value and, when dscores is given, adds its gradient
// d loss / d s to it.
// ---------------------------------------------------------------------------

// Expert-to-device assignment for the device and communication losses.
struct Placement {
  int n_devices = 1;
  std::vector<int> device_of_expert;  // [E]
  // n_experts / n_devices consecutive experts per device.
  static Placement contiguous(int n_experts, int n_devices);
  void validate(int n_experts) const;  // throws std::invalid_argument
};

// load_i = tokens that selected expert i (Eq. (22) before scaling).
template <class T> std::vector<double> expert_load(const Routing<T>& r);
// f_i = E/(K T) load_i  (Eq. (22))
template <class T> std::vector<double> expert_fraction(const Routing<T>& r);
// P_i = (1/T) sum_t s'_{i,t}  (Eq. (23))
template <class T> std::vector<double> expert_probability(const Routing<T>& r);

// alpha sum_i f_i P_i  (Eq. (21))
template <class T> double expert_balance_loss(const Routing<T>& r, double alpha, Tensor2<T>* dscores);

// V2 device-level: alpha sum_d f'_d P'_d, f'_d = mean of f over the device's
// experts, P'_d = sum of P over them.
template <class T>
double device_balance_loss(const Routing<T>& r, const Placement& pl, double alpha, Tensor2<T>* dscores);

// V2 communication: alpha sum_d f''_d P''_d, f''_d = D/(M T) (tokens sent to
// device d), P''_d = sum of P over its experts; M = devices each token may reach.
template <class T>
double comm_balance_loss(const Routing<T>& r, const Placement& pl, int max_devices_per_token,
                         double alpha, Tensor2<T>* dscores);

// V3 sequence-wise: Eq. (21)-(23) within each sequence of seq_len consecutive
// tokens, averaged over the sequences.
template <class T>
double sequence_balance_loss(const Routing<T>& r, int seq_len, double alpha, Tensor2<T>* dscores);

// MaxVio = (max_i load_i - mean load) / mean load.
double max_violation(const std::vector<double>& load);
// Tokens each device serves (sum of its experts' loads).
std::vector<double> device_load(const std::vector<double>& load, const Placement& pl);

// Auxiliary-loss-free balancing (Eq. (24)): after each step,
//   sign:          b_i += gamma * sign(mean load - load_i)
//   proportional:  b_i += gamma * (mean load - load_i) / mean load
// None: no bias.
enum class BiasUpdate { None, Sign, Proportional };
template <> struct EnumNames<BiasUpdate> {
  static constexpr std::array<std::string_view, 3> names = {"none", "sign", "proportional"};
};

// How a model balances its MoE layers in training; the terms combine.
struct BalanceArgs {
  double aux_alpha = 0;              // expert-level loss, Eq. (21)-(23)
  double seq_aux_alpha = 0;          // V3's sequence-wise loss
  double device_alpha = 0;           // V2's device-level loss
  double comm_alpha = 0;             // V2's communication loss
  int n_devices = 1;                 // experts placed contiguously on this many devices
  int max_devices_per_token = 1;     // M of the communication loss
  BiasUpdate bias_update = BiasUpdate::None;  // Eq. (24)
  double bias_gamma = 1e-3;          // gamma of the bias update
  bool has_loss() const { return aux_alpha > 0 || seq_aux_alpha > 0 || device_alpha > 0 || comm_alpha > 0; }
  // The rules among these fields (balance.* keys); throws ArgsError. How they
  // relate to the model's experts is ModelArgs::validate's.
  void validate() const;
};

// Every balance loss `b` switches on, for one MoE layer whose tokens form
// sequences of seq_len: adds each value into `values` under "aux", "seq_aux",
// "device" or "comm", and writes their summed d loss / d s into dscores [N, E].
template <class T>
void balance_losses(std::map<std::string, double>& values, Tensor2<T>& dscores, const Routing<T>& r,
                    int seq_len, const BalanceArgs& b);

BiasUpdate parse_bias_update(const std::string& name);  // a rule: any name but None's
template <class T>
void update_bias(Tensor1<T>& bias, const std::vector<double>& load, double gamma, BiasUpdate rule);

}  // namespace dslab
