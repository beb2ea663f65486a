#include "reference/rollout.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "reference/args_error.hpp"
#include "reference/decode.hpp"

namespace dslab {

void RolloutArgs::validate() const {
  const auto v = [](auto x) { return value_text(x); };
  require(group_size >= 1, {"rollout.group_size"}, "rollout.group_size = " + v(group_size) + " must be >= 1");
  require(max_new_tokens >= 1, {"rollout.max_new_tokens"},
          "rollout.max_new_tokens = " + v(max_new_tokens) + " must be >= 1");
  require(std::isfinite(temperature) && temperature >= 0, {"rollout.temperature"},
          "rollout.temperature = " + v(temperature) + " must be >= 0 (0: greedy)");
  require(top_k >= 0, {"rollout.top_k"}, "rollout.top_k = " + v(top_k) + " must be >= 0 (0: every token)");
  require(top_p > 0 && top_p <= 1, {"rollout.top_p"}, "rollout.top_p = " + v(top_p) + " must be in (0, 1]");
  for (size_t i = 0; i < stop.size(); ++i)
    require(!stop[i].empty(), {"rollout.stop"},
            "rollout.stop[" + std::to_string(i) + "] is empty: a stop string needs at least one byte");
}

SampleArgs RolloutArgs::sample_args() const {
  SampleArgs s;
  s.tokens = max_new_tokens;
  s.temperature = temperature;
  s.top_k = top_k;
  s.top_p = top_p;
  return s;
}

std::string Completion::text() const {
  std::string s;
  for (int t : tokens) s.push_back(char(t));
  return s;
}

std::vector<int> byte_tokens(std::string_view text) {
  std::vector<int> t(text.size());
  for (size_t i = 0; i < text.size(); ++i) t[i] = static_cast<unsigned char>(text[i]);
  return t;
}

double tempered_logprob(const float* logits, int V, int token, double temperature) {
  const double T = temperature > 0 ? temperature : 1.0;
  const double top = *std::max_element(logits, logits + V);
  double sum = 0;
  for (int v = 0; v < V; ++v) sum += std::exp((double(logits[v]) - top) / T);
  return (double(logits[token]) - top) / T - std::log(sum);
}

std::vector<Completion> sample_sequences(Transformer<float>& model, const std::vector<std::vector<int>>& prompts,
                                         const std::vector<uint64_t>& streams, const RolloutArgs& args,
                                         uint64_t seed, uint64_t step) {
  args.validate();
  const int n = int(prompts.size()), V = model.args.vocab_size, M = model.args.max_seq_len;
  if (streams.size() != prompts.size()) throw std::invalid_argument("sample_sequences: one stream per prompt");
  for (int i = 0; i < n; ++i) {
    const auto& p = prompts[i];
    if (p.empty()) throw std::invalid_argument("rollout: prompt " + std::to_string(i) + " is empty");
    if (long(p.size()) + args.max_new_tokens > M)
      throw std::invalid_argument("rollout: prompt " + std::to_string(i) + " has " + std::to_string(p.size()) +
                                  " tokens; with rollout.max_new_tokens = " + std::to_string(args.max_new_tokens) +
                                  " it needs " + std::to_string(p.size() + args.max_new_tokens) +
                                  " positions, more than model.max_seq_len = " + std::to_string(M));
    for (int t : p)
      if (t < 0 || t >= V) throw std::invalid_argument("rollout: prompt token id " + std::to_string(t) + " out of range");
  }
  const SampleArgs sa = args.sample_args();
  Decoder<float> dec(model);
  std::vector<DecodeState<float>> states(n);
  std::vector<std::vector<float>> row(n);  // each sequence's logits for its next token
  for (int i = 0; i < n; ++i) {
    if (i > 0 && prompts[i] == prompts[i - 1]) {  // a group shares its prompt's prefill
      states[i] = states[i - 1];
      row[i] = row[i - 1];
      continue;
    }
    states[i] = dec.new_state(int(prompts[i].size()) + args.max_new_tokens);
    row[i] = dec.prefill(states[i], prompts[i]);
  }
  std::vector<Rng> rngs;
  for (int i = 0; i < n; ++i) rngs.emplace_back(Rng(seed, step).next(), streams[i]);
  std::vector<Completion> out(n);
  std::vector<std::string> text(n);
  std::vector<int> active(n);
  for (int i = 0; i < n; ++i) active[i] = i, out[i].prompt = i;
  while (!active.empty()) {
    const int A = int(active.size());
    std::vector<uint8_t> done(A, 0);
#pragma omp parallel for schedule(dynamic, 1) if (A > 1)
    for (int j = 0; j < A; ++j) {  // each sequence on its own stream: independent of the others
      const int i = active[j];
      const float* z = row[i].data();
      const int token = draw(sampling_distribution(z, V, sa), rngs[i]);
      Completion& c = out[i];
      c.tokens.push_back(token);
      c.logprobs.push_back(float(tempered_logprob(z, V, token, args.temperature)));
      text[i].push_back(char(token));
      for (const std::string& s : args.stop) c.stopped = c.stopped || text[i].ends_with(s);
      done[j] = c.stopped || int(c.tokens.size()) == args.max_new_tokens;
    }
    std::vector<int> next;
    for (int j = 0; j < A; ++j)
      if (!done[j]) next.push_back(active[j]);
    active = std::move(next);
    if (active.empty()) break;
    std::vector<DecodeState<float>*> seqs;
    std::vector<int> tokens;
    for (int i : active) seqs.push_back(&states[i]), tokens.push_back(out[i].tokens.back());
    const Tensor2<float>& logits = dec.decode_step(seqs, tokens);
    for (size_t j = 0; j < active.size(); ++j) std::copy(&logits(j, 0), &logits(j, 0) + V, row[active[j]].begin());
  }
  return out;
}

std::vector<Completion> sample_completions(Transformer<float>& model, const std::vector<std::vector<int>>& prompts,
                                           const RolloutArgs& args, uint64_t seed, uint64_t step) {
  args.validate();
  std::vector<std::vector<int>> seq_prompts;
  std::vector<uint64_t> streams;
  for (size_t p = 0; p < prompts.size(); ++p)
    for (int g = 0; g < args.group_size; ++g) {
      seq_prompts.push_back(prompts[p]);
      streams.push_back(streams.size());
    }
  std::vector<Completion> out = sample_sequences(model, seq_prompts, streams, args, seed, step);
  for (size_t i = 0; i < out.size(); ++i) out[i].prompt = int(i) / args.group_size;
  return out;
}

}  // namespace dslab
