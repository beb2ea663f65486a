// What `dslab train` and `dslab rl` share around their loops: the result file
// is never overwritten, a checkpoint beside it is resumed only when asked, and
// Ctrl-C (SIGINT) or SIGTERM stops the loop after the step in progress, with a
// checkpoint, exit status 130.
#pragma once

#include <csignal>
#include <filesystem>
#include <iostream>
#include <string>

#include "experiments/commands.hpp"
#include "experiments/results.hpp"

namespace dslab {

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
