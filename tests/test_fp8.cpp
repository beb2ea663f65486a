// FP8 formats against NVIDIA's cuda_fp8.h host conversions (plain g++, no GPU),
// FP16 / BF16 as generic ExMy formats against cuda_fp16.h / cuda_bf16.h, E5M6
// against a brute-force nearest search, and E8M0 scales against cuda_fp8.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference/fp8.hpp"

#if DSLAB_HAVE_CUDA_FP8_H
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#endif

namespace fp8 = dslab::fp8;
using fp8::Saturation;

namespace {

#if DSLAB_HAVE_CUDA_FP8_H
#define REQUIRE_CUDA_FP8_H() (void)0
#else
#define REQUIRE_CUDA_FP8_H() GTEST_SKIP() << "cuda_fp8.h not found at /usr/local/cuda/include: no NVIDIA oracle"
#endif

constexpr float kInf = std::numeric_limits<float>::infinity();

float from_bits(uint32_t b) { return std::bit_cast<float>(b); }

// Inputs around every value of `f`: each code's value, the midpoints between
// neighbouring codes (ties), the float just below and above each, the overflow
// tie past the largest finite value, and the float specials; both signs.
std::vector<float> edge_cases(const fp8::Format& f) {
  std::vector<float> xs = {0.0f, kInf, std::numeric_limits<float>::quiet_NaN(), from_bits(0x7F800001u),
                           from_bits(0x7FC12345u), std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(), 1e-30f,
                           1e30f};
  std::vector<float> values;
  for (uint32_t c = 0; c <= f.max_finite_code(); ++c) values.push_back(fp8::decode(f, uint16_t(c)));
  // One quantum past the largest finite value, as if the exponent range went on.
  const float top = values.back();
  values.push_back(top + (top - values[values.size() - 2]));
  for (size_t i = 0; i < values.size(); ++i) {
    xs.push_back(values[i]);
    if (i + 1 < values.size()) {
      const float mid = 0.5f * (values[i] + values[i + 1]);
      xs.insert(xs.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf)});
    }
  }
  const size_t n = xs.size();
  for (size_t i = 0; i < n; ++i) xs.push_back(-xs[i]);
  return xs;
}

// Random floats: half uniform over all 2^32 bit patterns (NaN payloads, infinities,
// huge and tiny values), half with exponents spread over the format's range.
float random_input(dslab::Rng& rng, const fp8::Format& f) {
  const uint64_t r = rng.next();
  if (r & 1) return from_bits(uint32_t(r >> 32));
  const int lo = f.emin() - f.mantissa_bits - 3, hi = (1 << f.exponent_bits) - f.bias() + 1;
  const int e = lo + int((r >> 1) % uint64_t(hi - lo + 1));
  const uint32_t mantissa = uint32_t(r >> 40) & 0x7FFFFF;
  const float x = std::ldexp(1.0f + float(mantissa) * 0x1p-23f, e);
  return (r & 2) ? -x : x;
}

// Runs `check(x)` (true when it agrees with the oracle) on n random inputs in
// parallel; returns the number of disagreements and the first failing input.
template <class Check>
std::pair<size_t, float> random_sweep(const fp8::Format& f, size_t n, uint64_t seed, Check check) {
  constexpr size_t kChunk = 1 << 16;
  const size_t chunks = (n + kChunk - 1) / kChunk;
  size_t failures = 0;
  size_t first = std::numeric_limits<size_t>::max();
#pragma omp parallel for schedule(static) reduction(+ : failures) reduction(min : first)
  for (size_t ch = 0; ch < chunks; ++ch) {
    dslab::Rng rng(seed, ch);
    for (size_t i = ch * kChunk; i < std::min(n, (ch + 1) * kChunk); ++i) {
      const float x = random_input(rng, f);
      if (!check(x)) {
        ++failures;
        first = std::min(first, i);
      }
    }
  }
  if (failures == 0) return {0, 0.0f};
  // Regenerate the first failing input for the message.
  const size_t ch = first / kChunk;
  dslab::Rng rng(seed, ch);
  float x = 0;
  for (size_t i = ch * kChunk; i <= first; ++i) x = random_input(rng, f);
  return {failures, x};
}

