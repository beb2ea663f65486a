#include "reference/reward_model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "reference/args_error.hpp"
#include "reference/trainer.hpp"

namespace dslab {

void RmArgs::validate(const ModelArgs& model) const {
  const auto v = [](auto x) { return value_text(x); };
  require(prefix_bytes + response_bytes <= model.max_seq_len,
          {"rm.prefix_bytes", "rm.response_bytes", "model.max_seq_len"},
          "rm.prefix_bytes + rm.response_bytes = " + v(prefix_bytes + response_bytes) +
              " must be <= model.max_seq_len = " + v(model.max_seq_len));
  require(warmup_steps <= steps, {"rm.warmup_steps", "rm.steps"},
          "rm.warmup_steps = " + v(warmup_steps) + " must be <= rm.steps = " + v(steps));
}

Corruption parse_corruption(const std::string& name) {
  if (const auto c = parse_enum<Corruption>(name)) return *c;
  throw ArgsError({"rm.corruption"}, "rm.corruption = \"" + name + "\": allowed " + names_text<Corruption>("\""));
}

// ---- Pairs --------------------------------------------------------------------

namespace {

constexpr std::string_view kNoiseBytes = "abcdefghijklmnopqrstuvwxyz ";

// Each byte, with probability `rate`, becomes another byte of kNoiseBytes;
// at least one byte changes.
void add_noise(std::vector<int>& response, double rate, Rng& rng) {
  const auto replace = [&](size_t i) {
    int b;
    do b = kNoiseBytes[rng.below(kNoiseBytes.size())];
    while (b == response[i]);
    response[i] = b;
  };
  bool changed = false;
  for (size_t i = 0; i < response.size(); ++i)
    if (rng.uniform() < rate) {
      replace(i);
      changed = true;
    }
  if (!changed) replace(rng.below(response.size()));
}

// The pieces between single spaces, in a Fisher-Yates order, joined by spaces.
void shuffle_words(std::vector<int>& response, Rng& rng) {
  std::vector<std::vector<int>> pieces(1);
  for (int b : response) {
    if (b == ' ') pieces.emplace_back();
    else pieces.back().push_back(b);
  }
  for (size_t i = pieces.size(); i > 1; --i) std::swap(pieces[i - 1], pieces[rng.below(i)]);
  response.clear();
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (i > 0) response.push_back(' ');
    response.insert(response.end(), pieces[i].begin(), pieces[i].end());
  }
}

}  // namespace

PreferencePair make_preference_pair(const std::vector<uint8_t>& text, const RmArgs& a, Corruption kind, Rng& rng) {
  const size_t n = size_t(a.prefix_bytes) + size_t(a.response_bytes);
  if (text.size() < 2 * n)
    throw std::invalid_argument("preference pairs: the text has " + std::to_string(text.size()) +
                                " bytes, fewer than two windows of " + std::to_string(n));
  if (kind == Corruption::Mixed) kind = Corruption(rng.below(3));
  const size_t start = rng.below(text.size() - n + 1);
  PreferencePair p;
  p.kind = kind;
  p.chosen.assign(text.begin() + start, text.begin() + start + n);
  std::vector<int> response(p.chosen.begin() + a.prefix_bytes, p.chosen.end());
  const std::vector<int> original = response;
  if (kind == Corruption::ShuffleWords) {
    shuffle_words(response, rng);
  } else if (kind == Corruption::Splice) {
    const size_t other = rng.below(text.size() - size_t(a.response_bytes) + 1);
    response.assign(text.begin() + other, text.begin() + other + a.response_bytes);
  }
  if (kind == Corruption::Noise || response == original) {
    if (kind != Corruption::Noise) p.kind = Corruption::Noise;
    add_noise(response, a.noise_rate, rng);
  }
  p.rejected.assign(p.chosen.begin(), p.chosen.begin() + a.prefix_bytes);
  p.rejected.insert(p.rejected.end(), response.begin(), response.end());
  return p;
}

