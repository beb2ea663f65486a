#include "reference/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dslab {

namespace {

// Draws a token from one row of logits.
int pick(const float* logits, int V, const SampleArgs& a, Rng& rng) {
  if (a.temperature <= 0) return int(std::max_element(logits, logits + V) - logits);
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return logits[x] > logits[y]; });
  const int k = a.top_k > 0 ? std::min(a.top_k, V) : V;
  std::vector<double> p(k);
  const double top = logits[order[0]];
  double sum = 0;
  for (int i = 0; i < k; ++i) sum += p[i] = std::exp((logits[order[i]] - top) / a.temperature);
  double u = rng.uniform() * sum;
  for (int i = 0; i < k; ++i) {
    u -= p[i];
    if (u < 0) return order[i];
  }
  return order[k - 1];
}

}  // namespace

std::string generate(Transformer<float>& model, const std::string& prompt, const SampleArgs& a) {
  std::vector<int> context;
  for (unsigned char c : prompt) context.push_back(c);
  if (context.empty()) context.push_back('\n');
  Rng rng(a.seed);
  std::string out;
  const int V = model.args.vocab_size;
  for (int i = 0; i < a.tokens; ++i) {
    const size_t keep = std::min<size_t>(context.size(), model.args.max_seq_len);
    std::vector<int> window(context.end() - keep, context.end());
    const auto& logits = model.forward_logits(window, 1, int(keep));
    const int next = pick(logits.data() + (keep - 1) * V, V, a, rng);
    context.push_back(next);
    out.push_back(char(next));
  }
  return out;
}

}  // namespace dslab
