// Tasks (reference/tasks.hpp): the Countdown and addition verifiers on hand-made
// answers, malformed completions and garbage bytes; generator properties over
// thousands of seeds (prompts parse back, every Countdown problem is solvable,
// solver traces verify and get full format and process rewards, problems depend
// on (seed, index) only); and the Countdown verifier against an independent
// oracle (tests/oracle/countdown_oracle.py: Python's ast and fractions.Fraction).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "reference/args_error.hpp"
#include "reference/rewards.hpp"
#include "reference/tasks.hpp"
#include "reference/tensor.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

Problem countdown(std::vector<int64_t> numbers, int64_t target, NumberUse use = NumberUse::ExactlyOnce) {
  Problem p;
  p.kind = TaskKind::Countdown;
  p.use = use;
  p.numbers = std::move(numbers);
  p.target = target;
  return p;
}

Problem addition(int64_t a, int64_t b) {
  Problem p;
  p.kind = TaskKind::Addition;
  p.numbers = {a, b};
  p.target = a + b;
  return p;
}

std::string wrap(const std::string& answer) { return "<think>x</think><answer>" + answer + "</answer>"; }

std::vector<std::string> keys_of(const TaskArgs& a) {
  try {
    a.validate();
  } catch (const ArgsError& e) {
    return e.keys();
  }
  return {};
}

TEST(TaskArgs, EachBrokenRuleNamesItsKey) {
  EXPECT_TRUE(keys_of(TaskArgs{}).empty());
  const auto names = [](const TaskArgs& a) {
    const auto k = keys_of(a);
    return k.empty() ? std::string() : k.front();
  };
  TaskArgs a;
  a.n_numbers = 1;
  EXPECT_EQ(names(a), "task.n_numbers");
  a.n_numbers = 7;
  EXPECT_EQ(names(a), "task.n_numbers");
  a = {};
  a.min_number = 0;
  EXPECT_EQ(names(a), "task.min_number");
  a = {};
  a.min_number = 50, a.max_number = 40;
  EXPECT_EQ(names(a), "task.min_number");
  a = {};
  a.max_target = -1, a.min_target = -2;
  EXPECT_EQ(names(a), "task.min_target");
  a = {};
  a.max_digits = 13;
  EXPECT_EQ(names(a), "task.min_digits");
  a = {};
  a.min_digits = 0;
  EXPECT_EQ(names(a), "task.min_digits");
  EXPECT_EQ(parse_task_kind("addition"), TaskKind::Addition);
  EXPECT_EQ(parse_number_use("at_most_once"), NumberUse::AtMostOnce);
  try {
    parse_task_kind("sudoku");
    ADD_FAILURE() << "no throw";
  } catch (const ArgsError& e) {
    EXPECT_EQ(e.keys(), std::vector<std::string>{"task.kind"});
    EXPECT_NE(std::string(e.what()).find("\"countdown\", \"addition\""), std::string::npos) << e.what();
  }
}

TEST(TaskArgs, UnreachableTargetRangeIsAnArgsError) {
  TaskArgs a;
  a.n_numbers = 2, a.min_number = 1, a.max_number = 1;  // reachable: 0, 1, 2
  a.min_target = 3, a.max_target = 100;
  try {
    make_problem(a, 1, 0);
    ADD_FAILURE() << "no throw";
  } catch (const ArgsError& e) {
    EXPECT_EQ(e.keys(), (std::vector<std::string>{"task.min_target", "task.max_target"}));
  }
}

