// The byte corpus and its train/validation split (reference/data.hpp).
//
// Oracle: texts whose bytes encode their position (byte i of the text is
// i mod 256, and texts of at most 256 bytes where it is i itself), so a
// window's bytes say where in the text it was taken from: the split must
// partition the text (train the prefix, validation the suffix), every window
// must lie inside the split it was drawn from, and targets are the inputs
// shifted by one.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference/args_error.hpp"
#include "reference/data.hpp"
#include "reference/rewards.hpp"
#include "reference/tasks.hpp"
#include "reference/trainer.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

// Byte i is i mod 256.
std::string positional_text(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char(uint8_t(i % 256));
  return s;
}

std::vector<uint8_t> bytes_of(const std::string& s, size_t begin, size_t end) {
  return std::vector<uint8_t>(s.begin() + begin, s.begin() + end);
}

TEST(DataSplit, TrainIsThePrefixValidationTheSuffix) {
  for (size_t n : {size_t(10), size_t(256), size_t(1000), size_t(4097), size_t(100000)})
    for (double frac : {0.01, 0.1, 0.25, 0.5, 0.9}) {
      SCOPED_TRACE("n " + std::to_string(n) + " val_fraction " + std::to_string(frac));
      const std::string text = positional_text(n);
      const ByteCorpus c = ByteCorpus::from_text(text, frac);
      const size_t n_val = size_t(double(n) * frac);
      EXPECT_EQ(c.train.size() + c.val.size(), n);
      EXPECT_EQ(c.val.size(), n_val);
      EXPECT_EQ(c.train, bytes_of(text, 0, n - n_val));
      EXPECT_EQ(c.val, bytes_of(text, n - n_val, n));
    }
}

TEST(DataSplit, NoByteIsInBothSplits) {
  // 256 bytes, byte i = i: a byte value names its position.
  const std::string text = positional_text(256);
  for (double frac : {0.05, 0.1, 0.3, 0.5, 0.77}) {
    const ByteCorpus c = ByteCorpus::from_text(text, frac);
    std::set<int> train(c.train.begin(), c.train.end()), val(c.val.begin(), c.val.end());
    EXPECT_EQ(train.size(), c.train.size()) << "a training byte is repeated";
    EXPECT_EQ(val.size(), c.val.size()) << "a validation byte is repeated";
    for (int v : val) EXPECT_EQ(train.count(v), 0u) << "byte " << v << " in both splits";
    EXPECT_EQ(train.size() + val.size(), 256u);
    ASSERT_FALSE(c.train.empty());
    ASSERT_FALSE(c.val.empty());
    EXPECT_EQ(int(c.train.back()) + 1, int(c.val.front())) << "the splits are not adjacent";
  }
}

TEST(DataSplit, FromFileSplitsLikeFromText) {
  const std::string dir = test::temp_dir("data_split");
  const std::string text = positional_text(5000);
  {
    std::ofstream out(dir + "/corpus.bin", std::ios::binary);
    out << text;
  }
  const ByteCorpus f = ByteCorpus::from_file(dir + "/corpus.bin", 0.2);
  const ByteCorpus t = ByteCorpus::from_text(text, 0.2);
  EXPECT_EQ(f.train, t.train);
  EXPECT_EQ(f.val, t.val);
  EXPECT_EQ(f.train.size() + f.val.size(), text.size());
  EXPECT_EQ(f.val.size(), 1000u);
  {
    std::ofstream out(dir + "/small.bin", std::ios::binary);
    out << positional_text(100);
  }
  EXPECT_THROW(ByteCorpus::from_file(dir + "/small.bin", 0.2), std::runtime_error);
  EXPECT_THROW(ByteCorpus::from_file(dir + "/missing.bin", 0.2), std::runtime_error);
  EXPECT_THROW(ByteCorpus::from_text(text, 0.0), std::invalid_argument);
  EXPECT_THROW(ByteCorpus::from_text(text, 1.0), std::invalid_argument);
}

