#include "reference/fp8.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <tuple>

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
  if (e < 2 || e > 8 || m < 1 || m > 10 || 1 + e + m > 16)
    throw std::invalid_argument("FP format E" + std::to_string(e) + "M" + std::to_string(m) +
                                ": exponent bits must be 2..8, mantissa bits 1..10, and 1 + E + M at most 16 "
                                "(codes are 16-bit)");
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
      "(X = 2..8 exponent bits, Y = 1..10 mantissa bits, 1 + X + Y <= 16), e.g. e5m6";
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

namespace {

// encode() on the float's bits, with the format's constants worked out once.
//  - |x| >= 2^emin, a normal of the format: the float's bits (exponent, then
//    23 mantissa bits) are already the magnitude code of a format with the
//    float's bias and 23 mantissa bits, and codes of consecutive magnitudes are
//    consecutive integers. Dropping the low 23 - M bits with round to nearest
//    even (add half a unit minus one, plus the lowest kept bit) rounds |x| to M
//    mantissa bits, a carry moving into the exponent as it should; subtracting
//    (127 - bias) << M rebases the exponent. Exact: only integer operations.
//  - |x| < 2^emin, a subnormal of the format: the code is |x| / 2^(emin - M)
//    rounded to nearest even, the float's 24-bit significand shifted right by
//    the distance between its quantum and the format's.
//  - Codes above the largest finite one overflow (saturating or not).
class Encoder {
 public:
  Encoder(const Format& f, Saturation sat)
      : mantissa_bits_(f.mantissa_bits),
        min_normal_bits_(uint32_t(f.emin() + 127) << 23),
        rebias_(uint32_t(127 - f.bias()) << f.mantissa_bits),
        subnormal_shift_(f.emin() - f.mantissa_bits + 150),
        max_code_(f.max_finite_code()),
        sign_bit_(f.sign_bit()),
        nan_(f.nan_code()),
        overflow_(sat == Saturation::Finite      ? f.max_finite_code()
                  : f.specials == Specials::IEEE ? f.inf_code()
                                                 : f.nan_code()) {}

  // Both cases are worked out and one is selected, without branches, so that
  // the compiler can vectorize loops over elements.
  uint16_t operator()(float x) const {
    const uint32_t bits = std::bit_cast<uint32_t>(x);
    const uint32_t abs = bits & 0x7FFFFFFFu;
    const uint32_t sign = (bits >> 31) ? sign_bit_ : 0u;
    const uint32_t normal = round_shift_rne(abs, 23 - mantissa_bits_) - rebias_;
    const uint32_t exp_field = abs >> 23;  // |x| = sig * 2^(max(exp_field, 1) - 150)
    const uint32_t sig = (abs & 0x7FFFFFu) | (exp_field ? 0x800000u : 0u);
    // sig < 2^24, so every shift of 25 or more gives 0: cap it there. (The shift
    // is >= 13 for subnormals of the format; the floor of 1 only keeps the unused
    // value defined for normals.)
    const int shift = std::clamp(subnormal_shift_ - int(std::max(exp_field, 1u)), 1, 25);
    const uint32_t subnormal = round_shift_rne(sig, shift);
    const uint32_t magnitude = abs >= min_normal_bits_ ? normal : subnormal;
    const bool overflows = abs == 0x7F800000u || magnitude > max_code_;  // inf, or beyond the largest finite
    return uint16_t(abs > 0x7F800000u ? nan_ : sign | (overflows ? overflow_ : magnitude));
  }

 private:
  // v / 2^shift rounded to nearest, ties to even (0 < shift <= 25, v < 2^31).
  static uint32_t round_shift_rne(uint32_t v, int shift) {
    return (v + (1u << (shift - 1)) - 1 + ((v >> shift) & 1)) >> shift;
  }

  int mantissa_bits_;
  uint32_t min_normal_bits_;  // bits of the float 2^emin
  uint32_t rebias_;
  int subnormal_shift_;       // emin - M + 150: the format's quantum over the float's
  uint32_t max_code_, sign_bit_, nan_, overflow_;
};

}  // namespace

uint16_t encode(const Format& f, float x, Saturation sat) { return Encoder(f, sat)(x); }

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

const float* decode_table(const Format& f) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, Specials>, std::vector<float>> tables;
  const std::lock_guard<std::mutex> lock(mutex);
  auto [it, added] = tables.try_emplace({f.exponent_bits, f.mantissa_bits, f.specials});
  if (added) {
    it->second.resize(size_t(1) << f.total_bits());
    for (size_t c = 0; c < it->second.size(); ++c) it->second[c] = decode(f, uint16_t(c));
  }
  return it->second.data();
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

