// DeepSeekMoE (reference/moe.hpp, Sec. 2.2) on NumPy arrays: the gate (softmax or
// sigmoid scores, group-limited top-K, the Eq. (24) selection bias), the whole
// MoE layer forward and backward, and the balance losses with their gradients.
// Weights are a dict by model.py's names: "gate.weight", "experts.<e>.w1.weight",
// ... "shared_experts.w3.weight" (the bias is an argument of its own: it selects,
// it is not trained).
#include <variant>

#include "python/src/arrays.hpp"
#include "reference/moe.hpp"

namespace dslab::python {
namespace {

constexpr const char* kFields[] = {"dim", "moe_inter_dim", "n_routed_experts", "n_shared_experts",
                                   "n_activated_experts", "n_expert_groups", "n_limited_groups",
                                   "route_scale", "score_func", "capacity_factor"};

void check(const MoeArgs& a, const char* fn) {
  if (a.dim <= 0 || a.moe_inter_dim <= 0)
    throw py::value_error(std::string(fn) + ": args.dim and args.moe_inter_dim must be > 0");
  validate(a);
}

template <class T> Tensor1<T> bias_in(const py::handle& bias, const MoeArgs& a, const char* fn) {
  if (bias.is_none()) return {};
  return tensor_in<T, 1>(bias, {{a.n_routed_experts, "n_routed_experts"}}, fn, "bias");
}

template <class T> py::dict routing_out(const Routing<T>& r) {
  const long N = r.n_tokens, K = r.topk;
  py::dict d;
  d["scores"] = array_out(r.scores);
  d["indices"] = array_out(std::vector<long>(r.indices.begin(), r.indices.end())).reshape({N, K});
  d["weights"] = array_out(r.weights);
  d["kept"] = array_out(std::vector<uint8_t>(r.kept.begin(), r.kept.end())).reshape({N, K}).attr("astype")("bool");
  return d;
}

// The gate alone: {scores [N, E], indices [N, K], weights [N, K], kept [N, K]}.
template <class T>
py::dict gate_py(const py::array& x_in, const py::handle& w_in, const MoeArgs& a, const py::handle& bias_obj) {
  const char* fn = "dslab.moe_gate";
  check(a, fn);
  const Tensor2<T> x = tensor_in<T, 2>(x_in, {{-1, "n_tokens"}, {a.dim, "dim"}}, fn, "x");
  const Tensor2<T> w = tensor_in<T, 2>(w_in, {{a.n_routed_experts, "n_routed_experts"}, {a.dim, "dim"}}, fn, "gate_weight");
  const Tensor1<T> bias = bias_in<T>(bias_obj, a, fn);
  Routing<T> r;
  gate_forward(r, x, w, bias, a);
  return routing_out(r);
}

template <class T> struct MoeState {
  MoeArgs args;
  MoeParams<T> params;
  Tensor1<T> bias;
  Tensor2<T> x;
  MoeCache<T> cache;
};
struct MoeContext {
  std::variant<MoeState<double>, MoeState<float>> state;
};

template <class T>
py::tuple moe_forward_py(const py::array& x_in, const py::handle& weights, const MoeArgs& a, const py::handle& bias) {
  const char* fn = "dslab.moe_forward";
  check(a, fn);
  MoeState<T> st{.args = a, .params = MoeParams<T>(a), .bias = bias_in<T>(bias, a, fn),
                 .x = tensor_in<T, 2>(x_in, {{-1, "n_tokens"}, {a.dim, "dim"}}, fn, "x"), .cache = {}};
  refs_in(st.params.refs(), weights, fn, "weights");
  Tensor2<T> y;
  moe_forward(y, st.cache, st.x, st.params, st.bias, a);
  return py::make_tuple(array_out(y), MoeContext{std::move(st)});
}

template <class T> py::tuple moe_backward_py(const py::array& dy_in, MoeState<T>& st, const py::handle& dscores_in) {
  const char* fn = "dslab.moe_backward";
  const long N = long(st.x.shape(0));
  const Tensor2<T> dy = tensor_in<T, 2>(dy_in, {{N, "n_tokens"}, {st.args.dim, "dim"}}, fn, "dy");
  Tensor2<T> dscores;
  if (!dscores_in.is_none())
    dscores = tensor_in<T, 2>(dscores_in, {{N, "n_tokens"}, {st.args.n_routed_experts, "n_routed_experts"}}, fn, "dscores");
  MoeParams<T> g(st.args);
  Tensor2<T> dx;
  moe_backward(dx, g, dy, dscores_in.is_none() ? nullptr : &dscores, st.x, st.cache, st.params, st.args);
  return py::make_tuple(array_out(dx), refs_out(g.refs()));
}

// A balance loss of the forward's routing and its gradient d loss / d scores.
template <class T> py::tuple balance_py(const MoeState<T>& st, const std::string& kind, double alpha, int seq_len) {
  const Routing<T>& r = st.cache.routing;
  Tensor2<T> dscores = xt::zeros<T>({size_t(r.n_tokens), size_t(r.n_experts)});
  double loss;
  if (kind == "expert") {
    loss = expert_balance_loss(r, alpha, &dscores);
  } else if (kind == "sequence") {
    if (seq_len <= 0 || r.n_tokens % seq_len)
      throw py::value_error("dslab.moe_balance_loss: kind 'sequence' needs seq_len > 0 dividing n_tokens (" +
                            std::to_string(r.n_tokens) + "), got " + std::to_string(seq_len));
    loss = sequence_balance_loss(r, seq_len, alpha, &dscores);
  } else {
    throw py::value_error("dslab.moe_balance_loss: kind = '" + kind + "'; allowed: expert, sequence");
  }
  return py::make_tuple(loss, array_out(dscores));
}

}  // namespace

void bind_moe(py::module_& m) {
  py::class_<MoeArgs> args(m, "MoeArgs", "The MoE layer's widths and routing, model.py's names.");
  args.def_readwrite("dim", &MoeArgs::dim)
      .def_readwrite("moe_inter_dim", &MoeArgs::moe_inter_dim)
      .def_readwrite("n_routed_experts", &MoeArgs::n_routed_experts)
      .def_readwrite("n_shared_experts", &MoeArgs::n_shared_experts)
      .def_readwrite("n_activated_experts", &MoeArgs::n_activated_experts)
      .def_readwrite("n_expert_groups", &MoeArgs::n_expert_groups)
      .def_readwrite("n_limited_groups", &MoeArgs::n_limited_groups)
      .def_readwrite("route_scale", &MoeArgs::route_scale)
      .def_readwrite("capacity_factor", &MoeArgs::capacity_factor)
      .def("validate", [](const MoeArgs& a) { validate(a); }, "Raises ValueError for the first broken rule.");
  enum_property(args, "score_func", &MoeArgs::score_func);
  kwargs_init(args, {std::begin(kFields), std::end(kFields)});

  m.def("moe_gate", [](const py::handle& x, const py::handle& gate_weight, const MoeArgs& a, const py::handle& bias) {
          return dispatch(x, "dslab.moe_gate", "x", [&](auto t, const py::array& arr) {
            return gate_py<decltype(t)>(arr, gate_weight, a, bias);
          });
        }, py::arg("x"), py::arg("gate_weight"), py::arg("args"), py::arg("bias") = py::none(),
        "The gate of x [N, dim]: {scores [N, E], indices [N, K] (best first), weights [N, K], kept [N, K]}; "
        "bias [E] (Eq. (24)) shifts the selection only.");

  py::class_<MoeContext>(m, "MoeContext", "What moe_forward keeps for moe_backward, and its routing.")
      .def_property_readonly("routing", [](const MoeContext& c) -> py::object {
        return std::visit([](auto& st) -> py::object { return routing_out(st.cache.routing); }, c.state);
      });
  m.def("moe_forward", [](const py::handle& x, const py::handle& weights, const MoeArgs& a, const py::handle& bias) {
          return dispatch(x, "dslab.moe_forward", "x", [&](auto t, const py::array& arr) {
            return moe_forward_py<decltype(t)>(arr, weights, a, bias);
          });
        }, py::arg("x"), py::arg("weights"), py::arg("args"), py::arg("bias") = py::none(),
        "The MoE layer on x [N, dim]: (y [N, dim], context). y = shared experts + sum_k g_k expert_k, Eq. (18)-(20).");
  m.def("moe_backward", [](const py::handle& dy, MoeContext& ctx, const py::handle& dscores) -> py::object {
          const py::array d = as_array(dy, "dslab.moe_backward", "dy");
          return std::visit([&](auto& st) -> py::object { return moe_backward_py(d, st, dscores); }, ctx.state);
        }, py::arg("dy"), py::arg("context"), py::arg("dscores") = py::none(),
        "(dx, {weight name: gradient}); dscores [N, E] adds d loss / d scores from a balance loss.");
  m.def("moe_balance_loss", [](const MoeContext& ctx, const std::string& kind, double alpha, int seq_len) -> py::object {
          return std::visit([&](auto& st) -> py::object { return balance_py(st, kind, alpha, seq_len); }, ctx.state);
        }, py::arg("context"), py::arg("kind") = "expert", py::arg("alpha") = 1.0, py::arg("seq_len") = 0,
        "(loss, dscores [N, E]) of the forward's routing: kind 'expert' is alpha sum_i f_i P_i, Eq. (21)-(23); "
        "'sequence' the same per sequence of seq_len tokens, averaged (V3's sequence-wise loss).");
}

}  // namespace dslab::python
