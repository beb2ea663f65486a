// Accounting of a model by closed form from its ModelArgs: how many parameters
// it has and how many of them one token multiplies by, how many numbers each
// token leaves in the KV cache while decoding, and the FLOPs of one token.
// Nothing here allocates a tensor; tests/test_accounting.cpp checks every
// count against the tensors of the reference Transformer and against the
// totals DeepSeek published. `dslab info` prints them. Equation numbers are
// the review's (seeds/001).
//
// What is counted
// - A parameter is one element of a weight tensor: matrices, RMSNorm gains
//   and, where the model has it, the per-expert selection bias b_i of
//   Eq. (24) (float32 in V3's gate; it is not trained by gradients, so
//   Transformer::params keeps it in buffers(), not in refs()).
// - Activated parameters: those one token multiplies by in the main model.
//   Everything but the embedding table (a lookup, not a product) and the
//   routed experts the token is not sent to: of the n_routed_experts routed
//   experts of an MoE layer it visits n_activated_experts (Eq. (19)). The
//   MTP modules serve training and drafting only and are not activated.
// - Layer l is an MoE layer when n_routed_experts > 0 and l >= n_dense_layers
//   (ModelArgs::is_moe_layer); the others keep a dense SwiGLU FFN of
//   inter_dim. An MTP module's block is an MoE block when the model has
//   routed experts, as V3's is.
// - Attention: attn = Mha is MHA, GQA or MQA by n_kv_heads, with
//   d_h = dim / n_heads; attn = Mla uses the widths of ModelArgs::mla.
// - FLOPs: 2 per multiply-add.
// - RL training memory: bytes of the models' weights, gradients and optimizer
//   states, per model, for PPO and GRPO (Sec. 2.5, Fig. 5); no activations,
//   KV caches of the rollouts or communication buffers.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "reference/enum_names.hpp"
#include "reference/model_args.hpp"

