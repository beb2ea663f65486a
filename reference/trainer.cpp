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

void add_into(std::vector<double>& total, const std::vector<double>& x) {
  if (total.empty()) total.assign(x.size(), 0.0);
  for (size_t i = 0; i < x.size(); ++i) total[i] += x[i];
}

}  // namespace

// What a step reports beyond its gradient: the objective's terms, L^k_MTP,
// and the load balance of every MoE layer (Sec. 2.2.3): each MoE block's
// per-expert load_i (for the metrics and Eq. (24)), f_i (Eq. (22)) and P_i (Eq. (23)).
struct Trainer::StepStats {
  struct Layer {
    size_t layer;
    std::vector<double> f, P;  // [E]; its load is loads[i] for balance[i]
  };
  std::map<std::string, double> loss_parts;
  std::vector<double> mtp_losses;
  std::vector<std::vector<double>> loads;  // every MoE block (Transformer::expert_loads): the main layers' first
  std::vector<Layer> balance;              // the main model's MoE layers, in the order of their loads

  // Of the model's last forward.
  static StepStats of(const Transformer<float>& model) {
    StepStats s{model.loss_parts(), model.mtp_losses(), model.expert_loads(), {}};
    for (size_t l = 0; l < size_t(model.args.n_layers); ++l)
      if (const Routing<float>* r = model.routing(l)) s.balance.push_back({l, expert_fraction(*r), expert_probability(*r)});
    return s;
  }
  // Every number in a fixed order, and back.
  std::vector<double> flat() const {
    std::vector<double> v;
    for (const auto& [name, value] : loss_parts) v.push_back(value);
    v.insert(v.end(), mtp_losses.begin(), mtp_losses.end());
    for (const auto& x : loads) v.insert(v.end(), x.begin(), x.end());
    for (const Layer& b : balance)
      for (const auto* x : {&b.f, &b.P}) v.insert(v.end(), x->begin(), x->end());
    return v;
  }
  // The step's statistics from the M micro-batches' flat() (all of this shape),
  // concatenated in micro-batch order: losses, f and P are means, loads sums,
  // each added up in micro-batch order.
  StepStats combined(const std::vector<double>& all, int M) const {
    const size_t S = flat().size();
    if (all.size() != S * size_t(M)) throw std::logic_error("StepStats: micro-batch statistics of another shape");
    std::vector<double> sum(all.begin(), all.begin() + long(S));
    for (int m = 1; m < M; ++m)
      for (size_t i = 0; i < S; ++i) sum[i] += all[size_t(m) * S + i];
    StepStats s = *this;
    size_t i = 0;
    const auto take = [&](double& x, bool mean) { x = mean ? sum[i++] / M : sum[i++]; };
    for (auto& [name, value] : s.loss_parts) take(value, true);
    for (double& x : s.mtp_losses) take(x, true);
    for (auto& load : s.loads)
      for (double& x : load) take(x, false);
    for (Layer& b : s.balance) {
      for (double& x : b.f) take(x, true);
      for (double& x : b.P) take(x, true);
    }
    return s;
  }
};

namespace {

// maxvio and the per-expert columns of each MoE layer, the per-device load
// when the experts are placed on several devices; maxvio_batch is the mean over layers.
void record_balance(Metrics& m, const Trainer::StepStats& s, int n_devices) {
  double maxvio_sum = 0;
  for (size_t i = 0; i < s.balance.size(); ++i) {
    const Trainer::StepStats::Layer& b = s.balance[i];
    const std::vector<double>& load = s.loads.at(i);
    const double maxvio = max_violation(load);
    m[layer_key(b.layer, "maxvio")].push_back(maxvio);
    push_each(m, layer_key(b.layer, "load."), load);
    push_each(m, layer_key(b.layer, "f."), b.f);
    push_each(m, layer_key(b.layer, "P."), b.P);
    if (n_devices > 1) {
      const Placement pl = Placement::contiguous(int(load.size()), n_devices);
      push_each(m, layer_key(b.layer, "device_load."), device_load(load, pl));
    }
    maxvio_sum += maxvio;
  }
  if (!s.balance.empty()) m["maxvio_batch"].push_back(maxvio_sum / double(s.balance.size()));
}

}  // namespace

