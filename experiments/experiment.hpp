// Experiment files (TOML): the runs of one base run config (config.hpp).
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
#pragma once

#include <string>
#include <vector>

#include "experiments/config.hpp"

namespace dslab {

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
