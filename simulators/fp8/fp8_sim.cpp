#include "simulators/fp8/fp8_sim.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include <xtensor/xbuilder.hpp>

namespace dslab::fp8::sim {

Distribution parse_distribution(const std::string& name) {
  if (name == "normal") return Distribution::Normal;
  if (name == "laplace") return Distribution::Laplace;
  if (name == "student-t") return Distribution::StudentT;
  if (name == "outliers") return Distribution::Outliers;
  if (name == "uniform") return Distribution::Uniform;
  throw std::invalid_argument("unknown distribution '" + name +
                              "'; allowed: normal, laplace, student-t, outliers, uniform");
}

std::string distribution_name(Distribution d) {
  switch (d) {
    case Distribution::Normal: return "normal";
    case Distribution::Laplace: return "laplace";
    case Distribution::StudentT: return "student-t";
    case Distribution::Outliers: return "outliers";
    case Distribution::Uniform: return "uniform";
  }
  return "";
}

void validate(const DistConfig& d) {
  if (!(d.outlier_rate >= 0.0 && d.outlier_rate <= 1.0))
    throw std::invalid_argument("outlier rate must be in [0, 1], got " + std::to_string(d.outlier_rate));
  if (!(d.outlier_scale > 0.0) || !std::isfinite(d.outlier_scale))
    throw std::invalid_argument("outlier scale must be a positive finite number, got " + std::to_string(d.outlier_scale));
  if (d.dof < 1 || d.dof > 1000)
    throw std::invalid_argument("Student-t degrees of freedom must be 1..1000, got " + std::to_string(d.dof));
}

static double draw(const DistConfig& d, Rng& rng) {
  switch (d.dist) {
    case Distribution::Normal:
    case Distribution::Outliers: return rng.normal();
    case Distribution::Laplace: {
      const double u = rng.uniform() - 0.5;  // inverse CDF
      return (u < 0 ? 1.0 : -1.0) * std::log1p(-2.0 * std::fabs(u));
    }
    case Distribution::StudentT: {
      double chi2 = 0.0;  // sum of dof squared normals
      for (int i = 0; i < d.dof; ++i) {
        const double z = rng.normal();
        chi2 += z * z;
      }
      return rng.normal() / std::sqrt(chi2 / d.dof);
    }
    case Distribution::Uniform: return rng.uniform();
  }
  return 0.0;
}

Tensor2<float> sample(const DistConfig& d, size_t rows, size_t cols, uint64_t seed, uint64_t stream) {
  validate(d);
  Rng rng(seed, stream);
  Tensor2<float> x = Tensor2<float>::from_shape({rows, cols});
  for (size_t i = 0; i < x.size(); ++i) x.data()[i] = float(draw(d, rng));
  if (d.dist == Distribution::Outliers) {
    // round(rate * cols) distinct channels, by a partial Fisher-Yates shuffle.
    std::vector<size_t> channel(cols);
    std::iota(channel.begin(), channel.end(), size_t(0));
    const size_t n_out = size_t(std::llround(d.outlier_rate * double(cols)));
    for (size_t i = 0; i < n_out; ++i) {
      std::swap(channel[i], channel[i + rng.below(cols - i)]);
      for (size_t r = 0; r < rows; ++r) x(r, channel[i]) *= float(d.outlier_scale);
    }
  }
  return x;
}

static Summary summarize(std::vector<double> v) {
  Summary s;
  s.count = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  return s;
}

static double sqnr_db(double signal, double noise) { return 10.0 * std::log10(signal / noise); }

QuantizeReport measure_quantization(const Tensor2<float>& x, const QuantConfig& cfg) {
  const QuantizedMatrix q = quantize(x, cfg);
  const Tensor2<float> xh = dequantize(q);
  const size_t gr = q.scales.shape(0), gc = q.scales.shape(1);
  Tensor2<double> signal = xt::zeros<double>({gr, gc}), noise = xt::zeros<double>({gr, gc});
  double max_abs = 0, max_err = 0;
  size_t nonzero = 0, flushed = 0, saturated = 0;
  for (size_t r = 0; r < q.rows(); ++r)
    for (size_t c = 0; c < q.cols(); ++c) {
      const double v = x(r, c), e = double(xh(r, c)) - v;
      signal(r / q.group.rows, c / q.group.cols) += v * v;
      noise(r / q.group.rows, c / q.group.cols) += e * e;
      max_abs = std::max(max_abs, std::fabs(v));
      max_err = std::max(max_err, std::fabs(e));
      if (v != 0) {
        ++nonzero;
        flushed += xh(r, c) == 0.0f;
      }
      const uint16_t unsat = encode(cfg.format, x(r, c) / q.scale(r, c), Saturation::None);
      saturated += std::isfinite(x(r, c)) && (is_inf(cfg.format, unsat) || is_nan(cfg.format, unsat));
    }
  std::vector<double> per_group;
  size_t exact = 0;
  for (size_t i = 0; i < signal.size(); ++i) {
    if (signal.data()[i] == 0) continue;
    if (noise.data()[i] == 0) {
      ++exact;
    } else {
      per_group.push_back(sqnr_db(signal.data()[i], noise.data()[i]));
    }
  }
  const double total_signal = xt::sum(signal)(), total_noise = xt::sum(noise)();
  QuantizeReport rep;
  rep.sqnr_db = sqnr_db(total_signal, total_noise);
  rep.group_sqnr_db = summarize(per_group);
  rep.exact_groups = exact;
  rep.normwise_rel_error = std::sqrt(total_noise / total_signal);
  rep.max_rel_error = max_err / max_abs;
  rep.flushed_fraction = nonzero ? double(flushed) / double(nonzero) : 0.0;
  rep.saturated_fraction = x.size() ? double(saturated) / double(x.size()) : 0.0;
  rep.groups = signal.size();
  return rep;
}

MatrixError matrix_error(const Tensor2<float>& c, const Tensor2<double>& reference) {
  double max_ref = 0, max_err = 0, err2 = 0, ref2 = 0, xy = 0, x2y2 = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const double x = c.data()[i], y = reference.data()[i];
    max_ref = std::max(max_ref, std::fabs(y));
    max_err = std::max(max_err, std::fabs(x - y));
    err2 += (x - y) * (x - y);
    ref2 += y * y;
    xy += x * y;
    x2y2 += x * x + y * y;
  }
  return {max_err / max_ref, std::sqrt(err2 / ref2), 1.0 - 2.0 * xy / x2y2};
}

// C = A B^T of the unquantized inputs, in double.
static Tensor2<double> exact_product(const Tensor2<float>& a, const Tensor2<float>& b) {
  const size_t M = a.shape(0), N = b.shape(0), K = a.shape(1);
  Tensor2<double> c = Tensor2<double>::from_shape({M, N});
#pragma omp parallel for collapse(2) schedule(static)
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      double s = 0;
      for (size_t k = 0; k < K; ++k) s += double(a(m, k)) * double(b(n, k));
      c(m, n) = s;
    }
  return c;
}

GemmReport measure_gemm(const GemmConfig& cfg, size_t k, uint64_t seed) {
  const Tensor2<float> a = sample(cfg.dist, cfg.m, k, seed, 0), b = sample(cfg.dist, cfg.n, k, seed, 1);
  const QuantizedMatrix qa = quantize(a, cfg.a), qb = quantize(b, cfg.b);
  const Tensor2<float> c = gemm(qa, qb, cfg.model);
  return {k, matrix_error(c, gemm_exact(qa, qb)), matrix_error(c, exact_product(a, b))};
}

}  // namespace dslab::fp8::sim
