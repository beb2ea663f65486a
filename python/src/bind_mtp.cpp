// Multi-Token Prediction's own layer (reference/mtp.hpp, Eq. (25)'s input): the
// projection h'^k = eh_proj [enorm(e) ; hnorm(h)] that joins the embedding of
// the token k places ahead with the previous depth's hidden state, forward and
// backward, on NumPy arrays. Weights are a dict by DeepSeek-V3's names
// ("enorm.weight", "hnorm.weight", "eh_proj.weight"). The whole chain of modules
// (their blocks, the shared head, the losses of Eq. (25)-(26)) runs through
// dslab.Model.mtp_forward / mtp_backward, which use the model's own modules.
#include <variant>

#include "python/src/arrays.hpp"
#include "reference/mtp.hpp"

namespace dslab::python {
namespace {

// What mtp_proj_forward keeps for mtp_proj_backward: its weights and cache.
template <class T> struct MtpProjState {
  MtpProjWeights<T> weights;
  MtpProjCache<T> cache;
  std::vector<long> shape;  // of e and h: [..., dim]
};
struct MtpProjContext {
  std::variant<MtpProjState<double>, MtpProjState<float>> state;
};

template <class T> std::vector<ParamRef<T>> proj_refs(MtpProjWeights<T>& w) {
  return {param_ref("enorm.weight", w.enorm), param_ref("hnorm.weight", w.hnorm),
          param_ref("eh_proj.weight", w.eh_proj)};
}

// Leading axes merged into rows: x [..., D] as [N, D].
std::vector<Dim> row_dims(const std::vector<long>& s) {
  std::vector<Dim> dims;
  for (long d : s) dims.push_back({d, "n"});
  if (!dims.empty()) dims.back().name = "dim";
  return dims;
}

template <class T>
py::tuple mtp_proj_forward_py(const py::array& e_in, const py::handle& h_in, const py::handle& weights, double eps) {
  const char* fn = "dslab.mtp_proj_forward";
  const std::vector<long> s = shape_of(e_in);
  if (s.empty() || s.back() == 0) throw py::value_error(std::string(fn) + ": e must be [..., dim] with dim > 0");
  if (!(eps > 0)) throw py::value_error(std::string(fn) + ": eps must be > 0, got " + std::to_string(eps));
  const size_t D = size_t(s.back()), N = size_t(e_in.size()) / D;
  MtpProjState<T> st;
  st.shape = s;
  st.weights.enorm = xt::zeros<T>({D});
  st.weights.hnorm = xt::zeros<T>({D});
  st.weights.eh_proj = xt::zeros<T>({D, 2 * D});
  refs_in(proj_refs(st.weights), weights, fn, "weights");
  const Tensor2<T> e = tensor_in<T, 2>(e_in, row_dims(s), {N, D}, fn, "e");
  const Tensor2<T> h = tensor_in<T, 2>(h_in, row_dims(s), {N, D}, fn, "h");
  Tensor2<T> x;
  mtp_proj_forward(x, st.cache, e, h, st.weights, eps);
  py::array out = array_out(x, s);
  return py::make_tuple(out, MtpProjContext{std::move(st)});
}

template <class T> py::tuple mtp_proj_backward_py(const py::array& dx_in, MtpProjState<T>& st) {
  const char* fn = "dslab.mtp_proj_backward";
  const size_t D = size_t(st.shape.back()), N = st.cache.e.shape(0);
  const Tensor2<T> dx = tensor_in<T, 2>(dx_in, row_dims(st.shape), {N, D}, fn, "dx");
  MtpProjWeights<T> g;  // rmsnorm_backward and linear_backward add into these
  g.enorm = xt::zeros<T>({D});
  g.hnorm = xt::zeros<T>({D});
  g.eh_proj = xt::zeros<T>({D, 2 * D});
  Tensor2<T> de, dh;
  mtp_proj_backward(de, dh, g, dx, st.cache, st.weights);
  return py::make_tuple(array_out(de, st.shape), array_out(dh, st.shape), refs_out(proj_refs(g)));
}

}  // namespace

void bind_mtp(py::module_& m) {
  py::class_<MtpProjContext>(m, "MtpProjContext", "What mtp_proj_forward keeps for mtp_proj_backward (opaque).");
  m.def("mtp_proj_forward", [](const py::handle& e, const py::handle& h, const py::handle& weights, double eps) {
          return dispatch(e, "dslab.mtp_proj_forward", "e", [&](auto t, const py::array& arr) {
            return mtp_proj_forward_py<decltype(t)>(arr, h, weights, eps);
          });
        }, py::arg("e"), py::arg("h"), py::arg("weights"), py::arg("eps") = 1e-6,
        "MTP's input projection (Eq. (25)): e = Emb(t_{i+k}) and h = h^{k-1}_i, both [..., dim] -> "
        "(eh_proj [enorm(e) ; hnorm(h)] [..., dim], context for mtp_proj_backward). weights: "
        "{'enorm.weight': [dim], 'hnorm.weight': [dim], 'eh_proj.weight': [dim, 2 dim]}, the embedding's half first "
        "as in DeepSeek-V3's checkpoints.");
  m.def("mtp_proj_backward", [](const py::handle& dx, MtpProjContext& ctx) -> py::object {
          const py::array d = as_array(dx, "dslab.mtp_proj_backward", "dx");
          return std::visit([&](auto& st) -> py::object { return mtp_proj_backward_py(d, st); }, ctx.state);
        }, py::arg("dx"), py::arg("context"),
        "(de, dh [..., dim], {weight name: gradient}) of the forward that made `context`.");
}

}  // namespace dslab::python