namespace dslab {

// ---------------------------------------------------------------------------
// Parameters

// A model's parameters by where they sit; the names are those `dslab info` prints.
struct ParamCounts {
  int64_t embedding = 0;           // the table [V, D]
  int64_t attention = 0;           // the attention matrices of every layer
  int64_t dense_ffn = 0;           // w1, w2, w3 of the dense layers
  int64_t moe_routed_experts = 0;  // the routed experts of every MoE layer, Eq. (18)
  int64_t moe_shared_experts = 0;  // the K_s shared experts of every MoE layer, Eq. (18)
  int64_t moe_gate = 0;            // the expert centroids e_i (Eq. (20)) and biases b_i (Eq. (24))
  int64_t norms = 0;               // RMSNorm gains: attn_norm, ffn_norm, q_norm, kv_norm, the final norm
  int64_t head = 0;                // the output head [V, D]
  int64_t mtp = 0;                 // the MTP modules, Sec. 2.3
  int64_t total() const;
};

// All parameters of the model: main model and MTP modules.
ParamCounts total_params(const ModelArgs& m);
// The parameters one token multiplies by in the main model (see the top of this file).
ParamCounts activated_params(const ModelArgs& m);

// The layers whose FFN is DeepSeekMoE, and those with a dense SwiGLU FFN.
int64_t n_moe_layers(const ModelArgs& m);
int64_t n_dense_ffn_layers(const ModelArgs& m);

// One SwiGLU FFN of `hidden` units on a width-`dim` stream: w1 and w3
// [hidden, dim], w2 [dim, hidden], 3 dim hidden. A dense layer's FFN has
// hidden = inter_dim, every expert, routed or shared, hidden = moe_inter_dim.
int64_t swiglu_params(int64_t dim, int64_t hidden);

// One attention layer: its matrices, and the RMSNorm gains inside it (MLA's
// q_norm and kv_norm; none for MHA). Per layer, D = dim, H = n_heads:
//   MHA/GQA/MQA  W^Q, W^O [H d_h, D] and W^K, W^V [n_kv_heads d_h, D], Eq. (1)-(5):
//                2 D H d_h + 2 D n_kv_heads d_h
//   MLA          W^DQ [d'_c, D] (Eq. (8)), W^UQ and W^QR [H (d_h + d_h^R), d'_c] (Eq. (9), (12)),
//                or one W^Q [H (d_h + d_h^R), D] when q_lora_rank d'_c = 0 (V2-Lite);
//                W^DKV and W^KR stacked [d_c + d_h^R, D] (c_KV of Sec. 2.1.2, Eq. (13));
//                W^UK and W^UV [H (d_h + d_v), d_c] (Eq. (6)-(7)); W^O [D, H d_v] (Eq. (17));
//                gains q_norm [d'_c] and kv_norm [d_c].
// Here d_h = qk_nope_head_dim, d_h^R = qk_rope_head_dim, d_v = v_head_dim, d_c = kv_lora_rank.
struct AttentionParams {
  int64_t matrices = 0, norms = 0;
};
AttentionParams attention_params(const ModelArgs& m);

// The gate of one MoE layer: the centroids e_i [n_routed_experts, D] of
// Eq. (20), plus the bias b_i of Eq. (24) when the model keeps one
// (ModelArgs::has_expert_bias).
int64_t moe_gate_params(const ModelArgs& m);

// One MTP module (reference/mtp.hpp): enorm and hnorm [D], M_k = eh_proj
// [D, 2D], its transformer block (attention, attn_norm, ffn_norm, and an MoE
// FFN with all its experts and gate, or the dense FFN) and its norm [D]; the
// embedding and the head are the main model's and are not counted again.
int64_t mtp_module_params(const ModelArgs& m);

// ---------------------------------------------------------------------------
// KV cache: numbers kept per token and layer while decoding one token at a time

// How one query token attends to the cached context.
//   Naive            keys and values per head, as computed in training
//                    (MHA/GQA/MQA; MLA's "naive" path of model.py)
//   Absorbed         MLA from its latent cache: W^UK folded into the query,
//                    W^UV applied after the attention weights (Sec. 2.1.2)
//   LatentRecompute  MLA with rope = Full from the latent cache: RoPE sits
//                    between W^UK and the query (Eq. (10)-(11)), so every step
//                    recomputes k^C = W^UK c_KV for every cached token
enum class DecodePath { Naive, Absorbed, LatentRecompute };

// The path the reference decodes with: Absorbed for MLA with decoupled or no
// RoPE, Naive for MLA with full RoPE and for MHA/GQA/MQA.
DecodePath decode_path(const ModelArgs& m);

// Per token and layer, the cache of `path`:
//   Naive, MHA/GQA/MQA   k and v of every key/value head: 2 n_kv_heads d_h
//                        (Sec. 2.1.1: 2 n_h d_h for MHA)
//   Naive, MLA           H (d_h + d_h^R) keys and H d_v values
//   Absorbed, LatentRecompute
//                        c_KV [d_c] and the one shared, rotated k^R [d_h^R]:
//                        d_c + d_h^R (Sec. 2.1.3, after Eq. (17); Eq. (13))
int64_t kv_cache_per_layer(const ModelArgs& m, DecodePath path);
// The cache of the path the reference decodes with, per token and layer, and
// per token over all layers (n_layers times as much). DeepSeek-V3:
// (512 + 64) x 61 = 35,136 numbers per token.
int64_t kv_cache_per_layer(const ModelArgs& m);
int64_t kv_cache_per_token(const ModelArgs& m);

// The per-head width d_h that the review's cache comparisons use: dim / n_heads
// for MHA, qk_nope_head_dim for MLA (so DeepSeek-V2's d_c = 4 d_h, d_h^R = d_h / 2,
// and its latent cache is 9/2 d_h per layer, Sec. 2.1.3).
int64_t attention_head_dim(const ModelArgs& m);
// What a multi-head attention with n_kv_heads key/value heads of width head_dim
// caches per token and layer: 2 n_kv_heads head_dim. MHA has n_kv_heads =
// n_heads (2 n_h d_h, Sec. 2.1.1), GQA a group count, MQA 1.
int64_t mha_cache_per_layer(int64_t n_kv_heads, int64_t head_dim);

// ---------------------------------------------------------------------------
// FLOPs per token

// The weight matrices one token multiplies by: 2 per activated matrix
// parameter, the activated parameters less the RMSNorm gains and less the
// expert biases (n_routed_experts per MoE layer, when the model has them:
// ModelArgs::has_expert_bias), which only shift the routing choice.
double weight_flops_per_token(const ModelArgs& m);

// Attention of one query token over a context of C positions, one layer, all heads:
//   Naive     scores q_i^T k_j (d_qk each) and the sum of p_j v_j (d_v each), Eq. (4) or (16):
//             2 H (d_qk + d_v) C; MHA/GQA/MQA have d_qk = d_v = d_h
//   Absorbed  scores against [c_KV; k^R] (d_c + d_h^R each) and the sum of p_j c_KV_j (d_c each):
//             2 H (d_c + d_h^R) C + 2 H d_c C
double naive_attention_flops(const ModelArgs& m, double context);
double absorbed_attention_flops(const ModelArgs& m, double context);
// LatentRecompute's extra work, one layer: k^C = W^UK c_KV for every head and
// cached token, 2 H d_h d_c C.
double key_recompute_flops(const ModelArgs& m, double context);

// One token decoded at context C along `path`: the weights, then every
// layer's attention over C positions.
double decode_flops_per_token(const ModelArgs& m, double context, DecodePath path);
// One token of a prefill of C tokens, averaged over the causal sequence:
// token t attends t positions, (C + 1) / 2 on average, along the naive path.
double prefill_flops_per_token(const ModelArgs& m, double context);

// ---------------------------------------------------------------------------
// RL training memory (Sec. 2.5, Eq. (27)-(28), Fig. 5; DeepSeekMath Sec. 4.1)
//
// The models each algorithm keeps, with P = total_params(m).total():
//   PPO   policy (trained), reference (frozen), value model (trained: Eq. (27)'s
//         A_t comes from GAE over a learned value), reward model (frozen)
//   GRPO  policy (trained), reference (frozen), reward model (frozen); the
//         group baseline of Eq. (28) replaces the value model
// A trained model of N parameters holds N (weight + gradient + optimizer)
// bytes, a frozen one N frozen_bytes. So
//   GRPO = P (w + g + o) + P f + R f
//   PPO  = GRPO + N_v (w + g + o)
// with N_v = P (a value model of the policy's size, DeepSeekMath's PPO) or
// D + 1 (a scalar head [1, D] and its bias on the policy's last hidden state),
// and R = P (a reward model of the policy's size, DeepSeekMath) or 0
// (rule-based rewards, R1-Zero and R1's reasoning RL, Sec. 2.6).
// Counted as the policy: a value model "of the policy's size" is P exactly
// (a critic built from the policy swaps its head [V, D] for [1, D] + 1, which
// is V D - D - 1 fewer: 0.14% of V3); MTP modules, when the model has them,
// are in P like every other parameter.
enum class RlAlgorithm { Ppo, Grpo };
template <> struct EnumNames<RlAlgorithm> {
  static constexpr std::array<std::string_view, 2> names = {"ppo", "grpo"};
};

// The value model of PPO: as large as the policy, or a scalar head only.
enum class ValueModel { Policy, Head };
template <> struct EnumNames<ValueModel> {
  static constexpr std::array<std::string_view, 2> names = {"policy", "head"};
};

// The reward model: as large as the policy, or none (rule-based rewards).
enum class RewardModel { Policy, RuleBased };
template <> struct EnumNames<RewardModel> {
  static constexpr std::array<std::string_view, 2> names = {"policy", "rule_based"};
};

// Bytes per parameter. The defaults are mixed-precision AdamW (Micikevicius et
// al. 2018; ZeRO's 16 bytes per parameter, Rajbhandari et al. 2020): BF16
// weights 2 and gradients 2, and the optimizer's FP32 master copy 4 + first
// moment m 4 + second moment v 4 = 12; frozen models in BF16; DeepSeekMath's
// PPO (value and reward models of the policy's size).
struct RlMemoryArgs {
  int weight_bytes = 2;     // the working weights of a trained model
  int gradient_bytes = 2;   // its gradients
  int optimizer_bytes = 12; // its optimizer states (AdamW: master copy, m, v)
  int frozen_bytes = 2;     // the weights of the frozen models: reference and reward
  ValueModel value_model = ValueModel::Policy;
  RewardModel reward_model = RewardModel::Policy;

