// Run and experiment configuration files (TOML, read with toml++).
//
// A run config has these tables, whose keys follow DeepSeek's config names:
//   [model]  ModelArgs     (dim, n_layers, n_heads, n_kv_heads, inter_dim, ...,
//                           MLA and MoE keys)
//   [balance] BalanceArgs  (MoE load balancing: aux_alpha, ..., bias_update)
//   [mtp]    ModelArgs::mtp (depth, lambda, ...: Multi-Token Prediction; optional)
//   [train]  TrainArgs     (steps, batch_size, seq_len, lr, ..., seed)
//   [data]   DataArgs      (path, val_fraction)
//   [fp8]    ModelArgs::fp8 (recipe, format, granularities, ...: FP8 linear layers)
// plus an optional top-level `extends = "base.toml"` (resolved relative to the
// file) whose values the file overrides, table by table, key by key.
//
// Every key is checked against one schema: an unknown key, a wrong type or a
// value out of range raises ConfigError naming the file, the line, the key
// path and what is allowed; then the cross-field rules (dim divisible by
// n_heads, even head_dim for RoPE, seq_len <= max_seq_len, ...) are checked.
// `--set key.path=value` overrides are parsed as TOML values (`v = value`)
// and checked the same way; for a string key, a value that is not a TOML
// string is taken as raw text (`--set data.path=corpus.txt`).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "reference/trainer.hpp"
#include "reference/transformer.hpp"

namespace dslab {

struct DataArgs {
  std::string path = "kjv";    // "kjv": the cached KJV corpus (see resolve_data_path)
  double val_fraction = 0.1;
};

struct RunConfig {
  ModelArgs model;
  TrainArgs train;
  DataArgs data;
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

// One line per key of the schema, in aligned columns:
//   "model.dim  integer  1 .. 65536  default 128  model width D"
std::vector<std::string> describe_config_keys();

// Where the "kjv" data path points: $DSLAB_DATA/kjv.txt if DSLAB_DATA is set,
// else $XDG_CACHE_HOME/dslab/kjv.txt, else ~/.cache/dslab/kjv.txt. Any other
// path is returned as given.
std::string resolve_data_path(const std::string& path);

// An experiment file lists runs of one base config:
//   description = "one line for `dslab list`"
//   config = "configs/small.toml"            # relative to the experiment file
//   notebook = "../notebooks/small.ipynb"    # optional: draws the figures from the runs
//   [smoke]                                  # overrides applied by --smoke
//   "train.steps" = 20
//   [[runs]]
//   name = "gqa"
//   [runs.set]                               # overrides; a list value is swept
//   "model.n_kv_heads" = [1, 2, 4]
//   "train.seed" = [1, 2, 3]
// Each [[runs]] entry expands to the cartesian product of its list values.
// A simulator sweep has a notebook but no config and no runs: its [sweep]
// table holds the notebook's parameters, and the notebook runs the simulator.
struct ExperimentRun {
  std::string name;                      // e.g. "gqa-n_kv_heads=2-seed=3"
  std::vector<std::string> overrides;    // "key.path=value" (a TOML value), in file order
};

struct Experiment {
  std::string name;            // file stem, e.g. "quickstart"
  std::string path;
  std::string description;
  std::string config_path;     // resolved base config; empty for a simulator sweep
  std::string notebook;        // resolved notebook path, or empty
  std::vector<std::string> smoke_overrides;
  std::vector<ExperimentRun> runs;
};

// Throws ConfigError (file, line, key) for a malformed experiment, including
// any expanded run whose config would be invalid with or without --smoke.
Experiment load_experiment(const std::string& path);

}  // namespace dslab
