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
  m.max_seq_len = max_seq_len;
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

namespace {

// One block's weights, all zeros; an MoE block in place of the dense FFN when `moe`.
template <class T> BlockParams<T> block_params(const ModelArgs& a, bool moe) {
  const size_t D = a.dim, hd = a.head_dim(), F = a.inter_dim;
  const size_t H = a.n_heads, KV = a.n_kv_heads;
  BlockParams<T> b;
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
  if (moe) {
    b.moe = MoeParams<T>(a.moe());
    if (a.has_expert_bias()) b.expert_bias = xt::zeros<T>({size_t(a.n_routed_experts)});
  } else {
    b.ffn.w1 = xt::zeros<T>({F, D});
    b.ffn.w2 = xt::zeros<T>({D, F});
    b.ffn.w3 = xt::zeros<T>({F, D});
  }
  return b;
}

// A block's tensors, named with prefix p ("layers.0.", "mtp.1.").
template <class T>
void append_block_refs(std::vector<ParamRef<T>>& r, const std::string& p, BlockParams<T>& b) {
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

}  // namespace

template <class T> TransformerParams<T>::TransformerParams(const ModelArgs& a) {
  const size_t D = a.dim, V = a.vocab_size;
  embed = xt::zeros<T>({V, D});
  for (int l = 0; l < a.n_layers; ++l) layers.push_back(block_params<T>(a, a.is_moe_layer(l)));
  norm = xt::zeros<T>({D});
  head = xt::zeros<T>({V, D});
  if (a.mtp.depth < 0) throw std::invalid_argument("mtp.depth must be >= 0");
  mtp.resize(a.mtp.depth);
  for (auto& m : mtp) {
    m.proj.enorm = xt::zeros<T>({D});
    m.proj.hnorm = xt::zeros<T>({D});
    m.proj.eh_proj = xt::zeros<T>({D, 2 * D});
    m.block = block_params<T>(a, a.n_routed_experts > 0);  // V3's MTP block is an MoE layer
    m.norm = xt::zeros<T>({D});
  }
}

template <class T> std::vector<ParamRef<T>> TransformerParams<T>::refs() {
  std::vector<ParamRef<T>> r;
  r.push_back(param_ref("embed.weight", embed));
  for (size_t l = 0; l < layers.size(); ++l)
    append_block_refs(r, "layers." + std::to_string(l) + ".", layers[l]);
  r.push_back(param_ref("norm.weight", norm));
  r.push_back(param_ref("head.weight", head));
  for (size_t k = 1; k <= mtp.size(); ++k) {
    const std::string p = "mtp." + std::to_string(k) + ".";
    auto& m = mtp[k - 1];
    r.push_back(param_ref(p + "enorm.weight", m.proj.enorm));
    r.push_back(param_ref(p + "hnorm.weight", m.proj.hnorm));
    r.push_back(param_ref(p + "eh_proj.weight", m.proj.eh_proj));
    append_block_refs(r, p, m.block);
    r.push_back(param_ref(p + "norm.weight", m.norm));
  }
  return r;
}

template <class T> std::vector<ParamRef<T>> TransformerParams<T>::buffers() {
  std::vector<ParamRef<T>> r;
  for (size_t l = 0; l < layers.size(); ++l)
    if (layers[l].expert_bias.size() > 0)
      r.push_back(param_ref("layers." + std::to_string(l) + ".ffn.gate.bias", layers[l].expert_bias));
  for (size_t k = 1; k <= mtp.size(); ++k)
    if (mtp[k - 1].block.expert_bias.size() > 0)
      r.push_back(param_ref("mtp." + std::to_string(k) + ".ffn.gate.bias", mtp[k - 1].block.expert_bias));
  return r;
}

template <class T>
Transformer<T>::Transformer(const ModelArgs& a)
    : args(a), params(a), grads(a), mtp_lambda(a.mtp.lambda) {
  if (a.is_mla()) {
    mla_ = a.mla();
    mla_.validate();
    rope_ = mla_.rope_table(a.max_seq_len, a.rope_theta);
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
  mtp_cache_.resize(a.mtp.depth);
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
  if (args.mtp.depth > 0 && seq_len <= args.mtp.depth)
    throw std::invalid_argument("seq_len must exceed mtp.depth (depth k predicts k+1 tokens ahead)");
  forward_hidden(tokens, batch, seq_len);
  targets_ = targets;
  const T main = cross_entropy_forward(probs_, losses_, logits_, targets);
  loss_parts_ = {{"main", double(main)}};
  if (args.balance.has_loss())
    for (size_t l = 0; l < cache_.size(); ++l)
      if (args.is_moe_layer(l))
        balance_losses(loss_parts_, cache_[l].balance_dscores, cache_[l].moe.routing, seq_len, args.balance);
  if (args.mtp.depth > 0) loss_parts_["mtp"] = double(mtp_forward(batch, seq_len));
  double total = 0;
  for (const auto& [name, value] : loss_parts_) total += value;
  return T(total);
}

template <class T> void Transformer<T>::mtp_module_forward(int k, int batch, int positions) {
  MtpCache& c = mtp_cache_[k - 1];
  const MtpModuleParams<T>& w = params.mtp[k - 1];
  c.positions = positions;
  // h'^k = eh_proj [enorm(Emb(t_{i+k})) ; hnorm(h^{k-1}_i)] at positions i < P
  embedding_forward(scratch_.mtp_e, c.tokens, params.embed);
  take_positions(scratch_.mtp_h, k == 1 ? x_final_ : mtp_cache_[k - 2].h, batch, positions);
  mtp_proj_forward(scratch_.mtp_x, c.proj, scratch_.mtp_e, scratch_.mtp_h, w.proj, args.norm_eps);
  // h^k = TRM_k(h'^k), causal over the module's P positions
  shape_.batch = batch;
  shape_.seq_len = positions;
  block_forward(w.block, c.block, scratch_.mtp_x, c.h);
  // logits of t_{i+k+1} through the shared head
  rmsnorm_forward(c.h_norm, c.rstd, c.h, w.norm, args.norm_eps);
  linear_forward(c.logits, c.h_norm, params.head);
}

template <class T> T Transformer<T>::mtp_forward(int batch, int seq_len) {
  const AttentionShape main_shape = shape_;
  const int D = args.mtp.depth;
  mtp_losses_.assign(D, 0.0);
  T sum = 0;
  for (int k = 1; k <= D; ++k) {
    MtpCache& c = mtp_cache_[k - 1];
    c.tokens = shift_positions(tokens_, batch, seq_len, k);
    c.targets = shift_positions(targets_, batch, seq_len, k);
    mtp_module_forward(k, batch, seq_len - k);
    if (args.n_routed_experts > 0 && args.balance.has_loss())  // its MoE block is balanced as the others
      balance_losses(loss_parts_, c.block.balance_dscores, c.block.moe.routing, seq_len - k, args.balance);
    // Eq. (25): the mean over the B*(T-k) targets, times (T-k)/T.
    const T mean = cross_entropy_forward(c.probs, c.losses, c.logits, c.targets);
    const T loss = mean * T(seq_len - k) / T(seq_len);
    mtp_losses_[k - 1] = double(loss);
    sum += loss;
  }
  shape_ = main_shape;
  return T(mtp_lambda) / T(D) * sum;  // Eq. (26)
}

template <class T>
const Tensor2<T>& Transformer<T>::mtp_logits(int k, const std::vector<int>& tokens) {
  if (k < 1 || k > args.mtp.depth)
    throw std::invalid_argument("mtp_logits: depth " + std::to_string(k) + " of a model with " +
                                std::to_string(args.mtp.depth) + " MTP modules");
  if (shape_.batch != 1) throw std::logic_error("mtp_logits needs forward_logits on one sequence");
  const size_t have = k == 1 ? x_final_.shape(0) : mtp_cache_[k - 2].h.shape(0);
  if (tokens.empty() || tokens.size() > have)
    throw std::invalid_argument("mtp_logits: 1 .. " + std::to_string(have) + " positions allowed");
  for (int t : tokens)
    if (t < 0 || t >= args.vocab_size) throw std::invalid_argument("token id out of range");
  mtp_cache_[k - 1].tokens = tokens;
  mtp_module_forward(k, 1, int(tokens.size()));
  return mtp_cache_[k - 1].logits;
}

template <class T>
const Tensor2<T>& Transformer<T>::forward_logits(const std::vector<int>& tokens, int batch,
                                                 int seq_len) {
  forward_hidden(tokens, batch, seq_len);
  targets_.clear();
  loss_parts_.clear();
  mtp_losses_.clear();
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
  if (args.mtp.depth > 0) mtp_backward(dx);
  for (size_t l = cache_.size(); l-- > 0;) block_backward(params.layers[l], grads.layers[l], cache_[l], dx);
  embedding_backward(grads.embed, dx, tokens_);
}

template <class T> void Transformer<T>::mtp_backward(Tensor2<T>& dx) {
  const AttentionShape main_shape = shape_;
  const int D = args.mtp.depth, batch = main_shape.batch;
  Tensor2<T>& dlogits = scratch_.dlogits;
  Tensor2<T>& dh_norm = scratch_.dh;
  Tensor2<T>& dh = scratch_.mtp_dh;      // d h^k, then d h'^k
  Tensor2<T>& de = scratch_.mtp_de;      // d Emb(t_{i+k})
  Tensor2<T>& dprev = scratch_.mtp_dprev;  // d h^{k-1} at depth k's positions
  for (int k = D; k >= 1; --k) {
    MtpCache& c = mtp_cache_[k - 1];
    const MtpModuleParams<T>& w = params.mtp[k - 1];
    MtpModuleParams<T>& g = grads.mtp[k - 1];
    // d L / d L^k = lambda/D; L^k = mean * (T-k)/T (Eq. (25)-(26)).
    const T dloss = T(mtp_lambda) / T(D) * T(c.positions) / T(main_shape.seq_len);
    cross_entropy_backward(dlogits, c.probs, c.targets, dloss);
    linear_backward(dh_norm, grads.head, dlogits, c.h_norm, params.head);
    rmsnorm_backward(dh, g.norm, dh_norm, c.h, w.norm, c.rstd);
    if (k < D) take_positions_backward(dh, dprev, batch);  // from depth k+1's hnorm
    shape_.batch = batch;
    shape_.seq_len = c.positions;
    block_backward(w.block, g.block, c.block, dh);
    mtp_proj_backward(de, dprev, g.proj, dh, c.proj, w.proj);
    embedding_backward(grads.embed, de, c.tokens);
  }
  take_positions_backward(dx, dprev, batch);  // depth 1 read the main model's h^0
  shape_ = main_shape;
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
  for (size_t k = 0; k < mtp_cache_.size(); ++k)
    if (params.mtp[k].block.expert_bias.size() > 0)
      update_bias(params.mtp[k].block.expert_bias, expert_load(mtp_cache_[k].block.moe.routing),
                  args.balance.bias_gamma, rule);
}

template struct TransformerParams<float>;
template struct TransformerParams<double>;
template class Transformer<float>;
template class Transformer<double>;

}  // namespace dslab
