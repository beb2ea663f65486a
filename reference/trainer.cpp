#include "reference/trainer.hpp"

#include <sys/resource.h>

#include <chrono>
#include <string>

#include "reference/sampler.hpp"

namespace dslab {

Trainer::Trainer(const ModelArgs& model_args, const TrainArgs& train_args, const ByteCorpus& corpus)
    : args(train_args), model(model_args), corpus_(corpus) {
  model.init_weights(args.seed);
  optimizer = AdamW<float>(model.params.refs());
  schedule_ = {args.lr, args.min_lr, args.warmup_steps, args.steps};
}

double Trainer::evaluate() {
  double total = 0;
  for (int i = 0; i < args.eval_batches; ++i) {
    Batch b = eval_batch(corpus_.val, args.batch_size, args.seq_len, i, args.eval_batches);
    model.forward(b.inputs, b.targets, args.batch_size, args.seq_len);
    total += model.loss_parts().at("main");
  }
  return total / args.eval_batches;
}

namespace {

// The largest resident set of this process so far, in MiB (Linux: ru_maxrss in KiB).
double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;
}

}  // namespace

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
  Batch b = train_batch(corpus_.train, args.batch_size, args.seq_len, args.seed, step);
  model.mtp_lambda = model.args.mtp.lambda_at(step, args.steps);
  model.zero_grad();
  model.forward(b.inputs, b.targets, args.batch_size, args.seq_len);
  const double loss = model.loss_parts().at("main");
  model.backward();
  auto grads = model.grads.refs();
  const double norm = global_grad_norm(grads);
  clip_grad_norm(grads, norm, args.grad_clip);
  const double lr = schedule_.at(step);
  optimizer.step(model.params.refs(), grads, lr, args.adamw);
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
  metrics["step"].push_back(double(step));
  metrics["train_loss"].push_back(loss);
  for (const auto& [name, value] : model.loss_parts())
    if (name != "main") metrics["loss_" + name].push_back(value);
  for (size_t k = 1; k <= model.mtp_losses().size(); ++k)
    metrics["loss_mtp_" + std::to_string(k)].push_back(model.mtp_losses()[k - 1]);
  if (model.args.mtp.depth > 0) metrics["mtp_lambda"].push_back(model.mtp_lambda);
  metrics["lr"].push_back(lr);
  metrics["grad_norm"].push_back(norm);
  metrics["tokens_per_second"].push_back(r.tokens_per_second);
  metrics["step_seconds"].push_back(seconds);
  if ((args.eval_every > 0 && step % args.eval_every == 0) || step == args.steps) {
    r.evaluated = true;
    r.val_loss = evaluate();
    metrics["val_step"].push_back(double(step));
    metrics["val_loss"].push_back(r.val_loss);
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
