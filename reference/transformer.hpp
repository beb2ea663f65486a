// The reference decoder-only transformer (pre-norm, as DeepSeek's model.py):
//   x = embed[tokens]
//   for each layer:  x = x + attn(attn_norm(x));  x = x + ffn(ffn_norm(x))
//   logits = head(norm(x));  loss = cross_entropy(logits, targets)
// Attention is causal with RoPE: attn = "mha" gives MHA, GQA or MQA by n_kv_heads;
// attn = "mla" gives Multi-head Latent Attention (reference/mla.hpp) with its own
// head dims and `rope` variant. The FFN is SwiGLU; with n_routed_experts > 0 every
// layer after the first n_dense_layers is a DeepSeekMoE layer (reference/moe.hpp)
// whose balance losses join the objective and whose expert bias the trainer updates.
// With mtp.depth = D > 0, D Multi-Token Prediction modules (reference/mtp.hpp)
// follow the main head, each with its own block, and add lambda/D sum_k L^k_MTP
// to the objective.
// Shapes: N = batch*seq_len tokens, D = dim, H = n_heads, KV = n_kv_heads,
// d = head_dim = dim / n_heads, V = vocab_size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reference/attention.hpp"
#include "reference/ffn.hpp"
#include "reference/fp8_linear.hpp"
#include "reference/mla.hpp"
#include "reference/model_args.hpp"
#include "reference/moe.hpp"
#include "reference/mtp.hpp"
#include "reference/rope.hpp"
#include "reference/tensor.hpp"