// The window offsets of a batch drawn from `data` (byte j of data = (base + j)
// mod 256, base the split's start in the text), checking each window is a run
// of consecutive positions inside data and targets are the inputs shifted by one.
std::vector<size_t> window_offsets(const Batch& b, const std::vector<uint8_t>& data, int batch,
                                   int seq_len) {
  EXPECT_EQ(b.inputs.size(), size_t(batch) * seq_len);
  EXPECT_EQ(b.targets.size(), size_t(batch) * seq_len);
  std::vector<size_t> offsets;
  for (int w = 0; w < batch; ++w) {
    const int* in = b.inputs.data() + size_t(w) * seq_len;
    const int* tg = b.targets.data() + size_t(w) * seq_len;
    for (int t = 0; t + 1 < seq_len; ++t) EXPECT_EQ(tg[t], in[t + 1]) << "window " << w << " t " << t;
    // data holds distinct bytes (at most 256 of them): the first input names the offset.
    size_t o = 0;
    while (o < data.size() && data[o] != in[0]) ++o;
    EXPECT_LT(o, data.size()) << "window " << w << " starts outside the split";
    EXPECT_LE(o + seq_len, data.size() - 1) << "window " << w << " runs past the split";
    if (o + seq_len >= data.size()) return offsets;
    for (int t = 0; t < seq_len; ++t) {
      EXPECT_EQ(in[t], data[o + t]) << "window " << w << " t " << t;
      EXPECT_EQ(tg[t], data[o + t + 1]) << "window " << w << " t " << t;
    }
    offsets.push_back(o);
  }
  return offsets;
}

TEST(DataBatches, TrainingWindowsLieInsideTheTrainingSplit) {
  const std::string text = positional_text(256);
  for (double frac : {0.1, 0.5}) {
    const ByteCorpus c = ByteCorpus::from_text(text, frac);
    const std::set<uint8_t> val(c.val.begin(), c.val.end());
    for (int seq_len : {1, 3, 16, int(c.train.size()) - 1})
      for (int batch : {1, 4, 7}) {
        SCOPED_TRACE("frac " + std::to_string(frac) + " seq_len " + std::to_string(seq_len) +
                     " batch " + std::to_string(batch));
        const size_t n_offsets = c.train.size() - seq_len;
        std::set<size_t> seen;
        for (uint64_t seed : {1u, 2u, 77u})
          for (int64_t step = 0; step < 200; ++step) {
            const Batch b = train_batch(c.train, batch, seq_len, seed, step);
            for (int x : b.inputs) ASSERT_EQ(val.count(uint8_t(x)), 0u) << "validation byte " << x;
            for (int x : b.targets) ASSERT_EQ(val.count(uint8_t(x)), 0u) << "validation byte " << x;
            for (size_t o : window_offsets(b, c.train, batch, seq_len)) seen.insert(o);
            // The same (seed, step) gives the same batch.
            const Batch again = train_batch(c.train, batch, seq_len, seed, step);
            ASSERT_EQ(again.inputs, b.inputs);
          }
        // Windows at both ends are drawn: the first and the last offset that fits.
        ASSERT_FALSE(seen.empty());
        EXPECT_EQ(*seen.begin(), 0u);
        EXPECT_EQ(*seen.rbegin(), n_offsets - 1);
        if (n_offsets <= 50) {
          EXPECT_EQ(seen.size(), n_offsets) << "some offsets never drawn";
        }
      }
  }
}

