// Byte-level data: any file is a token stream with vocabulary 256.
// The last val_fraction of the bytes is the validation split.
// Task text (Sec. 2.6 of the review: a base that has seen the tasks, and SFT on
// prompt -> response pairs) is drawn from a task's problem generator
// (reference/tasks.hpp) and mixed into the batches row by row; with
// LossOn::Response only the response bytes carry a loss.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "reference/enum_names.hpp"
#include "reference/tasks.hpp"
#include "reference/tensor.hpp"

namespace dslab {

struct ByteCorpus {
  std::vector<uint8_t> train, val;
  // Throws std::runtime_error naming the file when it cannot be read or is
  // too small to split.
  static ByteCorpus from_file(const std::string& path, double val_fraction);
  static ByteCorpus from_text(const std::string& text, double val_fraction);
};

// One batch: `batch` windows of seq_len+1 bytes; inputs are the first
// seq_len bytes of each, targets the last seq_len. Both [batch*seq_len].
// A target of kIgnoreTarget carries no loss (cross_entropy.hpp).
constexpr int kIgnoreTarget = -1;
struct Batch {
  std::vector<int> inputs, targets;
};

// The training batch of step `step`: window offsets drawn from Rng(seed, step),
// so the batch depends only on (seed, step), which makes resuming exact.
Batch train_batch(const std::vector<uint8_t>& data, int batch, int seq_len, uint64_t seed,
                  int64_t step);

// Validation batch `index` of `count`: windows evenly spaced over the split.
Batch eval_batch(const std::vector<uint8_t>& data, int batch, int seq_len, int index, int count);

// ---------------------------------------------------------------------------
// Task text. One example is the R1 template and a response:
//   r1_prompt(p) + " " + completion + "\n"
//   ("User: Make 64 with 3 7 25, each once.\nAssistant: <completion>\n")
// where the response is " " + completion and the completion is
//   TaskResponse::Answer  "<think></think><answer>" + p.answer + "</answer>"  (answers only, no reasoning)
//   TaskResponse::Trace   solution_trace(p)  (the solver's readable reasoning, tasks.hpp)
enum class TaskResponse { Answer, Trace };
template <> struct EnumNames<TaskResponse> {
  static constexpr std::array<std::string_view, 2> names = {"answer", "trace"};
};

// Which targets of a task row carry the loss: every byte (mid-training on task
// text) or only the bytes of the responses (SFT: the prompt is given).
enum class LossOn { All, Response };
template <> struct EnumNames<LossOn> {
  static constexpr std::array<std::string_view, 2> names = {"all", "response"};
};

struct TaskTextArgs {
  double share = 0;      // round(share * batch_size) rows of each batch are task rows; 0: none
  TaskResponse response = TaskResponse::Answer;
  LossOn loss = LossOn::All;
  TaskArgs task;         // the problems
  void validate() const; // ArgsError "data.task_share" and task.*
};

// One example's text and where its response starts (byte offset).
struct TaskExample {
  std::string text;
  size_t response_begin = 0;
};
TaskExample task_example(const Problem& p, TaskResponse response);

// One task row: examples of problems make_problem(a.task, seed, rng.next())
// concatenated from the row's first byte until seq_len + 1 bytes are filled
// (the last one cut), as inputs [seq_len] and targets [seq_len] appended to
// `b`; with LossOn::Response a target outside the responses is kIgnoreTarget.
void append_task_row(Batch& b, const TaskTextArgs& a, int seq_len, uint64_t seed, Rng& rng);

// The training batch of step `step` with task rows: the first
// batch - n_task - pairs.rows rows are train_batch(data, batch - n_task - pairs.rows, ...)'s
// windows, then n_task = round(share * batch) task rows drawn from
// Rng(seed ^ kTaskStream, step), then the pair rows (append_pair_rows, below).
// With share 0 and no pairs it is train_batch(data, batch, seq_len, seed, step).
constexpr uint64_t kTaskStream = 0x7461736B;          // "task"
constexpr uint64_t kValidationTaskStream = 0x76616C;  // "val": held-out problems
struct PairRows;
Batch mixed_train_batch(const std::vector<uint8_t>& data, const TaskTextArgs& a, int batch, int seq_len,
                        uint64_t seed, int64_t step, const PairRows* pairs = nullptr);
int task_rows(const TaskTextArgs& a, int batch);

// ---------------------------------------------------------------------------
// SFT pairs (R1 stage 3: rejection-sampled responses fine-tuned on, mixed with
// general text). A pair's example is prompt + response + "\n" (as a task
// example, the response as sampled after the prompt); only the response bytes
// carry a loss.
TaskExample pair_example(const std::string& prompt, const std::string& response);

struct PairTextArgs {
  std::string path;     // data.pairs: an eval result or JSON Lines file (read by the caller); "": none
  double share = 0;     // data.pairs_share: round(share * batch_size) rows of each batch are pair rows
  double epochs = 0;    // data.pairs_epochs: > 0 sets the run's steps so the pairs are seen this often
  // ArgsError "data.pairs_share" / "data.pairs_epochs": a path needs a share > 0 and the reverse.
  void validate() const;
};

// Pair rows: each holds `per_row` whole examples, the most that always fit
// (floor((seq_len + 1) / longest example)), padded with '\n' inputs and
// kIgnoreTarget targets. Example slot q of the run (slot e of row r of step s
// is q = (s * rows + r) * per_row + e) is examples[perm_j[q mod N]] with j =
// q / N its epoch and perm_j a permutation of 0..N-1 drawn from
// Rng(seed ^ kPairStream, j): each epoch sees every pair once, in an order of
// its own, and a batch depends only on (seed, step).
constexpr uint64_t kPairStream = 0x70616972;  // "pair"
struct PairRows {
  std::vector<TaskExample> examples;
  int rows = 0, per_row = 1;
  // Throws std::invalid_argument naming the example when one is longer than seq_len + 1 bytes.
  static PairRows make(std::vector<TaskExample> examples, double share, int batch, int seq_len);
  // Steps for `epochs` passes over the examples: ceil(epochs * N / (rows * per_row)).
  int64_t steps_for(double epochs) const;
  // Epochs completed before step `step`: the slots used so far over N.
  double epoch_of(int64_t step) const;
};
void append_pair_rows(Batch& b, const PairRows& pairs, int seq_len, uint64_t seed, int64_t step);

// Validation task batch `index`: `batch` task rows of problems from the seed
// seed ^ kValidationTaskStream, stream `index` (fixed for the run).
Batch validation_task_batch(const TaskTextArgs& a, int batch, int seq_len, uint64_t seed, int index);

}  // namespace dslab
