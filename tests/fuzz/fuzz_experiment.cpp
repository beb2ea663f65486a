// libFuzzer: any bytes as an experiment file (experiments/experiment.hpp),
// beside configs/tiny.toml, configs/grpo.toml and configs/rm.toml: [[runs]],
// sweeps, run references and their cycles, [smoke]. load_experiment either
// accepts it or throws ConfigError; anything else is a bug.
#include <cstdint>

#include "experiments/experiment.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = dslab::fuzz::write_input("e.toml", data, size);
  try {
    dslab::load_experiment(path);
  } catch (const dslab::ConfigError&) {
  }
  return 0;
}
