// The reference decoder-only transformer (pre-norm, as DeepSeek's model.py):
//   x = embed[tokens]
//   for each layer:  x = block_l(x)        (reference/block.hpp: attention + FFN or MoE)
//   logits = head(norm(x));  loss = cross_entropy(logits, targets)
// plus, configured: the MoE layers' balance losses (reference/moe.hpp) and the
// D Multi-Token Prediction modules after the main head (reference/mtp.hpp),
// whose terms join the objective.
//
// Memory: every parameter lives in one contiguous buffer (params.arena()),
// every gradient in another of the same layout (grads.arena()); the named
// tensors are views into them. A model copies as a whole (a frozen reference
// policy is `Transformer<T> ref = policy;`).
//
// Stage API: what one forward keeps for its backward is an Activations object
// the caller owns, so a pipeline stage can keep several micro-batches in flight
// and run any contiguous range of layers:
//   embed_forward -> layers_forward(first, last) ... -> head_forward -> loss_forward
//   loss_backward -> head_backward -> layers_backward(first, last) ... -> embed_backward
// layers_backward with a WeightGradQueue is the zero-bubble B pass (input
// gradients only); queue.run() is its W pass (the weight gradients). B then W
// gives bitwise the gradients of the whole backward. forward()/backward() run
// every stage on the model's own Activations.
// Shapes: N = batch*seq_len tokens, D = dim, V = vocab_size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reference/block.hpp"
#include "reference/fp8_linear.hpp"
#include "reference/model_args.hpp"
#include "reference/mtp.hpp"
#include "reference/rope.hpp"
#include "reference/tensor.hpp"

