#include "experiments/safetensors.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "experiments/commands.hpp"
#include "experiments/io.hpp"
#include "reference/fp8.hpp"

namespace dslab {
namespace {

using Json = nlohmann::ordered_json;

struct DtypeInfo {
  StDtype dtype;
  const char* name;
  size_t size;
  const char* codec;  // the reference/fp8 format that decodes it, or null
};
constexpr std::array<DtypeInfo, 12> kDtypes = {{
    {StDtype::F64, "F64", 8, nullptr},     {StDtype::F32, "F32", 4, nullptr},
    {StDtype::F16, "F16", 2, "e5m10"},     {StDtype::BF16, "BF16", 2, "e8m7"},
    {StDtype::F8_E4M3, "F8_E4M3", 1, "e4m3"}, {StDtype::F8_E5M2, "F8_E5M2", 1, "e5m2"},
    {StDtype::I64, "I64", 8, nullptr},     {StDtype::I32, "I32", 4, nullptr},
    {StDtype::I16, "I16", 2, nullptr},     {StDtype::I8, "I8", 1, nullptr},
    {StDtype::U8, "U8", 1, nullptr},       {StDtype::BOOL, "BOOL", 1, nullptr},
}};

const DtypeInfo& info(StDtype d) { return kDtypes[size_t(d)]; }

std::string allowed_dtypes() {
  std::string s;
  for (const DtypeInfo& d : kDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw BadInput(path + ": not a valid safetensors file: " + what);
}

}  // namespace

const char* st_dtype_name(StDtype d) { return info(d).name; }
size_t st_dtype_size(StDtype d) { return info(d).size; }

size_t StEntry::numel() const {
  size_t n = 1;
  for (size_t s : shape) n *= s;
  return n;
}

StDtype parse_st_dtype(const std::string& name, const std::string& what) {
  for (const DtypeInfo& d : kDtypes)
    if (name == d.name) return d.dtype;
  throw BadInput(what + ": dtype \"" + name + "\" is not a safetensors dtype; allowed: " + allowed_dtypes());
}

SafetensorsFile::SafetensorsFile(const std::string& path, bool header_only) : path_(path), header_only_(header_only) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BadInput("cannot open " + path);
  in.seekg(0, std::ios::end);
  const std::streamoff file_size = in.tellg();
  in.seekg(0);
  if (file_size < 8) bad(path, "shorter than its 8-byte header length (" + std::to_string(file_size) + " bytes)");
  std::array<unsigned char, 8> len_bytes;
  in.read(reinterpret_cast<char*>(len_bytes.data()), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[size_t(i)];
  if (n == 0 || n > uint64_t(file_size) - 8)
    bad(path, "header length " + std::to_string(n) + " does not fit the file's " + std::to_string(file_size) + " bytes");
  std::string header(n, '\0');
  in.read(header.data(), std::streamsize(n));
  Json j;
  try {
    j = Json::parse(header);
  } catch (const Json::exception& e) {
    bad(path, std::string("header is not JSON: ") + e.what());
  }
  if (!j.is_object()) bad(path, "header is not a JSON object");
  const size_t data_size = size_t(file_size) - 8 - size_t(n);
  std::vector<std::pair<size_t, size_t>> spans;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const Json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) bad(path, "__metadata__ is not an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) bad(path, "__metadata__." + m.key() + " is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      bad(path, where + " lacks dtype, shape or data_offsets");
    if (!e["dtype"].is_string()) bad(path, where + ": dtype is not a string");
    StEntry s{.dtype = parse_st_dtype(e["dtype"].get<std::string>(), path + ": " + where), .shape = {}};
    if (!e["shape"].is_array()) bad(path, where + ": shape is not an array");
    size_t numel = 1;
    for (const Json& d : e["shape"]) {
      if (!d.is_number_unsigned()) bad(path, where + ": shape has a non-integer or negative entry");
      const uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > std::numeric_limits<size_t>::max() / v) bad(path, where + ": shape overflows");
      numel *= size_t(v);
      s.shape.push_back(size_t(v));
    }
    const Json& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad(path, where + ": data_offsets is not [begin, end]");
    s.begin = off[0].get<uint64_t>(), s.end = off[1].get<uint64_t>();
    if (s.begin > s.end || s.end > data_size)
      bad(path, where + ": data_offsets [" + std::to_string(s.begin) + ", " + std::to_string(s.end) +
                    "] outside the " + std::to_string(data_size) + " data bytes");
    if (numel > std::numeric_limits<size_t>::max() / info(s.dtype).size ||
        s.end - s.begin != numel * info(s.dtype).size)
      bad(path, where + ": " + std::to_string(s.end - s.begin) + " bytes for " + std::to_string(numel) + " " +
                    info(s.dtype).name + " values");
    spans.emplace_back(s.begin, s.end);
    entries_[name] = s;
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second) bad(path, "two tensors share data bytes");
  if (header_only) return;
  data_.resize(data_size);
  in.read(reinterpret_cast<char*>(data_.data()), std::streamsize(data_size));
  if (!in) bad(path, "cannot read its data");
}

