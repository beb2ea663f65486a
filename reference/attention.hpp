// Causal scaled dot-product attention over heads, Eq. (4) of the review:
//   o_{t,i} = sum_{j<=t} softmax_j(scale * q_{t,i} . k_{j,i}) v_{j,i}
// MHA, GQA and MQA differ only in n_kv_heads: query head h reads key/value
// head h / (n_heads / n_kv_heads).
//   q [N, n_heads*head_dim]   k [N, n_kv_heads*head_dim]   v [N, n_kv_heads*v_head_dim]
//   out [N, n_heads*v_head_dim]   cache probs [B, n_heads, T, T] (zero above the diagonal)
#pragma once

#include "reference/rope.hpp"
#include "reference/tensor.hpp"

namespace dslab {

struct AttentionShape {
  int batch = 0, seq_len = 0;
  int n_heads = 0, n_kv_heads = 0;
  int head_dim = 0, v_head_dim = 0;
  double softmax_scale = 0;  // usually head_dim^-1/2
};

template <class T>
void attention_forward(Tensor2<T>& out, Tensor4<T>& probs, const Tensor2<T>& q,
                       const Tensor2<T>& k, const Tensor2<T>& v, const AttentionShape& s);

// dq, dk, dv are overwritten.
template <class T>
void attention_backward(Tensor2<T>& dq, Tensor2<T>& dk, Tensor2<T>& dv, const Tensor2<T>& dout,
                        const Tensor2<T>& q, const Tensor2<T>& k, const Tensor2<T>& v,
                        const Tensor4<T>& probs, const AttentionShape& s);

// ---------------------------------------------------------------------------
// Decoding with a K/V cache (MHA, GQA, MQA): one sequence, one token at a time.
// The cache keeps every token's keys (after RoPE) and values:
// n_kv_heads * (head_dim + v_head_dim) numbers per token and layer, 2 n_kv d_h
// when the two widths are equal (Sec. 2.1.1). s.batch and s.seq_len are unused.
// The whole MHA sub-layer's decoding (projections, RoPE, this) is mha_decode
// in reference/mha.hpp.
template <class T> struct KvCache {
  int len = 0;       // tokens cached
  Tensor2<T> k, v;   // [max_len, n_kv_heads*head_dim], [max_len, n_kv_heads*v_head_dim]
  KvCache(const AttentionShape& s, int max_len);
};

// Eq. (4) for the last row: appends the token's key k [n_kv_heads*head_dim] and
// value v [n_kv_heads*v_head_dim] at position cache.len, then
// out [n_heads*v_head_dim] = attention of the query q [n_heads*head_dim] over
// positions 0..cache.len. Throws std::invalid_argument when the cache is full.
template <class T>
void attention_decode(T* out, const T* q, const T* k, const T* v, KvCache<T>& cache,
                      const AttentionShape& s);

}  // namespace dslab
