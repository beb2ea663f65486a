// HDF5 run files and checkpoints.
//
// A result file (FILE.h5) holds:
//   /config                 string dataset (variable-length UTF-8): the effective config (TOML)
//   /metrics/<name>         1-D float64 datasets, the trainer's metric columns
//                           (step, train_loss, lr, grad_norm, tokens_per_second,
//                           step_seconds, val_step, val_loss)
//   /model/<param name>     the final weights (float32, their shapes) and the
//                           expert biases of auxiliary-loss-free balancing
//                           (layers.<l>.ffn.gate.bias, not trained)
//   /captured/<name>        tensors kept for the simulators (experiments/capture.hpp),
//                           float32 in their shapes; result files only
//   attributes on /: dslab_version, git_commit, blas_core (strings), seed, threads,
//                    steps (steps completed), num_parameters, complete = 1
//                    (integers), wall_seconds (float64)
// A checkpoint (FILE.ckpt.h5, kept beside FILE.h5 while a run is incomplete)
// holds the same with complete = 0, plus /optimizer/m/<name>,
// /optimizer/v/<name> (float32, the parameter's shape) and the attribute
// adamw_t: enough to resume bitwise exactly.
// Both are written to FILE.tmp-<pid> first and renamed when closed, so a
// killed run never leaves a partial file under the final name. Every failure
// is a std::runtime_error naming the file.
#pragma once

#include <optional>
#include <string>

#include "experiments/capture.hpp"
#include "experiments/config.hpp"
#include "reference/reward_model.hpp"
#include "reference/rl_trainer.hpp"
#include "reference/trainer.hpp"

namespace dslab {

struct RunInfo {
  std::string config_text;
  uint64_t seed = 0;
  int threads = 1;
  double wall_seconds = 0;
};

std::string checkpoint_path(const std::string& result_path);  // FILE.h5 -> FILE.ckpt.h5

// Write the trainer's state whole, or throw leaving nothing behind. The
// parent folder is created when missing.
void write_result(const std::string& path, const RunInfo& info, Trainer& trainer, const Captured& captured = {});
void write_checkpoint(const std::string& path, const RunInfo& info, Trainer& trainer);

// Restores weights, optimizer state, step and metrics into a trainer built
// from the same config. Throws std::runtime_error when the file is missing,
// unreadable, its config differs from `config_text` (naming the first
// differing line), or its parameter names or shapes differ from the model's;
// the trainer is left unchanged then.
void read_checkpoint(const std::string& path, const std::string& config_text, Trainer& trainer);

// True when `path` is a readable result file with complete = 1; false for a
// missing, unreadable or non-HDF5 file and for a checkpoint.
bool result_complete(const std::string& path);

// The config text and the final weights of a result file (or checkpoint),
// for `dslab sample`. Throws std::runtime_error naming the file on failure
// (read_model also when parameter names or shapes differ from the model's).
std::string read_config_text(const std::string& path);
void read_model(const std::string& path, Transformer<float>& model);

// Metrics of a result file (all /metrics datasets).
Metrics read_metrics(const std::string& path);

// RL runs (dslab rl): the same layout, /model the policy, plus
//   /samples/step, /samples/prompt [n]; /samples/n_completions [n];
//   /samples/completions, /samples/rewards [sum of n_completions]; the texts
//   are sampled bytes kept as printable ASCII ('\n', '\t' as they are, a
//   backslash doubled, any other byte as \xHH)
//   /value_head/weight [1, D], /value_head/bias [1] (PPO's; 0 for GRPO)
// and, in a checkpoint, /reference/<param name> (the reference model) and
// /value_optimizer (optimizer/m/{weight,bias}, optimizer/v/..., attribute
// adamw_t: the layout a checkpoint's root has for the model); with
// rl.value_model = "policy" also /critic/<param name> and /critic_optimizer
// in the same layout.
void write_rl_result(const std::string& path, const RunInfo& info, RlTrainer& trainer);
void write_rl_checkpoint(const std::string& path, const RunInfo& info, RlTrainer& trainer);
void read_rl_checkpoint(const std::string& path, const std::string& config_text, RlTrainer& trainer);

// Eval runs (dslab eval): /config, the attributes of / (steps 0, num_parameters
// of the model evaluated, complete = 1), no /model, and
//   /metrics/k, /metrics/pass_at_k, /metrics/maj_at_k [K]
//   /metrics/<name> [1] for accuracy, format_rate, language_consistency,
//     response_length, reflection_words, stopped, yield (pairs / samples),
//     tokens_per_second, sample_seconds, peak_rss_mib, and val_loss when given
//     (eval.val_batches > 0: dslab train's validation loss of the model)
//   /problems/prompt [M], /problems/correct [M] (correct samples of each)
//   /pairs/prompt, /pairs/response [kept], /pairs/problem [kept]: the pairs
//     rejection sampling kept, texts escaped as /samples' are
void write_eval_result(const std::string& path, const RunInfo& info, const EvalResult& result,
                       int64_t num_parameters, std::optional<double> val_loss = std::nullopt);

// Reward-model runs (dslab reward): the layout of a training run, /model the
// trunk, plus /reward_head/weight [1, D] and /reward_head/bias [1]; a checkpoint
// adds /optimizer (the trunk's, at the root as dslab train's) and
// /head_optimizer (the head's, in the same layout).
void write_reward_result(const std::string& path, const RunInfo& info, RewardModelTrainer& trainer);
void write_reward_checkpoint(const std::string& path, const RunInfo& info, RewardModelTrainer& trainer);
void read_reward_checkpoint(const std::string& path, const std::string& config_text, RewardModelTrainer& trainer);
// The reward model of a dslab reward result, built from the config it keeps.
// Throws std::runtime_error naming the file when it is missing, incomplete or
// not a reward-model result.
LearnedRewardModel<float> read_reward_model(const std::string& path);

// The prompt -> response pairs of an SFT run ([data] pairs): an eval result's
// /pairs, or a JSON Lines file, one {"prompt": ..., "response": ...} object
// per line (other members ignored, blank lines skipped). Throws
// std::runtime_error naming the file (and the line) when it cannot be read,
// is not one of the two, or holds no pair.
std::vector<SftPair> read_pairs(const std::string& path);

}  // namespace dslab