TEST(Countdown, HandCases) {
  const Problem p = countdown({3, 7, 25}, 54);  // (25-7)*3 = 54
  const auto correct = [&](const std::string& s) { return check_countdown(p, s).correct; };
  const auto valid = [&](const std::string& s) { return check_countdown(p, s).expr.valid; };
  EXPECT_TRUE(correct("(25-7)*3"));
  EXPECT_TRUE(correct("3*(25-7)"));
  EXPECT_TRUE(correct("  ( 25 - 7 ) * 3 \n"));
  EXPECT_TRUE(correct("((25-7))*3"));
  const CountdownVerdict twice = check_countdown(p, "3*25-7*3");  // 54, but 3 used twice
  EXPECT_TRUE(twice.expr.valid);
  EXPECT_EQ(twice.expr.value, (Rational{54, 1}));
  EXPECT_FALSE(twice.uses_ok);
  EXPECT_FALSE(twice.correct);
  const CountdownVerdict wrong = check_countdown(p, "25-7*3");  // 25 - 21 = 4
  EXPECT_TRUE(wrong.expr.valid);
  EXPECT_EQ(wrong.expr.value, (Rational{4, 1}));
  EXPECT_TRUE(wrong.uses_ok);
  EXPECT_FALSE(wrong.correct);
  EXPECT_EQ(check_countdown(p, "25/3*7").expr.value, (Rational{175, 3}));  // left to right
  EXPECT_EQ(check_countdown(p, "25-(7-3)").expr.value, (Rational{21, 1}));
  EXPECT_EQ(check_countdown(p, "3-25-7").expr.value, (Rational{-29, 1}));
  for (const char* bad : {"(25-7*3", "(25-7))*3", "25-7)*3", "()", "", "   ", "25 7 3", "(25-7)3", "-3+25+7",
                          "25--7", "2**3", "25//7", "25 - 7 * 3 =", "(25-7)*3=54", "25.0-7", "x", "07+25+3",
                          "25-7+\t3", "25\n-7"})
    EXPECT_FALSE(valid(bad)) << "'" << bad << "'";
  EXPECT_FALSE(correct("25+25+4"));      // reused, 4 not given
  EXPECT_FALSE(correct("(25-7)*3+0"));   // 0 not given
  EXPECT_FALSE(correct("18*3"));         // numbers not in the list
  EXPECT_FALSE(correct("(25-7)*3*1"));
  // Exactly once vs at most once.
  const Problem q = countdown({3, 7, 25}, 75);
  EXPECT_FALSE(check_countdown(q, "25*3").correct);
  EXPECT_FALSE(check_countdown(q, "25*3").uses_ok);
  EXPECT_TRUE(check_countdown(countdown({3, 7, 25}, 75, NumberUse::AtMostOnce), "25*3").correct);
  EXPECT_FALSE(check_countdown(countdown({3, 7, 25}, 75, NumberUse::AtMostOnce), "25*3*3").correct);
  // Division by zero, fractions, overflow.
  const Problem z = countdown({4, 4, 7}, 7);
  const CountdownVerdict d0 = check_countdown(z, "7/(4-4)");
  EXPECT_FALSE(d0.expr.valid);
  EXPECT_NE(d0.expr.error.find("division by zero"), std::string::npos) << d0.expr.error;
  EXPECT_TRUE(check_countdown(z, "7*(4/4)").correct);
  EXPECT_TRUE(check_countdown(countdown({1, 2, 3, 4}, 24), "4/(1-2/3)*2").expr.valid);
  EXPECT_EQ(evaluate_expression("4/(1-2/3)").value, (Rational{12, 1}));
  EXPECT_EQ(evaluate_expression("1/3+1/6").value, (Rational{1, 2}));
  EXPECT_EQ(evaluate_expression("9223372036854775807").value, (Rational{INT64_MAX, 1}));
  EXPECT_FALSE(evaluate_expression("9223372036854775808").valid);
  EXPECT_FALSE(evaluate_expression("99999999999999999999999999").valid);
  const Expression ov = evaluate_expression("4294967296*4294967296");  // 2^64
  EXPECT_FALSE(ov.valid);
  EXPECT_NE(ov.error.find("overflow"), std::string::npos) << ov.error;
  EXPECT_TRUE(evaluate_expression("4294967296*4294967296/4294967296").valid == false);
  EXPECT_TRUE(evaluate_expression("4294967296*(4294967296/4294967296)").valid);
  EXPECT_FALSE(evaluate_expression("1/9223372036854775807/2").valid);  // denominator 2^64 - 2
}

TEST(Countdown, DepthAndLengthLimits) {
  const std::string deep_ok = std::string(kMaxExpressionDepth, '(') + "1" + std::string(kMaxExpressionDepth, ')');
  EXPECT_TRUE(evaluate_expression(deep_ok).valid);
  const std::string too_deep = "(" + deep_ok + ")";
  EXPECT_FALSE(evaluate_expression(too_deep).valid);
  EXPECT_FALSE(evaluate_expression(std::string(1 << 20, '(')).valid);  // 1 MiB: no stack overflow
  std::string long_sum = "1";
  while (long_sum.size() + 2 <= kMaxExpressionBytes) long_sum += "+1";
  EXPECT_TRUE(evaluate_expression(long_sum).valid);
  EXPECT_FALSE(evaluate_expression(long_sum + "+1").valid);
}

