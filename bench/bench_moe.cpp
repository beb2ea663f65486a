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
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>

#include "bench/side_by_side.hpp"
#include "reference/moe.hpp"

namespace {

using dslab::bench::IntFlags;

IntFlags default_flags() {
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
  dslab::bench::time_steps(state, f["warmup"], double(N), step);
}

}  // namespace

int main(int argc, char** argv) {
  const auto flags = dslab::bench::take_int_flags("bench_moe", default_flags(), argc, argv);
  if (flags.at("sigmoid") > 1) dslab::bench::usage_error("bench_moe", "--sigmoid must be 0 or 1", default_flags());
  return dslab::bench::run_benchmark("MoeForwardBackward",
                                     {"dim", "moe_inter_dim", "n_routed_experts", "n_activated_experts",
                                      "n_shared_experts", "tokens", "sigmoid"},
                                     BM_MoeForwardBackward, flags, argc, argv);
}
