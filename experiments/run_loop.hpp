// What `dslab train` and `dslab rl` share around their loops: the result file
// is never overwritten, a checkpoint beside it is resumed only when asked, and
// Ctrl-C (SIGINT) or SIGTERM stops the loop after the step in progress, with a
// checkpoint, exit status 130.
#pragma once

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/results.hpp"

namespace dslab {

// The command line dslab train and dslab rl share.
struct RunCommandOptions {
  std::string config, out, label;  // label: "[name] " once the command runs, or ""
  std::vector<std::string> sets;
  bool resume = false, list_keys = false;
  int threads = 0;
};

// CONFIG, --out, --set, --resume, --threads, --label and --keys on `cmd`. Its
// callback lists the config keys of `kind` for --keys; otherwise it needs
// CONFIG and --out (BadInput) and calls `run`.
inline void add_run_command_options(CLI::App* cmd, RunKind kind, const std::string& config_help,
                                    const std::string& keys_help,
                                    std::function<void(const RunCommandOptions&)> run) {
  auto o = std::make_shared<RunCommandOptions>();
  cmd->add_option("config", o->config, config_help);
  cmd->add_option("--out", o->out, "Result file to write (HDF5)");
  cmd->add_option("--set", o->sets, "Override a config key: key.path=value (repeatable)");
  cmd->add_flag("--resume", o->resume, "Continue from the checkpoint kept beside --out");
  cmd->add_option("--threads", o->threads, "OpenMP threads (default: OMP_NUM_THREADS or all cores)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--label", o->label, "Prefix for progress lines");
  cmd->add_flag("--keys", o->list_keys, keys_help);
  const std::string name = cmd->get_name();
  cmd->callback([o, kind, name, run] {
    if (o->list_keys) {
      for (const auto& line : describe_config_keys(kind)) std::cout << line << "\n";
      return;
    }
    if (o->config.empty() || o->out.empty())
      throw BadInput(name + " needs a config file and --out FILE.h5 (see dslab " + name + " --help)");
    RunCommandOptions opts = *o;
    if (!opts.label.empty()) opts.label = "[" + opts.label + "] ";
    run(opts);
  });
}

// Reads the weights a run starts from (train.init, rl.init) into `model`;
// BadInput naming the key when the file cannot be read or does not fit.
inline void read_init(const std::string& key, const std::string& path, Transformer<float>& model) {
  try {
    read_model(path, model);
  } catch (const std::runtime_error& e) {
    throw BadInput(key + ": " + e.what());
  }
}

// "1h05m", "3m07s", "42s": an ETA on a progress line.
inline std::string format_duration(double seconds) {
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s % 3600 / 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

// True when --resume finds `out` already complete (nothing to do); throws
// BadInput when `out` exists otherwise.
inline bool already_complete(const std::string& out, bool resume, const std::string& label) {
  if (!std::filesystem::exists(out)) return false;
  if (resume && result_complete(out)) {
    std::cerr << label << out << " is already complete\n";
    return true;
  }
  throw BadInput("'" + out + "' already exists; choose another --out or remove it");
}

// Whether to read the checkpoint `ckpt`: with --resume when it exists; without
// --resume an existing checkpoint is an error (it would be overwritten).
inline bool resume_from(const std::string& ckpt, bool resume) {
  const bool exists = std::filesystem::exists(ckpt);
  if (exists && !resume)
    throw BadInput("a checkpoint of an unfinished run exists at '" + ckpt +
                   "'; add --resume to continue it, or remove it to start over");
  return exists && resume;
}

// SIGINT and SIGTERM set a flag while this object lives; the previous handlers come back after.
class StopSignals {
 public:
  StopSignals() : old_int_(std::signal(SIGINT, request)), old_term_(std::signal(SIGTERM, request)) { flag() = 0; }
  ~StopSignals() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  bool requested() const { return flag() != 0; }
  // Says where the run stopped and exits with status 130 (as a shell does after Ctrl-C).
  [[noreturn]] static void exit_stopped(const std::string& label, int64_t step, const std::string& ckpt) {
    std::cerr << label << "stopped at step " << step << "; checkpoint " << ckpt << " (continue with --resume)\n";
    throw CLI::RuntimeError(130);
  }

 private:
  static volatile std::sig_atomic_t& flag() {
    static volatile std::sig_atomic_t stop = 0;
    return stop;
  }
  static void request(int) { flag() = 1; }
  using Handler = void (*)(int);
  Handler old_int_, old_term_;
};

}  // namespace dslab
