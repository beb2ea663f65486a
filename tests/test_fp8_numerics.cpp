// Fine-grained scaling and the block-scaled GEMM's accumulator model
// (reference/fp8.*), checked against closed forms and the V3 report's figures.
#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "reference/fp8.hpp"
#include "simulators/fp8/fp8_sim.hpp"

namespace fp8 = dslab::fp8;
using dslab::Tensor2;

namespace {

Tensor2<float> normal_tensor(size_t rows, size_t cols, uint64_t seed) {
  return fp8::sim::sample({}, rows, cols, seed);
}

fp8::QuantConfig config(fp8::Granularity g, fp8::ScaleRounding s = fp8::ScaleRounding::Exact,
                        fp8::Format f = fp8::e4m3()) {
  fp8::QuantConfig cfg;
  cfg.format = f;
  cfg.granularity = g;
  cfg.scale_rounding = s;
  return cfg;
}

TEST(Scaling, GroupCountsForEachGranularity) {
  const Tensor2<float> x = normal_tensor(130, 300, 1);  // edge groups are partial
  struct Case {
    fp8::Granularity g;
    size_t row_groups, col_groups;
  };
  for (const Case& c : {Case{fp8::Granularity::PerTensor, 1, 1}, Case{fp8::Granularity::PerRow, 130, 1},
                        Case{fp8::Granularity::Tile1x128, 130, 3}, Case{fp8::Granularity::Block128x128, 2, 3},
                        Case{fp8::Granularity::Block1x32, 130, 10}}) {
    const fp8::ScaleRounding s = c.g == fp8::Granularity::Block1x32 ? fp8::ScaleRounding::PowerOfTwo
                                                                    : fp8::ScaleRounding::Exact;
    const fp8::QuantizedMatrix q = fp8::quantize(x, config(c.g, s));
    EXPECT_EQ(q.scales.shape(0), c.row_groups) << fp8::granularity_name(c.g);
    EXPECT_EQ(q.scales.shape(1), c.col_groups) << fp8::granularity_name(c.g);
  }
}

// Exact scales map each group's amax onto the largest finite value (448 for
// E4M3, 57344 for E5M2): s = amax / max, as in DeepSeek's act_quant.
TEST(Scaling, ExactScaleMapsAmaxToMaxFinite) {
  const Tensor2<float> x = normal_tensor(256, 512, 2);
  for (const fp8::Format& f : {fp8::e4m3(), fp8::e5m2()}) {
    const fp8::QuantConfig cfg = config(fp8::Granularity::Tile1x128, fp8::ScaleRounding::Exact, f);
    const fp8::QuantizedMatrix q = fp8::quantize(x, cfg);
    const Tensor2<float> amax = fp8::group_amax(x, q.group);
    Tensor2<float> top = xt::zeros<float>(q.scales.shape());
    for (size_t r = 0; r < q.rows(); ++r)
      for (size_t c = 0; c < q.cols(); ++c) {
        float& t = top(r / q.group.rows, c / q.group.cols);
        t = std::max(t, std::fabs(fp8::decode(f, q.codes(r, c))));
      }
    for (size_t i = 0; i < q.scales.size(); ++i) {
      EXPECT_EQ(q.scales.data()[i], amax.data()[i] / f.max_finite());
      EXPECT_EQ(top.data()[i], f.max_finite()) << f.name << " group " << i;
    }
  }
}

// Power-of-two scales: the smallest 2^k >= amax / max, so nothing saturates.
TEST(Scaling, PowerOfTwoScalesRoundUp) {
  const Tensor2<float> x = normal_tensor(64, 1024, 3);
  for (fp8::Granularity g : {fp8::Granularity::Tile1x128, fp8::Granularity::Block1x32}) {
    const fp8::QuantizedMatrix q = fp8::quantize(x, config(g, fp8::ScaleRounding::PowerOfTwo));
    const Tensor2<float> amax = fp8::group_amax(x, q.group);
    for (size_t i = 0; i < q.scales.size(); ++i) {
      const float s = q.scales.data()[i], exact = amax.data()[i] / 448.0f;
      int e;
      EXPECT_EQ(std::frexp(s, &e), 0.5f) << "not a power of two: " << s;
      EXPECT_GE(s, exact);
      EXPECT_LT(s, 2.0f * exact);
    }
    EXPECT_EQ(fp8::sim::measure_quantization(x, config(g, fp8::ScaleRounding::PowerOfTwo)).saturated_fraction, 0.0);
  }
  EXPECT_THROW(fp8::quantize(x, config(fp8::Granularity::Block1x32, fp8::ScaleRounding::Exact)),
               std::invalid_argument);
}

// Round to nearest: |x - x_hat| <= s * (half the FP8 spacing at |x / s|), the
// spacing being 2^(max(e, emin) - M); plus fp32 rounding of x / s and of decode * s.
TEST(Scaling, DequantizedErrorWithinHalfSpacing) {
  const Tensor2<float> x = normal_tensor(128, 512, 4);
  for (const fp8::Format& f : {fp8::e4m3(), fp8::e5m2(), fp8::e5m6()})
    for (fp8::Granularity g : {fp8::Granularity::PerTensor, fp8::Granularity::PerRow, fp8::Granularity::Tile1x128,
                               fp8::Granularity::Block128x128}) {
      const fp8::QuantizedMatrix q = fp8::quantize(x, config(g, fp8::ScaleRounding::Exact, f));
      const Tensor2<float> xh = fp8::dequantize(q);
      for (size_t r = 0; r < q.rows(); ++r)
        for (size_t c = 0; c < q.cols(); ++c) {
          const double s = q.scale(r, c), y = std::fabs(double(x(r, c)) / s);
          const int e = std::max(y > 0 ? std::ilogb(y) : f.emin(), f.emin());
          const double bound = s * (std::ldexp(0.5, e - f.mantissa_bits) + 4 * y * 0x1p-24);
          ASSERT_LE(std::fabs(double(xh(r, c)) - x(r, c)), bound)
              << f.name << " " << fp8::granularity_name(g) << " at " << r << "," << c;
        }
    }
}

TEST(Scaling, AllZeroGroupUsesTheAmaxFloor) {
  Tensor2<float> x = xt::zeros<float>({2, 256});
  x(1, 200) = 3.0f;
  const fp8::QuantizedMatrix q = fp8::quantize(x, config(fp8::Granularity::Tile1x128));
  EXPECT_EQ(q.scales(0, 0), 1e-4f / 448.0f);  // act_quant clamps amax to >= 1e-4
  EXPECT_EQ(q.scales(1, 1), 3.0f / 448.0f);
  const Tensor2<float> xh = fp8::dequantize(q);
  EXPECT_EQ(xh(1, 200), 3.0f);
  EXPECT_EQ(xh(0, 0), 0.0f);
}

// quantize, dequantize and quantize_dequantize walk runs of columns with a
// decode table and a vectorized encode; they must give bitwise what the plain
// definitions give element by element: amax_g = max |x| over the group (NaN
// ignored), s_g = scale_from_amax(amax_g), q = encode(x / s_g), x_hat =
// decode(q) * s_g. Partial edge groups, one-row and one-column tensors, and
// tensors with zeros, float subnormals, huge values, +-inf and NaN.
TEST(Scaling, FastLoopsEqualTheElementwiseDefinition) {
  auto bits = [](float v) { return std::bit_cast<uint32_t>(v); };
  const float specials[] = {0.0f, -0.0f, 1e-42f, -3e-39f, 3e38f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
  dslab::Rng rng(9);
  for (const auto& [rows, cols] : {std::pair<size_t, size_t>{130, 300}, {1, 77}, {45, 1}, {257, 129}})
    for (const bool with_specials : {false, true}) {
      Tensor2<float> x = normal_tensor(rows, cols, rows * cols);
      for (size_t i = 0; with_specials && i < x.size(); i += 7) x.data()[i] = specials[rng.below(8)];
      for (const fp8::Format& f : {fp8::e4m3(), fp8::e5m2(), fp8::e5m6(), fp8::parse_format("e3m2fn")})
        for (fp8::Granularity g : {fp8::Granularity::PerTensor, fp8::Granularity::PerRow, fp8::Granularity::Tile1x128,
                                   fp8::Granularity::Block128x128, fp8::Granularity::Block1x32})
          for (fp8::Saturation sat : {fp8::Saturation::Finite, fp8::Saturation::None}) {
            fp8::QuantConfig cfg = config(g, g == fp8::Granularity::Block1x32 ? fp8::ScaleRounding::PowerOfTwo
                                                                               : fp8::ScaleRounding::Exact, f);
            cfg.saturation = sat;
            const std::string what = f.name + " " + fp8::granularity_name(g) + " " + std::to_string(rows) + "x" +
                                     std::to_string(cols) + (with_specials ? " with specials" : "");
            const fp8::GroupShape group = fp8::group_shape(g, rows, cols);
            Tensor2<float> amax = xt::zeros<float>({(rows + group.rows - 1) / group.rows,
                                                    (cols + group.cols - 1) / group.cols});
            for (size_t r = 0; r < rows; ++r)
              for (size_t c = 0; c < cols; ++c) {
                float& a = amax(r / group.rows, c / group.cols);
                a = std::max(a, std::fabs(x(r, c)));
              }
            const Tensor2<float> fast_amax = fp8::group_amax(x, group);
            for (size_t i = 0; i < amax.size(); ++i) ASSERT_EQ(bits(fast_amax.data()[i]), bits(amax.data()[i])) << what;
            const fp8::QuantizedMatrix q = fp8::quantize(x, cfg);
            for (size_t i = 0; i < amax.size(); ++i)
              ASSERT_EQ(bits(q.scales.data()[i]), bits(fp8::scale_from_amax(amax.data()[i], cfg))) << what;
            const Tensor2<float> xh = fp8::dequantize(q), fused = fp8::quantize_dequantize(x, cfg);
            for (size_t r = 0; r < rows; ++r)
              for (size_t c = 0; c < cols; ++c) {
                const float s = q.scale(r, c);
                const uint16_t code = fp8::encode(f, x(r, c) / s, sat);
                ASSERT_EQ(q.codes(r, c), code) << what << " at " << r << "," << c;
                ASSERT_EQ(bits(xh(r, c)), bits(fp8::decode(f, code) * s)) << what << " at " << r << "," << c;
                ASSERT_EQ(bits(fused(r, c)), bits(xh(r, c))) << what << " at " << r << "," << c;
              }
          }
    }
}

// Groups given explicitly: [b, a] groups of x give bitwise the transpose of
// [a, b] groups of x^T (what the FP8 linear layer's backward pass uses).
TEST(Scaling, TransposedGroupsEqualQuantizingTheTranspose) {
  const Tensor2<float> x = normal_tensor(200, 300, 11);
  const Tensor2<float> xt = xt::transpose(x);
  for (fp8::Granularity g : {fp8::Granularity::PerTensor, fp8::Granularity::PerRow, fp8::Granularity::Tile1x128,
                             fp8::Granularity::Block128x128, fp8::Granularity::Block1x32}) {
    const fp8::QuantConfig cfg = config(g, g == fp8::Granularity::Block1x32 ? fp8::ScaleRounding::PowerOfTwo
                                                                            : fp8::ScaleRounding::Exact);
    const fp8::GroupShape of_xt = fp8::group_shape(g, 300, 200);
    const Tensor2<float> direct = fp8::quantize_dequantize(x, cfg, {of_xt.cols, of_xt.rows});
    const Tensor2<float> via_transpose = xt::transpose(fp8::quantize_dequantize(xt, cfg));
    EXPECT_EQ(0, std::memcmp(direct.data(), via_transpose.data(), direct.size() * sizeof(float)))
        << fp8::granularity_name(g);
  }
}

// Rows (and row groups) run in parallel: any thread count gives the same bits.
TEST(Scaling, SameNumbersForAnyThreadCount) {
  const Tensor2<float> x = normal_tensor(300, 260, 10);
  for (fp8::Granularity g : {fp8::Granularity::PerTensor, fp8::Granularity::Tile1x128, fp8::Granularity::Block128x128}) {
    omp_set_num_threads(1);
    const Tensor2<float> one = fp8::quantize_dequantize(x, config(g));
    const fp8::QuantizedMatrix q1 = fp8::quantize(x, config(g));
    omp_set_num_threads(3);
    const Tensor2<float> three = fp8::quantize_dequantize(x, config(g));
    const fp8::QuantizedMatrix q3 = fp8::quantize(x, config(g));
    omp_set_num_threads(2);
    EXPECT_EQ(0, std::memcmp(one.data(), three.data(), one.size() * sizeof(float))) << fp8::granularity_name(g);
    EXPECT_EQ(q1.codes, q3.codes) << fp8::granularity_name(g);
    EXPECT_EQ(q1.scales, q3.scales) << fp8::granularity_name(g);
  }
}

// Delayed scaling: the scale comes from the max over the last `length` amaxes.
TEST(Scaling, AmaxHistoryKeepsTheWindowMax) {
  auto t = [](float v) { return Tensor2<float>({{v}}); };
  fp8::AmaxHistory h(2);
  EXPECT_EQ(h.amax_for_scaling(t(7))(0, 0), 7.0f);  // no history: online
  h.push(t(1));
  h.push(t(5));
  h.push(t(2));  // drops 1
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.amax_for_scaling(t(0))(0, 0), 5.0f);
  h.push(t(1));  // drops 5
  EXPECT_EQ(h.amax_for_scaling(t(0))(0, 0), 2.0f);
  EXPECT_THROW(fp8::AmaxHistory(0), std::invalid_argument);
}

// Elements whose x / s lies beyond the format's range (they were clipped to
// the largest finite value): NaN or inf when encoded without saturation.
size_t clipped(const Tensor2<float>& x, const fp8::QuantizedMatrix& q) {
  size_t n = 0;
  for (size_t r = 0; r < q.rows(); ++r)
    for (size_t c = 0; c < q.cols(); ++c) {
      const uint16_t code = fp8::encode(q.format, x(r, c) / q.scale(r, c), fp8::Saturation::None);
      n += fp8::is_nan(q.format, code) || fp8::is_inf(q.format, code);
    }
  return n;
}

// A tensor that doubles every step saturates under delayed scaling (its scale is
// one step behind) and never under online scaling.
TEST(Scaling, DelayedScalingSaturatesGrowingTensors) {
  const fp8::QuantConfig cfg = config(fp8::Granularity::Tile1x128);
  fp8::AmaxHistory history(4);
  for (int step = 0; step < 4; ++step) {
    const Tensor2<float> x = normal_tensor(16, 256, 5) * std::ldexp(1.0f, step);
    const Tensor2<float> current = fp8::group_amax(x, fp8::group_shape(cfg.granularity, 16, 256));
    const fp8::QuantizedMatrix delayed = fp8::quantize(x, cfg, history.amax_for_scaling(current));
    EXPECT_EQ(clipped(x, fp8::quantize(x, cfg)), 0u);
    if (step == 0) {
      EXPECT_EQ(clipped(x, delayed), 0u);  // no history yet: online
    } else {
      EXPECT_GT(clipped(x, delayed), 0u) << "step " << step;
    }
    history.push(current);
  }
}

// ---------------------------------------------------------------- GEMM

// A [1, K], B [1, K] with scale 1 from explicit values.
fp8::QuantizedMatrix row_of(const std::vector<float>& values) {
  fp8::QuantizedMatrix q{fp8::e4m3(), {1, values.size()}, Tensor2<uint16_t>::from_shape({1, values.size()}),
                         Tensor2<float>({{1.0f}})};
  for (size_t i = 0; i < values.size(); ++i) {
    q.codes(0, i) = fp8::encode(q.format, values[i], fp8::Saturation::Finite);
    EXPECT_EQ(fp8::decode(q.format, q.codes(0, i)), values[i]) << "not an E4M3 value";
  }
  return q;
}

// 1 + 2^-18 and 1 - 2^-18 with 14 kept bits: the small product lies below the
// quantum 2^-14 of the step; truncation drops it, floor (sign-fill shift) rounds
// -2^-18 down to -2^-14, nearest drops it (below half a quantum).
TEST(Gemm, AlignmentCutsSmallProducts) {
  const float tiny = 0x1p-9f;  // smallest E4M3 subnormal; tiny^2 = 2^-18
  const fp8::QuantizedMatrix a = row_of({1.0f, tiny}), b_plus = row_of({1.0f, tiny}), b_minus = row_of({1.0f, -tiny});
  fp8::AccumulatorModel m;
  m.mantissa_bits = 14;
  m.products_per_step = 2;
  m.promote_every = 0;
  struct Case {
    fp8::Rounding r;
    float plus, minus;
  };
  for (const Case& c : {Case{fp8::Rounding::Truncate, 1.0f, 1.0f}, Case{fp8::Rounding::Floor, 1.0f, 1.0f - 0x1p-14f},
                        Case{fp8::Rounding::Nearest, 1.0f, 1.0f}}) {
    m.alignment = c.r;
    EXPECT_EQ(fp8::gemm(a, b_plus, m)(0, 0), c.plus) << fp8::rounding_name(c.r);
    EXPECT_EQ(fp8::gemm(a, b_minus, m)(0, 0), c.minus) << fp8::rounding_name(c.r);
  }
  m.mantissa_bits = 18;  // now 2^-18 is kept
  m.alignment = fp8::Rounding::Truncate;
  EXPECT_EQ(fp8::gemm(a, b_minus, m)(0, 0), 1.0f - 0x1p-18f);
}

// The exact sum of a step is cut back to the kept bits when it carries past
// the largest term's exponent.
TEST(Gemm, SumIsCutToKeptBits) {
  fp8::AccumulatorModel m;
  m.mantissa_bits = 3;
  m.products_per_step = 2;
  m.promote_every = 0;
  m.alignment = fp8::Rounding::Truncate;
  // 15 + 1.75 = 16.75: aligned to 2^(3-3) = 1, 1.75 -> 1, sum 16, already 4 bits.
  // 15 + 1.875 with nearest: 1.875 -> 2, sum 17 = 10001b, cut to 4 bits -> 16 (tie to even).
  const fp8::QuantizedMatrix a = row_of({1.0f, 1.0f});
  EXPECT_EQ(fp8::gemm(a, row_of({15.0f, 1.75f}), m)(0, 0), 16.0f);
  m.alignment = fp8::Rounding::Nearest;
  EXPECT_EQ(fp8::gemm(a, row_of({15.0f, 1.875f}), m)(0, 0), 16.0f);
  EXPECT_EQ(fp8::gemm(a, row_of({13.0f, 1.875f}), m)(0, 0), 15.0f);
}

fp8::sim::GemmConfig per_tensor_gemm(int bits, int promote_every, size_t mn = 64) {
  fp8::sim::GemmConfig cfg;
  cfg.m = cfg.n = mn;
  cfg.a = config(fp8::Granularity::PerTensor);
  cfg.b = config(fp8::Granularity::PerTensor);
  cfg.model.mantissa_bits = bits;
  cfg.model.alignment = fp8::Rounding::Floor;
  cfg.model.products_per_step = 32;
  cfg.model.promote_every = promote_every;
  return cfg;
}

// V3 report Sec. 3.3.2: with ~14 bits kept and no promotion, random matrices at
// K = 4096 show a maximum relative error of "nearly 2%"; promoting to FP32 every
// N_C = 128 elements removes most of it.
TEST(Gemm, ReproducesNearlyTwoPercentAndPromotionRemovesIt) {
  const double no_promotion = fp8::sim::measure_gemm(per_tensor_gemm(14, 0), 4096, 1).accumulation.max_rel_error;
  const double promoted = fp8::sim::measure_gemm(per_tensor_gemm(14, 128), 4096, 1).accumulation.max_rel_error;
  EXPECT_GT(no_promotion, 0.015);
  EXPECT_LT(no_promotion, 0.03);
  EXPECT_LT(promoted, 0.05 * no_promotion);
  // The error grows with K without promotion.
  EXPECT_LT(fp8::sim::measure_gemm(per_tensor_gemm(14, 0), 512, 1).accumulation.max_rel_error, 0.25 * no_promotion);
}

// A wide accumulator with nearest rounding is FP32-like: only fp32 rounding
// of the promoted sums remains.
TEST(Gemm, WideAccumulatorMatchesExactProduct) {
  fp8::sim::GemmConfig cfg = per_tensor_gemm(40, 128);
  cfg.a = config(fp8::Granularity::Tile1x128);
  cfg.b = config(fp8::Granularity::Block128x128);
  cfg.model.alignment = fp8::Rounding::Nearest;
  const fp8::sim::GemmReport r = fp8::sim::measure_gemm(cfg, 1024, 2);
  EXPECT_LT(r.accumulation.max_rel_error, 1e-6);
  EXPECT_LT(r.accumulation.deepgemm_diff, 1e-12);
  // The total error against the unquantized product is E4M3's quantization error.
  EXPECT_GT(r.total.normwise_rel_error, 1e-2);
  EXPECT_LT(r.total.deepgemm_diff, 1e-3);  // DeepGEMM's acceptance threshold
}

TEST(Gemm, RejectsModelsTheScalesCannotFollow) {
  const Tensor2<float> x = normal_tensor(8, 512, 6);
  const fp8::QuantizedMatrix tile = fp8::quantize(x, config(fp8::Granularity::Tile1x128));
  const fp8::QuantizedMatrix tensor = fp8::quantize(x, config(fp8::Granularity::PerTensor));
  fp8::AccumulatorModel m;
  m.promote_every = 0;  // scales change every 128 along K
  EXPECT_THROW(fp8::gemm(tile, tile, m), std::invalid_argument);
  EXPECT_NO_THROW(fp8::gemm(tensor, tensor, m));
  m.promote_every = 256;  // spans two scale groups
  EXPECT_THROW(fp8::gemm(tile, tensor, m), std::invalid_argument);
  m.promote_every = 100;  // not a multiple of products_per_step
  EXPECT_THROW(fp8::gemm(tensor, tensor, m), std::invalid_argument);
  m.promote_every = 128;
  const fp8::QuantizedMatrix narrow = fp8::quantize(normal_tensor(8, 256, 7), config(fp8::Granularity::PerTensor));
  EXPECT_THROW(fp8::gemm(tensor, narrow, m), std::invalid_argument);  // K differs
}

TEST(Gemm, SameNumbersForAnyThreadCount) {
  fp8::sim::GemmConfig cfg = per_tensor_gemm(13, 128, 32);
  cfg.a = config(fp8::Granularity::Tile1x128);
  cfg.b = config(fp8::Granularity::Block128x128);
  const Tensor2<float> a = normal_tensor(32, 512, 8), b = normal_tensor(48, 512, 9);
  const fp8::QuantizedMatrix qa = fp8::quantize(a, cfg.a), qb = fp8::quantize(b, cfg.b);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Tensor2<float> one = fp8::gemm(qa, qb, cfg.model);
  omp_set_num_threads(3);
  const Tensor2<float> three = fp8::gemm(qa, qb, cfg.model);
  omp_set_num_threads(threads);
  EXPECT_EQ(0, std::memcmp(one.data(), three.data(), one.size() * sizeof(float)));
}

// Quantization metrics: SQNR and the normwise error are the same measurement.
TEST(Simulator, SqnrMatchesNormwiseError) {
  fp8::sim::DistConfig d;
  d.dist = fp8::sim::Distribution::StudentT;
  const Tensor2<float> x = fp8::sim::sample(d, 64, 512, 10);
  const fp8::sim::QuantizeReport r = fp8::sim::measure_quantization(x, config(fp8::Granularity::Tile1x128));
  EXPECT_NEAR(r.sqnr_db, -20.0 * std::log10(r.normwise_rel_error), 1e-9);
  EXPECT_EQ(r.groups, 64u * 4u);
  EXPECT_EQ(r.group_sqnr_db.count + r.exact_groups, r.groups);
  EXPECT_LE(r.group_sqnr_db.min, r.group_sqnr_db.median);
  EXPECT_LE(r.group_sqnr_db.median, r.group_sqnr_db.max);
  // E4M3 keeps 3 mantissa bits: a uniform error of one spacing 2^(e-3) against
  // values spread over the binade [2^e, 2^(e+1)) gives 10 log10(7/3 * 12 * 64) = 32.5 dB.
  EXPECT_GT(r.sqnr_db, 25.0);
  EXPECT_LT(r.sqnr_db, 35.0);
}

TEST(Simulator, OutlierChannelsAreWholeColumns) {
  fp8::sim::DistConfig d;
  d.dist = fp8::sim::Distribution::Outliers;
  d.outlier_rate = 0.05;
  d.outlier_scale = 1000;
  const Tensor2<float> x = fp8::sim::sample(d, 32, 200, 11);
  size_t big_columns = 0;
  for (size_t c = 0; c < 200; ++c) {
    double sum2 = 0;
    for (size_t r = 0; r < 32; ++r) sum2 += double(x(r, c)) * x(r, c);
    big_columns += std::sqrt(sum2 / 32) > 100;
  }
  EXPECT_EQ(big_columns, 10u);
  // Per-tensor scaling pushes the ordinary channels into E4M3's subnormals;
  // 1x128 tiles keep those tiles without outliers on their own scale.
  const double tensor = fp8::sim::measure_quantization(x, config(fp8::Granularity::PerTensor)).flushed_fraction;
  const double tile = fp8::sim::measure_quantization(x, config(fp8::Granularity::Tile1x128)).flushed_fraction;
  EXPECT_GT(tensor, 0.0);
  EXPECT_LE(tile, tensor);
}

}  // namespace
