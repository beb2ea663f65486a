// Forward + backward of one DeepSeekMoE layer (reference/moe.hpp) in float:
//   moe_forward -> moe_backward (weight gradients zeroed first, as a step would).
//
//   bench_moe [--dim=256] [--moe_inter_dim=128] [--n_routed_experts=16]
//             [--n_activated_experts=4] [--n_shared_experts=1] [--tokens=2048]
//             [--sigmoid=0] [--warmup=2] [--steps=20] [Google Benchmark flags]
//
// --sigmoid=1 gives V3's gate (sigmoid scores, renormalised, route_scale 2.5);
// 0 gives softmax (V2). Each benchmark iteration is one forward + backward.
// Counters: median_step_ms (wall clock, median over the timed steps after
// `warmup` untimed ones), median_cpu_ms (CPU time of all threads), tokens_per_s
// (tokens over the median wall time), peak_rss_MiB.
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

#include "reference/moe.hpp"

namespace {

struct IntFlag {
  int value, min;
  const char* help;
};

std::map<std::string, IntFlag> default_flags() {
  return {{"dim", {256, 1, "model width"}},
          {"moe_inter_dim", {128, 1, "SwiGLU hidden width of one expert"}},
          {"n_routed_experts", {16, 1, "routed experts E"}},
          {"n_activated_experts", {4, 1, "experts per token K"}},
          {"n_shared_experts", {1, 0, "shared experts"}},
          {"tokens", {2048, 1, "tokens per step"}},
          {"sigmoid", {0, 0, "1: sigmoid gate (V3), 0: softmax (V2)"}},
          {"warmup", {2, 0, "untimed steps before timing"}},
          {"steps", {20, 1, "timed steps"}}};
}

[[noreturn]] void usage_error(const std::string& message, const std::map<std::string, IntFlag>& flags) {
  std::fprintf(stderr, "bench_moe: %s\nlayer flags (integers):\n", message.c_str());
  for (const auto& [name, f] : flags)
    std::fprintf(stderr, "  --%s=N  %s (default %d, at least %d)\n", name.c_str(), f.help, f.value, f.min);
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
    const std::string name =
        arg.rfind("--", 0) == 0 && eq != std::string::npos ? arg.substr(2, eq - 2) : std::string();
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
  if (values["sigmoid"] > 1) usage_error("--sigmoid must be 0 or 1", flags);
  return values;
}

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

dslab::MoeArgs layer_args(std::map<std::string, int>& f) {
  dslab::MoeArgs a;
  a.dim = f["dim"];
  a.moe_inter_dim = f["moe_inter_dim"];
  a.n_routed_experts = f["n_routed_experts"];
  a.n_activated_experts = f["n_activated_experts"];
  a.n_shared_experts = f["n_shared_experts"];
  a.score_func = f["sigmoid"] ? dslab::ScoreFunc::Sigmoid : dslab::ScoreFunc::Softmax;
  a.route_scale = f["sigmoid"] ? 2.5 : 1.0;
  return a;
}

void BM_MoeForwardBackward(benchmark::State& state, std::map<std::string, int> f) {
  const dslab::MoeArgs a = layer_args(f);
  try {
    dslab::validate(a);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "bench_moe: %s\n", e.what());
    std::exit(2);
  }
  const size_t N = f["tokens"], D = a.dim;
  dslab::MoeParams<float> p(a), dp(a);
  p.init(1, 0.02);
  dslab::Tensor2<float> x({N, D}), dy({N, D}), y, dx;
  dslab::Rng rng(1234);
  for (float& v : x) v = float(rng.normal());
  for (float& v : dy) v = float(rng.normal() / double(N * D));
  const dslab::Tensor1<float> no_bias;
  dslab::MoeCache<float> cache;

  auto step = [&] {
    dp.zero();
    dslab::moe_forward(y, cache, x, p, no_bias, a);
    dslab::moe_backward<float>(dx, dp, dy, nullptr, x, cache, p, a);
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
  state.counters["median_step_ms"] = wall * 1e3;
  state.counters["median_cpu_ms"] = median(cpu_seconds) * 1e3;
  state.counters["tokens_per_s"] = double(N) / wall;
  state.counters["peak_rss_MiB"] = peak_rss_mib();
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = parse_flags(argc, argv);
  std::string name = "MoeForwardBackward";
  for (const char* key : {"dim", "moe_inter_dim", "n_routed_experts", "n_activated_experts", "n_shared_experts",
                          "tokens", "sigmoid"})
    name.append("/").append(key).append(":").append(std::to_string(flags.at(key)));
  benchmark::RegisterBenchmark(name.c_str(), BM_MoeForwardBackward, flags)
      ->Iterations(flags.at("steps"))
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
