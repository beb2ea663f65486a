#include "reference/mha.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dslab {

AttentionShape MhaArgs::shape(int batch, int seq_len) const {
  return {batch, seq_len, n_heads, n_kv_heads, head_dim(), head_dim(), 1.0 / std::sqrt(double(head_dim()))};
}

void MhaArgs::validate() const {
  if (n_heads <= 0 || dim % n_heads != 0) throw std::invalid_argument("dim must be a multiple of n_heads");
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0)
    throw std::invalid_argument("n_heads must be a multiple of n_kv_heads");
}

template <class T> MhaWeights<T>::MhaWeights(const MhaArgs& a) {
  const size_t D = a.dim, d = a.head_dim(), H = a.n_heads, KV = a.n_kv_heads;
  wq = xt::zeros<T>({H * d, D});
  wk = xt::zeros<T>({KV * d, D});
  wv = xt::zeros<T>({KV * d, D});
  wo = xt::zeros<T>({D, H * d});
}

template <class T> std::vector<ParamRef<T>> MhaWeights<T>::refs(const std::string& p) {
  return {param_ref(p + "wq.weight", wq), param_ref(p + "wk.weight", wk), param_ref(p + "wv.weight", wv),
          param_ref(p + "wo.weight", wo)};
}

template <class T>
void mha_forward(Tensor2<T>& out, MhaCache<T>& c, const Tensor2<T>& x, const MhaWeights<T>& w,
                 const MhaArgs& a, const RopeTable& rope, int batch, int seq_len,
                 const LinearPolicy<T>& linears) {
  c.shape = a.shape(batch, seq_len);
  linear_forward(c.q, x, w.wq, linears);  // Eq. (1)-(3)
  linear_forward(c.k, x, w.wk, linears);
  linear_forward(c.v, x, w.wv, linears);
  rope_forward(c.q, seq_len, a.n_heads, rope);
  rope_forward(c.k, seq_len, a.n_kv_heads, rope);
  attention_forward(c.o, c.probs, c.q, c.k, c.v, c.shape);  // Eq. (4)
  linear_forward(out, c.o, w.wo, linears);                   // Eq. (5)
}

template <class T>
void mha_backward(Tensor2<T>& dx, MhaWeights<T>& g, const Tensor2<T>& dout, const Tensor2<T>& x,
                  const MhaCache<T>& c, const MhaWeights<T>& w, const MhaArgs& a,
                  const RopeTable& rope, MhaScratch<T>& s, const LinearPolicy<T>& linears) {
  const int seq_len = c.shape.seq_len;
  linear_backward(s.d_o, g.wo, dout, c.o, w.wo, linears);
  attention_backward(s.dq, s.dk, s.dv, s.d_o, c.q, c.k, c.v, c.probs, c.shape);
  rope_backward(s.dq, seq_len, a.n_heads, rope);
  rope_backward(s.dk, seq_len, a.n_kv_heads, rope);
  linear_backward(dx, g.wq, s.dq, x, w.wq, linears);
  linear_backward(s.d_tmp, g.wk, s.dk, x, w.wk, linears);
  dx += s.d_tmp;
  linear_backward(s.d_tmp, g.wv, s.dv, x, w.wv, linears);
  dx += s.d_tmp;
}

template <class T>
void mha_decode(Tensor2<T>& out, const Tensor2<T>& x, const std::vector<KvCache<T>*>& caches,
                const MhaWeights<T>& w, const AttentionShape& s, const RopeTable& rope,
                const LinearPolicy<T>& linears) {
  const int B = int(x.shape(0));
  if (caches.size() != size_t(B)) throw std::invalid_argument("mha decode: one cache per row of x");
  if (rope.d != s.head_dim) throw std::invalid_argument("mha decode: the RoPE table is not head_dim wide");
  for (const KvCache<T>* c : caches)
    if (size_t(c->len) >= rope.cos.shape(0))
      throw std::invalid_argument("mha decode: position " + std::to_string(c->len) +
                                  " is beyond the RoPE table");
  Tensor2<T> q, k, v;
  linear_forward(q, x, w.wq, linears);  // Eq. (1)-(3)   [B, H*d], [B, KV*d], [B, KV*d]
  linear_forward(k, x, w.wk, linears);
  linear_forward(v, x, w.wv, linears);
  Tensor2<T> o = xt::zeros<T>({size_t(B), size_t(s.n_heads) * s.v_head_dim});
  bool full = false;
#pragma omp parallel for schedule(dynamic, 1) reduction(|| : full) if (B > 1)
  for (int b = 0; b < B; ++b) {
    KvCache<T>& c = *caches[b];
    if (size_t(c.len) >= c.k.shape(0)) {
      full = true;
      continue;
    }
    const long pos = c.len;
    for (int h = 0; h < s.n_heads; ++h) rope_rotate(&q(b, 0) + long(h) * rope.d, pos, rope, 1.0);
    for (int h = 0; h < s.n_kv_heads; ++h) rope_rotate(&k(b, 0) + long(h) * rope.d, pos, rope, 1.0);
    attention_decode(&o(b, 0), &q(b, 0), &k(b, 0), &v(b, 0), c, s);  // Eq. (4)
  }
  if (full) throw std::invalid_argument("attention decode: the cache is full");
  linear_forward(out, o, w.wo, linears);  // Eq. (5)
}

template <class T>
void mha_decode(T* out, const T* x, KvCache<T>& cache, const MhaWeights<T>& w, const AttentionShape& s,
                const RopeTable& rope) {
  const size_t D = w.wq.shape(1);
  Tensor2<T> x1 = xt::zeros<T>({size_t(1), D}), u;
  std::copy(x, x + D, x1.data());
  mha_decode(u, x1, std::vector<KvCache<T>*>{&cache}, w, s, rope);
  std::copy(u.data(), u.data() + u.size(), out);
}

#define DSLAB_INSTANTIATE(T)                                                                            \
  template struct MhaWeights<T>;                                                                        \
  template void mha_forward<T>(Tensor2<T>&, MhaCache<T>&, const Tensor2<T>&, const MhaWeights<T>&,     \
                               const MhaArgs&, const RopeTable&, int, int, const LinearPolicy<T>&);    \
  template void mha_backward<T>(Tensor2<T>&, MhaWeights<T>&, const Tensor2<T>&, const Tensor2<T>&,     \
                                const MhaCache<T>&, const MhaWeights<T>&, const MhaArgs&,              \
                                const RopeTable&, MhaScratch<T>&, const LinearPolicy<T>&);        \
  template void mha_decode<T>(T*, const T*, KvCache<T>&, const MhaWeights<T>&, const AttentionShape&, \
                              const RopeTable&);                                                      \
  template void mha_decode<T>(Tensor2<T>&, const Tensor2<T>&, const std::vector<KvCache<T>*>&,         \
                              const MhaWeights<T>&, const AttentionShape&, const RopeTable&,           \
                              const LinearPolicy<T>&);
DSLAB_INSTANTIATE(float)
DSLAB_INSTANTIATE(double)
#undef DSLAB_INSTANTIATE

}  // namespace dslab
