// libFuzzer: any bytes as a DeepSeek config.json for `dslab info`
// (experiments/deepseek_config.hpp). The reader either returns ModelArgs that
// pass ModelArgs::validate or throws BadInput naming the file and the key;
// anything else is a bug.
#include <cstdint>
#include <cstdlib>

#include "experiments/commands.hpp"
#include "experiments/deepseek_config.hpp"
#include "reference/args_error.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = dslab::fuzz::write_input("config.json", data, size);
  try {
    const dslab::ModelArgs args = dslab::model_args_from_deepseek_json(path);
    try {
      args.validate();
    } catch (const dslab::ArgsError&) {
      std::abort();  // accepted arguments the model refuses
    }
  } catch (const dslab::BadInput&) {
  }
  return 0;
}
