// Helpers shared by the test programs.
#pragma once

#include <cstddef>
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

// Starts the dslab program with `args` (one word each; stderr discarded) and
// SIGKILLs it as soon as `path` exists (a checkpoint, say), waiting at most
// two minutes. True when it was killed; false when it ended first.
bool kill_dslab_when_file_exists(const std::vector<std::string>& args, const std::string& path);

// Reads a whole file.
std::string read_file(const std::string& path);

// max_j |ours[j] - ref[j]| / max_j |ref[j]| over n values.
double relative_error(const double* ours, const double* ref, size_t n);

}  // namespace dslab::test
