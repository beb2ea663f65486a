// The model's configuration, typed: one struct per technique, nested in
// ModelArgs as DeepSeek's inference/model.py keeps one ModelArgs that every
// module reads. Closed sets are enums, parsed once when a config is read.
//
//   ModelArgs                  dim, n_layers, n_heads, ... (the dense transformer)
//     attn   AttnKind          Mha (also GQA, MQA by n_kv_heads) or Mla
//     mla    MlaArgs           reference/mla.hpp  (q_lora_rank, kv_lora_rank, rope, YaRN, ...)
//     moe    MoeArgs           reference/moe.hpp  (n_routed_experts, score_func, ...);
//                              every layer from n_dense_layers on is MoE when n_routed_experts > 0
//     balance BalanceArgs      reference/moe.hpp  (balance losses, the Eq. (24) bias)
//     mtp    MtpArgs           reference/mtp.hpp  (depth D, lambda)
//     fp8    fp8::Fp8Args      reference/fp8_linear.hpp (the FP8 recipe of the blocks' linears)
// The shared widths (dim, n_heads, norm_eps) live in ModelArgs only; mla_args()
// and moe_args() hand a layer its own struct with them filled in.
//
// ModelArgs::validate() checks every rule of the model, each struct's own
// through its validate(); a broken rule throws ArgsError (reference/args_error.hpp)
// with the run-config key paths it concerns.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

#include "reference/args_error.hpp"
#include "reference/enum_names.hpp"
#include "reference/fp8_linear.hpp"
#include "reference/mla.hpp"
#include "reference/moe.hpp"
#include "reference/mtp.hpp"

namespace dslab {

enum class AttnKind { Mha, Mla };
template <> struct EnumNames<AttnKind> {
  static constexpr std::array<std::string_view, 2> names = {"mha", "mla"};
};

struct ModelArgs {
  int vocab_size = 256;    // byte-level tokens
  int dim = 128;
  int n_layers = 4;
  int n_heads = 4;
  int n_kv_heads = 4;      // MHA: n_heads; MQA: 1; GQA: in between
  int inter_dim = 512;     // SwiGLU hidden width of the dense layers
  int max_seq_len = 256;
  double rope_theta = 10000.0;
  double norm_eps = 1e-6;
  double init_std = 0.02;
  AttnKind attn = AttnKind::Mha;
  MlaArgs mla{.q_lora_rank = 0, .kv_lora_rank = 64, .qk_nope_head_dim = 32,
              .qk_rope_head_dim = 16, .v_head_dim = 32};
  MoeArgs moe{.moe_inter_dim = 128, .n_routed_experts = 0, .n_shared_experts = 1,
              .n_activated_experts = 2};
  int n_dense_layers = 1;  // MoE models: the first layers keep a dense FFN of inter_dim
  BalanceArgs balance;
  MtpArgs mtp;             // Multi-Token Prediction: depth 0 = off
  fp8::Fp8Args fp8;        // FP8 GEMM inputs for the blocks' linear layers: recipe None = off

  int head_dim() const { return dim / n_heads; }  // MHA
  bool is_moe_layer(size_t l) const { return moe.n_routed_experts > 0 && l >= size_t(n_dense_layers); }
  bool has_expert_bias() const { return balance.bias_update != BiasUpdate::None; }
  // The layer structs with the model's shared widths filled in.
  MlaArgs mla_args() const;
  MoeArgs moe_args() const;
  // The model's rules, in this order: its own widths; the attention's (MLA's
  // through MlaArgs::validate, MHA's here: dim % n_heads, n_heads % n_kv_heads,
  // even head_dim); MoE's (validate(MoeArgs), n_dense_layers < n_layers) and
  // the balance's (needs MoE layers; n_devices <= n_routed_experts;
  // BalanceArgs::validate); mtp.validate(); fp8.validate(). Throws ArgsError.
  void validate() const;
};

}  // namespace dslab
