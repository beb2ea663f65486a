// Multi-head attention with RoPE (review Sec. 2.1, Eq. (1)-(5)), and its
// grouped (GQA) and multi-query (MQA) forms: n_kv_heads = n_heads, 1 < KV < H,
// or 1. Names as DeepSeek's model.py for the plain MHA it compares MLA with:
//   wq [H*d, D]   q_t = W^Q h_t           Eq. (1)
//   wk [KV*d, D]  k_t = W^K h_t           Eq. (2)
//   wv [KV*d, D]  v_t = W^V h_t           Eq. (3)
//   wo [D, H*d]   u_t = W^O [o_t,1; ...]  Eq. (5)
// RoPE rotates q and k per head; o_t,i = sum_j softmax_j(q_t,i . k_j,i / sqrt(d)) v_j,i (Eq. (4)),
// causal; query head i reads key/value head i / (H / KV).
// d = head_dim = dim / n_heads. Activations are token-major, N = batch*seq_len rows.
#pragma once

#include <string>
#include <vector>

#include "reference/attention.hpp"
#include "reference/linear.hpp"
#include "reference/rope.hpp"
#include "reference/tensor.hpp"

namespace dslab {

struct MhaArgs {
  int dim = 0, n_heads = 0, n_kv_heads = 0;
  int head_dim() const { return dim / n_heads; }
  // The attention shape of a batch: d^-1/2 as the softmax scale.
  AttentionShape shape(int batch, int seq_len) const;
  // Throws std::invalid_argument naming the inconsistent fields.
  void validate() const;
};

template <class T> struct MhaWeights {
  Tensor2<T> wq, wk, wv, wo;
  MhaWeights() = default;
  explicit MhaWeights(const MhaArgs& a);  // zeros, in the shapes above
  std::vector<ParamRef<T>> refs(const std::string& prefix);  // "attn.wq.weight", ...
};

// What the forward keeps for the backward.
template <class T> struct MhaCache {
  AttentionShape shape;
  Tensor2<T> q, k, v;   // after RoPE: [N, H*d], [N, KV*d], [N, KV*d]
  Tensor4<T> probs;     // [B, H, T, T]
  Tensor2<T> o;         // [N, H*d] attention output before wo
};

// out [N, D] = MHA(x); rope: RopeTable(max_seq_len, head_dim, theta).
template <class T>
void mha_forward(Tensor2<T>& out, MhaCache<T>& cache, const Tensor2<T>& x, const MhaWeights<T>& w,
                 const MhaArgs& a, const RopeTable& rope, int batch, int seq_len,
                 const LinearPolicy<T>& linears = {});

// Temporaries of the backward, kept by the caller from call to call.
template <class T> struct MhaScratch {
  Tensor2<T> d_o, dq, dk, dv, d_tmp;
};

// dx [N, D] is overwritten; weight gradients are added into g. x is the forward's input.
template <class T>
void mha_backward(Tensor2<T>& dx, MhaWeights<T>& g, const Tensor2<T>& dout, const Tensor2<T>& x,
                  const MhaCache<T>& cache, const MhaWeights<T>& w, const MhaArgs& a,
                  const RopeTable& rope, MhaScratch<T>& scratch, const LinearPolicy<T>& linears = {});

// ---------------------------------------------------------------------------
// Decoding with a K/V cache (KvCache, attention_decode: reference/attention.hpp).
//
// The attention sub-layer of block_forward for one token x [D] at position
// cache.len: q, k, v = wq x, wk x, wv x; RoPE on q and k at that position
// (rope: head_dim wide); attention_decode appends k, v and attends over
// positions 0..cache.len; out [D] = wo o (Eq. (5)). Throws
// std::invalid_argument when the cache is full or the RoPE table too short.
template <class T>
void mha_decode(T* out, const T* x, KvCache<T>& cache, const MhaWeights<T>& w, const AttentionShape& s,
                const RopeTable& rope);

// The same for B sequences at once, each at its own position: row b of x
// [B, D] is the new token of the sequence whose cache is caches[b]; out [B, D].
// The projections wq, wk, wv, wo run as [B, D] GEMMs, the attention per
// sequence against its own cache (in parallel over sequences).
template <class T>
void mha_decode(Tensor2<T>& out, const Tensor2<T>& x, const std::vector<KvCache<T>*>& caches,
                const MhaWeights<T>& w, const AttentionShape& s, const RopeTable& rope,
                const LinearPolicy<T>& linears = {});

}  // namespace dslab