// The group shape behind a granularity's name, for messages.
static std::string granularity_note(Granularity g) {
  switch (g) {
    case Granularity::PerTensor:
    case Granularity::PerRow: return "";
    case Granularity::Tile1x128: return " (1x128)";
    case Granularity::Block128x128: return " (128x128)";
    case Granularity::Block1x32: return " (1x32, E8M0 scales)";
  }
  return "";
}

Granularity parse_granularity(const std::string& name) {
  if (const auto g = parse_enum<Granularity>(name)) return *g;
  std::string allowed;
  for (Granularity g : enum_values<Granularity>())
    allowed += (allowed.empty() ? "" : ", ") + granularity_name(g) + granularity_note(g);
  throw std::invalid_argument("unknown granularity '" + name + "'; allowed: " + allowed);
}

std::string granularity_name(Granularity g) { return std::string(name_of(g)); }

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

// The loops below walk row by row, each row with the scale of every column
// spread out once per row of groups (no index division per element), so that
// the loop over a row's columns is one the compiler vectorizes; rows are
// independent, so they may run in parallel with the same result.

// amax on the bits: for non-negative floats the order of the bit patterns is
// the order of the values, so max(|x|) is an integer max of the bits with the
// sign cleared (which the compiler vectorizes), NaN (bits above inf's) as 0.
// For each row of groups, column_max[c] is the max over its rows (a loop over
// columns, whatever the group's width), then each group takes the max over its
// columns.
Tensor2<float> group_amax(const Tensor2<float>& x, GroupShape group) {
  const size_t rows = x.shape(0), cols = x.shape(1);
  Tensor2<float> amax = Tensor2<float>::from_shape({ceil_div(rows, group.rows), ceil_div(cols, group.cols)});
#pragma omp parallel if (rows * cols >= size_t(kParallelMinWork))
  {
    std::vector<int32_t> column_max(cols);
#pragma omp for schedule(static)
    for (size_t row_group = 0; row_group < amax.shape(0); ++row_group) {
      std::fill(column_max.begin(), column_max.end(), 0);
      for (size_t r = row_group * group.rows; r < std::min(rows, (row_group + 1) * group.rows); ++r) {
        const float* xr = &x(r, 0);
        for (size_t c = 0; c < cols; ++c) {
          const int32_t abs = std::bit_cast<int32_t>(xr[c]) & 0x7FFFFFFF;
          column_max[c] = std::max(column_max[c], abs > 0x7F800000 ? 0 : abs);  // NaN leaves amax unchanged
        }
      }
      for (size_t g = 0, c0 = 0; g < amax.shape(1); ++g, c0 += group.cols) {
        const auto first = column_max.begin() + c0, last = column_max.begin() + std::min(cols, c0 + group.cols);
        amax(row_group, g) = std::bit_cast<float>(*std::max_element(first, last));
      }
    }
  }
  return amax;
}

float scale_from_amax(float amax, const QuantConfig& cfg) {
  const float s = std::max(amax, cfg.min_amax) / cfg.format.max_finite();
  if (cfg.scale_rounding == ScaleRounding::Exact) return s;
  return decode_e8m0(encode_e8m0(s, Saturation::Finite));
}

// Scales from the group amax: [n_row_groups, n_col_groups].
static Tensor2<float> scales_from_amax(const Tensor2<float>& amax, const QuantConfig& cfg) {
  Tensor2<float> scales = Tensor2<float>::from_shape(amax.shape());
  for (size_t i = 0; i < amax.size(); ++i) scales.data()[i] = scale_from_amax(amax.data()[i], cfg);
  return scales;
}

static void check_amax_shape(const Tensor2<float>& x, GroupShape group, const Tensor2<float>& amax) {
  if (amax.shape(0) != ceil_div(x.shape(0), group.rows) || amax.shape(1) != ceil_div(x.shape(1), group.cols))
    throw std::invalid_argument("quantize: amax has the wrong number of groups for this tensor");
}

// Calls out(r, s) for every row r, s[c] being the scale of element (r, c);
// rows in parallel.
template <class Out>
static void for_each_row(size_t rows, size_t cols, GroupShape group, const Tensor2<float>& scales, Out out) {
#pragma omp parallel if (rows * cols >= size_t(kParallelMinWork))
  {
    std::vector<float> s(cols);
    size_t spread = SIZE_MAX;  // the row of groups whose scales s holds
#pragma omp for schedule(static)
    for (size_t r = 0; r < rows; ++r) {
      if (r / group.rows != spread) {
        spread = r / group.rows;
        for (size_t g = 0, c0 = 0; c0 < cols; ++g, c0 += group.cols)
          std::fill(s.begin() + c0, s.begin() + std::min(cols, c0 + group.cols), scales(spread, g));
      }
      out(r, s.data());
    }
  }
}