constexpr size_t kRandomInputs = 10'000'000;

#if DSLAB_HAVE_CUDA_FP8_H
__nv_fp8_interpretation_t nv_kind(const fp8::Format& f) { return f.exponent_bits == 4 ? __NV_E4M3 : __NV_E5M2; }
__nv_saturation_t nv_sat(Saturation s) { return s == Saturation::Finite ? __NV_SATFINITE : __NV_NOSAT; }
uint16_t nv_encode(const fp8::Format& f, float x, Saturation s) {
  return __nv_cvt_float_to_fp8(x, nv_sat(s), nv_kind(f));
}
float nv_decode(const fp8::Format& f, uint16_t code) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t(code), nv_kind(f))));
}
#endif

struct Fp8Case {
  fp8::Format format;
  Saturation saturation;
};

void PrintTo(const Fp8Case& c, std::ostream* os) {
  *os << c.format.name << (c.saturation == Saturation::Finite ? " satfinite" : " nosat");
}

class Fp8VsCuda : public ::testing::TestWithParam<Fp8Case> {};

TEST_P(Fp8VsCuda, EveryCodeDecodesLikeCuda) {
  REQUIRE_CUDA_FP8_H();
#if DSLAB_HAVE_CUDA_FP8_H
  const fp8::Format& f = GetParam().format;
  for (uint32_t code = 0; code < 256; ++code) {
    const float mine = fp8::decode(f, uint16_t(code)), nv = nv_decode(f, uint16_t(code));
    if (std::isnan(nv)) {
      EXPECT_TRUE(std::isnan(mine) && fp8::is_nan(f, uint16_t(code))) << f.name << " code " << code;
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(mine), std::bit_cast<uint32_t>(nv)) << f.name << " code " << code;
      EXPECT_FALSE(fp8::is_nan(f, uint16_t(code)));
      EXPECT_EQ(fp8::is_inf(f, uint16_t(code)), std::isinf(nv));
    }
  }
#endif
}

TEST_P(Fp8VsCuda, EdgeCasesEncodeLikeCuda) {
  REQUIRE_CUDA_FP8_H();
#if DSLAB_HAVE_CUDA_FP8_H
  const auto [f, sat] = GetParam();
  const std::vector<float> xs = edge_cases(f);
  ASSERT_GT(xs.size(), 1000u);
  for (float x : xs)
    ASSERT_EQ(fp8::encode(f, x, sat), nv_encode(f, x, sat))
        << f.name << " x = " << x << " (bits " << std::hex << std::bit_cast<uint32_t>(x) << ")";
#endif
}

TEST_P(Fp8VsCuda, RandomFloatsEncodeLikeCuda) {
  REQUIRE_CUDA_FP8_H();
#if DSLAB_HAVE_CUDA_FP8_H
  const auto [f, sat] = GetParam();
  const auto [failures, x] = random_sweep(f, kRandomInputs, 11, [&](float v) {
    return fp8::encode(f, v, sat) == nv_encode(f, v, sat);
  });
  EXPECT_EQ(failures, 0u) << f.name << ": first mismatch at x = " << x << " (bits " << std::hex
                          << std::bit_cast<uint32_t>(x) << "): mine " << fp8::encode(f, x, sat) << ", cuda "
                          << nv_encode(f, x, sat);
#endif
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp8VsCuda,
                         ::testing::Values(Fp8Case{fp8::e4m3(), Saturation::Finite},
                                           Fp8Case{fp8::e4m3(), Saturation::None},
                                           Fp8Case{fp8::e5m2(), Saturation::Finite},
                                           Fp8Case{fp8::e5m2(), Saturation::None}),
                         [](const auto& info) {
                           return info.param.format.name +
                                  (info.param.saturation == Saturation::Finite ? "_satfinite" : "_nosat");
                         });

