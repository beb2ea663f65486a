// PPO's parts beyond the clipped surrogate, Sec. 2.5 of the review, Eq. (27)
// (DeepSeekMath Eq. (1)): per-token rewards with the KL penalty in them,
// Generalised Advantage Estimation over a learned value, and the clipped value
// loss. The surrogate itself is policy_loss (reference/grpo.hpp) with the
// advantages from gae().
//
// Arrays are packed token-major as in reference/grpo.hpp: sequence i holds
// tokens [offsets[i], offsets[i+1]); rewards, values, returns, advantages [N].
#pragma once

#include <cstddef>
#include <vector>

#include "reference/grpo.hpp"

namespace dslab {

// The [ppo] section of a run config; defaults are TRL's PPOConfig
// (trl/trainer/ppo_config.py: gamma 1, lam 0.95, cliprange_value 0.2, vf_coef 0.1;
// its trainer whitens the advantages).
struct PpoArgs {
  double gamma = 1.0;           // discount
  double lam = 0.95;            // GAE lambda
  double value_clip = 0.2;      // eps of the value clip (verl cliprange_value); 0: no clip
  double value_coef = 0.1;      // weight of the value loss (TRL vf_coef)
  bool whiten_advantages = true;
  // Throws ArgsError naming the ppo.* keys.
  void validate() const;
};

// Token rewards of outcome supervision: reward[i] on the last token of sequence i,
// 0 elsewhere ("typically only the last token is assigned a reward", Sec. 2.5).
std::vector<double> outcome_token_rewards(const std::vector<size_t>& offsets, const std::vector<double>& rewards);

// KL in the reward (KlPlacement::Reward; DeepSeekMath Sec. 4.1: r_t = r_phi(q, o) -
// beta log(pi_theta / pi_ref) per token; verl apply_kl_penalty): token_rewards[t] -=
// beta k_t, with k_t = kl_estimate(logp_t, logp_t, ref_logp_t, kl) (logp: the rollout
// policy's, i.e. old_logp). kl is K1, K2 or K3. Returns the token mean of k_t.
double add_kl_penalty(std::vector<double>& token_rewards, const std::vector<double>& logp,
                      const std::vector<double>& ref_logp, double beta, KlEstimator kl);

// GAE(gamma, lambda) per sequence (Schulman et al. 2015), with V = 0 after its last token:
//   delta_t = r_t + gamma V_{t+1} - V_t,   A_t = delta_t + gamma lambda A_{t+1},
//   returns R_t = A_t + V_t (before any whitening, as verl compute_gae_advantage_return);
// then A is whitened over the batch when args.whiten_advantages.
struct Gae {
  std::vector<double> advantages, returns;
};
Gae gae(const std::vector<size_t>& offsets, const std::vector<double>& rewards, const std::vector<double>& values,
        const PpoArgs& args);

// (x - mean) / sqrt(var + 1e-8), var with Bessel's correction, over all of x (verl and
// TRL masked_whiten with shift_mean=True); needs at least two values.
void whiten(std::vector<double>& x);

// The clipped value loss (PPO2, as verl compute_value_loss and TRL's PPO trainer):
//   v~_t = clip(v_t, old_v_t - value_clip, old_v_t + value_clip)
//   loss = value_coef * 0.5 * agg_t max((v_t - R_t)^2, (v~_t - R_t)^2)
// agg as in reference/grpo.hpp (verl's default: token_mean). value_coef = 1 gives
// verl's vf_loss. dvalues [N] is overwritten with d loss / d v_t.
struct ValueLoss {
  double loss = 0;
  double clip_fraction = 0;  // share of tokens where the clipped error is the larger (verl vf_clipfrac)
};
ValueLoss value_loss(const std::vector<size_t>& offsets, const std::vector<double>& values,
                     const std::vector<double>& old_values, const std::vector<double>& returns,
                     const PpoArgs& args, std::vector<double>& dvalues,
                     Aggregation agg = Aggregation::TokenMean, int max_len = 0);

}  // namespace dslab
