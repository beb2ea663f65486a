// One MLA decode step per token on the CPU, float, for DeepSeek-V2-Lite's
// attention layer (FACTS.md: dim 2048, 16 heads, q_lora_rank 0, kv_lora_rank
// 512, qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128), at
// contexts C = 512 ... 8192 (the query attends C positions):
//
//   Absorbed/C      mla_decode_absorbed, latent cache c_KV, k_R: 576 floats per position
//   Naive/C         mla_decode_naive, full keys and values: 16 x (192 + 128) = 5120 floats
//   NaiveFullRope/C mla_decode_naive with rope = "full": the reference's only way to
//                   decode full RoPE (W^UK cannot be absorbed); same cache as Naive plus
//                   the rotation of the whole query and key heads
//
//   bench_mla_decode [Google Benchmark flags]
//
// One iteration is one token: the caches hold C - 1 positions, the step
// appends position C - 1 and attends 0..C-1; the length is reset before each
// iteration. The caches are filled with random numbers once (time does not
// depend on their values), weights are N(0, 0.02) with unit norm gains.
// Counters, per token:
//   cache_bytes     C x (floats cached per position) x 4: the cache as stored for
//                   C positions, every element of which the step reads (the absorbed
//                   form reads c_KV twice: for the scores and for the weighted sum)
//   weight_bytes    the layer's matrices x 4: every weight is read once per token
//   cache_GBps      cache_bytes / time;  total_GBps  (cache_bytes + weight_bytes) / time
//   GFLOPs          FLOP rate, 2 per multiply-add: the matrices (2 per weight, the same
//                   for both forms) plus attention, naive 2H(d_qk + d_v)C, absorbed
//                   2H(d_c + d_rope)C + 2H d_c C (experiments/cmd_info.cpp)
// The reference decodes one token on one thread: time it with OMP_NUM_THREADS=1
// OPENBLAS_NUM_THREADS=1.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "experiments/omp_wait.hpp"  // OMP_WAIT_POLICY=passive unless set, as in dslab
#include "reference/mla.hpp"

namespace dslab {
namespace {

constexpr int kMaxContext = 8192;

MlaArgs v2_lite(MlaRope rope) {
  MlaArgs a;
  a.dim = 2048;
  a.n_heads = 16;
  a.q_lora_rank = 0;
  a.kv_lora_rank = 512;
  a.qk_nope_head_dim = 128;
  a.qk_rope_head_dim = 64;
  a.v_head_dim = 128;
  a.rope = rope;
  a.validate();
  return a;
}

// Weights, caches of kMaxContext positions and RoPE tables, built once.
struct Layer {
  MlaArgs a = v2_lite(MlaRope::Decoupled);
  MlaWeights<float> w{a};
  MlaLatentCache<float> latent{a, kMaxContext};
  MlaNaiveCache<float> naive{a, kMaxContext};
  RopeTable decoupled_rope{kMaxContext, a.qk_rope_head_dim, 10000.0};
  RopeTable full_rope{kMaxContext, a.qk_head_dim(), 10000.0};
  std::vector<float> x = std::vector<float>(a.dim), out = std::vector<float>(a.dim);
  double matrices = 0;  // parameters of the matrices

  Layer() {
    Rng rng(1);
    for (auto& p : w.refs(""))
      for (size_t j = 0; j < p.size(); ++j)
        p.data[j] = p.shape.size() == 1 ? 1.0f : float(0.02 * rng.normal());
    for (auto& p : w.refs(""))
      if (p.shape.size() == 2) matrices += double(p.size());
    for (Tensor2<float>* c : {&latent.kv, &latent.pe, &naive.k, &naive.v})
      for (float& v : *c) v = float(rng.normal());
    for (float& v : x) v = float(rng.normal());
  }
};

Layer& layer() {
  static const std::unique_ptr<Layer> l = std::make_unique<Layer>();
  return *l;
}

void set_counters(benchmark::State& state, double cache_bytes, double weight_bytes,
                  double flops) {
  using benchmark::Counter;
  state.counters["cache_bytes"] = cache_bytes;
  state.counters["weight_bytes"] = weight_bytes;
  state.counters["cache_GBps"] = Counter(cache_bytes / 1e9, Counter::kIsIterationInvariantRate);
  state.counters["total_GBps"] =
      Counter((cache_bytes + weight_bytes) / 1e9, Counter::kIsIterationInvariantRate);
  state.counters["GFLOPs"] = Counter(flops / 1e9, Counter::kIsIterationInvariantRate);
}

void Absorbed(benchmark::State& state) {
  Layer& l = layer();
  const MlaArgs& a = l.a;
  const int C = int(state.range(0));
  for (auto _ : state) {
    l.latent.len = C - 1;
    mla_decode_absorbed(l.out.data(), l.x.data(), l.latent, l.w, a, l.decoupled_rope);
    benchmark::DoNotOptimize(l.out.data());
  }
  const double H = a.n_heads, dc = a.kv_lora_rank, dr = a.qk_rope_head_dim;
  set_counters(state, 4.0 * C * (dc + dr), 4 * l.matrices,
               2 * l.matrices + 2 * H * (dc + dr) * C + 2 * H * dc * C);
}

void naive_step(benchmark::State& state, const MlaArgs& a, const RopeTable& rope) {
  Layer& l = layer();
  const int C = int(state.range(0));
  for (auto _ : state) {
    l.naive.len = C - 1;
    mla_decode_naive(l.out.data(), l.x.data(), l.naive, l.w, a, rope);
    benchmark::DoNotOptimize(l.out.data());
  }
  const double H = a.n_heads, dqk = a.qk_head_dim(), dv = a.v_head_dim;
  set_counters(state, 4.0 * C * H * (dqk + dv), 4 * l.matrices,
               2 * l.matrices + 2 * H * (dqk + dv) * C);
}

void Naive(benchmark::State& state) {
  naive_step(state, layer().a, layer().decoupled_rope);
}

void NaiveFullRope(benchmark::State& state) {
  naive_step(state, v2_lite(MlaRope::Full), layer().full_rope);
}

BENCHMARK(Absorbed)->RangeMultiplier(2)->Range(512, kMaxContext)->Unit(benchmark::kMillisecond);
BENCHMARK(Naive)->RangeMultiplier(2)->Range(512, kMaxContext)->Unit(benchmark::kMillisecond);
BENCHMARK(NaiveFullRope)
    ->RangeMultiplier(2)
    ->Range(512, kMaxContext)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dslab

int main(int argc, char** argv) {
  benchmark::AddCustomContext("omp_wait_policy", dslab::omp_wait_policy());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
