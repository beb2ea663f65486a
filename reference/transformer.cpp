#include "reference/transformer.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "reference/cross_entropy.hpp"
#include "reference/embedding.hpp"
#include "reference/linear.hpp"
#include "reference/rmsnorm.hpp"

namespace dslab {

MlaArgs ModelArgs::mla() const {
  MlaArgs m;
  m.dim = dim;
  m.n_heads = n_heads;
  m.q_lora_rank = q_lora_rank;
  m.kv_lora_rank = kv_lora_rank;
  m.qk_nope_head_dim = qk_nope_head_dim;
  m.qk_rope_head_dim = qk_rope_head_dim;
  m.v_head_dim = v_head_dim;
  m.rope = parse_mla_rope(rope);
  m.norm_eps = norm_eps;
  m.rope_factor = rope_factor;
  m.mscale = mscale;
  return m;
}

MoeArgs ModelArgs::moe() const {
  MoeArgs m;
  m.dim = dim;
  m.moe_inter_dim = moe_inter_dim;
  m.n_routed_experts = n_routed_experts;
  m.n_shared_experts = n_shared_experts;
  m.n_activated_experts = n_activated_experts;
  m.n_expert_groups = n_expert_groups;
  m.n_limited_groups = n_limited_groups;
  m.route_scale = route_scale;
  m.score_func = parse_score_func(score_func);
  m.capacity_factor = capacity_factor;
  return m;
}

template <class T> TransformerParams<T>::TransformerParams(const ModelArgs& a) {
  const size_t D = a.dim, V = a.vocab_size, hd = a.head_dim(), F = a.inter_dim;
  const size_t H = a.n_heads, KV = a.n_kv_heads;
  embed = xt::zeros<T>({V, D});
  layers.resize(a.n_layers);
  for (size_t l = 0; l < layers.size(); ++l) {
    BlockParams<T>& b = layers[l];
    b.attn_norm = xt::zeros<T>({D});
    if (a.is_mla()) {
      b.mla = MlaWeights<T>(a.mla());
    } else {
      b.wq = xt::zeros<T>({H * hd, D});
      b.wk = xt::zeros<T>({KV * hd, D});
      b.wv = xt::zeros<T>({KV * hd, D});
      b.wo = xt::zeros<T>({D, H * hd});
    }
    b.ffn_norm = xt::zeros<T>({D});
    if (a.is_moe_layer(l)) {
      b.moe = MoeParams<T>(a.moe());
      if (a.has_expert_bias()) b.expert_bias = xt::zeros<T>({size_t(a.n_routed_experts)});
    } else {
      b.ffn.w1 = xt::zeros<T>({F, D});
      b.ffn.w2 = xt::zeros<T>({D, F});
      b.ffn.w3 = xt::zeros<T>({F, D});
    }
  }
  norm = xt::zeros<T>({D});
  head = xt::zeros<T>({V, D});
}

template <class T> std::vector<ParamRef<T>> TransformerParams<T>::refs() {
  std::vector<ParamRef<T>> r;
  r.push_back(param_ref("embed.weight", embed));
  for (size_t l = 0; l < layers.size(); ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    auto& b = layers[l];
    r.push_back(param_ref(p + "attn_norm.weight", b.attn_norm));
    if (b.wq.size() > 0) {
      r.push_back(param_ref(p + "attn.wq.weight", b.wq));
      r.push_back(param_ref(p + "attn.wk.weight", b.wk));
      r.push_back(param_ref(p + "attn.wv.weight", b.wv));
      r.push_back(param_ref(p + "attn.wo.weight", b.wo));
    } else {
      for (auto& m : b.mla.refs(p + "attn.")) r.push_back(m);
    }
    r.push_back(param_ref(p + "ffn_norm.weight", b.ffn_norm));
    if (b.ffn.w1.size() > 0) {
      r.push_back(param_ref(p + "ffn.w1.weight", b.ffn.w1));
      r.push_back(param_ref(p + "ffn.w2.weight", b.ffn.w2));
      r.push_back(param_ref(p + "ffn.w3.weight", b.ffn.w3));
    } else {
      for (auto& m : b.moe.refs(p + "ffn.")) r.push_back(m);
    }
  }
  r.push_back(param_ref("norm.weight", norm));
  r.push_back(param_ref("head.weight", head));
  return r;
}

template <class T> std::vector<ParamRef<T>> TransformerParams<T>::buffers() {
  std::vector<ParamRef<T>> r;
  for (size_t l = 0; l < layers.size(); ++l)
    if (layers[l].expert_bias.size() > 0)
      r.push_back(param_ref("layers." + std::to_string(l) + ".ffn.gate.bias", layers[l].expert_bias));
  return r;
}

template <class T> Transformer<T>::Transformer(const ModelArgs& a) : args(a), params(a), grads(a) {
  if (a.is_mla()) {
    mla_ = a.mla();
    mla_.validate();
    if (mla_.rope != MlaRope::None) rope_ = RopeTable(a.max_seq_len, mla_.rope_dim(), a.rope_theta);
  } else {
    if (a.attn != "mha")
      throw std::invalid_argument("attn = \"" + a.attn + "\": allowed \"mha\", \"mla\"");
    if (a.n_heads <= 0 || a.dim % a.n_heads != 0)
      throw std::invalid_argument("dim must be a multiple of n_heads");
    if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0)
      throw std::invalid_argument("n_heads must be a multiple of n_kv_heads");
    rope_ = RopeTable(a.max_seq_len, a.head_dim(), a.rope_theta);
  }
  if (a.n_routed_experts > 0) {
    moe_ = a.moe();
    validate(moe_);
    if (a.has_expert_bias()) parse_bias_update(a.balance.bias_update);
    if (a.balance.device_alpha > 0 || a.balance.comm_alpha > 0)
      Placement::contiguous(a.n_routed_experts, a.balance.n_devices);
  }
  cache_.resize(a.n_layers);
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
  for (const auto& p : params.refs()) n += p.size();
  return n;
}

