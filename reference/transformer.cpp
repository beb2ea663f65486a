#include "reference/transformer.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "reference/cross_entropy.hpp"
#include "reference/embedding.hpp"
#include "reference/linear.hpp"
#include "reference/rmsnorm.hpp"

namespace dslab {

template <class T> TransformerParams<T>::TransformerParams(const ModelArgs& a) {
  const size_t D = a.dim, V = a.vocab_size;
  embed = xt::zeros<T>({V, D});
  for (int l = 0; l < a.n_layers; ++l) layers.emplace_back(a, a.is_moe_layer(l));
  norm = xt::zeros<T>({D});
  head = xt::zeros<T>({V, D});
  if (a.mtp.depth < 0) throw std::invalid_argument("mtp.depth must be >= 0");
  for (int k = 0; k < a.mtp.depth; ++k) mtp.emplace_back(a);
  arena_.adopt(refs());
}

template <class T>
TransformerParams<T>::TransformerParams(const TransformerParams& o)
    : embed(o.embed), layers(o.layers), norm(o.norm), head(o.head), mtp(o.mtp) {
  arena_.adopt(refs());
}

template <class T> std::vector<ParamRef<T>> TransformerParams<T>::refs() {
  std::vector<ParamRef<T>> r;
  r.push_back(param_ref("embed.weight", embed));
  for (size_t l = 0; l < layers.size(); ++l) layers[l].append_refs(r, "layers." + std::to_string(l) + ".");
  r.push_back(param_ref("norm.weight", norm));
  r.push_back(param_ref("head.weight", head));
  for (size_t k = 1; k <= mtp.size(); ++k) {
    const std::string p = "mtp." + std::to_string(k) + ".";
    auto& m = mtp[k - 1];
    r.push_back(param_ref(p + "enorm.weight", m.proj.enorm));
    r.push_back(param_ref(p + "hnorm.weight", m.proj.hnorm));
    r.push_back(param_ref(p + "eh_proj.weight", m.proj.eh_proj));
    m.block.append_refs(r, p);
    r.push_back(param_ref(p + "norm.weight", m.norm));
  }
  return r;
}

template <class T> std::vector<ParamRef<T>> TransformerParams<T>::buffers() {
  std::vector<ParamRef<T>> r;
  for (size_t l = 0; l < layers.size(); ++l) layers[l].append_buffers(r, "layers." + std::to_string(l) + ".");
  for (size_t k = 1; k <= mtp.size(); ++k) mtp[k - 1].block.append_buffers(r, "mtp." + std::to_string(k) + ".");
  return r;
}

template <class T>
Transformer<T>::Transformer(const ModelArgs& a)
    : args((a.validate(), a)), params(a), grads(a), mtp_lambda(a.mtp.lambda) {  // ModelArgs::validate first
  if (a.attn == AttnKind::Mla) {
    const MlaArgs mla = a.mla_args();
    rope_ = mla.rope_table(a.max_seq_len, a.rope_theta);  // YaRN frequencies when mla.yarn()
  } else {
    rope_ = RopeTable(a.max_seq_len, a.head_dim(), a.rope_theta);
  }
  if (a.moe.n_routed_experts > 0 && (a.balance.device_alpha > 0 || a.balance.comm_alpha > 0))
    Placement::contiguous(a.moe.n_routed_experts, a.balance.n_devices);  // experts placed on devices
  if constexpr (std::is_same_v<T, float>) fp8_recipe = a.fp8.to_recipe();
  acts.layers.resize(a.n_layers);
}

template <class T> BlockContext<T> Transformer<T>::context() const {
  return BlockContext<T>(args, rope_, fp8_recipe.enabled ? &fp8_recipe : nullptr);
}

template <class T> void Transformer<T>::init_weights(uint64_t seed) {
  Rng rng(seed);
  const double out_std = args.init_std / std::sqrt(2.0 * args.n_layers);
  for (auto& p : params.refs()) {
    const bool is_gain = p.shape.size() == 1;
    const bool is_out_proj = p.name.ends_with("attn.wo.weight") || p.name.ends_with("w2.weight");
    const double std = is_out_proj ? out_std : args.init_std;
    for (size_t j = 0; j < p.size(); ++j) p.data[j] = is_gain ? T(1) : T(std * rng.normal());
  }
}

template <class T> size_t Transformer<T>::num_parameters() {
  size_t n = 0;
  for (const auto& s : params.arena().slices()) n += s.size;
  return n;
}

// ---------------------------------------------------------------------------
// Stages

template <class T>
void Transformer<T>::embed_forward(Activations<T>& a, const std::vector<int>& tokens, int batch, int seq_len,
                                   Tensor2<T>& x) {
  if (size_t(batch) * seq_len != tokens.size()) throw std::invalid_argument("tokens != batch*seq_len");
  if (seq_len > args.max_seq_len) throw std::invalid_argument("seq_len exceeds max_seq_len");
  for (int t : tokens)
    if (t < 0 || t >= args.vocab_size) throw std::invalid_argument("token id out of range");
  a.batch = batch, a.seq_len = seq_len;
  a.tokens = tokens;
  a.targets.clear();
  a.loss_parts.clear();
  a.mtp_losses.clear();
  a.layers.resize(args.n_layers);
  embedding_forward(x, tokens, params.embed);
}

template <class T>
void Transformer<T>::layers_forward(Activations<T>& a, size_t first, size_t last, Tensor2<T>& x) {
  if (first > last || last > params.layers.size()) throw std::invalid_argument("layers_forward: bad layer range");
  const BlockContext<T> ctx = context();
  Tensor2<T>& y = scratch_.x;
  for (size_t l = first; l < last; ++l) {
    block_forward(y, a.layers[l], x, params.layers[l], ctx, a.batch, a.seq_len, scratch_.block);
    std::swap(x, y);
  }
}

template <class T> const Tensor2<T>& Transformer<T>::head_forward(Activations<T>& a, Tensor2<T>&& x) {
  std::swap(a.x_final, x);
  rmsnorm_forward(a.h_final, a.final_rstd, a.x_final, params.norm, args.norm_eps);
  linear_forward(a.logits, a.h_final, params.head);
  return a.logits;
}

template <class T> T Transformer<T>::loss_forward(Activations<T>& a, const std::vector<int>& targets) {
  if (targets.size() != a.tokens.size()) throw std::invalid_argument("targets != tokens in size");
  for (int t : targets)
    if (t < -1 || t >= args.vocab_size)
      throw std::invalid_argument("target id out of range (0 .. vocab_size-1, or -1: no loss)");
  if (args.mtp.depth > 0 && a.seq_len <= args.mtp.depth)
    throw std::invalid_argument("seq_len must exceed mtp.depth (depth k predicts k+1 tokens ahead)");
  a.targets = targets;
  const T main = cross_entropy_forward(a.probs, a.losses, a.logits, targets);
  a.loss_parts = {{"main", double(main)}};
  for (auto& c : a.layers) block_balance_losses(a.loss_parts, c, args.balance);
  a.mtp_lambda = mtp_lambda;
  if (args.mtp.depth > 0)
    a.loss_parts["mtp"] = double(mtp_forward(a.mtp, a.mtp_losses, a.loss_parts, a.x_final, a.tokens, a.targets,
                                             a.batch, a.seq_len, a.mtp_lambda, params.mtp, mtp_shared(),
                                             args.balance, context(), scratch_.block, scratch_.mtp));
  double total = 0;
  for (const auto& [name, value] : a.loss_parts) total += value;
  return T(total);
}

template <class T> void Transformer<T>::loss_backward(Activations<T>& a, Tensor2<T>& dlogits) {
  if (a.targets.empty()) throw std::logic_error("loss_backward needs a loss_forward");
  cross_entropy_backward(dlogits, a.probs, a.targets, T(1));
}

template <class T>
void Transformer<T>::head_backward(Activations<T>& a, const Tensor2<T>* dlogits, Tensor2<T>& dx,
                                   const Tensor2<T>* dh_extra, WeightGradQueue<T>* defer) {
  Tensor2<T>& dh = scratch_.dh;
  if (dlogits) {
    linear_backward(dh, grads.head, *dlogits, a.h_final, params.head, {.fp8 = nullptr, .defer = defer});
    if (dh_extra) dh += *dh_extra;
  } else if (dh_extra) {
    dh = *dh_extra;
  } else {
    throw std::invalid_argument("head_backward: no gradient (dlogits and dh_extra are both null)");
  }
  rmsnorm_backward(dx, grads.norm, dh, a.x_final, params.norm, a.final_rstd);
  if (args.mtp.depth > 0 && !a.targets.empty())
    mtp_backward(dx, grads.mtp, grads.embed, grads.head, a.mtp, a.batch, a.seq_len, a.mtp_lambda, params.mtp,
                 mtp_shared(), context(), scratch_.block, scratch_.mtp, defer);
}

template <class T>
void Transformer<T>::layers_backward(Activations<T>& a, size_t first, size_t last, Tensor2<T>& dx,
                                     WeightGradQueue<T>* defer) {
  if (first > last || last > params.layers.size()) throw std::invalid_argument("layers_backward: bad layer range");
  const BlockContext<T> ctx = context();
  for (size_t l = last; l-- > first;)
    block_backward(dx, grads.layers[l], a.layers[l], params.layers[l], ctx, scratch_.block, defer);
}

template <class T> void Transformer<T>::embed_backward(Activations<T>& a, const Tensor2<T>& dx) {
  embedding_backward(grads.embed, dx, a.tokens);
}

// ---------------------------------------------------------------------------
// The whole model

template <class T>
const Tensor2<T>& Transformer<T>::forward_logits(const std::vector<int>& tokens, int batch, int seq_len) {
  Tensor2<T>& x = scratch_.dx;
  embed_forward(acts, tokens, batch, seq_len, x);
  layers_forward(acts, 0, params.layers.size(), x);
  return head_forward(acts, std::move(x));
}

template <class T>
T Transformer<T>::forward(const std::vector<int>& tokens, const std::vector<int>& targets, int batch,
                          int seq_len) {
  if (targets.size() != tokens.size()) throw std::invalid_argument("targets != tokens in size");
  forward_logits(tokens, batch, seq_len);
  return loss_forward(acts, targets);
}

template <class T> void Transformer<T>::backward() {
  if (acts.targets.empty()) throw std::logic_error("backward() needs a forward() with targets");
  Tensor2<T>& dlogits = scratch_.dlogits;
  Tensor2<T>& dx = scratch_.dx;
  loss_backward(acts, dlogits);
  head_backward(acts, &dlogits, dx);
  layers_backward(acts, 0, params.layers.size(), dx);
  embed_backward(acts, dx);
}

template <class T>
const Tensor2<T>& Transformer<T>::mtp_logits(int k, const std::vector<int>& tokens) {
  if (k < 1 || k > args.mtp.depth)
    throw std::invalid_argument("mtp_logits: depth " + std::to_string(k) + " of a model with " +
                                std::to_string(args.mtp.depth) + " MTP modules");
  if (acts.batch != 1) throw std::logic_error("mtp_logits needs forward_logits on one sequence");
  acts.mtp.resize(args.mtp.depth);
  const Tensor2<T>& h_prev = k == 1 ? acts.x_final : acts.mtp[k - 2].h;
  const size_t have = h_prev.shape(0);
  if (tokens.empty() || tokens.size() > have)
    throw std::invalid_argument("mtp_logits: 1 .. " + std::to_string(have) + " positions allowed");
  for (int t : tokens)
    if (t < 0 || t >= args.vocab_size) throw std::invalid_argument("token id out of range");
  MtpModuleCache<T>& c = acts.mtp[k - 1];
  c.tokens = tokens;
  mtp_module_forward(c, h_prev, 1, int(tokens.size()), params.mtp[k - 1], mtp_shared(), context(),
                     scratch_.block, scratch_.mtp);
  return c.logits;
}

template <class T> std::vector<std::vector<double>> Transformer<T>::expert_loads() const {
  std::vector<std::vector<double>> loads;
  for (size_t l = 0; l < params.layers.size(); ++l)
    if (const Routing<T>* r = acts.layers.at(l).routing(); r && params.layers[l].moe()) loads.push_back(expert_load(*r));
  for (size_t k = 0; k < params.mtp.size() && k < acts.mtp.size(); ++k)
    if (const Routing<T>* r = acts.mtp[k].block.routing(); r && params.mtp[k].block.moe())
      loads.push_back(expert_load(*r));
  return loads;
}

template <class T> void Transformer<T>::update_expert_bias(const std::vector<std::vector<double>>& loads) {
  const BiasUpdate rule = args.balance.bias_update;
  if (rule == BiasUpdate::None) return;
  size_t i = 0;
  const auto next = [&]() -> const std::vector<double>& {
    if (i >= loads.size()) throw std::invalid_argument("update_expert_bias: fewer loads than MoE blocks");
    return loads[i++];
  };
  for (size_t l = 0; l < params.layers.size(); ++l)
    if (MoeParams<T>* m = params.layers[l].moe()) update_bias(m->bias, next(), args.balance.bias_gamma, rule);
  for (size_t k = 0; k < params.mtp.size() && k < acts.mtp.size(); ++k)
    if (MoeParams<T>* m = params.mtp[k].block.moe()) update_bias(m->bias, next(), args.balance.bias_gamma, rule);
}

template struct TransformerParams<float>;
template struct TransformerParams<double>;
template class Transformer<float>;
template class Transformer<double>;

}  // namespace dslab
