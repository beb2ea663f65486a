// The GRPO objective, Sec. 2.5 of the review, Eq. (28) (DeepSeekMath Eq. (3)),
// and the PPO clipped surrogate it shares with Eq. (27), as pure functions over
// per-token arrays. No model and no sampling here: the caller computes the
// log-probabilities of the sampled tokens with the transformer and passes them in.
//
// A batch holds S = P*G completions: P prompts, G = group_size completions each,
// a group being G consecutive sequences. Sequence i has n_i response tokens;
// every per-token array is packed token-major, sequence i at
// [offsets[i], offsets[i+1]) (CSR), N = offsets[S] tokens in all.
//
// The loss is the negated objective, L = -J, minimised by the optimiser:
//   rho_t  = exp(logp_t - old_logp_t)                        pi_theta / pi_old
//   pg_t   = max(-A_t rho_t, -A_t clip(rho_t, 1-eps_low, 1+eps_high))   Eq. (27), (28)
//            and, with dual clip c > 0 and A_t < 0, min(pg_t, -A_t c)   (Ye et al. 2020)
//   l_t    = pg_t + beta * k_t            (KL in the loss; k_t one of KlEstimator)
//   L      = sum_t w_t l_t                (w_t from Aggregation)
// Everything is in double, in a fixed order (sequence by sequence, token by
// token), so the same inputs give the same bits on any thread count.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "reference/enum_names.hpp"

