#include "reference/data.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "reference/args_error.hpp"

namespace dslab {

ByteCorpus ByteCorpus::from_text(const std::string& text, double val_fraction) {
  if (!(val_fraction > 0 && val_fraction < 1))
    throw std::invalid_argument("val_fraction must be in (0, 1)");
  const size_t n_val = size_t(double(text.size()) * val_fraction);
  const size_t n_train = text.size() - n_val;
  ByteCorpus c;
  c.train.assign(text.begin(), text.begin() + n_train);
  c.val.assign(text.begin() + n_train, text.end());
  return c;
}

ByteCorpus ByteCorpus::from_file(const std::string& path, double val_fraction) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read data file '" + path + "'");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() < 1024)
    throw std::runtime_error("data file '" + path + "' has " + std::to_string(text.size()) +
                             " bytes; at least 1024 are needed");
  return from_text(text, val_fraction);
}

namespace {

void check_fits(const std::vector<uint8_t>& data, int seq_len, const char* what) {
  if (data.size() < size_t(seq_len) + 1)
    throw std::runtime_error(std::string("the ") + what + " split has " +
                             std::to_string(data.size()) + " bytes, fewer than seq_len + 1 = " +
                             std::to_string(seq_len + 1));
}

void append_window(Batch& b, const std::vector<uint8_t>& data, size_t offset, int seq_len) {
  for (int t = 0; t < seq_len; ++t) {
    b.inputs.push_back(data[offset + t]);
    b.targets.push_back(data[offset + t + 1]);
  }
}

}  // namespace

Batch train_batch(const std::vector<uint8_t>& data, int batch, int seq_len, uint64_t seed,
                  int64_t step) {
  check_fits(data, seq_len, "training");
  Rng rng(seed, uint64_t(step));
  Batch b;
  const size_t n_offsets = data.size() - seq_len;
  for (int i = 0; i < batch; ++i) append_window(b, data, rng.below(n_offsets), seq_len);
  return b;
}

Batch eval_batch(const std::vector<uint8_t>& data, int batch, int seq_len, int index, int count) {
  check_fits(data, seq_len, "validation");
  Batch b;
  const size_t n_offsets = data.size() - seq_len;
  const size_t windows = size_t(batch) * count;
  for (int i = 0; i < batch; ++i) {
    const size_t w = size_t(index) * batch + i;
    append_window(b, data, w * n_offsets / windows, seq_len);
  }
  return b;
}

void TaskTextArgs::validate() const {
  require(share >= 0 && share <= 1, {"data.task_share"},
          "data.task_share = " + value_text(share) + " must be in [0, 1]");
  task.validate();
}

TaskExample task_example(const Problem& p, TaskResponse response) {
  const std::string completion = response == TaskResponse::Answer
                                     ? "<think></think><answer>" + p.answer + "</answer>"
                                     : solution_trace(p);
  TaskExample e;
  e.text = r1_prompt(p);
  e.response_begin = e.text.size();
  e.text += " " + completion + "\n";
  return e;
}

void append_task_row(Batch& b, const TaskTextArgs& a, int seq_len, uint64_t seed, Rng& rng) {
  // The row's seq_len + 1 bytes, and whether each is a response byte.
  std::string row;
  std::vector<bool> response;
  while (row.size() < size_t(seq_len) + 1) {
    const TaskExample e = task_example(make_problem(a.task, seed, rng.next()), a.response);
    const size_t response_end = e.text.size() - 1;  // the final "\n" separates, it is not the response
    for (size_t i = 0; i < e.text.size(); ++i) response.push_back(i >= e.response_begin && i < response_end);
    row += e.text;
  }
  for (int t = 0; t < seq_len; ++t) {
    b.inputs.push_back(uint8_t(row[t]));
    const bool counted = a.loss == LossOn::All || response[t + 1];
    b.targets.push_back(counted ? int(uint8_t(row[t + 1])) : kIgnoreTarget);
  }
}

int task_rows(const TaskTextArgs& a, int batch) { return int(std::lround(a.share * batch)); }