TEST(Addition, HandCases) {
  const Problem p = addition(457, 68);  // 525
  EXPECT_TRUE(verify_answer(p, "525"));
  EXPECT_TRUE(verify_answer(p, " 525\n"));
  EXPECT_TRUE(verify_answer(p, "0525"));
  for (const char* bad : {"", " ", "524", "+525", "5 25", "525.0", "52 5", "-525", "525a", "5250",
                          "99999999999999999999999999999"})
    EXPECT_FALSE(verify_answer(p, bad)) << bad;
  EXPECT_EQ(accuracy_reward(p, wrap("525")), 1.0);
  EXPECT_EQ(accuracy_reward(p, "<answer>525</answer>"), 1.0);  // accuracy needs only the answer block
  EXPECT_EQ(accuracy_reward(p, "525"), 0.0);
  EXPECT_EQ(accuracy_reward(p, "<answer>525"), 0.0);
  EXPECT_EQ(accuracy_reward(p, "525</answer>"), 0.0);
  EXPECT_EQ(accuracy_reward(p, "</answer>525<answer>"), 0.0);
  EXPECT_EQ(accuracy_reward(p, wrap("525") + "<answer>525</answer>"), 0.0);  // two answer blocks
  EXPECT_EQ(accuracy_reward(p, "<answer>525<answer>525</answer>"), 0.0);
  EXPECT_EQ(accuracy_reward(p, wrap("")), 0.0);
  const Problem big = addition(999999999999, 999999999999);
  EXPECT_TRUE(verify_answer(big, "1999999999998"));
}

TEST(Completions, TagsAreFoundOnlyWhenUnique) {
  EXPECT_EQ(answer_text("<think>a</think><answer>b</answer>").value(), "b");
  EXPECT_EQ(answer_text("<answer></answer>").value(), "");
  EXPECT_FALSE(answer_text("<answer>b</answer></answer>"));
  EXPECT_FALSE(answer_text("</answer><answer>"));
  EXPECT_EQ(think_text("<think>ab</think>c").value(), "ab");
  EXPECT_EQ(think_text("x<think>ab").value(), "ab");  // truncated
  EXPECT_FALSE(think_text("ab</think>"));
}

// Random bytes 0..255, with tags and answer-like text spliced in, and very long
// inputs: nothing crashes and no reward leaves its range.
TEST(Completions, GarbageNeverCrashesAndScoresInRange) {
  Rng rng(7, 0);
  const std::vector<std::string> pieces = {"<think>", "</think>", "<answer>", "</answer>", "(", ")", "+", "-",
                                           "*", "/", "25", "7", "3", "0", " ", "\n", "carry ", "=", "so "};
  const Problem cd = countdown({3, 7, 25}, 54);
  const Problem ad = addition(457, 68);
  const Vocabulary vocab = Vocabulary::from_text("the carry so");
  RewardArgs args;
  args.language = 0.5, args.overlong = 1.0;
  for (int t = 0; t < 3000; ++t) {
    std::string s;
    const size_t n = rng.below(200);
    for (size_t i = 0; i < n; ++i) {
      if (rng.below(3) == 0)
        s += pieces[rng.below(pieces.size())];
      else
        s += char(rng.below(256));
    }
    for (const Problem* p : {&cd, &ad}) {
      const RewardParts r = score(*p, s, args, &vocab);
      EXPECT_TRUE(r.accuracy == 0 || r.accuracy == 1);
      EXPECT_TRUE(r.format == 0 || r.format == 1);
      EXPECT_GE(r.language, 0.0);
      EXPECT_LE(r.language, 1.0);
      for (const StepReward& step : process_rewards(*p, s)) {
        EXPECT_TRUE(step.reward == 0 || step.reward == 1);
        EXPECT_LE(step.begin, step.end);
        EXPECT_LE(step.end, s.size());
      }
      reflection_counts(s);
    }
  }
  const std::string huge = "<think>" + std::string(1 << 20, '(') + "</think><answer>" +
                           std::string(1 << 20, '(') + "</answer>";
  EXPECT_EQ(accuracy_reward(cd, huge), 0.0);
  EXPECT_EQ(format_reward(huge), 1.0);
  EXPECT_EQ(process_rewards(cd, huge).size(), 1u);
  EXPECT_EQ(process_rewards(cd, huge)[0].reward, 0.0);
  const std::string digits(1 << 16, '9');
  EXPECT_EQ(accuracy_reward(ad, "<answer>" + digits + "</answer>"), 0.0);
  EXPECT_EQ(process_rewards(ad, "<think>" + digits + "+9+0=18 carry 1</think>")[0].reward, 0.0);
}

