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
// The MTP modules are not used.
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
  Transformer<T>& model_;
  BlockContext<T> ctx_;
  Activations<T> acts_;          // prefill's forward
  Tensor2<T> x_, h_, u_, logits_;
  Tensor1<T> rstd_;
  MoeCache<T> moe_cache_;
  FfnCache<T> ffn_cache_;
};

}  // namespace dslab