const StEntry& SafetensorsFile::entry(const std::string& name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) throw BadInput(path_ + ": no tensor '" + name + "'");
  return it->second;
}

template <class T> std::vector<T> SafetensorsFile::decoded(const std::string& name) const {
  const StEntry& e = entry(name);
  if (header_only_) throw std::logic_error("SafetensorsFile: " + path_ + " was opened for its header only");
  const unsigned char* p = data_.data() + e.begin;
  const size_t n = e.numel();
  std::vector<T> out(n);
  const DtypeInfo& d = info(e.dtype);
  if (e.dtype == StDtype::F64) {
    for (size_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, p + 8 * i, 8);
      out[i] = T(v);
    }
  } else if (e.dtype == StDtype::F32) {
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      out[i] = T(v);
    }
  } else if (d.codec) {
    const float* table = fp8::decode_table(fp8::parse_format(d.codec));
    for (size_t i = 0; i < n; ++i) {
      const uint16_t code = d.size == 2 ? uint16_t(p[2 * i] | (p[2 * i + 1] << 8)) : p[i];
      out[i] = T(table[code]);
    }
  } else {
    throw BadInput(path_ + ": tensor '" + name + "' has dtype " + d.name + "; a floating-point dtype is needed");
  }
  return out;
}

std::vector<float> SafetensorsFile::floats(const std::string& name) const { return decoded<float>(name); }
std::vector<double> SafetensorsFile::doubles(const std::string& name) const { return decoded<double>(name); }

void write_safetensors(const std::string& path, const std::vector<StTensorOut>& tensors, StDtype dtype,
                       const std::map<std::string, std::string>& metadata) {
  if (dtype != StDtype::F64 && dtype != StDtype::F32 && dtype != StDtype::BF16)
    throw BadInput(std::string("safetensors output dtype ") + st_dtype_name(dtype) + "; allowed: F64, F32, BF16");
  const size_t size = info(dtype).size;
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const StTensorOut& t : tensors) {
    size_t numel = 1;
    for (size_t s : t.shape) numel *= s;
    if (numel != t.values.size())
      throw std::logic_error("write_safetensors: '" + t.name + "' has " + std::to_string(t.values.size()) +
                             " values for its shape");
    header[t.name] = {{"dtype", st_dtype_name(dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + numel * size}}};
    offset += numel * size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data 8-byte aligned, as the safetensors library writes
  const fp8::Format bf16 = fp8::parse_format("e8m7");
  write_file_atomically(path, [&](std::ostream& out) {
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
    out << text;
    for (const StTensorOut& t : tensors)
      for (const double v : t.values) {
        if (dtype == StDtype::F64) {
          out.write(reinterpret_cast<const char*>(&v), 8);
        } else if (dtype == StDtype::F32) {
          const float f = float(v);
          out.write(reinterpret_cast<const char*>(&f), 4);
        } else {  // BF16 of the float32 value, rounded to nearest even (torch's .to(torch.bfloat16))
          const uint16_t c = fp8::encode(bf16, float(v), fp8::Saturation::None);
          out.put(char(c & 0xff)), out.put(char(c >> 8));
        }
      }
  });
}

}  // namespace dslab
