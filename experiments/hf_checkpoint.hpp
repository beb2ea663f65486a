// DeepSeek-V3 checkpoints as Hugging Face stores them: a folder with config.json
// (transformers' DeepseekV3Config) and model.safetensors, or shards listed by
// model.safetensors.index.json, with the published tensor names:
//
//   dslab (model.py)                 Hugging Face
//   embed.weight                     model.embed_tokens.weight
//   layers.<l>.attn_norm.weight      model.layers.<l>.input_layernorm.weight
//   layers.<l>.attn.wq_a / q_norm / wq_b / wq / wkv_a / kv_norm / wkv_b / wo
//                                    model.layers.<l>.self_attn.q_a_proj / q_a_layernorm /
//                                    q_b_proj / q_proj / kv_a_proj_with_mqa / kv_a_layernorm /
//                                    kv_b_proj / o_proj
//   layers.<l>.ffn_norm.weight       model.layers.<l>.post_attention_layernorm.weight
//   layers.<l>.ffn.w1 / w2 / w3      model.layers.<l>.mlp.gate_proj / down_proj / up_proj
//   layers.<l>.ffn.gate.weight       model.layers.<l>.mlp.gate.weight
//   layers.<l>.ffn.gate.bias         model.layers.<l>.mlp.gate.e_score_correction_bias
//   layers.<l>.ffn.experts.<e>.w1    model.layers.<l>.mlp.experts.<e>.gate_proj  (w2, w3 alike)
//   layers.<l>.ffn.shared_experts.*  model.layers.<l>.mlp.shared_experts.*
//   norm.weight, head.weight         model.norm.weight, lm_head.weight
//   mtp.<k>.enorm / hnorm / eh_proj  model.layers.<L+k-1>.enorm / hnorm / eh_proj  (L = n_layers,
//   mtp.<k>.norm                     model.layers.<L+k-1>.shared_head.norm   as V3 stores its MTP
//   mtp.<k>.<block tensor>           model.layers.<L+k-1>.<its HF name>      module; the copies
//                                    of the embedding and the head it also stores,
//                                    model.layers.<L+k-1>.embed_tokens and shared_head.head,
//                                    are written, and checked equal to the shared ones on reading)
//
// Tensors may be F32, F64, BF16, F16, or F8_E4M3 with a "<name>_scale_inv" F32
// tensor of one scale per 128x128 block, which reading multiplies in exactly
// as DeepSeek's inference/kernel.py weight_dequant does (fp32 product of the
// decoded value and its block's scale). Every failure is a BadInput naming the
// file and the tensor or key: exit status 2 from the command line.
#pragma once

#include <string>

#include "experiments/safetensors.hpp"
#include "reference/transformer.hpp"

namespace dslab {

// transformers' DeepseekV3 config.json -> ModelArgs. Keys that change the model
// and that dslab has no counterpart for must hold the value dslab computes
// (e.g. hidden_act "silu", attention_bias false, norm_topk_prob true with the
// sigmoid gate); runtime keys (token ids, torch_dtype, use_cache, ...) are
// ignored; any other key is refused, naming the keys that are read.
ModelArgs model_args_from_hf_config(const std::string& path);
// The config.json of a dslab model; BadInput naming the ModelArgs field when
// the model is one DeepseekV3Config cannot describe (MHA attention, RoPE other
// than decoupled, a softmax gate, capacity dropping).
std::string hf_config_json(const ModelArgs& args);

// The Hugging Face name of a dslab parameter (the table above); n_layers places
// the MTP modules.
std::string hf_name(const std::string& dslab_name, int n_layers);

// Reads a checkpoint folder (or one .safetensors file with its config.json
// beside it) into `model`, whose args must be the checkpoint's
// (model_args_from_hf_config of its config.json). Every parameter and expert
// bias must be there with its shape; a tensor that is not the model's is refused.
template <class T> void read_hf_checkpoint(const std::string& path, Transformer<T>& model);
// The config.json path of a checkpoint folder or file.
std::string hf_config_path(const std::string& path);
// The model a checkpoint folder (or file) holds: its config.json, with the MTP
// modules dropped (mtp.depth = 0) when the files hold none of their tensors, as
// transformers' save_pretrained writes them (it has no MTP module).
ModelArgs hf_checkpoint_args(const std::string& path);

// Writes `dir`/config.json and `dir`/model.safetensors (F32, F64 or BF16), each whole.
template <class T> void write_hf_checkpoint(const std::string& dir, Transformer<T>& model, StDtype dtype);

}  // namespace dslab