TEST(DataBatches, EvaluationWindowsLieInsideTheValidationSplit) {
  const std::string text = positional_text(256);
  for (double frac : {0.2, 0.5}) {
    const ByteCorpus c = ByteCorpus::from_text(text, frac);
    const std::set<uint8_t> train(c.train.begin(), c.train.end());
    for (int seq_len : {1, 5, 16, int(c.val.size()) - 1})
      for (int batch : {1, 3, 8})
        for (int count : {1, 2, 5}) {
          SCOPED_TRACE("frac " + std::to_string(frac) + " seq_len " + std::to_string(seq_len) +
                       " batch " + std::to_string(batch) + " count " + std::to_string(count));
          std::vector<size_t> all;
          for (int index = 0; index < count; ++index) {
            const Batch b = eval_batch(c.val, batch, seq_len, index, count);
            for (int x : b.inputs) ASSERT_EQ(train.count(uint8_t(x)), 0u) << "training byte " << x;
            for (int x : b.targets) ASSERT_EQ(train.count(uint8_t(x)), 0u) << "training byte " << x;
            for (size_t o : window_offsets(b, c.val, batch, seq_len)) all.push_back(o);
          }
          ASSERT_EQ(all.size(), size_t(batch) * count);
          // Evenly spaced from the start of the split: offsets w * n_offsets / windows.
          const size_t n_offsets = c.val.size() - seq_len, windows = size_t(batch) * count;
          for (size_t w = 0; w < windows; ++w) EXPECT_EQ(all[w], w * n_offsets / windows) << "window " << w;
          EXPECT_EQ(all.front(), 0u);
        }
    // As many windows as offsets: every offset, the last one included, exactly once.
    const int seq_len = 4;
    const size_t n_offsets = c.val.size() - seq_len;
    std::vector<size_t> all;
    for (size_t index = 0; index < n_offsets; ++index)
      for (size_t o : window_offsets(eval_batch(c.val, 1, seq_len, int(index), int(n_offsets)), c.val, 1,
                                     seq_len))
        all.push_back(o);
    ASSERT_EQ(all.size(), n_offsets);
    for (size_t w = 0; w < n_offsets; ++w) EXPECT_EQ(all[w], w);
  }
}

TEST(DataBatches, TooShortSplitsAreErrors) {
  const std::vector<uint8_t> data(10, 1);
  EXPECT_NO_THROW(train_batch(data, 2, 9, 1, 0));
  EXPECT_THROW(train_batch(data, 2, 10, 1, 0), std::runtime_error);
  EXPECT_NO_THROW(eval_batch(data, 2, 9, 0, 1));
  EXPECT_THROW(eval_batch(data, 2, 10, 0, 1), std::runtime_error);
}

// One layer of width 16 for the trainer tests.
ModelArgs small_model(int max_seq_len) {
  ModelArgs a;
  a.dim = 16;
  a.n_layers = 1;
  a.n_heads = 2;
  a.n_kv_heads = 1;
  a.inter_dim = 32;
  a.max_seq_len = max_seq_len;
  return a;
}

// The trainer trains on the training split and evaluates on the validation split.
TEST(DataBatches, TrainerUsesEachSplitForItsPurpose) {
  omp_set_num_threads(1);
  const ModelArgs a = small_model(16);
  TrainArgs t;
  t.steps = 2;
  t.batch_size = 3;
  t.seq_len = 16;
  t.eval_batches = 2;
  t.warmup_steps = 0;
  const std::string text = positional_text(3000);
  const ByteCorpus corpus = ByteCorpus::from_text(text, 0.3);
  Trainer trainer(a, t, corpus);

  double expected_val = 0;
  for (int i = 0; i < t.eval_batches; ++i) {
    const Batch b = eval_batch(corpus.val, t.batch_size, t.seq_len, i, t.eval_batches);
    trainer.model.forward(b.inputs, b.targets, t.batch_size, t.seq_len);
    expected_val += trainer.model.loss_parts().at("main");
  }
  EXPECT_EQ(trainer.evaluate(), expected_val / t.eval_batches);

  const Batch b = train_batch(corpus.train, t.batch_size, t.seq_len, t.seed, 0);
  trainer.model.forward(b.inputs, b.targets, t.batch_size, t.seq_len);
  const double expected_train = trainer.model.loss_parts().at("main");
  EXPECT_EQ(trainer.train_step().train_loss, expected_train);
}

// ---------------------------------------------------------------------------
// Task rows. Oracle: the row's text itself, read back as a user would - every
// "Assistant:" opens a response that the newline after "</answer>" closes; every prompt
// parses back to a problem, and every response is right by the task's own
// verifier and in the R1 format. A response ends at the newline after its "</answer>".

TaskTextArgs countdown_text(TaskResponse response, LossOn loss) {
  TaskTextArgs a;
  a.share = 0.5;
  a.response = response;
  a.loss = loss;
  a.task.kind = TaskKind::Countdown;
  a.task.n_numbers = 3;
  a.task.max_number = 9;
  a.task.max_target = 50;
  return a;
}