std::vector<TaskArgs> generator_configs() {
  std::vector<TaskArgs> out;
  for (int n = 2; n <= 4; ++n)
    for (NumberUse use : enum_values<NumberUse>()) {
      TaskArgs a;
      a.n_numbers = n;
      a.use = use;
      out.push_back(a);
    }
  TaskArgs wide;
  wide.n_numbers = 4, wide.min_number = 1, wide.max_number = 9, wide.min_target = 10, wide.max_target = 999;
  out.push_back(wide);
  for (auto [lo, hi] : {std::pair{1, 1}, {2, 3}, {1, 12}, {12, 12}}) {
    TaskArgs a;
    a.kind = TaskKind::Addition;
    a.min_digits = lo, a.max_digits = hi;
    out.push_back(a);
  }
  return out;
}

void check_generated(const TaskArgs& a, const Problem& p, const std::string& what) {
  ASSERT_EQ(p.kind, a.kind) << what;
  // The prompt states the problem.
  const auto parsed = parse_prompt(p.prompt);
  ASSERT_TRUE(parsed) << what << p.prompt;
  EXPECT_EQ(parsed->kind, p.kind) << what;
  EXPECT_EQ(parsed->numbers, p.numbers) << what;
  EXPECT_EQ(parsed->target, p.target) << what;
  if (p.kind == TaskKind::Countdown) {
    EXPECT_EQ(parsed->use, p.use) << what;
    EXPECT_EQ(p.numbers.size(), size_t(a.n_numbers)) << what;
    for (int64_t n : p.numbers) EXPECT_TRUE(n >= a.min_number && n <= a.max_number) << what;
    EXPECT_TRUE(p.target >= a.min_target && p.target <= a.max_target) << what;
  } else {
    for (int64_t n : p.numbers) {
      const size_t d = std::to_string(n).size();
      EXPECT_TRUE(d >= size_t(a.min_digits) && d <= size_t(a.max_digits)) << what << n;
    }
    EXPECT_EQ(p.target, p.numbers[0] + p.numbers[1]);
  }
  EXPECT_GE(p.prompt.size(), 12u) << what << p.prompt;  // "Add 9 and 1."
  EXPECT_LE(p.prompt.size(), 60u) << what << p.prompt;
  // The canonical answer is right, and so is the solver's trace.
  EXPECT_TRUE(verify_answer(p, p.answer)) << what << p.answer;
  const std::string trace = solution_trace(p);
  EXPECT_EQ(accuracy_reward(p, trace), 1.0) << what << trace;
  EXPECT_EQ(format_reward(trace), 1.0) << what << trace;
  const auto steps = process_rewards(p, trace);
  EXPECT_FALSE(steps.empty() && !(p.kind == TaskKind::Countdown && p.use == NumberUse::AtMostOnce))
      << what << trace;
  for (const StepReward& s : steps) EXPECT_EQ(s.reward, 1.0) << what << trace;
  if (p.kind == TaskKind::Addition) {
    EXPECT_EQ(steps.size(), std::max(std::to_string(p.numbers[0]).size(), std::to_string(p.numbers[1]).size()));
  }
}

TEST(Generator, ThousandsOfSeedsParseBackAndSolve) {
  int n = 0;
  size_t longest_trace = 0;
  for (const TaskArgs& a : generator_configs())
    for (uint64_t seed = 0; seed < 3; ++seed)
      for (uint64_t index = 0; index < 320; ++index, ++n) {
        const Problem p = make_problem(a, seed, index);
        check_generated(a, p, std::string(name_of(a.kind)) + " seed " + std::to_string(seed) + " index " +
                                  std::to_string(index) + ": ");
        const bool defaults = a.kind == TaskKind::Addition ? a.max_digits <= 3 : a.max_target <= 100;
        if (defaults) longest_trace = std::max(longest_trace, solution_trace(p).size());
        if (HasFailure()) return;
      }
  EXPECT_GE(n, 10000);
  EXPECT_LE(longest_trace, 110u);  // fits a 256-byte context with the prompt
  RecordProperty("longest_default_trace", int(longest_trace));
}

