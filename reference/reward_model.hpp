// A learned scalar reward model, for R1's stage 4 (review Sec. 2.6: for general
// data "reward models to capture human preferences"; DeepSeek-V3 Sec. 5.2.1,
// "model-based RM"), in the form of InstructGPT (Ouyang et al. 2022, Sec. 3.5)
// and TRL's RewardTrainer (trl/trainer/reward_trainer.py):
//   r(x) = w . h_final[last token of x] + b          h_final = norm(x_final)  [D]
// on a transformer trunk (a language model's weights; its LM head is unused),
// trained on preference pairs (x+, x-) by the Bradley-Terry loss
//   L = -1/P sum_p log sigma(r(x+_p) - r(x-_p))
//   dL/dr(x+_p) = -sigma(-Delta_p) / P,   dL/dr(x-_p) = +sigma(-Delta_p) / P,   Delta_p = r(x+_p) - r(x-_p)
// (TRL: -logsigmoid(rewards_chosen - rewards_rejected).mean()).
//
// The pairs are made from a corpus, no person involved: x+ is a window of the
// text (prefix_bytes of prompt, response_bytes of its own continuation), x- the
// same prompt with the continuation corrupted (Corruption). So the model learns
// "reads like the corpus" — a proxy a policy can exploit (reward hacking).
//
// Shapes: B sequences, right-padded to the longest, L; D = dim.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "reference/adamw.hpp"
#include "reference/data.hpp"
#include "reference/enum_names.hpp"
#include "reference/trainer.hpp"
#include "reference/transformer.hpp"

