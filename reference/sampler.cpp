#include "reference/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "reference/simd.hpp"

namespace dslab {

double SpeculativeStats::accept_rate(int k) const {
  const int64_t n = judged.at(k - 1);
  return n > 0 ? double(accepted.at(k - 1)) / double(n) : 0.0;
}

double SpeculativeStats::tokens_per_forward() const {
  return forwards > 0 ? double(tokens) / double(forwards) : 0.0;
}

void SpeculativeStats::add(const SpeculativeStats& o) {
  judged.resize(std::max(judged.size(), o.judged.size()), 0);
  accepted.resize(judged.size(), 0);
  for (size_t k = 0; k < o.judged.size(); ++k) {
    judged[k] += o.judged[k];
    accepted[k] += o.accepted[k];
  }
  tokens += o.tokens;
  forwards += o.forwards;
}

std::vector<double> sampling_distribution(const float* logits, int V, const SampleArgs& a) {
  std::vector<double> p(V, 0.0);
  if (a.temperature <= 0) {
    p[std::max_element(logits, logits + V) - logits] = 1.0;
    return p;
  }
  const int k = a.top_k > 0 ? std::min(a.top_k, V) : V;
  if (k == V && a.top_p >= 1) {  // every token: softmax of (logit - top) / T in token order, no sort
    const double top = *std::max_element(logits, logits + V);
    for (int v = 0; v < V; ++v) p[v] = (logits[v] - top) / a.temperature;
    simd::softmax_row(p.data(), p.data(), V, simd::SoftmaxArith::Scalar);
    return p;
  }
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  // Largest first, ties by token id (the order a stable sort of 0..V-1 gives, without its buffer).
  std::sort(order.begin(), order.end(),
            [&](int x, int y) { return logits[x] > logits[y] || (logits[x] == logits[y] && x < y); });
  // softmax over the k best of (logit - top) / T, in their sorted order (the max is 0)
  const double top = logits[order[0]];
  std::vector<double> z(k);
  for (int i = 0; i < k; ++i) z[i] = (logits[order[i]] - top) / a.temperature;
  simd::softmax_row(z.data(), z.data(), k, simd::SoftmaxArith::Scalar);
  // nucleus: the first n of the sorted tokens with z_0 + ... + z_{n-1} >= top_p
  int n = k;
  if (a.top_p < 1) {
    double mass = 0;
    for (n = 0; n < k && (n == 0 || mass < a.top_p);) mass += z[n++];
    for (int i = 0; i < n; ++i) z[i] /= mass;
  }
  for (int i = 0; i < n; ++i) p[order[i]] = z[i];
  return p;
}

int draw(const std::vector<double>& p, Rng& rng) {
  const double sum = std::accumulate(p.begin(), p.end(), 0.0);
  double u = rng.uniform() * sum;
  int last = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0) continue;
    last = int(i);
    u -= p[i];
    if (u < 0) return last;
  }
  return last;  // rounding left u just above 0
}

int accept_or_resample(const std::vector<double>& p, const std::vector<double>& q, int d, Rng& rng,
                       bool* accepted) {
  *accepted = rng.uniform() < p[d] / q[d];  // q[d] > 0: d was drawn from q
  if (*accepted) return d;
  std::vector<double> residual(p.size());
  for (size_t i = 0; i < p.size(); ++i) residual[i] = std::max(0.0, p[i] - q[i]);
  return draw(residual, rng);
}

std::vector<int> generate_tokens(Transformer<float>& model, std::vector<int> context,
                                 const SampleArgs& a) {
  if (context.empty()) context.push_back('\n');
  Rng rng(a.seed);
  std::vector<int> out;
  const int V = model.args.vocab_size;
  for (int i = 0; i < a.tokens; ++i) {
    const size_t keep = std::min<size_t>(context.size(), model.args.max_seq_len);
    std::vector<int> window(context.end() - keep, context.end());
    const auto& logits = model.forward_logits(window, 1, int(keep));
    const int next = draw(sampling_distribution(logits.data() + (keep - 1) * V, V, a), rng);
    context.push_back(next);
    out.push_back(next);
  }
  return out;
}

