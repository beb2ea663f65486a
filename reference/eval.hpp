// Evaluation by sampling (review Sec. 2.6; DeepSeekMath Sec. 5.2.2 compares
// models by Pass@K and Maj@K), and rejection sampling (R1 stage 3: keep the
// correct, readable responses of many samples as SFT data).
//   pass@k  the chance that at least one of k samples is correct, estimated
//           without bias from n >= k samples of which c are correct
//           (Chen et al. 2021, "Evaluating Large Language Models Trained on
//           Code", Eq. (1)):  pass@k = 1 - C(n - c, k) / C(n, k)
//   maj@k   the chance that the majority answer of k samples is correct: the
//           n samples are cut into floor(n / k) disjoint runs of k (in sample
//           order) and each run votes; the estimate is the share of runs whose
//           winning answer is correct.
// Votes: each sample's <answer> text is reduced to a key (answer_key) so that
// answers that mean the same vote together; a sample without an <answer>
// abstains; a run where every sample abstains counts as wrong; a tie goes to
// the answer that reached the tied count first in sample order.
// Determinism: sample j of problem i draws from stream i * n + j of
// Rng(seed, 0) (rollout.hpp's sample_sequences), so the numbers do not depend
// on eval.batch, on OMP_NUM_THREADS or on how many problems are evaluated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reference/rewards.hpp"
#include "reference/rollout.hpp"
#include "reference/tasks.hpp"
#include "reference/transformer.hpp"

namespace dslab {

// Chen et al.'s unbiased estimator; 0 <= c <= n, 1 <= k <= n. Computed as
// 1 - prod_{i = n-c+1}^{n} (1 - k / i), exact to rounding.
double pass_at_k(int n, int c, int k);

// The vote of one answer text: Countdown: for a valid expression
// "=" value "|" its literals sorted ("=18|3,7,25": the same numbers reaching the
// same value; such answers are all right or all wrong), otherwise the text with
// ASCII whitespace trimmed; Addition: the digits without leading zeros when the
// text is one or more digits, otherwise the trimmed text.
std::string answer_key(const Problem& p, std::string_view answer);

// One sample as a vote: its key (nullopt: no <answer>, abstains) and whether it is correct.
struct Vote {
  std::optional<std::string> key;
  bool correct = false;
};

// maj@k over `votes` (one problem's n samples in order); 1 <= k <= votes.size().
double maj_at_k(const std::vector<Vote>& votes, int k);

// 1, 2, 4, ... up to n, and n itself: the k of pass@k and maj@k.
std::vector<int> k_values(int n);

// Config section [eval].
inline constexpr int kValBatchSize = 16;  // eval.val_batches' windows per batch (kjv_small.toml's batch_size)

struct EvalArgs {
  std::string init;            // the result whose weights are evaluated; "": fresh weights of seed
  int problems = 64;           // M problems, make_problem(task, task_seed, 0 .. M-1)
  int samples = 64;            // n samples per problem (rollout.group_size is not used)
  uint64_t seed = 1;           // the sampling streams (and fresh weights)
  uint64_t task_seed = 1000;   // the problem stream; rl.task_seed (default 1) is the RL prompts'
  int batch = 8;               // problems sampled together (memory and speed only)
  double keep_language = 0;    // a kept pair needs language consistency >= this (0: any)
  int keep_per_problem = 0;    // at most this many kept pairs per problem (0: every distinct one)
  int val_batches = 8;         // validation loss on the text of [data] (dslab train's val_loss
                               // with batch_size kValBatchSize, seq_len max_seq_len); 0: none
  // Throws ArgsError naming "eval.<field>".
  void validate() const;
};

// A prompt and response kept by rejection sampling: correct, in format, and
// readable (language >= keep_language); duplicates of a response kept earlier
// for the same problem are dropped.
struct SftPair {
  std::string prompt;    // r1_prompt(problem)
  std::string response;  // the sampled completion, as sampled
};

struct EvalResult {
  std::vector<int> k;                        // k_values(n)
  std::vector<double> pass_at_k, maj_at_k;   // [k.size()], means over the problems
  std::vector<int> correct;                  // [M] correct samples per problem
  std::vector<std::string> prompts;          // [M] r1_prompt of each problem
  // Means over all M * n samples.
  double accuracy = 0, format_rate = 0, language = 0, response_length = 0, reflection_words = 0;
  double stopped = 0;                        // share that ended with a stop string
  std::vector<SftPair> pairs;                // kept by rejection sampling, problem by problem
  std::vector<int> pair_problem;             // [pairs.size()] the problem each answers
  size_t tokens = 0;                         // sampled tokens
  double sample_seconds = 0;
};

// Samples n completions of each of the M problems from `model` and scores them
// with the task's verifier and rewards.hpp's format and language rules. `vocab`
// (the target language of language consistency) may be null: language is then
// 0 and keep_language must be 0. Throws ArgsError for bad args.
EvalResult evaluate(Transformer<float>& model, const TaskArgs& task, const RolloutArgs& rollout,
                    const EvalArgs& args, const Vocabulary* vocab);

}  // namespace dslab
