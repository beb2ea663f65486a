// Verifiable tasks for R1-style RL on a byte-level LM (Sec. 2.6 of the review:
// rule-based accuracy rewards need answers a program can check). Two tasks:
//   Countdown  reach a target from given numbers with + - * / and parentheses
//              (TinyZero's R1-Zero reproduction); exact rational arithmetic.
//   Addition   add two decimal numbers; the scratchpad is checkable step by step
//              (process supervision, Sec. 2.5).
// Texts are bytes; prompts are 20-60 bytes, solver traces under ~100 bytes at
// the default difficulty. docs/tasks.md has the formats with examples.
//
// The completion format is R1's (Table 1 of the R1 report):
//   <think> reasoning </think><answer> answer </answer>
// r1_prompt() renders a problem as "User: <prompt>\nAssistant:" (R1's template
// without its long preamble); the model writes the completion after it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reference/enum_names.hpp"

namespace dslab {

enum class TaskKind { Countdown, Addition };
template <> struct EnumNames<TaskKind> {
  static constexpr std::array<std::string_view, 2> names = {"countdown", "addition"};
};

// How often a Countdown answer may use each given number. ExactlyOnce is
// TinyZero's rule (every number, each once); AtMostOnce is the TV game's.
enum class NumberUse { ExactlyOnce, AtMostOnce };
template <> struct EnumNames<NumberUse> {
  static constexpr std::array<std::string_view, 2> names = {"exactly_once", "at_most_once"};
};

// Config section [task].
struct TaskArgs {
  TaskKind kind = TaskKind::Countdown;
  // Countdown: n_numbers numbers drawn uniformly from [min_number, max_number];
  // the target is the value of a random expression over them that is an integer
  // in [min_target, max_target].
  int n_numbers = 3;                 // 2..6
  int min_number = 1, max_number = 99;   // 1 <= min_number <= max_number <= 999
  int min_target = 1, max_target = 100;  // 0 <= min_target <= max_target <= 1000000
  NumberUse use = NumberUse::ExactlyOnce;
  // Addition: each addend has a digit count drawn uniformly from [min_digits, max_digits].
  int min_digits = 2, max_digits = 3;    // 1 <= min_digits <= max_digits <= 12
  // Throws ArgsError naming "task.<field>" and what is allowed.
  void validate() const;
};

// The names above; parse throws ArgsError("task.kind" / "task.use") naming the allowed values.
TaskKind parse_task_kind(const std::string& name);
NumberUse parse_number_use(const std::string& name);

struct Problem {
  TaskKind kind = TaskKind::Countdown;
  NumberUse use = NumberUse::ExactlyOnce;  // Countdown's rule
  std::vector<int64_t> numbers;  // Countdown: the given numbers; Addition: the two addends
  int64_t target = 0;            // Countdown: the target; Addition: the sum
  std::string prompt;            // "Make 64 with 3 7 25, each once." / "Add 457 and 68."
  std::string answer;            // canonical answer text: an expression reaching the target / the sum
};

// Problem `index` of the stream `seed`: drawn from Rng(seed, index) only, so it
// is the same whatever else was drawn before. Validates `a`. Throws ArgsError
// ("task.min_target", "task.max_target") when 1000 draws of numbers and an
// expression found no integer target in range.
Problem make_problem(const TaskArgs& a, uint64_t seed, uint64_t index);

// The problem a prompt states (kind, use, numbers, target; answer empty), or nullopt.
std::optional<Problem> parse_prompt(std::string_view prompt);

// "User: <prompt>\nAssistant:", the compact R1 template.
std::string r1_prompt(const Problem& p);

// ---------------------------------------------------------------------------
// Exact arithmetic for Countdown answers.

// A rational in lowest terms, den > 0, |num| and den at most INT64_MAX.
struct Rational {
  int64_t num = 0, den = 1;
  bool operator==(const Rational&) const = default;
};
std::string rational_text(const Rational& r);  // "18", "-7/2"
// As a Countdown step writes it: "18", "(-22)", "(7/2)".
std::string step_operand_text(const Rational& r);

// An answer expression: grammar
//   expr := term (('+' | '-') term)*   term := factor (('*' | '/') factor)*
//   factor := number | '(' expr ')'    number := '0' | [1-9][0-9]*
// with spaces allowed between tokens (after trimming ASCII whitespace at both
// ends). No unary minus, no other bytes, no leading zeros. Every literal and
// every operation's result must fit Rational (in lowest terms, int64 parts):
// otherwise invalid ("overflow"); x/0 is invalid. At most kMaxExpressionBytes
// bytes and kMaxExpressionDepth nested parentheses.
constexpr size_t kMaxExpressionBytes = 1024;
constexpr int kMaxExpressionDepth = 64;
struct Expression {
  bool valid = false;
  Rational value;
  std::vector<int64_t> literals;  // the numbers written, in order
  std::string error;              // why invalid ("" when valid)
};
Expression evaluate_expression(std::string_view text);

// The verdict on one Countdown answer text: valid, uses the given numbers as
// p.use allows (ExactlyOnce: the literals are the numbers as a multiset;
// AtMostOnce: a sub-multiset), and correct iff both and value == target.
struct CountdownVerdict {
  Expression expr;
  bool uses_ok = false;
  bool correct = false;
};
CountdownVerdict check_countdown(const Problem& p, std::string_view answer_text);

// One step of a Countdown solution: a op b = result.
struct CountdownStep {
  Rational a, b;
  char op = '+';
  Rational result;
};
struct CountdownSolution {
  std::vector<CountdownStep> steps;
  std::string expression;  // the steps as one expression, minimal parentheses
};
// Depth-first search over pairs of the remaining values and the four operations
// (exact rationals; an overflowing result is skipped): the first solution in a
// fixed order, or nullopt when none exists. AtMostOnce stops at any value equal
// to the target.
std::optional<CountdownSolution> solve_countdown(const std::vector<int64_t>& numbers, int64_t target,
                                                 NumberUse use);

// ---------------------------------------------------------------------------
// Completions.

// The text between the only "<answer>" and the only "</answer>" after it, or
// nullopt (either tag missing or repeated, or in the wrong order).
std::optional<std::string_view> answer_text(std::string_view completion);
// The text after the first "<think>" up to the first "</think>" after it, or to
// the end when none follows (a truncated completion); nullopt without "<think>".
std::optional<std::string_view> think_text(std::string_view completion);

// Whether the answer text (trimmed of ASCII whitespace) is right: Countdown by
// check_countdown; Addition: one or more decimal digits whose value is the sum
// (leading zeros allowed; nothing else).
bool verify_answer(const Problem& p, std::string_view answer);

// The completion a program solver writes, in the R1 format (for cold-start SFT):
//   Countdown: "<think>25-7=18\n18*3=54\nso (25-7)*3=54</think><answer>(25-7)*3</answer>"
//     one line per step (solve_countdown's), then the summary line.
//   Addition of 457 and 68:
//     "<think>7+8+0=15 carry 1\n5+6+1=12 carry 1\n4+0+1=5 carry 0\n</think><answer>525</answer>"
//     one line per digit position from the right: digit of the first addend, of
//     the second (0 past its length), carry in, their sum, carry out.
// Throws std::invalid_argument when a Countdown problem has no solution.
std::string solution_trace(const Problem& p);

// Process reward of one step: reward in {0, 1}; the step's text is
// completion[begin, end), so its last byte (token) is completion[end - 1].
struct StepReward {
  double reward = 0;
  size_t begin = 0, end = 0;
};
// Addition: each non-blank line of the think text is a step; step i (0-based) is
// 1 iff it reads "a+b+c=s carry k" (single spaces as shown; spaces and '\r' at
// the line's ends ignored) with a, b the addends' digits at position i from the
// right (0 past their length), c = 0 for i = 0 and the carry the previous step
// wrote otherwise, s = a+b+c and k = s/10, and i < the longer addend's length.
// Countdown: each non-blank line before the summary ("so ...") is a step "x?y=z"
// (? one of + - * /; x, y, z non-negative integers as digits, other rationals in
// parentheses: "(-22)", "(7/2)"; no spaces); it is 1 iff x
// and y are still available (given numbers and earlier results, each used once),
// y != 0 for '/', and z is the exact result. Empty without a think text.
std::vector<StepReward> process_rewards(const Problem& p, const std::string& completion);

}  // namespace dslab
