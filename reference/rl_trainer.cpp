#include "reference/rl_trainer.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

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
  std::vector<double> old_values, returns;  // [R] PPO: v_old of each token's state, GAE's returns
  std::vector<double> ref_z;                // [R, V] logits / T of the reference (exact KL only)
};

// One row of logits divided by the temperature, in double.
void tempered_row(std::vector<double>& z, const float* logits, int V, double T) {
  z.resize(V);
  for (int v = 0; v < V; ++v) z[v] = double(logits[v]) / T;
}

// logits / T of the rows that predict the response tokens   [R, V]
std::vector<double> tempered_logits(const TokenLogprobs<float>& lp, int V, double T) {
  std::vector<double> z(lp.rows.size() * size_t(V));
  for (size_t r = 0; r < lp.rows.size(); ++r)
    for (int v = 0; v < V; ++v) z[r * V + v] = double(lp.acts.logits(lp.rows[r], v)) / T;
  return z;
}

// Each KL estimator against the exact KL(pi_old || pi_ref) on the sampled tokens
// (at pi_theta = pi_old, before any update: k3_ratio = k3). Sums in a fixed order.
struct KlDiagnostics {
  static constexpr std::array<KlEstimator, 3> estimators = {KlEstimator::K1, KlEstimator::K2, KlEstimator::K3};
  std::array<double, 3> sum{}, sum_sq{};
  double exact_sum = 0;
  size_t n = 0;
  void add(double old_logp, double ref_logp, double exact) {
    for (size_t e = 0; e < estimators.size(); ++e) {
      const double k = kl_estimate(old_logp, old_logp, ref_logp, estimators[e]).value;
      sum[e] += k;
      sum_sq[e] += k * k;
    }
    exact_sum += exact;
    ++n;
  }
  // kl_exact, kl_<k>_mean and kl_<k>_std (over the tokens) for k1, k2, k3.
  void record(Metrics& m) const {
    const double N = double(std::max<size_t>(n, 1));
    m["kl_exact"].push_back(exact_sum / N);
    for (size_t e = 0; e < estimators.size(); ++e) {
      const std::string name = "kl_" + std::string(name_of(estimators[e]));
      const double mean = sum[e] / N;
      m[name + "_mean"].push_back(mean);
      m[name + "_std"].push_back(std::sqrt(std::max(0.0, sum_sq[e] / N - mean * mean)));
    }
  }
};

// PPO's value of each response token's state: v_r = w . h_final[rows[r]] + b   [R]
std::vector<double> token_values(const std::vector<float>& head, const TokenLogprobs<float>& lp, int D) {
  std::vector<double> v(lp.rows.size());
  for (size_t r = 0; r < v.size(); ++r) {
    const float* h = &lp.acts.h_final(lp.rows[r], 0);
    double s = head[D];
    for (int d = 0; d < D; ++d) s += double(head[d]) * double(h[d]);
    v[r] = s;
  }
  return v;
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
  require(general_prompts <= prompts_per_step, {"rl.general_prompts", "rl.prompts_per_step"},
          "rl.general_prompts = " + v(general_prompts) + " must be <= rl.prompts_per_step = " + v(prompts_per_step));
  require(general_prompts == 0 || general_prefix + rollout.max_new_tokens <= model.max_seq_len,
          {"rl.general_prefix", "rollout.max_new_tokens", "model.max_seq_len"},
          "rl.general_prefix + rollout.max_new_tokens = " + v(general_prefix + rollout.max_new_tokens) +
              " must be <= model.max_seq_len = " + v(model.max_seq_len));
}

std::vector<int> general_prompt(const std::vector<uint8_t>& text, int prefix, uint64_t seed, uint64_t index) {
  if (prefix < 1 || text.size() < size_t(prefix))
    throw std::invalid_argument("general_prompt: " + std::to_string(prefix) + " bytes from a text of " +
                                std::to_string(text.size()));
  Rng rng(seed ^ kGeneralStream, index);
  const size_t start = rng.below(text.size() - size_t(prefix) + 1);
  return std::vector<int>(text.begin() + start, text.begin() + start + prefix);
}

