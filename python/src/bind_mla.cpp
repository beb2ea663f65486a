// Multi-head Latent Attention (reference/mla.hpp, Eq. (6)-(17)) on NumPy arrays:
// prefill forward and backward over [batch, seq_len, dim], and both decode paths
// (the latent cache with W^UK, W^UV absorbed, and the naive K/V cache) one token
// at a time. Weights are a dict by model.py's state-dict names ("wq_a.weight",
// "q_norm.weight", "wq_b.weight" or "wq.weight", "wkv_a.weight", "kv_norm.weight",
// "wkv_b.weight", "wo.weight"), so an MLA module's state_dict() goes in as it is.
#include <optional>
#include <variant>

#include "python/src/arrays.hpp"
#include "reference/mla.hpp"

namespace dslab::python {
namespace {

constexpr const char* kFields[] = {"dim", "n_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                                   "qk_rope_head_dim", "v_head_dim", "rope", "norm_eps", "max_seq_len",
                                   "original_seq_len", "rope_factor", "mscale", "beta_fast", "beta_slow"};

// What mla_forward keeps for mla_backward: its own copy of the weights, the
// cache and the RoPE table.
template <class T> struct MlaState {
  MlaArgs args;
  MlaWeights<T> weights;
  RopeTable rope;
  MlaCache<T> cache;
  int batch = 0, seq_len = 0;
};
struct MlaContext {
  std::variant<MlaState<double>, MlaState<float>> state;
};

template <class T> MlaWeights<T> weights_in(const py::handle& d, const MlaArgs& a, const char* fn) {
  MlaWeights<T> w(a);
  refs_in(w.refs(""), d, fn, "weights");
  return w;
}

template <class T>
py::tuple mla_forward_py(const py::array& x_in, const py::handle& weights, MlaArgs a, double theta) {
  const char* fn = "dslab.mla_forward";
  a.validate();
  const std::vector<long> s = check_shape(x_in, {{-1, "batch"}, {-1, "seq_len"}, {a.dim, "dim"}}, fn, "x");
  MlaState<T> st{.args = a, .weights = weights_in<T>(weights, a, fn), .rope = {}, .cache = {},
                 .batch = int(s[0]), .seq_len = int(s[1])};
  st.rope = a.rope_table(std::max(st.seq_len, 1), theta);
  const Tensor2<T> x = tensor_in<T, 2>(x_in, {{s[0], "batch"}, {s[1], "seq_len"}, {a.dim, "dim"}},
                                       {size_t(s[0] * s[1]), size_t(a.dim)}, fn, "x");
  Tensor2<T> out;
  mla_forward(out, st.cache, x, st.weights, a, st.rope, st.batch, st.seq_len);
  py::array y = array_out(out, s);
  return py::make_tuple(y, MlaContext{std::move(st)});
}

template <class T> py::tuple mla_backward_py(const py::array& dout_in, MlaState<T>& st) {
  const char* fn = "dslab.mla_backward";
  const long B = st.batch, T_ = st.seq_len, D = st.args.dim;
  const Tensor2<T> dout = tensor_in<T, 2>(dout_in, {{B, "batch"}, {T_, "seq_len"}, {D, "dim"}},
                                          {size_t(B * T_), size_t(D)}, fn, "dout");
  MlaWeights<T> g(st.args);
  Tensor2<T> dx;
  mla_backward(dx, g, dout, st.cache, st.weights, st.args, st.rope);
  return py::make_tuple(array_out(dx, {B, T_, D}), refs_out(g.refs("")));
}

// One sequence decoded token by token.
template <class T> struct Decoder {
  MlaArgs args;
  MlaWeights<T> weights;
  RopeTable rope;
  std::optional<MlaLatentCache<T>> latent;
  std::optional<MlaNaiveCache<T>> naive;
  int max_len = 0;
  int len() const { return latent ? latent->len : naive->len; }
};
struct MlaDecoder {
  std::variant<Decoder<double>, Decoder<float>> d;
};

template <class T>
MlaDecoder make_decoder(const py::handle& weights, const MlaArgs& a, int max_len, const std::string& cache,
                        double theta) {
  const char* fn = "dslab.MlaDecoder";
  if (max_len <= 0) throw py::value_error(std::string(fn) + ": max_len must be > 0, got " + std::to_string(max_len));
  if (cache != "latent" && cache != "naive")
    throw py::value_error(std::string(fn) + ": cache = '" + cache + "'; allowed: latent, naive");
  if (cache == "latent" && a.rope == MlaRope::Full)
    throw py::value_error(std::string(fn) + ": cache = 'latent' needs W^UK absorbed, which rope = 'full' forbids; "
                          "use cache = 'naive'");
  Decoder<T> d{.args = a, .weights = weights_in<T>(weights, a, fn), .rope = a.rope_table(max_len, theta),
               .latent = {}, .naive = {}, .max_len = max_len};
  if (cache == "latent") d.latent.emplace(a, max_len);
  else d.naive.emplace(a, max_len);
  return MlaDecoder{std::move(d)};
}

template <class T> py::array decode_step(Decoder<T>& d, const py::handle& x_in) {
  const char* fn = "dslab.MlaDecoder.step";
  if (d.len() >= d.max_len)
    throw py::value_error(std::string(fn) + ": the cache is full (max_len = " + std::to_string(d.max_len) + ")");
  const Tensor1<T> x = tensor_in<T, 1>(x_in, {{d.args.dim, "dim"}}, fn, "x");
  Tensor1<T> out = xt::zeros<T>({size_t(d.args.dim)});
  if (d.latent) mla_decode_absorbed(out.data(), x.data(), *d.latent, d.weights, d.args, d.rope);
  else mla_decode_naive(out.data(), x.data(), *d.naive, d.weights, d.args, d.rope);
  return array_out(out);
}

}  // namespace

void bind_mla(py::module_& m) {
  py::class_<MlaArgs> args(m, "MlaArgs",
                           "MLA's widths (model.py's names), the position encoding ('decoupled', 'none', 'full') "
                           "and YaRN (on when max_seq_len > original_seq_len).");
  args.def_readwrite("dim", &MlaArgs::dim)
      .def_readwrite("n_heads", &MlaArgs::n_heads)
      .def_readwrite("q_lora_rank", &MlaArgs::q_lora_rank)
      .def_readwrite("kv_lora_rank", &MlaArgs::kv_lora_rank)
      .def_readwrite("qk_nope_head_dim", &MlaArgs::qk_nope_head_dim)
      .def_readwrite("qk_rope_head_dim", &MlaArgs::qk_rope_head_dim)
      .def_readwrite("v_head_dim", &MlaArgs::v_head_dim)
      .def_readwrite("norm_eps", &MlaArgs::norm_eps)
      .def_readwrite("max_seq_len", &MlaArgs::max_seq_len)
      .def_readwrite("original_seq_len", &MlaArgs::original_seq_len)
      .def_readwrite("rope_factor", &MlaArgs::rope_factor)
      .def_readwrite("mscale", &MlaArgs::mscale)
      .def_readwrite("beta_fast", &MlaArgs::beta_fast)
      .def_readwrite("beta_slow", &MlaArgs::beta_slow)
      .def("softmax_scale", &MlaArgs::softmax_scale, "(d_nope + d_rope)^-1/2, Eq. (16), with YaRN's factor")
      .def("validate", &MlaArgs::validate, "Raises ValueError for the first broken rule.");
  enum_property(args, "rope", &MlaArgs::rope);
  kwargs_init(args, {std::begin(kFields), std::end(kFields)});

  py::class_<MlaContext>(m, "MlaContext", "What mla_forward keeps for mla_backward (opaque).");
  m.def("mla_forward", [](const py::handle& x, const py::handle& weights, const MlaArgs& a, double theta) {
          return dispatch(x, "dslab.mla_forward", "x", [&](auto t, const py::array& arr) {
            return mla_forward_py<decltype(t)>(arr, weights, a, theta);
          });
        }, py::arg("x"), py::arg("weights"), py::arg("args"), py::arg("rope_theta") = 10000.0,
        "MLA over x [batch, seq_len, dim], Eq. (6)-(17): (out [batch, seq_len, dim], context for mla_backward).");
  m.def("mla_backward", [](const py::handle& dout, MlaContext& ctx) -> py::object {
          const py::array d = as_array(dout, "dslab.mla_backward", "dout");
          return std::visit([&](auto& st) -> py::object { return mla_backward_py(d, st); }, ctx.state);
        }, py::arg("dout"), py::arg("context"),
        "(dx [batch, seq_len, dim], {weight name: gradient}) of the forward that made `context`.");

  py::class_<MlaDecoder>(m, "MlaDecoder",
                         "One sequence decoded a token at a time: cache='latent' keeps c_KV and k_R per token "
                         "(W^UK and W^UV absorbed), cache='naive' the full keys and values.")
      .def(py::init([](const py::handle& weights, const MlaArgs& a, int max_len, const std::string& cache,
                       double theta, const std::string& dtype) {
             a.validate();
             if (dtype == "float64") return make_decoder<double>(weights, a, max_len, cache, theta);
             if (dtype == "float32") return make_decoder<float>(weights, a, max_len, cache, theta);
             throw py::value_error("dslab.MlaDecoder: dtype = '" + dtype + "'; allowed: float64, float32");
           }), py::arg("weights"), py::arg("args"), py::arg("max_len"), py::arg("cache") = "latent",
           py::arg("rope_theta") = 10000.0, py::arg("dtype") = "float64")
      .def("step", [](MlaDecoder& d, const py::handle& x) -> py::object {
             return std::visit([&](auto& dec) -> py::object { return decode_step(dec, x); }, d.d);
           }, py::arg("x"), "The output [dim] for token x [dim] at the next position.")
      .def_property_readonly("len", [](const MlaDecoder& d) { return std::visit([](auto& dec) { return dec.len(); }, d.d); },
                             "Tokens cached so far.")
      .def_property_readonly("cache_floats_per_token", [](const MlaDecoder& d) {
             return std::visit([](auto& dec) {
               const MlaArgs& a = dec.args;
               return dec.latent ? a.kv_lora_rank + a.qk_rope_head_dim
                                 : a.n_heads * (a.qk_head_dim() + a.v_head_dim);
             }, d.d);
           }, "Numbers the cache keeps per token: d_c + d_rope (latent) or H (d_nope + d_rope + d_v) (naive).");
}

}  // namespace dslab::python
