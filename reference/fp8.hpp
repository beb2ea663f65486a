// FP8 mixed precision (review Sec. 2.4.2; DeepSeek-V3 report Sec. 3.3 and 3.5.2).
//
// Three parts, each usable alone:
//  1. Formats. A sign, E exponent bits and M mantissa bits: E4M3 ("fn": max 448, no
//     infinity, S.1111.111 is NaN), E5M2 (IEEE-like: infinities, max 57344) and any
//     ExMy such as V3's E5M6. encode() rounds a float to nearest, ties to even, the
//     way cuda_fp8.h's __nv_cvt_float_to_fp8 does, saturating to the largest finite
//     value (__NV_SATFINITE) or not (__NV_NOSAT: overflow gives inf, or NaN in "fn").
//     E8M0 (8-bit power-of-two scales, MX) has its own encode.
//  2. Fine-grained scaling. x [rows, cols] is cut into groups (per tensor, per row,
//     1x128 tiles, 128x128 blocks, 1x32 MX blocks); each group g gets a scale
//     s_g = amax_g / max_finite (exact in fp32, or rounded up to a power of two), and
//     stores codes q = encode(x / s_g); the dequantized value is decode(q) * s_g.
//     amax comes from the tensor itself (online) or from an amax history (delayed).
//  3. Block-scaled GEMM C = A B^T with an accumulator model of Hopper's FP8 tensor
//     cores: products are aligned to the largest exponent of a step and only
//     `mantissa_bits` bits below it are kept; every N_C products the partial sum is
//     scaled and added into an FP32 register ("promotion"). See docs/fp8.md.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "reference/enum_names.hpp"
#include "reference/tensor.hpp"

namespace dslab::fp8 {

// ---------------------------------------------------------------- formats

// What the all-ones exponent field means.
enum class Specials {
  IEEE,       // exponent all ones: infinity (mantissa 0) or NaN (E5M2, E5M6, FP16, BF16)
  FiniteNaN,  // "fn": no infinity; only exponent and mantissa all ones is NaN (E4M3)
};

// Saturation on overflow, as in cuda_fp8.h.
enum class Saturation {
  Finite,  // __NV_SATFINITE: overflow and +-inf become +-max finite
  None,    // __NV_NOSAT: overflow becomes +-inf (IEEE) or NaN ("fn")
};

// A sign bit, exponent_bits (2..8, bias 2^(E-1) - 1) and mantissa_bits (1..10),
// at most 16 bits in all. Codes are the low 1 + E + M bits of a uint16_t, sign on top.
struct Format {
  std::string name;
  int exponent_bits;
  int mantissa_bits;
  Specials specials;

  int bias() const { return (1 << (exponent_bits - 1)) - 1; }
  int emin() const { return 1 - bias(); }  // exponent of the smallest normal
  int total_bits() const { return 1 + exponent_bits + mantissa_bits; }
  uint16_t sign_bit() const { return uint16_t(1u << (exponent_bits + mantissa_bits)); }
  uint16_t max_finite_code() const;  // positive code of the largest finite value
  uint16_t nan_code() const;         // the NaN encode() returns (positive, all ones)
  uint16_t inf_code() const;         // positive infinity; IEEE formats only
  float max_finite() const;
  float min_normal() const;
  float min_subnormal() const;
};

Format e4m3();  // "fn": max 448, min subnormal 2^-9
Format e5m2();  // max 57344, min subnormal 2^-16
Format e5m6();  // V3's format for the inputs of the linear layer after attention
// A format from its name: e4m3, e5m2, or eXmY (IEEE specials) / eXmYfn (finite).
// Throws std::invalid_argument saying what is allowed.
Format parse_format(const std::string& name);

uint16_t encode(const Format& f, float x, Saturation sat);
float decode(const Format& f, uint16_t code);
// The value of every code, decode_table(f)[c] == decode(f, c) for c < 2^(1+E+M)
// (at most 2^16 entries): decoding is a lookup. Built on the first use of a
// format and kept; thread-safe.
const float* decode_table(const Format& f);
bool is_nan(const Format& f, uint16_t code);
bool is_inf(const Format& f, uint16_t code);

// E8M0: unsigned power-of-two scale 2^(code - 127), code 0xFF is NaN, no zero.
// encode_e8m0 rounds |x| up to a power of two (cudaRoundPosInf); with
// Saturation::Finite an overflow gives 0xFE (2^127), otherwise 0xFF.
uint8_t encode_e8m0(float x, Saturation sat);
float decode_e8m0(uint8_t code);

// ---------------------------------------------------------------- scaling

enum class Granularity {
  PerTensor,    // one scale
  PerRow,       // one scale per row (token)
  Tile1x128,    // 1 x 128: V3's activations
  Block128x128, // 128 x 128: V3's weights
  Block1x32,    // 1 x 32 with E8M0 scales: OCP microscaling (MX)
};
// The names of EnumNames<Granularity> below; parse throws std::invalid_argument
// naming the allowed ones.
Granularity parse_granularity(const std::string& name);
std::string granularity_name(Granularity g);

struct GroupShape {
  size_t rows, cols;
};
// The group of a [rows, cols] tensor; edge groups may be smaller.
GroupShape group_shape(Granularity g, size_t rows, size_t cols);

enum class ScaleRounding {
  Exact,       // s = amax / max_finite in fp32
  PowerOfTwo,  // s rounded up to 2^k (DeepSeek's "ue8m0" scales; MX's E8M0)
};

struct QuantConfig {
  Format format = e4m3();
  Granularity granularity = Granularity::Tile1x128;
  ScaleRounding scale_rounding = ScaleRounding::Exact;
  Saturation saturation = Saturation::Finite;
  float min_amax = 1e-4f;  // amax is clamped below, as in DeepSeek's act_quant
};
// Block1x32 needs power-of-two scales; throws std::invalid_argument otherwise.
void validate(const QuantConfig& cfg);

// A quantized [rows, cols] tensor: codes[r, c] and one fp32 scale per group,
// scales[r / group.rows, c / group.cols].
struct QuantizedMatrix {
  Format format;
  GroupShape group;
  Tensor2<uint16_t> codes;
  Tensor2<float> scales;