std::vector<int> generate_speculative_tokens(Transformer<float>& model, std::vector<int> context,
                                             const SampleArgs& a, SpeculativeStats* stats) {
  const int depth = model.args.mtp.depth;
  if (depth < 1) throw std::invalid_argument("speculative decoding needs a model with mtp.depth > 0");
  if (context.empty()) context.push_back('\n');
  const int V = model.args.vocab_size;
  const size_t M = model.args.max_seq_len;
  Rng rng(a.seed);
  SpeculativeStats s;
  s.judged.assign(depth, 0);
  s.accepted.assign(depth, 0);
  std::vector<int> out, drafts;
  std::vector<std::vector<double>> q;  // the distribution each draft was drawn from
  while (out.size() < size_t(a.tokens)) {
    // One main-model forward over the context and the drafts.
    const size_t L = context.size(), m = drafts.size();
    std::vector<int> window = context;
    window.insert(window.end(), drafts.begin(), drafts.end());
    const size_t start = window.size() > M ? window.size() - M : 0;  // only without drafts
    window.erase(window.begin(), window.begin() + start);
    const auto& logits = model.forward_logits(window, 1, int(window.size()));
    ++s.forwards;
    auto p_at = [&](size_t row) { return sampling_distribution(logits.data() + row * V, V, a); };
    // Verify: row L-1-start+j predicts the token that draft j proposes.
    std::vector<int> fresh;
    size_t j = 0;
    for (; j < m; ++j) {
      bool accepted = false;
      fresh.push_back(accept_or_resample(p_at(L - 1 - start + j), q[j], drafts[j], rng, &accepted));
      ++s.judged[j];
      if (!accepted) break;
      ++s.accepted[j];
    }
    if (j == m) fresh.push_back(draw(p_at(L - 1 - start + m), rng));  // every draft accepted
    context.insert(context.end(), fresh.begin(), fresh.end());
    out.insert(out.end(), fresh.begin(), fresh.end());
    // Draft: module k at the last position whose main hidden state is known,
    // P-1 = L'-2 (the newest token is t_{L'-1}), predicts t_{L'+k-1}.
    drafts.clear();
    q.clear();
    const long room = std::min({long(depth), long(a.tokens) - long(out.size()) - 1,
                                long(M) - long(context.size())});
    const size_t P = context.size() - 1 - start;
    std::vector<int> seq(context.begin() + start, context.end());
    for (int k = 1; k <= room; ++k) {
      const std::vector<int> shifted(seq.begin() + k, seq.begin() + k + P);
      const auto& draft_logits = model.mtp_logits(k, shifted);
      q.push_back(sampling_distribution(draft_logits.data() + (P - 1) * V, V, a));
      drafts.push_back(draw(q.back(), rng));
      seq.push_back(drafts.back());
    }
  }
  s.tokens = int64_t(out.size());
  if (stats) stats->add(s);
  return out;
}

namespace {

std::string text(const std::vector<int>& tokens) {
  std::string out;
  for (int t : tokens) out.push_back(char(t));
  return out;
}

std::vector<int> prompt_tokens(const std::string& prompt) {
  std::vector<int> context;
  for (unsigned char c : prompt) context.push_back(c);
  return context;
}

}  // namespace

std::string generate(Transformer<float>& model, const std::string& prompt, const SampleArgs& a) {
  return text(generate_tokens(model, prompt_tokens(prompt), a));
}

std::string generate_speculative(Transformer<float>& model, const std::string& prompt,
                                 const SampleArgs& a, SpeculativeStats* stats) {
  return text(generate_speculative_tokens(model, prompt_tokens(prompt), a, stats));
}

}  // namespace dslab
