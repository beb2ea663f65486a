// Evaluation by sampling (reference/eval.hpp) and `dslab eval`: pass@k
// against counting every k-subset, maj@k's runs, ties and abstentions,
// answer keys, numbers independent of eval.batch, the thread count and the
// number of problems, the rejection-sampling rules, the result file and the
// pairs it keeps read back byte for byte (and from JSON Lines).
#include <bit>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include "experiments/results.hpp"
#include "reference/eval.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

using ::testing::HasSubstr;

const std::string kGrpoTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/grpo_tiny.toml";

// pass@k by its definition: the share of the C(n, k) subsets of k of the n
// samples that hold at least one correct sample (the first c are correct).
double pass_by_subsets(int n, int c, int k) {
  long hit = 0, all = 0;
  for (uint32_t mask = 0; mask < (1u << n); ++mask) {
    if (std::popcount(mask) != k) continue;
    ++all;
    hit += (mask & ((1u << c) - 1)) != 0;
  }
  return double(hit) / double(all);
}

TEST(PassAtK, MatchesCountingEverySubset) {
  for (int n = 1; n <= 12; ++n)
    for (int c = 0; c <= n; ++c)
      for (int k = 1; k <= n; ++k) EXPECT_NEAR(pass_at_k(n, c, k), pass_by_subsets(n, c, k), 1e-12) << n << c << k;
  EXPECT_DOUBLE_EQ(pass_at_k(64, 16, 1), 0.25);  // pass@1 is c / n
  EXPECT_THROW(pass_at_k(4, 5, 1), std::invalid_argument);
  EXPECT_THROW(pass_at_k(4, 1, 5), std::invalid_argument);
}

TEST(MajAtK, RunsVoteAndTiesGoToTheFirstAnswerToReachTheCount) {
  const Vote right{"=5|1,4", true}, wrong{"=6|2,4", false}, other{"=7|3,4", false}, none{std::nullopt, false};
  // k = 1: each sample is its own run; abstaining is wrong.
  EXPECT_DOUBLE_EQ(maj_at_k({right, wrong, none, right}, 1), 0.5);
  // k = 3: the runs {w, r, r} and {r, w, w}: right, then wrong.
  EXPECT_DOUBLE_EQ(maj_at_k({wrong, right, right, right, wrong, wrong}, 3), 0.5);
  // A tie 1:1 goes to the answer that reached 1 first; abstentions do not vote.
  EXPECT_DOUBLE_EQ(maj_at_k({none, right, wrong}, 3), 1.0);
  EXPECT_DOUBLE_EQ(maj_at_k({wrong, none, right}, 3), 0.0);
  // A 2:2 tie goes to the answer whose second vote came first.
  EXPECT_DOUBLE_EQ(maj_at_k({wrong, right, right, wrong}, 4), 1.0);
  EXPECT_DOUBLE_EQ(maj_at_k({none, none}, 2), 0.0);
  // The leftover samples past floor(n / k) runs are not used.
  EXPECT_DOUBLE_EQ(maj_at_k({right, right, wrong}, 2), 1.0);
  // A plurality wins without a majority.
  EXPECT_DOUBLE_EQ(maj_at_k({other, right, right, wrong, none}, 5), 1.0);
  EXPECT_THROW(maj_at_k({right}, 2), std::invalid_argument);
}

TEST(AnswerKey, SameNumbersToTheSameValueVoteTogether) {
  const Problem cd = make_problem(TaskArgs{}, 1, 0);
  EXPECT_EQ(answer_key(cd, "(25-7)*3"), answer_key(cd, " 3 * (25 - 7) "));
  EXPECT_EQ(answer_key(cd, "(25-7)*3"), "=54|3,7,25");
  EXPECT_NE(answer_key(cd, "25*3-7"), answer_key(cd, "(25-7)*3"));
  EXPECT_EQ(answer_key(cd, " 25 *"), "25 *");  // invalid: the trimmed text
  TaskArgs add_args;
  add_args.kind = TaskKind::Addition;
  const Problem add = make_problem(add_args, 1, 0);
  EXPECT_EQ(answer_key(add, " 0525\n"), "525");
  EXPECT_EQ(answer_key(add, "000"), "0");
  EXPECT_EQ(answer_key(add, "5 25"), "5 25");
}

