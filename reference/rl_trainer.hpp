// The GRPO loop (review Sec. 2.5, Eq. (28); DeepSeekMath Algorithm 1), in float:
//   for each step:
//     P problems of the task (reference/tasks.hpp), each in the R1 template
//     -> G completions per prompt from pi_old = the current policy (reference/rollout.hpp)
//     -> rewards (reference/rewards.hpp); with the KL in the reward, r_i - beta sum_t k_t
//     -> group advantages A_i (reference/grpo.hpp), the same for every token of o_i
//     -> log pi_old and log pi_ref of every response token, recomputed exactly by a
//        full forward of the policy and of the reference (reference/logprobs.hpp)
//     -> mu epochs over the groups in mini_batches parts: forward, GRPO loss
//        (policy_loss), backward into the policy, clip, AdamW
//   and, every ref_reset_every steps (0: never), the reference becomes the policy.
// PPO (rl.algorithm = "ppo", Eq. (27)), the baseline GRPO replaces: a value
// head v_t = w . h_t + b on the policy's final hidden state (the state before
// token t), the outcome reward on the last token with -beta k_t on every
// token (the KL in the reward, reference/ppo.hpp), GAE(gamma, lambda) over the
// old values instead of group advantages, and the clipped value loss added to
// the surrogate; its gradient reaches the trunk through h_t. The value head has
// its own AdamW at the same learning rate. With rl.value_model = "policy" the
// head sits on a critic of the policy's size instead (DeepSeekMath's PPO: a
// value model as large as the policy), a copy of the starting policy trained
// by the value loss alone, with its own AdamW.
// Process supervision (grpo.supervision = "process", DeepSeekMath Sec. 4.1.3):
// each step of a completion's <think> text is checked by the task's own
// verifier (process_rewards in reference/tasks.hpp), and a token's advantage is
// the sum of the group-normalised rewards of the steps ending at or after it
// (process_advantages); the [reward] weights are not used then.
// Dynamic sampling (DAPO): groups whose rewards are all equal carry no signal;
// with rl.dynamic_sampling they are dropped and more prompts are sampled, up to
// rl.max_sampling_rounds rounds, so a step trains on at most P groups.
// R1 stage 4, "all scenarios": the last rl.general_prompts of each step's P
// prompts are general prompts — rl.general_prefix bytes of the [data] text
// from a uniform position (general_prompt), no template — whose completions
// are scored by a learned reward model on prompt + completion
// (reference/reward_model.hpp), weight reward.preference; the rule rewards
// score the task prompts as before. Task metrics (accuracy, format, ...) are
// over the task completions (NaN in a step with none); the general ones are
// rm_score, general_ref_nll (-log pi_ref per token: how the reference model
// reads the text), general_kl_exact (per token), general_vocab_words (share of
// [data] vocabulary words) and general_distinct_words (distinct words / words).
// MoE models: the expert biases of auxiliary-loss-free balancing (Eq. (24))
// keep their starting values during RL (no bias update runs here).
// Everything a step draws comes from (seed, step, round): a resumed run and a
// run on another thread count give the same numbers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "reference/accounting.hpp"
#include "reference/adamw.hpp"
#include "reference/grpo.hpp"
#include "reference/ppo.hpp"
#include "reference/reward_model.hpp"
#include "reference/rewards.hpp"
#include "reference/rollout.hpp"
#include "reference/tasks.hpp"
#include "reference/trainer.hpp"
#include "reference/transformer.hpp"

