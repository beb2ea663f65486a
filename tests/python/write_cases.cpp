// The C++ side of tests/python/test_bindings.py: runs the reference layers,
// losses and model straight from C++ on seeded inputs and writes inputs and
// outputs to an HDF5 file, so the Python test can run the same inputs through
// `import dslab` and require bitwise the same outputs (the bindings only move
// data; any transposition, dtype slip or dropped argument shows up).
//
// usage: write_cases OUT.h5
//   /<dtype>/mla/{x, dout, w/<name>, out, dx, g/<name>}, attributes of MlaArgs
//   /<dtype>/mla_decode/{x, out}    the first sequence of mla/x, latent cache
//   /<dtype>/moe/{x, dy, bias, w/<name>, y, dx, g/<name>, indices}
//   /<dtype>/rms_norm/{x, weight, y, rstd, dy, dx, dweight}
//   /<dtype>/cross_entropy/{logits, targets, loss, probs, dlogits}
//   /<dtype>/model/{tokens, targets, loss, logits, w/<name>, g/<name>}
//   /float64/policy_loss/{offsets, logp, old_logp, ref_logp, advantages, loss, dlogp}
//   /float32/fp8/{x, codes, scales, deq}
// <dtype> is float64 and float32.
#include <H5Cpp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "reference/cross_entropy.hpp"
#include "reference/fp8.hpp"
#include "reference/grpo.hpp"
#include "reference/mla.hpp"
#include "reference/moe.hpp"
#include "reference/rmsnorm.hpp"
#include "reference/transformer.hpp"