  size_t rows() const { return codes.shape(0); }
  size_t cols() const { return codes.shape(1); }
  float scale(size_t r, size_t c) const { return scales(r / group.rows, c / group.cols); }
};

// amax of each group: [n_row_groups, n_col_groups].
Tensor2<float> group_amax(const Tensor2<float>& x, GroupShape group);
// s = max(amax, min_amax) / max_finite, then rounded per cfg.scale_rounding.
float scale_from_amax(float amax, const QuantConfig& cfg);
// Quantize with scales from the given group amax (delayed scaling passes a history's).
QuantizedMatrix quantize(const Tensor2<float>& x, const QuantConfig& cfg,
                         const Tensor2<float>& amax);
// Online scaling: amax from x itself.
QuantizedMatrix quantize(const Tensor2<float>& x, const QuantConfig& cfg);
// decode(q) * s in fp32.
Tensor2<float> dequantize(const QuantizedMatrix& q);
// dequantize(quantize(x, cfg)), bitwise, without keeping the codes (online scaling).
Tensor2<float> quantize_dequantize(const Tensor2<float>& x, const QuantConfig& cfg);
// The same with explicit groups of x (cfg.granularity unused): with the groups
// of x^T transposed (a 1x128 tile of x^T is a 128x1 group of x) it gives
// transpose(quantize_dequantize(transpose(x), cfg)) without the transposes.
Tensor2<float> quantize_dequantize(const Tensor2<float>& x, const QuantConfig& cfg, GroupShape group);

// Delayed scaling: the scale of step t comes from the max over the amax of the
// previous `length` steps (TransformerEngine's amax_compute_algo = "max"). With no
// history yet it falls back to the current amax.
class AmaxHistory {
 public:
  explicit AmaxHistory(size_t length);
  Tensor2<float> amax_for_scaling(const Tensor2<float>& current) const;
  void push(const Tensor2<float>& amax);
  size_t size() const { return history_.size(); }

 private:
  size_t length_;
  std::deque<Tensor2<float>> history_;
};

// ---------------------------------------------------------------- GEMM

// How a term is cut to the kept bits when it is aligned, and when the sum is
// normalized back into the accumulator.
enum class Rounding {
  Truncate,  // toward zero (sign-magnitude shift)
  Floor,     // toward -inf (two's complement sign-fill right shift)
  Nearest,   // to nearest, ties to even
};
Rounding parse_rounding(const std::string& name);  // a name of EnumNames<Rounding>
std::string rounding_name(Rounding r);

// The tensor-core accumulator. Each step adds products_per_step products and the
// running partial sum: all terms are aligned to the largest exponent among them,
// keeping mantissa_bits bits below its leading bit (terms cut by `alignment`),
// summed exactly, and the sum is cut again to mantissa_bits bits. Every
// promote_every products (N_C; 0 = never) and at the end of K the partial sum is
// multiplied by s_A * s_B and added into an FP32 accumulator (fused multiply-add),
// and the partial sum restarts from zero.
struct AccumulatorModel {
  int mantissa_bits = 13;      // Hopper FP8: "14 bits" including the leading bit
  Rounding alignment = Rounding::Truncate;
  int products_per_step = 32;  // one FP8 WGMMA has K = 32
  int promote_every = 128;     // N_C; V3 uses 128 (4 WGMMAs)
};
// Throws std::invalid_argument when the model or the scale groups cannot work
// together: products_per_step must divide N_C, and the scales of A and B must be
// constant within each promotion interval (N_C divides the K-group, or the group
// spans all of K; with N_C = 0 the group must span all of K).
void validate(const AccumulatorModel& model, const QuantizedMatrix& a, const QuantizedMatrix& b);

// C [M, N] = A [M, K] . B [N, K]^T with the accumulator model.
Tensor2<float> gemm(const QuantizedMatrix& a, const QuantizedMatrix& b,
                    const AccumulatorModel& model);
// The same product of the dequantized FP8 inputs, summed in double.
Tensor2<double> gemm_exact(const QuantizedMatrix& a, const QuantizedMatrix& b);

}  // namespace dslab::fp8

namespace dslab {

template <> struct EnumNames<fp8::Granularity> {
  static constexpr std::array<std::string_view, 5> names = {"tensor", "row", "tile", "block", "mx"};
};
template <> struct EnumNames<fp8::ScaleRounding> {
  static constexpr std::array<std::string_view, 2> names = {"exact", "pow2"};
};
template <> struct EnumNames<fp8::Saturation> {
  static constexpr std::array<std::string_view, 2> names = {"finite", "none"};
};
template <> struct EnumNames<fp8::Rounding> {
  static constexpr std::array<std::string_view, 3> names = {"truncate", "floor", "nearest"};
};

}  // namespace dslab