namespace dslab {

// The [rl] section of an RL config.
struct RlArgs {
  RlAlgorithm algorithm = RlAlgorithm::Grpo;
  ValueModel value_model = ValueModel::Head;  // PPO: the head on the policy's trunk, or on a critic of its size
  int64_t steps = 20;
  int prompts_per_step = 4;      // P (problems per step; G = rollout.group_size each)
  int ppo_epochs = 1;            // mu: policy updates per rollout batch (Eq. (28)'s pi_old != pi_theta after the first)
  int mini_batches = 1;          // optimizer steps per epoch, over disjoint sets of groups
  double lr = 1e-4;              // constant after a linear warm-up
  int64_t warmup_steps = 0;
  AdamWArgs adamw{.weight_decay = 0.0};  // rl.weight_decay (TRL: 0); betas and eps as training's
  double grad_clip = 1.0;        // max global gradient norm; 0 disables
  uint64_t seed = 1;             // rollouts; the policy's weights when init is empty
  uint64_t task_seed = 1;        // the problems: problem j of the run is make_problem(task, task_seed, j)
  std::string init;              // a dslab train result or checkpoint whose weights start the policy; "": fresh
  int64_t ref_reset_every = 0;   // the reference becomes the policy every k steps (DeepSeekMath Alg. 1); 0: fixed
  bool dynamic_sampling = false; // DAPO: drop groups whose rewards are all equal, sample more
  int max_sampling_rounds = 3;   // rounds of P prompts a dynamic-sampling step may draw
  int64_t sample_every = 10;     // keep the prompt and completions of the first group every k steps (0: last only)
  int64_t checkpoint_every = 10;
  int general_prompts = 0;       // of the P prompts, general ones scored by reward.model (R1 stage 4)
  int general_prefix = 32;       // bytes of [data] text in a general prompt
  // Rules across keys: prompts_per_step divisible by mini_batches; the prompt
  // and rollout.max_new_tokens fit model.max_seq_len (checked per problem too).
  void validate(const ModelArgs& model, const RolloutArgs& rollout) const;
};

// Everything an RL run is configured by, besides the model.
struct RlSetup {
  RlArgs rl;
  GrpoArgs grpo;
  PpoArgs ppo;        // rl.algorithm = "ppo" only
  RolloutArgs rollout;
  TaskArgs task;
  RewardArgs reward;
  // Every section's rules and those across them (PPO's KL goes in the reward,
  // so grpo.kl_estimator must be k1, k2 or k3). Throws ArgsError.
  void validate(const ModelArgs& model) const;
};

// General prompt `index` of the stream `seed`: `prefix` bytes of `text` from a
// position drawn from Rng(seed ^ kGeneralStream, index). Throws
// std::invalid_argument when the text is shorter than the prefix.
constexpr uint64_t kGeneralStream = 0x67656E;  // "gen"
std::vector<int> general_prompt(const std::vector<uint8_t>& text, int prefix, uint64_t seed, uint64_t index);

// What one step did, for progress lines and the metrics.
struct RlStepReport {
  int64_t step = 0, steps = 0;
  double reward_mean = 0, accuracy = 0, format_rate = 0, response_length = 0;
  double rm_score = 0;  // mean reward-model score of the general completions (0 without)
  double kl = 0, clip_fraction = 0, entropy = 0, tokens_per_second = 0, seconds = 0;
};

// Prompts and completions kept for reading (at rl.sample_every steps).
struct RlSample {
  int64_t step = 0;
  std::string prompt;
  std::vector<std::string> completions;
  std::vector<double> rewards;
};

// The step rewards of completions for process_advantages: completion i answers
// problems[i / group_size]; a step ending at byte e of the completion ends at
// its token e - 1 (the tokens are bytes).
StepRewards completion_step_rewards(const std::vector<Problem>& problems, const std::vector<Completion>& completions,
                                    int group_size);

class RlTrainer {
 public:
  // `vocab` (the language-consistency reward's target language) may be null
  // when reward.language is 0. With rl.general_prompts > 0, `reward_model`
  // (reward.model's, read by the caller; it must hold general_prefix +
  // max_new_tokens tokens) and `general_text` (the general prompts' source)
  // are needed; none of the three is copied. The policy starts from
  // init_weights(rl.seed); a caller loading rl.init overwrites policy's
  // weights and calls reset_reference().
  RlTrainer(const ModelArgs& model_args, const RlSetup& setup, const Vocabulary* vocab,
            LearnedRewardModel<float>* reward_model = nullptr, const std::vector<uint8_t>* general_text = nullptr);
  RlTrainer(const RlTrainer&) = delete;  // it keeps views of its models' arenas
  RlTrainer& operator=(const RlTrainer&) = delete;

  void run(const std::function<bool(const RlStepReport&)>& on_step);
  RlStepReport rl_step();
  // The reference model (and, before any step, the critic) becomes a copy of the policy's weights.
  void reset_reference();

  RlSetup setup;
  Transformer<float> policy, reference;
  AdamW<float> optimizer;
  // PPO's value head: w [D] then b, v = w . h + b; its gradient and optimizer.
  std::vector<float> value_head, value_grad;
  AdamW<float> value_optimizer;
  // PPO with value_model = "policy": the critic the head reads (null otherwise).
  std::unique_ptr<Transformer<float>> critic;
  AdamW<float> critic_optimizer;
  // "weight" [1, D] and "bias" [1] of value_head (or of value_grad), for files.
  std::vector<ParamRef<float>> value_head_refs(std::vector<float>& buffer);
  int64_t step = 0;  // steps completed
  Metrics metrics;
  std::vector<RlSample> samples;

 private:
  const Vocabulary* vocab_;
  LearnedRewardModel<float>* reward_model_;
  const std::vector<uint8_t>* general_text_;
  std::vector<Segment<float>> param_segments_, grad_segments_, value_segments_, value_grad_segments_;
  std::vector<Segment<float>> critic_segments_, critic_grad_segments_;
};

}  // namespace dslab
