// What the side-by-side benchmark programs share (bench_train_step, bench_moe):
// integer --name=value flags taken out of argv before Google Benchmark sees
// the rest, and one timed loop whose counters the Python drivers read
// (bench/side_by_side.py):
//   median_step_ms  wall clock, median over the timed steps after `warmup` untimed ones
//   median_cpu_ms   CPU time of the whole process (all threads), median
//   tokens_per_s    tokens of one step over the median wall time
//   peak_rss_MiB    VmHWM of this process
// and, as the dslab program does, OpenMP waits passively unless OMP_WAIT_POLICY
// or GOMP_SPINCOUNT is set (experiments/omp_wait.hpp); the context line
// "omp_wait_policy" says which.
#pragma once

#include <benchmark/benchmark.h>

#include "experiments/omp_wait.hpp"  // OMP_WAIT_POLICY=passive unless set, as in dslab

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace dslab::bench {

// An integer flag with its default and smallest allowed value.
struct IntFlag {
  int value, min;
  const char* help;
};
using IntFlags = std::map<std::string, IntFlag>;

[[noreturn]] inline void usage_error(const char* program, const std::string& message, const IntFlags& flags) {
  std::fprintf(stderr, "%s: %s\nflags (integers):\n", program, message.c_str());
  for (const auto& [name, f] : flags)
    std::fprintf(stderr, "  --%s=N  %s (default %d, at least %d)\n", name.c_str(), f.help, f.value, f.min);
  std::exit(2);
}

// Takes the --name=value flags named in `flags` out of argv (up to 2^20 each);
// leaves the rest for Google Benchmark.
inline std::map<std::string, int> take_int_flags(const char* program, IntFlags flags, int& argc, char** argv) {
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
      usage_error(program,
                  "--" + name + "=" + text + " is not allowed: expected an integer from " +
                      std::to_string(it->second.min) + " to " + std::to_string(1 << 20),
                  flags);
    it->second.value = int(v);
  }
  argc = kept;
  std::map<std::string, int> values;
  for (const auto& [name, f] : flags) values[name] = f.value;
  return values;
}

// Peak resident set size of this process in MiB (VmHWM), 0 when unknown.
inline double peak_rss_mib() {
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
inline double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// `warmup` untimed calls of step, then one timed call per benchmark iteration;
// sets the four counters above.
inline void time_steps(benchmark::State& state, int warmup, double tokens_per_step,
                       const std::function<void()>& step) {
  for (int i = 0; i < warmup; ++i) step();
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
  state.counters["tokens_per_s"] = tokens_per_step / wall;
  state.counters["peak_rss_MiB"] = peak_rss_mib();
}

// Registers fn(state, flags) under `name` + "/key:value" for each of `name_keys`
// with `steps` iterations, and runs Google Benchmark on the rest of argv.
inline int run_benchmark(std::string name, const std::vector<const char*>& name_keys,
                         void (*fn)(benchmark::State&, std::map<std::string, int>),
                         const std::map<std::string, int>& flags, int argc, char** argv) {
  for (const char* key : name_keys) name.append("/").append(key).append(":").append(std::to_string(flags.at(key)));
  benchmark::RegisterBenchmark(name.c_str(), fn, flags)
      ->Iterations(flags.at("steps"))
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::AddCustomContext("omp_wait_policy", omp_wait_policy());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace dslab::bench
