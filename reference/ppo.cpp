#include "reference/ppo.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "reference/args_error.hpp"

namespace dslab {

namespace {

void check_tokens(const std::vector<size_t>& offsets, const std::vector<double>& x, const char* what) {
  if (offsets.empty() || offsets.front() != 0)
    throw std::invalid_argument(std::string(what) + ": offsets must start at 0 and hold S+1 entries");
  for (size_t i = 1; i < offsets.size(); ++i)
    if (offsets[i] < offsets[i - 1]) throw std::invalid_argument(std::string(what) + ": offsets must not decrease");
  if (x.size() != offsets.back())
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(x.size()) + " values for " +
                                std::to_string(offsets.back()) + " tokens");
}

}  // namespace

void PpoArgs::validate() const {
  const auto v = [](double x) { return value_text(x); };
  require(gamma >= 0 && gamma <= 1, {"ppo.gamma"}, "ppo.gamma = " + v(gamma) + " must be in [0, 1]");
  require(lam >= 0 && lam <= 1, {"ppo.lam"}, "ppo.lam = " + v(lam) + " must be in [0, 1]");
  require(value_clip >= 0 && std::isfinite(value_clip), {"ppo.value_clip"},
          "ppo.value_clip = " + v(value_clip) + " must be >= 0 and finite (0: no clip)");
  require(value_coef >= 0 && std::isfinite(value_coef), {"ppo.value_coef"},
          "ppo.value_coef = " + v(value_coef) + " must be >= 0 and finite");
}

std::vector<double> outcome_token_rewards(const std::vector<size_t>& offsets, const std::vector<double>& rewards) {
  if (offsets.empty() || rewards.size() + 1 != offsets.size())
    throw std::invalid_argument("outcome_token_rewards: " + std::to_string(rewards.size()) + " rewards for " +
                                std::to_string(offsets.empty() ? 0 : offsets.size() - 1) + " sequences");
  std::vector<double> out(offsets.back(), 0.0);
  for (size_t i = 0; i < rewards.size(); ++i)
    if (offsets[i + 1] > offsets[i]) out[offsets[i + 1] - 1] = rewards[i];
  return out;
}

double add_kl_penalty(std::vector<double>& token_rewards, const std::vector<double>& logp,
                      const std::vector<double>& ref_logp, double beta, KlEstimator kl) {
  if (kl != KlEstimator::K1 && kl != KlEstimator::K2 && kl != KlEstimator::K3)
    throw std::invalid_argument("add_kl_penalty: the KL in the reward is k1, k2 or k3, not \"" +
                                std::string(name_of(kl)) + "\"");
  if (logp.size() != token_rewards.size() || ref_logp.size() != token_rewards.size())
    throw std::invalid_argument("add_kl_penalty: logp, ref_logp and token_rewards must have the same length");
  double sum = 0;
  for (size_t t = 0; t < token_rewards.size(); ++t) {
    const double k = kl_estimate(logp[t], logp[t], ref_logp[t], kl).value;
    token_rewards[t] -= beta * k;
    sum += k;
  }
  return token_rewards.empty() ? 0.0 : sum / double(token_rewards.size());
}

void whiten(std::vector<double>& x) {
  const size_t n = x.size();
  if (n < 2) throw std::invalid_argument("whiten: needs at least two values, got " + std::to_string(n));
  double mean = 0;
  for (double xi : x) mean += xi;
  mean /= double(n);
  double var = 0;
  for (double xi : x) var += (xi - mean) * (xi - mean);
  var /= double(n - 1);
  const double scale = 1 / std::sqrt(var + 1e-8);
  for (double& xi : x) xi = (xi - mean) * scale;
}

Gae gae(const std::vector<size_t>& offsets, const std::vector<double>& rewards, const std::vector<double>& values,
        const PpoArgs& a) {
  check_tokens(offsets, rewards, "gae rewards");
  check_tokens(offsets, values, "gae values");
  Gae out;
  out.advantages.assign(rewards.size(), 0.0);
  out.returns.assign(rewards.size(), 0.0);
  for (size_t i = 0; i + 1 < offsets.size(); ++i) {
    double next_value = 0, next_adv = 0;
    for (size_t t = offsets[i + 1]; t-- > offsets[i];) {
      const double delta = rewards[t] + a.gamma * next_value - values[t];
      next_adv = delta + a.gamma * a.lam * next_adv;
      next_value = values[t];
      out.advantages[t] = next_adv;
      out.returns[t] = next_adv + values[t];
    }
  }
  if (a.whiten_advantages) whiten(out.advantages);
  return out;
}

ValueLoss value_loss(const std::vector<size_t>& offsets, const std::vector<double>& values,
                     const std::vector<double>& old_values, const std::vector<double>& returns, const PpoArgs& a,
                     std::vector<double>& dvalues, Aggregation agg, int max_len) {
  check_tokens(offsets, values, "value_loss values");
  check_tokens(offsets, old_values, "value_loss old_values");
  check_tokens(offsets, returns, "value_loss returns");
  const std::vector<double> w = aggregation_weights(offsets, agg, max_len);
  const size_t N = values.size();
  ValueLoss out;
  dvalues.assign(N, 0.0);
  size_t n_clipped = 0;
  for (size_t t = 0; t < N; ++t) {
    const double v = values[t];
    const double vc =
        a.value_clip > 0 ? std::clamp(v, old_values[t] - a.value_clip, old_values[t] + a.value_clip) : v;
    const double e1 = v - returns[t], e2 = vc - returns[t];
    // max(e1^2, e2^2): the clipped error is constant in v where it is the larger.
    double sq = e1 * e1, d = 2 * e1;
    if (e2 * e2 > e1 * e1) {
      sq = e2 * e2, d = 0;
      ++n_clipped;
    }
    out.loss += w[t] * a.value_coef * 0.5 * sq;
    dvalues[t] = w[t] * a.value_coef * 0.5 * d;
  }
  if (N > 0) out.clip_fraction = double(n_clipped) / double(N);
  return out;
}

}  // namespace dslab
