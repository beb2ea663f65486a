#include "reference/logprobs.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace dslab {

PaddedBatch rollout_batch(const std::vector<std::vector<int>>& prompts, const std::vector<Completion>& completions) {
  PaddedBatch b;
  b.batch = int(completions.size());
  for (const Completion& c : completions)
    b.seq_len = std::max(b.seq_len, int(prompts.at(c.prompt).size() + c.tokens.size()));
  b.tokens.assign(size_t(b.batch) * b.seq_len, 0);
  b.response.assign(b.tokens.size(), 0);
  for (int i = 0; i < b.batch; ++i) {
    const std::vector<int>& p = prompts[completions[i].prompt];
    const std::vector<int>& o = completions[i].tokens;
    const size_t row = size_t(i) * b.seq_len;
    std::copy(p.begin(), p.end(), b.tokens.begin() + row);
    std::copy(o.begin(), o.end(), b.tokens.begin() + row + p.size());
    std::fill_n(b.response.begin() + row + p.size(), o.size(), uint8_t(1));
  }
  return b;
}

template <class T>
void token_logprobs(Transformer<T>& model, TokenLogprobs<T>& out, const PaddedBatch& b, double temperature) {
  const int B = b.batch, L = b.seq_len, V = model.args.vocab_size;
  if (B < 1 || L < 1 || b.tokens.size() != size_t(B) * L || b.response.size() != b.tokens.size())
    throw std::invalid_argument("token_logprobs: tokens and response mask must be [batch*seq_len]");
  out.temperature = temperature > 0 ? temperature : 1.0;
  out.rows.clear();
  out.targets.clear();
  for (int i = 0; i < B; ++i)
    for (int t = 0; t < L; ++t)
      if (b.response[size_t(i) * L + t]) {
        if (t == 0)
          throw std::invalid_argument("token_logprobs: sequence " + std::to_string(i) +
                                      " has a response token at position 0, with no prefix to predict it");
        out.rows.push_back(i * L + t - 1);
        out.targets.push_back(b.tokens[size_t(i) * L + t]);
      }
  Tensor2<T> x;
  model.embed_forward(out.acts, b.tokens, B, L, x);
  model.layers_forward(out.acts, 0, model.params.layers.size(), x);
  const Tensor2<T>& logits = model.head_forward(out.acts, std::move(x));
  const int R = int(out.rows.size());
  const double invT = 1.0 / out.temperature;
  out.logp.assign(R, T(0));
  out.entropy.assign(R, T(0));
  out.probs = xt::zeros<T>({size_t(R), size_t(V)});
#pragma omp parallel for schedule(static) if (long(R) * V >= kParallelMinWork)
  for (int r = 0; r < R; ++r) {
    const T* z = &logits(out.rows[r], 0);
    T* p = &out.probs(r, 0);
    const double top = double(*std::max_element(z, z + V));
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp((double(z[v]) - top) * invT);
    const double lse = std::log(sum);  // of (z - top) / T
    double h = 0;
    for (int v = 0; v < V; ++v) {
      const double lp = (double(z[v]) - top) * invT - lse;
      const double pv = std::exp(lp);
      p[v] = T(pv);
      h -= pv * lp;
    }
    out.logp[r] = T((double(z[out.targets[r]]) - top) * invT - lse);
    out.entropy[r] = T(h);
  }
}

template <class T>
void token_logprobs_backward(Transformer<T>& model, TokenLogprobs<T>& lp, const std::vector<T>& dlogp,
                             const Tensor2<T>* dz_extra, const Tensor2<T>* dh_extra) {
  const size_t R = lp.rows.size(), V = model.args.vocab_size;
  const size_t N = size_t(lp.acts.batch) * lp.acts.seq_len;
  if (dlogp.size() != R) throw std::invalid_argument("token_logprobs_backward: dlogp must have one value per response token");
  if (dz_extra && (dz_extra->shape(0) != R || dz_extra->shape(1) != V))
    throw std::invalid_argument("token_logprobs_backward: dz_extra must be [R, V]");
  if (dh_extra && (dh_extra->shape(0) != N || dh_extra->shape(1) != size_t(model.args.dim)))
    throw std::invalid_argument("token_logprobs_backward: dh_extra must be [batch*seq_len, dim]");
  const T invT = T(1.0 / lp.temperature);
  Tensor2<T> dlogits = xt::zeros<T>({N, V});
#pragma omp parallel for schedule(static) if (long(R) * long(V) >= kParallelMinWork)
  for (long r = 0; r < long(R); ++r) {
    T* d = &dlogits(lp.rows[r], 0);
    const T* p = &lp.probs(r, 0);
    for (size_t v = 0; v < V; ++v) d[v] = -dlogp[r] * p[v];
    d[lp.targets[r]] += dlogp[r];
    if (dz_extra)
      for (size_t v = 0; v < V; ++v) d[v] += (*dz_extra)(r, v);
    for (size_t v = 0; v < V; ++v) d[v] *= invT;
  }
  Tensor2<T> dx;
  model.head_backward(lp.acts, &dlogits, dx, dh_extra);
  model.layers_backward(lp.acts, 0, model.params.layers.size(), dx);
  model.embed_backward(lp.acts, dx);
}

double max_logprob_gap(const std::vector<Completion>& completions, const TokenLogprobs<float>& lp) {
  double gap = 0;
  size_t r = 0;
  for (const Completion& c : completions)
    for (float sampled : c.logprobs) {
      if (r >= lp.logp.size()) throw std::invalid_argument("max_logprob_gap: fewer recomputed log-probabilities than sampled tokens");
      gap = std::max(gap, std::abs(double(sampled) - double(lp.logp[r++])));
    }
  if (r != lp.logp.size()) throw std::invalid_argument("max_logprob_gap: more recomputed log-probabilities than sampled tokens");
  return gap;
}

template struct TokenLogprobs<float>;
template struct TokenLogprobs<double>;
template void token_logprobs<float>(Transformer<float>&, TokenLogprobs<float>&, const PaddedBatch&, double);
template void token_logprobs<double>(Transformer<double>&, TokenLogprobs<double>&, const PaddedBatch&, double);
template void token_logprobs_backward<float>(Transformer<float>&, TokenLogprobs<float>&, const std::vector<float>&,
                                             const Tensor2<float>*, const Tensor2<float>*);
template void token_logprobs_backward<double>(Transformer<double>&, TokenLogprobs<double>&, const std::vector<double>&,
                                              const Tensor2<double>*, const Tensor2<double>*);

}  // namespace dslab