std::vector<PreferencePair> train_pairs(const std::vector<uint8_t>& train, const RmArgs& a, int64_t step) {
  std::vector<PreferencePair> pairs;
  for (int i = 0; i < a.pairs_per_step; ++i) {
    Rng rng(a.seed ^ kPreferenceStream, uint64_t(step) * uint64_t(a.pairs_per_step) + uint64_t(i));
    pairs.push_back(make_preference_pair(train, a, a.corruption, rng));
  }
  return pairs;
}

std::vector<PreferencePair> validation_pairs(const std::vector<uint8_t>& val, const RmArgs& a) {
  std::vector<PreferencePair> pairs;
  for (int i = 0; i < a.eval_pairs; ++i) {
    Rng rng(kValidationPreferenceStream, uint64_t(i));
    const Corruption kind = a.corruption == Corruption::Mixed ? Corruption(i % 3) : a.corruption;
    pairs.push_back(make_preference_pair(val, a, kind, rng));
  }
  return pairs;
}

// ---- Bradley-Terry --------------------------------------------------------------

BradleyTerry bradley_terry(const std::vector<double>& chosen, const std::vector<double>& rejected) {
  if (chosen.size() != rejected.size() || chosen.empty())
    throw std::invalid_argument("bradley_terry: needs as many chosen as rejected scores, at least one");
  const size_t P = chosen.size();
  BradleyTerry bt;
  bt.dchosen.resize(P);
  bt.drejected.resize(P);
  for (size_t p = 0; p < P; ++p) {
    const double delta = chosen[p] - rejected[p];
    // -log sigma(delta) = softplus(-delta), stable for either sign
    bt.loss += std::max(-delta, 0.0) + std::log1p(std::exp(-std::abs(delta)));
    const double s = 1.0 / (1.0 + std::exp(delta));  // sigma(-delta)
    bt.dchosen[p] = -s / double(P);
    bt.drejected[p] = s / double(P);
    bt.accuracy += delta > 0 ? 1.0 : 0.0;
    bt.margin += delta;
  }
  bt.loss /= double(P);
  bt.accuracy /= double(P);
  bt.margin /= double(P);
  return bt;
}

// ---- The model --------------------------------------------------------------------

template <class T>
LearnedRewardModel<T>::LearnedRewardModel(const ModelArgs& args)
    : trunk(args), head(size_t(args.dim) + 1, T(0)), head_grad(size_t(args.dim) + 1, T(0)) {}

template <class T> std::vector<ParamRef<T>> LearnedRewardModel<T>::head_refs(std::vector<T>& buffer) {
  const size_t D = size_t(trunk.args.dim);
  return {{"weight", buffer.data(), {1, D}}, {"bias", buffer.data() + D, {1}}};
}

template <class T>
std::vector<double> LearnedRewardModel<T>::score(const std::vector<std::vector<int>>& sequences, Activations<T>& acts) {
  const int B = int(sequences.size());
  if (B == 0) return {};
  size_t L = 0;
  for (const auto& s : sequences) {
    if (s.empty() || int(s.size()) > trunk.args.max_seq_len)
      throw std::invalid_argument("LearnedRewardModel::score: a sequence of " + std::to_string(s.size()) +
                                  " tokens; allowed 1 .. model.max_seq_len = " +
                                  std::to_string(trunk.args.max_seq_len));
    L = std::max(L, s.size());
  }
  std::vector<int> tokens(size_t(B) * L, 0);  // right-padded: causal attention keeps padding out
  last_rows_.resize(B);
  for (int b = 0; b < B; ++b) {
    std::copy(sequences[b].begin(), sequences[b].end(), tokens.begin() + size_t(b) * L);
    last_rows_[b] = int(size_t(b) * L + sequences[b].size() - 1);
  }
  Tensor2<T> x;
  trunk.embed_forward(acts, tokens, B, int(L), x);
  trunk.layers_forward(acts, 0, trunk.params.layers.size(), x);
  trunk.head_forward(acts, std::move(x));
  const int D = trunk.args.dim;
  std::vector<double> r(B);
  for (int b = 0; b < B; ++b) {
    const T* h = &acts.h_final(last_rows_[b], 0);
    double s = head[D];
    for (int d = 0; d < D; ++d) s += double(head[d]) * double(h[d]);
    r[b] = s;
  }
  return r;
}

