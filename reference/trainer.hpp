// The training loop of the reference transformer, in float:
//   for each step: batch(seed, step) -> lambda of MTP (MtpArgs::lambda_at) -> forward
//     -> backward -> clip -> AdamW(lr(step)) -> balance metrics -> expert-bias update (Eq. (24))
// Parameters, gradients and AdamW's moments are each one buffer (the model's
// arenas); the update and the gradient norm run over them in fixed chunks.
// Every `eval_every` steps (and at the last) the validation loss is measured
// on fixed windows. With task text (TrainArgs::task_text, data.hpp) part of each
// batch is task rows, and each evaluation also measures val_task_loss on fixed
// held-out task rows (with LossOn::Response: on their responses only). Metrics are kept as named columns, one value per step
// (val_* columns one per evaluation). With SFT pairs (TrainArgs::pair_text)
// some rows are pair rows and each step records pairs_epoch, the epochs of the
// pairs completed after it. train_loss and val_loss are the main
// next-token loss; the other terms of the objective are kept as loss_<name>.
// With MTP (model mtp.depth = D > 0) lambda follows MtpArgs::lambda_at, each
// step keeps loss_mtp_<k> (L^k_MTP, Eq. (25)) and mtp_lambda, and the last
// step measures greedy speculative decoding on validation text:
// accept_rate_depth_<k> and accept_tokens_per_forward. Every run's last step
// records peak_rss_mib, the process's peak resident memory.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "reference/adamw.hpp"
#include "reference/data.hpp"
#include "reference/data_parallel.hpp"
#include "reference/fp8_linear.hpp"
#include "reference/sampler.hpp"
#include "reference/transformer.hpp"

namespace dslab {

struct TrainArgs {
  int64_t steps = 1000;
  int batch_size = 16;
  // M: each step's batch_size rows run as M micro-batches of batch_size/M rows
  // (forward and backward each); the step's gradient and losses are their mean,
  // summed in micro-batch order (reference/data_parallel.hpp), and the MoE
  // loads are summed over all M. With N data-parallel ranks, N divides M, and
  // the step is the same bits for every such N. 1: the whole batch at once.
  int micro_batches = 1;
  int seq_len = 128;
  double lr = 1e-3, min_lr = 1e-4;
  int64_t warmup_steps = 100;
  AdamWArgs adamw;
  double grad_clip = 1.0;       // max global gradient norm; 0 disables
  uint64_t seed = 1;
  int64_t eval_every = 100;
  int eval_batches = 8;
  int64_t checkpoint_every = 100;
  bool capture = false;          // the run keeps tensors for the simulators (experiments/capture.hpp)
  std::string init;              // a result file whose weights start the run (read by the caller); "": fresh
  TaskTextArgs task_text;        // task rows mixed into the batches (data.hpp); share 0: none
  PairTextArgs pair_text;        // SFT pair rows (data.hpp); share 0: none
  // How this run fits `model` and its own schedule: micro_batches divides batch_size, seq_len <= model.max_seq_len,
  // seq_len > model.mtp.depth (with MTP), min_lr <= lr, warmup_steps <= steps.
  // Throws ArgsError (train.* and model keys). The config loader calls it after
  // ModelArgs::validate(); the Trainer does not.
  void validate(const ModelArgs& model) const;
};

using Metrics = std::map<std::string, std::vector<double>>;

// dslab train's val_loss: the mean main loss of `model` over `count` batches
// of validation windows of `data` (eval_batch(data, batch, seq_len, i, count)).
// `after_each`, when given, sees the model after each batch's forward.
double validation_loss(Transformer<float>& model, const std::vector<uint8_t>& data, int batch, int seq_len,
                       int count, const std::function<void(const Transformer<float>&)>& after_each = {});

// The largest resident set of this process so far, in MiB (the peak_rss_mib metric).
double peak_rss_mib();

// What one step reports to whoever drives the loop (progress, checkpoints).
struct StepReport {
  int64_t step = 0, steps = 0;  // step just finished (1-based count), of total
  double train_loss = 0, lr = 0, grad_norm = 0, tokens_per_second = 0, seconds = 0;
  std::map<std::string, double> loss_parts;  // the objective's terms (Transformer's Activations)
  bool evaluated = false;
  double val_loss = 0;
  std::optional<double> val_task_loss;  // with task rows, at an evaluation
};

class Trainer {
 public:
  // `pairs` (the examples of train_args.pair_text's file, read by the caller)
  // must be non-empty exactly when pair_text.share > 0. With pair_text.epochs > 0
  // args.steps becomes PairRows::steps_for(epochs); throws ArgsError
  // ("data.pairs_epochs") when warmup_steps exceeds it, std::invalid_argument
  // when a pair does not fit a row.
  // With `parallel` (not owned; null: one process) this rank runs its block of
  // each step's micro-batches and only rank 0 evaluates; throws ArgsError
  // ("train.micro_batches") when the rank count does not divide micro_batches.
  Trainer(const ModelArgs& model_args, const TrainArgs& train_args, const ByteCorpus& corpus,
          std::vector<TaskExample> pairs = {}, DataParallel* parallel = nullptr);
  Trainer(const Trainer&) = delete;  // it keeps views of its model's arenas
  Trainer& operator=(const Trainer&) = delete;

  // Runs from the current step to train_args.steps. `on_step` is called after
  // every step; returning false stops the loop early (the state stays valid).
  void run(const std::function<bool(const StepReport&)>& on_step);
  // One optimisation step; returns its report.
  StepReport train_step();
  // Mean main loss over the fixed validation windows; MoE models also record
  // MaxVio_global, the imbalance of the load summed over all the windows.
  double evaluate();
  // Greedy speculative decoding with the MTP modules from eval_batches
  // validation prompts of seq_len/4 bytes, seq_len/2 tokens each.
  SpeculativeStats measure_acceptance();

  struct StepStats;  // a step's losses and MoE loads (trainer.cpp)

  TrainArgs args;
  Transformer<float> model;
  AdamW<float> optimizer;
  int64_t step = 0;    // steps completed
  Metrics metrics;
  const ByteCorpus& corpus() const { return corpus_; }

 private:
  // One step as M micro-batches (train.micro_batches > 1, or data-parallel):
  // fills the gradient arena with the mean gradient; returns the step's
  // statistics (losses, MoE loads) combined over the micro-batches.
  StepStats micro_batch_step(const Batch& b);
  const ByteCorpus& corpus_;
  DataParallel* parallel_;
  std::optional<PairRows> pairs_;
  LrSchedule schedule_;
  std::vector<Segment<float>> param_segments_, grad_segments_;  // the arenas, tensor by tensor
};

}  // namespace dslab
