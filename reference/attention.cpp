#include "reference/attention.hpp"

#include <cmath>
#include <vector>

#include "reference/gemm.hpp"

namespace dslab {

namespace {

// Row-wise causal softmax of a [T, T] score matrix, in place.
template <class T> void causal_softmax(T* s, int seq_len) {
  for (int i = 0; i < seq_len; ++i) {
    T* row = s + long(i) * seq_len;
    T m = row[0];
    for (int j = 1; j <= i; ++j) m = std::max(m, row[j]);
    T sum = 0;
    for (int j = 0; j <= i; ++j) {
      row[j] = std::exp(row[j] - m);
      sum += row[j];
    }
    const T inv = T(1) / sum;
    for (int j = 0; j <= i; ++j) row[j] *= inv;
    for (int j = i + 1; j < seq_len; ++j) row[j] = 0;
  }
}

}  // namespace

template <class T>
void attention_forward(Tensor2<T>& out, Tensor4<T>& probs, const Tensor2<T>& q,
                       const Tensor2<T>& k, const Tensor2<T>& v, const AttentionShape& s) {
  const int B = s.batch, Tn = s.seq_len, H = s.n_heads, G = H / s.n_kv_heads;
  const int dh = s.head_dim, dv = s.v_head_dim;
  const int ldq = H * dh, ldk = s.n_kv_heads * dh, ldv = s.n_kv_heads * dv, ldo = H * dv;
  ensure_shape(out, {size_t(B) * Tn, size_t(ldo)});
  ensure_shape(probs, {size_t(B), size_t(H), size_t(Tn), size_t(Tn)});
#pragma omp parallel for schedule(dynamic, 1)
  for (int bh = 0; bh < B * H; ++bh) {
    const int b = bh / H, h = bh % H, g = h / G;
    const long row0 = long(b) * Tn;
    T* p = &probs(b, h, 0, 0);
    // scores = scale * Q K^T   [T, T]
    gemm_serial<T>(false, true, Tn, Tn, dh, T(s.softmax_scale), q.data() + row0 * ldq + h * dh,
                   ldq, k.data() + row0 * ldk + g * dh, ldk, T(0), p, Tn);
    causal_softmax(p, Tn);
    // out = P V   [T, dv]
    gemm_serial<T>(false, false, Tn, dv, Tn, T(1), p, Tn, v.data() + row0 * ldv + g * dv, ldv,
                   T(0), out.data() + row0 * ldo + h * dv, ldo);
  }
}

// Parallel over (batch, kv head): the query heads sharing a kv head add into
// its dk, dv one after another, in head order.
template <class T>
void attention_backward(Tensor2<T>& dq, Tensor2<T>& dk, Tensor2<T>& dv, const Tensor2<T>& dout,
                        const Tensor2<T>& q, const Tensor2<T>& k, const Tensor2<T>& v,
                        const Tensor4<T>& probs, const AttentionShape& s) {
  const int B = s.batch, Tn = s.seq_len, H = s.n_heads, KV = s.n_kv_heads, G = H / KV;
  const int dh = s.head_dim, dvh = s.v_head_dim;
  const int ldq = H * dh, ldk = KV * dh, ldv = KV * dvh, ldo = H * dvh;
  ensure_shape(dq, {size_t(B) * Tn, size_t(ldq)});
  ensure_shape(dk, {size_t(B) * Tn, size_t(ldk)});
  ensure_shape(dv, {size_t(B) * Tn, size_t(ldv)});
#pragma omp parallel for schedule(dynamic, 1)
  for (int bg = 0; bg < B * KV; ++bg) {
    const int b = bg / KV, g = bg % KV;
    const long row0 = long(b) * Tn;
    std::vector<T> dscore(size_t(Tn) * Tn);
    for (int hg = 0; hg < G; ++hg) {
      const int h = g * G + hg;
      const T* p = &probs(b, h, 0, 0);
      const T* dout_h = dout.data() + row0 * ldo + h * dvh;
      const T beta = hg == 0 ? T(0) : T(1);
      // dv += P^T dout
      gemm_serial<T>(true, false, Tn, dvh, Tn, T(1), p, Tn, dout_h, ldo, beta,
                     dv.data() + row0 * ldv + g * dvh, ldv);
      // dP = dout V^T, then dS = P * (dP - rowsum(P * dP))
      gemm_serial<T>(false, true, Tn, Tn, dvh, T(1), dout_h, ldo, v.data() + row0 * ldv + g * dvh,
                     ldv, T(0), dscore.data(), Tn);
      for (int i = 0; i < Tn; ++i) {
        const T* pi = p + long(i) * Tn;
        T* di = dscore.data() + long(i) * Tn;
        T dot = 0;
        for (int j = 0; j <= i; ++j) dot += pi[j] * di[j];
        for (int j = 0; j <= i; ++j) di[j] = pi[j] * (di[j] - dot);
        for (int j = i + 1; j < Tn; ++j) di[j] = 0;
      }
      // dq = scale * dS K ;  dk += scale * dS^T Q
      gemm_serial<T>(false, false, Tn, dh, Tn, T(s.softmax_scale), dscore.data(), Tn,
                     k.data() + row0 * ldk + g * dh, ldk, T(0), dq.data() + row0 * ldq + h * dh,
                     ldq);
      gemm_serial<T>(true, false, Tn, dh, Tn, T(s.softmax_scale), dscore.data(), Tn,
                     q.data() + row0 * ldq + h * dh, ldq, beta, dk.data() + row0 * ldk + g * dh,
                     ldk);
    }
  }
}

#define DSLAB_INSTANTIATE(T)                                                                    \
  template void attention_forward<T>(Tensor2<T>&, Tensor4<T>&, const Tensor2<T>&,               \
                                     const Tensor2<T>&, const Tensor2<T>&, const AttentionShape&); \
  template void attention_backward<T>(Tensor2<T>&, Tensor2<T>&, Tensor2<T>&, const Tensor2<T>&,  \
                                      const Tensor2<T>&, const Tensor2<T>&, const Tensor2<T>&,   \
                                      const Tensor4<T>&, const AttentionShape&);
DSLAB_INSTANTIATE(float)
DSLAB_INSTANTIATE(double)
#undef DSLAB_INSTANTIATE

}  // namespace dslab