TEST(KValues, PowersOfTwoAndN) {
  EXPECT_EQ(k_values(1), (std::vector<int>{1}));
  EXPECT_EQ(k_values(64), (std::vector<int>{1, 2, 4, 8, 16, 32, 64}));
  EXPECT_EQ(k_values(12), (std::vector<int>{1, 2, 4, 8, 12}));
}

// A fresh tiny model on one-digit additions: its samples are mostly noise, so
// the test shapes them with a vocabulary-free config and checks the rules.
struct Tiny {
  ModelArgs model;
  TaskArgs task;
  RolloutArgs rollout;
  Tiny() {
    model.dim = 32, model.n_layers = 1, model.n_heads = 2, model.n_kv_heads = 2, model.inter_dim = 64;
    model.max_seq_len = 64;
    task.kind = TaskKind::Addition, task.min_digits = 1, task.max_digits = 1;
    rollout.max_new_tokens = 24;
    rollout.stop = {"</answer>"};
  }
};

void expect_same(const EvalResult& a, const EvalResult& b, size_t problems) {
  ASSERT_GE(a.correct.size(), problems);
  ASSERT_GE(b.correct.size(), problems);
  for (size_t i = 0; i < problems; ++i) {
    EXPECT_EQ(a.correct[i], b.correct[i]) << i;
    EXPECT_EQ(a.prompts[i], b.prompts[i]) << i;
  }
}

TEST(Evaluate, NumbersDoNotDependOnBatchThreadsOrHowManyProblems) {
  Tiny t;
  Transformer<float> model(t.model);
  model.init_weights(3);
  EvalArgs a;
  a.problems = 5, a.samples = 6, a.batch = 5;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const EvalResult one = evaluate(model, t.task, t.rollout, a, nullptr);
  omp_set_num_threads(std::max(2, threads));
  a.batch = 2;
  const EvalResult two = evaluate(model, t.task, t.rollout, a, nullptr);
  omp_set_num_threads(threads);
  expect_same(one, two, 5);
  EXPECT_EQ(one.pass_at_k, two.pass_at_k);
  EXPECT_EQ(one.maj_at_k, two.maj_at_k);
  EXPECT_EQ(one.tokens, two.tokens);
  a.problems = 3;
  expect_same(evaluate(model, t.task, t.rollout, a, nullptr), one, 3);
}

TEST(Evaluate, PassAtOneIsTheAccuracyAndPassAtNTheShareSolved) {
  Tiny t;
  Transformer<float> model(t.model);
  model.init_weights(1);
  // Greedy is one answer repeated: every k gives the same pass and maj.
  EvalArgs a;
  a.problems = 4, a.samples = 4;
  RolloutArgs greedy = t.rollout;
  greedy.temperature = 0;
  const EvalResult g = evaluate(model, t.task, greedy, a, nullptr);
  for (size_t q = 0; q < g.k.size(); ++q) EXPECT_DOUBLE_EQ(g.pass_at_k[q], g.accuracy);
  const EvalResult r = evaluate(model, t.task, t.rollout, a, nullptr);
  EXPECT_NEAR(r.pass_at_k.front(), r.accuracy, 1e-12);
  int solved = 0;
  for (int c : r.correct) solved += c > 0;
  EXPECT_NEAR(r.pass_at_k.back(), double(solved) / a.problems, 1e-12);
}

// A base that has seen one-digit additions (150 steps, 2 s), so that some samples are right.
const std::string& base_corpus() {
  static const std::string corpus = test::write_text_corpus(test::temp_dir("eval_base"), 20000);
  return corpus;
}
const std::string& trained_base() {
  static const std::string base = [] {
    const std::string path = test::temp_dir("eval_base_model") + "/base.h5";
    const int rc = test::run_dslab("train " + std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml --out " +
                                   path + " --set data.path=" + base_corpus() +
                                   " --set train.steps=150 --set train.warmup_steps=4 --set train.eval_every=0"
                                   " --set data.task_share=1 --set task.kind=addition --set task.min_digits=1"
                                   " --set task.max_digits=1 --set model.dim=64 --set model.n_layers=2"
                                   " --set model.n_heads=4 --set model.n_kv_heads=2 --set model.inter_dim=192"
                                   " --set model.max_seq_len=96 --set train.seq_len=64 --set train.lr=3e-3");
    if (rc != 0) throw std::runtime_error("training the eval tests' base failed");
    return path;
  }();
  return base;
}

