#include "reference/grpo.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "reference/args_error.hpp"

namespace dslab {

namespace {

std::string v(double x) { return value_text(x); }

void check_offsets(const std::vector<size_t>& offsets, const char* what) {
  if (offsets.empty() || offsets.front() != 0)
    throw std::invalid_argument(std::string(what) + ": offsets must start at 0 and hold S+1 entries");
  for (size_t i = 1; i < offsets.size(); ++i)
    if (offsets[i] < offsets[i - 1])
      throw std::invalid_argument(std::string(what) + ": offsets must not decrease (offsets[" +
                                  std::to_string(i) + "] = " + std::to_string(offsets[i]) + " < " +
                                  std::to_string(offsets[i - 1]) + ")");
}

// Mean of x[0..n) in index order.
double mean_of(const double* x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += x[i];
  return n ? s / double(n) : 0.0;
}

// Standard deviation about `mean` (Bessel: n-1), 0 for fewer than two values.
double std_of(const double* x, size_t n, double mean, bool bessel) {
  if (n < 2) return 0;
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  return std::sqrt(s / double(bessel ? n - 1 : n));
}

bool all_equal(const double* x, size_t n) {
  for (size_t i = 1; i < n; ++i)
    if (x[i] != x[0]) return false;
  return true;
}

// (x - mean) / (std + eps), or x - mean for mean_only; all-equal sets give 0.
// x[0..n) is one set the mean is taken over; `std` its (or the batch's) std.
void normalise(double* out, const double* x, size_t n, double std, const AdvantageArgs& a) {
  if (all_equal(x, n)) {
    std::fill(out, out + n, 0.0);
    return;
  }
  const double mean = mean_of(x, n);
  for (size_t i = 0; i < n; ++i)
    out[i] = a.mean_only ? x[i] - mean : (x[i] - mean) / (std + a.std_eps);
}

}  // namespace

void AdvantageArgs::validate(const std::string& section) const {
  const std::string key = section + ".std_eps";
  require(std_eps >= 0 && std::isfinite(std_eps), {key},
          key + " = " + v(std_eps) + " must be >= 0 and finite (TRL 1e-4, verl 1e-6)");
}

void GrpoArgs::validate() const {
  require(beta >= 0 && std::isfinite(beta), {"grpo.beta"},
          "grpo.beta = " + v(beta) + " must be >= 0 and finite (0: no KL term)");
  require(clip_eps > 0 && clip_eps < 1, {"grpo.clip_eps"},
          "grpo.clip_eps = " + v(clip_eps) + " must be in (0, 1)");
  require(clip_eps_low >= 0 && clip_eps_low < 1, {"grpo.clip_eps_low"},
          "grpo.clip_eps_low = " + v(clip_eps_low) + " must be in [0, 1) (0: grpo.clip_eps)");
  require(clip_eps_high >= 0 && std::isfinite(clip_eps_high), {"grpo.clip_eps_high"},
          "grpo.clip_eps_high = " + v(clip_eps_high) + " must be >= 0 and finite (0: grpo.clip_eps)");
  require(clip_c == 0 || (clip_c > 1 && std::isfinite(clip_c)), {"grpo.clip_c"},
          "grpo.clip_c = " + v(clip_c) + " must be 0 (no dual clip) or > 1 (verl uses 3)");
  require(max_response_length >= 0, {"grpo.max_response_length"},
          "grpo.max_response_length = " + std::to_string(max_response_length) +
              " must be >= 0 (0: the longest response of the batch)");
  require(kl_placement == KlPlacement::Loss || kl_estimator == KlEstimator::K1 ||
              kl_estimator == KlEstimator::K2 || kl_estimator == KlEstimator::K3,
          {"grpo.kl_estimator", "grpo.kl_placement"},
          "grpo.kl_estimator = \"" + std::string(name_of(kl_estimator)) +
              "\" is for grpo.kl_placement = \"loss\"; in the reward use \"k1\", \"k2\" or \"k3\"");
  advantages.validate("grpo");
}

void PolicyBatch::check(KlEstimator kl, KlPlacement placement) const {
  check_offsets(offsets, "policy batch");
  const size_t N = n_tokens(), S = n_sequences();
  const auto same = [&](const std::vector<double>& x, const char* name) {
    if (x.size() != N)
      throw std::invalid_argument(std::string("policy batch: ") + name + " has " + std::to_string(x.size()) +
                                  " values for " + std::to_string(N) + " tokens");
  };
  same(logp, "logp");
  same(old_logp, "old_logp");
  same(ref_logp, "ref_logp");
  same(advantages, "advantages");
  if (kl == KlEstimator::Exact && placement == KlPlacement::Loss) same(kl_exact, "kl_exact");
  if (group_size < 1 || S % size_t(group_size) != 0)
    throw std::invalid_argument("policy batch: " + std::to_string(S) +
                                " sequences are not whole groups of group_size = " + std::to_string(group_size));
}

std::vector<double> aggregation_weights(const std::vector<size_t>& offsets, Aggregation agg, int max_len) {
  check_offsets(offsets, "aggregation_weights");
  const size_t S = offsets.size() - 1, N = offsets.back();
  size_t longest = 0;
  for (size_t i = 0; i < S; ++i) longest = std::max(longest, offsets[i + 1] - offsets[i]);
  if (max_len > 0 && size_t(max_len) < longest)
    throw std::invalid_argument("aggregation_weights: max_response_length = " + std::to_string(max_len) +
                                " is shorter than a response of " + std::to_string(longest) + " tokens");
  const double L = max_len > 0 ? double(max_len) : double(longest);
  std::vector<double> w(N, 0.0);
  for (size_t i = 0; i < S; ++i) {
    const size_t n = offsets[i + 1] - offsets[i];
    double wi = 0;
    switch (agg) {
      case Aggregation::SeqMeanTokenMean: wi = 1.0 / (double(S) * double(n)); break;
      case Aggregation::TokenMean: wi = 1.0 / double(N); break;
      case Aggregation::SeqMeanTokenSum: wi = 1.0 / double(S); break;
      case Aggregation::DrGrpoTrl: wi = 1.0 / (double(S) * L); break;
      case Aggregation::DrGrpoVerl: wi = 1.0 / L; break;
    }
    for (size_t t = offsets[i]; t < offsets[i + 1]; ++t) w[t] = wi;
  }
  return w;
}

KlTerm kl_estimate(double logp, double old_logp, double ref_logp, KlEstimator kl) {
  const double log_r = ref_logp - logp;  // log pi_ref / pi_theta
  switch (kl) {
    case KlEstimator::K1: return {-log_r, 1.0};
    case KlEstimator::K2: return {0.5 * log_r * log_r, -log_r};
    case KlEstimator::K3: {
      const double r = std::exp(log_r);
      return {r - 1 - log_r, 1 - r};  // d(r - 1 - log r)/dlogp = -r + 1
    }
    case KlEstimator::K3Ratio: {
      const double r = std::exp(log_r), rho = std::exp(logp - old_logp);
      const double k3 = r - 1 - log_r;
      return {rho * k3, rho * k3 + rho * (1 - r)};
    }
    case KlEstimator::Exact: break;
  }
  throw std::invalid_argument("kl_estimate: \"exact\" needs both logit rows: use kl_exact");
}

template <class T> double kl_exact(const T* logits_theta, const T* logits_ref, int V, double* dlogits) {
  if (V <= 0) throw std::invalid_argument("kl_exact: V = " + std::to_string(V) + " must be > 0");
  double max_p = double(logits_theta[0]), max_q = double(logits_ref[0]);
  for (int j = 1; j < V; ++j) {
    max_p = std::max(max_p, double(logits_theta[j]));
    max_q = std::max(max_q, double(logits_ref[j]));
  }
  double sum_p = 0, sum_q = 0;
  for (int j = 0; j < V; ++j) {
    sum_p += std::exp(double(logits_theta[j]) - max_p);
    sum_q += std::exp(double(logits_ref[j]) - max_q);
  }
  const double lse_p = max_p + std::log(sum_p), lse_q = max_q + std::log(sum_q);
  double kl = 0;
  for (int j = 0; j < V; ++j) {
    const double lp = double(logits_theta[j]) - lse_p, lq = double(logits_ref[j]) - lse_q;
    kl += std::exp(lp) * (lp - lq);
  }
  if (dlogits)
    for (int j = 0; j < V; ++j) {
      const double lp = double(logits_theta[j]) - lse_p, lq = double(logits_ref[j]) - lse_q;
      dlogits[j] = std::exp(lp) * ((lp - lq) - kl);
    }
  return kl;
}

template double kl_exact<float>(const float*, const float*, int, double*);
template double kl_exact<double>(const double*, const double*, int, double*);

PolicyLoss policy_loss(const PolicyBatch& b, const GrpoArgs& a, std::vector<double>& dlogp) {
  b.check(a.kl_estimator, a.kl_placement);
  const size_t N = b.n_tokens();
  const std::vector<double> w = aggregation_weights(b.offsets, a.aggregation, a.max_response_length);
  const double lo = 1 - a.eps_low(), hi = 1 + a.eps_high();
  const bool kl_in_loss = a.kl_placement == KlPlacement::Loss && a.beta != 0;
  const bool exact = a.kl_estimator == KlEstimator::Exact;

  PolicyLoss out;
  dlogp.assign(N, 0.0);
  if (exact && a.kl_placement == KlPlacement::Loss) out.dkl.assign(N, 0.0);
  size_t n_low = 0, n_high = 0, n_dual = 0;
  double kl_sum = 0, ratio_sum = 0;
  for (size_t t = 0; t < N; ++t) {
    const double A = b.advantages[t];
    const double rho = std::exp(b.logp[t] - b.old_logp[t]);
    ratio_sum += rho;
    out.ratio_max = t == 0 ? rho : std::max(out.ratio_max, rho);

    // pg = max(-A rho, -A clip(rho)): the clipped term is active (and constant)
    // where it is strictly larger: rho > hi with A > 0, rho < lo with A < 0.
    double pg = -A * rho, dpg = -A * rho;
    if (A > 0 && rho > hi) {
      pg = -A * hi, dpg = 0;
      ++n_high;
    } else if (A < 0 && rho < lo) {
      pg = -A * lo, dpg = 0;
      ++n_low;
    }
    // Dual clip (A < 0 only): min(pg, -A c).
    if (a.clip_c > 0 && A < 0 && pg > -A * a.clip_c) {
      pg = -A * a.clip_c, dpg = 0;
      ++n_dual;
    }
    out.pg_loss += w[t] * pg;
    dlogp[t] = w[t] * dpg;

    if (exact) {
      if (a.kl_placement == KlPlacement::Loss) {
        kl_sum += b.kl_exact[t];
        if (kl_in_loss) {
          out.kl_loss += w[t] * a.beta * b.kl_exact[t];
          out.dkl[t] = w[t] * a.beta;
        }
      }
    } else {
      const KlTerm k = kl_estimate(b.logp[t], b.old_logp[t], b.ref_logp[t], a.kl_estimator);
      kl_sum += k.value;
      if (kl_in_loss) {
        out.kl_loss += w[t] * a.beta * k.value;
        dlogp[t] += w[t] * a.beta * k.dlogp;
      }
    }
  }
  out.loss = out.pg_loss + out.kl_loss;
  if (N > 0) {
    const double n = double(N);
    out.clip_low_fraction = double(n_low) / n;
    out.clip_high_fraction = double(n_high) / n;
    out.clip_fraction = double(n_low + n_high) / n;
    out.dual_clip_fraction = double(n_dual) / n;
    out.kl_mean = kl_sum / n;
    out.ratio_mean = ratio_sum / n;
  }
  return out;
}

std::vector<double> group_advantages(const std::vector<double>& rewards, int group_size, const AdvantageArgs& a) {
  const size_t S = rewards.size();
  if (group_size < 1 || S % size_t(group_size) != 0)
    throw std::invalid_argument("group_advantages: " + std::to_string(S) +
                                " rewards are not whole groups of group_size = " + std::to_string(group_size));
  const size_t G = size_t(group_size);
  const double batch_std =
      a.scope == AdvantageScope::Batch ? std_of(rewards.data(), S, mean_of(rewards.data(), S), a.std_bessel) : 0;
  std::vector<double> adv(S);
  for (size_t g = 0; g < S; g += G) {
    const double* r = rewards.data() + g;
    const double std =
        a.scope == AdvantageScope::Batch ? batch_std : std_of(r, G, mean_of(r, G), a.std_bessel);
    normalise(adv.data() + g, r, G, std, a);
  }
  return adv;
}

std::vector<double> broadcast_to_tokens(const std::vector<size_t>& offsets, const std::vector<double>& seq_values) {
  check_offsets(offsets, "broadcast_to_tokens");
  if (seq_values.size() + 1 != offsets.size())
    throw std::invalid_argument("broadcast_to_tokens: " + std::to_string(seq_values.size()) + " values for " +
                                std::to_string(offsets.size() - 1) + " sequences");
  std::vector<double> out(offsets.back());
  for (size_t i = 0; i < seq_values.size(); ++i)
    std::fill(out.begin() + offsets[i], out.begin() + offsets[i + 1], seq_values[i]);
  return out;
}

std::vector<double> process_advantages(const StepRewards& st, const std::vector<size_t>& offsets, int group_size,
                                       const AdvantageArgs& a) {
  check_offsets(offsets, "process_advantages");
  check_offsets(st.step_offsets, "process_advantages steps");
  const size_t S = offsets.size() - 1, n_steps = st.step_offsets.back();
  if (st.step_offsets.size() != offsets.size())
    throw std::invalid_argument("process_advantages: step offsets for " + std::to_string(st.step_offsets.size() - 1) +
                                " sequences, token offsets for " + std::to_string(S));
  if (st.end_token.size() != n_steps || st.reward.size() != n_steps)
    throw std::invalid_argument("process_advantages: end_token and reward must hold one value per step (" +
                                std::to_string(n_steps) + ")");
  if (group_size < 1 || S % size_t(group_size) != 0)
    throw std::invalid_argument("process_advantages: " + std::to_string(S) +
                                " sequences are not whole groups of group_size = " + std::to_string(group_size));
  for (size_t i = 0; i < S; ++i)
    for (size_t j = st.step_offsets[i]; j < st.step_offsets[i + 1]; ++j)
      if (st.end_token[j] >= offsets[i + 1] - offsets[i])
        throw std::invalid_argument("process_advantages: step " + std::to_string(j) + " ends at token " +
                                    std::to_string(st.end_token[j]) + " of a sequence of " +
                                    std::to_string(offsets[i + 1] - offsets[i]) + " tokens");

  // The steps of a group are contiguous: [step_offsets[g], step_offsets[g+G]).
  const size_t G = size_t(group_size);
  const double* r = st.reward.data();
  const double batch_std =
      a.scope == AdvantageScope::Batch ? std_of(r, n_steps, mean_of(r, n_steps), a.std_bessel) : 0;
  std::vector<double> norm(n_steps);
  for (size_t g = 0; g < S; g += G) {
    const size_t j0 = st.step_offsets[g], n = st.step_offsets[g + G] - j0;
    const double std = a.scope == AdvantageScope::Batch ? batch_std : std_of(r + j0, n, mean_of(r + j0, n), a.std_bessel);
    normalise(norm.data() + j0, r + j0, n, std, a);
  }
  // A_t = sum of r~_j with end_token[j] >= t: add each r~_j to tokens 0..end_j.
  std::vector<double> adv(offsets.back(), 0.0);
  for (size_t i = 0; i < S; ++i)
    for (size_t j = st.step_offsets[i]; j < st.step_offsets[i + 1]; ++j)
      for (size_t t = 0; t <= st.end_token[j]; ++t) adv[offsets[i] + t] += norm[j];
  return adv;
}

}  // namespace dslab