// FP16 (E5M10) and BF16 (E8M7) through the generic ExMy path, against NVIDIA's
// round-to-nearest conversions (which overflow to infinity: Saturation::None).
TEST(GenericFormat, Fp16AndBf16EncodeLikeCuda) {
  REQUIRE_CUDA_FP8_H();
#if DSLAB_HAVE_CUDA_FP8_H
  const fp8::Format fp16 = fp8::parse_format("e5m10"), bf16 = fp8::parse_format("e8m7");
  auto agree = [](const fp8::Format& f, float x, uint16_t nv) {
    const uint16_t mine = fp8::encode(f, x, Saturation::None);
    return std::isnan(x) ? fp8::is_nan(f, mine) : mine == nv;
  };
  auto half_bits = [](float x) { return __half_raw(__float2half_rn(x)).x; };
  auto bf16_bits = [](float x) { return __nv_bfloat16_raw(__float2bfloat16_rn(x)).x; };
  for (float x : edge_cases(fp16)) ASSERT_TRUE(agree(fp16, x, half_bits(x))) << "e5m10 x = " << x;
  for (float x : {1.0f, 0x1.01p0f, 0x1.018p0f, 0x1.008p0f, 3e38f, 0x1.fep127f, 0x1.ffp127f, 1e-40f, 0x1p-133f,
                  0x1p-134f, 0x1.8p-134f, -0x1.01p-120f})
    ASSERT_TRUE(agree(bf16, x, bf16_bits(x))) << "e8m7 x = " << x;
  const size_t n = kRandomInputs / 10;
  EXPECT_EQ(random_sweep(fp16, n, 12, [&](float x) { return agree(fp16, x, half_bits(x)); }).first, 0u);
  EXPECT_EQ(random_sweep(bf16, n, 13, [&](float x) { return agree(bf16, x, bf16_bits(x)); }).first, 0u);
  for (uint32_t c = 0; c < 65536; ++c) {
    const float nv = __half2float(__half(__half_raw{uint16_t(c)}));
    const float mine = fp8::decode(fp16, uint16_t(c));
    ASSERT_TRUE(std::isnan(nv) ? std::isnan(mine) : std::bit_cast<uint32_t>(nv) == std::bit_cast<uint32_t>(mine))
        << "e5m10 code " << c;
  }
#endif
}

// E5M6 has no NVIDIA conversion: compare with a brute-force search for the
// nearest of all its finite values (ties to the even code), saturating.
TEST(GenericFormat, E5m6MatchesBruteForceNearest) {
  const fp8::Format f = fp8::e5m6();
  std::vector<double> value;  // value[c] of every non-negative finite code c
  for (uint32_t c = 0; c <= f.max_finite_code(); ++c) value.push_back(fp8::decode(f, uint16_t(c)));
  ASSERT_TRUE(std::is_sorted(value.begin(), value.end()));
  auto nearest = [&](float x) -> uint16_t {
    const double a = std::fabs(double(x));
    const auto it = std::lower_bound(value.begin(), value.end(), a);
    size_t c;
    if (it == value.end()) {
      c = value.size() - 1;
    } else if (it == value.begin()) {
      c = 0;
    } else {
      const size_t hi = size_t(it - value.begin()), lo = hi - 1;
      const double dlo = a - value[lo], dhi = value[hi] - a;
      c = dlo < dhi ? lo : dhi < dlo ? hi : (lo % 2 == 0 ? lo : hi);
    }
    return uint16_t(c | (std::signbit(x) ? f.sign_bit() : 0));
  };
  for (float x : edge_cases(f)) {
    if (!std::isfinite(x)) continue;
    ASSERT_EQ(fp8::encode(f, x, Saturation::Finite), nearest(x)) << "x = " << x;
  }
  dslab::Rng rng(5);
  for (int i = 0; i < 200000; ++i) {
    float x = random_input(rng, f);
    if (!std::isfinite(x)) continue;
    ASSERT_EQ(fp8::encode(f, x, Saturation::Finite), nearest(x)) << "x = " << x;
  }
  EXPECT_EQ(fp8::encode(f, kInf, Saturation::None), f.inf_code());
  EXPECT_EQ(fp8::encode(f, 1e9f, Saturation::None), f.inf_code());
  EXPECT_EQ(fp8::encode(f, -kInf, Saturation::Finite), f.sign_bit() | f.max_finite_code());
}

