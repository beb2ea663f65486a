// HDF5 run files and checkpoints.
//
// A result file (FILE.h5) holds:
//   /config                 string dataset: the effective config (TOML)
//   /metrics/<name>         1-D float64 datasets (step, train_loss, val_loss, lr, ...)
//   /model/<param name>     the final weights (float32, their shapes)
//   attributes on /: dslab_version, git_commit, seed, threads, wall_seconds,
//                    steps, num_parameters, complete = 1
// A checkpoint (FILE.ckpt.h5, kept beside FILE.h5 while a run is incomplete)
// holds the same plus /optimizer/m/<name>, /optimizer/v/<name>, and the
// attributes step and adamw_t, enough to resume bitwise exactly.
// Both are written to FILE.tmp-<pid> first and renamed when complete, so a
// killed run never leaves a partial file under the final name.
#pragma once

#include <string>

#include "experiments/config.hpp"
#include "reference/trainer.hpp"

namespace dslab {

struct RunInfo {
  std::string config_text;
  uint64_t seed = 0;
  int threads = 1;
  double wall_seconds = 0;
};

std::string checkpoint_path(const std::string& result_path);  // FILE.h5 -> FILE.ckpt.h5

void write_result(const std::string& path, const RunInfo& info, Trainer& trainer);
void write_checkpoint(const std::string& path, const RunInfo& info, Trainer& trainer);

// Restores weights, optimizer state, step and metrics into a trainer built
// from the same config. Throws std::runtime_error when the file is missing,
// unreadable, or its config differs from `config_text` (naming the difference).
void read_checkpoint(const std::string& path, const std::string& config_text, Trainer& trainer);

// True when `path` is a readable result file with complete = 1.
bool result_complete(const std::string& path);

// The config text and the final weights of a result file (or checkpoint),
// for `dslab sample`. Throws std::runtime_error naming the file on failure.
std::string read_config_text(const std::string& path);
void read_model(const std::string& path, Transformer<float>& model);

// Metrics of a result file (all /metrics datasets).
Metrics read_metrics(const std::string& path);

}  // namespace dslab
