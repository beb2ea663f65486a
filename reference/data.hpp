// Byte-level data: any file is a token stream with vocabulary 256.
// The last val_fraction of the bytes is the validation split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/tensor.hpp"

namespace dslab {

struct ByteCorpus {
  std::vector<uint8_t> train, val;
  // Throws std::runtime_error naming the file when it cannot be read or is
  // too small to split.
  static ByteCorpus from_file(const std::string& path, double val_fraction);
  static ByteCorpus from_text(const std::string& text, double val_fraction);
};

// One batch: `batch` windows of seq_len+1 bytes; inputs are the first
// seq_len bytes of each, targets the last seq_len. Both [batch*seq_len].
struct Batch {
  std::vector<int> inputs, targets;
};

// The training batch of step `step`: window offsets drawn from Rng(seed, step),
// so the batch depends only on (seed, step), which makes resuming exact.
Batch train_batch(const std::vector<uint8_t>& data, int batch, int seq_len, uint64_t seed,
                  int64_t step);

// Validation batch `index` of `count`: windows evenly spaced over the split.
Batch eval_batch(const std::vector<uint8_t>& data, int batch, int seq_len, int index, int count);

}  // namespace dslab
