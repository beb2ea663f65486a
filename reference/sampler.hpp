// Autoregressive sampling from the reference transformer, byte by byte.
// temperature 0 means greedy; top_k 0 means the whole vocabulary; top_p 1
// keeps every token top_k kept (nucleus sampling, applied after top_k).
//
// Speculative decoding with the MTP modules (Sec. 2.3; DeepSeek-V3 uses its
// MTP module this way at inference): after each main-model forward, modules
// 1..D draft the next D tokens from the main model's hidden states, and the
// next main-model forward, over the context and the drafts, verifies them all
// at once. Draft j (drawn from the module's distribution q) is accepted with
// probability min(1, p(d_j)/q(d_j)), p the main model's distribution at its
// position; at the first rejection the token is drawn from
// max(0, p - q) / sum max(0, p - q) and the rest are dropped; when every draft
// is accepted, the main model's next token comes free. The output then follows
// the main model's distribution exactly (Leviathan et al. 2023; Chen et al.
// 2023); with temperature 0, p and q are one-hot and the output is exactly
// plain greedy decoding. Without a KV cache every main forward re-reads a
// window of at most max_seq_len tokens, so drafts are only made while the
// context and the drafts fit in that window.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/transformer.hpp"

namespace dslab {

struct SampleArgs {
  int tokens = 200;
  double temperature = 1.0;
  int top_k = 0;
  double top_p = 1.0;  // in (0, 1]
  uint64_t seed = 1;
};

// What speculative decoding did: per depth k (index k-1), the drafts the main
// model judged (those at or before the first rejection) and those it accepted.
struct SpeculativeStats {
  std::vector<int64_t> judged, accepted;
  int64_t tokens = 0;    // tokens generated
  int64_t forwards = 0;  // main-model forwards
  double accept_rate(int k) const;  // accepted / judged at depth k (1-based); 0 if none judged
  double tokens_per_forward() const;
  void add(const SpeculativeStats& other);
};

// The sampling distribution of one row of logits [V]: softmax(logits / T) over
// the top_k most likely tokens (ties by token id), then, nucleus sampling
// (Holtzman et al. 2020), only the smallest set of the most likely of those
// whose probabilities sum to >= top_p, renormalised; zero elsewhere. One-hot at
// the first maximum when temperature is 0.
std::vector<double> sampling_distribution(const float* logits, int V, const SampleArgs& args);

// One token drawn from a distribution (sums to 1 up to rounding).
int draw(const std::vector<double>& p, Rng& rng);

// The speculative acceptance rule for draft d ~ q against the target p:
// returns d with probability min(1, p(d)/q(d)), otherwise a token drawn from
// max(0, p - q) normalized. *accepted tells which happened.
int accept_or_resample(const std::vector<double>& p, const std::vector<double>& q, int d, Rng& rng,
                       bool* accepted);

// Returns the generated continuation (the prompt not included). The context
// is cropped to the model's max_seq_len.
std::string generate(Transformer<float>& model, const std::string& prompt, const SampleArgs& args);
std::vector<int> generate_tokens(Transformer<float>& model, std::vector<int> context,
                                 const SampleArgs& args);

// The same by speculative decoding with the model's MTP modules (mtp.depth > 0);
// adds what happened to *stats when given.
std::string generate_speculative(Transformer<float>& model, const std::string& prompt,
                                 const SampleArgs& args, SpeculativeStats* stats = nullptr);
std::vector<int> generate_speculative_tokens(Transformer<float>& model, std::vector<int> context,
                                             const SampleArgs& args,
                                             SpeculativeStats* stats = nullptr);

}  // namespace dslab