namespace dslab {

// How a rejected continuation is made from the chosen one (same length):
//   shuffle_words  the continuation's space-separated pieces in a random order
//   noise          each byte replaced, with probability noise_rate, by another of "a".."z", " "
//   splice         the continuation of another window of the text (fluent, but not this prompt's)
//   mixed          one of the three, uniformly, per pair (validation: in turn)
enum class Corruption { ShuffleWords, Noise, Splice, Mixed };
template <> struct EnumNames<Corruption> {
  static constexpr std::array<std::string_view, 4> names = {"shuffle_words", "noise", "splice", "mixed"};
};

// Config section [rm] of dslab reward.
struct RmArgs {
  int64_t steps = 300;
  int pairs_per_step = 16;       // P
  int prefix_bytes = 32;         // the prompt of each pair
  int response_bytes = 64;       // the continuation scored after it
  Corruption corruption = Corruption::Mixed;
  double noise_rate = 0.15;      // noise: the share of bytes replaced
  double lr = 1e-4;              // constant after a linear warm-up
  int64_t warmup_steps = 10;
  AdamWArgs adamw{.weight_decay = 0.0};  // rm.weight_decay
  double grad_clip = 1.0;
  uint64_t seed = 1;             // the pairs; the trunk's weights when init is empty
  std::string init;              // a result whose model weights start the trunk (read by the caller); "": fresh
  int64_t eval_every = 50;
  int eval_pairs = 240;          // held-out pairs from the validation split
  int64_t checkpoint_every = 100;
  // prefix_bytes + response_bytes <= model.max_seq_len, warmup_steps <= steps. Throws ArgsError.
  void validate(const ModelArgs& model) const;
};

Corruption parse_corruption(const std::string& name);  // throws ArgsError("rm.corruption")

struct PreferencePair {
  std::vector<int> chosen, rejected;  // [prefix_bytes + response_bytes] byte tokens each
  Corruption kind = Corruption::Noise;  // how `rejected` was made (never Mixed)
};

// A pair from `text`, every draw from `rng`: a window start uniform over the
// text, then the corruption `kind` (Mixed: drawn first). The rejected
// continuation always differs from the chosen one in at least one byte
// (a shuffle or splice that changes nothing falls back to noise). Throws
// std::invalid_argument when the text is shorter than two windows.
PreferencePair make_preference_pair(const std::vector<uint8_t>& text, const RmArgs& a, Corruption kind, Rng& rng);

// The step's pairs: pair i of step s from Rng(seed ^ kPreferenceStream, s * P + i).
constexpr uint64_t kPreferenceStream = 0x707265660000;  // "pref"
std::vector<PreferencePair> train_pairs(const std::vector<uint8_t>& train, const RmArgs& a, int64_t step);
// The held-out pairs: pair i from Rng(kValidationPreferenceStream, i) on the
// validation split; with Mixed, pair i's kind is shuffle_words, noise, splice in turn.
constexpr uint64_t kValidationPreferenceStream = 0x76616C707265;
std::vector<PreferencePair> validation_pairs(const std::vector<uint8_t>& val, const RmArgs& a);

// The Bradley-Terry loss of scores r(x+_p), r(x-_p)   [P] each, with its gradient.
struct BradleyTerry {
  double loss = 0;      // -1/P sum log sigma(Delta)
  double accuracy = 0;  // share of pairs with Delta > 0
  double margin = 0;    // mean Delta
  std::vector<double> dchosen, drejected;  // [P] dL/dr
};
BradleyTerry bradley_terry(const std::vector<double>& chosen, const std::vector<double>& rejected);

template <class T> class LearnedRewardModel {
 public:
  explicit LearnedRewardModel(const ModelArgs& args);  // head w = 0, b = 0

  // r of each sequence (its own length, >= 1 token; at most max_seq_len). The
  // forward is kept in `acts` for score_backward.
  std::vector<double> score(const std::vector<std::vector<int>>& sequences, Activations<T>& acts);
  // Adds dL/d parameters into trunk.grads and head_grad, given dL/dr [B] of the
  // last score() on `acts` (the trunk's last use of those weights).
  void score_backward(Activations<T>& acts, const std::vector<double>& dscores);

  // "weight" [1, D] and "bias" [1] of the head (or of head_grad), for files.
  std::vector<ParamRef<T>> head_refs(std::vector<T>& buffer);

  Transformer<T> trunk;
  std::vector<T> head, head_grad;  // [D + 1]: w, then b

 private:
  std::vector<int> last_rows_;  // [B] row b*L + len_b - 1 of the last score()
};

// What one step did.
struct RmStepReport {
  int64_t step = 0, steps = 0;
  double loss = 0, accuracy = 0, margin = 0, lr = 0, grad_norm = 0, tokens_per_second = 0, seconds = 0;
  bool evaluated = false;
  double val_loss = 0, val_accuracy = 0;
};

// The training loop: for each step, train_pairs -> score the 2P sequences in
// one batch -> Bradley-Terry -> backward -> clip (one global norm over the
// trunk and the head) -> AdamW (the trunk's and the head's, same arguments). Every eval_every steps and at the last: val_loss, val_accuracy and
// val_accuracy_<kind> on validation_pairs. Metrics as dslab train's: columns
// step, loss, accuracy, margin, chosen_score, rejected_score, lr, grad_norm,
// tokens_per_second, step_seconds; val_step, val_*; peak_rss_mib at the last.
class RewardModelTrainer {
 public:
  // The trunk starts from init_weights(args.seed); a caller loading rm.init
  // overwrites model.trunk's weights.
  RewardModelTrainer(const ModelArgs& model_args, const RmArgs& args, const ByteCorpus& corpus);
  RewardModelTrainer(const RewardModelTrainer&) = delete;  // it keeps views of its model's arenas
  RewardModelTrainer& operator=(const RewardModelTrainer&) = delete;

  void run(const std::function<bool(const RmStepReport&)>& on_step);
  RmStepReport rm_step();
  // Loss and accuracy on the held-out pairs (recorded as val_* by rm_step).
  BradleyTerry evaluate();

  RmArgs args;
  LearnedRewardModel<float> model;
  AdamW<float> optimizer, head_optimizer;  // the trunk's arena; the head
  int64_t step = 0;
  Metrics metrics;

 private:
  const ByteCorpus& corpus_;
  std::vector<PreferencePair> val_pairs_;
  std::vector<Segment<float>> param_segments_, grad_segments_, head_segments_, head_grad_segments_;
};

}  // namespace dslab