// Every format the code supports (E = 2..8, M = 1..10, at most 16 bits; IEEE
// and "fn" specials).
std::vector<fp8::Format> every_format() {
  std::vector<fp8::Format> formats;
  for (int e = 2; e <= 8; ++e)
    for (int m = 1; m <= 10 && 1 + e + m <= 16; ++m)
      for (const char* suffix : {"", "fn"}) {
        std::string name = "e";
        name += std::to_string(e);
        name += 'm';
        name += std::to_string(m);
        name += suffix;
        formats.push_back(fp8::parse_format(name));
      }
  return formats;
}

// IEEE 754 rounding of x to the format by search: the nearest of all finite
// values, ties to the even code, the exponent range taken as unbounded (one
// value past the largest finite one); beyond the largest finite value it
// overflows to +-max (saturating), +-inf (IEEE) or NaN ("fn").
class NearestSearch {
 public:
  // The values in double from the code's fields (E8 "fn" formats reach 2^128,
  // beyond float), up to one code past the largest finite one.
  explicit NearestSearch(const fp8::Format& f) : f_(f) {
    const int m = f.mantissa_bits;
    for (uint32_t c = 0; c <= uint32_t(f.max_finite_code()) + 1; ++c) {
      const int exp_field = int(c >> m), mant = int(c & ((1u << m) - 1));
      value_.push_back(exp_field == 0 ? std::ldexp(double(mant), f.emin() - m)
                                      : std::ldexp(double(mant + (1 << m)), exp_field - f.bias() - m));
    }
  }
  uint16_t operator()(float x, Saturation sat) const {
    if (std::isnan(x)) return f_.nan_code();
    const uint16_t sign = std::signbit(x) ? f_.sign_bit() : 0;
    const uint16_t overflow = sat == Saturation::Finite          ? f_.max_finite_code()
                              : f_.specials == fp8::Specials::IEEE ? f_.inf_code()
                                                                   : f_.nan_code();
    const double a = std::fabs(double(x));
    const auto it = std::lower_bound(value_.begin(), value_.end(), a);
    if (it == value_.end()) return sign | overflow;
    size_t c = size_t(it - value_.begin());
    if (c > 0 && *it != a) {
      const double below = a - value_[c - 1], above = *it - a;
      if (below < above || (below == above && (c - 1) % 2 == 0)) --c;
    }
    return c > f_.max_finite_code() ? uint16_t(sign | overflow) : uint16_t(sign | c);
  }

 private:
  fp8::Format f_;
  std::vector<double> value_;  // value_[c] of every non-negative finite code, and one past
};

TEST(GenericFormat, EveryFormatMatchesNearestSearch) {
  dslab::Rng rng(6);
  for (const fp8::Format& f : every_format()) {
    const NearestSearch nearest(f);
    std::vector<float> xs;
    if (f.total_bits() <= 12) xs = edge_cases(f);
    for (int i = 0; i < 20000; ++i) xs.push_back(random_input(rng, f));
    for (Saturation sat : {Saturation::Finite, Saturation::None})
      for (float x : xs)
        ASSERT_EQ(fp8::encode(f, x, sat), nearest(x, sat))
            << f.name << (sat == Saturation::Finite ? " satfinite" : " nosat") << " x = " << x << " (bits "
            << std::hex << std::bit_cast<uint32_t>(x) << ")";
  }
}

TEST(Formats, DecodeTableHoldsEveryCodesValue) {
  for (const fp8::Format& f : every_format()) {
    const float* table = fp8::decode_table(f);
    for (uint32_t c = 0; c < (1u << f.total_bits()); ++c) {
      const float v = fp8::decode(f, uint16_t(c));
      ASSERT_EQ(std::bit_cast<uint32_t>(table[c]), std::bit_cast<uint32_t>(v)) << f.name << " code " << c;
    }
    EXPECT_EQ(fp8::decode_table(f), table) << "built once";
  }
  // Codes are 16-bit: E8M8 (17 bits) is refused.
  EXPECT_THROW(fp8::parse_format("e8m8"), std::invalid_argument);
}