namespace dslab {

// How the per-token losses l_t of a batch become one number: L = sum_t w_t l_t
// with, for token t of sequence i (S sequences, N tokens, L_max below):
//   SeqMeanTokenMean  w = 1 / (S n_i)   Eq. (28): 1/G sum_i 1/|o_i| sum_t. TRL
//                                        loss_type="grpo", verl "seq-mean-token-mean"
//   TokenMean         w = 1 / N          DAPO (arXiv 2503.14476) token-level loss; verl's
//                                        default "token-mean"; TRL "bnpo" (and "dapo" up to
//                                        its normaliser across processes)
//   SeqMeanTokenSum   w = 1 / S          verl "seq-mean-token-sum"
//   DrGrpoTrl         w = 1 / (S L_max)  Dr. GRPO (arXiv 2503.20783) as TRL
//                                        loss_type="dr_grpo": sum / (B * max_completion_length)
//   DrGrpoVerl        w = 1 / L_max      verl "seq-mean-token-sum-norm": sum / loss_mask.shape[-1]
// (TRL trl/trainer/grpo_trainer.py _compute_loss, options in grpo_config.py;
// verl verl/trainer/ppo/core_algos.py agg_loss.) L_max is GrpoArgs::max_response_length,
// or the longest n_i of the batch when that is 0. A sequence with n_i = 0 counts
// in S and adds nothing (TRL clamps its length to 1); N = 0 gives L = 0.
enum class Aggregation { SeqMeanTokenMean, TokenMean, SeqMeanTokenSum, DrGrpoTrl, DrGrpoVerl };
template <> struct EnumNames<Aggregation> {
  static constexpr std::array<std::string_view, 5> names = {
      "seq_mean_token_mean", "token_mean", "seq_mean_token_sum", "dr_grpo_trl", "dr_grpo_verl"};
};

// Per-token estimators of KL(pi_theta || pi_ref) (Schulman, "Approximating KL
// divergence", 2020), with r = pi_ref / pi_theta of the sampled token, so that
// E_{pi_theta}[k] = KL for k1 and k3:
//   K1       -log r = logp - ref_logp                       (verl "k1"/"kl")
//   K2       0.5 (log r)^2                                   (verl "k2"/"mse")
//   K3       r - 1 - log r >= 0          Eq. (28)'s D_KL as DeepSeekMath writes it (verl "k3"/"low_var_kl",
//                                        TRL's per_token_kl)
//   K3Ratio  rho * k3 with rho = pi_theta / pi_old differentiated (not detached): its
//            expected gradient is the gradient of KL (DeepSeek-V3.2's unbiased KL; TRL
//            use_bias_correction_kl, verl PR #2953); plain k3's expected gradient is not
//   Exact    sum_v p_v log(p_v / q_v) over the whole vocabulary from the two logit rows
//            (kl_exact); verl's "full" raises NotImplementedError. The caller passes the
//            values in PolicyBatch::kl_exact and gets back d L / d KL_t (PolicyLoss::dkl).
// verl clamps log r to [-20, 20] and k3 to [-10, 10]; these are unclamped.
enum class KlEstimator { K1, K2, K3, K3Ratio, Exact };
template <> struct EnumNames<KlEstimator> {
  static constexpr std::array<std::string_view, 5> names = {"k1", "k2", "k3", "k3_ratio", "exact"};
};

// Where beta * KL goes:
//   Loss    beta * k_t in each l_t (GRPO, Eq. (28)).
//   Reward  -beta * k_t added to token t's reward before the advantages (PPO as in
//           DeepSeekMath Sec. 4.1 and verl's use_kl_in_reward; add_kl_penalty in
//           reference/ppo.hpp), evaluated with logp = old_logp; policy_loss then has no
//           KL term (it still reports kl_mean).
enum class KlPlacement { Loss, Reward };
template <> struct EnumNames<KlPlacement> {
  static constexpr std::array<std::string_view, 2> names = {"loss", "reward"};
};

// Which rewards the std of the group advantages is taken over:
//   Group  the G rewards of the group (DeepSeekMath Sec. 4.1.2; TRL scale_rewards="group")
//   Batch  all S rewards of the batch (TRL scale_rewards="batch"; REINFORCE++'s batch
//          normalisation, arXiv 2501.03262). The mean subtracted stays the group's.
enum class AdvantageScope { Group, Batch };
template <> struct EnumNames<AdvantageScope> {
  static constexpr std::array<std::string_view, 2> names = {"group", "batch"};
};

// Outcome supervision, DeepSeekMath Sec. 4.1.2: A_i = (r_i - mean r) / (std r + std_eps).
struct AdvantageArgs {
  // std with Bessel's correction (divide by G-1), as torch.std in TRL, verl and
  // OpenRLHF; false: the population std (divide by G).
  bool std_bessel = true;
  // Added to the std: TRL 1e-4 (the default here), verl compute_grpo_outcome_advantage 1e-6.
  double std_eps = 1e-4;
  // A_i = r_i - mean r, no std (Dr. GRPO; TRL scale_rewards="none", verl
  // norm_adv_by_std_in_grpo=False).
  bool mean_only = false;
  AdvantageScope scope = AdvantageScope::Group;
  // Throws ArgsError naming "<section>.std_eps".
  void validate(const std::string& section = "grpo") const;
};

// What the advantages are computed from:
//   Outcome  one reward per completion (DeepSeekMath Sec. 4.1.2): group_advantages
//   Process  one reward per reasoning step (Sec. 4.1.3): process_advantages
enum class Supervision { Outcome, Process };
template <> struct EnumNames<Supervision> {
  static constexpr std::array<std::string_view, 2> names = {"outcome", "process"};
};

// The [grpo] section of a run config.
struct GrpoArgs {
  Supervision supervision = Supervision::Outcome;
  Aggregation aggregation = Aggregation::SeqMeanTokenMean;
  KlEstimator kl_estimator = KlEstimator::K3;
  KlPlacement kl_placement = KlPlacement::Loss;
  // KL weight: DeepSeekMath Sec. 4.2 trains with beta = 0.04 (TRL's default was 0.04
  // until it became 0, i.e. no reference model).
  double beta = 0.04;
  double clip_eps = 0.2;       // Eq. (27), (28)
  double clip_eps_low = 0;     // 0: clip_eps. Clip-higher (DAPO): 0.2 / 0.28
  double clip_eps_high = 0;    // 0: clip_eps
  double clip_c = 0;           // dual clip (Ye et al. 2020, verl clip_ratio_c = 3), A < 0 only; 0: off
  int max_response_length = 0; // L_max of dr_grpo_trl / dr_grpo_verl; 0: the longest sequence
  AdvantageArgs advantages;    // config keys grpo.std_bessel, grpo.std_eps, grpo.mean_only, grpo.scope

  double eps_low() const { return clip_eps_low > 0 ? clip_eps_low : clip_eps; }
  double eps_high() const { return clip_eps_high > 0 ? clip_eps_high : clip_eps; }
  // Throws ArgsError (reference/args_error.hpp) naming the grpo.* keys.
  void validate() const;
};

// One batch of completions: offsets [S+1]; logp, old_logp, ref_logp, advantages [N]:
// log pi_theta, log pi_old, log pi_ref of the sampled token and its advantage A_t.
// kl_exact [N]: KL(pi_theta || pi_ref) at each position (kl_exact below), read only
// for KlEstimator::Exact with KlPlacement::Loss, empty otherwise.
struct PolicyBatch {
  std::vector<size_t> offsets;
  std::vector<double> logp, old_logp, ref_logp;
  std::vector<double> advantages;
  std::vector<double> kl_exact;
  int group_size = 1;

