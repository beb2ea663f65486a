// Rollout throughput (reference/rollout.hpp): sample_completions with the
// KV-cache decoder, G completions for each of P random byte prompts, on the
// quickstart model's shape (experiments/configs/kjv_small.toml: dim 128, 4
// layers, 4 heads, inter_dim 384, max_seq_len 128) with random weights.
//
//   bench_rollout [--group_size=8] [--prompts=4] [--prompt_len=16] [--new_tokens=64]
//                 [--no_cache=0] [--warmup=1] [--steps=5] [Google Benchmark flags]
//
// --no_cache=1 samples the same number of tokens with sampler.hpp's
// generate_tokens (a full forward over the context per token), for comparison.
// Each iteration is one rollout of P*G sequences; no stop strings, so every
// sequence runs to new_tokens. Counters as bench_moe: median_step_ms,
// median_cpu_ms, tokens_per_s (new tokens over the median wall time), peak_rss_MiB.
// Time it with OMP_NUM_THREADS set and OPENBLAS_NUM_THREADS=1.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/side_by_side.hpp"
#include "reference/rollout.hpp"
#include "reference/sampler.hpp"

namespace {

using dslab::bench::IntFlags;

IntFlags default_flags() {
  return {{"group_size", {8, 1, "completions per prompt G"}},
          {"prompts", {4, 1, "prompts P"}},
          {"prompt_len", {16, 1, "tokens per prompt"}},
          {"new_tokens", {64, 1, "tokens sampled per completion"}},
          {"no_cache", {0, 0, "1: generate_tokens without a cache instead"}},
          {"warmup", {1, 0, "untimed rollouts before timing"}},
          {"steps", {5, 1, "timed rollouts"}}};
}

dslab::ModelArgs quickstart_model() {
  dslab::ModelArgs a;  // experiments/configs/kjv_small.toml [model]
  a.dim = 128;
  a.n_layers = 4;
  a.n_heads = 4;
  a.n_kv_heads = 4;
  a.inter_dim = 384;
  a.max_seq_len = 128;
  return a;
}

void BM_Rollout(benchmark::State& state, std::map<std::string, int> f) {
  dslab::Transformer<float> model(quickstart_model());
  model.init_weights(1);
  dslab::RolloutArgs ra;
  ra.group_size = f["group_size"];
  ra.max_new_tokens = f["new_tokens"];
  ra.temperature = 1.0;
  dslab::Rng rng(7);
  std::vector<std::vector<int>> prompts(f["prompts"]);
  for (auto& p : prompts)
    for (int i = 0; i < f["prompt_len"]; ++i) p.push_back(int(rng.below(256)));
  if (f["prompt_len"] + f["new_tokens"] > model.args.max_seq_len) {
    std::fprintf(stderr, "bench_rollout: prompt_len + new_tokens must be <= 128 (max_seq_len)\n");
    std::exit(2);
  }
  uint64_t step_index = 0;
  auto step = [&] {
    if (f["no_cache"]) {
      dslab::SampleArgs sa = ra.sample_args();
      for (const auto& p : prompts)
        for (int g = 0; g < ra.group_size; ++g) {
          sa.seed = step_index * 1000 + g;
          benchmark::DoNotOptimize(dslab::generate_tokens(model, p, sa));
        }
    } else {
      benchmark::DoNotOptimize(dslab::sample_completions(model, prompts, ra, 1, step_index));
    }
    ++step_index;
  };
  dslab::bench::time_steps(state, f["warmup"], double(f["prompts"]) * f["group_size"] * f["new_tokens"], step);
}

}  // namespace

int main(int argc, char** argv) {
  const auto flags = dslab::bench::take_int_flags("bench_rollout", default_flags(), argc, argv);
  return dslab::bench::run_benchmark("Rollout", {"group_size", "prompts", "prompt_len", "new_tokens", "no_cache"},
                                     BM_Rollout, flags, argc, argv);
}
