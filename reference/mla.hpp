// Multi-head Latent Attention (MLA) with decoupled RoPE, Sec. 2.1 of the
// review, Eq. (6)-(17); names and weight layout as DeepSeek-V3's
// inference/model.py:
//   wq_a    [q_lora_rank, D]                 W^DQ, Eq. (8)
//   q_norm  [q_lora_rank]                    RMSNorm of c_Q
//   wq_b    [H*(d_nope+d_rope), q_lora_rank] W^UQ and W^QR, head by head, Eq. (9), (12)
//   wq      [H*(d_nope+d_rope), D]           instead of the three above when q_lora_rank = 0
//   wkv_a   [kv_lora_rank + d_rope, D]       W^DKV (c_KV) stacked on W^KR (k_R), Eq. (13)
//   kv_norm [kv_lora_rank]                   RMSNorm of c_KV
//   wkv_b   [H*(d_nope+d_v), kv_lora_rank]   W^UK and W^UV, head by head, Eq. (6), (7)
//   wo      [D, H*d_v]                       W^O, Eq. (17)
// d_nope = qk_nope_head_dim (d_h), d_rope = qk_rope_head_dim (d_h^R), d_v = v_head_dim,
// d_c = kv_lora_rank. Activations are token-major, N = batch*seq_len rows.
//
// Position encoding, `rope`:
//   Decoupled  RoPE on q_R (per head) and on the one shared k_R, Eq. (12)-(13).
//   None       no rotation anywhere (q_R, k_R stay as extra, position-free dims).
//   Full       RoPE over each whole query and key head [q_C; q_R], [k_C; k_R] with
//              d_nope + d_rope frequencies: Eq. (10)-(11), where W^UK cannot be absorbed.
// All three have the same parameters.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "reference/linear.hpp"
#include "reference/enum_names.hpp"
#include "reference/attention.hpp"
#include "reference/rope.hpp"
#include "reference/tensor.hpp"

