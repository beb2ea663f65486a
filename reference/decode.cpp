#include "reference/decode.hpp"

#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "reference/embedding.hpp"
#include "reference/linear.hpp"
#include "reference/rmsnorm.hpp"

namespace dslab {

template <class T> int DecodeState<T>::max_len() const {
  if (layers.empty()) return 0;
  return std::visit(
      [](const auto& c) {
        if constexpr (std::is_same_v<std::decay_t<decltype(c)>, MlaLatentCache<T>>)
          return int(c.kv.shape(0));
        else
          return int(c.k.shape(0));
      },
      layers[0]);
}

template <class T>
Decoder<T>::Decoder(Transformer<T>& model) : model_(model), ctx_(model.block_context()) {
  if (model.args.moe.n_routed_experts > 0 && model.args.moe.capacity_factor > 0)
    throw std::invalid_argument(
        "decoding: model.capacity_factor = " + value_text(model.args.moe.capacity_factor) +
        " drops MoE tokens by their rank among all tokens of a forward, so decoding one token at a time "
        "cannot reproduce the full forward; decoding needs model.capacity_factor = 0");
}

template <class T> DecodeState<T> Decoder<T>::new_state(int max_len) const {
  if (max_len < 1 || max_len > model_.args.max_seq_len)
    throw std::invalid_argument("decoding: max_len = " + std::to_string(max_len) + " must be in 1 .. " +
                                std::to_string(model_.args.max_seq_len) + " (model.max_seq_len)");
  DecodeState<T> s;
  for (size_t l = 0; l < model_.params.layers.size(); ++l) {
    if (model_.args.attn == AttnKind::Mha)
      s.layers.emplace_back(std::in_place_type<KvCache<T>>, ctx_.mha.shape(1, 1), max_len);
    else if (ctx_.mla.rope == MlaRope::Full)
      s.layers.emplace_back(std::in_place_type<MlaNaiveCache<T>>, ctx_.mla, max_len);
    else
      s.layers.emplace_back(std::in_place_type<MlaLatentCache<T>>, ctx_.mla, max_len);
  }
  return s;
}

template <class T> std::vector<T> Decoder<T>::prefill(DecodeState<T>& s, const std::vector<int>& prompt) {
  const int P = int(prompt.size());
  if (s.pos != 0) throw std::invalid_argument("prefill: the sequence's caches are not empty");
  if (P < 1 || P > s.max_len())
    throw std::invalid_argument("prefill: a prompt of " + std::to_string(P) + " tokens for caches of " +
                                std::to_string(s.max_len()) + " (1 .. max_len allowed)");
  Tensor2<T> x;
  model_.embed_forward(acts_, prompt, 1, P, x);
  model_.layers_forward(acts_, 0, model_.params.layers.size(), x);
  const Tensor2<T>& logits = model_.head_forward(acts_, std::move(x));
  const int dn = ctx_.mla.qk_nope_head_dim, dr = ctx_.mla.qk_rope_head_dim;
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const BlockCache<T>& bc = acts_.layers[l];
    if (auto* kv = std::get_if<KvCache<T>>(&s.layers[l])) {  // MHA: keys after RoPE, values
      const MhaCache<T>& c = std::get<MhaCache<T>>(bc.attn);
      std::copy(c.k.begin(), c.k.end(), kv->k.begin());
      std::copy(c.v.begin(), c.v.end(), kv->v.begin());
      kv->len = P;
    } else if (auto* naive = std::get_if<MlaNaiveCache<T>>(&s.layers[l])) {  // MLA, full keys and values
      const MlaCache<T>& c = std::get<MlaCache<T>>(bc.attn);
      std::copy(c.k.begin(), c.k.end(), naive->k.begin());
      std::copy(c.v.begin(), c.v.end(), naive->v.begin());
      naive->len = P;
    } else {  // MLA, latent: c_KV and k_R (head 0's rope part of the key: it is shared)
      auto& lat = std::get<MlaLatentCache<T>>(s.layers[l]);
      const MlaCache<T>& c = std::get<MlaCache<T>>(bc.attn);
      std::copy(c.c_kv.begin(), c.c_kv.end(), lat.kv.begin());
      for (int n = 0; n < P; ++n)
        for (int i = 0; i < dr; ++i) lat.pe(n, i) = c.k(n, dn + i);
      lat.len = P;
    }
  }
  s.pos = P;
  const int V = model_.args.vocab_size;
  return std::vector<T>(&logits(P - 1, 0), &logits(P - 1, 0) + V);
}

