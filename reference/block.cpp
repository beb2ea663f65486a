#include "reference/block.hpp"

#include "reference/model_args.hpp"
#include "reference/rmsnorm.hpp"

namespace dslab {

template <class T> BlockParams<T>::BlockParams(const ModelArgs& a, bool moe) {
  const size_t D = a.dim, F = a.inter_dim;
  attn_norm = xt::zeros<T>({D});
  if (a.attn == AttnKind::Mla)
    attn = MlaWeights<T>(a.mla_args());
  else
    attn = MhaWeights<T>(MhaArgs{a.dim, a.n_heads, a.n_kv_heads});
  ffn_norm = xt::zeros<T>({D});
  if (moe) {
    MoeParams<T> p(a.moe_args());
    if (a.has_expert_bias()) p.bias = xt::zeros<T>({size_t(a.moe.n_routed_experts)});
    ffn = std::move(p);
  } else {
    FfnWeights<T> f;
    f.w1 = xt::zeros<T>({F, D});
    f.w2 = xt::zeros<T>({D, F});
    f.w3 = xt::zeros<T>({F, D});
    ffn = std::move(f);
  }
}

template <class T> void BlockParams<T>::append_refs(std::vector<ParamRef<T>>& r, const std::string& p) {
  r.push_back(param_ref(p + "attn_norm.weight", attn_norm));
  std::visit([&](auto& a) { for (auto& m : a.refs(p + "attn.")) r.push_back(m); }, attn);
  r.push_back(param_ref(p + "ffn_norm.weight", ffn_norm));
  if (MoeParams<T>* m = moe()) {
    for (auto& t : m->refs(p + "ffn.")) r.push_back(t);
  } else {
    FfnWeights<T>& f = std::get<FfnWeights<T>>(ffn);
    r.push_back(param_ref(p + "ffn.w1.weight", f.w1));
    r.push_back(param_ref(p + "ffn.w2.weight", f.w2));
    r.push_back(param_ref(p + "ffn.w3.weight", f.w3));
  }
}

template <class T> void BlockParams<T>::append_buffers(std::vector<ParamRef<T>>& r, const std::string& p) {
  if (MoeParams<T>* m = moe(); m && m->bias.size() > 0) r.push_back(param_ref(p + "ffn.gate.bias", m->bias));
}

template <class T>
BlockContext<T>::BlockContext(const ModelArgs& a, const RopeTable& table, const fp8::Recipe* recipe)
    : norm_eps(a.norm_eps), mha{a.dim, a.n_heads, a.n_kv_heads}, mla(a.mla_args()), moe(a.moe_args()),
      rope(&table), fp8(recipe) {}

template <class T>
void block_forward(Tensor2<T>& y, BlockCache<T>& c, const Tensor2<T>& x, const BlockParams<T>& w,
                   const BlockContext<T>& ctx, int batch, int seq_len, BlockScratch<T>& s) {
  const LinearPolicy<T> linears{.fp8 = ctx.fp8};
  c.batch = batch, c.seq_len = seq_len;
  c.x_in = x;
  // attention sub-layer: x_mid = x + attn(attn_norm(x))
  rmsnorm_forward(c.attn_in, c.attn_rstd, x, w.attn_norm, ctx.norm_eps);
  if (const auto* mla = std::get_if<MlaWeights<T>>(&w.attn)) {
    if (!std::holds_alternative<MlaCache<T>>(c.attn)) c.attn.template emplace<MlaCache<T>>();
    mla_forward(s.proj, std::get<MlaCache<T>>(c.attn), c.attn_in, *mla, ctx.mla, *ctx.rope, batch, seq_len, linears,
                &s.mla);
  } else {
    if (!std::holds_alternative<MhaCache<T>>(c.attn)) c.attn.template emplace<MhaCache<T>>();
    mha_forward(s.proj, std::get<MhaCache<T>>(c.attn), c.attn_in, std::get<MhaWeights<T>>(w.attn), ctx.mha,
                *ctx.rope, batch, seq_len, linears);
  }
  c.x_mid = x + s.proj;
  // feed-forward sub-layer: y = x_mid + ffn(ffn_norm(x_mid))
  rmsnorm_forward(c.ffn_in, c.ffn_rstd, c.x_mid, w.ffn_norm, ctx.norm_eps);
  if (const MoeParams<T>* moe = w.moe()) {
    if (!std::holds_alternative<MoeCache<T>>(c.ffn)) c.ffn.template emplace<MoeCache<T>>();
    moe_forward(s.proj, std::get<MoeCache<T>>(c.ffn), c.ffn_in, *moe, moe->bias, ctx.moe, linears);  // Eq. (18)-(20)
  } else {
    if (!std::holds_alternative<FfnCache<T>>(c.ffn)) c.ffn.template emplace<FfnCache<T>>();
    ffn_forward(s.proj, std::get<FfnCache<T>>(c.ffn), c.ffn_in, std::get<FfnWeights<T>>(w.ffn), linears);
  }
  y = c.x_mid + s.proj;
}

template <class T>
void block_balance_losses(std::map<std::string, double>& parts, BlockCache<T>& c, const BalanceArgs& b) {
  if (const Routing<T>* r = c.routing(); r && b.has_loss())
    balance_losses(parts, c.balance_dscores, *r, c.seq_len, b);
}

template <class T>
void block_backward(Tensor2<T>& dx, BlockParams<T>& g, BlockCache<T>& c, const BlockParams<T>& w,
                    const BlockContext<T>& ctx, BlockScratch<T>& s, WeightGradQueue<T>* defer) {
  const LinearPolicy<T> linears{.fp8 = ctx.fp8, .defer = defer};
  // dx holds d(y). Feed-forward sub-layer: d(x_mid) = dy + ffn_norm^T ffn^T dy
  if (const MoeParams<T>* moe = w.moe()) {
    const Tensor2<T>* dscores = c.balance_dscores.size() > 0 ? &c.balance_dscores : nullptr;
    moe_backward(s.d_in, *g.moe(), dx, dscores, c.ffn_in, std::get<MoeCache<T>>(c.ffn), *moe, ctx.moe, linears);
  } else {
    ffn_backward(s.d_in, std::get<FfnWeights<T>>(g.ffn), dx, c.ffn_in, std::get<FfnCache<T>>(c.ffn),
                 std::get<FfnWeights<T>>(w.ffn), s.ffn, linears);
  }
  rmsnorm_backward(s.d_norm, g.ffn_norm, s.d_in, c.x_mid, w.ffn_norm, c.ffn_rstd);
  dx += s.d_norm;  // now d(x_mid)
  // Attention sub-layer.
  if (const auto* mla = std::get_if<MlaWeights<T>>(&w.attn))
    mla_backward(s.d_in, std::get<MlaWeights<T>>(g.attn), dx, std::get<MlaCache<T>>(c.attn), *mla, ctx.mla,
                 *ctx.rope, linears, &s.mla);
  else
    mha_backward(s.d_in, std::get<MhaWeights<T>>(g.attn), dx, c.attn_in, std::get<MhaCache<T>>(c.attn),
                 std::get<MhaWeights<T>>(w.attn), ctx.mha, *ctx.rope, s.mha, linears);
  rmsnorm_backward(s.d_norm, g.attn_norm, s.d_in, c.x_in, w.attn_norm, c.attn_rstd);
  dx += s.d_norm;  // now d(x_in)
}

#define DSLAB_INSTANTIATE(T)                                                                            \
  template struct BlockParams<T>;                                                                       \
  template struct BlockContext<T>;                                                                      \
  template void block_forward<T>(Tensor2<T>&, BlockCache<T>&, const Tensor2<T>&, const BlockParams<T>&, \
                                 const BlockContext<T>&, int, int, BlockScratch<T>&);                   \
  template void block_balance_losses<T>(std::map<std::string, double>&, BlockCache<T>&,                 \
                                        const BalanceArgs&);                                            \
  template void block_backward<T>(Tensor2<T>&, BlockParams<T>&, BlockCache<T>&, const BlockParams<T>&,  \
                                  const BlockContext<T>&, BlockScratch<T>&, WeightGradQueue<T>*);
DSLAB_INSTANTIATE(float)
DSLAB_INSTANTIATE(double)
#undef DSLAB_INSTANTIATE

}  // namespace dslab
