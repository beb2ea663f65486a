#include "reference/fp8.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <regex>
#include <stdexcept>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

namespace dslab::fp8 {

// ---------------------------------------------------------------- formats

uint16_t Format::max_finite_code() const {
  const uint16_t all_ones = uint16_t(sign_bit() - 1);
  // IEEE: exponent all ones is reserved, so the largest is 0.11..10.11..1;
  // "fn": only all ones is NaN, so the largest is 0.11..1.11..10.
  return specials == Specials::IEEE ? uint16_t(all_ones - (1u << mantissa_bits)) : uint16_t(all_ones - 1);
}
uint16_t Format::nan_code() const { return uint16_t(sign_bit() - 1); }
uint16_t Format::inf_code() const { return uint16_t(((1u << exponent_bits) - 1) << mantissa_bits); }
float Format::max_finite() const { return decode(*this, max_finite_code()); }
float Format::min_normal() const { return std::ldexp(1.0f, emin()); }
float Format::min_subnormal() const { return std::ldexp(1.0f, emin() - mantissa_bits); }

static Format make_format(int e, int m, Specials specials) {
  if (e < 2 || e > 8 || m < 1 || m > 10)
    throw std::invalid_argument("FP format E" + std::to_string(e) + "M" + std::to_string(m) +
                                ": exponent bits must be 2..8 and mantissa bits 1..10");
  std::string name = "e";
  name += std::to_string(e);
  name += 'm';
  name += std::to_string(m);
  if (specials == Specials::FiniteNaN) name += "fn";
  return {name, e, m, specials};
}

Format e4m3() { return {"e4m3", 4, 3, Specials::FiniteNaN}; }
Format e5m2() { return {"e5m2", 5, 2, Specials::IEEE}; }
Format e5m6() { return {"e5m6", 5, 6, Specials::IEEE}; }

Format parse_format(const std::string& name) {
  const std::string allowed =
      "allowed: e4m3 (fn, max 448), e5m2, or eXmY with IEEE infinities / eXmYfn without "
      "(X = 2..8 exponent bits, Y = 1..10 mantissa bits), e.g. e5m6";
  if (name == "e4m3" || name == "e4m3fn") return e4m3();
  static const std::regex pattern("e([0-9]{1,2})m([0-9]{1,2})(fn)?");
  std::smatch match;
  if (!std::regex_match(name, match, pattern)) throw std::invalid_argument("unknown format '" + name + "'; " + allowed);
  try {
    return make_format(std::stoi(match[1]), std::stoi(match[2]),
                       match[3].matched ? Specials::FiniteNaN : Specials::IEEE);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument("format '" + name + "' out of range; " + allowed);
  }
}

// Round the integer sig / 2^shift (shift > 0) to nearest, ties to even.
static uint64_t round_shift_rne(uint64_t sig, int shift) {
  if (shift >= 40) return 0;  // sig < 2^24: far below one half
  const uint64_t n = sig >> shift;
  const uint64_t rem = sig & ((uint64_t(1) << shift) - 1);
  const uint64_t half = uint64_t(1) << (shift - 1);
  return n + ((rem > half || (rem == half && (n & 1))) ? 1 : 0);
}

uint16_t encode(const Format& f, float x, Saturation sat) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint16_t sign = (bits >> 31) ? f.sign_bit() : 0;
  const int exp_field = int((bits >> 23) & 0xFF);
  const uint32_t frac = bits & 0x7FFFFF;
  const uint16_t overflow = sat == Saturation::Finite      ? f.max_finite_code()
                            : f.specials == Specials::IEEE ? f.inf_code()
                                                           : f.nan_code();
  if (exp_field == 0xFF) return frac ? f.nan_code() : uint16_t(sign | overflow);
  if (exp_field == 0 && frac == 0) return sign;

