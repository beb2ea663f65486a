// Rewards (reference/rewards.hpp): the R1 format reward on hand-made
// completions, language consistency on hand cases (and the solver traces against
// the KJV vocabulary when the `bible` program is installed), DAPO's soft overlong
// punishment against its closed form and the paper's own lengths, Kimi k1.5's
// length reward by hand, the weighted total, and reflection word counts.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "reference/args_error.hpp"
#include "reference/rewards.hpp"
#include "reference/tasks.hpp"

namespace dslab {
namespace {

TEST(FormatReward, HandCases) {
  for (const char* good : {"<think>a</think><answer>b</answer>", " \n<think>\n</think>\n<answer> 3 </answer>\n\t",
                           "<think></think><answer>b</answer>", "<think>a<b>c</think> <answer>x</y></answer>"})
    EXPECT_EQ(format_reward(good), 1.0) << good;
  for (const char* bad : {"", "<think>a</think>", "<answer>b</answer>", "x<think>a</think><answer>b</answer>",
                          "<think>a</think>x<answer>b</answer>", "<think>a</think><answer>b</answer>x",
                          "<think>a</think><answer> \n</answer>", "<think>a</think><answer></answer>",
                          "<answer>b</answer><think>a</think>", "</think><think>a<answer>b</answer>",
                          "<think>a</think><answer>b</answer><answer>b</answer>",
                          "<think>a<think>b</think><answer>c</answer>", "<think>a</think></think><answer>c</answer>",
                          "<think>a</think><answer>b</answer></answer>", "<think>a</think><answer>b<answer></answer>",
                          "<think>a</think><answer>b", "<THINK>a</THINK><ANSWER>b</ANSWER>",
                          "<think>a</think><answer>b</answer>\x01"})
    EXPECT_EQ(format_reward(bad), 0.0) << bad;
}

TEST(Words, LettersOnlyCaseFoldedNonAsciiKept) {
  EXPECT_EQ(words_of("In the Beginning, GOD's 2nd x9y"),
            (std::vector<std::string>{"in", "the", "beginning", "god", "s", "nd", "x", "y"}));
  EXPECT_EQ(words_of("caf\xc3\xa9 \xe4\xb8\xad"), (std::vector<std::string>{"caf\xc3\xa9", "\xe4\xb8\xad"}));
  EXPECT_TRUE(words_of("12+3=15\n").empty());
}

TEST(LanguageConsistency, HandCases) {
  const Vocabulary v = Vocabulary::from_text("In the beginning God created the heaven and the earth. caf\xc3\xa9");
  EXPECT_EQ(v.size(), 8u);  // in the beginning god created heaven and earth; not the non-ASCII word
  EXPECT_FALSE(v.contains("caf\xc3\xa9"));
  EXPECT_EQ(language_consistency("<think>The earth and THE heaven</think><answer>1</answer>", v), 1.0);
  EXPECT_EQ(language_consistency("<think>the earth, la terre</think>", v), 0.5);
  EXPECT_EQ(language_consistency("<think>the earth \xe5\x9c\xb0\xe7\x90\x83</think>", v), 2.0 / 3.0);
  EXPECT_EQ(language_consistency("<think>12+3=15</think>", v), 1.0);  // no words
  EXPECT_EQ(language_consistency("<think></think>", v), 1.0);
  EXPECT_EQ(language_consistency("the earth <answer>x</answer>", v), 0.0);  // no think
  EXPECT_EQ(language_consistency("<think>God created</think> gibberish words", v), 1.0);  // only the CoT
  EXPECT_EQ(language_consistency("<think>God created zzz", v), 2.0 / 3.0);  // truncated
  const Vocabulary twice = Vocabulary::from_text("a a b c c c", 2);
  EXPECT_TRUE(twice.contains("a"));
  EXPECT_FALSE(twice.contains("b"));
  EXPECT_TRUE(twice.contains("c"));
}

// The solver traces are written in words of the KJV (so, carry): full language
// consistency against the real corpus.
TEST(LanguageConsistency, SolverTracesAreKjvWords) {
  if (!std::filesystem::exists("/usr/bin/bible")) GTEST_SKIP() << "/usr/bin/bible (package bible-kjv) is missing";
  FILE* pipe = popen("/usr/bin/bible 'Genesis 1:1-Revelation 22:21' 2>/dev/null", "r");
  ASSERT_NE(pipe, nullptr);
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, n);
  pclose(pipe);
  ASSERT_GT(text.size(), 4000000u);
  const Vocabulary kjv = Vocabulary::from_text(text, 2);
  EXPECT_GT(kjv.size(), 5000u);  // 8619 words seen at least twice
  EXPECT_FALSE(kjv.contains("digit"));
  for (TaskKind kind : enum_values<TaskKind>()) {
    TaskArgs a;
    a.kind = kind;
    for (uint64_t i = 0; i < 50; ++i)
      EXPECT_EQ(language_consistency(solution_trace(make_problem(a, 1, i)), kjv), 1.0);
  }
  EXPECT_LT(language_consistency("<think>add the digits, then carry</think>", kjv), 1.0);
}

// DAPO's R_length: 0, then linear to -1 over the last L_cache bytes, then -1.
double overlong_closed_form(double len, double lmax, double lcache) {
  if (len > lmax) return -1.0;
  return std::min(0.0, (lmax - lcache - len) / lcache);
}

TEST(OverlongPenalty, ClosedFormAndDapoLengths) {
  // DAPO's setting: L_max = 20480, L_cache = 4096 (expected length 16384).
  EXPECT_EQ(overlong_penalty(16384, 20480, 4096), 0.0);
  EXPECT_EQ(overlong_penalty(18432, 20480, 4096), -0.5);
  EXPECT_EQ(overlong_penalty(20480, 20480, 4096), -1.0);
  EXPECT_EQ(overlong_penalty(20481, 20480, 4096), -1.0);
  EXPECT_EQ(overlong_penalty(17408, 20480, 4096), -0.25);
  for (int lmax : {1, 7, 128, 256})
    for (int lcache : {1, 3, lmax / 2, lmax})
      for (size_t len = 0; len < size_t(2 * lmax + 3); ++len) {
        if (lcache < 1) continue;
        EXPECT_NEAR(overlong_penalty(len, lmax, lcache), overlong_closed_form(double(len), lmax, lcache), 1e-15)
            << len << " " << lmax << " " << lcache;
      }
  // L_cache = 0: a step at L_max.
  EXPECT_EQ(overlong_penalty(128, 128, 0), 0.0);
  EXPECT_EQ(overlong_penalty(129, 128, 0), -1.0);
}

TEST(KimiLengthReward, HandCases) {
  // lambda = 0.5 - (len - 10) / 20: 0.5, 0, -0.5, 0.25.
  EXPECT_EQ(kimi_length_rewards({10, 20, 30, 15}, {true, false, true, false}),
            (std::vector<double>{0.5, 0.0, -0.5, 0.0}));
  EXPECT_EQ(kimi_length_rewards({10, 30, 15}, {false, false, true}), (std::vector<double>{0.0, -0.5, 0.25}));
  EXPECT_EQ(kimi_length_rewards({5, 5}, {true, false}), (std::vector<double>{0.0, 0.0}));
  EXPECT_TRUE(kimi_length_rewards({}, {}).empty());
  EXPECT_THROW(kimi_length_rewards({1}, {}), std::invalid_argument);
}

TEST(RewardArgs, EachBrokenRuleNamesItsKey) {
  const auto key = [](const RewardArgs& a) {
    try {
      a.validate();
    } catch (const ArgsError& e) {
      return e.keys().front();
    }
    return std::string();
  };
  EXPECT_EQ(key(RewardArgs{}), "");
  RewardArgs a;
  a.format = -1;
  EXPECT_EQ(key(a), "reward.format");
  a = {};
  a.language = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(key(a), "reward.language");
  a = {};
  a.overlong = std::numeric_limits<double>::infinity();
  EXPECT_EQ(key(a), "reward.overlong");
  a = {};
  a.max_length = 0;
  EXPECT_EQ(key(a), "reward.max_length");
  a = {};
  a.cache_length = a.max_length + 1;
  EXPECT_EQ(key(a), "reward.cache_length");
  a = {};
  a.cache_length = -1;
  EXPECT_EQ(key(a), "reward.cache_length");
}

TEST(Score, WeightedTotalOfEachPart) {
  Problem p;
  p.kind = TaskKind::Addition;
  p.numbers = {457, 68};
  p.target = 525;
  const Vocabulary v = Vocabulary::from_text("carry the");
  RewardArgs a;
  a.accuracy = 1.0, a.format = 0.25, a.language = 0.5, a.overlong = 2.0, a.max_length = 50, a.cache_length = 20;
  const std::string c = "<think>carry the zzz</think><answer>525</answer>";
  ASSERT_EQ(c.size(), 48u);
  const RewardParts r = score(p, c, a, &v);
  EXPECT_EQ(r.accuracy, 1.0);
  EXPECT_EQ(r.format, 1.0);
  EXPECT_EQ(r.language, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.overlong, -0.9);  // (30 - 48) / 20
  EXPECT_DOUBLE_EQ(r.total, 1.0 + 0.25 + 0.5 * 2.0 / 3.0 - 2.0 * 0.9);
  const RewardParts wrong = score(p, "<think>x</think><answer>524</answer> trailing", a, &v);
  EXPECT_EQ(wrong.accuracy, 0.0);
  EXPECT_EQ(wrong.format, 0.0);
  EXPECT_EQ(wrong.language, 0.0);  // x is not a word of v
  EXPECT_EQ(wrong.overlong, -0.75);  // 45 bytes: (30 - 45) / 20
  EXPECT_THROW(score(p, c, a, nullptr), std::invalid_argument);
  a.language = 0;
  EXPECT_EQ(score(p, c, a, nullptr).language, 0.0);
  // The group adds Kimi's length reward.
  a.length = 1.0;
  const std::vector<std::string> group = {c, "<answer>525</answer>", "<answer>5</answer>"};  // 48, 20, 18
  const std::vector<RewardParts> g = score_group(p, group, a, nullptr);
  ASSERT_EQ(g.size(), 3u);
  EXPECT_DOUBLE_EQ(g[0].length, 0.5 - 30.0 / 30.0);
  EXPECT_DOUBLE_EQ(g[1].length, 0.5 - 2.0 / 30.0);
  EXPECT_DOUBLE_EQ(g[2].length, 0.0);  // wrong: min(0, 0.5)
  for (size_t i = 0; i < g.size(); ++i) {
    const RewardParts s = score(p, group[i], a, nullptr);
    EXPECT_DOUBLE_EQ(g[i].total, s.total + g[i].length);
  }
}

TEST(ReflectionCounts, WholeWordsInTheThinkTextOnly) {
  const ReflectionCounts r = reflection_counts(
      "<think>Wait, let me check again. WAIT! checked rechecked recheck Mistake; verify-verify awaiting"
      "</think><answer>wait check</answer>");
  const std::array<int, 6> expected = {2, 1, 1, 2, 1, 1};  // wait check again verify recheck mistake
  EXPECT_EQ(r.counts, expected);
  EXPECT_EQ(r.total(), 8);
  EXPECT_EQ(reflection_counts("wait wait").total(), 0);
  EXPECT_EQ(reflection_counts("<think>wait, wait").total(), 2);
}

}  // namespace
}  // namespace dslab
