// Run configuration files (TOML, read with toml++); experiment files, which
// list runs of one config, are experiments/experiment.hpp.
//
// A run config has these tables, whose keys follow DeepSeek's config names:
//   [model]  ModelArgs     (dim, n_layers, n_heads, n_kv_heads, inter_dim, ...,
//                           MLA and MoE keys)
//   [balance] BalanceArgs  (MoE load balancing: aux_alpha, ..., bias_update)
//   [mtp]    ModelArgs::mtp (depth, lambda, ...: Multi-Token Prediction; optional)
//   [train]  TrainArgs     (steps, batch_size, seq_len, lr, ..., seed)
//   [data]   DataArgs      (path, val_fraction) and TrainArgs::task_text
//                           (task_share, response, loss: task rows mixed in, data.hpp)
//   [task]   TaskArgs      (the problems of the task rows)
//   [fp8]    ModelArgs::fp8 (recipe, format, granularities, ...: FP8 linear layers)
// An RL config (`dslab rl`) has [model], [balance], [mtp], [fp8] and [data]
// (the language-consistency reward's vocabulary) as above, and instead of
// [train] the sections of reference/rl_trainer.hpp's RlSetup:
//   [rl]      RlArgs       (steps, prompts_per_step, ppo_epochs, lr, init, ...)
//   [grpo]    GrpoArgs     (aggregation, kl_estimator, beta, clip_eps, ...: Eq. (28))
//   [ppo]     PpoArgs      (gamma, lam, value_clip, value_coef: Eq. (27), rl.algorithm = "ppo")
//   [rollout] RolloutArgs  (group_size, max_new_tokens, temperature, top_k, top_p, stop)
//   [task]    TaskArgs     (kind, difficulty)
//   [reward]  RewardArgs   (weights of accuracy, format, language, ...)
// An eval config (`dslab eval`) is an RL config plus
//   [eval]    EvalArgs     (init, problems, samples, keep_language, ...: pass@k, maj@k,
//                           rejection sampling; reference/eval.hpp)
// so that the RL run's config evaluates its result; it reads [model], [task],
// [rollout] (not group_size), [data] (the language's vocabulary) and [eval],
// and checks but does not use [rl], [grpo], [ppo] and [reward].
// A reward-model config (`dslab reward`) has [model], [balance], [mtp], [fp8],
// [data] (the text its preference pairs come from) and
//   [rm]      RmArgs       (steps, pairs_per_step, prefix_bytes, response_bytes,
//                           corruption, lr, init, ...: reference/reward_model.hpp)
// plus an optional top-level `extends = "base.toml"` (resolved relative to the
// file) whose values the file overrides, table by table, key by key.
//
// Every key is checked against one schema (config_schema.cpp): an unknown key,
// a wrong type or a value out of range raises ConfigError naming the file, the
// line, the key path and what is allowed; the choices of a closed set come
// from its enum's name table (reference/enum_names.hpp). Then the rules across
// keys, which are the reference's (ModelArgs::validate, TrainArgs::validate:
// dim divisible by n_heads, even head_dim for RoPE, seq_len <= max_seq_len,
// ...), are checked; a broken one is reported where the last of its keys was
// set, naming where the others were set (config_loader.cpp).
// `--set key.path=value` overrides are parsed as TOML values (`v = value`)
// and checked the same way; for a string key, a value that is not a TOML
// string is taken as raw text (`--set data.path=corpus.txt`).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "reference/enum_names.hpp"
#include "reference/eval.hpp"
#include "reference/reward_model.hpp"
#include "reference/rl_trainer.hpp"
#include "reference/trainer.hpp"
#include "reference/transformer.hpp"

namespace dslab {

struct DataArgs {
  std::string path = "kjv";    // "kjv": the cached KJV corpus (see resolve_data_path)
  double val_fraction = 0.1;
};

// Which command a config is for: the tables it may hold and its rules.
enum class RunKind { Train, Rl, Eval, Reward };
template <> struct EnumNames<RunKind> {
  // dslab train, rl, eval, reward
  static constexpr std::array<std::string_view, 4> names = {"train", "rl", "eval", "reward"};
};

struct RunConfig {
  RunKind kind = RunKind::Train;
  ModelArgs model;
  TrainArgs train;     // Train only
  RlSetup rl;          // Rl and Eval (which reads its rollout, task and reward)
  EvalArgs eval;       // Eval only
  RmArgs rm;           // Reward only
  DataArgs data;
  TaskArgs task;       // [task]; the loader copies it to rl.task (Rl) or train.task_text.task (Train)
  std::string text;    // the effective config (extends and overrides applied), as TOML
};

// A bad config. what() is the complete message, e.g.
//   experiments/configs/tiny.toml:7: model.dim = -4 is out of range: allowed 1 .. 65536
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Loads a run config file, applies `overrides` ("key.path=value", in order,
// after extends) and validates. Throws ConfigError.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Parses the effective config text kept in a result file (no extends, no file).
// parse_run_config_text(c.text).text == c.text, floats bit for bit.
RunConfig parse_run_config_text(const std::string& text);

// The same for RL configs (kind Rl).
RunConfig load_rl_config(const std::string& path, const std::vector<std::string>& overrides = {});
RunConfig parse_rl_config_text(const std::string& text);

// The same for eval configs (kind Eval).
RunConfig load_eval_config(const std::string& path, const std::vector<std::string>& overrides = {});
RunConfig parse_eval_config_text(const std::string& text);

// The same for reward-model configs (kind Reward).
RunConfig load_reward_config(const std::string& path, const std::vector<std::string>& overrides = {});
RunConfig parse_reward_config_text(const std::string& text);

// One line per key of the schema, in aligned columns:
//   "model.dim  integer  1 .. 65536  default 128  model width D"
std::vector<std::string> describe_config_keys(RunKind kind = RunKind::Train);

// Where the "kjv" data path points: $DSLAB_DATA/kjv.txt if DSLAB_DATA is set,
// else $XDG_CACHE_HOME/dslab/kjv.txt, else ~/.cache/dslab/kjv.txt. Any other
// path is returned as given.
std::string resolve_data_path(const std::string& path);

}  // namespace dslab