namespace dslab {
namespace {

template <class T> H5::PredType h5_type() {
  if constexpr (std::is_same_v<T, double>) return H5::PredType::NATIVE_DOUBLE;
  else if constexpr (std::is_same_v<T, float>) return H5::PredType::NATIVE_FLOAT;
  else if constexpr (std::is_same_v<T, uint16_t>) return H5::PredType::NATIVE_UINT16;
  else return H5::PredType::NATIVE_LONG;
}

template <class T> void put(H5::Group& g, const std::string& name, const T* p, const std::vector<size_t>& shape) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  const H5::DataSpace space(int(dims.size()), dims.data());
  g.createDataSet(name, h5_type<T>(), space).write(p, h5_type<T>());
}
template <class E> void put(H5::Group& g, const std::string& name, const E& t) {
  put(g, name, t.data(), std::vector<size_t>(t.shape().begin(), t.shape().end()));
}
template <class T> void put(H5::Group& g, const std::string& name, const std::vector<T>& v) {
  put(g, name, v.data(), {v.size()});
}
void attr(H5::Group& g, const std::string& name, double v) {
  g.createAttribute(name, H5::PredType::NATIVE_DOUBLE, H5::DataSpace(H5S_SCALAR)).write(H5::PredType::NATIVE_DOUBLE, &v);
}

template <class T> void fill(T* p, size_t n, Rng& rng, double scale) {
  for (size_t i = 0; i < n; ++i) p[i] = T(scale * rng.normal());
}
template <class E> void fill(E& t, Rng& rng, double scale) { fill(t.data(), t.size(), rng, scale); }

template <class T> void put_refs(H5::Group& g, const std::string& name, const std::vector<ParamRef<T>>& refs) {
  H5::Group sub = g.createGroup(name);
  for (const ParamRef<T>& r : refs) put(sub, r.name, r.data, r.shape);
}

template <class T> void mla_case(H5::Group& root, Rng& rng) {
  H5::Group g = root.createGroup("mla");
  const MlaArgs a{.dim = 32, .n_heads = 2, .q_lora_rank = 16, .kv_lora_rank = 16, .qk_nope_head_dim = 8,
                  .qk_rope_head_dim = 4, .v_head_dim = 8, .rope = MlaRope::Decoupled, .norm_eps = 1e-6,
                  .max_seq_len = 64, .original_seq_len = 16, .rope_factor = 4, .mscale = 0.7};
  for (const auto& [k, v] : std::vector<std::pair<std::string, double>>{
           {"dim", a.dim}, {"n_heads", a.n_heads}, {"q_lora_rank", a.q_lora_rank}, {"kv_lora_rank", a.kv_lora_rank},
           {"qk_nope_head_dim", a.qk_nope_head_dim}, {"qk_rope_head_dim", a.qk_rope_head_dim},
           {"v_head_dim", a.v_head_dim}, {"max_seq_len", a.max_seq_len}, {"original_seq_len", a.original_seq_len},
           {"rope_factor", a.rope_factor}, {"mscale", a.mscale}})
    attr(g, k, v);
  const int B = 2, S = 5;
  MlaWeights<T> w(a);
  for (ParamRef<T>& r : w.refs("")) fill(r.data, r.size(), rng, 0.3);
  for (size_t i = 0; i < w.q_norm.size(); ++i) w.q_norm(i) = T(1 + 0.1 * rng.normal());
  for (size_t i = 0; i < w.kv_norm.size(); ++i) w.kv_norm(i) = T(1 + 0.1 * rng.normal());
  Tensor2<T> x({size_t(B * S), size_t(a.dim)}), dout({size_t(B * S), size_t(a.dim)});
  fill(x, rng, 1.0);
  fill(dout, rng, 1.0);
  const RopeTable rope = a.rope_table(S, 10000.0);
  Tensor2<T> out, dx;
  MlaCache<T> cache;
  mla_forward(out, cache, x, w, a, rope, B, S);
  MlaWeights<T> grads(a);
  mla_backward(dx, grads, dout, cache, w, a, rope);
  put(g, "x", x.data(), {size_t(B), size_t(S), size_t(a.dim)});
  put(g, "dout", dout.data(), {size_t(B), size_t(S), size_t(a.dim)});
  put(g, "out", out.data(), {size_t(B), size_t(S), size_t(a.dim)});
  put(g, "dx", dx.data(), {size_t(B), size_t(S), size_t(a.dim)});
  put_refs(g, "w", w.refs(""));
  put_refs(g, "g", grads.refs(""));

  // The first sequence again, a token at a time through the latent cache.
  H5::Group d = root.createGroup("mla_decode");
  const RopeTable table = a.rope_table(8, 10000.0);
  MlaLatentCache<T> latent(a, 8);
  Tensor2<T> steps({size_t(S), size_t(a.dim)});
  for (int t = 0; t < S; ++t) mla_decode_absorbed(&steps(t, 0), &x(t, 0), latent, w, a, table);
  put(d, "out", steps);
}

template <class T> void moe_case(H5::Group& root, Rng& rng) {
  H5::Group g = root.createGroup("moe");
  const MoeArgs a{.dim = 16, .moe_inter_dim = 8, .n_routed_experts = 8, .n_shared_experts = 1,
                  .n_activated_experts = 2, .n_expert_groups = 4, .n_limited_groups = 2, .route_scale = 2.5,
                  .score_func = ScoreFunc::Sigmoid};
  MoeParams<T> p(a);
  p.init(7, 0.3);
  Tensor1<T> bias = xt::zeros<T>({size_t(a.n_routed_experts)});
  fill(bias, rng, 0.1);
  Tensor2<T> x({12, size_t(a.dim)}), dy({12, size_t(a.dim)});
  fill(x, rng, 1.0);
  fill(dy, rng, 1.0);
  Tensor2<T> y, dx;
  MoeCache<T> cache;
  moe_forward(y, cache, x, p, bias, a);
  MoeParams<T> grads(a);
  moe_backward(dx, grads, dy, static_cast<const Tensor2<T>*>(nullptr), x, cache, p, a);
  put(g, "x", x);
  put(g, "dy", dy);
  put(g, "bias", bias);
  put(g, "y", y);
  put(g, "dx", dx);
  put(g, "indices", std::vector<long>(cache.routing.indices.begin(), cache.routing.indices.end()));
  put_refs(g, "w", p.refs());
  put_refs(g, "g", grads.refs());
}

template <class T> void rms_norm_case(H5::Group& root, Rng& rng) {
  H5::Group g = root.createGroup("rms_norm");
  Tensor2<T> x({6, 10}), dy({6, 10}), y, dx;
  Tensor1<T> w = xt::zeros<T>({size_t(10)}), rstd, dw;
  fill(x, rng, 2.0);
  fill(dy, rng, 1.0);
  fill(w, rng, 1.0);
  rmsnorm_forward(y, rstd, x, w, 1e-6);
  dw = xt::zeros<T>({size_t(10)});
  rmsnorm_backward(dx, dw, dy, x, w, rstd);
  put(g, "x", x), put(g, "weight", w), put(g, "y", y), put(g, "rstd", rstd);
  put(g, "dy", dy), put(g, "dx", dx), put(g, "dweight", dw);
}

template <class T> void cross_entropy_case(H5::Group& root, Rng& rng) {
  H5::Group g = root.createGroup("cross_entropy");
  Tensor2<T> logits({7, 11}), probs, dlogits;
  Tensor1<T> losses;
  fill(logits, rng, 3.0);
  std::vector<int> targets(7);
  for (int& t : targets) t = int(rng.below(11));
  const T loss = cross_entropy_forward(probs, losses, logits, targets);
  cross_entropy_backward(dlogits, probs, targets, T(1));
  put(g, "logits", logits), put(g, "probs", probs), put(g, "dlogits", dlogits);
  put(g, "targets", std::vector<long>(targets.begin(), targets.end()));
  const double l = double(loss);
  put(g, "loss", &l, {1});
}

template <class T> void model_case(H5::Group& root, Rng& rng) {
  H5::Group g = root.createGroup("model");
  ModelArgs a;
  a.vocab_size = 40, a.dim = 32, a.n_layers = 2, a.n_heads = 2, a.n_kv_heads = 2, a.inter_dim = 48;
  a.max_seq_len = 16, a.attn = AttnKind::Mla;
  a.mla = MlaArgs{.q_lora_rank = 16, .kv_lora_rank = 16, .qk_nope_head_dim = 8, .qk_rope_head_dim = 4, .v_head_dim = 8};
  a.moe = MoeArgs{.moe_inter_dim = 8, .n_routed_experts = 4, .n_shared_experts = 1, .n_activated_experts = 2};
  a.n_dense_layers = 1;
  a.mtp.depth = 1;
  a.balance.seq_aux_alpha = 0.01;
  for (const auto& [k, v] : std::vector<std::pair<std::string, double>>{
           {"vocab_size", a.vocab_size}, {"dim", a.dim}, {"n_layers", a.n_layers}, {"n_heads", a.n_heads},
           {"inter_dim", a.inter_dim}, {"max_seq_len", a.max_seq_len}})
    attr(g, k, v);
  Transformer<T> m(a);
  m.init_weights(3);
  std::vector<int> tokens(2 * 6), targets(2 * 6);
  for (int& t : tokens) t = int(rng.below(40));
  for (int& t : targets) t = int(rng.below(40));
  const double loss = double(m.forward(tokens, targets, 2, 6));
  m.backward();
  put(g, "tokens", std::vector<long>(tokens.begin(), tokens.end()));
  put(g, "targets", std::vector<long>(targets.begin(), targets.end()));
  put(g, "loss", &loss, {1});
  put(g, "logits", m.logits());
  put_refs(g, "w", m.params.refs());
  put_refs(g, "g", m.grads.refs());
}

void policy_loss_case(H5::Group& root, Rng& rng) {
  H5::Group g = root.createGroup("policy_loss");
  PolicyBatch b;
  b.offsets = {0, 3, 3, 8, 10};
  b.group_size = 2;
  for (size_t t = 0; t < 10; ++t) {
    b.old_logp.push_back(-1.0 + 0.3 * rng.normal());
    b.logp.push_back(b.old_logp.back() + 0.2 * rng.normal());
    b.ref_logp.push_back(b.old_logp.back() + 0.1 * rng.normal());
    b.advantages.push_back(rng.normal());
  }
  GrpoArgs args;
  args.clip_eps_high = 0.28;
  args.aggregation = Aggregation::TokenMean;
  std::vector<double> dlogp;
  const PolicyLoss l = policy_loss(b, args, dlogp);
  put(g, "offsets", std::vector<long>(b.offsets.begin(), b.offsets.end()));
  put(g, "logp", b.logp), put(g, "old_logp", b.old_logp), put(g, "ref_logp", b.ref_logp);
  put(g, "advantages", b.advantages), put(g, "dlogp", dlogp);
  put(g, "loss", &l.loss, {1});
}

void fp8_case(H5::Group& root, Rng& rng) {
  H5::Group g = root.createGroup("fp8");
  Tensor2<float> x({130, 260});
  fill(x, rng, 5.0);
  fp8::QuantConfig cfg;
  cfg.granularity = fp8::Granularity::Block128x128;
  const fp8::QuantizedMatrix q = fp8::quantize(x, cfg);
  put(g, "x", x), put(g, "codes", q.codes), put(g, "scales", q.scales), put(g, "deq", fp8::dequantize(q));
}

template <class T> void cases(H5::H5File& f, const char* name) {
  H5::Group root = f.createGroup(name);
  Rng rng(std::is_same_v<T, double> ? 1 : 2);
  mla_case<T>(root, rng);
  moe_case<T>(root, rng);
  rms_norm_case<T>(root, rng);
  cross_entropy_case<T>(root, rng);
  model_case<T>(root, rng);
}

}  // namespace
}  // namespace dslab

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.h5\n", argv[0]);
    return 2;
  }
  H5::H5File f(argv[1], H5F_ACC_TRUNC);
  dslab::cases<double>(f, "float64");
  dslab::cases<float>(f, "float32");
  dslab::Rng rng(5);
  H5::Group g64 = f.openGroup("float64");
  dslab::policy_loss_case(g64, rng);
  H5::Group g32 = f.openGroup("float32");
  dslab::fp8_case(g32, rng);
  return 0;
}