  // |x| = sig * 2^(e - 23) with e = floor(log2 |x|) for normal floats.
  uint64_t sig;
  int e;
  if (exp_field == 0) {
    e = -126 - (23 - (std::bit_width(frac) - 1));
    sig = uint64_t(frac) << (-126 - e);  // leading bit moved to position 23
  } else {
    e = exp_field - 127;
    sig = frac | 0x800000u;
  }
  // Quantum of the target format at this magnitude: 2^(max(e, emin) - M).
  const int e_q = std::max(e, f.emin());
  const int shift = (e_q - f.mantissa_bits) - (e - 23);  // > 0 since M <= 10 < 23
  const uint64_t n = round_shift_rne(sig, shift);
  // Codes of consecutive magnitudes are consecutive integers: the exponent field
  // is (e_q - emin) above the first binade and n carries into it when it rounds up.
  const uint64_t magnitude = (uint64_t(e_q - f.emin()) << f.mantissa_bits) + n;
  if (magnitude > f.max_finite_code()) return uint16_t(sign | overflow);
  return uint16_t(sign | magnitude);
}

float decode(const Format& f, uint16_t code) {
  const uint16_t magnitude = code & uint16_t(f.sign_bit() - 1);
  const float sign = (code & f.sign_bit()) ? -1.0f : 1.0f;
  if (is_nan(f, code)) return std::numeric_limits<float>::quiet_NaN();
  if (is_inf(f, code)) return sign * std::numeric_limits<float>::infinity();
  const int exp_field = magnitude >> f.mantissa_bits;
  const int mant = magnitude & ((1 << f.mantissa_bits) - 1);
  if (exp_field == 0) return sign * std::ldexp(float(mant), f.emin() - f.mantissa_bits);
  return sign * std::ldexp(float(mant + (1 << f.mantissa_bits)), exp_field - f.bias() - f.mantissa_bits);
}

bool is_nan(const Format& f, uint16_t code) {
  const uint16_t magnitude = code & uint16_t(f.sign_bit() - 1);
  if (f.specials == Specials::FiniteNaN) return magnitude == f.nan_code();
  return magnitude > f.inf_code();
}

bool is_inf(const Format& f, uint16_t code) {
  return f.specials == Specials::IEEE && (code & uint16_t(f.sign_bit() - 1)) == f.inf_code();
}

uint8_t encode_e8m0(float x, Saturation sat) {
  const uint32_t magnitude = std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return 0xFF;  // NaN
  // The exponent field of |x|, plus one when |x| is not a power of two; values at
  // or below 2^-127 (the smallest scale) give code 0.
  int code = int(magnitude >> 23);
  const bool exact = (magnitude & 0x7FFFFF) == 0;
  if (!exact && magnitude > 0x00400000u && magnitude < 0x7F800000u) ++code;
  if (code >= 0xFF) return sat == Saturation::Finite ? 0xFE : 0xFF;
  return uint8_t(code);
}

float decode_e8m0(uint8_t code) {
  if (code == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, int(code) - 127);
}

// ---------------------------------------------------------------- scaling

Granularity parse_granularity(const std::string& name) {
  if (name == "tensor") return Granularity::PerTensor;
  if (name == "row") return Granularity::PerRow;
  if (name == "tile") return Granularity::Tile1x128;
  if (name == "block") return Granularity::Block128x128;
  if (name == "mx") return Granularity::Block1x32;
  throw std::invalid_argument("unknown granularity '" + name +
                              "'; allowed: tensor, row, tile (1x128), block (128x128), mx (1x32, E8M0 scales)");
}

std::string granularity_name(Granularity g) {
  switch (g) {
    case Granularity::PerTensor: return "tensor";
    case Granularity::PerRow: return "row";
    case Granularity::Tile1x128: return "tile";
    case Granularity::Block128x128: return "block";
    case Granularity::Block1x32: return "mx";
  }
  return "";
}