namespace dslab {

enum class MlaRope { Decoupled, None, Full };
template <> struct EnumNames<MlaRope> {
  static constexpr std::array<std::string_view, 3> names = {"decoupled", "none", "full"};
};

// The names above; parse throws std::invalid_argument naming the allowed values.
const char* mla_rope_name(MlaRope r);
MlaRope parse_mla_rope(const std::string& name);

struct MlaArgs {
  int dim = 0, n_heads = 0;
  int q_lora_rank = 0;  // 0: a direct wq (as V2-Lite)
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  MlaRope rope = MlaRope::Decoupled;
  double norm_eps = 1e-6;
  // YaRN context extension (model.py's ModelArgs names), on when the model's
  // max_seq_len > original_seq_len, as model.py decides: the RoPE frequencies get
  // YaRN's correction (reference/rope.hpp, over the rope_dim() wide heads) and the
  // softmax scale the factor (0.1 * mscale * ln(rope_factor) + 1)^2.
  int max_seq_len = 0;  // the model's; 0 (unknown) keeps YaRN off
  int original_seq_len = 4096;
  double rope_factor = 1.0, mscale = 1.0;
  double beta_fast = 32, beta_slow = 1;

  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool yarn() const { return max_seq_len > original_seq_len; }
  // (d_nope + d_rope)^-1/2, Eq. (16), times the YaRN factor above when yarn().
  double softmax_scale() const;
  // Head width the RoPE table must have: d_rope (decoupled), d_nope + d_rope (full), 0 (none).
  int rope_dim() const;
  // The table mla_forward and the decoders take: max_len positions, rope_dim() wide,
  // YaRN frequencies when yarn(); empty for rope = None.
  RopeTable rope_table(int max_len, double theta) const;
  // Throws ArgsError (reference/args_error.hpp) for the first broken rule,
  // naming the run-config keys, which sit in [model] (model.qk_rope_head_dim, ...).
  void validate() const;
};

template <class T> struct MlaWeights {
  Tensor2<T> wq_a, wq_b, wq, wkv_a, wkv_b, wo;
  Tensor1<T> q_norm, kv_norm;
  MlaWeights() = default;
  explicit MlaWeights(const MlaArgs& a);  // zeros, in the shapes above
  // Every tensor with its model.py name after `prefix` (e.g. "layers.0.attn."),
  // in model.py order; wq_a, q_norm, wq_b or wq depending on q_lora_rank.
  std::vector<ParamRef<T>> refs(const std::string& prefix);
};

// What the forward keeps for the backward.
template <class T> struct MlaCache {
  int batch = 0, seq_len = 0;
  Tensor2<T> x;                 // [N, D] input
  Tensor2<T> q_a, c_q;          // [N, q_lora_rank] wq_a x and c_Q = q_norm(wq_a x)
  Tensor1<T> q_rstd, kv_rstd;   // [N]
  Tensor2<T> c_kv_pre, c_kv;    // [N, d_c] the c_KV part of wkv_a x, before and after kv_norm
  Tensor2<T> q, k, v;           // [N, H*(d_nope+d_rope)] x2, [N, H*d_v]: what attention sees
  Tensor4<T> probs;             // [B, H, T, T]
  Tensor2<T> o;                 // [N, H*d_v] attention output before wo
};

// Temporaries of forward and backward, kept by the caller between calls (fresh
// buffers would cost a page fault per 4 KiB on every call); they hold nothing.
template <class T> struct MlaScratch {
  Tensor2<T> kv_a, kv_b;                  // [N, d_c + d_rope], [N, H*(d_nope + d_v)]
  Tensor2<T> d_o, dq, dk, dv, d_kv_a, d_kv_b, d_ckv, d_ckv_pre, d_cq, d_qa, d_tmp;
};

// out [N, D] = MLA(x). rope: a.rope_table(max_seq_len, theta) (unused for None).
// scratch: the caller's temporaries, or null for fresh ones.
template <class T>
void mla_forward(Tensor2<T>& out, MlaCache<T>& cache, const Tensor2<T>& x, const MlaWeights<T>& w,
                 const MlaArgs& a, const RopeTable& rope, int batch, int seq_len,
                 const LinearPolicy<T>& linears = {}, MlaScratch<T>* scratch = nullptr);

// dx [N, D] is overwritten; weight gradients are added into g.
template <class T>
void mla_backward(Tensor2<T>& dx, MlaWeights<T>& g, const Tensor2<T>& dout, const MlaCache<T>& c,
                  const MlaWeights<T>& w, const MlaArgs& a, const RopeTable& rope,
                  const LinearPolicy<T>& linears = {}, MlaScratch<T>* scratch = nullptr);

// ---------------------------------------------------------------------------
// Inference, one sequence, one token at a time.
//
// The latent cache keeps per token only c_KV = kv_norm(...) [d_c] and the
// rotated k_R [d_rope]: (d_c + d_rope) numbers per token and layer. W^UK is
// folded into the query (q_C,h^T W^UK_h c_j = (W^UK_h^T q_C,h)^T c_j) and W^UV
// is applied after the attention weights (sum_j p_j W^UV_h c_j = W^UV_h sum_j p_j c_j).
// Not possible for rope = Full, whose keys carry a rotation between W^UK and q.
//
// The naive cache keeps the full keys [H*(d_nope+d_rope)] and values [H*d_v],
// an MHA K/V cache (reference/attention.hpp) that attention_decode reads.
template <class T> struct MlaLatentCache {
  int len = 0;          // tokens cached
  Tensor2<T> kv, pe;    // [max_len, d_c], [max_len, d_rope]
  MlaLatentCache(const MlaArgs& a, int max_len);
};

// k, v: [max_len, H*(d_nope+d_rope)], [max_len, H*d_v]
template <class T> struct MlaNaiveCache : KvCache<T> {
  MlaNaiveCache(const MlaArgs& a, int max_len);
};

// out [D] for the token x [D] at position cache.len; appends it to the cache.
// Throws std::invalid_argument when the cache is full (or, absorbed, for rope = Full).
template <class T>
void mla_decode_absorbed(T* out, const T* x, MlaLatentCache<T>& cache, const MlaWeights<T>& w,
                         const MlaArgs& a, const RopeTable& rope);
template <class T>
void mla_decode_naive(T* out, const T* x, MlaNaiveCache<T>& cache, const MlaWeights<T>& w,
                      const MlaArgs& a, const RopeTable& rope);

}  // namespace dslab
