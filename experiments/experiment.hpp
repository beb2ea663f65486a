// Experiment files (TOML): runs of run configs (config.hpp).
//   description = "one line for `dslab list`"
//   command = "train"                        # optional: "train" (default) or "rl", the command of every run
//   config = "configs/small.toml"            # relative to the experiment file; optional when every
//                                            #   [[runs]] entry names its own config
//   notebook = "../notebooks/small.ipynb"    # optional: draws the figures from the runs
//   [smoke]                                  # overrides applied by --smoke
//   "train.steps" = 20
//   [[runs]]
//   name = "gqa"
//   command = "rl"                           # optional: this entry's command and config instead of
//   config = "configs/grpo_tiny.toml"        #   the experiment's
//   [runs.set]                               # overrides; a list value is swept (for a key that
//                                            #   takes a list, rollout.stop, a list of lists is)
//   "model.n_kv_heads" = [1, 2, 4]
//   "train.seed" = [1, 2, 3]
//   "rl.init" = "@base"                      # a run reference
// Each [[runs]] entry expands to the cartesian product of its list values.
// Each expanded run is validated with its own config and command (the tables
// of a train or an rl config), with and without the smoke overrides.
//
// Runs as stages: a string value "@NAME" in [runs.set], NAME an expanded run
// of the same experiment ("@base", "@base-seed=2"), stands for that run's
// result file, <results>/<experiment>/NAME.h5 (the smoke one under --smoke),
// and makes the run depend on NAME: `dslab run` starts it only once NAME is
// complete. Any string key may hold one (rl.init for an RL stage on a trained
// base); at load time the key holds the text "@NAME", so the referenced file
// need not exist yet. An unknown NAME or a cycle of references is a
// ConfigError naming file:line, the run and the reference.
// "@EXPERIMENT/NAME" names run NAME of another experiment of the same folder
// (experiments/EXPERIMENT.toml), at <results>/EXPERIMENT/NAME.h5 beside this
// experiment's folder: `dslab run` does not run it, but refuses to start a run
// that needs it before it is complete (run that experiment first, with the same
// --results and --smoke). [smoke] takes no
// references ("@..." there is an error): a smoke run references the smoke
// results through its [runs.set] already.
//
// [smoke] keys are routed by kind: each applies to the runs whose config has
// that key (train.* to train runs; rl.*, grpo.*, rollout.*, ... to rl runs;
// model.*, data.*, ... to both); a key that applies to no run is an error.
//
// A simulator sweep has a notebook but no config and no runs: its [sweep]
// table holds the notebook's parameters, and the notebook runs the simulator.
#pragma once

#include <string>
#include <vector>

#include "experiments/config.hpp"

namespace dslab {

// A "@NAME" value among a run's overrides.
struct RunReference {
  size_t override_index;  // the override "key=\"@NAME\"" in ExperimentRun::overrides
  std::string run;        // NAME
  std::string at;         // "file:line" of the value
  std::string experiment{};  // EXPERIMENT of "@EXPERIMENT/NAME"; empty: this experiment
};

struct ExperimentRun {
  std::string name;                      // e.g. "gqa-n_kv_heads=2-seed=3"
  RunKind command = RunKind::Train;      // dslab train or dslab rl
  std::string config_path;               // resolved: the entry's config, else the experiment's
  std::vector<std::string> overrides;    // "key.path=value" (a TOML value), in file order; a
                                         //   reference keeps its text "@NAME" (resolved_overrides)
  std::vector<std::string> smoke_overrides;  // the [smoke] keys this run's config has, in file order
  std::vector<RunReference> references;  // in file order
  std::vector<std::string> needs;        // the runs of this experiment referenced, each once, in order
};

struct Experiment {
  std::string name;            // file stem, e.g. "quickstart"
  std::string path;
  std::string description;
  RunKind command = RunKind::Train;  // the runs' command unless an entry names its own
  std::string config_path;     // resolved base config; empty for a simulator sweep, or when every
                               //   [[runs]] entry names its own
  std::string notebook;        // resolved notebook path, or empty
  std::vector<std::string> smoke_overrides;  // every [smoke] key, in file order
  std::vector<ExperimentRun> runs;           // in file order; empty for a simulator sweep
};

// Throws ConfigError (file, line, key) for a malformed experiment, including
// any expanded run whose config would be invalid with or without --smoke, an
// unknown run reference and a cycle of references.
Experiment load_experiment(const std::string& path);

// `dir`/NAME.h5: where run NAME's result goes (dir: <results>/<experiment>).
std::string run_result_path(const std::string& dir, const std::string& name);

// The result a reference stands for: run_result_path(dir, NAME) for "@NAME",
// run_result_path(<dir's parent>/EXPERIMENT, NAME) for "@EXPERIMENT/NAME".
std::string reference_path(const RunReference& ref, const std::string& dir);

// The run's overrides with each reference replaced by the TOML string of its
// reference_path(ref, dir).
std::vector<std::string> resolved_overrides(const ExperimentRun& run, const std::string& dir);

}  // namespace dslab
