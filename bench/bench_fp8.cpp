// FP8 emulation throughput (reference/fp8.hpp):
//  - BM_Copy: a plain copy of the fp32 tensor, the memory-bandwidth floor, in the same run.
//  - BM_QuantizeDequantize/<granularity>: fp8::quantize (online amax, E4M3) then
//    fp8::dequantize of the same [rows, cols] tensor. Bytes counted: the fp32 read
//    and the fp32 written back (8 bytes per element), as for the copy; the codes
//    (2 bytes each) and scales in between are not counted.
//  - BM_QuantizeDequantizeFused/<granularity>: fp8::quantize_dequantize, the same
//    values without the codes of the whole tensor (what FP8-simulated training
//    runs on every GEMM input); bytes counted as above.
//  - BM_Gemm/<K>/<accum_bits>/<promote_every>: the emulated block-scaled GEMM
//    C [M, N] = A B^T (A in 1x128 tiles, B in 128x128 blocks), in products per
//    second (M * N * K per iteration). accum_bits = 0 means fp8::gemm_exact (the
//    products of the dequantized inputs summed in double).
//
// Rates are per CPU second of the benchmark thread (Google Benchmark's default),
// which stays meaningful on a shared machine; run it on one thread:
//   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 build/bench/bench_fp8 --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>

#include "experiments/omp_wait.hpp"  // OMP_WAIT_POLICY=passive unless set, as in dslab
#include "reference/fp8.hpp"

namespace {

using namespace dslab;

constexpr size_t kRows = 1024, kCols = 4096;  // 16 MiB of fp32: beyond the caches

Tensor2<float> random_matrix(size_t rows, size_t cols, uint64_t seed) {
  Rng rng(seed);
  Tensor2<float> x = Tensor2<float>::from_shape({rows, cols});
  for (float& v : x) v = float(rng.normal());
  return x;
}

const Tensor2<float>& input() {
  static const Tensor2<float> x = random_matrix(kRows, kCols, 1);
  return x;
}

void set_bytes(benchmark::State& state) {
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kRows * kCols) * 8);
}

void BM_Copy(benchmark::State& state) {
  const Tensor2<float>& x = input();
  Tensor2<float> y = Tensor2<float>::from_shape(x.shape());
  for (auto _ : state) {
    std::memcpy(y.data(), x.data(), x.size() * sizeof(float));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state);
}
BENCHMARK(BM_Copy);

void BM_QuantizeDequantize(benchmark::State& state, fp8::Granularity g) {
  const Tensor2<float>& x = input();
  fp8::QuantConfig cfg;
  cfg.granularity = g;
  if (g == fp8::Granularity::Block1x32) cfg.scale_rounding = fp8::ScaleRounding::PowerOfTwo;
  for (auto _ : state) {
    Tensor2<float> y = fp8::dequantize(fp8::quantize(x, cfg));
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state);
}
BENCHMARK_CAPTURE(BM_QuantizeDequantize, tensor, fp8::Granularity::PerTensor);
BENCHMARK_CAPTURE(BM_QuantizeDequantize, row, fp8::Granularity::PerRow);
BENCHMARK_CAPTURE(BM_QuantizeDequantize, tile, fp8::Granularity::Tile1x128);
BENCHMARK_CAPTURE(BM_QuantizeDequantize, block, fp8::Granularity::Block128x128);
BENCHMARK_CAPTURE(BM_QuantizeDequantize, mx, fp8::Granularity::Block1x32);

void BM_QuantizeDequantizeFused(benchmark::State& state, fp8::Granularity g) {
  const Tensor2<float>& x = input();
  fp8::QuantConfig cfg;
  cfg.granularity = g;
  if (g == fp8::Granularity::Block1x32) cfg.scale_rounding = fp8::ScaleRounding::PowerOfTwo;
  for (auto _ : state) {
    Tensor2<float> y = fp8::quantize_dequantize(x, cfg);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state);
}
BENCHMARK_CAPTURE(BM_QuantizeDequantizeFused, tensor, fp8::Granularity::PerTensor);
BENCHMARK_CAPTURE(BM_QuantizeDequantizeFused, row, fp8::Granularity::PerRow);
BENCHMARK_CAPTURE(BM_QuantizeDequantizeFused, tile, fp8::Granularity::Tile1x128);
BENCHMARK_CAPTURE(BM_QuantizeDequantizeFused, block, fp8::Granularity::Block128x128);
BENCHMARK_CAPTURE(BM_QuantizeDequantizeFused, mx, fp8::Granularity::Block1x32);

void BM_Gemm(benchmark::State& state) {
  const size_t M = 128, N = 128, K = size_t(state.range(0));
  fp8::QuantConfig tiles, blocks;
  tiles.granularity = fp8::Granularity::Tile1x128;
  blocks.granularity = fp8::Granularity::Block128x128;
  const fp8::QuantizedMatrix a = fp8::quantize(random_matrix(M, K, 2), tiles);
  const fp8::QuantizedMatrix b = fp8::quantize(random_matrix(N, K, 3), blocks);
  fp8::AccumulatorModel model;
  model.mantissa_bits = int(state.range(1));
  model.alignment = fp8::Rounding::Floor;
  model.promote_every = int(state.range(2));
  for (auto _ : state) {
    if (model.mantissa_bits == 0) {
      Tensor2<double> c = fp8::gemm_exact(a, b);
      benchmark::DoNotOptimize(c.data());
    } else {
      Tensor2<float> c = fp8::gemm(a, b, model);
      benchmark::DoNotOptimize(c.data());
    }
  }
  state.counters["products_per_s"] =
      benchmark::Counter(double(state.iterations()) * double(M * N * K), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Gemm)
    ->ArgNames({"K", "accum_bits", "promote_every"})
    ->Args({1024, 0, 128})
    ->Args({1024, 14, 128})
    ->Args({4096, 14, 128})
    ->Args({4096, 23, 128})
    ->Args({4096, 14, 32})
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("omp_wait_policy", dslab::omp_wait_policy());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