template <class T> void Transformer<T>::zero_grad() {
  for (auto& g : grads.refs()) std::fill(g.data, g.data + g.size(), T(0));
}

template <class T>
void Transformer<T>::block_forward(const BlockParams<T>& w, BlockCache<T>& c, const Tensor2<T>& x,
                                   Tensor2<T>& y) {
  const fp8::Autocast fp8_linears(fp8_recipe);  // the head and embedding stay outside
  c.x_in = x;
  // attention sub-layer: x_mid = x + wo(attention(rope(wq a), rope(wk a), wv a)), a = attn_norm(x)
  rmsnorm_forward(c.attn_in, c.attn_rstd, x, w.attn_norm, args.norm_eps);
  Tensor2<T>& proj = scratch_.proj;
  if (args.is_mla()) {
    mla_forward(proj, c.mla, c.attn_in, w.mla, mla_, rope_, shape_.batch, shape_.seq_len);
  } else {
    linear_forward(c.q, c.attn_in, w.wq);
    linear_forward(c.k, c.attn_in, w.wk);
    linear_forward(c.v, c.attn_in, w.wv);
    rope_forward(c.q, shape_.seq_len, args.n_heads, rope_);
    rope_forward(c.k, shape_.seq_len, args.n_kv_heads, rope_);
    attention_forward(c.attn_out, c.probs, c.q, c.k, c.v, shape_);
    linear_forward(proj, c.attn_out, w.wo);
  }
  c.x_mid = x + proj;
  // feed-forward sub-layer: y = x_mid + ffn(ffn_norm(x_mid))
  rmsnorm_forward(c.ffn_in, c.ffn_rstd, c.x_mid, w.ffn_norm, args.norm_eps);
  if (w.moe.gate.size() > 0)
    moe_forward(proj, c.moe, c.ffn_in, w.moe, w.expert_bias, moe_);  // Eq. (18)-(20)
  else
    ffn_forward(proj, c.ffn, c.ffn_in, w.ffn);
  y = c.x_mid + proj;
}

template <class T>
void Transformer<T>::forward_hidden(const std::vector<int>& tokens, int batch, int seq_len) {
  if (size_t(batch) * seq_len != tokens.size()) throw std::invalid_argument("tokens != batch*seq_len");
  if (seq_len > args.max_seq_len) throw std::invalid_argument("seq_len exceeds max_seq_len");
  for (int t : tokens)
    if (t < 0 || t >= args.vocab_size) throw std::invalid_argument("token id out of range");
  shape_ = {batch, seq_len, args.n_heads, args.n_kv_heads, args.head_dim(), args.head_dim(),
            1.0 / std::sqrt(double(args.head_dim()))};
  tokens_ = tokens;
  Tensor2<T>& x = scratch_.x;
  Tensor2<T>& y = scratch_.y;
  embedding_forward(x, tokens, params.embed);
  for (size_t l = 0; l < cache_.size(); ++l) {
    block_forward(params.layers[l], cache_[l], x, y);
    std::swap(x, y);
  }
  std::swap(x_final_, x);
  rmsnorm_forward(h_final_, final_rstd_, x_final_, params.norm, args.norm_eps);
  linear_forward(logits_, h_final_, params.head);
}

template <class T>
T Transformer<T>::forward(const std::vector<int>& tokens, const std::vector<int>& targets,
                          int batch, int seq_len) {
  if (targets.size() != tokens.size()) throw std::invalid_argument("targets != tokens in size");
  for (int t : targets)
    if (t < 0 || t >= args.vocab_size) throw std::invalid_argument("target id out of range");
  forward_hidden(tokens, batch, seq_len);
  targets_ = targets;
  const T main = cross_entropy_forward(probs_, losses_, logits_, targets);
  loss_parts_ = {{"main", double(main)}};
  if (args.balance.has_loss())
    for (size_t l = 0; l < cache_.size(); ++l)
      if (args.is_moe_layer(l))
        balance_losses(loss_parts_, cache_[l].balance_dscores, cache_[l].moe.routing, seq_len, args.balance);
  double total = 0;
  for (const auto& [name, value] : loss_parts_) total += value;
  return T(total);
}