template <class T>
const Tensor2<T>& Decoder<T>::decode_step(const std::vector<DecodeState<T>*>& seqs, const std::vector<int>& tokens) {
  const int B = int(seqs.size());
  if (B < 1 || tokens.size() != seqs.size())
    throw std::invalid_argument("decode_step: one token per sequence, at least one sequence");
  for (int b = 0; b < B; ++b) {
    if (tokens[b] < 0 || tokens[b] >= model_.args.vocab_size)
      throw std::invalid_argument("decode_step: token id " + std::to_string(tokens[b]) + " out of range");
    if (seqs[b]->pos >= seqs[b]->max_len())
      throw std::invalid_argument("decode_step: sequence " + std::to_string(b) + " is full (" +
                                  std::to_string(seqs[b]->max_len()) + " tokens)");
  }
  ensure_shape(logits_, {size_t(B), size_t(model_.args.vocab_size)});
  const int n_chunks = (B + kDecodeChunk - 1) / kDecodeChunk;
  if (int(chunks_.size()) < n_chunks) chunks_.resize(n_chunks);
  if (n_chunks == 1) {
    decode_rows(seqs, tokens, 0, B, chunks_[0]);
  } else {
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
    for (int c = 0; c < n_chunks; ++c) {
      try {
        decode_rows(seqs, tokens, c * kDecodeChunk, std::min(B, (c + 1) * kDecodeChunk), chunks_[c]);
      } catch (...) {
#pragma omp critical(dslab_decode_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  }
  for (DecodeState<T>* s : seqs) ++s->pos;
  return logits_;
}

template <class T>
void Decoder<T>::decode_rows(const std::vector<DecodeState<T>*>& seqs, const std::vector<int>& tokens, int b0,
                             int b1, Scratch& s) {
  const int B = b1 - b0;
  const LinearPolicy<T> linears{.fp8 = ctx_.fp8};
  const RopeTable& rope = *ctx_.rope;
  const auto& layers = model_.params.layers;
  embedding_forward(s.x, std::vector<int>(tokens.begin() + b0, tokens.begin() + b1), model_.params.embed);  // [B, D]
  for (size_t l = 0; l < layers.size(); ++l) {
    const BlockParams<T>& w = layers[l];
    // x_mid = x + attn(attn_norm(x))
    rmsnorm_forward(s.h, s.rstd, s.x, w.attn_norm, ctx_.norm_eps);
    if (const auto* mha = std::get_if<MhaWeights<T>>(&w.attn)) {
      std::vector<KvCache<T>*> caches(B);
      for (int b = 0; b < B; ++b) caches[b] = &std::get<KvCache<T>>(seqs[b0 + b]->layers[l]);
      mha_decode(s.u, s.h, caches, *mha, ctx_.mha.shape(1, 1), rope, linears);
    } else {
      const MlaWeights<T>& mla = std::get<MlaWeights<T>>(w.attn);
      ensure_shape(s.u, {size_t(B), size_t(model_.args.dim)});
      for (int b = 0; b < B; ++b) {
        LayerDecodeCache<T>& c = seqs[b0 + b]->layers[l];
        if (auto* lat = std::get_if<MlaLatentCache<T>>(&c))
          mla_decode_absorbed(&s.u(b, 0), &s.h(b, 0), *lat, mla, ctx_.mla, rope);
        else
          mla_decode_naive(&s.u(b, 0), &s.h(b, 0), std::get<MlaNaiveCache<T>>(c), mla, ctx_.mla, rope);
      }
    }
    s.x += s.u;
    // y = x_mid + ffn(ffn_norm(x_mid))
    rmsnorm_forward(s.h, s.rstd, s.x, w.ffn_norm, ctx_.norm_eps);
    if (const MoeParams<T>* moe = w.moe())
      moe_forward(s.u, s.moe_cache, s.h, *moe, moe->bias, ctx_.moe, linears);  // Eq. (18)-(20)
    else
      ffn_forward(s.u, s.ffn_cache, s.h, std::get<FfnWeights<T>>(w.ffn), linears);
    s.x += s.u;
  }
  rmsnorm_forward(s.h, s.rstd, s.x, model_.params.norm, model_.args.norm_eps);
  linear_forward(s.logits, s.h, model_.params.head);
  std::copy(s.logits.begin(), s.logits.end(), &logits_(b0, 0));
}

template struct DecodeState<float>;
template struct DecodeState<double>;
template class Decoder<float>;
template class Decoder<double>;

}  // namespace dslab
