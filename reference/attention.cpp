#include "reference/attention.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "reference/gemm.hpp"
#include "reference/simd.hpp"

namespace dslab {

namespace {

// Queries are taken in blocks of kBlock rows. Query block [r0, r1) attends to
// keys [0, r1) only: the blocks above the diagonal are never computed. The
// block size is fixed, so the arithmetic does not depend on the thread count.
constexpr int kBlock = 64;

// Causal softmax of row i of a score matrix, in place: columns [0, i] become
// probabilities, columns (i, end) become 0.
template <class T> void causal_softmax_row(T* row, int i, int end) {
  simd::softmax_row(row, row, i + 1);
  std::fill(row + i + 1, row + end, T(0));
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
#pragma omp parallel for schedule(dynamic, 1) if (long(B) * H * Tn * Tn * dh >= kParallelMinWork)
  for (int bh = 0; bh < B * H; ++bh) {
    const int b = bh / H, h = bh % H, g = h / G;
    const long row0 = long(b) * Tn;
    const T* qh = q.data() + row0 * ldq + h * dh;
    const T* kh = k.data() + row0 * ldk + g * dh;
    const T* vh = v.data() + row0 * ldv + g * dv;
    T* p = &probs(b, h, 0, 0);
    T* oh = out.data() + row0 * ldo + h * dv;
    for (int r0 = 0; r0 < Tn; r0 += kBlock) {
      const int r1 = std::min(r0 + kBlock, Tn), m = r1 - r0;
      T* pr = p + long(r0) * Tn;
      // scores = scale * Q K^T   [m, r1]
      gemm_serial<T>(false, true, m, r1, dh, T(s.softmax_scale), qh + long(r0) * ldq, ldq, kh, ldk,
                     T(0), pr, Tn);
      for (int i = r0; i < r1; ++i) causal_softmax_row(p + long(i) * Tn, i, Tn);
      // out = P V   [m, dv]
      gemm_serial<T>(false, false, m, dv, r1, T(1), pr, Tn, vh, ldv, T(0), oh + long(r0) * ldo,
                     ldo);
    }
  }
}

// Parallel over (batch, kv head): the query heads sharing a kv head add into
// its dk, dv one after another, in head order. Row blocks of dP and dS stop at
// the diagonal block; dk and dv take key block [c0, c1) from queries [c0, T).
template <class T>
void attention_backward(Tensor2<T>& dq, Tensor2<T>& dk, Tensor2<T>& dv, const Tensor2<T>& dout,
                        const Tensor2<T>& q, const Tensor2<T>& k, const Tensor2<T>& v,
                        const Tensor4<T>& probs, const AttentionShape& s) {
  const int B = s.batch, Tn = s.seq_len, H = s.n_heads, KV = s.n_kv_heads, G = H / KV;
  const int dh = s.head_dim, dvh = s.v_head_dim;
  const int ldq = H * dh, ldk = KV * dh, ldv = KV * dvh, ldo = H * dvh;
  const T scale = T(s.softmax_scale);
  ensure_shape(dq, {size_t(B) * Tn, size_t(ldq)});
  ensure_shape(dk, {size_t(B) * Tn, size_t(ldk)});
  ensure_shape(dv, {size_t(B) * Tn, size_t(ldv)});
#pragma omp parallel if (long(B) * H * Tn * Tn * dh >= kParallelMinWork)
  {
    std::vector<T> dscore(size_t(Tn) * Tn);  // dP, then dS, below the diagonal blocks
    T* ds = dscore.data();
#pragma omp for schedule(dynamic, 1)
    for (int bg = 0; bg < B * KV; ++bg) {
      const int b = bg / KV, g = bg % KV;
      const long row0 = long(b) * Tn;
      const T* kg = k.data() + row0 * ldk + g * dh;
      const T* vg = v.data() + row0 * ldv + g * dvh;
      T* dkg = dk.data() + row0 * ldk + g * dh;
      T* dvg = dv.data() + row0 * ldv + g * dvh;
      for (int hg = 0; hg < G; ++hg) {
        const int h = g * G + hg;
        const T* p = &probs(b, h, 0, 0);
        const T* qh = q.data() + row0 * ldq + h * dh;
        const T* dout_h = dout.data() + row0 * ldo + h * dvh;
        T* dqh = dq.data() + row0 * ldq + h * dh;
        const T beta = hg == 0 ? T(0) : T(1);
        for (int r0 = 0; r0 < Tn; r0 += kBlock) {
          const int r1 = std::min(r0 + kBlock, Tn), m = r1 - r0;
          // dP = dout V^T   [m, r1]
          gemm_serial<T>(false, true, m, r1, dvh, T(1), dout_h + long(r0) * ldo, ldo, vg, ldv,
                         T(0), ds + long(r0) * Tn, Tn);
          // dS = P * (dP - rowsum(P * dP)), zero above the diagonal
          for (int i = r0; i < r1; ++i) {
            const T* pi = p + long(i) * Tn;
            T* di = ds + long(i) * Tn;
            const T dot = simd::dot(pi, di, i + 1);
            for (int j = 0; j <= i; ++j) di[j] = pi[j] * (di[j] - dot);
            std::fill(di + i + 1, di + r1, T(0));
          }
          // dq = scale * dS K   [m, dh]
          gemm_serial<T>(false, false, m, dh, r1, scale, ds + long(r0) * Tn, Tn, kg, ldk, T(0),
                         dqh + long(r0) * ldq, ldq);
        }
        for (int c0 = 0; c0 < Tn; c0 += kBlock) {
          const int c1 = std::min(c0 + kBlock, Tn), n = c1 - c0, rows = Tn - c0;
          const long at = long(c0) * Tn + c0;  // element (c0, c0)
          // dv += P^T dout ;  dk += scale * dS^T Q   [n, dvh], [n, dh]
          gemm_serial<T>(true, false, n, dvh, rows, T(1), p + at, Tn, dout_h + long(c0) * ldo, ldo,
                         beta, dvg + long(c0) * ldv, ldv);
          gemm_serial<T>(true, false, n, dh, rows, scale, ds + at, Tn, qh + long(c0) * ldq, ldq,
                         beta, dkg + long(c0) * ldk, ldk);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Decoding

template <class T> KvCache<T>::KvCache(const AttentionShape& s, int max_len) {
  k = xt::zeros<T>({size_t(max_len), size_t(s.n_kv_heads) * s.head_dim});
  v = xt::zeros<T>({size_t(max_len), size_t(s.n_kv_heads) * s.v_head_dim});
}

template <class T>
void attention_decode(T* out, const T* q, const T* k, const T* v, KvCache<T>& cache,
                      const AttentionShape& s) {
  if (size_t(cache.len) >= cache.k.shape(0))
    throw std::invalid_argument("attention decode: the cache is full");
  const int H = s.n_heads, G = H / s.n_kv_heads, dh = s.head_dim, dv = s.v_head_dim;
  const int ldk = s.n_kv_heads * dh, ldv = s.n_kv_heads * dv, t = cache.len, L = t + 1;
  std::copy(k, k + ldk, &cache.k(t, 0));
  std::copy(v, v + ldv, &cache.v(t, 0));
  cache.len = L;
  std::vector<T> p(L);
  for (int h = 0; h < H; ++h) {
    const int g = h / G;
    // p = softmax_j(scale * q_h . k_j,g), j = 0..t
    gemm_serial<T>(false, true, 1, L, dh, T(s.softmax_scale), q + long(h) * dh, dh,
                   cache.k.data() + long(g) * dh, ldk, T(0), p.data(), L);
    causal_softmax_row(p.data(), t, L);
    // o_h = sum_j p_j v_j,g
    gemm_serial<T>(false, false, 1, dv, L, T(1), p.data(), L, cache.v.data() + long(g) * dv, ldv,
                   T(0), out + long(h) * dv, dv);
  }
}

#define DSLAB_INSTANTIATE(T)                                                                    \
  template void attention_forward<T>(Tensor2<T>&, Tensor4<T>&, const Tensor2<T>&,               \
                                     const Tensor2<T>&, const Tensor2<T>&, const AttentionShape&); \
  template void attention_backward<T>(Tensor2<T>&, Tensor2<T>&, Tensor2<T>&, const Tensor2<T>&,  \
                                      const Tensor2<T>&, const Tensor2<T>&, const Tensor2<T>&,   \
                                      const Tensor4<T>&, const AttentionShape&);                 \
  template struct KvCache<T>;                                                                   \
  template void attention_decode<T>(T*, const T*, const T*, const T*, KvCache<T>&,              \
                                    const AttentionShape&);
DSLAB_INSTANTIATE(float)
DSLAB_INSTANTIATE(double)
#undef DSLAB_INSTANTIATE

}  // namespace dslab
