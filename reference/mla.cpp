#include "reference/mla.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <xtensor/xview.hpp>

#include "reference/args_error.hpp"
#include "reference/attention.hpp"
#include "reference/gemm.hpp"
#include "reference/linear.hpp"
#include "reference/rmsnorm.hpp"
#include "reference/simd.hpp"

namespace dslab {

const char* mla_rope_name(MlaRope r) { return name_of(r).data(); }

MlaRope parse_mla_rope(const std::string& name) {
  if (const auto r = parse_enum<MlaRope>(name)) return *r;
  throw std::invalid_argument("rope = \"" + name + "\": allowed " + names_text<MlaRope>("\""));
}

double MlaArgs::softmax_scale() const {
  double scale = 1.0 / std::sqrt(double(qk_head_dim()));
  if (yarn()) {  // model.py MLA.__init__, in its order
    const double m = 0.1 * mscale * std::log(rope_factor) + 1.0;
    scale = scale * m * m;
  }
  return scale;
}

RopeTable MlaArgs::rope_table(int max_len, double theta) const {
  if (rope == MlaRope::None) return RopeTable();
  if (!yarn()) return RopeTable(max_len, rope_dim(), theta);
  const Yarn y{original_seq_len, rope_factor, beta_fast, beta_slow};
  return RopeTable(max_len, rope_dim(), theta, y);
}

int MlaArgs::rope_dim() const {
  switch (rope) {
    case MlaRope::Decoupled: return qk_rope_head_dim;
    case MlaRope::Full: return qk_head_dim();
    case MlaRope::None: return 0;
  }
  return 0;
}

void MlaArgs::validate() const {
  const auto v = [](auto x) { return value_text(x); };
  const std::string rope_is = " with model.rope = \"" + std::string(name_of(rope)) + "\" (RoPE rotates pairs)";
  require(dim > 0 && n_heads > 0, {"model.dim", "model.n_heads"},
          "model.dim = " + v(dim) + " and model.n_heads = " + v(n_heads) + " must be positive");
  require(q_lora_rank >= 0, {"model.q_lora_rank"},
          "model.q_lora_rank = " + v(q_lora_rank) + " must be >= 0 (0: a direct wq)");
  require(kv_lora_rank > 0, {"model.kv_lora_rank"}, "model.kv_lora_rank = " + v(kv_lora_rank) + " must be > 0");
  require(qk_nope_head_dim > 0, {"model.qk_nope_head_dim"},
          "model.qk_nope_head_dim = " + v(qk_nope_head_dim) + " must be > 0");
  require(v_head_dim > 0, {"model.v_head_dim"}, "model.v_head_dim = " + v(v_head_dim) + " must be > 0");
  require(qk_rope_head_dim >= 0, {"model.qk_rope_head_dim"},
          "model.qk_rope_head_dim = " + v(qk_rope_head_dim) + " must be >= 0");
  if (rope == MlaRope::Decoupled)
    require(qk_rope_head_dim > 0 && qk_rope_head_dim % 2 == 0, {"model.rope", "model.qk_rope_head_dim"},
            "model.qk_rope_head_dim = " + v(qk_rope_head_dim) + " must be even and > 0" + rope_is);
  if (rope == MlaRope::Full)
    require(qk_head_dim() % 2 == 0, {"model.rope", "model.qk_nope_head_dim", "model.qk_rope_head_dim"},
            "model.qk_nope_head_dim + model.qk_rope_head_dim = " + v(qk_head_dim()) + " must be even" + rope_is);
  require(rope_factor >= 1, {"model.rope_factor"}, "model.rope_factor = " + v(rope_factor) + " must be >= 1");
  require(mscale > 0, {"model.mscale"}, "model.mscale = " + v(mscale) + " must be > 0");
  require(max_seq_len >= 0, {"model.max_seq_len"}, "model.max_seq_len = " + v(max_seq_len) + " must be >= 0");
  require(original_seq_len >= 1, {"model.original_seq_len"},
          "model.original_seq_len = " + v(original_seq_len) + " must be >= 1");
  // YaRN's ramp runs from the beta_fast pair to the beta_slow pair: log(beta) needs beta > 0.
  require(beta_fast > beta_slow && beta_slow > 0, {"model.beta_fast", "model.beta_slow"},
          "model.beta_fast = " + v(beta_fast) + " and model.beta_slow = " + v(beta_slow) +
              " must satisfy beta_fast > beta_slow > 0 (YaRN)");
}

template <class T> MlaWeights<T>::MlaWeights(const MlaArgs& a) {
  const size_t D = a.dim, H = a.n_heads, dqk = a.qk_head_dim(), dc = a.kv_lora_rank;
  const size_t dr = a.qk_rope_head_dim, dn = a.qk_nope_head_dim, dv = a.v_head_dim;
  const size_t rq = a.q_lora_rank;
  if (rq > 0) {
    wq_a = xt::zeros<T>({rq, D});
    q_norm = xt::zeros<T>({rq});
    wq_b = xt::zeros<T>({H * dqk, rq});
  } else {
    wq = xt::zeros<T>({H * dqk, D});
  }
  wkv_a = xt::zeros<T>({dc + dr, D});
  kv_norm = xt::zeros<T>({dc});
  wkv_b = xt::zeros<T>({H * (dn + dv), dc});
  wo = xt::zeros<T>({D, H * dv});
}

template <class T> std::vector<ParamRef<T>> MlaWeights<T>::refs(const std::string& p) {
  std::vector<ParamRef<T>> r;
  if (wq_a.size() > 0) {
    r.push_back(param_ref(p + "wq_a.weight", wq_a));
    r.push_back(param_ref(p + "q_norm.weight", q_norm));
    r.push_back(param_ref(p + "wq_b.weight", wq_b));
  } else {
    r.push_back(param_ref(p + "wq.weight", wq));
  }
  r.push_back(param_ref(p + "wkv_a.weight", wkv_a));
  r.push_back(param_ref(p + "kv_norm.weight", kv_norm));
  r.push_back(param_ref(p + "wkv_b.weight", wkv_b));
  r.push_back(param_ref(p + "wo.weight", wo));
  return r;
}

namespace {

// Eq. (16)'s attention over n_heads query and key/value heads of widths
// d_nope + d_rope and d_v (MHA: every head its own key).
AttentionShape attention_shape(const MlaArgs& a, int batch, int seq_len) {
  return {batch, seq_len, a.n_heads, a.n_heads, a.qk_head_dim(), a.v_head_dim, a.softmax_scale()};
}

// The query heads [q_C; q_R] (Eq. (8)-(9), (12) before RoPE): wq_b q_norm(wq_a x) or wq x.
template <class T>
void query_forward(MlaCache<T>& c, const Tensor2<T>& x, const MlaWeights<T>& w, const MlaArgs& a,
                   const LinearPolicy<T>& linears = {}) {
  if (a.q_lora_rank > 0) {
    linear_forward(c.q_a, x, w.wq_a, linears);                              // W^DQ h, Eq. (8)
    rmsnorm_forward(c.c_q, c.q_rstd, c.q_a, w.q_norm, a.norm_eps);  // c_Q
    linear_forward(c.q, c.c_q, w.wq_b, linears);                            // W^UQ c_Q, W^QR c_Q
  } else {
    linear_forward(c.q, x, w.wq, linears);
  }
}

}  // namespace

template <class T>
void mla_forward(Tensor2<T>& out, MlaCache<T>& c, const Tensor2<T>& x, const MlaWeights<T>& w,
                 const MlaArgs& a, const RopeTable& rope, int batch, int seq_len,
                 const LinearPolicy<T>& linears, MlaScratch<T>* scratch) {
  MlaScratch<T> fresh;
  MlaScratch<T>& s = scratch ? *scratch : fresh;
  const int H = a.n_heads, dn = a.qk_nope_head_dim, dr = a.qk_rope_head_dim;
  const int dv = a.v_head_dim, dc = a.kv_lora_rank, dqk = a.qk_head_dim();
  const long N = long(batch) * seq_len;
  if (x.shape(0) != size_t(N) || x.shape(1) != size_t(a.dim))
    throw std::invalid_argument("mla_forward: x must be [batch*seq_len, dim]");
  if (a.rope != MlaRope::None && (rope.d != a.rope_dim() || rope.cos.shape(0) < size_t(seq_len)))
    throw std::invalid_argument("mla_forward: the RoPE table does not fit rope_dim() and seq_len");
  c.batch = batch;
  c.seq_len = seq_len;
  c.x = x;

  // c_KV = kv_norm(W^DKV h) and the unrotated W^KR h, from one wkv_a   [N, d_c + d_rope]
  Tensor2<T>& kv_a = s.kv_a;
  linear_forward(kv_a, x, w.wkv_a, linears);
  c.c_kv_pre = xt::view(kv_a, xt::all(), xt::range(0, dc));
  rmsnorm_forward(c.c_kv, c.kv_rstd, c.c_kv_pre, w.kv_norm, a.norm_eps);

  // Eq. (6)-(7): k_C = W^UK c_KV, v_C = W^UV c_KV, head h's rows of wkv_b being [W^UK_h; W^UV_h]
  Tensor2<T>& kv_b = s.kv_b;
  linear_forward(kv_b, c.c_kv, w.wkv_b, linears);

  // Eq. (8)-(9), (12): each query head is [q_C; q_R] (unrotated yet)   [N, H*d_qk]
  query_forward(c, x, w, a, linears);

  // Eq. (12)-(13): RoPE on q_R and on the one k_R
  if (a.rope == MlaRope::Decoupled) {
    rope_rotate_heads(c.q, seq_len, H, dqk, dn, rope, 1.0);
    rope_rotate_heads(kv_a, seq_len, 1, 0, dc, rope, 1.0);
  }

  // Eq. (14)-(15): k_h = [k_C,h; k_R] with k_R shared by all heads; v_h = v_C,h
  ensure_shape(c.k, {size_t(N), size_t(H * dqk)});
  ensure_shape(c.v, {size_t(N), size_t(H * dv)});
  for (long n = 0; n < N; ++n)
    for (int h = 0; h < H; ++h) {
      const T* src = &kv_b(n, h * (dn + dv));
      T* k = &c.k(n, h * dqk);
      for (int i = 0; i < dn; ++i) k[i] = src[i];
      for (int i = 0; i < dr; ++i) k[dn + i] = kv_a(n, dc + i);
      for (int i = 0; i < dv; ++i) c.v(n, h * dv + i) = src[dn + i];
    }
  // rope = Full: Eq. (10)-(11), the rotation over each whole query and key head
  if (a.rope == MlaRope::Full) {
    rope_rotate_heads(c.q, seq_len, H, dqk, 0, rope, 1.0);
    rope_rotate_heads(c.k, seq_len, H, dqk, 0, rope, 1.0);
  }

  // Eq. (16): o_h = sum_j softmax_j(q_h . k_j,h / sqrt(d_nope + d_rope)) v_j,h
  attention_forward(c.o, c.probs, c.q, c.k, c.v, attention_shape(a, batch, seq_len));
  // Eq. (17): u = W^O [o_1; ...; o_H]
  linear_forward(out, c.o, w.wo, linears);
}

template <class T>
void mla_backward(Tensor2<T>& dx, MlaWeights<T>& g, const Tensor2<T>& dout, const MlaCache<T>& c,
                  const MlaWeights<T>& w, const MlaArgs& a, const RopeTable& rope,
                  const LinearPolicy<T>& linears, MlaScratch<T>* scratch) {
  MlaScratch<T> fresh;
  MlaScratch<T>& s = scratch ? *scratch : fresh;
  const int H = a.n_heads, dn = a.qk_nope_head_dim, dr = a.qk_rope_head_dim;
  const int dv = a.v_head_dim, dc = a.kv_lora_rank, dqk = a.qk_head_dim();
  const long N = long(c.batch) * c.seq_len;

  // Eq. (17), (16)
  Tensor2<T> &d_o = s.d_o, &dq = s.dq, &dk = s.dk, &dv_ = s.dv;
  linear_backward(d_o, g.wo, dout, c.o, w.wo, linears);
  attention_backward(dq, dk, dv_, d_o, c.q, c.k, c.v, c.probs,
                     attention_shape(a, c.batch, c.seq_len));
  if (a.rope == MlaRope::Full) {
    rope_rotate_heads(dq, c.seq_len, H, dqk, 0, rope, -1.0);
    rope_rotate_heads(dk, c.seq_len, H, dqk, 0, rope, -1.0);
  }

  // Eq. (15), (14): d k_C,h and d v_C,h back into wkv_b's output; d k_R sums over heads
  Tensor2<T>& d_kv_b = s.d_kv_b;  // every entry written below
  Tensor2<T>& d_kv_a = s.d_kv_a;  // the d k_R part accumulates
  ensure_shape(d_kv_b, {size_t(N), size_t(H * (dn + dv))});
  ensure_shape(d_kv_a, {size_t(N), size_t(dc + dr)});
  std::fill(d_kv_a.begin(), d_kv_a.end(), T(0));
  for (long n = 0; n < N; ++n)
    for (int h = 0; h < H; ++h) {
      T* dst = &d_kv_b(n, h * (dn + dv));
      const T* dkh = &dk(n, h * dqk);
      for (int i = 0; i < dn; ++i) dst[i] = dkh[i];
      for (int i = 0; i < dr; ++i) d_kv_a(n, dc + i) += dkh[dn + i];
      for (int i = 0; i < dv; ++i) dst[dn + i] = dv_(n, h * dv + i);
    }

  // Eq. (13), (12): the inverse rotations
  if (a.rope == MlaRope::Decoupled) {
    rope_rotate_heads(d_kv_a, c.seq_len, 1, 0, dc, rope, -1.0);
    rope_rotate_heads(dq, c.seq_len, H, dqk, dn, rope, -1.0);
  }

  // Eq. (6)-(7) and kv_norm, into the c_KV part of wkv_a's output
  Tensor2<T> &d_ckv = s.d_ckv, &d_ckv_pre = s.d_ckv_pre;
  linear_backward(d_ckv, g.wkv_b, d_kv_b, c.c_kv, w.wkv_b, linears);
  rmsnorm_backward(d_ckv_pre, g.kv_norm, d_ckv, c.c_kv_pre, w.kv_norm, c.kv_rstd);
  xt::view(d_kv_a, xt::all(), xt::range(0, dc)) = d_ckv_pre;
  linear_backward(dx, g.wkv_a, d_kv_a, c.x, w.wkv_a, linears);

  // Eq. (9), (8): the query path
  Tensor2<T>& d_tmp = s.d_tmp;
  if (a.q_lora_rank > 0) {
    Tensor2<T> &d_cq = s.d_cq, &d_qa = s.d_qa;
    linear_backward(d_cq, g.wq_b, dq, c.c_q, w.wq_b, linears);
    rmsnorm_backward(d_qa, g.q_norm, d_cq, c.q_a, w.q_norm, c.q_rstd);
    linear_backward(d_tmp, g.wq_a, d_qa, c.x, w.wq_a, linears);
  } else {
    linear_backward(d_tmp, g.wq, dq, c.x, w.wq, linears);
  }
  dx += d_tmp;
}

// ---------------------------------------------------------------------------
// Decoding

template <class T> MlaLatentCache<T>::MlaLatentCache(const MlaArgs& a, int max_len) {
  kv = xt::zeros<T>({size_t(max_len), size_t(a.kv_lora_rank)});
  pe = xt::zeros<T>({size_t(max_len), size_t(a.qk_rope_head_dim)});
}

template <class T>
MlaNaiveCache<T>::MlaNaiveCache(const MlaArgs& a, int max_len)
    : KvCache<T>(attention_shape(a, 1, 1), max_len) {}

namespace {

// One token: the query heads (RoPE'd for Decoupled), c_KV = kv_norm(..) and
// k_R (RoPE'd for Decoupled), as the forward computes them.
template <class T> struct TokenProjections {
  Tensor2<T> q, kv_a, c_kv;  // [1, H*d_qk], [1, d_c + d_rope], [1, d_c]
};

template <class T>
TokenProjections<T> project_token(const T* x, long pos, const MlaWeights<T>& w, const MlaArgs& a,
                                  const RopeTable& rope) {
  const int dc = a.kv_lora_rank, dn = a.qk_nope_head_dim, dqk = a.qk_head_dim();
  Tensor2<T> xt_ = xt::zeros<T>({size_t(1), size_t(a.dim)});
  std::copy(x, x + a.dim, xt_.data());
  MlaCache<T> c;
  query_forward(c, xt_, w, a);
  TokenProjections<T> p;
  p.q = std::move(c.q);
  linear_forward(p.kv_a, xt_, w.wkv_a);
  const Tensor2<T> c_kv_pre = xt::view(p.kv_a, xt::all(), xt::range(0, dc));
  Tensor1<T> rstd;
  rmsnorm_forward(p.c_kv, rstd, c_kv_pre, w.kv_norm, a.norm_eps);
  if (a.rope == MlaRope::Decoupled) {
    for (int h = 0; h < a.n_heads; ++h)
      rope_rotate(p.q.data() + long(h) * dqk + dn, pos, rope, 1.0);
    rope_rotate(p.kv_a.data() + dc, pos, rope, 1.0);
  }
  return p;
}

void check_room(int len, size_t max_len, const RopeTable& rope, const MlaArgs& a) {
  if (size_t(len) >= max_len) throw std::invalid_argument("MLA decode: the cache is full");
  if (a.rope != MlaRope::None && size_t(len) >= rope.cos.shape(0))
    throw std::invalid_argument("MLA decode: position beyond the RoPE table");
}

}  // namespace

template <class T>
void mla_decode_absorbed(T* out, const T* x, MlaLatentCache<T>& cache, const MlaWeights<T>& w,
                         const MlaArgs& a, const RopeTable& rope) {
  if (a.rope == MlaRope::Full)
    throw std::invalid_argument(
        "MLA decode: rope = \"full\" rotates k_C, so W^UK cannot be absorbed; use the naive cache");
  check_room(cache.len, cache.kv.shape(0), rope, a);
  const int H = a.n_heads, dn = a.qk_nope_head_dim, dr = a.qk_rope_head_dim;
  const int dv = a.v_head_dim, dc = a.kv_lora_rank, dqk = a.qk_head_dim();
  const int t = cache.len, L = t + 1;
  const TokenProjections<T> p = project_token(x, t, w, a, rope);
  std::copy(p.c_kv.data(), p.c_kv.data() + dc, &cache.kv(t, 0));
  std::copy(p.kv_a.data() + dc, p.kv_a.data() + dc + dr, &cache.pe(t, 0));
  cache.len = L;

  // W^UK folded into the query: q_abs,h = W^UK_h^T q_C,h   [H, d_c]
  const long ld_b = long(dn + dv) * dc;  // wkv_b numbers per head
  std::vector<T> q_abs(size_t(H) * dc), scores(size_t(H) * L), o_lat(size_t(H) * dc);
  for (int h = 0; h < H; ++h)
    gemm_serial<T>(false, false, 1, dc, dn, T(1), p.q.data() + long(h) * dqk, dn,
                   w.wkv_b.data() + h * ld_b, dc, T(0), q_abs.data() + long(h) * dc, dc);
  // Scores of all heads against the one shared latent key: MQA of width d_c + d_rope.
  const T scale = T(a.softmax_scale());
  gemm_serial<T>(false, true, H, L, dc, scale, q_abs.data(), dc, cache.kv.data(), dc, T(0),
                 scores.data(), L);
  if (dr > 0)
    gemm_serial<T>(false, true, H, L, dr, scale, p.q.data() + dn, dqk, cache.pe.data(), dr, T(1),
                   scores.data(), L);
  for (int h = 0; h < H; ++h) {
    T* row = scores.data() + long(h) * L;
    simd::softmax_row(row, row, L, simd::SoftmaxArith::Scalar);
  }
  // o_lat,h = sum_j p_hj c_j; then W^UV after the weights: o_h = W^UV_h o_lat,h
  gemm_serial<T>(false, false, H, dc, L, T(1), scores.data(), L, cache.kv.data(), dc, T(0),
                 o_lat.data(), dc);
  Tensor2<T> o = xt::zeros<T>({size_t(1), size_t(H * dv)}), u;
  for (int h = 0; h < H; ++h)
    gemm_serial<T>(false, true, 1, dv, dc, T(1), o_lat.data() + long(h) * dc, dc,
                   w.wkv_b.data() + h * ld_b + long(dn) * dc, dc, T(0), o.data() + long(h) * dv,
                   dv);
  linear_forward(u, o, w.wo);  // Eq. (17)
  std::copy(u.data(), u.data() + a.dim, out);
}

template <class T>
void mla_decode_naive(T* out, const T* x, MlaNaiveCache<T>& cache, const MlaWeights<T>& w,
                      const MlaArgs& a, const RopeTable& rope) {
  check_room(cache.len, cache.k.shape(0), rope, a);
  const int H = a.n_heads, dn = a.qk_nope_head_dim, dr = a.qk_rope_head_dim;
  const int dv = a.v_head_dim, dc = a.kv_lora_rank, dqk = a.qk_head_dim();
  const int t = cache.len;
  TokenProjections<T> p = project_token(x, t, w, a, rope);
  // Eq. (6)-(7), (14)-(15): this token's full key and value heads   [H*d_qk], [H*d_v]
  Tensor2<T> kv_b;
  linear_forward(kv_b, p.c_kv, w.wkv_b);
  std::vector<T> k(size_t(H) * dqk), v(size_t(H) * dv);
  for (int h = 0; h < H; ++h) {
    T* kh = &k[size_t(h) * dqk];
    for (int i = 0; i < dn; ++i) kh[i] = kv_b(0, h * (dn + dv) + i);
    for (int i = 0; i < dr; ++i) kh[dn + i] = p.kv_a(0, dc + i);
    for (int i = 0; i < dv; ++i) v[size_t(h) * dv + i] = kv_b(0, h * (dn + dv) + dn + i);
    if (a.rope == MlaRope::Full) {  // Eq. (10)-(11)
      rope_rotate(kh, t, rope, 1.0);
      rope_rotate(p.q.data() + long(h) * dqk, t, rope, 1.0);
    }
  }
  // Eq. (16): MHA decoding over the cached keys and values, this token appended
  Tensor2<T> o = xt::zeros<T>({size_t(1), size_t(H * dv)}), u;
  attention_decode(o.data(), p.q.data(), k.data(), v.data(), cache, attention_shape(a, 1, 1));
  linear_forward(u, o, w.wo);  // Eq. (17)
  std::copy(u.data(), u.data() + a.dim, out);
}

#define DSLAB_INSTANTIATE(T)                                                                     \
  template struct MlaWeights<T>;                                                                 \
  template struct MlaLatentCache<T>;                                                             \
  template struct MlaNaiveCache<T>;                                                              \
  template void mla_forward<T>(Tensor2<T>&, MlaCache<T>&, const Tensor2<T>&,                     \
                               const MlaWeights<T>&, const MlaArgs&, const RopeTable&, int, int,  \
                               const LinearPolicy<T>&, MlaScratch<T>*);                           \
  template void mla_backward<T>(Tensor2<T>&, MlaWeights<T>&, const Tensor2<T>&,                  \
                                const MlaCache<T>&, const MlaWeights<T>&, const MlaArgs&,        \
                                const RopeTable&, const LinearPolicy<T>&, MlaScratch<T>*);       \
  template void mla_decode_absorbed<T>(T*, const T*, MlaLatentCache<T>&, const MlaWeights<T>&,   \
                                       const MlaArgs&, const RopeTable&);                        \
  template void mla_decode_naive<T>(T*, const T*, MlaNaiveCache<T>&, const MlaWeights<T>&,       \
                                    const MlaArgs&, const RopeTable&);
DSLAB_INSTANTIATE(float)
DSLAB_INSTANTIATE(double)
#undef DSLAB_INSTANTIATE

}  // namespace dslab
