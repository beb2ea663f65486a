#include "reference/rl_trainer.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "reference/args_error.hpp"
#include "reference/logprobs.hpp"

namespace dslab {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double mean_of(const std::vector<double>& x) {
  return x.empty() ? 0.0 : std::accumulate(x.begin(), x.end(), 0.0) / double(x.size());
}

double std_of(const std::vector<double>& x) {  // population std, for the log
  if (x.empty()) return 0.0;
  const double m = mean_of(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return std::sqrt(s / double(x.size()));
}

std::vector<int> byte_tokens(const std::string& text) {
  std::vector<int> t(text.size());
  for (size_t i = 0; i < text.size(); ++i) t[i] = static_cast<unsigned char>(text[i]);
  return t;
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;
}

// The groups one optimizer step trains on: prompts and completions, each
// completion's `prompt` indexing `prompts`, and every response token's
// constants for the GRPO loss.
struct Part {
  std::vector<std::vector<int>> prompts;
  std::vector<Completion> completions;
  PaddedBatch batch;
  std::vector<size_t> offsets;              // [S+1] response tokens per completion
  std::vector<double> old_logp, ref_logp;   // [R]
  std::vector<double> advantages;           // [R]
  std::vector<double> ref_z;                // [R, V] logits / T of the reference (exact KL only)
};

// One row of logits divided by the temperature, in double.
void tempered_row(std::vector<double>& z, const float* logits, int V, double T) {
  z.resize(V);
  for (int v = 0; v < V; ++v) z[v] = double(logits[v]) / T;
}

}  // namespace

void RlArgs::validate(const ModelArgs& model, const RolloutArgs& rollout) const {
  const auto v = [](auto x) { return value_text(x); };
  require(prompts_per_step % mini_batches == 0, {"rl.mini_batches", "rl.prompts_per_step"},
          "rl.mini_batches = " + v(mini_batches) + " must divide rl.prompts_per_step = " + v(prompts_per_step));
  require(warmup_steps <= steps, {"rl.warmup_steps", "rl.steps"},
          "rl.warmup_steps = " + v(warmup_steps) + " must be <= rl.steps = " + v(steps));
  require(rollout.max_new_tokens < model.max_seq_len, {"rollout.max_new_tokens", "model.max_seq_len"},
          "rollout.max_new_tokens = " + v(rollout.max_new_tokens) + " must be < model.max_seq_len = " +
              v(model.max_seq_len) + " (the prompt needs room too)");
}

RlTrainer::RlTrainer(const ModelArgs& model_args, const RlSetup& s, const Vocabulary* vocab)
    : setup(s), policy(model_args), reference(model_args), vocab_(vocab) {
  if (setup.reward.language != 0 && !vocab_)
    throw std::invalid_argument("RL: reward.language > 0 needs the target language's vocabulary");
  policy.init_weights(setup.rl.seed);
  reset_reference();
  param_segments_ = segments(policy.params.arena());
  grad_segments_ = segments(policy.grads.arena());
  optimizer = AdamW<float>(param_segments_);
}

void RlTrainer::reset_reference() {
  const Arena<float>& from = policy.params.arena();
  std::copy(from.data(), from.data() + from.size(), reference.params.arena().data());
  std::vector<ParamRef<float>> src = policy.params.buffers(), dst = reference.params.buffers();
  for (size_t i = 0; i < src.size(); ++i) std::copy(src[i].data, src[i].data + src[i].size(), dst[i].data);
}

RlStepReport RlTrainer::rl_step() {
  const auto t_step = Clock::now();
  const RlArgs& a = setup.rl;
  const GrpoArgs& grpo = setup.grpo;
  const int G = setup.rollout.group_size, P = a.prompts_per_step, V = policy.args.vocab_size;
  const double T = setup.rollout.temperature > 0 ? setup.rollout.temperature : 1.0;
  const bool exact_kl = grpo.kl_estimator == KlEstimator::Exact && grpo.kl_placement == KlPlacement::Loss;
  if (a.ref_reset_every > 0 && step > 0 && step % a.ref_reset_every == 0) reset_reference();

  // --- Rollouts and rewards --------------------------------------------------
  const int rounds = a.dynamic_sampling ? a.max_sampling_rounds : 1;
  std::vector<std::vector<int>> kept_prompts;       // [groups]
  std::vector<Completion> kept;                     // [groups * G], completion.prompt = its group
  std::vector<double> kept_rewards;                 // [groups * G]
  std::vector<double> all_rewards, accuracy, format, language, length, stopped, reflections;
  int sampled_groups = 0, zero_std_groups = 0;
  double rollout_seconds = 0, scoring_seconds = 0;
  RlSample sample;
  for (int round = 0; round < rounds && int(kept_prompts.size()) < P; ++round) {
    auto t0 = Clock::now();
    std::vector<Problem> problems(P);
    std::vector<std::vector<int>> prompts(P);
    for (int i = 0; i < P; ++i) {
      const uint64_t index = (uint64_t(step) * rounds + round) * P + i;
      problems[i] = make_problem(setup.task, a.task_seed, index);
      prompts[i] = byte_tokens(r1_prompt(problems[i]));
    }
    const std::vector<Completion> comps =
        sample_completions(policy, prompts, setup.rollout, a.seed, uint64_t(step) * rounds + round);
    rollout_seconds += seconds_since(t0);
    t0 = Clock::now();
    for (int i = 0; i < P; ++i) {
      std::vector<std::string> texts(G);
      for (int g = 0; g < G; ++g) texts[g] = comps[size_t(i) * G + g].text();
      const std::vector<RewardParts> parts = score_group(problems[i], texts, setup.reward, vocab_);
      bool all_equal = true;
      for (int g = 0; g < G; ++g) {
        const RewardParts& r = parts[g];
        all_equal = all_equal && r.total == parts[0].total;
        all_rewards.push_back(r.total);
        accuracy.push_back(r.accuracy);
        format.push_back(format_reward(texts[g]));
        if (vocab_) language.push_back(language_consistency(texts[g], *vocab_));
        length.push_back(double(texts[g].size()));
        stopped.push_back(comps[size_t(i) * G + g].stopped ? 1.0 : 0.0);
        reflections.push_back(double(reflection_counts(texts[g]).total()));
      }
      ++sampled_groups;
      if (all_equal) ++zero_std_groups;
      if (sample.completions.empty()) {
        sample.prompt = r1_prompt(problems[i]);
        sample.completions = texts;
        for (const RewardParts& r : parts) sample.rewards.push_back(r.total);
      }
      if ((a.dynamic_sampling && all_equal) || int(kept_prompts.size()) >= P) continue;
      const int group = int(kept_prompts.size());
      kept_prompts.push_back(prompts[i]);
      for (int g = 0; g < G; ++g) {
        Completion c = comps[size_t(i) * G + g];
        c.prompt = group;
        kept.push_back(std::move(c));
        kept_rewards.push_back(parts[g].total);
      }
    }
    scoring_seconds += seconds_since(t0);
  }

  // --- The parts an epoch trains on, and their constants -----------------------
  auto t0 = Clock::now();
  const int groups = int(kept_prompts.size());
  const int n_parts = std::min(a.mini_batches, std::max(groups, 1));
  std::vector<Part> parts(groups > 0 ? n_parts : 0);
  double logprob_gap = 0, entropy_sum = 0, kl_reward_sum = 0;
  size_t response_tokens = 0;
  std::vector<double> seq_rewards = kept_rewards;
  for (int m = 0; m < int(parts.size()); ++m) {
    Part& part = parts[m];
    const int g0 = m * groups / n_parts, g1 = (m + 1) * groups / n_parts;
    for (int g = g0; g < g1; ++g) {
      part.prompts.push_back(kept_prompts[g]);
      for (int j = 0; j < G; ++j) {
        Completion c = kept[size_t(g) * G + j];
        c.prompt = g - g0;
        part.completions.push_back(std::move(c));
      }
    }
    part.batch = rollout_batch(part.prompts, part.completions);
    part.offsets.assign(1, 0);
    for (const Completion& c : part.completions) part.offsets.push_back(part.offsets.back() + c.tokens.size());
    TokenLogprobs<float> lp;
    token_logprobs(policy, lp, part.batch, T);  // pi_old: the policy that sampled
    logprob_gap = std::max(logprob_gap, max_logprob_gap(part.completions, lp));
    part.old_logp.assign(lp.logp.begin(), lp.logp.end());
    for (float e : lp.entropy) entropy_sum += e;
    response_tokens += lp.logp.size();
    token_logprobs(reference, lp, part.batch, T);
    part.ref_logp.assign(lp.logp.begin(), lp.logp.end());
    if (exact_kl) {
      part.ref_z.resize(lp.rows.size() * size_t(V));
      for (size_t r = 0; r < lp.rows.size(); ++r)
        for (int v = 0; v < V; ++v)
          part.ref_z[r * V + v] = double(lp.acts.logits(lp.rows[r], v)) / T;
    }
    if (grpo.kl_placement == KlPlacement::Reward) {  // r_i - beta sum_t k_t, at pi_theta = pi_old
      for (size_t i = 0; i + 1 < part.offsets.size(); ++i) {
        double k = 0;
        for (size_t t = part.offsets[i]; t < part.offsets[i + 1]; ++t)
          k += kl_estimate(part.old_logp[t], part.old_logp[t], part.ref_logp[t], grpo.kl_estimator).value;
        seq_rewards[size_t(g0) * G + i] -= grpo.beta * k;
        kl_reward_sum += k;
      }
    }
  }
  const std::vector<double> seq_advantages =
      groups > 0 ? group_advantages(seq_rewards, G, grpo.advantages) : std::vector<double>{};
  for (int m = 0; m < int(parts.size()); ++m) {
    Part& part = parts[m];
    const size_t first = size_t(m * groups / n_parts) * G;
    const std::vector<double> adv(seq_advantages.begin() + first,
                                  seq_advantages.begin() + first + part.completions.size());
    part.advantages = broadcast_to_tokens(part.offsets, adv);
  }
  const double logprob_seconds = seconds_since(t0);

  // --- mu epochs of mini-batch updates -------------------------------------------
  t0 = Clock::now();
  const double lr = a.warmup_steps > 0 && step < a.warmup_steps
                        ? a.lr * double(step + 1) / double(a.warmup_steps) : a.lr;
  std::vector<double> losses, clip_fractions, kls, grad_norms;
  for (int epoch = 0; epoch < a.ppo_epochs; ++epoch)
    for (Part& part : parts) {
      TokenLogprobs<float> lp;
      token_logprobs(policy, lp, part.batch, T);
      PolicyBatch pb;
      pb.offsets = part.offsets;
      pb.logp.assign(lp.logp.begin(), lp.logp.end());
      pb.old_logp = part.old_logp;
      pb.ref_logp = part.ref_logp;
      pb.advantages = part.advantages;
      pb.group_size = G;
      const size_t R = pb.logp.size();
      std::vector<std::vector<double>> dkl_dz;  // [R][V] d KL_t / d z_t (exact KL)
      if (exact_kl) {
        pb.kl_exact.resize(R);
        dkl_dz.resize(R);
        std::vector<double> z;
        for (size_t r = 0; r < R; ++r) {
          tempered_row(z, &lp.acts.logits(lp.rows[r], 0), V, T);
          dkl_dz[r].resize(V);
          pb.kl_exact[r] = kl_exact(z.data(), part.ref_z.data() + r * V, V, dkl_dz[r].data());
        }
      }
      std::vector<double> dlogp;
      const PolicyLoss L = policy_loss(pb, grpo, dlogp);
      // d loss / d z from the exact KL; token_logprobs_backward divides by T.
      Tensor2<float> dz;
      if (exact_kl) {
        dz = Tensor2<float>::from_shape({R, size_t(V)});
        for (size_t r = 0; r < R; ++r)
          for (int v = 0; v < V; ++v) dz(r, v) = float(L.dkl[r] * dkl_dz[r][v]);
      }
      const std::vector<float> dlogp_f(dlogp.begin(), dlogp.end());
      policy.zero_grad();
      token_logprobs_backward(policy, lp, dlogp_f, exact_kl ? &dz : nullptr);
      const double norm = global_grad_norm(grad_segments_);
      clip_grad_norm(grad_segments_, norm, a.grad_clip);
      optimizer.step(param_segments_, grad_segments_, lr, a.adamw);
      losses.push_back(L.loss);
      clip_fractions.push_back(L.clip_fraction);
      if (epoch == 0) kls.push_back(L.kl_mean);
      grad_norms.push_back(norm);
    }
  const double update_seconds = seconds_since(t0);
  ++step;

  // --- Report ----------------------------------------------------------------------
  RlStepReport r;
  r.step = step;
  r.steps = a.steps;
  r.seconds = seconds_since(t_step);
  r.reward_mean = mean_of(all_rewards);
  r.accuracy = mean_of(accuracy);
  r.format_rate = mean_of(format);
  r.response_length = mean_of(length);
  r.kl = mean_of(kls);
  r.clip_fraction = mean_of(clip_fractions);
  r.entropy = response_tokens ? entropy_sum / double(response_tokens) : 0.0;
  double generated = 0;
  for (double l : length) generated += l;
  r.tokens_per_second = generated / r.seconds;
  const std::map<std::string, double> row = {
      {"step", double(step)},
      {"reward_mean", r.reward_mean},
      {"reward_std", std_of(all_rewards)},
      {"accuracy", r.accuracy},
      {"format_rate", r.format_rate},
      {"response_length", r.response_length},
      {"stop_rate", mean_of(stopped)},
      {"reflection_words", mean_of(reflections)},
      {"kl", r.kl},
      {"kl_in_reward", response_tokens ? kl_reward_sum / double(response_tokens) : 0.0},
      {"clip_fraction", r.clip_fraction},
      {"entropy", r.entropy},
      {"loss", mean_of(losses)},
      {"grad_norm", mean_of(grad_norms)},
      {"lr", lr},
      {"zero_std_fraction", sampled_groups ? double(zero_std_groups) / sampled_groups : 0.0},
      {"groups_trained", double(groups)},
      {"logprob_gap", logprob_gap},
      {"rollout_seconds", rollout_seconds},
      {"scoring_seconds", scoring_seconds},
      {"logprob_seconds", logprob_seconds},
      {"update_seconds", update_seconds},
      {"step_seconds", r.seconds},
      {"tokens_per_second", r.tokens_per_second},
  };
  for (const auto& [name, value] : row) metrics[name].push_back(value);
  if (vocab_) metrics["language_consistency"].push_back(mean_of(language));
  if (step == a.steps) metrics["peak_rss_mib"].push_back(peak_rss_mib());
  if ((a.sample_every > 0 && step % a.sample_every == 0) || step == a.steps || step == 1) {
    sample.step = step;
    samples.push_back(std::move(sample));
  }
  return r;
}

void RlTrainer::run(const std::function<bool(const RlStepReport&)>& on_step) {
  while (step < setup.rl.steps) {
    const RlStepReport r = rl_step();
    if (on_step && !on_step(r)) return;
  }
}

}  // namespace dslab
