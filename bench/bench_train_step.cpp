// One training step of the reference transformer in float, as Trainer runs it:
//   zero grads -> forward -> backward -> global-norm clip -> AdamW.
//
//   bench_train_step [--dim=256] [--n_layers=4] [--n_heads=8] [--n_kv_heads=8]
//                    [--inter_dim=704] [--vocab_size=256] [--seq_len=256] [--batch=8]
//                    [--warmup=2] [--steps=10] [Google Benchmark flags]
//
// Each benchmark iteration is one step. Counters: median_step_ms (wall clock,
// median over the timed steps, after `warmup` untimed ones), median_cpu_ms
// (CPU time of all threads, median), tokens_per_s (batch*seq_len over the
// median wall time), peak_rss_MiB (VmHWM of this process), first_loss.
// Time it with OMP_NUM_THREADS set and OPENBLAS_NUM_THREADS=1.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "reference/trainer.hpp"

namespace {

// Integer flags of this program, with their defaults and smallest allowed values.
struct IntFlag {
  int value, min;
  const char* help;
};

std::map<std::string, IntFlag> default_flags() {
  return {{"dim", {256, 2, "model width"}},
          {"n_layers", {4, 1, "transformer blocks"}},
          {"n_heads", {8, 1, "query heads"}},
          {"n_kv_heads", {8, 1, "key/value heads"}},
          {"inter_dim", {704, 1, "SwiGLU hidden width"}},
          {"vocab_size", {256, 2, "vocabulary (byte-level: at most 256)"}},
          {"seq_len", {256, 1, "tokens per sequence"}},
          {"batch", {8, 1, "sequences per step"}},
          {"warmup", {2, 0, "untimed steps before timing"}},
          {"steps", {10, 1, "timed steps"}}};
}

[[noreturn]] void usage_error(const std::string& message,
                              const std::map<std::string, IntFlag>& flags) {
  std::fprintf(stderr, "bench_train_step: %s\nmodel flags (integers):\n", message.c_str());
  for (const auto& [name, f] : flags)
    std::fprintf(stderr, "  --%s=N  %s (default %d, at least %d)\n", name.c_str(), f.help, f.value,
                 f.min);
  std::exit(2);
}

// Takes this program's --name=value flags out of argv; leaves the rest for
// Google Benchmark.
std::map<std::string, int> parse_flags(int& argc, char** argv) {
  auto flags = default_flags();
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string name = arg.rfind("--", 0) == 0 && eq != std::string::npos
                                 ? arg.substr(2, eq - 2)
                                 : std::string();
    auto it = flags.find(name);
    if (it == flags.end()) {
      argv[kept++] = argv[i];
      continue;
    }
    const std::string text = arg.substr(eq + 1);
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < it->second.min || v > 1 << 20)
      usage_error("--" + name + "=" + text + " is not allowed: expected an integer from " +
                      std::to_string(it->second.min) + " to " + std::to_string(1 << 20),
                  flags);
    it->second.value = int(v);
  }
  argc = kept;
  std::map<std::string, int> values;
  for (const auto& [name, f] : flags) values[name] = f.value;
  if (values["vocab_size"] > 256) usage_error("--vocab_size must be at most 256 (bytes)", flags);
  if (values["dim"] % values["n_heads"] != 0 || (values["dim"] / values["n_heads"]) % 2 != 0)
    usage_error("--dim must be n_heads times an even head dimension", flags);
  if (values["n_heads"] % values["n_kv_heads"] != 0)
    usage_error("--n_heads must be a multiple of --n_kv_heads", flags);
  return values;
}

// Peak resident set size of this process in MiB (VmHWM), 0 when unknown.
double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  double kib = 0;
  while (status >> key) {
    if (key == "VmHWM:") {
      status >> kib;
      break;
    }
    status.ignore(1 << 12, '\n');
  }
  return kib / 1024.0;
}

// CPU time of the whole process (all threads), in seconds.
double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Random bytes below vocab_size: timing does not depend on the text.
dslab::ByteCorpus random_corpus(int vocab_size, size_t bytes) {
  dslab::Rng rng(1234);
  std::string text(bytes, '\0');
  for (char& c : text) c = char(rng.below(uint64_t(vocab_size)));
  return dslab::ByteCorpus::from_text(text, 0.1);
}

void BM_TrainStep(benchmark::State& state, std::map<std::string, int> f) {
  dslab::ModelArgs model;
  model.vocab_size = f["vocab_size"];
  model.dim = f["dim"];
  model.n_layers = f["n_layers"];
  model.n_heads = f["n_heads"];
  model.n_kv_heads = f["n_kv_heads"];
  model.inter_dim = f["inter_dim"];
  model.max_seq_len = f["seq_len"];
  dslab::TrainArgs train;
  train.batch_size = f["batch"];
  train.seq_len = f["seq_len"];
  train.steps = 1 << 30;  // never reached: no final evaluation inside the timing
  train.eval_every = 0;
  train.warmup_steps = 0;
  train.grad_clip = 1.0;  // AdamW betas 0.9/0.95, weight decay 0.1 on matrices: the defaults
  const dslab::ByteCorpus corpus = random_corpus(model.vocab_size, size_t(1) << 20);
  dslab::Trainer trainer(model, train, corpus);

  double first_loss = 0;
  auto step = [&] {
    const double loss = trainer.train_step().train_loss;
    if (trainer.step == 1) first_loss = loss;
  };
  for (int i = 0; i < f["warmup"]; ++i) step();
  std::vector<double> seconds, cpu_seconds;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = process_cpu_seconds();
    step();
    cpu_seconds.push_back(process_cpu_seconds() - cpu0);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double wall = median(seconds);
  const double tokens = double(train.batch_size) * train.seq_len;
  state.counters["median_step_ms"] = wall * 1e3;
  state.counters["median_cpu_ms"] = median(cpu_seconds) * 1e3;
  state.counters["tokens_per_s"] = tokens / wall;
  state.counters["peak_rss_MiB"] = peak_rss_mib();
  state.counters["first_loss"] = first_loss;
}

}  // namespace

int main(int argc, char** argv) {
  const auto flags = parse_flags(argc, argv);
  std::string name = "TrainStep";
  for (const char* key : {"dim", "n_layers", "n_heads", "n_kv_heads", "inter_dim", "seq_len", "batch"})
    name.append("/").append(key).append(":").append(std::to_string(flags.at(key)));
  benchmark::RegisterBenchmark(name.c_str(), BM_TrainStep, flags)
      ->Iterations(flags.at("steps"))
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
