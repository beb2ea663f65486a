#include "tests/test_support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <stdexcept>

#include "reference/tensor.hpp"

extern char** environ;

namespace dslab::test {

std::string temp_dir(const std::string& name) {
  namespace fs = std::filesystem;
  // The process id keeps test cases that ctest runs side by side apart.
  fs::path p = fs::path(DSLAB_TEST_TMP) / (name + "-" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string write_text_corpus(const std::string& dir, size_t bytes) {
  static const char* words[] = {"and", "the", "of", "unto", "lord", "said", "he", "they",
                                "his", "shall", "in", "that", "land", "people", "king", "house"};
  Rng rng(7);
  std::string text;
  while (text.size() < bytes) {
    const int n = 4 + int(rng.below(10));
    for (int i = 0; i < n; ++i) {
      text += words[rng.below(16)];
      text += i + 1 < n ? " " : ".\n";
    }
  }
  text.resize(bytes);
  const std::string path = dir + "/corpus.txt";
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

int run_dslab(const std::string& args, std::string* output) { return run_dslab_with_env("", args, output); }

int run_dslab_with_env(const std::string& env, const std::string& args, std::string* output) {
  const std::string cmd = (env.empty() ? "" : "env " + env + " ") + std::string(DSLAB_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + cmd);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int spawn_dslab(const std::vector<std::string>& args, const SpawnOptions& options) {
  std::vector<std::string> all = {DSLAB_BINARY};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("cannot fork to start " + std::string(DSLAB_BINARY));
  if (pid == 0) {  // async-signal-safe calls only, up to execv
    if (options.own_process_group) setpgid(0, 0);
    if (options.file_size_limit >= 0) {
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      sigaction(SIGXFSZ, &ignore, nullptr);
      const rlimit limit{rlim_t(options.file_size_limit), rlim_t(options.file_size_limit)};
      setrlimit(RLIMIT_FSIZE, &limit);
    }
    const int fd = open(options.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int wait_dslab(int pid, double timeout_seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) throw std::runtime_error("waitpid failed");
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

int spawn_and_wait(const std::vector<std::string>& args, const SpawnOptions& options) {
  return wait_dslab(spawn_dslab(args, options), 600);
}

bool kill_dslab_when_file_exists(const std::vector<std::string>& args, const std::string& path) {
  const pid_t pid = spawn_dslab(args);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(pid, SIGKILL);
  return wait_dslab(pid, 60) == 128 + SIGKILL;
}

int kill_dslab_at_random_moments(const std::vector<std::string>& args, int kills, double max_seconds,
                                 uint64_t seed, const std::function<void()>& after_each,
                                 const std::function<bool()>& done) {
  Rng rng(seed);
  int killed = 0;
  for (int i = 0; i < kills && !done(); ++i) {
    const double moment = max_seconds * rng.uniform();
    const pid_t pid = spawn_dslab(args);
    const auto at = std::chrono::steady_clock::now() + std::chrono::duration<double>(moment);
    int status = 0;
    pid_t r = 0;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < at)
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    if (r == 0) {
      kill(pid, SIGKILL);
      killed += wait_dslab(pid, 60) == 128 + SIGKILL;
    }
    after_each();
  }
  return killed;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double relative_error(const double* ours, const double* ref, size_t n) {
  double max_diff = 0, max_ref = 0;
  for (size_t j = 0; j < n; ++j) {
    max_diff = std::max(max_diff, std::abs(ours[j] - ref[j]));
    max_ref = std::max(max_ref, std::abs(ref[j]));
  }
  return max_diff / max_ref;
}

}  // namespace dslab::test
