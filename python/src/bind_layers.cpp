// The building blocks: RMSNorm, RoPE (with YaRN), causal attention and
// cross-entropy, forward and backward, on NumPy arrays (reference/rmsnorm.hpp,
// rope.hpp, attention.hpp, cross_entropy.hpp). Sequence layers take
// [batch, seq_len, ...] arrays; the reference layers see N = batch*seq_len rows.
#include <cmath>

#include "python/src/arrays.hpp"
#include "reference/attention.hpp"
#include "reference/cross_entropy.hpp"
#include "reference/rmsnorm.hpp"
#include "reference/rope.hpp"

namespace dslab::python {
namespace {

// y = x / rms(x) * weight over the last axis: (y, rstd). x [..., D], weight [D].
template <class T> py::tuple rms_norm_forward(const py::array& x_in, const py::handle& weight, double eps) {
  const char* fn = "dslab.rms_norm_forward";
  const std::vector<long> s = shape_of(x_in);
  if (s.empty()) throw py::value_error(std::string(fn) + ": x must have at least one axis, got a scalar");
  const long D = s.back(), N = D ? long(x_in.size()) / D : 0;
  std::vector<Dim> dims(s.size(), Dim{-1, "n"});
  dims.back() = {D, "dim"};
  const Tensor2<T> x = tensor_in<T, 2>(x_in, dims, {size_t(N), size_t(D)}, fn, "x");
  const Tensor1<T> g = tensor_in<T, 1>(weight, {{D, "dim"}}, fn, "weight");
  if (!(eps > 0)) throw py::value_error(std::string(fn) + ": eps must be > 0, got " + std::to_string(eps));
  Tensor2<T> y;
  Tensor1<T> rstd;
  rmsnorm_forward(y, rstd, x, g, eps);
  std::vector<long> rs(s.begin(), s.end() - 1);
  return py::make_tuple(array_out(y, s), array_out(rstd, rs));
}

template <class T>
py::tuple rms_norm_backward(const py::array& dy_in, const py::handle& x_in, const py::handle& weight,
                            const py::handle& rstd_in) {
  const char* fn = "dslab.rms_norm_backward";
  const std::vector<long> s = shape_of(dy_in);
  if (s.empty()) throw py::value_error(std::string(fn) + ": dy must have at least one axis, got a scalar");
  const long D = s.back(), N = D ? long(dy_in.size()) / D : 0;
  std::vector<Dim> dims;
  for (long d : s) dims.push_back({d, "n"});
  dims.back().name = "dim";
  const Tensor2<T> dy = tensor_in<T, 2>(dy_in, dims, {size_t(N), size_t(D)}, fn, "dy");
  const Tensor2<T> x = tensor_in<T, 2>(x_in, dims, {size_t(N), size_t(D)}, fn, "x");
  const Tensor1<T> g = tensor_in<T, 1>(weight, {{D, "dim"}}, fn, "weight");
  dims.pop_back();
  const Tensor1<T> rstd = tensor_in<T, 1>(rstd_in, dims, {size_t(N)}, fn, "rstd");
  Tensor2<T> dx;
  Tensor1<T> dg = xt::zeros<T>({size_t(D)});  // rmsnorm_backward adds into it
  rmsnorm_backward(dx, dg, dy, x, g, rstd);
  return py::make_tuple(array_out(dx, s), array_out(dg));
}

// The RoPE frequencies of one head width (model.py's precompute_freqs_cis): plain,
// or YaRN-corrected when original_seq_len is given and max_seq_len exceeds it.
std::vector<double> frequencies(int head_dim, double theta, int max_seq_len, int original_seq_len,
                                double rope_factor, double beta_fast, double beta_slow, const char* fn) {
  if (head_dim <= 0 || head_dim % 2)
    throw py::value_error(std::string(fn) + ": head_dim must be even and > 0, got " + std::to_string(head_dim));
  if (!(theta > 0)) throw py::value_error(std::string(fn) + ": theta must be > 0");
  if (original_seq_len > 0 && max_seq_len > original_seq_len)
    return yarn_frequencies(head_dim, theta,
                            Yarn{.original_seq_len = original_seq_len, .rope_factor = rope_factor,
                                 .beta_fast = beta_fast, .beta_slow = beta_slow});
  return rope_frequencies(head_dim, theta);
}

// x [B, T, H, d] rotated by position (the interleaved pairs of model.py's
// apply_rotary_emb); inverse=True rotates back, which is also RoPE's backward.
template <class T>
py::array rope(const py::array& x_in, double theta, int original_seq_len, double rope_factor, double beta_fast,
               double beta_slow, bool inverse) {
  const char* fn = "dslab.rope";
  const std::vector<long> s = check_shape(x_in, {{-1, "batch"}, {-1, "seq_len"}, {-1, "n_heads"}, {-1, "head_dim"}}, fn, "x");
  const int T_ = int(s[1]), H = int(s[2]), d = int(s[3]);
  const RopeTable table(std::max(T_, 1),
                        frequencies(d, theta, T_, original_seq_len, rope_factor, beta_fast, beta_slow, fn));
  Tensor2<T> x = tensor_in<T, 2>(x_in, {{s[0], "batch"}, {s[1], "seq_len"}, {s[2], "n_heads"}, {s[3], "head_dim"}},
                                 {size_t(s[0] * s[1]), size_t(H * d)}, fn, "x");
  if (x.size()) (inverse ? rope_backward<T> : rope_forward<T>)(x, T_, H, table);
  return array_out(x, s);
}

AttentionShape attention_shape(const std::vector<long>& q, const std::vector<long>& k, const std::vector<long>& v,
                               double scale) {
  return {.batch = int(q[0]), .seq_len = int(q[1]), .n_heads = int(q[2]), .n_kv_heads = int(k[2]),
          .head_dim = int(q[3]), .v_head_dim = int(v[3]),
          .softmax_scale = scale > 0 ? scale : 1.0 / std::sqrt(double(q[3]))};
}

// Causal softmax attention, Eq. (4); q [B, T, H, d], k [B, T, H_kv, d], v [B, T, H_kv, d_v]
// (H a multiple of H_kv: MHA, GQA, MQA). Returns (out [B, T, H, d_v], probs [B, H, T, T]).
template <class T>
py::tuple attention_forward_py(const py::array& q_in, const py::handle& k_in, const py::handle& v_in, double scale) {
  const char* fn = "dslab.attention_forward";
  const std::vector<long> qs = check_shape(q_in, {{-1, "batch"}, {-1, "seq_len"}, {-1, "n_heads"}, {-1, "head_dim"}}, fn, "q");
  const std::vector<long> ks = check_shape(as_array(k_in, fn, "k"),
                                           {{qs[0], "batch"}, {qs[1], "seq_len"}, {-1, "n_kv_heads"}, {qs[3], "head_dim"}}, fn, "k");
  const std::vector<long> vs = check_shape(as_array(v_in, fn, "v"),
                                           {{qs[0], "batch"}, {qs[1], "seq_len"}, {ks[2], "n_kv_heads"}, {-1, "v_head_dim"}}, fn, "v");
  if (ks[2] <= 0 || qs[2] % ks[2])
    throw py::value_error(std::string(fn) + ": n_heads (" + std::to_string(qs[2]) +
                          ") must be a multiple of n_kv_heads (" + std::to_string(ks[2]) + ")");
  const size_t N = size_t(qs[0] * qs[1]);
  const AttentionShape sh = attention_shape(qs, ks, vs, scale);
  const Tensor2<T> q = tensor_in<T, 2>(q_in, {{qs[0], ""}, {qs[1], ""}, {qs[2], ""}, {qs[3], ""}}, {N, size_t(qs[2] * qs[3])}, fn, "q");
  const Tensor2<T> k = tensor_in<T, 2>(k_in, {{ks[0], ""}, {ks[1], ""}, {ks[2], ""}, {ks[3], ""}}, {N, size_t(ks[2] * ks[3])}, fn, "k");
  const Tensor2<T> v = tensor_in<T, 2>(v_in, {{vs[0], ""}, {vs[1], ""}, {vs[2], ""}, {vs[3], ""}}, {N, size_t(vs[2] * vs[3])}, fn, "v");
  Tensor2<T> out;
  Tensor4<T> probs;
  attention_forward(out, probs, q, k, v, sh);
  return py::make_tuple(array_out(out, {qs[0], qs[1], qs[2], vs[3]}), array_out(probs));
}

// (dq, dk, dv) from dout [B, T, H, d_v] and the forward's q, k, v and probs.
template <class T>
py::tuple attention_backward_py(const py::array& dout_in, const py::handle& q_in, const py::handle& k_in,
                                const py::handle& v_in, const py::handle& probs_in, double scale) {
  const char* fn = "dslab.attention_backward";
  const std::vector<long> qs = check_shape(as_array(q_in, fn, "q"), {{-1, "batch"}, {-1, "seq_len"}, {-1, "n_heads"}, {-1, "head_dim"}}, fn, "q");
  const std::vector<long> ks = check_shape(as_array(k_in, fn, "k"),
                                           {{qs[0], "batch"}, {qs[1], "seq_len"}, {-1, "n_kv_heads"}, {qs[3], "head_dim"}}, fn, "k");
  const std::vector<long> vs = check_shape(as_array(v_in, fn, "v"),
                                           {{qs[0], "batch"}, {qs[1], "seq_len"}, {ks[2], "n_kv_heads"}, {-1, "v_head_dim"}}, fn, "v");
  if (ks[2] <= 0 || qs[2] % ks[2])
    throw py::value_error(std::string(fn) + ": n_heads must be a multiple of n_kv_heads");
  const size_t N = size_t(qs[0] * qs[1]);
  const AttentionShape sh = attention_shape(qs, ks, vs, scale);
  auto rows = [&](const py::handle& h, const std::vector<long>& s, const char* name) {
    return tensor_in<T, 2>(h, {{s[0], "batch"}, {s[1], "seq_len"}, {s[2], "heads"}, {s[3], "width"}},
                           {N, size_t(s[2] * s[3])}, fn, name);
  };
  const Tensor2<T> dout = rows(dout_in, {qs[0], qs[1], qs[2], vs[3]}, "dout");
  const Tensor2<T> q = rows(q_in, qs, "q"), k = rows(k_in, ks, "k"), v = rows(v_in, vs, "v");
  const Tensor4<T> probs = tensor_in<T, 4>(probs_in, {{qs[0], "batch"}, {qs[2], "n_heads"}, {qs[1], "seq_len"}, {qs[1], "seq_len"}}, fn, "probs");
  Tensor2<T> dq, dk, dv;
  attention_backward(dq, dk, dv, dout, q, k, v, probs, sh);
  return py::make_tuple(array_out(dq, qs), array_out(dk, ks), array_out(dv, vs));
}

// Mean cross-entropy of logits [N, V] against targets [N]: (loss, probs [N, V], losses [N]).
template <class T> py::tuple cross_entropy_forward_py(const py::array& logits_in, const py::handle& targets_in) {
  const char* fn = "dslab.cross_entropy_forward";
  const std::vector<long> s = check_shape(logits_in, {{-1, "n_tokens"}, {-1, "vocab_size"}}, fn, "logits");
  if (s[0] == 0 || s[1] == 0) throw py::value_error(std::string(fn) + ": logits is empty, shape " + shape_text(s));
  const Tensor2<T> logits = tensor_in<T, 2>(logits_in, {{s[0], "n_tokens"}, {s[1], "vocab_size"}}, fn, "logits");
  const std::vector<long> t = ints_in(targets_in, {{s[0], "n_tokens"}}, fn, "targets", 0, s[1], "0 <= target < vocab_size");
  const std::vector<int> targets(t.begin(), t.end());
  Tensor2<T> probs;
  Tensor1<T> losses;
  const T loss = cross_entropy_forward(probs, losses, logits, targets);
  return py::make_tuple(double(loss), array_out(probs), array_out(losses));
}

// dlogits [N, V] = dloss * d mean-cross-entropy / d logits, from the forward's probs.
template <class T>
py::array cross_entropy_backward_py(const py::array& probs_in, const py::handle& targets_in, double dloss) {
  const char* fn = "dslab.cross_entropy_backward";
  const std::vector<long> s = check_shape(probs_in, {{-1, "n_tokens"}, {-1, "vocab_size"}}, fn, "probs");
  const Tensor2<T> probs = tensor_in<T, 2>(probs_in, {{s[0], "n_tokens"}, {s[1], "vocab_size"}}, fn, "probs");
  const std::vector<long> t = ints_in(targets_in, {{s[0], "n_tokens"}}, fn, "targets", 0, s[1], "0 <= target < vocab_size");
  Tensor2<T> dlogits;
  cross_entropy_backward(dlogits, probs, std::vector<int>(t.begin(), t.end()), T(dloss));
  return array_out(dlogits);
}

}  // namespace

void bind_layers(py::module_& m) {
  m.def("rms_norm_forward", [](const py::handle& x, const py::handle& weight, double eps) {
          return dispatch(x, "dslab.rms_norm_forward", "x", [&](auto t, const py::array& a) {
            return rms_norm_forward<decltype(t)>(a, weight, eps);
          });
        }, py::arg("x"), py::arg("weight"), py::arg("eps") = 1e-6,
        "RMSNorm over the last axis: (y, rstd) with y = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps).");
  m.def("rms_norm_backward", [](const py::handle& dy, const py::handle& x, const py::handle& weight, const py::handle& rstd) {
          return dispatch(dy, "dslab.rms_norm_backward", "dy", [&](auto t, const py::array& a) {
            return rms_norm_backward<decltype(t)>(a, x, weight, rstd);
          });
        }, py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("rstd"),
        "(dx, dweight) of RMSNorm, from the forward's x and rstd.");
  m.def("rope_frequencies", [](int head_dim, double theta, int max_seq_len, int original_seq_len, double rope_factor,
                               double beta_fast, double beta_slow) {
          return array_out(frequencies(head_dim, theta, max_seq_len, original_seq_len, rope_factor, beta_fast,
                                       beta_slow, "dslab.rope_frequencies"));
        }, py::arg("head_dim"), py::arg("theta") = 10000.0, py::arg("max_seq_len") = 0, py::arg("original_seq_len") = 0,
        py::arg("rope_factor") = 40.0, py::arg("beta_fast") = 32.0, py::arg("beta_slow") = 1.0,
        "RoPE frequencies [head_dim/2], YaRN-corrected when max_seq_len > original_seq_len > 0 (model.py).");
  m.def("rope", [](const py::handle& x, double theta, int original_seq_len, double rope_factor, double beta_fast,
                   double beta_slow, bool inverse) {
          return dispatch(x, "dslab.rope", "x", [&](auto t, const py::array& a) {
            return rope<decltype(t)>(a, theta, original_seq_len, rope_factor, beta_fast, beta_slow, inverse);
          });
        }, py::arg("x"), py::arg("theta") = 10000.0, py::arg("original_seq_len") = 0, py::arg("rope_factor") = 40.0,
        py::arg("beta_fast") = 32.0, py::arg("beta_slow") = 1.0, py::arg("inverse") = false,
        "x [batch, seq_len, n_heads, head_dim] rotated by position (pairs (2i, 2i+1), model.py's apply_rotary_emb); "
        "YaRN frequencies when seq_len > original_seq_len > 0. inverse=True undoes it (RoPE's backward).");
  m.def("attention_forward", [](const py::handle& q, const py::handle& k, const py::handle& v, double scale) {
          return dispatch(q, "dslab.attention_forward", "q", [&](auto t, const py::array& a) {
            return attention_forward_py<decltype(t)>(a, k, v, scale);
          });
        }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("softmax_scale") = 0.0,
        "Causal attention, Eq. (4): (out [B, T, H, d_v], probs [B, H, T, T]); softmax_scale 0 means head_dim^-1/2.");
  m.def("attention_backward", [](const py::handle& dout, const py::handle& q, const py::handle& k, const py::handle& v,
                                 const py::handle& probs, double scale) {
          return dispatch(q, "dslab.attention_backward", "q", [&](auto t, const py::array&) {
            return attention_backward_py<decltype(t)>(as_array(dout, "dslab.attention_backward", "dout"), q, k, v, probs, scale);
          });
        }, py::arg("dout"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("probs"), py::arg("softmax_scale") = 0.0,
        "(dq, dk, dv) of causal attention from dout and the forward's q, k, v, probs.");
  m.def("cross_entropy_forward", [](const py::handle& logits, const py::handle& targets) {
          return dispatch(logits, "dslab.cross_entropy_forward", "logits", [&](auto t, const py::array& a) {
            return cross_entropy_forward_py<decltype(t)>(a, targets);
          });
        }, py::arg("logits"), py::arg("targets"),
        "Mean cross-entropy of logits [N, V] against integer targets [N]: (loss, probs, per-token losses).");
  m.def("cross_entropy_backward", [](const py::handle& probs, const py::handle& targets, double dloss) {
          return dispatch(probs, "dslab.cross_entropy_backward", "probs", [&](auto t, const py::array& a) {
            return cross_entropy_backward_py<decltype(t)>(a, targets, dloss);
          });
        }, py::arg("probs"), py::arg("targets"), py::arg("dloss") = 1.0,
        "dlogits [N, V] of the mean cross-entropy times dloss, from the forward's probs.");
}

}  // namespace dslab::python
