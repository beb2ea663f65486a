// Helpers shared by the test programs.
#pragma once

#include <cstddef>
#include <string>

namespace dslab::test {

// A fresh, empty directory under the build tree for this test process.
std::string temp_dir(const std::string& name);

// Writes `bytes` bytes of deterministic English-like text (for byte-level
// training without the KJV cache) and returns the path.
std::string write_text_corpus(const std::string& dir, size_t bytes);

// Runs the dslab program with `args` (a shell-quoted string); returns the
// exit status, with stdout+stderr in *output when given.
int run_dslab(const std::string& args, std::string* output = nullptr);

// Reads a whole file.
std::string read_file(const std::string& path);

// max_j |ours[j] - ref[j]| / max_j |ref[j]| over n values.
double relative_error(const double* ours, const double* ref, size_t n);

}  // namespace dslab::test