std::string row_text(const Batch& b, size_t row, int seq_len) {
  std::string s;
  for (int t = 0; t < seq_len; ++t) s += char(b.inputs[row * seq_len + t]);
  s += char(b.targets[row * seq_len + seq_len - 1] < 0 ? '?' : b.targets[row * seq_len + seq_len - 1]);
  return s;
}

// Whether byte i of `text` lies in a response: after an "Assistant:" and
// before the newline after the "</answer>" that ends it.
std::vector<bool> response_bytes(const std::string& text) {
  std::vector<bool> in(text.size(), false);
  bool open = false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (open && text[i] == '\n' && i >= 9 && text.compare(i - 9, 9, "</answer>") == 0) open = false;
    in[i] = open;
    if (i + 1 >= 10 && text.compare(i + 1 - 10, 10, "Assistant:") == 0) open = true;
  }
  return in;
}

TEST(TaskRows, ShareZeroIsTheTextBatch) {
  const std::string text = positional_text(5000);
  const ByteCorpus c = ByteCorpus::from_text(text, 0.1);
  TaskTextArgs none = countdown_text(TaskResponse::Answer, LossOn::All);
  none.share = 0;
  for (int64_t step : {0, 1, 7}) {
    const Batch a = mixed_train_batch(c.train, none, 4, 32, 3, step), b = train_batch(c.train, 4, 32, 3, step);
    EXPECT_EQ(a.inputs, b.inputs);
    EXPECT_EQ(a.targets, b.targets);
  }
}

TEST(TaskRows, RowsAreTaskExamplesWithTheLossWhereAsked) {
  const std::string text = positional_text(5000);
  const ByteCorpus c = ByteCorpus::from_text(text, 0.1);
  const int batch = 4, T = 120;
  for (TaskResponse response : {TaskResponse::Answer, TaskResponse::Trace})
    for (LossOn loss : {LossOn::All, LossOn::Response}) {
      SCOPED_TRACE(std::string(name_of(response)) + " " + std::string(name_of(loss)));
      const TaskTextArgs a = countdown_text(response, loss);
      const Batch b = mixed_train_batch(c.train, a, batch, T, 5, 3);
      ASSERT_EQ(b.inputs.size(), size_t(batch * T));
      ASSERT_EQ(task_rows(a, batch), 2);
      // The first two rows are text windows: bytes of the positional corpus.
      for (size_t row = 0; row < 2; ++row)
        for (int t = 1; t < T; ++t)
          EXPECT_EQ(b.inputs[row * T + t], (b.inputs[row * T + t - 1] + 1) % 256);
      for (size_t row = 2; row < 4; ++row) {
        std::string s;
        for (int t = 0; t < T; ++t) s += char(b.inputs[row * T + t]);
        ASSERT_EQ(s.rfind("User: ", 0), 0u) << s;
        // Targets are the next bytes (where counted), counted exactly on responses with LossOn::Response.
        for (int t = 0; t + 1 < T; ++t) {
          const int target = b.targets[row * T + t];
          if (target >= 0) {
            EXPECT_EQ(target, b.inputs[row * T + t + 1]);
          }
        }
        const std::vector<bool> in = response_bytes(s);
        for (int t = 0; t + 1 < T; ++t)
          EXPECT_EQ(b.targets[row * T + t] >= 0, loss == LossOn::All || in[t + 1]) << "row " << row << " t " << t;
        // Every complete example parses back and its response is right and well formed.
        size_t pos = 0, complete = 0;
        for (;;) {
          const size_t nl = s.find('\n', pos), close = nl == std::string::npos ? nl : s.find("</answer>\n", nl);
          if (close == std::string::npos) break;
          const size_t end = close + 9;
          const std::string prompt = s.substr(pos, nl - pos), completion = s.substr(nl + 12, end - nl - 12);
          ASSERT_EQ(prompt.rfind("User: ", 0), 0u);
          ASSERT_EQ(s.compare(nl + 1, 11, "Assistant: "), 0);
          const auto p = parse_prompt(prompt.substr(6));
          ASSERT_TRUE(p) << prompt;
          EXPECT_EQ(accuracy_reward(*p, completion), 1.0) << completion;
          EXPECT_EQ(format_reward(completion), 1.0) << completion;
          EXPECT_EQ(completion.find("</think><answer>") != std::string::npos &&
                        completion.rfind("<think></think>", 0) == 0,
                    response == TaskResponse::Answer)
              << completion;
          pos = end + 1;
          ++complete;
        }
        EXPECT_GE(complete, 1u);
      }
    }
}