  // DeepSeek-V3's training precision (V3 report Sec. 3.3, Fig. 6; FACTS.md "FP8
  // training"): BF16 weights (cast to FP8 for the GEMMs) 2, FP32 gradients 4,
  // and the optimizer's FP32 master weights 4 with AdamW's m and v in BF16,
  // 2 + 2: 8. 14 bytes per trained parameter against the defaults' 16.
  static RlMemoryArgs deepseek_v3();

  // Throws ArgsError (keys "rl_memory.weight_bytes", ...) unless weight_bytes,
  // gradient_bytes and frozen_bytes are >= 1 and optimizer_bytes >= 0 (0: SGD
  // without momentum), each at most 64.
  void validate() const;
};

// Bytes of each model's part; a part the algorithm does not keep is 0.
struct RlMemory {
  int64_t policy_weights = 0, policy_gradients = 0, policy_optimizer = 0;
  int64_t reference_weights = 0;
  int64_t value_weights = 0, value_gradients = 0, value_optimizer = 0;
  int64_t reward_weights = 0;
  int64_t total = 0;  // the sum of the parts above
};

// The parameters of PPO's value model under `value` (see above): P or D + 1.
int64_t value_model_params(const ModelArgs& m, ValueModel value);
// The parameters of the reward model under `reward`: P or 0.
int64_t reward_model_params(const ModelArgs& m, RewardModel reward);

// The training memory of `algo` for the policy `m` (the formula above);
// validates `a`.
RlMemory rl_training_memory(const ModelArgs& m, RlAlgorithm algo, const RlMemoryArgs& a = {});

}  // namespace dslab
