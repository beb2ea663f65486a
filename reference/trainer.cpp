#include "reference/trainer.hpp"

#include <chrono>

namespace dslab {

Trainer::Trainer(const ModelArgs& model_args, const TrainArgs& train_args, const ByteCorpus& corpus)
    : args(train_args), model(model_args), corpus_(corpus) {
  model.init_weights(args.seed);
  model.fp8_recipe = args.fp8.to_recipe();
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

StepReport Trainer::train_step() {
  const auto t0 = std::chrono::steady_clock::now();
  Batch b = train_batch(corpus_.train, args.batch_size, args.seq_len, args.seed, step);
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
  return r;
}

void Trainer::run(const std::function<bool(const StepReport&)>& on_step) {
  while (step < args.steps) {
    StepReport r = train_step();
    if (on_step && !on_step(r)) return;
  }
  if (args.capture) capture_gemm_inputs();
}

namespace {
CapturedTensor to_captured(const Tensor2<float>& t) {
  return {{t.shape(0), t.shape(1)}, std::vector<float>(t.begin(), t.end())};
}
}  // namespace

void Trainer::capture_gemm_inputs() {
  const std::string block = "layers." + std::to_string((model.args.n_layers - 1) / 2) + ".";
  std::map<const float*, std::string> layers;  // weight -> layer name
  for (const auto& p : model.params.refs())
    for (const char* layer : {"attn.wo", "ffn.w2"})
      if (p.name == block + layer + ".weight") layers[p.data] = block + layer;
  const fp8::ObserveLinear observe([&](const fp8::LinearCall& call) {
    const auto it = layers.find(call.w.data());
    if (it == layers.end()) return;
    if (call.dy) {
      captured[it->second + ".output_grad"] = to_captured(*call.dy);
    } else {
      captured[it->second + ".input"] = to_captured(call.x);
      captured[it->second + ".weight"] = to_captured(call.w);
    }
  });
  Batch b = train_batch(corpus_.train, args.batch_size, args.seq_len, args.seed, step);
  model.zero_grad();
  model.forward(b.inputs, b.targets, args.batch_size, args.seq_len);
  model.backward();
}

}  // namespace dslab