template <class T> void LearnedRewardModel<T>::score_backward(Activations<T>& acts, const std::vector<double>& dscores) {
  if (dscores.size() != last_rows_.size())
    throw std::invalid_argument("LearnedRewardModel::score_backward: one gradient per scored sequence");
  const int D = trunk.args.dim;
  Tensor2<T> dh;
  assign_zeros(dh, {acts.h_final.shape(0), size_t(D)});
  std::vector<double> dw(size_t(D) + 1, 0.0);
  for (size_t b = 0; b < dscores.size(); ++b) {
    const T* h = &acts.h_final(last_rows_[b], 0);
    T* g = &dh(last_rows_[b], 0);
    for (int d = 0; d < D; ++d) {
      g[d] = T(dscores[b] * head[d]);
      dw[d] += dscores[b] * h[d];
    }
    dw[D] += dscores[b];
  }
  for (int d = 0; d <= D; ++d) head_grad[d] += T(dw[d]);
  Tensor2<T> dx;
  trunk.head_backward(acts, nullptr, dx, &dh);
  trunk.layers_backward(acts, 0, trunk.params.layers.size(), dx);
  trunk.embed_backward(acts, dx);
}

template class LearnedRewardModel<float>;
template class LearnedRewardModel<double>;

// ---- Training -----------------------------------------------------------------------

namespace {

std::vector<double> concat_scores(LearnedRewardModel<float>& m, const std::vector<PreferencePair>& pairs, Activations<float>& acts,
                                  std::vector<double>& chosen, std::vector<double>& rejected) {
  std::vector<std::vector<int>> seqs;  // [x+_0, x-_0, x+_1, x-_1, ...]
  for (const PreferencePair& p : pairs) {
    seqs.push_back(p.chosen);
    seqs.push_back(p.rejected);
  }
  const std::vector<double> r = m.score(seqs, acts);
  chosen.resize(pairs.size());
  rejected.resize(pairs.size());
  for (size_t p = 0; p < pairs.size(); ++p) {
    chosen[p] = r[2 * p];
    rejected[p] = r[2 * p + 1];
  }
  return r;
}

double mean_of(const std::vector<double>& x) {
  return x.empty() ? 0.0 : std::accumulate(x.begin(), x.end(), 0.0) / double(x.size());
}

}  // namespace

RewardModelTrainer::RewardModelTrainer(const ModelArgs& model_args, const RmArgs& a, const ByteCorpus& corpus)
    : args(a), model(model_args), corpus_(corpus) {
  model.trunk.init_weights(args.seed);
  param_segments_ = segments(model.trunk.params.arena());
  grad_segments_ = segments(model.trunk.grads.arena());
  const size_t D = size_t(model_args.dim);
  head_segments_ = {{model.head.data(), D, 2}, {model.head.data() + D, 1, 1}};
  head_grad_segments_ = {{model.head_grad.data(), D, 2}, {model.head_grad.data() + D, 1, 1}};
  optimizer = AdamW<float>(param_segments_);
  head_optimizer = AdamW<float>(head_segments_);
  val_pairs_ = validation_pairs(corpus_.val, args);
}