TEST(TaskRows, ValidationProblemsAreFixedAndHeldOut) {
  const TaskTextArgs a = countdown_text(TaskResponse::Answer, LossOn::Response);
  const Batch v0 = validation_task_batch(a, 3, 64, 9, 0), again = validation_task_batch(a, 3, 64, 9, 0);
  EXPECT_EQ(v0.inputs, again.inputs);
  EXPECT_EQ(v0.targets, again.targets);
  const Batch v1 = validation_task_batch(a, 3, 64, 9, 1);
  EXPECT_NE(v0.inputs, v1.inputs);
  const std::string text = positional_text(5000);
  const ByteCorpus c = ByteCorpus::from_text(text, 0.1);
  TaskTextArgs all = a;
  all.share = 1;
  const Batch t0 = mixed_train_batch(c.train, all, 3, 64, 9, 0);
  EXPECT_NE(t0.inputs, v0.inputs);
}

TEST(TaskRows, TrainerRecordsTheTaskValidationLoss) {
  omp_set_num_threads(1);
  const ModelArgs m = small_model(64);
  TrainArgs t;
  t.steps = 2;
  t.batch_size = 4;
  t.seq_len = 64;
  t.eval_batches = 2;
  t.eval_every = 1;
  t.warmup_steps = 0;
  t.task_text = countdown_text(TaskResponse::Trace, LossOn::Response);
  const ByteCorpus corpus = ByteCorpus::from_text(positional_text(3000), 0.3);
  // Step 0 trains on mixed_train_batch(..., step 0): its loss is a fresh model's on that batch.
  const Batch b = mixed_train_batch(corpus.train, t.task_text, t.batch_size, t.seq_len, t.seed, 0);
  Transformer<float> fresh(m);
  fresh.init_weights(t.seed);
  fresh.forward(b.inputs, b.targets, t.batch_size, t.seq_len);
  Trainer trainer(m, t, corpus);
  EXPECT_EQ(trainer.train_step().train_loss, fresh.loss_parts().at("main"));
  ASSERT_EQ(trainer.metrics.at("val_task_loss").size(), 1u);
  double expected = 0;
  for (int i = 0; i < t.eval_batches; ++i) {
    const Batch v = validation_task_batch(t.task_text, t.batch_size, t.seq_len, t.seed, i);
    trainer.model.forward(v.inputs, v.targets, t.batch_size, t.seq_len);
    expected += trainer.model.loss_parts().at("main");
  }
  trainer.evaluate();
  EXPECT_EQ(trainer.metrics.at("val_task_loss").back(), expected / t.eval_batches);
}

// ---------------------------------------------------------------------------
// SFT pair rows. Oracle: pairs whose text names them ("Q<i>?" then "A<i>!"), of
// different lengths, read back from the rows: which pair fills each slot, and
// whether each byte carries a loss, are seen in the bytes themselves.

std::vector<TaskExample> named_pairs(int n) {
  std::vector<TaskExample> v;
  for (int i = 0; i < n; ++i) v.push_back(pair_example("Q" + std::to_string(i) + "?", "A" + std::string(i % 3, 'x') + std::to_string(i) + "!"));
  return v;
}