StepRewards completion_step_rewards(const std::vector<Problem>& problems, const std::vector<Completion>& completions,
                                    int group_size) {
  StepRewards s;
  s.step_offsets.push_back(0);
  for (size_t i = 0; i < completions.size(); ++i) {
    const Completion& c = completions[i];
    for (const StepReward& r : process_rewards(problems.at(i / size_t(group_size)), c.text())) {
      if (r.end == 0 || r.end > c.tokens.size()) continue;
      s.end_token.push_back(r.end - 1);
      s.reward.push_back(r.reward);
    }
    s.step_offsets.push_back(s.end_token.size());
  }
  return s;
}

void RlSetup::validate(const ModelArgs& model) const {
  rl.validate(model, rollout);
  grpo.validate();
  ppo.validate();
  rollout.validate();
  task.validate();
  reward.validate();
  require(rl.algorithm != RlAlgorithm::Ppo || grpo.kl_estimator == KlEstimator::K1 ||
              grpo.kl_estimator == KlEstimator::K2 || grpo.kl_estimator == KlEstimator::K3,
          {"grpo.kl_estimator", "rl.algorithm"},
          "grpo.kl_estimator = \"" + std::string(name_of(grpo.kl_estimator)) +
              "\" is not allowed with rl.algorithm = \"ppo\", whose KL is in the per-token reward: "
              "allowed k1, k2, k3");
  const bool process = grpo.supervision == Supervision::Process;
  require(!process || grpo.kl_placement == KlPlacement::Loss, {"grpo.supervision", "grpo.kl_placement"},
          "grpo.supervision = \"process\" takes the KL in the loss: grpo.kl_placement must be \"loss\"");
  require(!process || !rl.dynamic_sampling, {"grpo.supervision", "rl.dynamic_sampling"},
          "rl.dynamic_sampling judges groups by their outcome rewards; it cannot be used with "
          "grpo.supervision = \"process\"");
  require(!rl.dynamic_sampling || rollout.group_size >= 2, {"rl.dynamic_sampling", "rollout.group_size"},
          "rl.dynamic_sampling drops groups whose rewards are all equal: with rollout.group_size = 1 every group is "
          "dropped; it needs rollout.group_size >= 2");
  require(grpo.max_response_length == 0 || grpo.max_response_length >= rollout.max_new_tokens,
          {"grpo.max_response_length", "rollout.max_new_tokens"},
          "grpo.max_response_length = " + value_text(grpo.max_response_length) +
              " must be 0 or >= rollout.max_new_tokens = " + value_text(rollout.max_new_tokens));
  require((rl.general_prompts > 0) == !reward.model.empty(), {"rl.general_prompts", "reward.model"},
          rl.general_prompts > 0 ? "rl.general_prompts = " + value_text(rl.general_prompts) +
                                       " needs reward.model, the dslab reward result that scores them"
                                 : "reward.model = \"" + reward.model +
                                       "\" scores general prompts, but rl.general_prompts = 0: set it > 0 or "
                                       "leave reward.model out");
  require(!process || rl.general_prompts == 0, {"grpo.supervision", "rl.general_prompts"},
          "grpo.supervision = \"process\" needs a verifier's steps; general prompts (rl.general_prompts > 0) "
          "have none");
  require(rl.algorithm != RlAlgorithm::Ppo || grpo.supervision == Supervision::Outcome,
          {"grpo.supervision", "rl.algorithm"},
          "grpo.supervision = \"process\" is GRPO's (Sec. 4.1.3); rl.algorithm = \"ppo\" takes the outcome reward");
}

std::vector<ParamRef<float>> RlTrainer::value_head_refs(std::vector<float>& buffer) {
  const size_t D = size_t(policy.args.dim);
  return {{"weight", buffer.data(), {1, D}}, {"bias", buffer.data() + D, {1}}};
}

