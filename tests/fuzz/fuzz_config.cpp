// libFuzzer: any bytes as a run config, of each kind (train, rl, eval, reward),
// parsed from text and loaded from a file (which may extend base.toml, or
// itself). The loader either accepts the text or throws ConfigError naming
// what is wrong; any other exception, a crash or undefined behaviour is a bug.
// An accepted config's effective text must read back to the same text.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "experiments/config.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

using dslab::ConfigError;
using dslab::RunConfig;
using dslab::RunKind;

RunConfig parse(const std::string& text, RunKind kind) {
  switch (kind) {
    case RunKind::Train: return dslab::parse_run_config_text(text);
    case RunKind::Rl: return dslab::parse_rl_config_text(text);
    case RunKind::Eval: return dslab::parse_eval_config_text(text);
    case RunKind::Reward: return dslab::parse_reward_config_text(text);
  }
  std::abort();
}

RunConfig load(const std::string& path, RunKind kind) {
  switch (kind) {
    case RunKind::Train: return dslab::load_run_config(path);
    case RunKind::Rl: return dslab::load_rl_config(path);
    case RunKind::Eval: return dslab::load_eval_config(path);
    case RunKind::Reward: return dslab::load_reward_config(path);
  }
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string path = dslab::fuzz::write_input("c.toml", data, size);
  for (RunKind kind : dslab::enum_values<RunKind>()) {
    try {
      const RunConfig c = parse(text, kind);
      if (parse(c.text, kind).text != c.text) std::abort();  // the effective text reads back the same
    } catch (const ConfigError&) {
    }
    try {
      load(path, kind);
    } catch (const ConfigError&) {
    }
  }
  return 0;
}