GroupShape group_shape(Granularity g, size_t rows, size_t cols) {
  switch (g) {
    case Granularity::PerTensor: return {std::max<size_t>(rows, 1), std::max<size_t>(cols, 1)};
    case Granularity::PerRow: return {1, std::max<size_t>(cols, 1)};
    case Granularity::Tile1x128: return {1, 128};
    case Granularity::Block128x128: return {128, 128};
    case Granularity::Block1x32: return {1, 32};
  }
  return {1, 1};
}

void validate(const QuantConfig& cfg) {
  if (cfg.granularity == Granularity::Block1x32 && cfg.scale_rounding != ScaleRounding::PowerOfTwo)
    throw std::invalid_argument("1x32 (mx) groups use E8M0 scales: scale rounding must be pow2, not exact");
  if (!(cfg.min_amax > 0) || !std::isfinite(cfg.min_amax))
    throw std::invalid_argument("min_amax must be a positive finite number");
}

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

Tensor2<float> group_amax(const Tensor2<float>& x, GroupShape group) {
  const size_t rows = x.shape(0), cols = x.shape(1);
  Tensor2<float> amax = xt::zeros<float>({ceil_div(rows, group.rows), ceil_div(cols, group.cols)});
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) {
      float& a = amax(r / group.rows, c / group.cols);
      a = std::max(a, std::fabs(x(r, c)));  // NaN inputs leave amax unchanged
    }
  return amax;
}

float scale_from_amax(float amax, const QuantConfig& cfg) {
  const float s = std::max(amax, cfg.min_amax) / cfg.format.max_finite();
  if (cfg.scale_rounding == ScaleRounding::Exact) return s;
  return decode_e8m0(encode_e8m0(s, Saturation::Finite));
}

QuantizedMatrix quantize(const Tensor2<float>& x, const QuantConfig& cfg, const Tensor2<float>& amax) {
  validate(cfg);
  const size_t rows = x.shape(0), cols = x.shape(1);
  const GroupShape group = group_shape(cfg.granularity, rows, cols);
  if (amax.shape(0) != ceil_div(rows, group.rows) || amax.shape(1) != ceil_div(cols, group.cols))
    throw std::invalid_argument("quantize: amax has the wrong number of groups for this tensor");
  QuantizedMatrix q{cfg.format, group, Tensor2<uint16_t>::from_shape({rows, cols}),
                    Tensor2<float>::from_shape(amax.shape())};
  for (size_t i = 0; i < amax.size(); ++i) q.scales.data()[i] = scale_from_amax(amax.data()[i], cfg);
#pragma omp parallel for schedule(static)
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) q.codes(r, c) = encode(cfg.format, x(r, c) / q.scale(r, c), cfg.saturation);
  return q;
}

QuantizedMatrix quantize(const Tensor2<float>& x, const QuantConfig& cfg) {
  validate(cfg);
  return quantize(x, cfg, group_amax(x, group_shape(cfg.granularity, x.shape(0), x.shape(1))));
}

Tensor2<float> dequantize(const QuantizedMatrix& q) {
  Tensor2<float> x = Tensor2<float>::from_shape(q.codes.shape());
#pragma omp parallel for schedule(static)
  for (size_t r = 0; r < q.rows(); ++r)
    for (size_t c = 0; c < q.cols(); ++c) x(r, c) = decode(q.format, q.codes(r, c)) * q.scale(r, c);
  return x;
}

AmaxHistory::AmaxHistory(size_t length) : length_(length) {
  if (length == 0) throw std::invalid_argument("amax history length must be at least 1");
}

Tensor2<float> AmaxHistory::amax_for_scaling(const Tensor2<float>& current) const {
  if (history_.empty()) return current;
  Tensor2<float> amax = history_.front();
  for (const Tensor2<float>& h : history_) {
    if (h.shape() != amax.shape()) throw std::invalid_argument("amax history: group count changed");
    amax = xt::maximum(amax, h);
  }
  return amax;
}

