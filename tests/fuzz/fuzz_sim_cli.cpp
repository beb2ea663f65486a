// libFuzzer, structure-aware: the option parsers of `dslab sim` (pipeline,
// fp8 quantize and gemm, balance degeneracy, dynamics and replay).
//
// Each input picks a simulator and a list of its own options (names read from
// the command line definition itself, so new options are fuzzed without
// edits here), each with a value drawn from the kinds that break parsers:
// small and boundary integers, negative, huge and non-finite numbers, lists,
// the enum words a simulator knows, and free text. The command runs in
// process (run_cli) with the scratch folder as the working directory; values
// never hold a '/', so every file a simulator writes stays in that folder.
// The rule: exit 0 or 2 (BadInput or CLI11's parse errors, with a message);
// exit 1, a crash, an escaping exception, a leak or a timeout is a bug.
// Sizes stay small enough that a valid run ends in well under a second.
#include <H5Cpp.h>
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "experiments/commands.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

struct Simulator {
  std::vector<std::string> path;      // e.g. {"balance", "replay"}
  std::vector<std::string> options;   // its option names, "--experts", ..., but the fixed ones
  std::vector<std::string> fixed;     // options and values every input gets
};

// The options that bound a simulator's work, fixed to small values (their
// defaults take seconds; no input may raise them): a valid run then ends in
// well under a second, and the options left are fuzzed.
std::vector<std::string> fixed_options(const std::string& path) {
  if (path == "balance dynamics")
    return {"--steps", "3", "--batch", "64", "--seq-len", "16", "--val-tokens", "64", "--record-every", "1"};
  if (path == "balance degeneracy") return {"--tokens", "16", "--fd-samples", "64"};
  return {};
}

// The simulators and their options, read from add_sim_commands; and a file of
// router logits [2, 8, 4] for replay (logits.h5, /captured/layers.1.ffn.router_logits).
const std::vector<Simulator>& simulators() {
  static const std::vector<Simulator> sims = [] {
    if (chdir(dslab::fuzz::scratch_dir().c_str()) != 0) std::abort();
    {
      H5::H5File f("logits.h5", H5F_ACC_TRUNC);
      H5::Group g = f.createGroup("/captured");
      const hsize_t dims[3] = {2, 8, 4};
      std::vector<float> z(2 * 8 * 4);
      for (size_t i = 0; i < z.size(); ++i) z[i] = float(int(i * 37 % 11) - 5) / 4;
      g.createDataSet("layers.1.ffn.router_logits", H5::PredType::IEEE_F32LE, H5::DataSpace(3, dims))
          .write(z.data(), H5::PredType::NATIVE_FLOAT);
    }
    CLI::App app;
    CLI::App* sim = app.add_subcommand("sim");
    dslab::add_sim_commands(*sim);
    std::vector<Simulator> out;
    const auto add = [&](CLI::App* cmd, std::vector<std::string> path) {
      std::string joined;
      for (const auto& p : path) joined += (joined.empty() ? "" : " ") + p;
      Simulator s{std::move(path), {}, fixed_options(joined)};
      for (const CLI::Option* opt : cmd->get_options())
        for (const std::string& name : opt->get_lnames())
          if (std::find(s.fixed.begin(), s.fixed.end(), "--" + name) == s.fixed.end()) s.options.push_back("--" + name);
      out.push_back(std::move(s));
    };
    for (CLI::App* cmd : sim->get_subcommands({})) {
      const auto subs = cmd->get_subcommands({});
      if (subs.empty()) add(cmd, {cmd->get_name()});
      for (CLI::App* sub : subs) add(sub, {cmd->get_name(), sub->get_name()});
    }
    return out;
  }();
  return sims;
}

std::string number_text(FuzzedDataProvider& in) {
  // Out-of-range and odd spellings, no in-range giant (a valid request for
  // hours of work is not a bug).
  static const char* const kEdges[] = {"0", "-1", "1", "2", "3", "-0", "2147483648", "-2147483649",
                                       "9223372036854775808", "18446744073709551616",
                                       "1e309", "-1e309", "nan", "inf", "1e-320", "0x10", "1.5", "", " 4"};
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: return kEdges[in.ConsumeIntegralInRange<size_t>(0, std::size(kEdges) - 1)];
    case 1: return std::to_string(in.ConsumeIntegralInRange(-4, 64));
    case 2: return std::to_string(in.ConsumeFloatingPointInRange(-2.0, 2.0));
    default: return std::to_string(1 << in.ConsumeIntegralInRange(0, 9));
  }
}

std::string value_text(FuzzedDataProvider& in) {
  static const char* const kWords[] = {
      "1f1b", "zb1p", "interleaved", "dualpipe", "dualpipev", "e4m3", "e5m2", "tensor", "row", "1x128",
      "128x128", "1x32", "normal", "laplace", "uniform", "outliers", "hdf5", "softmax", "sigmoid", "sign",
      "proportional", "none", "aux", "sequence", "device", "bias-sign", "bias-proportional", "logits.h5",
      "out.json", "trace.json", "layers.1.ffn.router_logits", "/captured/layers.1.ffn.router_logits"};
  std::string v;
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: v = number_text(in); break;
    case 1: v = kWords[in.ConsumeIntegralInRange<size_t>(0, std::size(kWords) - 1)]; break;
    case 2: v = number_text(in) + "," + number_text(in); break;
    default: v = in.ConsumeRandomLengthString(16);
  }
  if (v.starts_with("/captured/")) return v;  // a dataset path inside the logits file, not a file
  std::erase(v, '/');
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<Simulator>& sims = simulators();
  FuzzedDataProvider in(data, size);
  const Simulator& s = sims[in.ConsumeIntegralInRange<size_t>(0, sims.size() - 1)];
  std::vector<std::string> words = {"dslab", "sim"};
  words.insert(words.end(), s.path.begin(), s.path.end());
  words.insert(words.end(), s.fixed.begin(), s.fixed.end());
  const int n = in.ConsumeIntegralInRange(0, 8);
  for (int i = 0; i < n && in.remaining_bytes() > 0; ++i) {
    words.push_back(s.options[in.ConsumeIntegralInRange<size_t>(0, s.options.size() - 1)]);
    if (in.ConsumeIntegralInRange(0, 7) != 0) words.push_back(value_text(in));
  }
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());
  const int rc = dslab::run_cli(int(argv.size()), argv.data());
  if (rc != 0 && rc != dslab::kBadInput) std::abort();
  return 0;
}
