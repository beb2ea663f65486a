// One pre-norm transformer block, assembled as DeepSeek's model.py Block:
//   x_mid = x + attn(attn_norm(x))          attn: MHA/GQA/MQA (reference/mha.hpp) or MLA (reference/mla.hpp)
//   y     = x_mid + ffn(ffn_norm(x_mid))    ffn:  dense SwiGLU (reference/ffn.hpp) or DeepSeekMoE
//                                                 (reference/moe.hpp; Eq. (18): the residual is added here)
// The attention is chosen by ModelArgs::attn, the FFN by the layer index (MoE
// from n_dense_layers on when n_routed_experts > 0), each held as a
// std::variant of its parts. x, y: [N, D], N = batch*seq_len.
//
// The block's linear layers take the model's FP8 recipe (if any) and the
// weight-gradient queue of a split backward through BlockContext and the
// `defer` argument: nothing is read from hidden state. The MoE gate stays in
// full precision.
#pragma once

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "reference/ffn.hpp"
#include "reference/linear.hpp"
#include "reference/mha.hpp"
#include "reference/mla.hpp"
#include "reference/moe.hpp"
#include "reference/rope.hpp"
#include "reference/tensor.hpp"

namespace dslab {

struct ModelArgs;  // reference/model_args.hpp

template <class T> struct BlockParams {
  Tensor1<T> attn_norm;                               // [D]
  std::variant<MhaWeights<T>, MlaWeights<T>> attn;
  Tensor1<T> ffn_norm;                                // [D]
  std::variant<FfnWeights<T>, MoeParams<T>> ffn;      // dense: w1, w3 [inter_dim, D], w2 [D, inter_dim]
  BlockParams() = default;
  BlockParams(const ModelArgs& a, bool moe);          // zeros; an MoE FFN when `moe`
  // Its trained tensors named after `prefix` ("layers.0.", "mtp.1."): attn_norm,
  // attn.*, ffn_norm, ffn.*; and the untrained expert bias, "ffn.gate.bias", if any.
  void append_refs(std::vector<ParamRef<T>>& refs, const std::string& prefix);
  void append_buffers(std::vector<ParamRef<T>>& refs, const std::string& prefix);
  MoeParams<T>* moe() { return std::get_if<MoeParams<T>>(&ffn); }  // null: dense
  const MoeParams<T>* moe() const { return std::get_if<MoeParams<T>>(&ffn); }
};

// What forward keeps for backward.
template <class T> struct BlockCache {
  int batch = 0, seq_len = 0;
  Tensor2<T> x_in, attn_in, x_mid, ffn_in;   // [N, D]
  Tensor1<T> attn_rstd, ffn_rstd;            // [N]
  std::variant<MhaCache<T>, MlaCache<T>> attn;
  std::variant<FfnCache<T>, MoeCache<T>> ffn;
  Tensor2<T> balance_dscores;                // [N, E] d(balance losses)/d s; empty without them
  const Routing<T>* routing() const {        // MoE: the last forward's routing; dense: null
    const MoeCache<T>* m = std::get_if<MoeCache<T>>(&ffn);
    return m ? &m->routing : nullptr;
  }
};

// The model-wide inputs of every block.
template <class T> struct BlockContext {
  double norm_eps = 1e-6;
  MhaArgs mha;
  MlaArgs mla;
  MoeArgs moe;
  const RopeTable* rope = nullptr;    // head_dim wide (MHA) or MlaArgs::rope_dim() wide
  const fp8::Recipe* fp8 = nullptr;   // the blocks' linears in FP8 (float only); null: off
  explicit BlockContext(const ModelArgs& a, const RopeTable& table, const fp8::Recipe* recipe);
};

// Temporaries kept by the caller between calls.
template <class T> struct BlockScratch {
  Tensor2<T> proj, d_in, d_norm;
  MhaScratch<T> mha;
  MlaScratch<T> mla;
  FfnScratch<T> ffn;
};

template <class T>
void block_forward(Tensor2<T>& y, BlockCache<T>& c, const Tensor2<T>& x, const BlockParams<T>& w,
                   const BlockContext<T>& ctx, int batch, int seq_len, BlockScratch<T>& s);

// MoE blocks: every balance loss of `b` on the last forward's routing (tokens in
// sequences of c.seq_len); their values add into `parts` ("aux", "seq_aux",
// "device", "comm"), their d/ds goes to c.balance_dscores for the backward.
template <class T> void block_balance_losses(std::map<std::string, double>& parts, BlockCache<T>& c,
                                             const BalanceArgs& b);

// dx: in d(y), out d(x). Weight gradients accumulate into g: at once, or, with
// `defer`, the linear layers' dW GEMMs wait in the queue (the W pass of a
// split backward; the RMSNorm gains are added at once).
template <class T>
void block_backward(Tensor2<T>& dx, BlockParams<T>& g, BlockCache<T>& c, const BlockParams<T>& w,
                    const BlockContext<T>& ctx, BlockScratch<T>& s, WeightGradQueue<T>* defer = nullptr);

}  // namespace dslab