RlTrainer::RlTrainer(const ModelArgs& model_args, const RlSetup& s, const Vocabulary* vocab,
                     LearnedRewardModel<float>* reward_model, const std::vector<uint8_t>* general_text)
    : setup(s), policy(model_args), reference(model_args), vocab_(vocab), reward_model_(reward_model),
      general_text_(general_text) {
  if (setup.reward.language != 0 && !vocab_)
    throw std::invalid_argument("RL: reward.language > 0 needs the target language's vocabulary");
  if (setup.rl.general_prompts > 0) {
    if (!reward_model_ || !general_text_)
      throw std::invalid_argument("RL: rl.general_prompts > 0 needs a reward model and the general prompts' text");
    const int need = setup.rl.general_prefix + setup.rollout.max_new_tokens;
    require(need <= reward_model_->trunk.args.max_seq_len, {"reward.model", "rl.general_prefix"},
            "reward.model's model.max_seq_len = " + value_text(reward_model_->trunk.args.max_seq_len) +
                " cannot score a general prompt and its completion: rl.general_prefix + rollout.max_new_tokens = " +
                value_text(need));
  }
  policy.init_weights(setup.rl.seed);
  if (setup.rl.algorithm == RlAlgorithm::Ppo && setup.rl.value_model == ValueModel::Policy) {
    critic = std::make_unique<Transformer<float>>(model_args);
    critic_segments_ = segments(critic->params.arena());
    critic_grad_segments_ = segments(critic->grads.arena());
    critic_optimizer = AdamW<float>(critic_segments_);
  }
  reset_reference();
  param_segments_ = segments(policy.params.arena());
  grad_segments_ = segments(policy.grads.arena());
  optimizer = AdamW<float>(param_segments_);
  const size_t D = size_t(model_args.dim);
  value_head.assign(D + 1, 0.0f);  // v = 0 at the start
  value_grad.assign(D + 1, 0.0f);
  value_segments_ = {{value_head.data(), D, 2}, {value_head.data() + D, 1, 1}};
  value_grad_segments_ = {{value_grad.data(), D, 2}, {value_grad.data() + D, 1, 1}};
  value_optimizer = AdamW<float>(value_segments_);
}

namespace {
void copy_weights(Transformer<float>& from, Transformer<float>& to) {
  const Arena<float>& a = from.params.arena();
  std::copy(a.data(), a.data() + a.size(), to.params.arena().data());
  std::vector<ParamRef<float>> src = from.params.buffers(), dst = to.params.buffers();
  for (size_t i = 0; i < src.size(); ++i) std::copy(src[i].data, src[i].data + src[i].size(), dst[i].data);
}
}  // namespace

void RlTrainer::reset_reference() {
  copy_weights(policy, reference);
  if (critic && step == 0) copy_weights(policy, *critic);
}

