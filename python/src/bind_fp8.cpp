// FP8 numerics (reference/fp8.hpp; review Sec. 2.4, V3 report Sec. 3.3) on NumPy
// arrays: element codes of any eXmY format, fine-grained quantization (per tensor,
// per row, 1x128 tiles, 128x128 blocks, MX 1x32) and its inverse, and the GEMM of
// two quantized matrices through the tensor-core accumulator model against the
// exact product. Inputs are float32, as the quantizer's.
#include <cmath>

#include "python/src/arrays.hpp"
#include "reference/fp8.hpp"

namespace dslab::python {
namespace {

using namespace dslab::fp8;

constexpr const char* kQuantFields[] = {"format", "granularity", "scale_rounding", "saturation", "min_amax"};
constexpr const char* kAccFields[] = {"mantissa_bits", "alignment", "products_per_step", "promote_every"};

Tensor2<float> matrix_in(const py::handle& obj, const char* fn, const char* arg) {
  return float32_in<2>(obj, {{-1, "rows"}, {-1, "cols"}}, fn, arg, "the quantizer's input type");
}

QuantizedMatrix quantized_in(const py::handle& codes_in, const py::handle& scales_in, const QuantConfig& cfg,
                             const char* fn) {
  validate(cfg);
  const py::array c = as_array(codes_in, fn, "codes");
  if (!c.dtype().is(py::dtype::of<uint16_t>()))
    throw py::type_error(std::string(fn) + ": codes has dtype " + std::string(py::str(c.dtype())) + "; expected uint16");
  const std::vector<long> s = check_shape(c, {{-1, "rows"}, {-1, "cols"}}, fn, "codes");
  QuantizedMatrix q{.format = cfg.format, .group = group_shape(cfg.granularity, size_t(s[0]), size_t(s[1])),
                    .codes = {}, .scales = {}};
  const long gr = q.group.rows ? long((size_t(s[0]) + q.group.rows - 1) / q.group.rows) : 0;
  const long gc = q.group.cols ? long((size_t(s[1]) + q.group.cols - 1) / q.group.cols) : 0;
  const auto cc = py::array_t<uint16_t, py::array::c_style>::ensure(c);
  q.codes = Tensor2<uint16_t>({size_t(s[0]), size_t(s[1])});
  std::copy(cc.data(), cc.data() + cc.size(), q.codes.data());
  const py::array sc = as_array(scales_in, fn, "scales");
  if (!sc.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(fn) + ": scales has dtype " + std::string(py::str(sc.dtype())) + "; expected float32");
  q.scales = tensor_in<float, 2>(sc, {{gr, "row groups"}, {gc, "column groups"}}, fn, "scales");
  return q;
}

}  // namespace

void bind_fp8(py::module_& m) {
  py::class_<QuantConfig> qc(m, "QuantConfig",
                             "How a matrix is quantized: format (e4m3, e5m2, eXmY[fn]), granularity (tensor, row, "
                             "tile = 1x128, block = 128x128, mx = 1x32), scale_rounding (exact, pow2), saturation "
                             "(finite, none), min_amax. Defaults: V3's activations (e4m3, 1x128 tiles).");
  qc.def_property("format", [](const QuantConfig& c) { return c.format.name; },
                  [](QuantConfig& c, const std::string& s) { c.format = parse_format(s); })
      .def_readwrite("min_amax", &QuantConfig::min_amax);
  enum_property(qc, "granularity", &QuantConfig::granularity);
  enum_property(qc, "scale_rounding", &QuantConfig::scale_rounding);
  enum_property(qc, "saturation", &QuantConfig::saturation);
  kwargs_init(qc, {std::begin(kQuantFields), std::end(kQuantFields)});

  py::class_<AccumulatorModel> acc(m, "AccumulatorModel",
                                   "The tensor-core accumulator: mantissa_bits kept after alignment (Hopper: 13), "
                                   "products_per_step (32), promotion to FP32 every promote_every products "
                                   "(N_C = 128 in V3; 0: never).");
  acc.def_readwrite("mantissa_bits", &AccumulatorModel::mantissa_bits)
      .def_readwrite("products_per_step", &AccumulatorModel::products_per_step)
      .def_readwrite("promote_every", &AccumulatorModel::promote_every);
  enum_property(acc, "alignment", &AccumulatorModel::alignment);
  kwargs_init(acc, {std::begin(kAccFields), std::end(kAccFields)});

  m.def("fp8_encode", [](const py::handle& x_in, const std::string& format, const std::string& saturation) {
          const char* fn = "dslab.fp8_encode";
          const Format f = parse_format(format);
          QuantConfig c;
          py::cast(&c, py::return_value_policy::reference).attr("saturation") = saturation;
          const py::array any = as_array(x_in, fn, "x");
          if (!any.dtype().is(py::dtype::of<float>()))
            throw py::type_error(std::string(fn) + ": x has dtype " + std::string(py::str(any.dtype())) + "; expected float32");
          const auto x = py::array_t<float, py::array::c_style>::ensure(any);
          py::array_t<uint16_t> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
          for (py::ssize_t i = 0; i < x.size(); ++i) out.mutable_data()[i] = encode(f, x.data()[i], c.saturation);
          return out;
        }, py::arg("x"), py::arg("format") = "e4m3", py::arg("saturation") = "finite",
        "The codes (uint16, low 1+E+M bits) of float32 values, rounded to nearest even (cuda_fp8.h's conversion).");
  m.def("fp8_decode", [](const py::handle& codes_in, const std::string& format) {
          const char* fn = "dslab.fp8_decode";
          const Format f = parse_format(format);
          const py::array any = as_array(codes_in, fn, "codes");
          if (!any.dtype().is(py::dtype::of<uint16_t>()))
            throw py::type_error(std::string(fn) + ": codes has dtype " + std::string(py::str(any.dtype())) + "; expected uint16");
          const auto c = py::array_t<uint16_t, py::array::c_style>::ensure(any);
          const uint16_t limit = uint16_t((1u << f.total_bits()) - 1);
          py::array_t<float> out(std::vector<py::ssize_t>(c.shape(), c.shape() + c.ndim()));
          for (py::ssize_t i = 0; i < c.size(); ++i) {
            if (c.data()[i] > limit)
              throw py::value_error(std::string(fn) + ": codes[" + std::to_string(i) + "] = " + std::to_string(c.data()[i]) +
                                    " has more than the " + std::to_string(f.total_bits()) + " bits of " + f.name);
            out.mutable_data()[i] = decode(f, c.data()[i]);
          }
          return out;
        }, py::arg("codes"), py::arg("format") = "e4m3", "The float32 values of codes.");
  m.def("fp8_quantize", [](const py::handle& x, const QuantConfig& cfg) {
          validate(cfg);
          const QuantizedMatrix q = quantize(matrix_in(x, "dslab.fp8_quantize", "x"), cfg);
          return py::make_tuple(array_out(q.codes), array_out(q.scales));
        }, py::arg("x"), py::arg("config") = QuantConfig{},
        "x [rows, cols] float32 -> (codes uint16 [rows, cols], scales float32 [row groups, column groups]), "
        "scale = max(amax, min_amax) / max_finite per group.");
  m.def("fp8_dequantize", [](const py::handle& codes, const py::handle& scales, const QuantConfig& cfg) {
          return array_out(dequantize(quantized_in(codes, scales, cfg, "dslab.fp8_dequantize")));
        }, py::arg("codes"), py::arg("scales"), py::arg("config") = QuantConfig{},
        "decode(codes) * scale of each element's group, float32.");
  m.def("fp8_quantize_dequantize", [](const py::handle& x, const QuantConfig& cfg) {
          validate(cfg);
          return array_out(quantize_dequantize(matrix_in(x, "dslab.fp8_quantize_dequantize", "x"), cfg));
        }, py::arg("x"), py::arg("config") = QuantConfig{}, "dequantize(quantize(x)): what an FP8 GEMM input holds.");
  m.def("fp8_gemm", [](const py::handle& a_in, const py::handle& b_in, const QuantConfig& a_cfg,
                       const QuantConfig& b_cfg, const AccumulatorModel& model) {
          const char* fn = "dslab.fp8_gemm";
          validate(a_cfg);
          validate(b_cfg);
          const Tensor2<float> a = matrix_in(a_in, fn, "a"), b = matrix_in(b_in, fn, "b");
          if (a.shape(1) != b.shape(1))
            throw py::value_error(std::string(fn) + ": a is [M, K] and b [N, K] with the same K; got K = " +
                                  std::to_string(a.shape(1)) + " and " + std::to_string(b.shape(1)));
          const QuantizedMatrix qa = quantize(a, a_cfg), qb = quantize(b, b_cfg);
          validate(model, qa, qb);
          return py::make_tuple(array_out(gemm(qa, qb, model)), array_out(gemm_exact(qa, qb)));
        }, py::arg("a"), py::arg("b"), py::arg("a_config") = QuantConfig{},
        py::arg("b_config") = QuantConfig{.granularity = Granularity::Block128x128}, py::arg("model") = AccumulatorModel{},
        "C = A B^T of the quantized a [M, K] and b [N, K]: (C through the accumulator model, float32; the exact sum "
        "of the same FP8 products, float64). Their difference is the accumulation error alone.");
}

}  // namespace dslab::python
