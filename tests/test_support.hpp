// Helpers shared by the test programs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dslab::test {

// A fresh, empty directory under the build tree for this test process.
std::string temp_dir(const std::string& name);

// Writes `bytes` bytes of deterministic English-like text (for byte-level
// training without the KJV cache) and returns the path.
std::string write_text_corpus(const std::string& dir, size_t bytes);

// Runs the dslab program with `args` (a shell-quoted string); returns the
// exit status, with stdout+stderr in *output when given.
int run_dslab(const std::string& args, std::string* output = nullptr);

// The same with `env` ("NAME=value ...") set for the program.
int run_dslab_with_env(const std::string& env, const std::string& args, std::string* output = nullptr);

// Starts the dslab program with `args` (one word each; stderr discarded) and
// SIGKILLs it as soon as `path` exists (a checkpoint, say), waiting at most
// two minutes. True when it was killed; false when it ended first.
bool kill_dslab_when_file_exists(const std::vector<std::string>& args, const std::string& path);

// How spawn_dslab starts the program: its stdout and stderr go to `log`; in a
// process group of its own (so that a test can signal it as a terminal's
// Ctrl-C does, kill(-pid, SIGINT)); with RLIMIT_FSIZE set to
// `file_size_limit` bytes and SIGXFSZ ignored, so that a write past it fails
// with EFBIG as a full disk fails with ENOSPC (-1: no limit).
struct SpawnOptions {
  std::string log = "/dev/null";
  bool own_process_group = false;
  long long file_size_limit = -1;
};

// Starts the dslab program with `args` (one word each); returns its pid.
int spawn_dslab(const std::vector<std::string>& args, const SpawnOptions& options = {});

// Waits for `pid` at most `timeout_seconds`: its exit status, 128 + the signal
// that killed it, or -1 when it was still running (it is SIGKILLed then).
int wait_dslab(int pid, double timeout_seconds);

// spawn_dslab, then wait_dslab with a limit of ten minutes.
int spawn_and_wait(const std::vector<std::string>& args, const SpawnOptions& options = {});

// Runs dslab with `args` `kills` times, each time SIGKILLing it `seconds`
// drawn uniformly from [0, max_seconds) after its start (fixed `seed`), and
// calls `after_each` once it is gone; stops early when `done` says the run has
// finished. Returns how many runs were killed (not ended before).
int kill_dslab_at_random_moments(const std::vector<std::string>& args, int kills, double max_seconds,
                                 uint64_t seed, const std::function<void()>& after_each,
                                 const std::function<bool()>& done);

// Reads a whole file.
std::string read_file(const std::string& path);

// max_j |ours[j] - ref[j]| / max_j |ref[j]| over n values.
double relative_error(const double* ours, const double* ref, size_t n);

}  // namespace dslab::test