RlStepReport RlTrainer::rl_step() {
  const auto t_step = Clock::now();
  const RlArgs& a = setup.rl;
  const GrpoArgs& grpo = setup.grpo;
  const int G = setup.rollout.group_size, P = a.prompts_per_step, V = policy.args.vocab_size;
  const double T = setup.rollout.temperature > 0 ? setup.rollout.temperature : 1.0;
  const bool ppo = a.algorithm == RlAlgorithm::Ppo;
  const int D = policy.args.dim;
  // PPO's KL is in the reward (above); its surrogate has none.
  GrpoArgs surrogate = grpo;
  if (ppo) surrogate.kl_placement = KlPlacement::Reward;
  const bool exact_kl = !ppo && grpo.kl_estimator == KlEstimator::Exact && grpo.kl_placement == KlPlacement::Loss;
  if (a.ref_reset_every > 0 && step > 0 && step % a.ref_reset_every == 0) reset_reference();

  // --- Rollouts and rewards --------------------------------------------------
  const int rounds = a.dynamic_sampling ? a.max_sampling_rounds : 1;
  std::vector<std::vector<int>> kept_prompts;       // [groups]
  std::vector<Problem> kept_problems;               // [groups]
  std::vector<Completion> kept;                     // [groups * G], completion.prompt = its group
  std::vector<double> kept_rewards;                 // [groups * G]
  std::vector<double> all_rewards, accuracy, format, language, length, stopped, reflections;
  std::vector<double> length_correct, length_incorrect;
  std::vector<double> rm_scores, vocab_words, distinct_words;  // general completions
  std::vector<bool> kept_general;                               // [groups]
  int sampled_groups = 0, zero_std_groups = 0, solved_groups = 0, task_groups = 0;
  const int P_task = P - a.general_prompts;
  double sampled_bytes = 0;
  double rollout_seconds = 0, scoring_seconds = 0;
  RlSample sample;
  for (int round = 0; round < rounds && int(kept_prompts.size()) < P; ++round) {
    auto t0 = Clock::now();
    std::vector<Problem> problems(P);
    std::vector<std::vector<int>> prompts(P);
    for (int i = 0; i < P; ++i) {
      const uint64_t index = (uint64_t(step) * rounds + round) * P + i;
      if (i < P_task) {
        problems[i] = make_problem(setup.task, a.task_seed, index);
        prompts[i] = byte_tokens(r1_prompt(problems[i]));
      } else {
        prompts[i] = general_prompt(*general_text_, a.general_prefix, a.task_seed, index);
      }
    }
    const std::vector<Completion> comps =
        sample_completions(policy, prompts, setup.rollout, a.seed, uint64_t(step) * rounds + round);
    rollout_seconds += seconds_since(t0);
    t0 = Clock::now();
    // The reward model's score of every general prompt + completion, in one batch.
    std::vector<double> general_scores;
    if (P_task < P) {
      std::vector<std::vector<int>> seqs;
      for (int i = P_task; i < P; ++i)
        for (int g = 0; g < G; ++g) {
          seqs.push_back(prompts[i]);
          const std::vector<int>& t = comps[size_t(i) * G + g].tokens;
          seqs.back().insert(seqs.back().end(), t.begin(), t.end());
        }
      Activations<float> acts;
      general_scores = reward_model_->score(seqs, acts);
    }
    for (int i = 0; i < P; ++i) {
      const bool general = i >= P_task;
      std::vector<std::string> texts(G);
      for (int g = 0; g < G; ++g) texts[g] = comps[size_t(i) * G + g].text();
      std::vector<RewardParts> parts(G);
      if (!general) {
        parts = score_group(problems[i], texts, setup.reward, vocab_);
      } else {
        for (int g = 0; g < G; ++g) {
          const double r = general_scores[size_t(i - P_task) * G + g];
          parts[g].total = setup.reward.preference * r;
          rm_scores.push_back(r);
          const std::vector<std::string> words = words_of(texts[g]);
          size_t known = 0;
          for (const std::string& w : words) known += vocab_ && vocab_->contains(w) ? 1 : 0;
          vocab_words.push_back(words.empty() ? 0.0 : double(known) / double(words.size()));
          distinct_words.push_back(
              words.empty() ? 0.0 : double(std::set<std::string>(words.begin(), words.end()).size()) / words.size());
        }
      }
      bool all_equal = true, solved = false;
      for (int g = 0; g < G; ++g) {
        const RewardParts& r = parts[g];
        all_equal = all_equal && r.total == parts[0].total;
        solved = solved || r.accuracy > 0;
        all_rewards.push_back(r.total);
        sampled_bytes += double(texts[g].size());
        if (general) continue;
        accuracy.push_back(r.accuracy);
        (r.accuracy > 0 ? length_correct : length_incorrect).push_back(double(texts[g].size()));
        format.push_back(format_reward(texts[g]));
        if (vocab_) language.push_back(language_consistency(texts[g], *vocab_));
        length.push_back(double(texts[g].size()));
        stopped.push_back(comps[size_t(i) * G + g].stopped ? 1.0 : 0.0);
        reflections.push_back(double(reflection_counts(texts[g]).total()));
      }
      ++sampled_groups;
      if (!general) ++task_groups;
      if (all_equal) ++zero_std_groups;
      if (solved) ++solved_groups;
      if (sample.completions.empty()) {
        sample.prompt = std::string(prompts[i].begin(), prompts[i].end());
        sample.completions = texts;
        for (const RewardParts& r : parts) sample.rewards.push_back(r.total);
      }
      if ((a.dynamic_sampling && all_equal) || int(kept_prompts.size()) >= P) continue;
      const int group = int(kept_prompts.size());
      kept_prompts.push_back(prompts[i]);
      kept_problems.push_back(problems[i]);
      kept_general.push_back(general);
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
  double general_nll = 0, general_kl = 0;  // over the general completions' tokens
  size_t general_tokens = 0;
  KlDiagnostics kl_diagnostics;
  size_t response_tokens = 0;
  std::vector<double> seq_rewards = kept_rewards;
  for (int m = 0; m < int(parts.size()); ++m) {
    Part& part = parts[m];
    const int g0 = int(int64_t(m) * groups / n_parts), g1 = int(int64_t(m + 1) * groups / n_parts);
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
    if (ppo && !critic) part.old_values = token_values(value_head, lp, D);
    if (critic) {
      TokenLogprobs<float> lc;
      token_logprobs(*critic, lc, part.batch, T);
      part.old_values = token_values(value_head, lc, D);
    }
    for (float e : lp.entropy) entropy_sum += e;
    response_tokens += lp.logp.size();
    const std::vector<double> old_z = tempered_logits(lp, V, T);  // pi_old's, for the KL diagnostics
    token_logprobs(reference, lp, part.batch, T);
    part.ref_logp.assign(lp.logp.begin(), lp.logp.end());
    std::vector<double> ref_z = tempered_logits(lp, V, T);
    std::vector<double> exact(lp.rows.size());
    for (size_t r = 0; r < lp.rows.size(); ++r) {
      exact[r] = kl_exact(&old_z[r * V], &ref_z[r * V], V);
      kl_diagnostics.add(part.old_logp[r], part.ref_logp[r], exact[r]);
    }
    for (size_t j = 0; j + 1 < part.offsets.size(); ++j)
      if (kept_general[size_t(g0) + j / size_t(G)])
        for (size_t t = part.offsets[j]; t < part.offsets[j + 1]; ++t) {
          general_nll += -part.ref_logp[t];
          general_kl += exact[t];
          ++general_tokens;
        }
    if (exact_kl) part.ref_z = std::move(ref_z);
    if (!ppo && grpo.kl_placement == KlPlacement::Reward) {  // r_i - beta sum_t k_t, at pi_theta = pi_old
      for (size_t i = 0; i + 1 < part.offsets.size(); ++i) {
        double k = 0;
        for (size_t t = part.offsets[i]; t < part.offsets[i + 1]; ++t)
          k += kl_estimate(part.old_logp[t], part.old_logp[t], part.ref_logp[t], grpo.kl_estimator).value;
        seq_rewards[size_t(g0) * G + i] -= grpo.beta * k;
        kl_reward_sum += k;
      }
    }
  }
  if (ppo && groups > 0) {
    // Eq. (27)'s advantages: token rewards (the outcome on the last token, -beta k_t on
    // each), GAE over the old values, whitened over the whole batch; then back to the parts.
    std::vector<size_t> offsets = {0};
    std::vector<double> old_logp, ref_logp, old_values;
    for (const Part& part : parts) {
      for (size_t i = 1; i < part.offsets.size(); ++i) offsets.push_back(offsets.back() + part.offsets[i] - part.offsets[i - 1]);
      old_logp.insert(old_logp.end(), part.old_logp.begin(), part.old_logp.end());
      ref_logp.insert(ref_logp.end(), part.ref_logp.begin(), part.ref_logp.end());
      old_values.insert(old_values.end(), part.old_values.begin(), part.old_values.end());
    }
    std::vector<double> token_rewards = outcome_token_rewards(offsets, kept_rewards);
    const double k = add_kl_penalty(token_rewards, old_logp, ref_logp, grpo.beta, grpo.kl_estimator);
    kl_reward_sum = k * double(old_logp.size());
    PpoArgs gae_args = setup.ppo;
    gae_args.whiten_advantages = gae_args.whiten_advantages && old_logp.size() >= 2;  // a std needs two
    const Gae g = gae(offsets, token_rewards, old_values, gae_args);
    size_t at = 0;
    for (Part& part : parts) {
      const size_t n = part.old_logp.size();
      part.advantages.assign(g.advantages.begin() + at, g.advantages.begin() + at + n);
      part.returns.assign(g.returns.begin() + at, g.returns.begin() + at + n);
      at += n;
    }
  } else if (groups > 0 && grpo.supervision == Supervision::Process) {
    // Over the whole batch (a "batch" std spans every part), then back to the parts.
    std::vector<size_t> offsets = {0};
    for (const Completion& c : kept) offsets.push_back(offsets.back() + c.tokens.size());
    const std::vector<double> adv =
        process_advantages(completion_step_rewards(kept_problems, kept, G), offsets, G, grpo.advantages);
    size_t at = 0;
    for (Part& part : parts) {
      const size_t n = part.offsets.back();
      part.advantages.assign(adv.begin() + at, adv.begin() + at + n);
      at += n;
    }
  } else if (groups > 0) {
    const std::vector<double> seq_advantages = group_advantages(seq_rewards, G, grpo.advantages);
    for (int m = 0; m < int(parts.size()); ++m) {
      Part& part = parts[m];
      const size_t first = size_t(int64_t(m) * groups / n_parts) * G;
      const std::vector<double> adv(seq_advantages.begin() + first,
                                    seq_advantages.begin() + first + part.completions.size());
      part.advantages = broadcast_to_tokens(part.offsets, adv);
    }
  }
  const double logprob_seconds = seconds_since(t0);

  // --- mu epochs of mini-batch updates -------------------------------------------
  t0 = Clock::now();
  const double lr = a.warmup_steps > 0 && step < a.warmup_steps
                        ? a.lr * double(step + 1) / double(a.warmup_steps) : a.lr;
  std::vector<double> losses, clip_fractions, kls, grad_norms, value_losses, value_clips;
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
      const PolicyLoss L = policy_loss(pb, surrogate, dlogp);
      // PPO: the clipped value loss through the value head and h_t.
      Tensor2<float> dh;
      TokenLogprobs<float> lc;  // the critic's forward, when there is one
      if (critic) token_logprobs(*critic, lc, part.batch, T);
      const TokenLogprobs<float>& trunk = critic ? lc : lp;  // what the value head reads
      if (ppo) {
        const std::vector<double> values = token_values(value_head, trunk, D);
        std::vector<double> dvalues;
        const ValueLoss VL = value_loss(pb.offsets, values, part.old_values, part.returns, setup.ppo, dvalues);
        value_losses.push_back(VL.loss);
        value_clips.push_back(VL.clip_fraction);
        std::fill(value_grad.begin(), value_grad.end(), 0.0f);
        assign_zeros(dh, {trunk.acts.h_final.shape(0), size_t(D)});
        std::vector<double> dw(D + 1, 0.0);
        for (size_t r = 0; r < R; ++r) {
          const float* h = &trunk.acts.h_final(trunk.rows[r], 0);
          float* g = &dh(trunk.rows[r], 0);
          for (int d = 0; d < D; ++d) {
            g[d] += float(dvalues[r] * value_head[d]);
            dw[d] += dvalues[r] * h[d];
          }
          dw[D] += dvalues[r];
        }
        for (int d = 0; d <= D; ++d) value_grad[d] = float(dw[d]);
      }
      // d loss / d z from the exact KL; token_logprobs_backward divides by T.
      Tensor2<float> dz;
      if (exact_kl) {
        dz = Tensor2<float>::from_shape({R, size_t(V)});
        for (size_t r = 0; r < R; ++r)
          for (int v = 0; v < V; ++v) dz(r, v) = float(L.dkl[r] * dkl_dz[r][v]);
      }
      const std::vector<float> dlogp_f(dlogp.begin(), dlogp.end());
      policy.zero_grad();
      token_logprobs_backward(policy, lp, dlogp_f, exact_kl ? &dz : nullptr, ppo && !critic ? &dh : nullptr);
      const double norm = global_grad_norm(grad_segments_);
      clip_grad_norm(grad_segments_, norm, a.grad_clip);
      optimizer.step(param_segments_, grad_segments_, lr, a.adamw);
      if (ppo) {
        clip_grad_norm(value_grad_segments_, global_grad_norm(value_grad_segments_), a.grad_clip);
        value_optimizer.step(value_segments_, value_grad_segments_, lr, a.adamw);
      }
      if (critic) {  // the value loss alone trains the critic: d loss / d logp = 0
        critic->zero_grad();
        const Tensor2<float>* no_dz = nullptr;
        token_logprobs_backward(*critic, lc, std::vector<float>(R, 0.0f), no_dz, &dh);
        clip_grad_norm(critic_grad_segments_, global_grad_norm(critic_grad_segments_), a.grad_clip);
        critic_optimizer.step(critic_segments_, critic_grad_segments_, lr, a.adamw);
      }
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
  // Means over no completion are NaN: a step with no task prompt, no correct (or no incorrect) answer.
  const auto mean_or_nan = [](const std::vector<double>& x) {
    return x.empty() ? std::numeric_limits<double>::quiet_NaN() : mean_of(x);
  };
  r.reward_mean = mean_of(all_rewards);
  r.accuracy = mean_or_nan(accuracy);
  r.format_rate = mean_or_nan(format);
  r.response_length = mean_or_nan(length);
  r.rm_score = mean_of(rm_scores);
  r.kl = mean_of(kls);
  r.clip_fraction = mean_of(clip_fractions);
  r.entropy = response_tokens ? entropy_sum / double(response_tokens) : 0.0;
  r.tokens_per_second = sampled_bytes / r.seconds;
  const std::map<std::string, double> row = {
      {"step", double(step)},
      {"reward_mean", r.reward_mean},
      {"reward_std", std_of(all_rewards)},
      {"accuracy", r.accuracy},
      {"format_rate", r.format_rate},
      {"response_length", r.response_length},
      {"pass_at_group", task_groups ? double(solved_groups) / task_groups : std::numeric_limits<double>::quiet_NaN()},
      {"stop_rate", mean_or_nan(stopped)},
      {"reflection_words", mean_or_nan(reflections)},
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
  if (vocab_) metrics["language_consistency"].push_back(mean_or_nan(language));
  if (a.general_prompts > 0) {
    metrics["rm_score"].push_back(mean_of(rm_scores));
    metrics["general_ref_nll"].push_back(general_tokens ? general_nll / double(general_tokens) : 0.0);
    metrics["general_kl_exact"].push_back(general_tokens ? general_kl / double(general_tokens) : 0.0);
    metrics["general_vocab_words"].push_back(mean_of(vocab_words));
    metrics["general_distinct_words"].push_back(mean_of(distinct_words));
  }
  kl_diagnostics.record(metrics);
  metrics["response_length_correct"].push_back(mean_or_nan(length_correct));
  metrics["response_length_incorrect"].push_back(mean_or_nan(length_incorrect));
  if (ppo) {
    metrics["value_loss"].push_back(mean_of(value_losses));
    metrics["value_clip_fraction"].push_back(mean_of(value_clips));
  }
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