// The pairs of a row in order (the number after each "Q"), checking each
// example's bytes and that exactly the response bytes ("A...!") are counted.
std::vector<int> pairs_in_row(const Batch& b, size_t row, int T) {
  std::string s;
  for (int t = 0; t < T; ++t) s += char(b.inputs[row * T + t]);
  std::vector<int> ids;
  bool in_response = false;
  for (int t = 0; t + 1 < T; ++t) {
    const char next = s[t + 1];
    if (next == 'A') in_response = true;
    EXPECT_EQ(b.targets[row * T + t] >= 0, in_response) << "row " << row << " t " << t << ": " << s;
    if (b.targets[row * T + t] >= 0) {
      EXPECT_EQ(b.targets[row * T + t], uint8_t(next));
    }
    if (next == '!') in_response = false;
  }
  for (size_t pos = 0; (pos = s.find('Q', pos)) != std::string::npos; ++pos) {
    const int id = std::stoi(s.substr(pos + 1));
    const std::string expected = "Q" + std::to_string(id) + "?A" + std::string(id % 3, 'x') + std::to_string(id) + "!\n";
    EXPECT_EQ(s.compare(pos, expected.size(), expected), 0) << s;
    ids.push_back(id);
  }
  return ids;
}

TEST(PairRows, WholeExamplesPerRowAndLossOnlyOnResponses) {
  const std::vector<TaskExample> ex = named_pairs(7);
  EXPECT_EQ(ex[4].text, "Q4?Ax4!\n");
  EXPECT_EQ(ex[4].response_begin, 3u);
  // The longest is 9 bytes ("Q5?Axx5!\n"): rows of 28 + 1 bytes hold 3.
  const PairRows p = PairRows::make(ex, 0.5, 4, 28);
  EXPECT_EQ(p.rows, 2);
  EXPECT_EQ(p.per_row, 3);
  const ByteCorpus c = ByteCorpus::from_text(positional_text(5000), 0.1);
  const Batch b = mixed_train_batch(c.train, TaskTextArgs{}, 4, 28, 11, 0, &p);
  ASSERT_EQ(b.inputs.size(), 4u * 28);
  for (size_t row = 0; row < 2; ++row)  // text windows first
    for (int t = 1; t < 28; ++t) EXPECT_EQ(b.inputs[row * 28 + t], (b.inputs[row * 28 + t - 1] + 1) % 256);
  for (size_t row = 2; row < 4; ++row) EXPECT_EQ(pairs_in_row(b, row, 28).size(), 3u);
  EXPECT_THROW(PairRows::make(ex, 0.5, 4, 7), std::invalid_argument);  // 9 bytes do not fit 7 + 1
  EXPECT_THROW(PairRows::make({}, 0.5, 4, 28), std::invalid_argument);
  // With task rows too: text | task | pairs, and more than the batch is an error.
  TaskTextArgs task = countdown_text(TaskResponse::Answer, LossOn::Response);
  task.share = 0.25;
  const Batch m = mixed_train_batch(c.train, task, 4, 28, 11, 0, &p);
  EXPECT_EQ(char(m.inputs[1 * 28]), 'U');
  EXPECT_EQ(pairs_in_row(m, 2, 28), pairs_in_row(b, 2, 28));
  task.share = 0.75;
  EXPECT_THROW(mixed_train_batch(c.train, task, 4, 28, 11, 0, &p), std::invalid_argument);
}

TEST(PairRows, EachEpochSeesEveryPairOnceInItsOwnOrder) {
  const int N = 7, T = 28;
  const PairRows p = PairRows::make(named_pairs(N), 0.5, 4, T);
  const ByteCorpus c = ByteCorpus::from_text(positional_text(5000), 0.1);
  const int64_t steps = p.steps_for(4);
  EXPECT_EQ(steps, 5);  // ceil(4 * 7 / (2 rows * 3)) = ceil(4.67)
  std::vector<int> slots;
  for (int64_t s = 0; s < steps; ++s) {
    const Batch b = mixed_train_batch(c.train, TaskTextArgs{}, 4, T, 11, s, &p);
    for (size_t row = 2; row < 4; ++row)
      for (int id : pairs_in_row(b, row, T)) slots.push_back(id);
    EXPECT_DOUBLE_EQ(p.epoch_of(s + 1), double(slots.size()) / N);
  }
  ASSERT_GE(slots.size(), size_t(4 * N));
  std::set<std::vector<int>> orders;
  for (int e = 0; e < 4; ++e) {
    std::vector<int> epoch(slots.begin() + e * N, slots.begin() + (e + 1) * N);
    orders.insert(epoch);
    std::sort(epoch.begin(), epoch.end());
    for (int i = 0; i < N; ++i) EXPECT_EQ(epoch[i], i) << "epoch " << e;
  }
  EXPECT_GT(orders.size(), 1u);
  // A batch depends only on (seed, step); another seed orders the pairs differently.
  const Batch again = mixed_train_batch(c.train, TaskTextArgs{}, 4, T, 11, 3, &p);
  const Batch fresh = [&] {
    const PairRows q = PairRows::make(named_pairs(N), 0.5, 4, T);
    return mixed_train_batch(c.train, TaskTextArgs{}, 4, T, 11, 3, &q);
  }();
  EXPECT_EQ(again.inputs, fresh.inputs);
  EXPECT_EQ(again.targets, fresh.targets);
  std::vector<int> other;
  for (int64_t s = 0; s < 3; ++s) {
    const Batch b = mixed_train_batch(c.train, TaskTextArgs{}, 4, T, 12, s, &p);
    for (size_t row = 2; row < 4; ++row)
      for (int id : pairs_in_row(b, row, T)) other.push_back(id);
  }
  EXPECT_NE(std::vector<int>(slots.begin(), slots.begin() + other.size()), other);
}

