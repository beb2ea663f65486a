#include "reference/eval.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <stdexcept>

#include "reference/args_error.hpp"

namespace dslab {

namespace {

std::string_view trim(std::string_view s) {
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

double mean(double sum, size_t n) { return n ? sum / double(n) : 0.0; }

}  // namespace

double pass_at_k(int n, int c, int k) {
  if (n < 1 || k < 1 || k > n || c < 0 || c > n)
    throw std::invalid_argument("pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n = " + std::to_string(n) +
                                ", c = " + std::to_string(c) + ", k = " + std::to_string(k));
  if (n - c < k) return 1.0;  // every k-subset holds a correct sample
  double none = 1.0;          // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i)
  for (int i = n - c + 1; i <= n; ++i) none *= 1.0 - double(k) / double(i);
  return 1.0 - none;
}

std::string answer_key(const Problem& p, std::string_view answer) {
  const std::string_view a = trim(answer);
  if (p.kind == TaskKind::Countdown) {
    const Expression e = evaluate_expression(a);
    if (!e.valid) return std::string(a);
    std::vector<int64_t> lits = e.literals;
    std::sort(lits.begin(), lits.end());
    std::string key = "=" + rational_text(e.value) + "|";
    for (size_t i = 0; i < lits.size(); ++i) key += (i ? "," : "") + std::to_string(lits[i]);
    return key;
  }
  const bool digits = !a.empty() && std::all_of(a.begin(), a.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) return std::string(a);
  const size_t first = std::min(a.find_first_not_of('0'), a.size() - 1);
  return std::string(a.substr(first));
}

double maj_at_k(const std::vector<Vote>& votes, int k) {
  if (k < 1 || size_t(k) > votes.size())
    throw std::invalid_argument("maj_at_k: need 1 <= k <= " + std::to_string(votes.size()) + ", got " +
                                std::to_string(k));
  const size_t runs = votes.size() / size_t(k);
  size_t right = 0;
  for (size_t r = 0; r < runs; ++r) {
    std::map<std::string, int> count;
    const Vote* best = nullptr;
    int best_count = 0;
    for (size_t j = r * k; j < (r + 1) * k; ++j) {
      const Vote& v = votes[j];
      if (!v.key) continue;                        // no <answer>: abstains
      const int c = ++count[*v.key];
      if (c > best_count) best = &v, best_count = c;  // strictly more: the first to reach a tie keeps it
    }
    right += best && best->correct;
  }
  return double(right) / double(runs);
}

std::vector<int> k_values(int n) {
  std::vector<int> ks;
  for (int k = 1; k <= n; k *= 2) ks.push_back(k);
  if (ks.empty() || ks.back() != n) ks.push_back(n);
  return ks;
}

void EvalArgs::validate() const {
  const auto v = [](auto x) { return value_text(x); };
  require(problems >= 1, {"eval.problems"}, "eval.problems = " + v(problems) + " must be >= 1");
  require(samples >= 1, {"eval.samples"}, "eval.samples = " + v(samples) + " must be >= 1");
  require(batch >= 1, {"eval.batch"}, "eval.batch = " + v(batch) + " must be >= 1");
  require(keep_language >= 0 && keep_language <= 1, {"eval.keep_language"},
          "eval.keep_language = " + v(keep_language) + " must be in [0, 1]");
  require(val_batches >= 0, {"eval.val_batches"},
          "eval.val_batches = " + v(val_batches) + " must be >= 0 (0: no validation loss)");
  require(keep_per_problem >= 0, {"eval.keep_per_problem"},
          "eval.keep_per_problem = " + v(keep_per_problem) + " must be >= 0 (0: every distinct one)");
}

EvalResult evaluate(Transformer<float>& model, const TaskArgs& task, const RolloutArgs& rollout,
                    const EvalArgs& args, const Vocabulary* vocab) {
  args.validate();
  task.validate();
  rollout.validate();
  require(vocab || args.keep_language == 0, {"eval.keep_language"},
          "eval.keep_language = " + value_text(args.keep_language) +
              " needs the target language's vocabulary (the [data] text)");
  const int M = args.problems, n = args.samples;
  EvalResult out;
  out.k = k_values(n);
  out.pass_at_k.assign(out.k.size(), 0.0);
  out.maj_at_k.assign(out.k.size(), 0.0);
  out.correct.assign(M, 0);
  double format = 0, language = 0, length = 0, reflections = 0, stopped = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int first = 0; first < M; first += args.batch) {
    const int last = std::min(M, first + args.batch);
    std::vector<Problem> problems;
    std::vector<std::vector<int>> prompts;
    std::vector<uint64_t> streams;
    for (int i = first; i < last; ++i) {
      problems.push_back(make_problem(task, args.task_seed, uint64_t(i)));
      out.prompts.push_back(r1_prompt(problems.back()));
      for (int j = 0; j < n; ++j) {
        prompts.push_back(byte_tokens(out.prompts.back()));
        streams.push_back(uint64_t(i) * uint64_t(n) + uint64_t(j));
      }
    }
    const std::vector<Completion> comps = sample_sequences(model, prompts, streams, rollout, args.seed, 0);
    for (int i = first; i < last; ++i) {
      const Problem& p = problems[i - first];
      std::vector<Vote> votes(n);
      std::set<std::string> kept;
      for (int j = 0; j < n; ++j) {
        const Completion& c = comps[size_t(i - first) * n + j];
        const std::string text = c.text();
        out.tokens += c.tokens.size();
        const bool correct = accuracy_reward(p, text) > 0;
        const bool formatted = format_reward(text) > 0;
        const double lang = vocab ? language_consistency(text, *vocab) : 0.0;
        out.correct[i] += correct;
        format += formatted;
        language += lang;
        length += double(text.size());
        reflections += reflection_counts(text).total();
        stopped += c.stopped;
        if (const auto a = answer_text(text)) votes[j] = {answer_key(p, *a), correct};
        const bool room = args.keep_per_problem == 0 || int(kept.size()) < args.keep_per_problem;
        if (correct && formatted && lang >= args.keep_language && room && kept.insert(text).second) {
          out.pairs.push_back({out.prompts[i], text});
          out.pair_problem.push_back(i);
        }
      }
      for (size_t q = 0; q < out.k.size(); ++q) {
        out.pass_at_k[q] += pass_at_k(n, out.correct[i], out.k[q]) / M;
        out.maj_at_k[q] += maj_at_k(votes, out.k[q]) / M;
      }
    }
  }
  out.sample_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const size_t N = size_t(M) * size_t(n);
  size_t right = 0;
  for (int c : out.correct) right += size_t(c);
  out.accuracy = mean(double(right), N);
  out.format_rate = mean(format, N);
  out.language = mean(language, N);
  out.response_length = mean(length, N);
  out.reflection_words = mean(reflections, N);
  out.stopped = mean(stopped, N);
  return out;
}

}  // namespace dslab