namespace dslab {

template <class T> struct BlockParams {
  Tensor1<T> attn_norm;          // [D]
  Tensor2<T> wq, wk, wv, wo;     // attn = "mha": [H*d, D] [KV*d, D] [KV*d, D] [D, H*d]
  MlaWeights<T> mla;             // attn = "mla" (the four above stay empty)
  Tensor1<T> ffn_norm;           // [D]
  FfnWeights<T> ffn;             // dense: w1, w3 [inter_dim, D]; w2 [D, inter_dim]
  MoeParams<T> moe;              // MoE layers (ffn stays empty): gate, experts, shared experts
  Tensor1<T> expert_bias;        // [E] Eq. (24)'s b, selection only, not trained; empty: none
};

// One MTP module of depth k (reference/mtp.hpp): its input projection, its
// own block and the norm before the shared head.
template <class T> struct MtpModuleParams {
  MtpProjWeights<T> proj;  // enorm, hnorm [D]; eh_proj [D, 2D]
  BlockParams<T> block;
  Tensor1<T> norm;         // [D]
};

template <class T> struct TransformerParams {
  Tensor2<T> embed;                     // [V, D]
  std::vector<BlockParams<T>> layers;
  Tensor1<T> norm;                      // [D]
  Tensor2<T> head;                      // [V, D]
  std::vector<MtpModuleParams<T>> mtp;  // depth k = 1..D at index k-1
  TransformerParams() = default;
  explicit TransformerParams(const ModelArgs& args);  // all zeros
  // Every tensor with its DeepSeek-style name, in a fixed order; the MTP
  // modules ("mtp.<k>.enorm.weight", "mtp.<k>.attn.wq.weight", ...) come last.
  std::vector<ParamRef<T>> refs();
  // State that is not trained (the expert biases, "layers.<l>.ffn.gate.bias").
  std::vector<ParamRef<T>> buffers();
};

// What forward keeps for backward, per layer.
template <class T> struct BlockCache {
  Tensor2<T> x_in, attn_in, q, k, v, attn_out, x_mid, ffn_in;
  Tensor1<T> attn_rstd, ffn_rstd;
  Tensor4<T> probs;
  MlaCache<T> mla;
  FfnCache<T> ffn;
  MoeCache<T> moe;
  Tensor2<T> balance_dscores;  // [N, E] d(balance losses) / d s; empty without them
};

template <class T> class Transformer {
 public:
  explicit Transformer(const ModelArgs& args);

  // Normal(0, init_std) matrices, output projections (wo, w2) scaled by
  // 1/sqrt(2 n_layers), unit RMSNorm gains.
  void init_weights(uint64_t seed);

  // tokens, targets: [batch*seq_len], row-major by sequence. Returns the
  // training objective (the sum of loss_parts()) and keeps what backward needs.
  T forward(const std::vector<int>& tokens, const std::vector<int>& targets, int batch,
            int seq_len);
  // The terms of the last forward's objective by name: "main" is the mean
  // cross-entropy of the next-token head; other terms appear when configured
  // ("mtp": lambda/D sum_k L^k_MTP, Eq. (26)).
  const std::map<std::string, double>& loss_parts() const { return loss_parts_; }
  // L^k_MTP of the last forward for k = 1..D (Eq. (25)), at index k-1.
  const std::vector<double>& mtp_losses() const { return mtp_losses_; }
  // Logits [batch*seq_len, V] of the last forward (or of forward_logits).
  const Tensor2<T>& logits() const { return logits_; }
  // Forward without a loss, for sampling.
  const Tensor2<T>& forward_logits(const std::vector<int>& tokens, int batch, int seq_len);
  // Drafting for speculative decoding: after forward_logits() on one sequence,
  // MTP module k (called for k = 1, 2, ... in turn) reads the first P positions
  // of depth k-1's hidden state with tokens = t_{k..k+P-1}, P = tokens.size(),
  // and returns its logits [P, V]; row i predicts t_{i+k+1}.
  const Tensor2<T>& mtp_logits(int k, const std::vector<int>& tokens);
  // Gradients of the last forward's loss, added into `grads`.
  void backward();
  void zero_grad();
  size_t num_parameters();
  // MoE layers: the routing of the last forward (null for a dense layer), its
  // router logits z = x W_g^T [N, E], and Eq. (24)'s bias update from its load.
  const Routing<T>* routing(size_t l) const;
  Tensor2<T> router_logits(size_t l) const;
  void update_expert_bias();

  ModelArgs args;
  TransformerParams<T> params, grads;
  // FP8 inputs for the linear layers inside the blocks (float only; off by default).
  fp8::Recipe fp8_recipe;
  double mtp_lambda;  // lambda of Eq. (26) for the next forward; starts at args.mtp.lambda

 private:
  void forward_hidden(const std::vector<int>& tokens, int batch, int seq_len);
  // One pre-norm block with weights w, keeping what backward needs in c.
  void block_forward(const BlockParams<T>& w, BlockCache<T>& c, const Tensor2<T>& x, Tensor2<T>& y);
  // dx: in = d(output), out = d(input); weight gradients accumulate into g.
  void block_backward(const BlockParams<T>& w, BlockParams<T>& g, BlockCache<T>& c, Tensor2<T>& dx);
  // MTP module k on `positions` positions of each of `batch` sequences, its
  // tokens already in mtp_cache_[k-1].tokens; up to its logits.
  void mtp_module_forward(int k, int batch, int positions);
  // Every module with its loss; returns lambda/D sum_k L^k_MTP.
  T mtp_forward(int batch, int seq_len);
  // dx: in = d(x_final) from the main head, out = the same plus what flows
  // back from the modules through hnorm.
  void mtp_backward(Tensor2<T>& dx);

  RopeTable rope_;  // head_dim wide, or MlaArgs::rope_dim() wide for MLA
  MlaArgs mla_;     // attn = "mla" only
  MoeArgs moe_;     // n_routed_experts > 0 only
  AttentionShape shape_;
  std::vector<int> tokens_, targets_;
  std::vector<BlockCache<T>> cache_;
  Tensor2<T> x_final_, h_final_, logits_, probs_;
  Tensor1<T> final_rstd_, losses_;
  std::map<std::string, double> loss_parts_;
  // What the MTP module of depth k keeps, at index k-1.
  struct MtpCache {
    std::vector<int> tokens, targets;  // t_{i+k} and t_{i+k+1} at its positions
    int positions = 0;                 // per sequence
    MtpProjCache<T> proj;
    BlockCache<T> block;
    Tensor2<T> h, h_norm, logits, probs;  // h^k [N_k, D]
    Tensor1<T> rstd, losses;
  };
  std::vector<MtpCache> mtp_cache_;
  std::vector<double> mtp_losses_;
  // Temporaries of forward and backward, kept from step to step: fresh
  // buffers would cost a page fault per 4 KiB on every step.
  struct Scratch {
    Tensor2<T> x, y, proj, dlogits, dh, dx, d_in, d_norm, d_attn, dq, dk, dv, d_tmp;
    Tensor2<T> mtp_e, mtp_h, mtp_x, mtp_dh, mtp_de, mtp_dprev;
  } scratch_;
};

}  // namespace dslab