Batch mixed_train_batch(const std::vector<uint8_t>& data, const TaskTextArgs& a, int batch, int seq_len,
                        uint64_t seed, int64_t step, const PairRows* pairs) {
  const int n_task = task_rows(a, batch), n_pair = pairs ? pairs->rows : 0;
  if (n_task + n_pair > batch)
    throw std::invalid_argument("mixed_train_batch: " + std::to_string(n_task) + " task rows and " +
                                std::to_string(n_pair) + " pair rows do not fit a batch of " + std::to_string(batch));
  const int n_text = batch - n_task - n_pair;
  Batch b = n_text > 0 ? train_batch(data, n_text, seq_len, seed, step) : Batch{};
  Rng rng(seed ^ kTaskStream, uint64_t(step));
  for (int i = 0; i < n_task; ++i) append_task_row(b, a, seq_len, seed ^ kTaskStream, rng);
  if (n_pair > 0) append_pair_rows(b, *pairs, seq_len, seed, step);
  return b;
}

TaskExample pair_example(const std::string& prompt, const std::string& response) {
  return {prompt + response + "\n", prompt.size()};
}

void PairTextArgs::validate() const {
  require(share >= 0 && share <= 1, {"data.pairs_share"},
          "data.pairs_share = " + value_text(share) + " must be in [0, 1]");
  require(path.empty() == (share == 0), {"data.pairs_share", "data.pairs"},
          path.empty() ? "data.pairs_share = " + value_text(share) + " needs data.pairs (the file of pairs)"
                       : "data.pairs = \"" + path + "\" needs data.pairs_share > 0 (the share of each batch's rows)");
  require(epochs >= 0 && std::isfinite(epochs), {"data.pairs_epochs"},
          "data.pairs_epochs = " + value_text(epochs) + " must be >= 0 (0: train.steps decides)");
  require(epochs == 0 || !path.empty(), {"data.pairs_epochs", "data.pairs"},
          "data.pairs_epochs = " + value_text(epochs) + " needs data.pairs");
}

PairRows PairRows::make(std::vector<TaskExample> examples, double share, int batch, int seq_len) {
  PairRows p;
  p.rows = int(std::lround(share * batch));
  size_t longest = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    if (examples[i].text.size() > size_t(seq_len) + 1)
      throw std::invalid_argument("pair " + std::to_string(i) + " is " + std::to_string(examples[i].text.size()) +
                                  " bytes (prompt, response and newline); a row holds train.seq_len + 1 = " +
                                  std::to_string(seq_len + 1));
    longest = std::max(longest, examples[i].text.size());
  }
  if (examples.empty()) throw std::invalid_argument("no pairs");
  p.per_row = int((size_t(seq_len) + 1) / longest);
  p.examples = std::move(examples);
  return p;
}

int64_t PairRows::steps_for(double epochs) const {
  const double slots = double(rows) * double(per_row);
  return slots > 0 ? int64_t(std::ceil(epochs * double(examples.size()) / slots)) : 0;
}

double PairRows::epoch_of(int64_t step) const {
  return double(step) * rows * per_row / double(examples.size());
}

void append_pair_rows(Batch& b, const PairRows& pairs, int seq_len, uint64_t seed, int64_t step) {
  const uint64_t N = pairs.examples.size();
  uint64_t epoch = UINT64_MAX;
  std::vector<uint64_t> perm(N);
  for (int r = 0; r < pairs.rows; ++r) {
    std::string row;
    std::vector<bool> response;
    for (int e = 0; e < pairs.per_row; ++e) {
      const uint64_t q = (uint64_t(step) * pairs.rows + r) * pairs.per_row + e;
      if (q / N != epoch) {  // Fisher-Yates from the epoch's own stream
        epoch = q / N;
        Rng rng(seed ^ kPairStream, epoch);
        for (uint64_t i = 0; i < N; ++i) perm[i] = i;
        for (uint64_t i = N; i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
      }
      const TaskExample& x = pairs.examples[perm[q % N]];
      const size_t response_end = x.text.size() - 1;  // the final "\n" separates
      for (size_t i = 0; i < x.text.size(); ++i) response.push_back(i >= x.response_begin && i < response_end);
      row += x.text;
    }
    response.resize(size_t(seq_len) + 1, false);
    row.resize(size_t(seq_len) + 1, '\n');
    for (int t = 0; t < seq_len; ++t) {
      b.inputs.push_back(uint8_t(row[t]));
      b.targets.push_back(response[t + 1] ? int(uint8_t(row[t + 1])) : kIgnoreTarget);
    }
  }
}

Batch validation_task_batch(const TaskTextArgs& a, int batch, int seq_len, uint64_t seed, int index) {
  Batch b;
  Rng rng(seed ^ kValidationTaskStream, uint64_t(index));
  for (int i = 0; i < batch; ++i) append_task_row(b, a, seq_len, seed ^ kValidationTaskStream, rng);
  return b;
}

}  // namespace dslab
