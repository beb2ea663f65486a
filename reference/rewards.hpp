// Rule-based rewards of DeepSeek-R1 (Sec. 2.6 of the review) and two length
// terms of later recipes, over byte completions (reference/tasks.hpp):
//   accuracy   R1-Zero's accuracy reward: the verifier on the <answer> text, {0, 1}
//   format     R1-Zero's format reward: the <think>/<answer> template, {0, 1}
//   language   R1's language-consistency reward: share of target-language words in the CoT
//   overlong   DAPO's soft overlong punishment (arXiv 2503.14476, "Overlong Reward Shaping"), [-1, 0]
//   length     Kimi k1.5's length reward within a group (arXiv 2501.12599, "Length Penalty"), [-0.5, 0.5]
// Lengths are in bytes (= tokens of the byte-level model). docs/tasks.md says more.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "reference/tasks.hpp"

namespace dslab {

// A "word" is a maximal run of bytes that are ASCII letters or >= 0x80 (so text
// in another script makes words too); ASCII letters are case-folded to lower
// case. Digits, punctuation, whitespace and control bytes separate words.
std::vector<std::string> words_of(std::string_view text);

// The target language: the words of a corpus (the KJV text) seen at least
// min_count times, ASCII words only (a word with a byte >= 0x80 is never in it).
class Vocabulary {
 public:
  static Vocabulary from_text(std::string_view text, int min_count = 1);
  bool contains(std::string_view word) const { return words_.count(std::string(word)) > 0; }
  size_t size() const { return words_.size(); }

 private:
  std::unordered_set<std::string> words_;
};

// 1 iff answer_text(completion) exists and verify_answer accepts it, else 0.
// (Needs only the one <answer> block, not the whole template.)
double accuracy_reward(const Problem& p, std::string_view completion);

// 1 iff the completion is, byte for byte,
//   ws* "<think>" T "</think>" ws* "<answer>" A "</answer>" ws*
// with ws one of ' ' '\t' '\n' '\r', T and A free of the four tags, and A not
// blank; the completion may end right after "</answer>". Else 0.
double format_reward(std::string_view completion);

// Share of words of think_text(completion) that are in `vocab`: R1's "proportion
// of target language words in the CoT". 0 without a "<think>"; 1 when the think
// text has no word (nothing in another language).
double language_consistency(std::string_view completion, const Vocabulary& vocab);

// DAPO's soft overlong punishment of a response of `length` bytes:
//   0 if length <= max_length - cache_length,
//   ((max_length - cache_length) - length) / cache_length if length <= max_length,
//   -1 beyond max_length.
double overlong_penalty(size_t length, int max_length, int cache_length);

// Kimi k1.5's length reward for the responses of one group: with
// lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len), reward lambda_i for a
// correct response and min(0, lambda_i) for a wrong one; all 0 when every length
// is the same.
std::vector<double> kimi_length_rewards(const std::vector<size_t>& lengths, const std::vector<bool>& correct);

// Config section [reward]: the weights of the parts in the total, and DAPO's lengths.
struct RewardArgs {
  double accuracy = 1.0;   // R1-Zero: accuracy + format
  double format = 1.0;
  double language = 0.0;   // R1 adds the language-consistency reward
  double overlong = 0.0;   // DAPO's soft punishment, off by default
  double length = 0.0;     // Kimi k1.5's group length reward (score_group only)
  int max_length = 256;    // L_max, bytes
  int cache_length = 64;   // L_cache, bytes; 0 <= cache_length <= max_length
  // R1 stage 4: the general prompts (rl.general_prompts) are scored by a learned
  // reward model (reference/reward_model.hpp), weight `preference`.
  std::string model;       // a dslab reward result (read by the caller); "": none
  double preference = 1.0;
  // Throws ArgsError naming "reward.<field>": weights (preference too) finite and >= 0,
  // max_length >= 1, 0 <= cache_length <= max_length.
  void validate() const;
};

struct RewardParts {
  double accuracy = 0, format = 0, language = 0, overlong = 0, length = 0;
  double total = 0;  // sum of each part times its weight
};

// Every part of one completion (length stays 0) and the weighted total.
// `vocab` may be null when args.language == 0 (language then stays 0); throws
// std::invalid_argument when it is null and the weight is not.
RewardParts score(const Problem& p, std::string_view completion, const RewardArgs& args, const Vocabulary* vocab);

// score() for each completion of one group, plus the Kimi length reward
// (correct = accuracy 1) when args.length != 0.
std::vector<RewardParts> score_group(const Problem& p, const std::vector<std::string>& completions,
                                     const RewardArgs& args, const Vocabulary* vocab);

// Reflection words in the think text, whole words, case-insensitive ("checked"
// is not "check"); all 0 without a "<think>".
struct ReflectionCounts {
  static constexpr std::array<std::string_view, 6> words = {"wait", "check", "again", "verify", "recheck", "mistake"};
  std::array<int, 6> counts{};  // counts[i] for words[i]
  int total() const;
};
ReflectionCounts reflection_counts(std::string_view completion);

}  // namespace dslab
