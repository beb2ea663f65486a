// Autoregressive sampling from the reference transformer, byte by byte.
// temperature 0 means greedy; top_k 0 means the whole vocabulary.
#pragma once

#include <cstdint>
#include <string>

#include "reference/transformer.hpp"

namespace dslab {

struct SampleArgs {
  int tokens = 200;
  double temperature = 1.0;
  int top_k = 0;
  uint64_t seed = 1;
};

// Returns the generated continuation (the prompt not included). The context
// is cropped to the model's max_seq_len.
std::string generate(Transformer<float>& model, const std::string& prompt, const SampleArgs& args);

}  // namespace dslab
