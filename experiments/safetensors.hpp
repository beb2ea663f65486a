// The safetensors format (Hugging Face's checkpoints, DeepSeek-V3's published
// weights): an 8-byte little-endian header length n, n bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]},
//    ..., "__metadata__": {"<key>": "<string>", ...}}
// and the tensors' bytes, row-major and little-endian, at [8 + n + begin, 8 + n + end).
//
// Reading checks the whole header before a byte of data is used: its length
// against the file, the JSON, each entry's dtype, shape and offsets (inside the
// data, the size dtype x shape, no two tensors overlapping). Values are decoded
// to float or double through reference/fp8's codecs, exactly: BF16 is e8m7,
// F16 e5m10, F8_E4M3 e4m3fn, F8_E5M2 e5m2. Every failure is a BadInput naming
// the file (and the tensor).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dslab {

enum class StDtype { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL };

const char* st_dtype_name(StDtype d);  // "F32", ...
size_t st_dtype_size(StDtype d);       // bytes per element

struct StEntry {
  StDtype dtype;
  std::vector<size_t> shape;
  size_t begin = 0, end = 0;  // byte offsets in the data section
  size_t numel() const;
};

class SafetensorsFile {
 public:
  // Reads and checks the file; throws BadInput naming it. header_only: the
  // entries and metadata only (floats() and doubles() then throw).
  explicit SafetensorsFile(const std::string& path, bool header_only = false);
  const std::string& path() const { return path_; }
  const std::map<std::string, StEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return entries_.count(name) > 0; }
  const StEntry& entry(const std::string& name) const;  // BadInput if missing
  // The values of a floating-point tensor, decoded exactly (float32 holds every
  // BF16, F16 and FP8 value; F64 to float rounds). BadInput for an integer dtype.
  std::vector<float> floats(const std::string& name) const;
  std::vector<double> doubles(const std::string& name) const;

 private:
  template <class T> std::vector<T> decoded(const std::string& name) const;
  std::string path_;
  bool header_only_ = false;
  std::vector<unsigned char> data_;  // the data section
  std::map<std::string, StEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: its values as doubles (converted to `dtype` on writing,
// rounding to nearest even for F32 and BF16) and shape.
struct StTensorOut {
  std::string name;
  std::vector<size_t> shape;
  std::vector<double> values;
};

// Writes the tensors in the given order, whole or not at all (a temporary file,
// then a rename). dtype: F64, F32 or BF16.
void write_safetensors(const std::string& path, const std::vector<StTensorOut>& tensors, StDtype dtype,
                       const std::map<std::string, std::string>& metadata = {});

// "F32", "BF16", ... -> StDtype; BadInput naming `what` and the allowed names.
StDtype parse_st_dtype(const std::string& name, const std::string& what);

}  // namespace dslab
