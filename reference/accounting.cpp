#include "reference/accounting.hpp"

#include <string>

#include "reference/args_error.hpp"

namespace dslab {

int64_t ParamCounts::total() const {
  return embedding + attention + dense_ffn + moe_routed_experts + moe_shared_experts + moe_gate +
         norms + head + mtp;
}

// ---------------------------------------------------------------------------
// Parameters

int64_t n_moe_layers(const ModelArgs& m) {
  int64_t n = 0;
  for (int l = 0; l < m.n_layers; ++l) n += m.is_moe_layer(size_t(l)) ? 1 : 0;
  return n;
}

int64_t n_dense_ffn_layers(const ModelArgs& m) { return m.n_layers - n_moe_layers(m); }

int64_t swiglu_params(int64_t dim, int64_t hidden) { return 3 * dim * hidden; }

AttentionParams attention_params(const ModelArgs& m) {
  const int64_t D = m.dim, H = m.n_heads;
  if (m.attn == AttnKind::Mha) {
    const int64_t d_h = m.head_dim(), n_kv = m.n_kv_heads;
    return {D * H * d_h * 2 + D * n_kv * d_h * 2, 0};  // W^Q, W^O; W^K, W^V
  }
  const MlaArgs& a = m.mla;
  const int64_t rq = a.q_lora_rank, dc = a.kv_lora_rank, d_nope = a.qk_nope_head_dim,
                d_rope = a.qk_rope_head_dim, d_v = a.v_head_dim, d_qk = d_nope + d_rope;
  AttentionParams p;
  p.matrices = rq > 0 ? D * rq + rq * H * d_qk  // wq_a (W^DQ), wq_b (W^UQ with W^QR)
                      : D * H * d_qk;           // wq
  p.matrices += D * (dc + d_rope);              // wkv_a: W^DKV with W^KR
  p.matrices += dc * H * (d_nope + d_v);        // wkv_b: W^UK with W^UV
  p.matrices += H * d_v * D;                    // wo: W^O
  p.norms = (rq > 0 ? rq : 0) + dc;             // q_norm, kv_norm
  return p;
}

int64_t moe_gate_params(const ModelArgs& m) {
  const int64_t E = m.moe.n_routed_experts;
  return E * (int64_t(m.dim) + (m.has_expert_bias() ? 1 : 0));
}

namespace {

// The FFN of one MoE layer with every expert: routed, shared and the gate.
int64_t moe_ffn_params(const ModelArgs& m) {
  const int64_t expert = swiglu_params(m.dim, m.moe.moe_inter_dim);
  return (int64_t(m.moe.n_routed_experts) + m.moe.n_shared_experts) * expert + moe_gate_params(m);
}

}  // namespace

int64_t mtp_module_params(const ModelArgs& m) {
  const int64_t D = m.dim;
  const AttentionParams attn = attention_params(m);
  const int64_t ffn =
      m.moe.n_routed_experts > 0 ? moe_ffn_params(m) : swiglu_params(D, m.inter_dim);
  return 2 * D + 2 * D * D             // enorm, hnorm; eh_proj
         + attn.matrices + 2 * D + attn.norms + ffn  // the block: attention, attn_norm, ffn_norm
         + D;                          // norm
}

namespace {

ParamCounts count_params(const ModelArgs& m, bool activated) {
  ParamCounts c;
  const int64_t V = m.vocab_size, D = m.dim, L = m.n_layers, moe_layers = n_moe_layers(m);
  const AttentionParams attn = attention_params(m);
  c.embedding = activated ? 0 : V * D;
  c.attention = L * attn.matrices;
  c.dense_ffn = n_dense_ffn_layers(m) * swiglu_params(D, m.inter_dim);
  const int64_t expert = swiglu_params(D, m.moe.moe_inter_dim);
  const int64_t routed = activated ? m.moe.n_activated_experts : m.moe.n_routed_experts;
  c.moe_routed_experts = moe_layers * routed * expert;
  c.moe_shared_experts = moe_layers * m.moe.n_shared_experts * expert;
  c.moe_gate = moe_layers * moe_gate_params(m);
  c.norms = L * (2 * D + attn.norms) + D;  // attn_norm, ffn_norm (+ q_norm, kv_norm) per layer; norm
  c.head = V * D;
  c.mtp = activated ? 0 : m.mtp.depth * mtp_module_params(m);
  return c;
}

}  // namespace

ParamCounts total_params(const ModelArgs& m) { return count_params(m, false); }
ParamCounts activated_params(const ModelArgs& m) { return count_params(m, true); }

// ---------------------------------------------------------------------------
// KV cache

DecodePath decode_path(const ModelArgs& m) {
  if (m.attn == AttnKind::Mha || m.mla.rope == MlaRope::Full) return DecodePath::Naive;
  return DecodePath::Absorbed;
}

int64_t kv_cache_per_layer(const ModelArgs& m, DecodePath path) {
  if (m.attn == AttnKind::Mha) return mha_cache_per_layer(m.n_kv_heads, m.head_dim());
  const MlaArgs& a = m.mla;
  if (path == DecodePath::Naive)
    return int64_t(m.n_heads) * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim);
  return int64_t(a.kv_lora_rank) + a.qk_rope_head_dim;  // c_KV, k^R
}

