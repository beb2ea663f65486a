// Exact per-token log-probabilities of given tokens under the model, and their
// backward, for the policy-gradient objectives (review Sec. 2.5: the ratios
// pi_theta(o_t | q, o_<t) / pi_theta_old(o_t | q, o_<t) of PPO Eq. (27) and
// GRPO Eq. (28)).
//
// One full forward through the stage API over a right-padded batch
// tokens [B, L]: causal attention keeps the padding after a sequence from
// reaching its positions, so the padding only costs time. Response token
// (b, t) (response mask 1; t >= 1) is scored by logits row b*L + t - 1:
//   z = logits / T,   logp = z[token] - logsumexp(z),   entropy = -sum_v p_v log p_v,  p = softmax(z)
// with T the rollout temperature (the TRL / verl convention of
// reference/rollout.hpp; T = 1 when the temperature is 0).
//
// Backward: given d loss / d logp_r for each response token r (and, optionally,
// d loss / d z of its row from another term, e.g. an exact KL, and
// d loss / d h_final for a value head reading acts.h_final),
//   d loss / d logits = (dlogp_r (onehot(token_r) - p_r) + dz_extra_r) / T
// on the response rows, zero elsewhere, then head_backward, layers_backward
// and embed_backward: the gradients add into model.grads.
//
// Shapes: R response tokens, in row-major (b, t) order; V = vocab_size; D = dim.
#pragma once

#include <cstdint>
#include <vector>

#include "reference/rollout.hpp"
#include "reference/transformer.hpp"

namespace dslab {

// A right-padded batch and its response tokens.
struct PaddedBatch {
  int batch = 0, seq_len = 0;
  std::vector<int> tokens;         // [B*L]
  std::vector<uint8_t> response;   // [B*L]: 1 at the response tokens (never at t = 0)
};

// Row i = prompts[c.prompt] + c.tokens of completions[i], padded with token 0
// to the longest row; the completion's tokens are the response. Its R response
// tokens are the completions' tokens in order.
PaddedBatch rollout_batch(const std::vector<std::vector<int>>& prompts, const std::vector<Completion>& completions);

template <class T> struct TokenLogprobs {
  double temperature = 1;       // T the logits were divided by
  std::vector<int> rows;        // [R] row b*L + t - 1 of the logits that predicts response token (b, t)
  std::vector<int> targets;     // [R] the response tokens
  std::vector<T> logp;          // [R] log pi(token | prefix)
  std::vector<T> entropy;       // [R] entropy of pi( . | prefix)
  Tensor2<T> probs;             // [R, V] softmax(logits / T) of those rows
  Activations<T> acts;          // the forward, kept for the backward; acts.h_final [B*L, D]
};

// Fills `out` for `batch` under `model` (full forward, no loss). Throws
// std::invalid_argument for a bad batch (shape, a response token at t = 0).
template <class T>
void token_logprobs(Transformer<T>& model, TokenLogprobs<T>& out, const PaddedBatch& batch, double temperature);

// Adds d loss / d parameters into model.grads: dlogp [R]; dz_extra [R, V] or
// null; dh_extra [B*L, D] (d loss / d acts.h_final) or null. Needs the
// token_logprobs forward of `lp` to be the model's last use of those weights.
template <class T>
void token_logprobs_backward(Transformer<T>& model, TokenLogprobs<T>& lp, const std::vector<T>& dlogp,
                             const Tensor2<T>* dz_extra = nullptr, const Tensor2<T>* dh_extra = nullptr);

// max_r |sampling-time logprob - recomputed logp| over the completions (in the
// order of rollout_batch), for the trainer's log; 0 when there are none.
double max_logprob_gap(const std::vector<Completion>& completions, const TokenLogprobs<float>& lp);

}  // namespace dslab
