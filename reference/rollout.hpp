// Rollouts for RL (review Sec. 2.5-2.6: GRPO samples a group of G outputs
// o_1..o_G for each question q from pi_theta_old, Eq. (28)): G completions for
// each of P prompts, sampled with the KV-cache decoder (reference/decode.hpp),
// G sequences of one prompt sharing its prefill.
//
// Temperature convention (as TRL and verl): the policy whose probabilities the
// RL objective uses is softmax(logits / temperature) over the whole
// vocabulary. A Completion's logprobs are log of that at the sampled tokens,
// and token_logprobs (reference/logprobs.hpp) recomputes the same with the same
// temperature; top_k and top_p shape the draw only and do not enter the log-
// probabilities. Temperature 0 (greedy) takes the log-probabilities at temperature 1.
//
// Determinism: sequence i (prompt i / G, member i % G) draws from its own
// stream Rng(Rng(seed, step).next(), i), so its tokens do not depend on the
// other sequences of the batch, on the batch's order or on OMP_NUM_THREADS
// (the decoder's rows are computed independently of one another, up to the
// BLAS kernels a batch size selects; see the tests). A sequence that stops
// leaves the batch; the others go on.
//
// Tokens are bytes (as the sampler's): stop strings are matched against the
// completion's bytes, and a sequence stops when its completion ends with one,
// the stop string included. Every prompt must leave room for max_new_tokens
// in model.max_seq_len.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "reference/sampler.hpp"
#include "reference/transformer.hpp"

namespace dslab {

// Config section [rollout].
struct RolloutArgs {
  int group_size = 8;           // G completions per prompt
  int max_new_tokens = 64;
  double temperature = 1.0;     // 0: greedy
  int top_k = 0;                // 0: the whole vocabulary
  double top_p = 1.0;           // nucleus, after top_k; 1: off
  std::vector<std::string> stop;  // e.g. "</answer>"; none: only max_new_tokens ends a completion
  // Throws ArgsError with key paths "rollout.<field>" for the first broken rule.
  void validate() const;
  SampleArgs sample_args() const;  // temperature, top_k, top_p
};

struct Completion {
  int prompt = 0;               // index into the prompts
  std::vector<int> tokens;      // the completion, the prompt not included
  std::vector<float> logprobs;  // [tokens.size()]: log softmax(logits / T) at each sampled token
  bool stopped = false;         // ended with a stop string; false: truncated at max_new_tokens
  std::string text() const;     // the tokens as bytes
};

// G completions per prompt, in prompt order (completion i: prompt i / G).
// Throws ArgsError for bad args, std::invalid_argument for an empty prompt, a
// token out of range or a prompt longer than model.max_seq_len - max_new_tokens.
std::vector<Completion> sample_completions(Transformer<float>& model, const std::vector<std::vector<int>>& prompts,
                                           const RolloutArgs& args, uint64_t seed, uint64_t step);

// The same for one sequence per prompt, sequence i drawing from stream
// streams[i] (sample_completions: prompt i / G, stream i). Completion::prompt
// is the index into `prompts`.
std::vector<Completion> sample_sequences(Transformer<float>& model, const std::vector<std::vector<int>>& prompts,
                                         const std::vector<uint64_t>& streams, const RolloutArgs& args,
                                         uint64_t seed, uint64_t step);

// The tokens of a text: its bytes (the byte-level model's vocabulary).
std::vector<int> byte_tokens(std::string_view text);

// log softmax(logits / T)[token] over the whole row [V] (T = 1 when temperature is 0).
double tempered_logprob(const float* logits, int V, int token, double temperature);

}  // namespace dslab