TEST(Generator, FiveAndSixNumbersAreSolvable) {
  for (int count : {5, 6}) {
    TaskArgs a;
    a.n_numbers = count;
    a.max_target = 1000;
    for (uint64_t index = 0; index < 40; ++index) {
      const Problem p = make_problem(a, 11, index);
      check_generated(a, p, "n_numbers " + std::to_string(count) + " index " + std::to_string(index) + ": ");
      if (HasFailure()) return;
    }
  }
}

TEST(Generator, SameSeedAndIndexGiveTheSameProblemInAnyOrder) {
  for (const TaskArgs& a : generator_configs()) {
    std::vector<Problem> forward;
    for (uint64_t i = 0; i < 50; ++i) forward.push_back(make_problem(a, 5, i));
    for (uint64_t i = 50; i-- > 0;) {
      make_problem(a, 6, i);  // other draws in between change nothing
      const Problem p = make_problem(a, 5, i);
      EXPECT_EQ(p.prompt, forward[i].prompt);
      EXPECT_EQ(p.answer, forward[i].answer);
      EXPECT_EQ(p.numbers, forward[i].numbers);
    }
    // Different streams differ.
    int same = 0;
    for (uint64_t i = 1; i < 50; ++i) same += forward[i].prompt == forward[i - 1].prompt;
    EXPECT_LT(same, 10);
  }
}

TEST(Solver, FindsKnownSolutionsAndReportsNone) {
  const auto sol = solve_countdown({3, 7, 25}, 54, NumberUse::ExactlyOnce);
  ASSERT_TRUE(sol);
  EXPECT_TRUE(check_countdown(countdown({3, 7, 25}, 54), sol->expression).correct) << sol->expression;
  EXPECT_EQ(sol->steps.size(), 2u);
  // 24 from 1 3 4 6 needs a fraction: 6/(1-3/4).
  const auto frac = solve_countdown({1, 3, 4, 6}, 24, NumberUse::ExactlyOnce);
  ASSERT_TRUE(frac);
  EXPECT_TRUE(check_countdown(countdown({1, 3, 4, 6}, 24), frac->expression).correct) << frac->expression;
  // Unreachable: 1 and 1 make 0, 1, 2 only.
  EXPECT_FALSE(solve_countdown({1, 1}, 3, NumberUse::ExactlyOnce));
  EXPECT_FALSE(solve_countdown({1, 1}, 3, NumberUse::AtMostOnce));
  // At most once may use fewer numbers, exactly once may not.
  const auto some = solve_countdown({5, 2, 50}, 100, NumberUse::AtMostOnce);
  ASSERT_TRUE(some);
  EXPECT_TRUE(check_countdown(countdown({5, 2, 50}, 100, NumberUse::AtMostOnce), some->expression).correct);
  EXPECT_FALSE(solve_countdown({2, 2}, 2, NumberUse::ExactlyOnce));  // 4, 0, 1 only
  EXPECT_TRUE(solve_countdown({2, 2}, 2, NumberUse::AtMostOnce));
}

