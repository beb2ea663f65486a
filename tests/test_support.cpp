#include "tests/test_support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "reference/tensor.hpp"

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