TEST(PairRows, ArgumentsNameWhatIsWrong) {
  const auto message = [](const PairTextArgs& a) {
    try {
      a.validate();
    } catch (const ArgsError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  PairTextArgs a;
  EXPECT_EQ(message(a), "");
  a.share = 0.5;
  EXPECT_NE(message(a).find("needs data.pairs"), std::string::npos);
  a.share = 0, a.path = "p.jsonl";
  EXPECT_NE(message(a).find("needs data.pairs_share > 0"), std::string::npos);
  a.share = 1.5;
  EXPECT_NE(message(a).find("[0, 1]"), std::string::npos);
  a.share = 0.5, a.epochs = -1;
  EXPECT_NE(message(a).find("data.pairs_epochs"), std::string::npos);
  TrainArgs t;
  t.batch_size = 4;
  t.task_text = countdown_text(TaskResponse::Answer, LossOn::Response);
  t.pair_text.path = "p.jsonl", t.pair_text.share = 0.75;
  try {
    t.validate(small_model(256));
    FAIL() << "no error";
  } catch (const ArgsError& e) {
    EXPECT_NE(std::string(e.what()).find("more than train.batch_size = 4"), std::string::npos) << e.what();
  }
}

// With data.pairs_epochs the trainer runs the steps that pass over the pairs that
// often, records pairs_epoch, and its first step's loss is a fresh model's on the batch.
TEST(PairRows, TrainerRunsTheEpochsAndTrainsOnTheRows) {
  omp_set_num_threads(1);
  const ModelArgs m = small_model(28);
  TrainArgs t;
  t.steps = 100;
  t.batch_size = 4;
  t.seq_len = 28;
  t.eval_every = 0;
  t.warmup_steps = 0;
  t.pair_text.path = "named", t.pair_text.share = 0.5, t.pair_text.epochs = 2;
  const ByteCorpus corpus = ByteCorpus::from_text(positional_text(3000), 0.3);
  Trainer trainer(m, t, corpus, named_pairs(7));
  EXPECT_EQ(trainer.args.steps, 3);  // ceil(2 * 7 / 6)
  const PairRows p = PairRows::make(named_pairs(7), 0.5, 4, 28);
  const Batch b = mixed_train_batch(corpus.train, t.task_text, 4, 28, t.seed, 0, &p);
  Transformer<float> fresh(m);
  fresh.init_weights(t.seed);
  fresh.forward(b.inputs, b.targets, 4, 28);
  EXPECT_EQ(trainer.train_step().train_loss, fresh.loss_parts().at("main"));
  while (trainer.step < trainer.args.steps) trainer.train_step();
  EXPECT_EQ(trainer.metrics.at("pairs_epoch"), (std::vector<double>{6.0 / 7, 12.0 / 7, 18.0 / 7}));
  t.warmup_steps = 5;
  EXPECT_THROW(Trainer(m, t, corpus, named_pairs(7)), ArgsError);
  t.warmup_steps = 0;
  EXPECT_THROW(Trainer(m, t, corpus, {}), std::invalid_argument);
}

}  // namespace
}  // namespace dslab
