#include "reference/fp8_linear.hpp"

#include <stdexcept>
#include <vector>

#include "reference/args_error.hpp"
#include "reference/gemm.hpp"

namespace dslab::fp8 {

namespace {


Tensor2<float> transposed(const Tensor2<float>& x) { return xt::transpose(x); }

// The groups of x^T, seen on x: cfg's [a, b] groups of x^T [cols, rows] are [b, a] groups of x.
GroupShape groups_of_transpose(const Tensor2<float>& x, const QuantConfig& cfg) {
  const GroupShape g = group_shape(cfg.granularity, x.shape(1), x.shape(0));
  return {g.cols, g.rows};
}

// Every key of the [fp8] table: each error of the recipe names them all.
[[noreturn]] void fail(const std::string& message) {
  throw ArgsError({"fp8.recipe", "fp8.format", "fp8.grad_format", "fp8.act_granularity", "fp8.weight_granularity",
                   "fp8.grad_granularity", "fp8.scale", "fp8.accum_bits", "fp8.promote_every"},
                  message);
}

template <class F> auto with_key(const std::string& key, F&& parse) {
  try {
    return parse();
  } catch (const std::invalid_argument& e) {
    fail("fp8." + key + ": " + e.what());
  }
}

// Width of a scale group along K (the columns); 0 when it spans all of K.
size_t group_width_along_k(Granularity g) {
  switch (g) {
    case Granularity::PerTensor:
    case Granularity::PerRow: return 0;
    case Granularity::Tile1x128:
    case Granularity::Block128x128: return 128;
    case Granularity::Block1x32: return 32;
  }
  return 0;
}

// The granularities whose scale spans all of K: "tensor, row".
std::string constant_along_k() {
  std::string names;
  for (Granularity g : enum_values<Granularity>())
    if (group_width_along_k(g) == 0) names += (names.empty() ? "" : ", ") + granularity_name(g);
  return names;
}

// fp8::gemm's rules (fp8.hpp validate), checked once for every operand of the
// recipe rather than at the first GEMM: the scales must stay constant within
// each promotion interval.
void check_accumulator(const Recipe& r) {
  const AccumulatorModel& m = r.accumulator;
  const int n_c = m.promote_every;
  if (n_c % m.products_per_step != 0)
    fail("fp8.promote_every = " + std::to_string(n_c) + " must be 0 (never) or a multiple of " +
         std::to_string(m.products_per_step) + " (products per WGMMA step)");
  const std::pair<const char*, const QuantConfig*> operands[] = {
      {"act_granularity", &r.activation}, {"weight_granularity", &r.weight}, {"grad_granularity", &r.gradient}};
  for (const auto& [key, cfg] : operands) {
    const size_t width = group_width_along_k(cfg->granularity);
    if (width == 0) continue;
    if (n_c == 0)
      fail("fp8.promote_every = 0 (no promotion) needs scales constant along K, but fp8." + std::string(key) +
           " = \"" + granularity_name(cfg->granularity) + "\" changes the scale every " + std::to_string(width) +
           " elements; allowed with it: " + constant_along_k());
    if (width % size_t(n_c) != 0)
      fail("fp8.promote_every = " + std::to_string(n_c) + " must divide the " + std::to_string(width) +
           "-wide scale groups of fp8." + key + " = \"" + granularity_name(cfg->granularity) + "\"");
  }
}

}  // namespace

void Fp8Args::validate() const { (void)to_recipe(); }

Recipe Fp8Args::to_recipe() const {
  Recipe r;  // every key is checked, also while the recipe is None
  r.enabled = recipe == RecipeKind::V3;
  const Format act_format = with_key("format", [&] { return parse_format(format); });
  const Format gradient_format = with_key("grad_format", [&] { return parse_format(grad_format); });
  auto config = [&](const char* key, Granularity granularity, const Format& f) {
    QuantConfig c;
    c.format = f;
    c.granularity = granularity;
    c.scale_rounding = scale;
    with_key(key, [&] {
      fp8::validate(c);
      return 0;
    });
    return c;
  };
  r.activation = config("act_granularity", act_granularity, act_format);
  r.weight = config("weight_granularity", weight_granularity, act_format);
  r.gradient = config("grad_granularity", grad_granularity, gradient_format);
  if (accum_bits < 0 || accum_bits > 40)
    fail("fp8.accum_bits = " + std::to_string(accum_bits) + ": allowed 0 (fp32 sums) or 1 .. 40 kept mantissa bits");
  if (promote_every < 0) fail("fp8.promote_every = " + std::to_string(promote_every) + ": allowed >= 0");
  r.emulate_accumulator = accum_bits > 0;
  r.accumulator.mantissa_bits = accum_bits > 0 ? accum_bits : r.accumulator.mantissa_bits;
  r.accumulator.alignment = Rounding::Floor;  // sign-fill shifting (docs/fp8.md)
  r.accumulator.promote_every = promote_every;
  if (r.emulate_accumulator) check_accumulator(r);
  return r;
}

// y [N, out] = x [N, in] W [out, in]^T, K = in.
void linear_forward(Tensor2<float>& y, const Tensor2<float>& x, const Tensor2<float>& w,
                    const Recipe& r) {
  const int N = x.shape(0), in = x.shape(1), out = w.shape(0);
  if (r.emulate_accumulator) {
    y = gemm(quantize(x, r.activation), quantize(w, r.weight), r.accumulator);
    return;
  }
  const Tensor2<float> xq = quantize_dequantize(x, r.activation), wq = quantize_dequantize(w, r.weight);
  ensure_shape(y, {size_t(N), size_t(out)});
  dslab::gemm<float>(false, true, N, out, in, 1.0f, xq.data(), in, wq.data(), in, 0.0f, y.data(), out);
}

// The same products as reference/linear.cpp, on the quantized-dequantized
// operands; W, dy and x with the groups of W^T, dy^T and x^T, laid along K.
void linear_backward_input(Tensor2<float>& dx, const Tensor2<float>& dy, const Tensor2<float>& w,
                           const Recipe& r) {
  const int N = dy.shape(0), out = w.shape(0), in = w.shape(1);
  if (r.emulate_accumulator) {
    dx = gemm(quantize(dy, r.gradient), quantize(transposed(w), r.weight), r.accumulator);
    return;
  }
  const Tensor2<float> dyq = quantize_dequantize(dy, r.gradient);
  const Tensor2<float> wq = quantize_dequantize(w, r.weight, groups_of_transpose(w, r.weight));
  ensure_shape(dx, {size_t(N), size_t(in)});
  dslab::gemm<float>(false, false, N, in, out, 1.0f, dyq.data(), out, wq.data(), in, 0.0f, dx.data(), in);
}

// dyq_n, xq_n: dy and x with their groups along the tokens N (K of this GEMM).
void linear_backward_weight(Tensor2<float>& dw, const Tensor2<float>& dy, const Tensor2<float>& x,
                            const Recipe& r) {
  const int N = x.shape(0), in = x.shape(1), out = dy.shape(1);
  if (r.emulate_accumulator) {
    dw += gemm(quantize(transposed(dy), r.gradient), quantize(transposed(x), r.activation), r.accumulator);
    return;
  }
  const Tensor2<float> dyq_n = quantize_dequantize(dy, r.gradient, groups_of_transpose(dy, r.gradient));
  const Tensor2<float> xq_n = quantize_dequantize(x, r.activation, groups_of_transpose(x, r.activation));
  dslab::gemm<float>(true, false, out, in, N, 1.0f, dyq_n.data(), out, xq_n.data(), in, 1.0f, dw.data(), in);
}

}  // namespace dslab::fp8