QuantizedMatrix quantize(const Tensor2<float>& x, const QuantConfig& cfg, const Tensor2<float>& amax) {
  validate(cfg);
  const size_t rows = x.shape(0), cols = x.shape(1);
  const GroupShape group = group_shape(cfg.granularity, rows, cols);
  check_amax_shape(x, group, amax);
  QuantizedMatrix q{cfg.format, group, Tensor2<uint16_t>::from_shape({rows, cols}), scales_from_amax(amax, cfg)};
  const Encoder encoder(cfg.format, cfg.saturation);
  for_each_row(rows, cols, group, q.scales, [&](size_t r, const float* s) {
    const Encoder encode_one = encoder;  // a local copy, which the compiler vectorizes over c
    const float* xr = &x(r, 0);
    uint16_t* qr = &q.codes(r, 0);
    for (size_t c = 0; c < cols; ++c) qr[c] = encode_one(xr[c] / s[c]);
  });
  return q;
}

QuantizedMatrix quantize(const Tensor2<float>& x, const QuantConfig& cfg) {
  validate(cfg);
  return quantize(x, cfg, group_amax(x, group_shape(cfg.granularity, x.shape(0), x.shape(1))));
}

// decode(q) * s, decode being a lookup in decode_table.
Tensor2<float> dequantize(const QuantizedMatrix& q) {
  Tensor2<float> x = Tensor2<float>::from_shape(q.codes.shape());
  const float* value = decode_table(q.format);
  const uint16_t code_bits = uint16_t((1u << q.format.total_bits()) - 1);  // decode() ignores the bits above
  for_each_row(q.rows(), q.cols(), q.group, q.scales, [&](size_t r, const float* s) {
    const uint16_t* qr = &q.codes(r, 0);
    float* xr = &x(r, 0);
    for (size_t c = 0; c < q.cols(); ++c) xr[c] = value[qr[c] & code_bits] * s[c];
  });
  return x;
}

// dequantize(quantize(x)) without the codes of the whole tensor: a piece of a
// row is encoded into a small buffer (a loop the compiler vectorizes), then
// looked up in the decode table and scaled.
Tensor2<float> quantize_dequantize(const Tensor2<float>& x, const QuantConfig& cfg, GroupShape group) {
  validate(cfg);
  const size_t rows = x.shape(0), cols = x.shape(1);
  const Tensor2<float> scales = scales_from_amax(group_amax(x, group), cfg);
  const Encoder encoder(cfg.format, cfg.saturation);
  const float* value = decode_table(cfg.format);
  Tensor2<float> y = Tensor2<float>::from_shape({rows, cols});
  for_each_row(rows, cols, group, scales, [&](size_t r, const float* s) {
    const Encoder encode_one = encoder;
    const float* xr = &x(r, 0);
    float* yr = &y(r, 0);
    constexpr size_t kBuffer = 256;
    uint16_t codes[kBuffer];
    for (size_t c0 = 0; c0 < cols; c0 += kBuffer) {
      const size_t n = std::min(kBuffer, cols - c0);
      for (size_t i = 0; i < n; ++i) codes[i] = encode_one(xr[c0 + i] / s[c0 + i]);
      for (size_t i = 0; i < n; ++i) yr[c0 + i] = value[codes[i]] * s[c0 + i];
    }
  });
  return y;
}

Tensor2<float> quantize_dequantize(const Tensor2<float>& x, const QuantConfig& cfg) {
  return quantize_dequantize(x, cfg, group_shape(cfg.granularity, x.shape(0), x.shape(1)));
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
  if (const auto r = parse_enum<Rounding>(name)) return *r;
  throw std::invalid_argument("unknown rounding '" + name + "'; allowed: " + names_text<Rounding>());
}

std::string rounding_name(Rounding r) { return std::string(name_of(r)); }

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
#pragma omp parallel for collapse(2) schedule(static) if (M * N * K >= size_t(kParallelMinWork))
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
#pragma omp parallel for collapse(2) schedule(static) if (M * N * K >= size_t(kParallelMinWork))
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      double sum = 0.0;
      for (size_t k = 0; k < K; ++k) sum += ad(m, k) * bd(n, k);
      c(m, n) = sum;
    }
  return c;
}

}  // namespace dslab::fp8
