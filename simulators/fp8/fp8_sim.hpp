// The FP8 error simulator behind `dslab sim fp8`: synthetic tensors, the error
// of quantizing them (SQNR, relative errors, flushed and saturated fractions),
// and the error of block-scaled GEMMs under the accumulator model.
// Numerics live in reference/fp8.*; this file only draws inputs and measures.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/fp8.hpp"

namespace dslab::fp8::sim {

enum class Distribution {
  Normal,    // N(0, 1)
  Laplace,   // density exp(-|x|) / 2
  StudentT,  // t with `dof` degrees of freedom (heavy tails)
  Outliers,  // N(0, 1), with a fraction of columns (channels) scaled by outlier_scale
  Uniform,   // U(0, 1): all positive, so sums grow like K
};
// normal, laplace, student-t, outliers, uniform; throws std::invalid_argument.
Distribution parse_distribution(const std::string& name);
std::string distribution_name(Distribution d);

struct DistConfig {
  Distribution dist = Distribution::Normal;
  double outlier_rate = 0.01;   // fraction of channels that are outliers
  double outlier_scale = 100.0; // their magnitude relative to the rest
  int dof = 3;                  // Student-t degrees of freedom
};
// Throws std::invalid_argument naming the bad value.
void validate(const DistConfig& d);

// A [rows, cols] tensor from stream `stream` of `seed`: the same numbers every time.
Tensor2<float> sample(const DistConfig& d, size_t rows, size_t cols, uint64_t seed, uint64_t stream = 0);

// Summary of a list of values (per-group SQNR).
struct Summary {
  size_t count = 0;
  double min = 0, median = 0, mean = 0, max = 0;
};

struct QuantizeReport {
  double sqnr_db;             // 10 log10(sum x^2 / sum (x - x_hat)^2)
  Summary group_sqnr_db;      // over groups with signal and error
  size_t exact_groups;        // groups quantized without error (SQNR infinite)
  double normwise_rel_error;  // ||x - x_hat|| / ||x||
  double max_rel_error;       // max |x - x_hat| / max |x|
  double flushed_fraction;    // nonzero x with x_hat = 0
  double saturated_fraction;  // |x / s| beyond the largest finite value (clipped)
  size_t groups;
};
QuantizeReport measure_quantization(const Tensor2<float>& x, const QuantConfig& cfg);

// Errors of C against a reference Cr.
struct MatrixError {
  double max_rel_error;       // max |C - Cr| / max |Cr|
  double normwise_rel_error;  // ||C - Cr||_F / ||Cr||_F
  double deepgemm_diff;       // 1 - 2 sum(C Cr) / sum(C^2 + Cr^2), DeepGEMM's check
};
MatrixError matrix_error(const Tensor2<float>& c, const Tensor2<double>& reference);

struct GemmReport {
  size_t k;
  MatrixError accumulation;  // vs the exact (double) product of the FP8 inputs
  MatrixError total;         // vs the exact product of the unquantized inputs
};
struct GemmConfig {
  size_t m = 128, n = 128;
  QuantConfig a, b;  // A [M, K] (activations), B [N, K] (weights)
  AccumulatorModel model;
  DistConfig dist;
};
// One GEMM of random A [M, K], B [N, K] drawn from cfg.dist with `seed`.
GemmReport measure_gemm(const GemmConfig& cfg, size_t k, uint64_t seed);

}  // namespace dslab::fp8::sim