void AmaxHistory::push(const Tensor2<float>& amax) {
  history_.push_back(amax);
  if (history_.size() > length_) history_.pop_front();
}

// ---------------------------------------------------------------- GEMM

Rounding parse_rounding(const std::string& name) {
  if (name == "truncate") return Rounding::Truncate;
  if (name == "floor") return Rounding::Floor;
  if (name == "nearest") return Rounding::Nearest;
  throw std::invalid_argument("unknown rounding '" + name + "'; allowed: truncate, floor, nearest");
}

std::string rounding_name(Rounding r) {
  switch (r) {
    case Rounding::Truncate: return "truncate";
    case Rounding::Floor: return "floor";
    case Rounding::Nearest: return "nearest";
  }
  return "";
}

// v (a double holding an exact multiple of a small power of two) to an integer.
static double round_integer(double v, Rounding r) {
  switch (r) {
    case Rounding::Truncate: return std::trunc(v);
    case Rounding::Floor: return std::floor(v);
    case Rounding::Nearest: {
      const double f = std::floor(v);
      const double d = v - f;
      return (d > 0.5 || (d == 0.5 && std::fmod(f, 2.0) != 0.0)) ? f + 1.0 : f;
    }
  }
  return v;
}

// Exponent of a nonzero normal double, and 2^e: FP8 products and partial sums
// stay far inside double's normal range.
static int exponent_of(double v) { return int((std::bit_cast<uint64_t>(v) >> 52) & 0x7FF) - 1023; }
static double pow2(int e) { return std::bit_cast<double>(uint64_t(e + 1023) << 52); }

// v cut to `bits` mantissa bits below its own leading bit.
static double cut_to_bits(double v, int bits, Rounding r) {
  if (v == 0.0) return 0.0;
  const int e = exponent_of(v);
  return round_integer(v * pow2(bits - e), r) * pow2(e - bits);
}

void validate(const AccumulatorModel& model, const QuantizedMatrix& a, const QuantizedMatrix& b) {
  if (a.cols() != b.cols())
    throw std::invalid_argument("gemm: A is [M, " + std::to_string(a.cols()) + "] but B is [N, " +
                                std::to_string(b.cols()) + "]; both must have K columns");
  if (model.mantissa_bits < 1 || model.mantissa_bits > 40)
    throw std::invalid_argument("accumulator mantissa bits must be 1..40, got " + std::to_string(model.mantissa_bits));
  if (model.products_per_step < 1 || model.products_per_step > 64)
    throw std::invalid_argument("products per step must be 1..64, got " + std::to_string(model.products_per_step));
  if (model.promote_every < 0 || (model.promote_every > 0 && model.promote_every % model.products_per_step != 0))
    throw std::invalid_argument("promotion interval N_C = " + std::to_string(model.promote_every) +
                                " must be 0 (never) or a multiple of the products per step (" +
                                std::to_string(model.products_per_step) + ")");
  const size_t k = a.cols();
  for (const QuantizedMatrix* m : {&a, &b}) {
    const size_t gk = m->group.cols;
    const bool spans_k = gk >= k;
    if (model.promote_every == 0 && !spans_k)
      throw std::invalid_argument("N_C = 0 (no promotion) needs scales constant along K (per tensor or per row), but "
                                  "the scale groups are " + std::to_string(gk) + " wide and K = " + std::to_string(k));
    if (model.promote_every > 0 && !spans_k && gk % size_t(model.promote_every) != 0)
      throw std::invalid_argument("promotion interval N_C = " + std::to_string(model.promote_every) +
                                  " must divide the scale groups' width along K (" + std::to_string(gk) + ")");
  }
}

