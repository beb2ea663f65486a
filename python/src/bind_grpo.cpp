// GRPO and PPO's losses (reference/grpo.hpp, ppo.hpp; review Sec. 2.5,
// Eq. (27)-(28)) on NumPy arrays, in float64 as the C++ losses are. A batch of S
// completions is flat: offsets [S+1] (sequence i has tokens offsets[i] ..
// offsets[i+1]-1) and per-token arrays [N], N = offsets[S].
#include <limits>

#include "python/src/arrays.hpp"
#include "reference/grpo.hpp"
#include "reference/ppo.hpp"

namespace dslab::python {
namespace {

constexpr const char* kAdvantageFields[] = {"std_bessel", "std_eps", "mean_only", "scope"};
constexpr const char* kGrpoFields[] = {"supervision", "aggregation", "kl_estimator", "kl_placement", "beta",
                                       "clip_eps", "clip_eps_low", "clip_eps_high", "clip_c",
                                       "max_response_length", "advantages"};
constexpr const char* kPpoFields[] = {"gamma", "lam", "value_clip", "value_coef", "whiten_advantages"};

std::vector<double> doubles_in(const py::handle& obj, long n, const char* n_name, const char* fn, const char* arg) {
  const py::array any = as_array(obj, fn, arg);
  if (any.dtype().kind() != 'f')
    throw py::type_error(std::string(fn) + ": " + arg + " has dtype " + std::string(py::str(any.dtype())) +
                         "; expected a floating-point dtype");
  check_shape(any, {{n, n_name}}, fn, arg);
  const auto a = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(any);
  return {a.data(), a.data() + a.size()};
}

// offsets [S+1]: 0, non-decreasing.
std::vector<size_t> offsets_in(const py::handle& obj, const char* fn) {
  const std::vector<long> o = ints_in(obj, {{-1, "n_sequences + 1"}}, fn, "offsets", 0, std::numeric_limits<long>::max(),
                                      "offsets >= 0");
  if (o.empty() || o[0] != 0) throw py::value_error(std::string(fn) + ": offsets must start at 0 (offsets[0] = 0)");
  for (size_t i = 1; i < o.size(); ++i)
    if (o[i] < o[i - 1])
      throw py::value_error(std::string(fn) + ": offsets must not decrease, offsets[" + std::to_string(i) +
                            "] = " + std::to_string(o[i]) + " < offsets[" + std::to_string(i - 1) + "] = " +
                            std::to_string(o[i - 1]));
  return {o.begin(), o.end()};
}

py::tuple policy_loss_py(const py::handle& offsets_in_, const py::handle& logp, const py::handle& old_logp,
                         const py::handle& ref_logp, const py::handle& advantages, const GrpoArgs& args,
                         int group_size, const py::handle& kl_exact_in) {
  const char* fn = "dslab.policy_loss";
  args.validate();
  PolicyBatch b;
  b.offsets = offsets_in(offsets_in_, fn);
  const long N = long(b.offsets.back());
  b.logp = doubles_in(logp, N, "n_tokens", fn, "logp");
  b.old_logp = doubles_in(old_logp, N, "n_tokens", fn, "old_logp");
  b.ref_logp = doubles_in(ref_logp, N, "n_tokens", fn, "ref_logp");
  b.advantages = doubles_in(advantages, N, "n_tokens", fn, "advantages");
  const bool exact = args.kl_estimator == KlEstimator::Exact && args.kl_placement == KlPlacement::Loss;
  if (exact && kl_exact_in.is_none())
    throw py::value_error(std::string(fn) + ": kl_estimator 'exact' in the loss needs kl_exact [n_tokens]");
  if (!kl_exact_in.is_none()) b.kl_exact = doubles_in(kl_exact_in, N, "n_tokens", fn, "kl_exact");
  if (group_size < 1) throw py::value_error(std::string(fn) + ": group_size must be >= 1");
  b.group_size = group_size;
  std::vector<double> dlogp;
  const PolicyLoss l = policy_loss(b, args, dlogp);
  py::dict d;
  d["loss"] = l.loss;
  d["pg_loss"] = l.pg_loss;
  d["kl_loss"] = l.kl_loss;
  d["clip_fraction"] = l.clip_fraction;
  d["clip_low_fraction"] = l.clip_low_fraction;
  d["clip_high_fraction"] = l.clip_high_fraction;
  d["dual_clip_fraction"] = l.dual_clip_fraction;
  d["kl_mean"] = l.kl_mean;
  d["ratio_mean"] = l.ratio_mean;
  d["ratio_max"] = l.ratio_max;
  if (!l.dkl.empty()) d["dkl"] = array_out(l.dkl);
  return py::make_tuple(d, array_out(dlogp));
}

// KL(softmax(theta) || softmax(ref)) per row of [N, V] logits, and d KL / d logits_theta.
template <class T> py::tuple kl_exact_py(const py::array& theta_in, const py::handle& ref_in) {
  const char* fn = "dslab.kl_exact";
  const std::vector<long> s = check_shape(theta_in, {{-1, "n_tokens"}, {-1, "vocab_size"}}, fn, "logits");
  const Tensor2<T> th = tensor_in<T, 2>(theta_in, {{s[0], "n_tokens"}, {s[1], "vocab_size"}}, fn, "logits");
  const Tensor2<T> rf = tensor_in<T, 2>(ref_in, {{s[0], "n_tokens"}, {s[1], "vocab_size"}}, fn, "ref_logits");
  std::vector<double> kl(static_cast<size_t>(s[0])), dl(static_cast<size_t>(s[0] * s[1]));
  for (long t = 0; t < s[0]; ++t)
    kl[size_t(t)] = kl_exact(&th(t, 0), &rf(t, 0), int(s[1]), dl.data() + t * s[1]);
  return py::make_tuple(array_out(kl), array_out(dl.data(), s));
}

}  // namespace

void bind_grpo(py::module_& m) {
  py::class_<AdvantageArgs> adv(m, "AdvantageArgs",
                                "Group-relative advantages, DeepSeekMath Sec. 4.1.2: (r - mean) / (std + std_eps).");
  adv.def_readwrite("std_bessel", &AdvantageArgs::std_bessel)
      .def_readwrite("std_eps", &AdvantageArgs::std_eps)
      .def_readwrite("mean_only", &AdvantageArgs::mean_only);
  enum_property(adv, "scope", &AdvantageArgs::scope);
  kwargs_init(adv, {std::begin(kAdvantageFields), std::end(kAdvantageFields)});

  py::class_<GrpoArgs> grpo(m, "GrpoArgs", "GRPO's objective, Eq. (28), and its variants (the [grpo] config section).");
  grpo.def_readwrite("beta", &GrpoArgs::beta)
      .def_readwrite("clip_eps", &GrpoArgs::clip_eps)
      .def_readwrite("clip_eps_low", &GrpoArgs::clip_eps_low)
      .def_readwrite("clip_eps_high", &GrpoArgs::clip_eps_high)
      .def_readwrite("clip_c", &GrpoArgs::clip_c)
      .def_readwrite("max_response_length", &GrpoArgs::max_response_length)
      .def_readwrite("advantages", &GrpoArgs::advantages)
      .def("validate", &GrpoArgs::validate, "Raises ValueError for the first broken rule.");
  enum_property(grpo, "supervision", &GrpoArgs::supervision);
  enum_property(grpo, "aggregation", &GrpoArgs::aggregation);
  enum_property(grpo, "kl_estimator", &GrpoArgs::kl_estimator);
  enum_property(grpo, "kl_placement", &GrpoArgs::kl_placement);
  kwargs_init(grpo, {std::begin(kGrpoFields), std::end(kGrpoFields)});

  py::class_<PpoArgs> ppo(m, "PpoArgs", "PPO's GAE and value loss (the [ppo] config section; TRL's defaults).");
  ppo.def_readwrite("gamma", &PpoArgs::gamma)
      .def_readwrite("lam", &PpoArgs::lam)
      .def_readwrite("value_clip", &PpoArgs::value_clip)
      .def_readwrite("value_coef", &PpoArgs::value_coef)
      .def_readwrite("whiten_advantages", &PpoArgs::whiten_advantages)
      .def("validate", &PpoArgs::validate);
  kwargs_init(ppo, {std::begin(kPpoFields), std::end(kPpoFields)});

  m.def("group_advantages", [](const py::handle& rewards, int group_size, const AdvantageArgs& a) {
          const char* fn = "dslab.group_advantages";
          a.validate();
          const std::vector<double> r = doubles_in(rewards, -1, "n_sequences", fn, "rewards");
          if (group_size < 1 || r.size() % size_t(group_size))
            throw py::value_error(std::string(fn) + ": group_size must be >= 1 and divide the " +
                                  std::to_string(r.size()) + " rewards, got " + std::to_string(group_size));
          return array_out(group_advantages(r, group_size, a));
        }, py::arg("rewards"), py::arg("group_size"), py::arg("args") = AdvantageArgs{},
        "A_i = (r_i - mean r) / (std r + std_eps) over each group of group_size rewards (outcome supervision).");
  m.def("aggregation_weights", [](const py::handle& offsets, const std::string& agg, int max_len) {
          const char* fn = "dslab.aggregation_weights";
          GrpoArgs g;
          py::cast(&g, py::return_value_policy::reference).attr("aggregation") = agg;
          return array_out(aggregation_weights(offsets_in(offsets, fn), g.aggregation, max_len));
        }, py::arg("offsets"), py::arg("aggregation"), py::arg("max_len") = 0,
        "The weights w_t [N] with L = sum_t w_t l_t for an aggregation (seq_mean_token_mean, token_mean, ...).");
  m.def("policy_loss", &policy_loss_py, py::arg("offsets"), py::arg("logp"), py::arg("old_logp"), py::arg("ref_logp"),
        py::arg("advantages"), py::arg("args") = GrpoArgs{}, py::arg("group_size") = 1, py::arg("kl_exact") = py::none(),
        "GRPO's clipped objective with its KL term, Eq. (28): ({loss, pg_loss, kl_loss, clip fractions, kl_mean, "
        "ratio_mean, ratio_max[, dkl]}, dlogp [N] = d loss / d logp).");
  m.def("kl_exact", [](const py::handle& logits, const py::handle& ref_logits) {
          return dispatch(logits, "dslab.kl_exact", "logits", [&](auto t, const py::array& a) {
            return kl_exact_py<decltype(t)>(a, ref_logits);
          });
        }, py::arg("logits"), py::arg("ref_logits"),
        "(KL [N], dKL/dlogits [N, V]) of softmax(logits) against softmax(ref_logits), row by row.");
  m.def("gae", [](const py::handle& offsets, const py::handle& rewards, const py::handle& values, const PpoArgs& a) {
          const char* fn = "dslab.gae";
          a.validate();
          const std::vector<size_t> o = offsets_in(offsets, fn);
          const long N = long(o.back());
          if (a.whiten_advantages && N < 2)
            throw py::value_error(std::string(fn) + ": whitening the advantages needs at least 2 tokens, got " +
                                  std::to_string(N));
          const Gae g = gae(o, doubles_in(rewards, N, "n_tokens", fn, "rewards"),
                            doubles_in(values, N, "n_tokens", fn, "values"), a);
          return py::make_tuple(array_out(g.advantages), array_out(g.returns));
        }, py::arg("offsets"), py::arg("rewards"), py::arg("values"), py::arg("args") = PpoArgs{},
        "GAE(gamma, lambda) per sequence: (advantages [N], returns [N]), whitened when args.whiten_advantages.");
  m.def("value_loss", [](const py::handle& offsets, const py::handle& values, const py::handle& old_values,
                         const py::handle& returns, const PpoArgs& a, const std::string& agg, int max_len) {
          const char* fn = "dslab.value_loss";
          a.validate();
          GrpoArgs g;
          py::cast(&g, py::return_value_policy::reference).attr("aggregation") = agg;
          const std::vector<size_t> o = offsets_in(offsets, fn);
          const long N = long(o.back());
          std::vector<double> dv;
          const ValueLoss l = value_loss(o, doubles_in(values, N, "n_tokens", fn, "values"),
                                         doubles_in(old_values, N, "n_tokens", fn, "old_values"),
                                         doubles_in(returns, N, "n_tokens", fn, "returns"), a, dv, g.aggregation, max_len);
          return py::make_tuple(l.loss, l.clip_fraction, array_out(dv));
        }, py::arg("offsets"), py::arg("values"), py::arg("old_values"), py::arg("returns"), py::arg("args") = PpoArgs{},
        py::arg("aggregation") = "token_mean", py::arg("max_len") = 0,
        "PPO's clipped value loss: (loss, clip_fraction, dvalues [N]).");
}

}  // namespace dslab::python