void TrainArgs::validate(const ModelArgs& model) const {
  const auto v = [](auto x) { return value_text(x); };
  require(micro_batches >= 1 && batch_size % micro_batches == 0, {"train.micro_batches", "train.batch_size"},
          "train.micro_batches = " + v(micro_batches) + " must divide train.batch_size = " + v(batch_size));
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
                 std::vector<TaskExample> pairs, DataParallel* parallel)
    : args(train_args), model(model_args), corpus_(corpus), parallel_(parallel) {
  if (parallel_) {
    const int n = parallel_->size(), m = args.micro_batches;
    require(m % n == 0, {"train.micro_batches"},
            "train.micro_batches = " + value_text(m) + " is not a multiple of the " + std::to_string(n) +
                " ranks; set it to a multiple of " + std::to_string(n) + " that divides train.batch_size = " +
                value_text(args.batch_size) + " (the numbers are then the same for every rank count dividing it)");
  }
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

Trainer::StepStats Trainer::micro_batch_step(const Batch& b) {
  const int M = args.micro_batches, N = parallel_ ? parallel_->size() : 1, r = parallel_ ? parallel_->rank() : 0;
  const int rows = args.batch_size / M, L = M / N;
  const size_t window = size_t(rows) * size_t(args.seq_len), n = model.grads.arena().size();
  float* grads = model.grads.arena().data();
  std::vector<float> sum;                 // one process: g_0 + g_1 + ..., added as each is made
  std::vector<std::vector<float>> mine;   // N ranks: this rank's g_m, summed across ranks after
  std::vector<double> stats;
  StepStats shape;
  for (int l = 0; l < L; ++l) {
    const size_t m = size_t(r) * size_t(L) + size_t(l), first = m * window;
    const std::vector<int> inputs(b.inputs.begin() + long(first), b.inputs.begin() + long(first + window));
    const std::vector<int> targets(b.targets.begin() + long(first), b.targets.begin() + long(first + window));
    model.zero_grad();
    model.forward(inputs, targets, rows, args.seq_len);
    model.backward();
    shape = StepStats::of(model);
    const std::vector<double> s = shape.flat();
    stats.insert(stats.end(), s.begin(), s.end());
    if (N > 1) {
      mine.emplace_back(grads, grads + n);
    } else if (l == 0) {
      sum.assign(grads, grads + n);
    } else {
      for (size_t i = 0; i < n; ++i) sum[i] += grads[i];
    }
  }
  if (N > 1) {
    std::vector<const float*> local;
    for (const auto& g : mine) local.push_back(g.data());
    parallel_->sum_in_order(local, n, grads);
    stats = parallel_->all_gather(stats);
  } else {
    std::copy(sum.begin(), sum.end(), grads);
  }
  const float inv = 1.0f / float(M);  // the mean of the micro-batches' gradients
  for (size_t i = 0; i < n; ++i) grads[i] *= inv;
  return shape.combined(stats, M);
}

StepReport Trainer::train_step() {
  const auto t0 = std::chrono::steady_clock::now();
  Batch b = mixed_train_batch(corpus_.train, args.task_text, args.batch_size, args.seq_len, args.seed, step,
                              pairs_ ? &*pairs_ : nullptr);
  model.mtp_lambda = model.args.mtp.lambda_at(step, args.steps);
  StepStats stats;
  if (args.micro_batches == 1 && (!parallel_ || parallel_->size() == 1)) {
    model.zero_grad();
    model.forward(b.inputs, b.targets, args.batch_size, args.seq_len);
    model.backward();
    stats = StepStats::of(model);
  } else {
    stats = micro_batch_step(b);
  }
  const double loss = stats.loss_parts.at("main");
  const double norm = global_grad_norm(grad_segments_);
  clip_grad_norm(grad_segments_, norm, args.grad_clip);
  const double lr = schedule_.at(step);
  optimizer.step(param_segments_, grad_segments_, lr, args.adamw);
  record_balance(metrics, stats, model.args.balance.n_devices);  // the batch's routing, before the bias moves
  model.update_expert_bias(stats.loads);                                // Eq. (24), after the step
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
  r.loss_parts = stats.loss_parts;
  metrics["step"].push_back(double(step));
  metrics["train_loss"].push_back(loss);
  for (const auto& [name, value] : stats.loss_parts)
    if (name != "main") metrics["loss_" + name].push_back(value);
  for (size_t k = 1; k <= stats.mtp_losses.size(); ++k)
    metrics["loss_mtp_" + std::to_string(k)].push_back(stats.mtp_losses[k - 1]);
  if (model.args.mtp.depth > 0) metrics["mtp_lambda"].push_back(model.mtp_lambda);
  metrics["lr"].push_back(lr);
  if (pairs_) metrics["pairs_epoch"].push_back(pairs_->epoch_of(step));
  metrics["grad_norm"].push_back(norm);
  metrics["tokens_per_second"].push_back(r.tokens_per_second);
  metrics["step_seconds"].push_back(seconds);
  const bool root = !parallel_ || parallel_->rank() == 0;  // the rank that evaluates and reports
  if (root && ((args.eval_every > 0 && step % args.eval_every == 0) || step == args.steps)) {
    r.evaluated = true;
    r.val_loss = evaluate();
    metrics["val_step"].push_back(double(step));
    metrics["val_loss"].push_back(r.val_loss);
    if (metrics.count("val_task_loss")) r.val_task_loss = metrics["val_task_loss"].back();
  }
  if (root && step == args.steps) {
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