  size_t n_sequences() const { return offsets.empty() ? 0 : offsets.size() - 1; }
  size_t n_tokens() const { return offsets.empty() ? 0 : offsets.back(); }
  // Throws std::invalid_argument for inconsistent sizes or offsets.
  void check(KlEstimator kl, KlPlacement placement) const;
};

// What policy_loss returns. Fractions are shares of the N tokens (as TRL and verl log them).
struct PolicyLoss {
  double loss = 0;          // L = pg_loss + kl_loss
  double pg_loss = 0;       // sum_t w_t pg_t
  double kl_loss = 0;       // sum_t w_t beta k_t (0 for KlPlacement::Reward)
  double clip_fraction = 0;       // tokens where the clipped term is the active one:
  double clip_low_fraction = 0;   //   rho < 1 - eps_low and A < 0
  double clip_high_fraction = 0;  //   rho > 1 + eps_high and A > 0
  double dual_clip_fraction = 0;  // A < 0 and the dual clip -A c is active (verl pg_clipfrac_lower)
  double kl_mean = 0;       // token mean of k_t (the estimator's value, before beta)
  double ratio_mean = 0, ratio_max = 0;
  // [N] for KlEstimator::Exact in the loss: d L / d KL_t = beta w_t. The gradient of L
  // with respect to the policy's logits at position t is then
  //   dlogits_t = dlogp_t * d logp_t / d logits_t + dkl[t] * (d KL_t / d logits_t from kl_exact),
  // with d logp_t / d logits_t = onehot(token) - softmax(logits_t). Empty otherwise.
  std::vector<double> dkl;
};

// L and its gradient: dlogp [N] is overwritten with d L / d logp_t (old_logp, ref_logp,
// advantages, kl_exact are constants).
PolicyLoss policy_loss(const PolicyBatch& batch, const GrpoArgs& args, std::vector<double>& dlogp);

// The aggregation weights w_t [N] of the table above; max_len as GrpoArgs::max_response_length.
std::vector<double> aggregation_weights(const std::vector<size_t>& offsets, Aggregation agg,
                                        int max_len = 0);

// One token's KL estimate k and d k / d logp (old_logp used by K3Ratio only).
// Exact is not a per-token estimate: use kl_exact.
struct KlTerm {
  double value = 0, dlogp = 0;
};
KlTerm kl_estimate(double logp, double old_logp, double ref_logp, KlEstimator kl);

// KL(p || q) = sum_v p_v (log p_v - log q_v), p = softmax(logits_theta), q = softmax(logits_ref),
// over one position's V logits. When dlogits is not null it is overwritten with
// d KL / d logits_theta: p_j ((log p_j - log q_j) - KL).
template <class T>
double kl_exact(const T* logits_theta, const T* logits_ref, int V, double* dlogits = nullptr);

// Outcome supervision (DeepSeekMath Sec. 4.1.2): one advantage per sequence from its
// reward, rewards [S], S a multiple of group_size >= 1. A group whose rewards are all
// equal gets exactly 0 (no signal; the rounding of its mean would otherwise be divided
// by std_eps; a group of one is such a group). Throws std::invalid_argument for bad sizes.
std::vector<double> group_advantages(const std::vector<double>& rewards, int group_size,
                                     const AdvantageArgs& args);

// Every token of sequence i gets seq_values[i]: [S] -> [N].
std::vector<double> broadcast_to_tokens(const std::vector<size_t>& offsets,
                                        const std::vector<double>& seq_values);

// Process supervision (DeepSeekMath Sec. 4.1.3). Sequence i has the steps
// [step_offsets[i], step_offsets[i+1]); step j ends at token end_token[j] (its
// index within the sequence, 0-based, inclusive) with reward reward[j].
struct StepRewards {
  std::vector<size_t> step_offsets;  // [S+1]
  std::vector<size_t> end_token;     // [steps]
  std::vector<double> reward;        // [steps]
};
// r~_j = (r_j - mean) / (std + std_eps) with mean and std over all the steps of
// sequence i's group (std over the batch's steps for scope Batch; no std for
// mean_only), and A_t = sum of r~_j over the steps j of t's sequence with
// end_token[j] >= t. Tokens after the last step get 0. Returns [N] for the token offsets.
std::vector<double> process_advantages(const StepRewards& steps, const std::vector<size_t>& offsets,
                                       int group_size, const AdvantageArgs& args);

}  // namespace dslab
