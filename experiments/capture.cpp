#include "experiments/capture.hpp"

#include "reference/linear.hpp"

namespace dslab {

namespace {
std::string layer_key(size_t l, const std::string& name) { return "layers." + std::to_string(l) + "." + name; }

CapturedTensor to_captured(const Tensor2<float>& t) {
  return {{t.shape(0), t.shape(1)}, std::vector<float>(t.begin(), t.end())};
}
}  // namespace

Captured capture_router_logits(Trainer& trainer) {
  const TrainArgs& a = trainer.args;
  Transformer<float>& model = trainer.model;
  const size_t N = size_t(a.batch_size) * a.seq_len, E = model.args.moe.n_routed_experts;
  std::map<size_t, CapturedTensor> logits;  // MoE layer -> [windows, N, E]
  for (int i = 0; i < a.eval_batches; ++i) {
    Batch b = eval_batch(trainer.corpus().val, a.batch_size, a.seq_len, i, a.eval_batches);
    model.forward(b.inputs, b.targets, a.batch_size, a.seq_len);
    for (size_t l = 0; l < model.params.layers.size(); ++l) {
      const MoeParams<float>* moe = model.params.layers[l].moe();
      if (!moe) continue;
      Tensor2<float> z;
      linear_forward(z, model.acts.layers[l].ffn_in, moe->gate);  // z = x W_g^T
      logits[l].data.insert(logits[l].data.end(), z.begin(), z.end());
    }
  }
  Captured out;
  for (auto& [l, t] : logits) {
    t.shape = {size_t(a.eval_batches), N, E};
    out[layer_key(l, "ffn.router_logits")] = std::move(t);
  }
  return out;
}

Captured capture_gemm_inputs(Trainer& trainer) {
  Transformer<float>& model = trainer.model;
  const size_t L = size_t(model.args.n_layers - 1) / 2;
  BlockParams<float>& w = model.params.layers[L];
  BlockParams<float>& g = model.grads.layers[L];
  // The GEMMs to keep, by the gradient tensor they accumulate into.
  std::map<const Tensor2<float>*, std::pair<std::string, const Tensor2<float>*>> wanted;
  if (auto* mha = std::get_if<MhaWeights<float>>(&w.attn))
    wanted[&std::get<MhaWeights<float>>(g.attn).wo] = {layer_key(L, "attn.wo"), &mha->wo};
  if (auto* mla = std::get_if<MlaWeights<float>>(&w.attn))
    wanted[&std::get<MlaWeights<float>>(g.attn).wo] = {layer_key(L, "attn.wo"), &mla->wo};
  if (auto* ffn = std::get_if<FfnWeights<float>>(&w.ffn))
    wanted[&std::get<FfnWeights<float>>(g.ffn).w2] = {layer_key(L, "ffn.w2"), &ffn->w2};

  const TrainArgs& a = trainer.args;
  Batch b = train_batch(trainer.corpus().train, a.batch_size, a.seq_len, a.seed, trainer.step);
  Activations<float>& acts = model.acts;
  model.zero_grad();
  model.forward(b.inputs, b.targets, a.batch_size, a.seq_len);
  Tensor2<float> dlogits, dx;
  WeightGradQueue<float> queue;
  model.loss_backward(acts, dlogits);
  model.head_backward(acts, &dlogits, dx);
  model.layers_backward(acts, L + 1, model.params.layers.size(), dx);  // the blocks above, at once
  model.layers_backward(acts, L, L + 1, dx, &queue);  // block L's B pass: its dW GEMMs wait in the queue
  Captured out;
  for (const auto& e : queue.entries()) {
    const auto it = wanted.find(e.dw);
    if (it == wanted.end()) continue;
    const auto& [name, weight] = it->second;
    out[name + ".input"] = to_captured(*e.x);
    out[name + ".weight"] = to_captured(*weight);
    out[name + ".output_grad"] = to_captured(e.dy);
  }
  model.zero_grad();
  return out;
}

Captured capture_tensors(Trainer& trainer) {
  Captured out = capture_gemm_inputs(trainer);
  out.merge(capture_router_logits(trainer));
  return out;
}

}  // namespace dslab
