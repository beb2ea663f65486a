#include "tests/test_support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
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

int run_dslab(const std::string& args, std::string* output) {
  const std::string cmd = std::string(DSLAB_BINARY) + " " + args + " 2>&1";
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

bool kill_dslab_when_file_exists(const std::vector<std::string>& args, const std::string& path) {
  std::vector<std::string> all = {DSLAB_BINARY};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t quiet;
  posix_spawn_file_actions_init(&quiet);
  posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, DSLAB_BINARY, &quiet, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&quiet);
  if (spawned != 0) throw std::runtime_error("cannot start " + std::string(DSLAB_BINARY));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status);
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
