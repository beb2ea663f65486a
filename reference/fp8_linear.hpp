// FP8 linear layers: V3's mixed precision recipe for the three GEMMs of every
// linear layer (review Sec. 2.4.2; DeepSeek-V3 report Sec. 3.3, Figure 6).
//
// A linear layer y = x W^T (x [N, in], W [out, in], dy [N, out]) runs three GEMMs.
// Each GEMM operand is quantized with its groups laid along the dimension the
// GEMM contracts over (K), then multiplied:
//   forward       y  = x  W^T   K = in    x  [N, in]   activation groups, W [out, in] weight groups
//   input grad    dx = dy W     K = out   dy [N, out]  gradient groups,   W^T [in, out] weight groups
//   weight grad   dW = dy^T x   K = N     dy^T [out, N] gradient groups,  x^T [in, N] activation groups
// V3: E4M3 everywhere, 1x128 tiles for x and dy, 128x128 blocks for W, online
// scales. For the weight gradient the tiles run along tokens: V3's 1x128 tiles
// become 128x1 tiles of x and dy. dW accumulates in fp32, as the master weights.
//
// The quantized operands are dequantized (decode(q) * s, exact in fp32) and
// multiplied by the deterministic fp32 gemm: products of FP8 values are exact,
// the sums are fp32. With accum_bits > 0 they go through fp8::gemm instead,
// the tensor-core accumulator model (much slower; see docs/fp8.md).
//
// Switching it on: the recipe is an argument of every linear layer
// (LinearPolicy in reference/linear.hpp). The transformer hands it to the
// blocks' attention and FFN linears only, so the embedding, output head, MoE
// gate, normalization and attention's softmax(QK^T)V stay in fp32. Double is
// never quantized.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "reference/enum_names.hpp"
#include "reference/fp8.hpp"
#include "reference/tensor.hpp"

namespace dslab::fp8 {

// How the three GEMMs of a linear layer are quantized.
struct Recipe {
  bool enabled = false;
  QuantConfig activation;  // x (forward and weight grad)
  QuantConfig weight;      // W (forward and input grad)
  QuantConfig gradient;    // dy (input grad and weight grad)
  // Tensor-core accumulation (fp8::gemm); false: exact products summed in fp32.
  bool emulate_accumulator = false;
  AccumulatorModel accumulator;
};

// Whether the blocks' linear layers take FP8 inputs, and whose recipe.
enum class RecipeKind {
  None,  // fp32 GEMM inputs
  V3,    // DeepSeek-V3's fine-grained recipe, with the fields of Fp8Args
};

// The [fp8] table of a run config. Formats are names (an open set: e4m3,
// e5m2, any eXmY / eXmYfn; see parse_format).
struct Fp8Args {
  RecipeKind recipe = RecipeKind::None;
  std::string format = "e4m3";       // activations and weights
  std::string grad_format = "e4m3";  // activation gradients
  Granularity act_granularity = Granularity::Tile1x128;
  Granularity weight_granularity = Granularity::Block128x128;
  Granularity grad_granularity = Granularity::Tile1x128;
  ScaleRounding scale = ScaleRounding::Exact;
  int accum_bits = 0;                // 0: fp32 sums; > 0: fp8::gemm keeping this many bits
  int promote_every = 128;           // N_C of the accumulator model
  // Every field is checked, also while the recipe is None. Throws ArgsError
  // (reference/args_error.hpp); the recipe is judged as a whole, so its keys
  // are every fp8.* key.
  void validate() const;
  // validate(), then the recipe the fields describe.
  Recipe to_recipe() const;
};
// The linear layer (reference/linear.hpp) with FP8 GEMM inputs.
void linear_forward(Tensor2<float>& y, const Tensor2<float>& x, const Tensor2<float>& w,
                    const Recipe& recipe);
// dx [N, in] = dy [N, out] W [out, in]     K = out: dy tiles along out, W^T [in, out] groups
void linear_backward_input(Tensor2<float>& dx, const Tensor2<float>& dy, const Tensor2<float>& w,
                           const Recipe& recipe);
// dW [out, in] += dy^T [out, N] x [N, in]  K = N: dy^T and x^T tiles along tokens
void linear_backward_weight(Tensor2<float>& dw, const Tensor2<float>& dy, const Tensor2<float>& x,
                            const Recipe& recipe);

}  // namespace dslab::fp8

namespace dslab {

template <> struct EnumNames<fp8::RecipeKind> {
  static constexpr std::array<std::string_view, 2> names = {"none", "v3"};
};

}  // namespace dslab