// The published ranges (FACTS.md; OCP FP8 spec): closed forms.
TEST(Formats, RangesAndSpecials) {
  EXPECT_EQ(fp8::e4m3().max_finite(), 448.0f);
  EXPECT_EQ(fp8::e4m3().min_subnormal(), 0x1p-9f);
  EXPECT_EQ(fp8::e4m3().min_normal(), 0x1p-6f);
  EXPECT_EQ(fp8::e5m2().max_finite(), 57344.0f);
  EXPECT_EQ(fp8::e5m2().min_subnormal(), 0x1p-16f);
  EXPECT_EQ(fp8::e5m6().max_finite(), (2.0f - 0x1p-6f) * 0x1p15f);
  EXPECT_EQ(fp8::e5m6().min_subnormal(), 0x1p-20f);
  // E4M3 "fn": one NaN per sign, no infinity; E5M2: +-inf and 3 NaNs per sign.
  int e4m3_nans = 0, e5m2_nans = 0, e5m2_infs = 0;
  for (uint32_t c = 0; c < 256; ++c) {
    e4m3_nans += fp8::is_nan(fp8::e4m3(), uint16_t(c));
    EXPECT_FALSE(fp8::is_inf(fp8::e4m3(), uint16_t(c)));
    e5m2_nans += fp8::is_nan(fp8::e5m2(), uint16_t(c));
    e5m2_infs += fp8::is_inf(fp8::e5m2(), uint16_t(c));
  }
  EXPECT_EQ(e4m3_nans, 2);
  EXPECT_EQ(e5m2_nans, 6);
  EXPECT_EQ(e5m2_infs, 2);
}

TEST(Formats, EveryCodeRoundTrips) {
  for (const fp8::Format& f : {fp8::e4m3(), fp8::e5m2(), fp8::e5m6()})
    for (uint32_t c = 0; c < (1u << f.total_bits()); ++c) {
      if (fp8::is_nan(f, uint16_t(c))) continue;
      ASSERT_EQ(fp8::encode(f, fp8::decode(f, uint16_t(c)), Saturation::None), c) << f.name << " code " << c;
    }
}

TEST(Formats, ParseNamesAndRejectBadOnes) {
  EXPECT_EQ(fp8::parse_format("e4m3").specials, fp8::Specials::FiniteNaN);
  EXPECT_EQ(fp8::parse_format("e5m6").mantissa_bits, 6);
  EXPECT_EQ(fp8::parse_format("e3m2fn").specials, fp8::Specials::FiniteNaN);
  for (const char* bad : {"e9m2", "e5m0", "e5m11", "fp8", "e5m2x", "e1m3", ""}) {
    try {
      fp8::parse_format(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("allowed"), std::string::npos) << e.what();
    }
  }
}

// E8M0 scales, rounded up (cudaRoundPosInf), both saturation modes.
TEST(E8m0, EncodeAndDecodeLikeCuda) {
  REQUIRE_CUDA_FP8_H();
#if DSLAB_HAVE_CUDA_FP8_H
  for (uint32_t c = 0; c < 256; ++c) {
    const float nv = std::bit_cast<float>(uint32_t(__nv_cvt_e8m0_to_bf16raw(__nv_fp8_storage_t(c)).x) << 16);
    const float mine = fp8::decode_e8m0(uint8_t(c));
    ASSERT_TRUE(std::isnan(nv) ? std::isnan(mine) : nv == mine) << "code " << c;
  }
  std::vector<float> xs = {0.0f, kInf, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::denorm_min()};
  for (int e = -150; e <= 128; ++e) {
    const float p = std::ldexp(1.0f, e);
    xs.insert(xs.end(), {p, std::nextafter(p, 0.0f), std::nextafter(p, kInf), 1.5f * p});
  }
  dslab::Rng rng(3);
  for (int i = 0; i < 1000000; ++i) xs.push_back(from_bits(uint32_t(rng.next())));
  for (Saturation sat : {Saturation::Finite, Saturation::None})
    for (float x : xs)
      ASSERT_EQ(fp8::encode_e8m0(x, sat), __nv_cvt_float_to_e8m0(x, nv_sat(sat), cudaRoundPosInf))
          << "x = " << x << " bits " << std::hex << std::bit_cast<uint32_t>(x);
#endif
}

}  // namespace
