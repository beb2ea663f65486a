#include "reference/tasks.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <stdexcept>

#include "reference/args_error.hpp"
#include "reference/tensor.hpp"

namespace dslab {

namespace {

using i128 = __int128;
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s, bool (*space)(char) = is_space) {
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

i128 gcd128(i128 a, i128 b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b != 0) {
    const i128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// n/d in lowest terms if it fits Rational.
std::optional<Rational> make_rational(i128 n, i128 d) {
  if (d == 0) return std::nullopt;
  if (d < 0) n = -n, d = -d;
  const i128 g = gcd128(n, d);
  if (g > 1) n /= g, d /= g;
  if (n > kMax || n < -i128(kMax) || d > kMax) return std::nullopt;
  return Rational{int64_t(n), int64_t(d)};
}

enum class OpError { None, DivisionByZero, Overflow };

// a op b, or the error.
OpError apply(char op, const Rational& a, const Rational& b, Rational& out) {
  i128 n = 0, d = 1;
  switch (op) {
    case '+': n = i128(a.num) * b.den + i128(b.num) * a.den, d = i128(a.den) * b.den; break;
    case '-': n = i128(a.num) * b.den - i128(b.num) * a.den, d = i128(a.den) * b.den; break;
    case '*': n = i128(a.num) * b.num, d = i128(a.den) * b.den; break;
    case '/':
      if (b.num == 0) return OpError::DivisionByZero;
      n = i128(a.num) * b.den, d = i128(a.den) * b.num;
      break;
    default: return OpError::Overflow;
  }
  const auto r = make_rational(n, d);
  if (!r) return OpError::Overflow;
  out = *r;
  return OpError::None;
}

// Recursive descent over the grammar in tasks.hpp; the first error wins.
struct Parser {
  std::string_view s;
  size_t pos = 0;
  int depth = 0;
  Expression& e;

  void skip() {
    while (pos < s.size() && s[pos] == ' ') ++pos;
  }
  bool fail(const std::string& why) {
    if (e.error.empty()) e.error = why + " at byte " + std::to_string(pos);
    return false;
  }
  bool combine(char op, Rational& acc, const Rational& rhs) {
    const OpError err = apply(op, acc, rhs, acc);
    if (err == OpError::DivisionByZero) return fail("division by zero");
    if (err == OpError::Overflow) return fail("overflow");
    return true;
  }
  bool expr(Rational& out) {
    if (!term(out)) return false;
    for (;;) {
      skip();
      if (pos >= s.size() || (s[pos] != '+' && s[pos] != '-')) return true;
      const char op = s[pos++];
      Rational rhs;
      if (!term(rhs) || !combine(op, out, rhs)) return false;
    }
  }
  bool term(Rational& out) {
    if (!factor(out)) return false;
    for (;;) {
      skip();
      if (pos >= s.size() || (s[pos] != '*' && s[pos] != '/')) return true;
      const char op = s[pos++];
      Rational rhs;
      if (!factor(rhs) || !combine(op, out, rhs)) return false;
    }
  }
  bool factor(Rational& out) {
    skip();
    if (pos >= s.size()) return fail("expected a number or '('");
    if (s[pos] == '(') {
      if (++depth > kMaxExpressionDepth) return fail("parentheses nested too deep");
      ++pos;
      if (!expr(out)) return false;
      skip();
      if (pos >= s.size() || s[pos] != ')') return fail("expected ')'");
      ++pos;
      --depth;
      return true;
    }
    if (!is_digit(s[pos])) return fail("expected a number or '('");
    const size_t start = pos;
    i128 v = 0;
    while (pos < s.size() && is_digit(s[pos])) {
      v = v * 10 + (s[pos++] - '0');
      if (v > kMax) return fail("overflow");
    }
    if (s[start] == '0' && pos - start > 1) return fail("leading zero");
    out = Rational{int64_t(v), 1};
    e.literals.push_back(int64_t(v));
    return true;
  }
};

// Multiset inclusion (exact: equality) of `used` in `given`.
bool uses_numbers(std::vector<int64_t> used, std::vector<int64_t> given, NumberUse use) {
  std::sort(used.begin(), used.end());
  std::sort(given.begin(), given.end());
  if (use == NumberUse::ExactlyOnce) return used == given;
  return std::includes(given.begin(), given.end(), used.begin(), used.end());
}

// ---- Countdown expressions as trees (generator and solver) ----
struct Node {
  Rational value;
  char op = 0;        // 0: a leaf
  int left = -1, right = -1;
};

int precedence(char op) { return op == 0 ? 3 : (op == '*' || op == '/') ? 2 : 1; }

std::string node_text(const std::vector<Node>& nodes, int i) {
  const Node& n = nodes[size_t(i)];
  if (n.op == 0) return std::to_string(n.value.num);
  const int p = precedence(n.op);
  const Node& l = nodes[size_t(n.left)];
  const Node& r = nodes[size_t(n.right)];
  std::string ls = node_text(nodes, n.left), rs = node_text(nodes, n.right);
  if (precedence(l.op) < p) ls = "(" + ls + ")";
  // a-(b+c), a-(b-c), a/(b*c), a/(b/c) need them; a+(b-c), a*(b/c) do not (exact arithmetic).
  const bool right_parens = precedence(r.op) < p || (precedence(r.op) == p && (n.op == '-' || n.op == '/'));
  if (right_parens) rs = "(" + rs + ")";
  return ls + n.op + rs;
}

struct Solver {
  Rational target;
  NumberUse use;
  std::vector<Node> nodes;
  std::vector<int> found_steps;  // node indices of the operations, in order
  int found = -1;

  bool search(std::vector<int>& pool, std::vector<int>& steps) {
    if (use == NumberUse::AtMostOnce) {
      for (int i : pool)
        if (nodes[size_t(i)].value == target) return done(i, steps);
    } else if (pool.size() == 1 && nodes[size_t(pool[0])].value == target) {
      return done(pool[0], steps);
    }
    if (pool.size() < 2) return false;
    for (size_t i = 0; i < pool.size(); ++i)
      for (size_t j = i + 1; j < pool.size(); ++j) {
        const int x = pool[i], y = pool[j];
        const Rational a = nodes[size_t(x)].value, b = nodes[size_t(y)].value;
        const bool a_ge_b = i128(a.num) * b.den >= i128(b.num) * a.den;
        const int big = a_ge_b ? x : y, small = a_ge_b ? y : x;
        // Non-negative results first, the negative difference last.
        const std::array<std::tuple<char, int, int>, 6> tries = {
            std::tuple{'+', x, y}, {'*', x, y}, {'-', big, small},
            {'/', x, y}, {'/', y, x}, {'-', small, big}};
        for (const auto& [op, l, r] : tries) {
          Rational v;
          if (apply(op, nodes[size_t(l)].value, nodes[size_t(r)].value, v) != OpError::None) continue;
          const int id = int(nodes.size());
          nodes.push_back(Node{v, op, l, r});
          std::vector<int> next;
          next.reserve(pool.size() - 1);
          for (size_t k = 0; k < pool.size(); ++k)
            if (k != i && k != j) next.push_back(pool[k]);
          next.push_back(id);
          steps.push_back(id);
          if (search(next, steps)) return true;
          steps.pop_back();
          nodes.pop_back();
        }
      }
    return false;
  }
  bool done(int i, const std::vector<int>& steps) {
    found = i;
    // Only the operations the answer is made of (AtMostOnce may stop early).
    std::vector<char> needed(nodes.size(), 0);
    std::vector<int> stack = {i};
    while (!stack.empty()) {
      const int k = stack.back();
      stack.pop_back();
      needed[size_t(k)] = 1;
      if (nodes[size_t(k)].op != 0) stack.push_back(nodes[size_t(k)].left), stack.push_back(nodes[size_t(k)].right);
    }
    for (int s : steps)
      if (needed[size_t(s)]) found_steps.push_back(s);
    return true;
  }
};

std::string numbers_text(const std::vector<int64_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(v[i]);
  }
  return out;
}

// Reads a non-negative decimal int64 at s[pos]; advances pos.
std::optional<int64_t> read_int(std::string_view s, size_t& pos) {
  const size_t start = pos;
  i128 v = 0;
  while (pos < s.size() && is_digit(s[pos])) {
    v = v * 10 + (s[pos++] - '0');
    if (v > kMax) return std::nullopt;
  }
  if (pos == start) return std::nullopt;
  return int64_t(v);
}

bool eat(std::string_view s, size_t& pos, std::string_view lit) {
  if (s.substr(pos, lit.size()) != lit) return false;
  pos += lit.size();
  return true;
}

// The i-th decimal digit from the right of x >= 0 (0 past its length).
int digit_at(int64_t x, size_t i) {
  for (size_t k = 0; k < i && x > 0; ++k) x /= 10;
  return int(x % 10);
}

size_t digit_count(int64_t x) {
  size_t n = 1;
  while (x >= 10) x /= 10, ++n;
  return n;
}

// A step operand: digits, or "(" ["-"] digits ["/" digits] ")".
std::optional<Rational> read_operand(std::string_view s, size_t& pos) {
  if (pos < s.size() && is_digit(s[pos])) {
    const auto v = read_int(s, pos);
    if (!v) return std::nullopt;
    return Rational{*v, 1};
  }
  if (!eat(s, pos, "(")) return std::nullopt;
  const bool neg = eat(s, pos, "-");
  const auto n = read_int(s, pos);
  if (!n) return std::nullopt;
  int64_t d = 1;
  if (eat(s, pos, "/")) {
    const auto dv = read_int(s, pos);
    if (!dv || *dv == 0) return std::nullopt;
    d = *dv;
  }
  if (!eat(s, pos, ")")) return std::nullopt;
  return make_rational(neg ? -i128(*n) : i128(*n), d);
}

// Non-blank lines of `text` (which starts at `base` in the completion), trimmed of ' ' and '\r'.
struct Line {
  std::string_view text;
  size_t begin;
};
std::vector<Line> lines_of(std::string_view text, size_t base) {
  std::vector<Line> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    size_t lead = 0;
    while (lead < line.size() && (line[lead] == ' ' || line[lead] == '\r')) ++lead;
    line.remove_prefix(lead);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
    if (!line.empty()) out.push_back({line, base + start + lead});
    start = end + 1;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------

void TaskArgs::validate() const {
  const auto v = [](auto x) { return value_text(x); };
  require(n_numbers >= 2 && n_numbers <= 6, {"task.n_numbers"},
          "task.n_numbers = " + v(n_numbers) + " must be in 2..6");
  require(min_number >= 1 && min_number <= max_number && max_number <= 999, {"task.min_number", "task.max_number"},
          "task.min_number = " + v(min_number) + " and task.max_number = " + v(max_number) +
              " must satisfy 1 <= min_number <= max_number <= 999");
  require(min_target >= 0 && min_target <= max_target && max_target <= 1000000, {"task.min_target", "task.max_target"},
          "task.min_target = " + v(min_target) + " and task.max_target = " + v(max_target) +
              " must satisfy 0 <= min_target <= max_target <= 1000000");
  require(min_digits >= 1 && min_digits <= max_digits && max_digits <= 12, {"task.min_digits", "task.max_digits"},
          "task.min_digits = " + v(min_digits) + " and task.max_digits = " + v(max_digits) +
              " must satisfy 1 <= min_digits <= max_digits <= 12");
  require(size_t(kind) < EnumNames<TaskKind>::names.size(), {"task.kind"},
          "task.kind must be one of " + names_text<TaskKind>("\""));
  require(size_t(use) < EnumNames<NumberUse>::names.size(), {"task.use"},
          "task.use must be one of " + names_text<NumberUse>("\""));
}

TaskKind parse_task_kind(const std::string& name) {
  if (const auto k = parse_enum<TaskKind>(name)) return *k;
  throw ArgsError({"task.kind"}, "task.kind = \"" + name + "\": allowed " + names_text<TaskKind>("\""));
}

NumberUse parse_number_use(const std::string& name) {
  if (const auto u = parse_enum<NumberUse>(name)) return *u;
  throw ArgsError({"task.use"}, "task.use = \"" + name + "\": allowed " + names_text<NumberUse>("\""));
}

namespace {

std::string countdown_prompt(const std::vector<int64_t>& numbers, int64_t target, NumberUse use) {
  return "Make " + std::to_string(target) + " with " + numbers_text(numbers) +
         (use == NumberUse::ExactlyOnce ? ", each once." : ", each at most once.");
}

std::string addition_prompt(int64_t a, int64_t b) {
  return "Add " + std::to_string(a) + " and " + std::to_string(b) + ".";
}

}  // namespace

Problem make_problem(const TaskArgs& a, uint64_t seed, uint64_t index) {
  a.validate();
  Rng rng(seed, index);
  Problem p;
  p.kind = a.kind;
  p.use = a.use;
  if (a.kind == TaskKind::Addition) {
    for (int k = 0; k < 2; ++k) {
      const int digits = a.min_digits + int(rng.below(uint64_t(a.max_digits - a.min_digits + 1)));
      int64_t x = digits == 1 ? int64_t(rng.below(10)) : 1 + int64_t(rng.below(9));
      for (int d = 1; d < digits; ++d) x = x * 10 + int64_t(rng.below(10));
      p.numbers.push_back(x);
    }
    p.target = p.numbers[0] + p.numbers[1];
    p.prompt = addition_prompt(p.numbers[0], p.numbers[1]);
    p.answer = std::to_string(p.target);
    return p;
  }
  // Countdown: numbers, then a random expression over all of them (random pair,
  // random operation) until its value is an integer in the target range.
  const uint64_t span = uint64_t(a.max_number - a.min_number + 1);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::vector<Node> nodes;
    std::vector<int> pool;
    for (int k = 0; k < a.n_numbers; ++k) {
      nodes.push_back(Node{Rational{a.min_number + int64_t(rng.below(span)), 1}});
      pool.push_back(k);
    }
    bool ok = true;
    while (ok && pool.size() > 1) {
      const size_t i = rng.below(pool.size());
      size_t j = rng.below(pool.size() - 1);
      if (j >= i) ++j;
      const char op = "+-*/"[rng.below(4)];
      Rational v;
      ok = apply(op, nodes[size_t(pool[i])].value, nodes[size_t(pool[j])].value, v) == OpError::None;
      if (!ok) break;
      nodes.push_back(Node{v, op, pool[i], pool[j]});
      pool.erase(pool.begin() + std::ptrdiff_t(std::max(i, j)));
      pool.erase(pool.begin() + std::ptrdiff_t(std::min(i, j)));
      pool.push_back(int(nodes.size()) - 1);
    }
    if (!ok) continue;
    const Rational v = nodes[size_t(pool[0])].value;
    if (v.den != 1 || v.num < a.min_target || v.num > a.max_target) continue;
    for (int k = 0; k < a.n_numbers; ++k) p.numbers.push_back(nodes[size_t(k)].value.num);
    p.target = v.num;
    p.prompt = countdown_prompt(p.numbers, p.target, p.use);
    p.answer = node_text(nodes, pool[0]);
    return p;
  }
  throw ArgsError({"task.min_target", "task.max_target"},
                  "no integer target in [" + std::to_string(a.min_target) + ", " + std::to_string(a.max_target) +
                      "] after 1000 random expressions over " + std::to_string(a.n_numbers) + " numbers in [" +
                      std::to_string(a.min_number) + ", " + std::to_string(a.max_number) + "]");
}

std::optional<Problem> parse_prompt(std::string_view s) {
  Problem p;
  size_t pos = 0;
  if (eat(s, pos, "Add ")) {
    const auto x = read_int(s, pos);
    if (!x || !eat(s, pos, " and ")) return std::nullopt;
    const auto y = read_int(s, pos);
    if (!y || !eat(s, pos, ".") || pos != s.size() || *x > kMax - *y) return std::nullopt;
    p.kind = TaskKind::Addition;
    p.numbers = {*x, *y};
    p.target = *x + *y;
    p.prompt = std::string(s);
    return p;
  }
  if (!eat(s, pos, "Make ")) return std::nullopt;
  const auto t = read_int(s, pos);
  if (!t || !eat(s, pos, " with ")) return std::nullopt;
  p.kind = TaskKind::Countdown;
  p.target = *t;
  for (;;) {
    const auto n = read_int(s, pos);
    if (!n) return std::nullopt;
    p.numbers.push_back(*n);
    if (!eat(s, pos, " ")) break;
  }
  if (eat(s, pos, ", each once."))
    p.use = NumberUse::ExactlyOnce;
  else if (eat(s, pos, ", each at most once."))
    p.use = NumberUse::AtMostOnce;
  else
    return std::nullopt;
  if (pos != s.size()) return std::nullopt;
  p.prompt = std::string(s);
  return p;
}

std::string r1_prompt(const Problem& p) { return "User: " + p.prompt + "\nAssistant:"; }

std::string rational_text(const Rational& r) {
  return r.den == 1 ? std::to_string(r.num) : std::to_string(r.num) + "/" + std::to_string(r.den);
}

std::string step_operand_text(const Rational& r) {
  if (r.den == 1 && r.num >= 0) return std::to_string(r.num);
  std::string out = "(";
  out += rational_text(r);
  out += ')';
  return out;
}

Expression evaluate_expression(std::string_view text) {
  Expression e;
  const std::string_view s = trim(text);
  if (text.size() > kMaxExpressionBytes) {
    e.error = "longer than " + std::to_string(kMaxExpressionBytes) + " bytes";
    return e;
  }
  Parser parser{s, 0, 0, e};
  Rational v;
  if (!parser.expr(v)) return e;
  parser.skip();
  if (parser.pos != s.size()) {
    parser.fail("unexpected byte");
    return e;
  }
  e.valid = true;
  e.value = v;
  return e;
}

CountdownVerdict check_countdown(const Problem& p, std::string_view answer) {
  CountdownVerdict v;
  v.expr = evaluate_expression(answer);
  if (!v.expr.valid) return v;
  v.uses_ok = uses_numbers(v.expr.literals, p.numbers, p.use);
  v.correct = v.uses_ok && v.expr.value == Rational{p.target, 1};
  return v;
}

std::optional<CountdownSolution> solve_countdown(const std::vector<int64_t>& numbers, int64_t target,
                                                 NumberUse use) {
  Solver s{Rational{target, 1}, use, {}, {}, -1};
  std::vector<int> pool, steps;
  for (int64_t n : numbers) {
    pool.push_back(int(s.nodes.size()));
    s.nodes.push_back(Node{Rational{n, 1}});
  }
  if (!s.search(pool, steps)) return std::nullopt;
  CountdownSolution out;
  for (int id : s.found_steps) {
    const Node& n = s.nodes[size_t(id)];
    out.steps.push_back({s.nodes[size_t(n.left)].value, s.nodes[size_t(n.right)].value, n.op, n.value});
  }
  out.expression = node_text(s.nodes, s.found);
  return out;
}

std::optional<std::string_view> answer_text(std::string_view c) {
  const size_t open = c.find("<answer>");
  if (open == std::string_view::npos || c.find("<answer>", open + 1) != std::string_view::npos) return std::nullopt;
  const size_t close = c.find("</answer>");
  if (close == std::string_view::npos || close < open + 8 ||
      c.find("</answer>", close + 1) != std::string_view::npos)
    return std::nullopt;
  return c.substr(open + 8, close - open - 8);
}

std::optional<std::string_view> think_text(std::string_view c) {
  const size_t open = c.find("<think>");
  if (open == std::string_view::npos) return std::nullopt;
  const size_t start = open + 7;
  const size_t close = c.find("</think>", start);
  return c.substr(start, (close == std::string_view::npos ? c.size() : close) - start);
}

bool verify_answer(const Problem& p, std::string_view answer) {
  if (p.kind == TaskKind::Countdown) return check_countdown(p, answer).correct;
  std::string_view s = trim(answer);
  if (s.empty() || !std::all_of(s.begin(), s.end(), is_digit)) return false;
  while (s.size() > 1 && s.front() == '0') s.remove_prefix(1);
  return s == std::to_string(p.target);
}

std::string solution_trace(const Problem& p) {
  std::string think;
  std::string answer;
  if (p.kind == TaskKind::Countdown) {
    const auto sol = solve_countdown(p.numbers, p.target, p.use);
    if (!sol) throw std::invalid_argument("solution_trace: no solution for \"" + p.prompt + "\"");
    for (const CountdownStep& s : sol->steps)
      think += step_operand_text(s.a) + s.op + step_operand_text(s.b) + "=" + step_operand_text(s.result) + "\n";
    think += "so " + sol->expression + "=" + std::to_string(p.target);
    answer = sol->expression;
  } else {
    const int64_t x = p.numbers[0], y = p.numbers[1];
    const size_t n = std::max(digit_count(x), digit_count(y));
    int carry = 0;
    for (size_t i = 0; i < n; ++i) {
      const int a = digit_at(x, i), b = digit_at(y, i), s = a + b + carry;
      think += std::to_string(a) + "+" + std::to_string(b) + "+" + std::to_string(carry) + "=" +
               std::to_string(s) + " carry " + std::to_string(s / 10) + "\n";
      carry = s / 10;
    }
    answer = std::to_string(x + y);
  }
  return "<think>" + think + "</think><answer>" + answer + "</answer>";
}

std::vector<StepReward> process_rewards(const Problem& p, const std::string& completion) {
  std::vector<StepReward> out;
  const auto think = think_text(completion);
  if (!think) return out;
  const size_t base = size_t(think->data() - completion.data());
  const std::vector<Line> lines = lines_of(*think, base);
  if (p.kind == TaskKind::Addition) {
    const int64_t x = p.numbers.at(0), y = p.numbers.at(1);
    const size_t n = std::max(digit_count(x), digit_count(y));
    int64_t prev_carry = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      const std::string_view s = lines[i].text;
      size_t pos = 0;
      const auto a = read_int(s, pos);
      const bool p1 = a && eat(s, pos, "+");
      const auto b = p1 ? read_int(s, pos) : std::nullopt;
      const bool p2 = b && eat(s, pos, "+");
      const auto c = p2 ? read_int(s, pos) : std::nullopt;
      const bool p3 = c && eat(s, pos, "=");
      const auto sum = p3 ? read_int(s, pos) : std::nullopt;
      const bool p4 = sum && eat(s, pos, " carry ");
      const auto k = p4 ? read_int(s, pos) : std::nullopt;
      const bool parsed = k && pos == s.size();
      const bool ok = parsed && i < n && *a == digit_at(x, i) && *b == digit_at(y, i) && *c == prev_carry &&
                      *sum == *a + *b + *c && *k == *sum / 10;
      out.push_back({ok ? 1.0 : 0.0, lines[i].begin, lines[i].begin + s.size()});
      prev_carry = parsed ? *k : -1;  // an unreadable step leaves no carry to continue from
    }
    return out;
  }
  // Countdown: the values still available, as a multiset.
  std::vector<Rational> pool;
  for (int64_t v : p.numbers) pool.push_back(Rational{v, 1});
  const auto take = [&pool](const Rational& r) {
    const auto it = std::find(pool.begin(), pool.end(), r);
    if (it == pool.end()) return false;
    pool.erase(it);
    return true;
  };
  for (const Line& line : lines) {
    const std::string_view s = line.text;
    if (s.substr(0, 3) == "so ") break;
    size_t pos = 0;
    const auto x = read_operand(s, pos);
    const char op = x && pos < s.size() ? s[pos++] : 0;
    const bool is_op = op == '+' || op == '-' || op == '*' || op == '/';
    const auto y = is_op ? read_operand(s, pos) : std::nullopt;
    const bool eq = y && eat(s, pos, "=");
    const auto z = eq ? read_operand(s, pos) : std::nullopt;
    bool ok = z && pos == s.size();
    Rational r;
    ok = ok && apply(op, *x, *y, r) == OpError::None && r == *z;
    if (ok) {
      std::vector<Rational> saved = pool;
      ok = take(*x) && take(*y);
      if (ok)
        pool.push_back(*z);
      else
        pool = std::move(saved);
    }
    out.push_back({ok ? 1.0 : 0.0, line.begin, line.begin + s.size()});
  }
  return out;
}

}  // namespace dslab