TEST(ProcessRewards, AdditionScratchpadStepByStep) {
  Problem p = addition(457, 68);
  const std::string trace = solution_trace(p);
  EXPECT_EQ(trace, "<think>7+8+0=15 carry 1\n5+6+1=12 carry 1\n4+0+1=5 carry 0\n</think><answer>525</answer>");
  const auto steps = process_rewards(p, trace);
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(trace.substr(steps[0].begin, steps[0].end - steps[0].begin), "7+8+0=15 carry 1");
  EXPECT_EQ(trace.substr(steps[2].begin, steps[2].end - steps[2].begin), "4+0+1=5 carry 0");
  // A wrong sum at one step is 0 there only.
  const auto rewards_of = [&](const std::string& c) {
    std::vector<double> r;
    for (const StepReward& s : process_rewards(p, c)) r.push_back(s.reward);
    return r;
  };
  EXPECT_EQ(rewards_of("<think>7+8+0=15 carry 1\n5+6+1=13 carry 1\n4+0+1=5 carry 0\n</think>"),
            (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(rewards_of("<think>7+8+0=15 carry 1\n5+6+1=12 carry 1\n4+1+1=6 carry 0\n</think>"),
            (std::vector<double>{1, 1, 0}));  // wrong digit
  // A wrong carry is wrong there, and the next step must continue from it.
  EXPECT_EQ(rewards_of("<think>7+8+0=15 carry 0\n5+6+1=12 carry 1\n4+0+1=5 carry 0</think>"),
            (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(rewards_of("<think>7+8+0=15 carry 1\n\n  5+6+1=12 carry 1\r\n4+0+1=5 carry 0\n0+0+0=0 carry 0</think>"),
            (std::vector<double>{1, 1, 1, 0}));  // blank lines skipped; a step past the digits is 0
  EXPECT_EQ(rewards_of("<think>7 + 8 + 0 = 15 carry 1\nadd them\n</think>"), (std::vector<double>{0, 0}));
  EXPECT_TRUE(rewards_of("no think").empty());
  // Every single corrupted step of generated problems gets 0 at that step and only there.
  TaskArgs a;
  a.kind = TaskKind::Addition;
  a.min_digits = 1, a.max_digits = 8;
  for (uint64_t index = 0; index < 500; ++index) {
    p = make_problem(a, 3, index);
    const std::string good = solution_trace(p);
    const auto ok = process_rewards(p, good);
    const size_t k = index % ok.size();
    // Change the sum's last digit (keeping the carry as written).
    const size_t eq = good.find('=', ok[k].begin);
    std::string bad = good;
    const size_t last = good.find(' ', eq) - 1;
    bad[last] = bad[last] == '9' ? '8' : char(bad[last] + 1);
    const auto r = process_rewards(p, bad);
    ASSERT_EQ(r.size(), ok.size());
    for (size_t i = 0; i < r.size(); ++i) EXPECT_EQ(r[i].reward, i == k ? 0.0 : 1.0) << bad;
    if (HasFailure()) return;
  }
}

TEST(ProcessRewards, CountdownStepsUseAvailableValues) {
  const Problem p = countdown({3, 7, 25}, 54);
  const auto rewards_of = [&](const std::string& c) {
    std::vector<double> r;
    for (const StepReward& s : process_rewards(p, c)) r.push_back(s.reward);
    return r;
  };
  EXPECT_EQ(rewards_of("<think>25-7=18\n18*3=54\nso (25-7)*3=54</think>"), (std::vector<double>{1, 1}));
  EXPECT_EQ(rewards_of("<think>25-7=19\n18*3=54</think>"), (std::vector<double>{0, 0}));  // 18 never made
  EXPECT_EQ(rewards_of("<think>25-7=18\n18*7=126</think>"), (std::vector<double>{1, 0}));  // 7 used up
  // 7/3 uses up the 3: (7/3)*3 is not available, (7/3)*25 is; then 25 is gone too.
  EXPECT_EQ(rewards_of("<think>7/3=(7/3)\n(7/3)*3=7\n(7/3)*25=(175/3)\n3-25=(-22)</think>"),
            (std::vector<double>{1, 0, 1, 0}));
  EXPECT_EQ(rewards_of("<think>3-25=(-22)\n(-22)+7=(-15)</think>"), (std::vector<double>{1, 1}));
  EXPECT_EQ(rewards_of("<think>25/(0)=1\n</think>"), (std::vector<double>{0}));
}

// The C++ verifier against Python's parser and Fraction on random, mutated and
// malformed expressions: same validity, value, number use and verdict.
TEST(CountdownOracle, VerdictsMatchPythonAstAndFraction) {
  Rng rng(2024, 1);
  struct Case {
    std::string text;
    Problem p;
  };
  std::vector<Case> cases;
  const std::function<std::string(int)> random_expr = [&](int depth) -> std::string {
    if (depth == 0 || rng.below(3) == 0) {
      switch (rng.below(8)) {
        case 0: return "0";
        case 1: return std::to_string(rng.below(100000));
        case 2: return std::to_string(rng.next() >> 1);  // near the int64 limit
        default: return std::to_string(1 + rng.below(30));
      }
    }
    const std::string ops = "+-*/";
    std::string l = random_expr(depth - 1), r = random_expr(depth - 1);
    std::string e = l + (rng.below(4) == 0 ? " " : "") + ops[rng.below(4)] + r;
    return rng.below(3) == 0 ? "(" + e + ")" : e;
  };
  const std::string alphabet = "0123456789+-*/() ";
  for (int t = 0; t < 600; ++t) {
    std::string e = random_expr(1 + int(rng.below(5)));
    const int mutation = int(rng.below(6));
    if (mutation == 1 && !e.empty()) e.erase(rng.below(e.size()), 1);  // drop a byte
    if (mutation == 2) e.insert(rng.below(e.size() + 1), 1, alphabet[rng.below(alphabet.size())]);
    if (mutation == 3) e.insert(rng.below(e.size() + 1), 1, char(rng.below(256)));  // any byte
    if (mutation == 4) e = " \n" + e + "\t ";
    Case c{e, {}};
    c.p.kind = TaskKind::Countdown;
    c.p.use = rng.below(2) ? NumberUse::ExactlyOnce : NumberUse::AtMostOnce;
    const Expression ev = evaluate_expression(e);
    // Numbers: the literals (so the use check passes), maybe one dropped or added.
    c.p.numbers = ev.literals;
    if (rng.below(4) == 0 && !c.p.numbers.empty()) c.p.numbers.pop_back();
    if (rng.below(4) == 0) c.p.numbers.push_back(int64_t(rng.below(30)));
    c.p.target = ev.valid && ev.value.den == 1 && rng.below(4) ? ev.value.num : int64_t(rng.below(100));
    cases.push_back(c);
  }
  for (const char* hand : {"(25-7)*3", "((1)", "1+-2", "2**3", "7//2", "1/(3-3)", "00", "0", "01", "10", "()",
                           "4294967296*4294967296", "9223372036854775807+0", "9223372036854775807+1",
                           "1/9223372036854775807/2", "", " ", "1 2", "(1)(2)", "+1", "1e3", "0x10"})
    cases.push_back({hand, countdown({1, 2, 3}, 6)});
  cases.push_back({std::string(kMaxExpressionDepth, '(') + "1" + std::string(kMaxExpressionDepth, ')'),
                   countdown({1}, 1)});
  cases.push_back({std::string(kMaxExpressionDepth + 1, '(') + "1" + std::string(kMaxExpressionDepth + 1, ')'),
                   countdown({1}, 1)});

  const std::string dir = test::temp_dir("countdown_oracle");
  const std::string in = dir + "/in.txt", out = dir + "/out.txt";
  {
    std::ofstream f(in);
    for (const Case& c : cases) {
      static const char* hex = "0123456789abcdef";
      std::string h;
      for (unsigned char b : c.text) h += hex[b >> 4], h += hex[b & 15];
      std::string nums;
      for (size_t i = 0; i < c.p.numbers.size(); ++i) {
        if (i) nums += ',';
        nums += std::to_string(c.p.numbers[i]);
      }
      f << h << '\t' << name_of(c.p.use) << '\t' << c.p.target << '\t' << nums << '\n';
    }
  }
  if (!std::filesystem::exists("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 is missing";
  const std::string err = oracle::run_script("countdown_oracle.py", in, out);
  ASSERT_EQ(err, "");
  std::ifstream f(out);
  int valid_count = 0, correct_count = 0;
  for (const Case& c : cases) {
    int valid = 0, uses_ok = 0, correct = 0;
    std::string num, den;
    ASSERT_TRUE(f >> valid >> num >> den >> uses_ok >> correct);
    const CountdownVerdict v = check_countdown(c.p, c.text);
    const std::string what = "'" + c.text + "': " + v.expr.error;
    EXPECT_EQ(v.expr.valid, valid == 1) << what;
    if (valid) {
      EXPECT_EQ(std::to_string(v.expr.value.num), num) << what;
      EXPECT_EQ(std::to_string(v.expr.value.den), den) << what;
      EXPECT_EQ(v.uses_ok, uses_ok == 1) << what;
    }
    EXPECT_EQ(v.correct, correct == 1) << what;
    valid_count += valid;
    correct_count += correct;
  }
  // The cases cover both verdicts.
  EXPECT_GT(valid_count, 150);
  EXPECT_LT(valid_count, int(cases.size()) - 100);
  EXPECT_GT(correct_count, 50);
}

}  // namespace
}  // namespace dslab
