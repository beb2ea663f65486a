#include "reference/rewards.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "reference/args_error.hpp"

namespace dslab {

namespace {

bool is_word_byte(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }
bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t count(std::string_view s, std::string_view what) {
  size_t n = 0;
  for (size_t pos = s.find(what); pos != std::string_view::npos; pos = s.find(what, pos + 1)) ++n;
  return n;
}

}  // namespace

std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_word_byte(c)) {
      word += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : ch;
    } else if (!word.empty()) {
      out.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) out.push_back(std::move(word));
  return out;
}

Vocabulary Vocabulary::from_text(std::string_view text, int min_count) {
  std::unordered_map<std::string, int> counts;
  for (std::string& w : words_of(text)) ++counts[std::move(w)];
  Vocabulary v;
  for (const auto& [w, n] : counts) {
    const bool ascii = std::all_of(w.begin(), w.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii && n >= min_count) v.words_.insert(w);
  }
  return v;
}

double accuracy_reward(const Problem& p, std::string_view completion) {
  const auto answer = answer_text(completion);
  return answer && verify_answer(p, *answer) ? 1.0 : 0.0;
}

double format_reward(std::string_view c) {
  for (std::string_view tag : {"<think>", "</think>", "<answer>", "</answer>"})
    if (count(c, tag) != 1) return 0.0;
  size_t pos = 0;
  const auto skip_ws = [&] {
    while (pos < c.size() && is_ws(c[pos])) ++pos;
  };
  const auto eat = [&](std::string_view lit) {
    if (c.substr(pos, lit.size()) != lit) return false;
    pos += lit.size();
    return true;
  };
  skip_ws();
  if (!eat("<think>")) return 0.0;
  const size_t think_close = c.find("</think>");
  if (think_close < pos) return 0.0;
  pos = think_close + 8;
  skip_ws();
  if (!eat("<answer>")) return 0.0;
  const size_t answer_begin = pos;
  const size_t close = c.find("</answer>");
  if (close < answer_begin) return 0.0;
  const std::string_view answer = c.substr(answer_begin, close - answer_begin);
  if (std::all_of(answer.begin(), answer.end(), is_ws)) return 0.0;
  pos = close + 9;
  skip_ws();
  return pos == c.size() ? 1.0 : 0.0;
}

double language_consistency(std::string_view completion, const Vocabulary& vocab) {
  const auto think = think_text(completion);
  if (!think) return 0.0;
  const std::vector<std::string> words = words_of(*think);
  if (words.empty()) return 1.0;
  size_t in = 0;
  for (const std::string& w : words) in += vocab.contains(w);
  return double(in) / double(words.size());
}

double overlong_penalty(size_t length, int max_length, int cache_length) {
  const double len = double(length), lmax = double(max_length), lcache = double(cache_length);
  if (len <= lmax - lcache) return 0.0;
  if (len <= lmax) return ((lmax - lcache) - len) / lcache;
  return -1.0;
}

std::vector<double> kimi_length_rewards(const std::vector<size_t>& lengths, const std::vector<bool>& correct) {
  if (lengths.size() != correct.size())
    throw std::invalid_argument("kimi_length_rewards: " + std::to_string(lengths.size()) + " lengths and " +
                                std::to_string(correct.size()) + " verdicts");
  std::vector<double> out(lengths.size(), 0.0);
  if (lengths.empty()) return out;
  const auto [lo, hi] = std::minmax_element(lengths.begin(), lengths.end());
  if (*lo == *hi) return out;
  for (size_t i = 0; i < lengths.size(); ++i) {
    const double lambda = 0.5 - double(lengths[i] - *lo) / double(*hi - *lo);
    out[i] = correct[i] ? lambda : std::min(0.0, lambda);
  }
  return out;
}

void RewardArgs::validate() const {
  const auto v = [](auto x) { return value_text(x); };
  const std::array<std::pair<const char*, double>, 6> weights = {{{"accuracy", accuracy},
                                                                  {"format", format},
                                                                  {"language", language},
                                                                  {"overlong", overlong},
                                                                  {"length", length},
                                                                  {"preference", preference}}};
  for (const auto& [name, w] : weights)
    require(std::isfinite(w) && w >= 0, {std::string("reward.") + name},
            std::string("reward.") + name + " = " + v(w) + " must be a finite weight >= 0");
  require(max_length >= 1, {"reward.max_length"}, "reward.max_length = " + v(max_length) + " must be >= 1");
  require(cache_length >= 0 && cache_length <= max_length, {"reward.cache_length", "reward.max_length"},
          "reward.cache_length = " + v(cache_length) + " must be in 0..reward.max_length = " + v(max_length));
}

RewardParts score(const Problem& p, std::string_view completion, const RewardArgs& a, const Vocabulary* vocab) {
  if (a.language != 0 && !vocab)
    throw std::invalid_argument("score: reward.language = " + value_text(a.language) + " needs a vocabulary");
  RewardParts r;
  r.accuracy = accuracy_reward(p, completion);
  r.format = format_reward(completion);
  if (vocab) r.language = language_consistency(completion, *vocab);
  r.overlong = overlong_penalty(completion.size(), a.max_length, a.cache_length);
  r.total = a.accuracy * r.accuracy + a.format * r.format + a.language * r.language + a.overlong * r.overlong;
  return r;
}

std::vector<RewardParts> score_group(const Problem& p, const std::vector<std::string>& completions,
                                     const RewardArgs& a, const Vocabulary* vocab) {
  std::vector<RewardParts> out;
  std::vector<size_t> lengths;
  std::vector<bool> correct;
  for (const std::string& c : completions) {
    out.push_back(score(p, c, a, vocab));
    lengths.push_back(c.size());
    correct.push_back(out.back().accuracy == 1.0);
  }
  if (a.length != 0) {
    const std::vector<double> k = kimi_length_rewards(lengths, correct);
    for (size_t i = 0; i < out.size(); ++i) {
      out[i].length = k[i];
      out[i].total += a.length * k[i];
    }
  }
  return out;
}

int ReflectionCounts::total() const {
  int n = 0;
  for (int c : counts) n += c;
  return n;
}

ReflectionCounts reflection_counts(std::string_view completion) {
  ReflectionCounts r;
  const auto think = think_text(completion);
  if (!think) return r;
  for (const std::string& w : words_of(*think))
    for (size_t i = 0; i < r.words.size(); ++i)
      if (w == r.words[i]) ++r.counts[i];
  return r;
}

}  // namespace dslab
