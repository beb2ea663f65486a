#include "reference/trainer.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <string>

#include "reference/args_error.hpp"
#include "reference/sampler.hpp"

namespace dslab {

namespace {

std::string layer_key(size_t l, const std::string& name) { return "layers." + std::to_string(l) + "." + name; }

void push_each(Metrics& m, const std::string& prefix, const std::vector<double>& values) {
  for (size_t i = 0; i < values.size(); ++i) m[prefix + std::to_string(i)].push_back(values[i]);
}

// Load balance of every MoE layer on the last batch (Sec. 2.2.3): per-expert
// load_i, f_i (Eq. (22)), P_i (Eq. (23)), MaxVio, and per-device load when the
// experts are placed on several devices. maxvio_batch is the mean over layers.
void record_balance(Metrics& m, const Transformer<float>& model) {
  double maxvio_sum = 0;
  int moe_layers = 0;
  for (size_t l = 0; l < size_t(model.args.n_layers); ++l) {
    const Routing<float>* r = model.routing(l);
    if (!r) continue;
    const std::vector<double> load = expert_load(*r);
    const double maxvio = max_violation(load);
    m[layer_key(l, "maxvio")].push_back(maxvio);
    push_each(m, layer_key(l, "load."), load);
    push_each(m, layer_key(l, "f."), expert_fraction(*r));
    push_each(m, layer_key(l, "P."), expert_probability(*r));
    if (model.args.balance.n_devices > 1) {
      const Placement pl = Placement::contiguous(r->n_experts, model.args.balance.n_devices);
      push_each(m, layer_key(l, "device_load."), device_load(load, pl));
    }
    maxvio_sum += maxvio;
    ++moe_layers;
  }
  if (moe_layers > 0) m["maxvio_batch"].push_back(maxvio_sum / moe_layers);
}

void add_into(std::vector<double>& total, const std::vector<double>& x) {
  if (total.empty()) total.assign(x.size(), 0.0);
  for (size_t i = 0; i < x.size(); ++i) total[i] += x[i];
}

}  // namespace

void TrainArgs::validate(const ModelArgs& model) const {
  const auto v = [](auto x) { return value_text(x); };
  require(seq_len <= model.max_seq_len, {"train.seq_len", "model.max_seq_len"},
          "train.seq_len = " + v(seq_len) + " must be <= model.max_seq_len = " + v(model.max_seq_len));
  require(model.mtp.depth <= 0 || seq_len > model.mtp.depth, {"train.seq_len", "mtp.depth"},
          "train.seq_len = " + v(seq_len) + " must be > mtp.depth = " + v(model.mtp.depth) +
              " (depth k predicts the token k+1 places ahead within the sequence)");
  require(min_lr <= lr, {"train.min_lr", "train.lr"},
          "train.min_lr = " + v(min_lr) + " must be <= train.lr = " + v(lr));
  require(warmup_steps <= steps, {"train.warmup_steps", "train.steps"},
          "train.warmup_steps = " + v(warmup_steps) + " must be <= train.steps = " + v(steps));
  task_text.validate();
  pair_text.validate();
  const int n_task = task_rows(task_text, batch_size), n_pair = int(std::lround(pair_text.share * batch_size));
  require(n_task + n_pair <= batch_size, {"data.task_share", "data.pairs_share"},
          "data.task_share = " + v(task_text.share) + " and data.pairs_share = " + v(pair_text.share) + " are " +
              v(n_task) + " + " + v(n_pair) + " rows, more than train.batch_size = " + v(batch_size));
  require(pair_text.share == 0 || n_pair > 0, {"data.pairs_share", "train.batch_size"},
          "data.pairs_share = " + v(pair_text.share) + " is 0 rows of train.batch_size = " + v(batch_size));
}

Trainer::Trainer(const ModelArgs& model_args, const TrainArgs& train_args, const ByteCorpus& corpus,
                 std::vector<TaskExample> pairs)
    : args(train_args), model(model_args), corpus_(corpus) {
  if ((args.pair_text.share > 0) != !pairs.empty())
    throw std::invalid_argument("Trainer: pairs are given exactly when data.pairs_share > 0");
  if (!pairs.empty()) {
    pairs_ = PairRows::make(std::move(pairs), args.pair_text.share, args.batch_size, args.seq_len);
    if (args.pair_text.epochs > 0) {
      args.steps = std::max<int64_t>(1, pairs_->steps_for(args.pair_text.epochs));
      require(args.warmup_steps <= args.steps, {"data.pairs_epochs", "train.warmup_steps"},
              "data.pairs_epochs = " + value_text(args.pair_text.epochs) + " over " +
                  std::to_string(pairs_->examples.size()) + " pairs is " + std::to_string(args.steps) +
                  " steps, fewer than train.warmup_steps = " + std::to_string(args.warmup_steps));
    }
  }
  model.init_weights(args.seed);
  param_segments_ = segments(model.params.arena());
  grad_segments_ = segments(model.grads.arena());
  optimizer = AdamW<float>(param_segments_);
  schedule_ = {args.lr, args.min_lr, args.warmup_steps, args.steps};
}

double validation_loss(Transformer<float>& model, const std::vector<uint8_t>& data, int batch, int seq_len,
                       int count, const std::function<void(const Transformer<float>&)>& after_each) {
  double total = 0;
  for (int i = 0; i < count; ++i) {
    const Batch b = eval_batch(data, batch, seq_len, i, count);
    model.forward(b.inputs, b.targets, batch, seq_len);
    total += model.loss_parts().at("main");
    if (after_each) after_each(model);
  }
  return total / count;
}

double Trainer::evaluate() {
  std::map<size_t, std::vector<double>> load;  // MoE layer -> load over all windows
  const double val_loss =
      validation_loss(model, corpus_.val, args.batch_size, args.seq_len, args.eval_batches, [&](const auto& m) {
        for (size_t l = 0; l < size_t(m.args.n_layers); ++l)
          if (const Routing<float>* r = m.routing(l)) add_into(load[l], expert_load(*r));
      });
  // MaxVio_global: the imbalance of the whole validation set, per layer and mean.
  double maxvio_sum = 0;
  for (const auto& [l, layer_load] : load) {
    const double maxvio = max_violation(layer_load);
    metrics[layer_key(l, "val_maxvio_global")].push_back(maxvio);
    maxvio_sum += maxvio;
  }
  if (!load.empty()) metrics["val_maxvio_global"].push_back(maxvio_sum / double(load.size()));
  if (task_rows(args.task_text, args.batch_size) > 0) {
    double task_total = 0;
    for (int i = 0; i < args.eval_batches; ++i) {
      const Batch b = validation_task_batch(args.task_text, args.batch_size, args.seq_len, args.seed, i);
      model.forward(b.inputs, b.targets, args.batch_size, args.seq_len);
      task_total += model.loss_parts().at("main");
    }
    metrics["val_task_loss"].push_back(task_total / args.eval_batches);
  }
  return val_loss;
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;  // Linux: ru_maxrss in KiB
}

SpeculativeStats Trainer::measure_acceptance() {
  // Greedy speculative decoding from prompts of seq_len/4 validation bytes,
  // seq_len/2 new tokens each, so context and drafts fit in max_seq_len.
  SampleArgs sample;
  sample.temperature = 0;
  sample.tokens = std::max(1, args.seq_len / 2);
  const int prompt = std::max(1, args.seq_len / 4);
  SpeculativeStats stats;
  for (int i = 0; i < args.eval_batches; ++i) {
    const Batch b = eval_batch(corpus_.val, 1, prompt, i, args.eval_batches);
    generate_speculative_tokens(model, b.inputs, sample, &stats);
  }
  return stats;
}

StepReport Trainer::train_step() {
  const auto t0 = std::chrono::steady_clock::now();
  Batch b = mixed_train_batch(corpus_.train, args.task_text, args.batch_size, args.seq_len, args.seed, step,
                              pairs_ ? &*pairs_ : nullptr);
  model.mtp_lambda = model.args.mtp.lambda_at(step, args.steps);
  model.zero_grad();
  model.forward(b.inputs, b.targets, args.batch_size, args.seq_len);
  const double loss = model.loss_parts().at("main");
  model.backward();
  const double norm = global_grad_norm(grad_segments_);
  clip_grad_norm(grad_segments_, norm, args.grad_clip);
  const double lr = schedule_.at(step);
  optimizer.step(param_segments_, grad_segments_, lr, args.adamw);
  record_balance(metrics, model);  // the batch's routing, before the bias moves
  model.update_expert_bias();      // Eq. (24), after the step
  ++step;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  StepReport r;
  r.step = step;
  r.steps = args.steps;
  r.train_loss = loss;
  r.lr = lr;
  r.grad_norm = norm;
  r.seconds = seconds;
  r.tokens_per_second = double(args.batch_size) * args.seq_len / seconds;
  r.loss_parts = model.loss_parts();
  metrics["step"].push_back(double(step));
  metrics["train_loss"].push_back(loss);
  for (const auto& [name, value] : model.loss_parts())
    if (name != "main") metrics["loss_" + name].push_back(value);
  for (size_t k = 1; k <= model.mtp_losses().size(); ++k)
    metrics["loss_mtp_" + std::to_string(k)].push_back(model.mtp_losses()[k - 1]);
  if (model.args.mtp.depth > 0) metrics["mtp_lambda"].push_back(model.mtp_lambda);
  metrics["lr"].push_back(lr);
  if (pairs_) metrics["pairs_epoch"].push_back(pairs_->epoch_of(step));
  metrics["grad_norm"].push_back(norm);
  metrics["tokens_per_second"].push_back(r.tokens_per_second);
  metrics["step_seconds"].push_back(seconds);
  if ((args.eval_every > 0 && step % args.eval_every == 0) || step == args.steps) {
    r.evaluated = true;
    r.val_loss = evaluate();
    metrics["val_step"].push_back(double(step));
    metrics["val_loss"].push_back(r.val_loss);
    if (metrics.count("val_task_loss")) r.val_task_loss = metrics["val_task_loss"].back();
  }
  if (step == args.steps) {
    if (model.args.mtp.depth > 0) {
      const SpeculativeStats s = measure_acceptance();
      for (int k = 1; k <= model.args.mtp.depth; ++k)
        metrics["accept_rate_depth_" + std::to_string(k)].push_back(s.accept_rate(k));
      metrics["accept_tokens_per_forward"].push_back(s.tokens_per_forward());
    }
    metrics["peak_rss_mib"].push_back(peak_rss_mib());
  }
  return r;
}

void Trainer::run(const std::function<bool(const StepReport&)>& on_step) {
  while (step < args.steps) {
    StepReport r = train_step();
    if (on_step && !on_step(r)) return;
  }
}

}  // namespace dslab