namespace dslab {

template <class T> struct TransformerParams {
  Tensor2<T> embed;                     // [V, D]
  std::vector<BlockParams<T>> layers;
  Tensor1<T> norm;                      // [D]
  Tensor2<T> head;                      // [V, D]
  std::vector<MtpModuleParams<T>> mtp;  // depth k = 1..D at index k-1

  TransformerParams() = default;
  explicit TransformerParams(const ModelArgs& args);  // all zeros, in one arena
  TransformerParams(const TransformerParams& other);  // a copy in an arena of its own
  TransformerParams(TransformerParams&&) = default;
  TransformerParams& operator=(const TransformerParams&) = delete;
  TransformerParams& operator=(TransformerParams&&) = delete;

  // Every trained tensor with its DeepSeek-style name, in a fixed order (the
  // arena's); the MTP modules ("mtp.<k>.enorm.weight", ...) come last.
  std::vector<ParamRef<T>> refs();
  // State that is not trained (the expert biases, "layers.<l>.ffn.gate.bias").
  std::vector<ParamRef<T>> buffers();
  // The buffer behind refs(): slice i is refs()[i].
  Arena<T>& arena() { return arena_; }
  const Arena<T>& arena() const { return arena_; }

 private:
  Arena<T> arena_;
};

// What one forward keeps for its backward.
template <class T> struct Activations {
  int batch = 0, seq_len = 0;
  std::vector<int> tokens, targets;     // [N]; targets empty without a loss
  std::vector<BlockCache<T>> layers;    // [n_layers]; a stage fills its own range
  Tensor2<T> x_final, h_final, logits;  // [N, D] last block's output, norm(x_final), [N, V]
  Tensor1<T> final_rstd;
  Tensor2<T> probs;                     // [N, V] softmax(logits), from loss_forward
  Tensor1<T> losses;                    // [N] per-token cross-entropy
  std::vector<MtpModuleCache<T>> mtp;   // depth k at k-1
  // The objective's terms by name: "main" (mean next-token cross-entropy),
  // "aux", "seq_aux", "device", "comm" (balance losses), "mtp" (Eq. (26)).
  std::map<std::string, double> loss_parts;
  std::vector<double> mtp_losses;       // L^k_MTP (Eq. (25)) at k-1
  double mtp_lambda = 0;                // lambda the last loss_forward used
};

template <class T> class Transformer {
 public:
  explicit Transformer(const ModelArgs& args);
  Transformer(const Transformer&) = default;  // parameters, gradients and activations copied
  Transformer& operator=(const Transformer&) = delete;

  // Normal(0, init_std) matrices, output projections (wo, w2) scaled by
  // 1/sqrt(2 n_layers), unit RMSNorm gains.
  void init_weights(uint64_t seed);

  // --- The whole model, on the model's own Activations ---------------------
  // tokens, targets: [batch*seq_len], row-major by sequence. Returns the
  // training objective (the sum of loss_parts()) and keeps what backward needs.
  T forward(const std::vector<int>& tokens, const std::vector<int>& targets, int batch, int seq_len);
  // Gradients of the last forward's objective, added into `grads`.
  void backward();
  // Forward without a loss, for sampling: logits [batch*seq_len, V].
  const Tensor2<T>& forward_logits(const std::vector<int>& tokens, int batch, int seq_len);
  const std::map<std::string, double>& loss_parts() const { return acts.loss_parts; }
  const std::vector<double>& mtp_losses() const { return acts.mtp_losses; }
  const Tensor2<T>& logits() const { return acts.logits; }
  // Drafting for speculative decoding: after forward_logits() on one sequence,
  // MTP module k (called for k = 1, 2, ... in turn) reads the first P positions
  // of depth k-1's hidden state with tokens = t_{k..k+P-1}, P = tokens.size(),
  // and returns its logits [P, V]; row i predicts t_{i+k+1}.
  const Tensor2<T>& mtp_logits(int k, const std::vector<int>& tokens);

  // --- Stages -----------------------------------------------------------------
  // x [N, D] = Emb(tokens); records the batch shape in `a`.
  void embed_forward(Activations<T>& a, const std::vector<int>& tokens, int batch, int seq_len, Tensor2<T>& x);
  // Layers [first, last): x in = the input of layer `first`, out = the output of layer last-1.
  void layers_forward(Activations<T>& a, size_t first, size_t last, Tensor2<T>& x);
  // logits = head(norm(x)) from the last block's output x (moved into a.x_final).
  const Tensor2<T>& head_forward(Activations<T>& a, Tensor2<T>&& x);
  // The objective on head_forward's logits: cross-entropy, the MoE layers'
  // balance losses, the MTP modules; fills a.loss_parts and returns their sum.
  T loss_forward(Activations<T>& a, const std::vector<int>& targets);
  // d objective / d logits [N, V] (the main cross-entropy's part).
  void loss_backward(Activations<T>& a, Tensor2<T>& dlogits);
  // dx [N, D] = d/d x_final: through the head from dlogits (or none, null),
  // through norm from dh_extra [N, D] (other heads reading a.h_final, e.g. a
  // value head; or null), and from the MTP modules when a has a loss with them.
  // With `defer`, the weight-gradient GEMMs of the head and of the MTP modules wait in the queue.
  void head_backward(Activations<T>& a, const Tensor2<T>* dlogits, Tensor2<T>& dx,
                     const Tensor2<T>* dh_extra = nullptr, WeightGradQueue<T>* defer = nullptr);
  // dx: in d(output of layer last-1), out d(input of layer first). With `defer`,
  // the B pass: the blocks' weight-gradient GEMMs wait in the queue.
  void layers_backward(Activations<T>& a, size_t first, size_t last, Tensor2<T>& dx,
                       WeightGradQueue<T>* defer = nullptr);
  void embed_backward(Activations<T>& a, const Tensor2<T>& dx);

  void zero_grad() { grads.arena().fill(T(0)); }
  size_t num_parameters();
  // MoE layers: the routing of the last forward (null for a dense layer), and
  // Eq. (24)'s bias update from its load.
  const Routing<T>* routing(size_t l) const { return acts.layers.at(l).routing(); }
  void update_expert_bias() { update_expert_bias(expert_loads()); }
  // The last forward's load [E] of each MoE block: the main layers' in order,
  // then the MTP modules'. update_expert_bias(loads) moves each block's bias by
  // Eq. (24) from such loads (e.g. summed over the micro-batches of a step).
  std::vector<std::vector<double>> expert_loads() const;
  void update_expert_bias(const std::vector<std::vector<double>>& loads);
  // What every block reads (widths, the RoPE table, the FP8 recipe), e.g. for
  // incremental decoding (reference/decode.hpp).
  BlockContext<T> block_context() const { return context(); }
  const RopeTable& rope_table() const { return rope_; }

  ModelArgs args;
  TransformerParams<T> params, grads;
  fp8::Recipe fp8_recipe;  // from args.fp8; FP8 inputs for the blocks' linears (float only)
  double mtp_lambda;       // lambda of Eq. (26) for the next loss; starts at args.mtp.lambda
  Activations<T> acts;     // what forward() keeps for backward()

 private:
  BlockContext<T> context() const;
  MtpShared<T> mtp_shared() const { return {params.embed, params.head}; }
  RopeTable rope_;  // head_dim wide, or MlaArgs::rope_dim() wide for MLA
  // Temporaries kept from step to step: fresh buffers would cost a page fault
  // per 4 KiB on every step. They hold nothing between calls.
  struct Scratch {
    Tensor2<T> x, dlogits, dh, dx;
    BlockScratch<T> block;
    MtpScratch<T> mtp;
  } scratch_;
};

}  // namespace dslab