BradleyTerry RewardModelTrainer::evaluate() {
  // In chunks of P pairs (the training batch), so memory stays that of a step.
  std::vector<double> chosen, rejected, c, r;
  Activations<float> acts;
  const size_t P = size_t(args.pairs_per_step);
  for (size_t i = 0; i < val_pairs_.size(); i += P) {
    const std::vector<PreferencePair> chunk(val_pairs_.begin() + i,
                                            val_pairs_.begin() + std::min(val_pairs_.size(), i + P));
    concat_scores(model, chunk, acts, c, r);
    chosen.insert(chosen.end(), c.begin(), c.end());
    rejected.insert(rejected.end(), r.begin(), r.end());
  }
  BradleyTerry bt = bradley_terry(chosen, rejected);
  for (int k = 0; k < 3; ++k) {  // the accuracy on each kind of corruption present
    double right = 0, n = 0;
    for (size_t p = 0; p < val_pairs_.size(); ++p)
      if (val_pairs_[p].kind == Corruption(k)) {
        right += chosen[p] > rejected[p] ? 1 : 0;
        n += 1;
      }
    if (n > 0) metrics["val_accuracy_" + std::string(name_of(Corruption(k)))].push_back(right / n);
  }
  return bt;
}

RmStepReport RewardModelTrainer::rm_step() {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<PreferencePair> pairs = train_pairs(corpus_.train, args, step);
  model.trunk.zero_grad();
  std::fill(model.head_grad.begin(), model.head_grad.end(), 0.0f);
  std::vector<double> chosen, rejected;
  Activations<float> acts;
  concat_scores(model, pairs, acts, chosen, rejected);
  const BradleyTerry bt = bradley_terry(chosen, rejected);
  std::vector<double> dscores(2 * pairs.size());
  for (size_t p = 0; p < pairs.size(); ++p) {
    dscores[2 * p] = bt.dchosen[p];
    dscores[2 * p + 1] = bt.drejected[p];
  }
  model.score_backward(acts, dscores);
  std::vector<Segment<float>> all_grads = grad_segments_;
  all_grads.insert(all_grads.end(), head_grad_segments_.begin(), head_grad_segments_.end());
  const double norm = global_grad_norm(all_grads);
  clip_grad_norm(all_grads, norm, args.grad_clip);
  const double lr = args.warmup_steps > 0 && step < args.warmup_steps
                        ? args.lr * double(step + 1) / double(args.warmup_steps) : args.lr;
  optimizer.step(param_segments_, grad_segments_, lr, args.adamw);
  head_optimizer.step(head_segments_, head_grad_segments_, lr, args.adamw);
  ++step;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  RmStepReport r;
  r.step = step;
  r.steps = args.steps;
  r.loss = bt.loss;
  r.accuracy = bt.accuracy;
  r.margin = bt.margin;
  r.lr = lr;
  r.grad_norm = norm;
  r.seconds = seconds;
  r.tokens_per_second = double(2 * pairs.size()) * double(args.prefix_bytes + args.response_bytes) / seconds;
  metrics["step"].push_back(double(step));
  metrics["loss"].push_back(bt.loss);
  metrics["accuracy"].push_back(bt.accuracy);
  metrics["margin"].push_back(bt.margin);
  metrics["chosen_score"].push_back(mean_of(chosen));
  metrics["rejected_score"].push_back(mean_of(rejected));
  metrics["lr"].push_back(lr);
  metrics["grad_norm"].push_back(norm);
  metrics["tokens_per_second"].push_back(r.tokens_per_second);
  metrics["step_seconds"].push_back(seconds);
  if ((args.eval_every > 0 && step % args.eval_every == 0) || step == args.steps) {
    const BradleyTerry v = evaluate();
    r.evaluated = true;
    r.val_loss = v.loss;
    r.val_accuracy = v.accuracy;
    metrics["val_step"].push_back(double(step));
    metrics["val_loss"].push_back(v.loss);
    metrics["val_accuracy"].push_back(v.accuracy);
    metrics["val_margin"].push_back(v.margin);
  }
  if (step == args.steps) metrics["peak_rss_mib"].push_back(peak_rss_mib());
  return r;
}

void RewardModelTrainer::run(const std::function<bool(const RmStepReport&)>& on_step) {
  while (step < args.steps) {
    const RmStepReport r = rm_step();
    if (on_step && !on_step(r)) return;
  }
}

}  // namespace dslab
