// DeepSeek's published model configs read into dslab's ModelArgs.
//
// The file is one of the DeepSeek-V3 repository's inference/configs/*.json
// (config_16B.json for V2-Lite, config_236B.json for V2, config_671B.json for
// V3): a JSON object of inference/model.py's ModelArgs keys, read as model.py
// reads it (ModelArgs(**json.load(f))): a missing key takes model.py's
// default, so "{}" is the 16B model; an unknown key is an error. Hugging Face's
// config.json (hidden_size, num_hidden_layers, rope_scaling, ...) is a
// different file and is refused with the keys that are allowed.
//
// Every key, and where it goes:
//   vocab_size dim inter_dim n_layers n_dense_layers n_heads max_seq_len rope_theta
//                                           ModelArgs (attn = Mla, n_kv_heads = n_heads)
//   moe_inter_dim n_routed_experts n_shared_experts n_activated_experts
//   n_expert_groups n_limited_groups score_func route_scale
//                                           ModelArgs::moe; a sigmoid gate (V3) also gets
//                                           Eq. (24)'s expert bias (balance.bias_update = Sign)
//   q_lora_rank kv_lora_rank qk_nope_head_dim qk_rope_head_dim v_head_dim
//                                           ModelArgs::mla (rope = Decoupled)
//   rope_factor mscale                      ModelArgs::mla, YaRN's softmax-scale factor
//                                           (in effect when max_seq_len > original_seq_len)
//   original_seq_len                        decides whether YaRN is in effect
//   beta_fast beta_slow                     YaRN's RoPE frequency correction: checked, not
//                                           held (see model_args_from_deepseek_json)
//   max_batch_size dtype scale_fmt          generate.py's runtime settings (batch, FP8 or
//                                           BF16 weights, scale format): not the model's
// The inference configs have no Multi-Token Prediction key (model.py builds
// no MTP module), so mtp.depth stays 0.
#pragma once

#include <string>

#include "reference/model_args.hpp"

namespace dslab {

// Throws BadInput (experiments/commands.hpp) naming the file and the key.
ModelArgs model_args_from_deepseek_json(const std::string& path);

}  // namespace dslab
