// What the libFuzzer harnesses share: a scratch folder of their own, with the
// configs an input may name (extends = "base.toml", config = "configs/...").
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace dslab::fuzz {

// A folder made once per process: base.toml (grpo_tiny.toml's text), configs/tiny.toml,
// configs/grpo.toml, configs/rm.toml, copied from the source tree.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/dslab-fuzz-XXXXXX";
    const char* made = mkdtemp(tmpl);
    if (!made) std::abort();
    const std::string d = made;
    std::filesystem::create_directories(d + "/configs");
    const std::string src = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/";
    std::filesystem::copy_file(src + "grpo_tiny.toml", d + "/base.toml");
    std::filesystem::copy_file(src + "tiny.toml", d + "/configs/tiny.toml");
    std::filesystem::copy_file(src + "grpo_tiny.toml", d + "/configs/grpo.toml");
    std::filesystem::copy_file(src + "rm_tiny.toml", d + "/configs/rm.toml");
    return d;
  }();
  return dir;
}

// Writes the input to `name` in the scratch folder; returns its path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), std::streamsize(size));
  return path;
}

}  // namespace dslab::fuzz