// One output element: sum_k a_k b_k with the tensor-core model, promoted into fp32.
//   av, bv [K]: decoded FP8 values (unscaled); sa, sb: the scale at each k.
static float dot_accumulated(const float* av, const float* bv, const QuantizedMatrix& a, size_t m,
                             const QuantizedMatrix& b, size_t n, size_t k_total, const AccumulatorModel& model) {
  const int bits = model.mantissa_bits;
  const size_t step = size_t(model.products_per_step);
  const size_t interval = model.promote_every > 0 ? size_t(model.promote_every) : k_total;
  float out = 0.0f;       // FP32 register on the CUDA cores
  double partial = 0.0;   // tensor-core accumulator, at most bits + 1 significant bits
  double products[64];
  for (size_t k0 = 0; k0 < k_total; k0 += step) {
    const size_t k1 = std::min(k0 + step, k_total);
    // Exact products (FP8 x FP8 fits in a double), and the largest exponent.
    int e_max = partial != 0.0 ? exponent_of(partial) : INT32_MIN;
    for (size_t k = k0; k < k1; ++k) {
      products[k - k0] = double(av[k]) * double(bv[k]);
      if (products[k - k0] != 0.0) e_max = std::max(e_max, exponent_of(products[k - k0]));
    }
    if (e_max != INT32_MIN) {
      // Align every term to 2^(e_max - bits), cut, add exactly, cut the sum.
      const double to_units = pow2(bits - e_max);
      double sum = round_integer(partial * to_units, model.alignment);
      for (size_t k = k0; k < k1; ++k) sum += round_integer(products[k - k0] * to_units, model.alignment);
      partial = cut_to_bits(sum * pow2(e_max - bits), bits, model.alignment);
    }
    // Promotion: every N_C products and at the end of K.
    if (k1 % interval == 0 || k1 == k_total) {
      const float s = a.scale(m, k1 - 1) * b.scale(n, k1 - 1);
      out = std::fma(s, float(partial), out);
      partial = 0.0;
    }
  }
  return out;
}

Tensor2<float> gemm(const QuantizedMatrix& a, const QuantizedMatrix& b, const AccumulatorModel& model) {
  validate(model, a, b);
  const size_t M = a.rows(), N = b.rows(), K = a.cols();
  Tensor2<float> av = Tensor2<float>::from_shape({M, K}), bv = Tensor2<float>::from_shape({N, K});
  for (size_t i = 0; i < av.size(); ++i) av.data()[i] = decode(a.format, a.codes.data()[i]);
  for (size_t i = 0; i < bv.size(); ++i) bv.data()[i] = decode(b.format, b.codes.data()[i]);
  Tensor2<float> c = Tensor2<float>::from_shape({M, N});
#pragma omp parallel for collapse(2) schedule(static)
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) c(m, n) = dot_accumulated(&av(m, 0), &bv(n, 0), a, m, b, n, K, model);
  return c;
}

// decode(q) * s of every element, in double.
static Tensor2<double> dequantize_double(const QuantizedMatrix& q) {
  Tensor2<double> x = Tensor2<double>::from_shape(q.codes.shape());
  for (size_t r = 0; r < q.rows(); ++r)
    for (size_t c = 0; c < q.cols(); ++c) x(r, c) = double(decode(q.format, q.codes(r, c))) * double(q.scale(r, c));
  return x;
}

Tensor2<double> gemm_exact(const QuantizedMatrix& a, const QuantizedMatrix& b) {
  if (a.cols() != b.cols()) throw std::invalid_argument("gemm_exact: A and B must have the same K");
  const size_t M = a.rows(), N = b.rows(), K = a.cols();
  const Tensor2<double> ad = dequantize_double(a), bd = dequantize_double(b);
  Tensor2<double> c = Tensor2<double>::from_shape({M, N});
#pragma omp parallel for collapse(2) schedule(static)
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      double sum = 0.0;
      for (size_t k = 0; k < K; ++k) sum += ad(m, k) * bd(n, k);
      c(m, n) = sum;
    }
  return c;
}

}  // namespace dslab::fp8