int64_t kv_cache_per_layer(const ModelArgs& m) { return kv_cache_per_layer(m, decode_path(m)); }

int64_t kv_cache_per_token(const ModelArgs& m) { return m.n_layers * kv_cache_per_layer(m); }

int64_t attention_head_dim(const ModelArgs& m) {
  return m.attn == AttnKind::Mla ? m.mla.qk_nope_head_dim : m.head_dim();
}

int64_t mha_cache_per_layer(int64_t n_kv_heads, int64_t head_dim) { return 2 * n_kv_heads * head_dim; }

// ---------------------------------------------------------------------------
// FLOPs

double weight_flops_per_token(const ModelArgs& m) {
  const ParamCounts act = activated_params(m);
  // The expert biases (counted in activated_params when the model has them) only
  // shift the routing choice (Eq. (16)): no multiply-add per token.
  const int64_t gate_biases = m.has_expert_bias() ? n_moe_layers(m) * m.moe.n_routed_experts : 0;
  return 2.0 * double(act.total() - act.norms - gate_biases);
}

double naive_attention_flops(const ModelArgs& m, double C) {
  const int64_t H = m.n_heads;
  if (m.attn == AttnKind::Mha) return 2.0 * H * 2 * m.head_dim() * C;
  const MlaArgs& a = m.mla;
  return 2.0 * H * (a.qk_head_dim() + a.v_head_dim) * C;
}

double absorbed_attention_flops(const ModelArgs& m, double C) {
  const int64_t H = m.n_heads, dc = m.mla.kv_lora_rank;
  return 2.0 * H * (dc + m.mla.qk_rope_head_dim) * C + 2.0 * H * dc * C;
}

double key_recompute_flops(const ModelArgs& m, double C) {
  return 2.0 * m.n_heads * m.mla.qk_nope_head_dim * m.mla.kv_lora_rank * C;
}

double decode_flops_per_token(const ModelArgs& m, double C, DecodePath path) {
  const int64_t L = m.n_layers;
  const double weights = weight_flops_per_token(m);
  switch (path) {
    case DecodePath::Naive: return weights + L * naive_attention_flops(m, C);
    case DecodePath::Absorbed: return weights + L * absorbed_attention_flops(m, C);
    case DecodePath::LatentRecompute:
      return weights + L * (absorbed_attention_flops(m, C) + key_recompute_flops(m, C));
  }
  return 0;
}

double prefill_flops_per_token(const ModelArgs& m, double C) {
  return weight_flops_per_token(m) + m.n_layers * naive_attention_flops(m, (C + 1) / 2);
}

// ---------------------------------------------------------------------------
// RL training memory

RlMemoryArgs RlMemoryArgs::deepseek_v3() {
  RlMemoryArgs a;
  a.weight_bytes = 2;         // BF16 weights
  a.gradient_bytes = 4;       // FP32 gradients
  a.optimizer_bytes = 4 + 2 + 2;  // FP32 master weights; BF16 m and v
  a.frozen_bytes = 2;
  return a;
}

void RlMemoryArgs::validate() const {
  const auto check = [](int bytes, int lowest, const char* key) {
    require(bytes >= lowest && bytes <= 64, {std::string("rl_memory.") + key},
            std::string("rl_memory.") + key + " = " + value_text(bytes) + " must be in [" +
                value_text(lowest) + ", 64] bytes per parameter");
  };
  check(weight_bytes, 1, "weight_bytes");
  check(gradient_bytes, 1, "gradient_bytes");
  check(optimizer_bytes, 0, "optimizer_bytes");
  check(frozen_bytes, 1, "frozen_bytes");
}

int64_t value_model_params(const ModelArgs& m, ValueModel value) {
  return value == ValueModel::Policy ? total_params(m).total()
                                     : int64_t(m.dim) + 1;  // [1, D] and its bias
}

int64_t reward_model_params(const ModelArgs& m, RewardModel reward) {
  return reward == RewardModel::Policy ? total_params(m).total() : 0;
}

RlMemory rl_training_memory(const ModelArgs& m, RlAlgorithm algo, const RlMemoryArgs& a) {
  a.validate();
  const int64_t P = total_params(m).total();
  RlMemory r;
  // Trained in both: the policy pi_theta of Eq. (27)-(28).
  r.policy_weights = P * a.weight_bytes;
  r.policy_gradients = P * a.gradient_bytes;
  r.policy_optimizer = P * a.optimizer_bytes;
  // Frozen in both: pi_ref of the KL term and the reward model (Fig. 5).
  r.reference_weights = P * a.frozen_bytes;
  r.reward_weights = reward_model_params(m, a.reward_model) * a.frozen_bytes;
  // Trained in PPO only: the value model behind A_t of Eq. (27).
  if (algo == RlAlgorithm::Ppo) {
    const int64_t Nv = value_model_params(m, a.value_model);
    r.value_weights = Nv * a.weight_bytes;
    r.value_gradients = Nv * a.gradient_bytes;
    r.value_optimizer = Nv * a.optimizer_bytes;
  }
  r.total = r.policy_weights + r.policy_gradients + r.policy_optimizer + r.reference_weights +
            r.value_weights + r.value_gradients + r.value_optimizer + r.reward_weights;
  return r;
}

}  // namespace dslab
