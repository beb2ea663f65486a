// Incremental decoding of the whole model with per-layer caches, for rollouts
// (reference/rollout.hpp): the same numbers as Transformer::forward_logits of
// the whole sequence, one new token per sequence per step.
//
// A sequence's DecodeState keeps, for every layer, the cache its attention
// reads (chosen by ModelArgs::attn):
//   MHA / GQA / MQA   KvCache: keys after RoPE and values (reference/attention.hpp)
//   MLA               MlaLatentCache: c_KV and the rotated k_R (absorbed W^UK, W^UV);
//                     MlaNaiveCache for rope = "full", where W^UK cannot be absorbed
// prefill() runs the prompt through the model's stage API in one forward
// (batch 1) and copies its keys and values into the caches; its last row of
// logits predicts the first new token. decode_step() takes one token for each
// of B sequences, each at its own position, and returns logits [B, V]: the
// embedding, the norms, the FFN / MoE and the head run on [B, D] rows, and so
// do MHA's projections; the attention runs per sequence against its own cache
// (MLA: its projections too, through mla_decode_absorbed / mla_decode_naive).
// The MTP modules are not used. Threads: the B sequences are cut into chunks
// of kDecodeChunk (a constant, so every row's numbers are the same on any
// thread count) and the chunks run the whole step in parallel, one OpenMP
// region per step: the step's GEMMs ([B, D] rows) are too small to split
// well, and a region per GEMM costs more in wake-ups than it gains.
//
// MoE with capacity_factor > 0 drops tokens by their rank among all the
// tokens of a forward, so a token's output depends on the batch it is in; the
// decoder cannot reproduce forward_logits then, and Decoder's constructor
// throws std::invalid_argument. With capacity_factor = 0 every token is routed
// on its own and the decoder is exact.
//
// Shapes: B sequences of one step, D = dim, V = vocab_size.
#pragma once

#include <variant>
#include <vector>

#include "reference/attention.hpp"
#include "reference/mla.hpp"
#include "reference/tensor.hpp"
#include "reference/transformer.hpp"

namespace dslab {

template <class T> using LayerDecodeCache = std::variant<KvCache<T>, MlaLatentCache<T>, MlaNaiveCache<T>>;

// One sequence being decoded.
template <class T> struct DecodeState {
  int pos = 0;                                 // tokens in the caches (the next token's position)
  std::vector<LayerDecodeCache<T>> layers;     // [n_layers]
  int max_len() const;                         // tokens the caches hold
};

constexpr int kDecodeChunk = 16;  // sequences per chunk of a decode step

template <class T> class Decoder {
 public:
  // Throws std::invalid_argument for an MoE model with capacity_factor > 0.
  explicit Decoder(Transformer<T>& model);

  // Empty caches for up to max_len tokens (<= the model's max_seq_len).
  DecodeState<T> new_state(int max_len) const;
  // Caches the prompt (1 <= its length <= s.max_len(), s empty) and returns the
  // logits [V] of its last position, which predict the next token.
  std::vector<T> prefill(DecodeState<T>& s, const std::vector<int>& prompt);
  // Row b of the result [B, V]: the logits after feeding tokens[b] at position
  // seqs[b]->pos to sequence b, whose caches then grow by one token. Throws
  // std::invalid_argument when a sequence is full or a token is out of range.
  const Tensor2<T>& decode_step(const std::vector<DecodeState<T>*>& seqs, const std::vector<int>& tokens);

  Transformer<T>& model() { return model_; }

 private:
  // What one chunk of a step works in (kept from step to step; holds nothing between calls).
  struct Scratch {
    Tensor2<T> x, h, u, logits;
    Tensor1<T> rstd;
    MoeCache<T> moe_cache;
    FfnCache<T> ffn_cache;
  };
  // The step for sequences [b0, b1) of seqs: their logits into rows b0 .. b1-1 of logits_.
  void decode_rows(const std::vector<DecodeState<T>*>& seqs, const std::vector<int>& tokens, int b0, int b1,
                   Scratch& s);

  Transformer<T>& model_;
  BlockContext<T> ctx_;
  Activations<T> acts_;          // prefill's forward
  std::vector<Scratch> chunks_;  // one per chunk of the largest step so far
  Tensor2<T> logits_;            // [B, V]
};

}  // namespace dslab