template <class T>
const Tensor2<T>& Transformer<T>::forward_logits(const std::vector<int>& tokens, int batch,
                                                 int seq_len) {
  forward_hidden(tokens, batch, seq_len);
  targets_.clear();
  loss_parts_.clear();
  return logits_;
}

template <class T>
void Transformer<T>::block_backward(const BlockParams<T>& w, BlockParams<T>& g, BlockCache<T>& c,
                                    Tensor2<T>& dx) {
  const fp8::Autocast fp8_linears(fp8_recipe);
  // dx holds d(y). Feed-forward sub-layer: d(x_mid) = dy + ffn_norm^T ffn^T dy
  Tensor2<T>& d_in = scratch_.d_in;
  Tensor2<T>& d_norm = scratch_.d_norm;
  if (w.moe.gate.size() > 0) {
    const Tensor2<T>* dscores = c.balance_dscores.size() > 0 ? &c.balance_dscores : nullptr;
    moe_backward(d_in, g.moe, dx, dscores, c.ffn_in, c.moe, w.moe, moe_);
  } else {
    ffn_backward(d_in, g.ffn, dx, c.ffn_in, c.ffn, w.ffn);
  }
  rmsnorm_backward(d_norm, g.ffn_norm, d_in, c.x_mid, w.ffn_norm, c.ffn_rstd);
  dx += d_norm;  // now d(x_mid)
  // Attention sub-layer.
  if (args.is_mla()) {
    mla_backward(d_in, g.mla, dx, c.mla, w.mla, mla_, rope_);
  } else {
    Tensor2<T>& d_attn = scratch_.d_attn;
    Tensor2<T>& dq = scratch_.dq;
    Tensor2<T>& dk = scratch_.dk;
    Tensor2<T>& dv = scratch_.dv;
    Tensor2<T>& d_tmp = scratch_.d_tmp;
    linear_backward(d_attn, g.wo, dx, c.attn_out, w.wo);
    attention_backward(dq, dk, dv, d_attn, c.q, c.k, c.v, c.probs, shape_);
    rope_backward(dq, shape_.seq_len, args.n_heads, rope_);
    rope_backward(dk, shape_.seq_len, args.n_kv_heads, rope_);
    linear_backward(d_in, g.wq, dq, c.attn_in, w.wq);
    linear_backward(d_tmp, g.wk, dk, c.attn_in, w.wk);
    d_in += d_tmp;
    linear_backward(d_tmp, g.wv, dv, c.attn_in, w.wv);
    d_in += d_tmp;
  }
  rmsnorm_backward(d_norm, g.attn_norm, d_in, c.x_in, w.attn_norm, c.attn_rstd);
  dx += d_norm;  // now d(x_in)
}

template <class T> void Transformer<T>::backward() {
  if (targets_.empty()) throw std::logic_error("backward() needs a forward() with targets");
  Tensor2<T>& dlogits = scratch_.dlogits;
  Tensor2<T>& dh = scratch_.dh;
  Tensor2<T>& dx = scratch_.dx;
  cross_entropy_backward(dlogits, probs_, targets_, T(1));
  linear_backward(dh, grads.head, dlogits, h_final_, params.head);
  rmsnorm_backward(dx, grads.norm, dh, x_final_, params.norm, final_rstd_);
  for (size_t l = cache_.size(); l-- > 0;) block_backward(params.layers[l], grads.layers[l], cache_[l], dx);
  embedding_backward(grads.embed, dx, tokens_);
}

template <class T> const Routing<T>* Transformer<T>::routing(size_t l) const {
  return args.is_moe_layer(l) ? &cache_.at(l).moe.routing : nullptr;
}

template <class T> Tensor2<T> Transformer<T>::router_logits(size_t l) const {
  if (!args.is_moe_layer(l)) throw std::invalid_argument("layer " + std::to_string(l) + " is not an MoE layer");
  Tensor2<T> z;
  linear_forward(z, cache_[l].ffn_in, params.layers[l].moe.gate);
  return z;
}

template <class T> void Transformer<T>::update_expert_bias() {
  if (!args.has_expert_bias()) return;
  const BiasUpdate rule = parse_bias_update(args.balance.bias_update);
  for (size_t l = 0; l < cache_.size(); ++l)
    if (args.is_moe_layer(l))
      update_bias(params.layers[l].expert_bias, expert_load(cache_[l].moe.routing), args.balance.bias_gamma, rule);
}

template struct TransformerParams<float>;
template struct TransformerParams<double>;
template class Transformer<float>;
template class Transformer<double>;

}  // namespace dslab