TEST(EvalCli, WritesTheResultAndItsPairsReadBackByteForByte) {
  const std::string d = test::temp_dir("eval_cli");
  const std::string& corpus = base_corpus();
  const std::string& base = trained_base();
  const std::string out = d + "/eval.h5";
  std::string msg;
  const std::string args = "eval " + kGrpoTiny + " --set data.path=" + corpus + " --set eval.init=" + base +
                           " --set eval.problems=6 --set eval.samples=8 --out ";
  ASSERT_EQ(test::run_dslab(args + out, &msg), 0) << msg;
  EXPECT_THAT(msg, HasSubstr("pass@1"));
  EXPECT_TRUE(result_complete(out));
  const Metrics m = read_metrics(out);
  EXPECT_EQ(m.at("k"), (std::vector<double>{1, 2, 4, 8}));
  ASSERT_EQ(m.at("pass_at_k").size(), 4u);
  EXPECT_NEAR(m.at("pass_at_k")[0], m.at("accuracy")[0], 1e-12);
  for (size_t q = 1; q < 4; ++q) EXPECT_GE(m.at("pass_at_k")[q], m.at("pass_at_k")[q - 1]);
  // The same run again gives the same file contents (but --out must be new).
  EXPECT_EQ(test::run_dslab(args + out, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("already exists"));
  ASSERT_EQ(test::run_dslab(args + d + "/again.h5 --threads 1"), 0);
  EXPECT_EQ(read_metrics(d + "/again.h5").at("pass_at_k"), m.at("pass_at_k"));
  const double yield = m.at("yield")[0];
  ASSERT_GT(yield, 0);  // the base answers some of them right
  {
    const std::vector<SftPair> pairs = read_pairs(out);
    EXPECT_NEAR(double(pairs.size()) / 48.0, yield, 1e-12);
    for (const SftPair& p : pairs) EXPECT_EQ(format_reward(p.response), 1.0) << p.response;
  }
}

TEST(EvalCli, KeptPairsAreCorrectFormattedDistinctAndCapped) {
  const std::string d = test::temp_dir("eval_keep");
  const std::string args = "eval " + kGrpoTiny + " --set data.path=" + base_corpus() + " --set eval.init=" +
                           trained_base() + " --set eval.problems=8 --set eval.samples=16 --out ";
  ASSERT_EQ(test::run_dslab(args + d + "/all.h5"), 0);
  const std::vector<SftPair> all = read_pairs(d + "/all.h5");
  std::map<std::string, std::set<std::string>> by_prompt;
  for (const SftPair& p : all) {
    const std::optional<Problem> problem = parse_prompt(p.prompt.substr(6, p.prompt.find('\n') - 6));
    ASSERT_TRUE(problem) << p.prompt;
    EXPECT_EQ(p.prompt, r1_prompt(*problem));
    EXPECT_EQ(accuracy_reward(*problem, p.response), 1.0) << p.response;
    EXPECT_EQ(format_reward(p.response), 1.0) << p.response;
    EXPECT_TRUE(by_prompt[p.prompt].insert(p.response).second) << "kept twice: " << p.response;
  }
  ASSERT_GT(by_prompt.size(), 1u);
  ASSERT_EQ(test::run_dslab(args + d + "/one.h5 --set eval.keep_per_problem=1"), 0);
  const std::vector<SftPair> one = read_pairs(d + "/one.h5");
  EXPECT_EQ(one.size(), by_prompt.size());  // the first distinct correct response of each solved problem
  for (const SftPair& p : one) EXPECT_EQ(p.response, all[std::find_if(all.begin(), all.end(), [&](const SftPair& q) {
                                                              return q.prompt == p.prompt;
                                                            }) - all.begin()].response);
  // Language: a threshold keeps a subset (the base writes answers only: an empty
  // think text has no word outside the language, consistency 1).
  ASSERT_EQ(test::run_dslab(args + d + "/lang.h5 --set eval.keep_language=1"), 0);
  const Metrics lang = read_metrics(d + "/lang.h5");
  EXPECT_LE(lang.at("yield")[0], read_metrics(d + "/all.h5").at("yield")[0]);
}

TEST(EvalCli, BadInputExitsTwoAndWritesNothing) {
  const std::string d = test::temp_dir("eval_cli_bad");
  const std::string out = d + "/e.h5";
  std::string msg;
  EXPECT_EQ(test::run_dslab("eval " + kGrpoTiny + " --out " + out + " --set eval.samples=0", &msg), 2);
  EXPECT_THAT(msg, HasSubstr("eval.samples"));
  EXPECT_EQ(test::run_dslab("eval " + kGrpoTiny + " --out " + out + " --set eval.init=" + d + "/missing.h5", &msg), 2);
  EXPECT_THAT(msg, HasSubstr("eval.init"));
  // A validation split shorter than one window, before any sampling.
  const std::string text = d + "/short.txt";
  std::ofstream(text) << std::string(1200, 'a');  // 60 validation bytes: max_seq_len 96 needs 97
  const std::string short_text = " --set data.val_fraction=0.05 --set data.path=" + text;
  EXPECT_EQ(test::run_dslab("eval " + kGrpoTiny + " --out " + out + short_text, &msg), 2);
  EXPECT_THAT(msg, HasSubstr("eval.val_batches"));
  EXPECT_THAT(msg, ::testing::Not(HasSubstr("pass@1")));
  EXPECT_EQ(test::run_dslab("eval " + kGrpoTiny + " --out " + out + short_text +
                            " --set eval.val_batches=0 --set eval.problems=1 --set eval.samples=1", &msg), 0) << msg;
  std::filesystem::remove(out);
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(test::run_dslab("eval --keys", &msg), 0);
  EXPECT_THAT(msg, HasSubstr("eval.keep_language"));
  EXPECT_THAT(msg, HasSubstr("rollout.temperature"));
}

// SFT on an eval result's kept pairs (R1 stage 3): data.pairs_epochs sets the
// steps, the run records pairs_epoch, and bad combinations exit 2 naming the key.
TEST(EvalCli, TrainOnTheKeptPairs) {
  const std::string d = test::temp_dir("eval_sft");
  const std::string pairs = d + "/pairs.h5";
  ASSERT_EQ(test::run_dslab("eval " + kGrpoTiny + " --set data.path=" + base_corpus() + " --set eval.init=" +
                            trained_base() + " --set eval.problems=8 --set eval.samples=8 --out " + pairs),
            0);
  const size_t n = read_pairs(pairs).size();
  ASSERT_GT(n, 0u);
  const std::string train = "train " + std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml --set data.path=" +
                            base_corpus() + " --set train.init=" + trained_base() +
                            " --set model.dim=64 --set model.n_layers=2 --set model.n_heads=4 --set model.n_kv_heads=2"
                            " --set model.inter_dim=192 --set model.max_seq_len=96 --set train.seq_len=64"
                            " --set train.warmup_steps=0 --set train.eval_every=0 --set data.pairs=" + pairs;
  std::string msg;
  ASSERT_EQ(test::run_dslab(train + " --set data.pairs_share=0.5 --set data.pairs_epochs=1 --out " + d + "/sft.h5", &msg), 0)
      << msg;
  EXPECT_THAT(msg, HasSubstr(std::to_string(n) + " SFT pairs"));
  const Metrics m = read_metrics(d + "/sft.h5");
  ASSERT_FALSE(m.at("pairs_epoch").empty());
  EXPECT_GE(m.at("pairs_epoch").back(), 1.0);
  if (m.at("pairs_epoch").size() > 1) {
    EXPECT_LT(m.at("pairs_epoch")[m.at("pairs_epoch").size() - 2], 1.0);
  }
  EXPECT_EQ(test::run_dslab(train + " --out " + d + "/bad.h5", &msg), 2);
  EXPECT_THAT(msg, HasSubstr("data.pairs_share"));
  EXPECT_EQ(test::run_dslab(train + " --set data.pairs_share=0.5 --set data.task_share=0.75 --out " + d + "/bad.h5", &msg),
            2);
  EXPECT_THAT(msg, HasSubstr("train.batch_size"));
  EXPECT_EQ(test::run_dslab(train + " --set data.pairs_share=0.5 --set data.pairs=" + d + "/none.jsonl --out " + d +
                                "/bad.h5",
                            &msg),
            2);
  EXPECT_THAT(msg, HasSubstr("data.pairs"));
  EXPECT_EQ(test::run_dslab(train + " --set data.pairs_share=0.5 --set train.seq_len=16 --out " + d + "/bad.h5", &msg), 2);
  EXPECT_THAT(msg, HasSubstr("train.seq_len + 1"));
  EXPECT_FALSE(std::filesystem::exists(d + "/bad.h5"));
}

// eval.val_batches measures dslab train's val_loss: a model trained two steps
// (its last step evaluated on 3 batches of 16 windows of max_seq_len bytes)
// gets the same number, bit for bit, from dslab eval on the same text.
TEST(EvalCli, ValLossIsTrainsValidationLoss) {
  const std::string d = test::temp_dir("eval_val_loss");
  const std::string model = " --set model.dim=64 --set model.n_layers=2 --set model.n_heads=4 --set model.n_kv_heads=2"
                            " --set model.inter_dim=192 --set model.max_seq_len=96 --set data.val_fraction=0.2"
                            " --set data.path=" + base_corpus();
  ASSERT_EQ(test::run_dslab("train " + std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml" + model +
                            " --set train.steps=2 --set train.warmup_steps=0 --set train.batch_size=16"
                            " --set train.seq_len=96 --set train.eval_every=2 --set train.eval_batches=3 --out " + d +
                            "/m.h5"),
            0);
  const std::string eval = "eval " + kGrpoTiny + model + " --set eval.init=" + d +
                           "/m.h5 --set eval.problems=2 --set eval.samples=2 --set eval.val_batches=";
  std::string msg;
  ASSERT_EQ(test::run_dslab(eval + "3 --out " + d + "/e.h5", &msg), 0) << msg;
  EXPECT_THAT(msg, HasSubstr("| val "));
  const std::vector<double> trained = read_metrics(d + "/m.h5").at("val_loss");
  ASSERT_EQ(trained.size(), 1u);
  EXPECT_EQ(read_metrics(d + "/e.h5").at("val_loss"), trained);
  // Other windows give another number; 0 batches, none.
  ASSERT_EQ(test::run_dslab(eval + "4 --out " + d + "/e4.h5"), 0);
  EXPECT_NE(read_metrics(d + "/e4.h5").at("val_loss"), trained);
  ASSERT_EQ(test::run_dslab(eval + "0 --out " + d + "/e0.h5"), 0);
  EXPECT_EQ(read_metrics(d + "/e0.h5").count("val_loss"), 0u);
}

TEST(ReadPairs, JsonLinesKeepBytesAndNameTheBadLine) {
  const std::string d = test::temp_dir("read_pairs");
  {
    std::ofstream f(d + "/p.jsonl");
    f << R"({"prompt": "User: Add 2 and 3.\nAssistant:", "response": " <answer>5</answer>", "source": "x"})" << "\n\n";
    f << R"({"prompt": "caf\u00e9", "response": "\\x"})" << "\n";
  }
  const std::vector<SftPair> p = read_pairs(d + "/p.jsonl");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].prompt, "User: Add 2 and 3.\nAssistant:");
  EXPECT_EQ(p[1].prompt, "caf\xc3\xa9");
  EXPECT_EQ(p[1].response, "\\x");
  std::ofstream(d + "/bad.jsonl") << R"({"prompt": "a", "response": "b"})" << "\n" << R"({"prompt": "a"})" << "\n";
  try {
    read_pairs(d + "/bad.jsonl");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bad.jsonl:2"));
    EXPECT_THAT(e.what(), HasSubstr("\"response\""));
  }
  // An eval result's /pairs: every byte comes back, escaped or not.
  EvalResult r;
  r.k = {1};
  r.pass_at_k = r.maj_at_k = {0.5};
  r.correct = {1};
  r.prompts = {"User: Add 2 and 3.\nAssistant:"};
  r.pairs = {{r.prompts[0], std::string(" <think>\\x41 \x80\xff\x01\t</think><answer>5</answer>")}};
  r.pair_problem = {0};
  write_eval_result(d + "/e.h5", RunInfo{"", 1, 1, 0.0}, r, 10);
  const std::vector<SftPair> back = read_pairs(d + "/e.h5");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].prompt, r.pairs[0].prompt);
  EXPECT_EQ(back[0].response, r.pairs[0].response);
  EXPECT_TRUE(result_complete(d + "/e.h5"));
  std::ofstream(d + "/empty.jsonl") << "\n";
  EXPECT_THROW(read_pairs(d + "/empty.jsonl"), std::runtime_error);
  EXPECT_THROW(read_pairs(d + "/none.jsonl"), std::runtime_error);
}

}  // namespace
}  // namespace dslab
