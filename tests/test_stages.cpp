// The model API that pipeline stages, policy/reference/value models and
// devices build on (reference/transformer.hpp):
//   - stage by stage (embedding, layer ranges, head, loss) forward and backward
//     give bitwise the whole model's objective and gradients;
//   - the split backward, B for every layer then W (WeightGradQueue::run), gives
//     bitwise the gradients of the whole backward, also with W passes in another
//     order across stages, under FP8 and with micro-batches in flight;
//   - parameters and gradients are one arena each, the tensors views into them;
//   - a model copies as a whole (a frozen reference), and a value head on the
//     final hidden state back-propagates through head_backward (finite
//     differences in double).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "reference/transformer.hpp"

namespace dslab {
namespace {

enum class Kind { Dense, MlaMoe, MtpMoe };
const char* kind_name(Kind k) { return k == Kind::Dense ? "dense" : k == Kind::MlaMoe ? "mla+moe" : "mtp+moe"; }

ModelArgs args_of(Kind kind) {
  ModelArgs a;
  a.vocab_size = 13;
  a.dim = 16;
  a.n_layers = 4;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.inter_dim = 24;
  a.max_seq_len = 8;
  a.init_std = 0.3;
  if (kind != Kind::Dense) {
    a.moe.n_routed_experts = 4;
    a.moe.n_activated_experts = 2;
    a.moe.moe_inter_dim = 8;
    a.n_dense_layers = 1;
    a.balance.aux_alpha = 0.01;
    a.balance.seq_aux_alpha = 0.003;
  }
  if (kind == Kind::MlaMoe) {
    a.attn = AttnKind::Mla;
    a.mla.q_lora_rank = 8;
    a.mla.kv_lora_rank = 6;
    a.mla.qk_nope_head_dim = 4;
    a.mla.qk_rope_head_dim = 2;
    a.mla.v_head_dim = 4;
  }
  if (kind == Kind::MtpMoe) a.mtp.depth = 2;
  return a;
}

struct Batch2 {
  int batch = 2, seq_len = 7;
  std::vector<int> tokens, targets;
  Batch2(int vocab, uint64_t seed) {
    Rng rng(seed);
    for (int i = 0; i < batch * seq_len; ++i) tokens.push_back(int(rng.below(vocab)));
    for (int i = 0; i < batch * seq_len; ++i) targets.push_back(int(rng.below(vocab)));
  }
};

template <class T> std::vector<T> flat(const Arena<T>& a) { return {a.data(), a.data() + a.size()}; }

template <class T> bool bitwise_equal(const std::vector<T>& x, const std::vector<T>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0;
}

// Objective and gradients of one step, on the model's own Activations.
template <class T> std::pair<T, std::vector<T>> whole(Transformer<T>& m, const Batch2& b) {
  m.zero_grad();
  const T loss = m.forward(b.tokens, b.targets, b.batch, b.seq_len);
  m.backward();
  return {loss, flat(m.grads.arena())};
}

// The same step as three stages [0, 1), [1, 3), [3, 4) on an Activations of
// the caller's; with `split`, each stage's backward is B only, and the W passes
// run afterwards, last stage's first or first stage's first.
template <class T>
std::pair<T, std::vector<T>> staged(Transformer<T>& m, const Batch2& b, bool split, bool w_first_stage_first) {
  const size_t cuts[] = {0, 1, 3, 4};
  Activations<T> a;
  Tensor2<T> x, dlogits, dx;
  m.zero_grad();
  m.embed_forward(a, b.tokens, b.batch, b.seq_len, x);
  for (int s = 0; s < 3; ++s) m.layers_forward(a, cuts[s], cuts[s + 1], x);
  m.head_forward(a, std::move(x));
  const T loss = m.loss_forward(a, b.targets);
  m.loss_backward(a, dlogits);
  WeightGradQueue<T> head_w, stage_w[3];
  m.head_backward(a, &dlogits, dx, nullptr, split ? &head_w : nullptr);
  for (int s = 2; s >= 0; --s) m.layers_backward(a, cuts[s], cuts[s + 1], dx, split ? &stage_w[s] : nullptr);
  m.embed_backward(a, dx);
  head_w.run();
  for (int i = 0; i < 3; ++i) stage_w[w_first_stage_first ? i : 2 - i].run();
  return {loss, flat(m.grads.arena())};
}

class Stages : public ::testing::TestWithParam<Kind> {};

TEST_P(Stages, StageByStageIsBitwiseTheWholeModel) {
  Transformer<float> m(args_of(GetParam()));
  m.init_weights(3);
  const Batch2 b(m.args.vocab_size, 4);
  const auto [loss, grads] = whole(m, b);
  const auto [loss_s, grads_s] = staged(m, b, false, false);
  EXPECT_EQ(loss, loss_s);
  EXPECT_TRUE(bitwise_equal(grads, grads_s));
  double norm = 0;
  for (float g : grads) norm += double(g) * g;
  EXPECT_GT(norm, 0);  // there is something to compare
}

TEST_P(Stages, BThenWIsBitwiseTheWholeBackward) {
  Transformer<float> m(args_of(GetParam()));
  m.init_weights(5);
  const Batch2 b(m.args.vocab_size, 6);
  const auto [loss, grads] = whole(m, b);
  for (bool first_stage_first : {false, true}) {
    const auto [loss_s, grads_s] = staged(m, b, true, first_stage_first);
    EXPECT_EQ(loss, loss_s);
    EXPECT_TRUE(bitwise_equal(grads, grads_s)) << "W passes from the first stage first: " << first_stage_first;
  }
}

TEST_P(Stages, BThenWUnderFp8) {
  ModelArgs a = args_of(GetParam());
  a.fp8.recipe = fp8::RecipeKind::V3;
  Transformer<float> m(a);
  m.init_weights(7);
  ASSERT_TRUE(m.fp8_recipe.enabled);
  const Batch2 b(m.args.vocab_size, 8);
  const auto [loss, grads] = whole(m, b);
  const auto [loss_s, grads_s] = staged(m, b, true, true);
  EXPECT_EQ(loss, loss_s);
  EXPECT_TRUE(bitwise_equal(grads, grads_s));
}

// The B pass leaves every weight gradient of the layers (but the RMSNorm gains)
// at zero; the W pass fills them.
TEST_P(Stages, TheBPassDefersEveryLinearWeightGradient) {
  Transformer<float> m(args_of(GetParam()));
  m.init_weights(9);
  const Batch2 b(m.args.vocab_size, 10);
  Activations<float> a;
  Tensor2<float> x, dlogits, dx;
  m.zero_grad();
  m.embed_forward(a, b.tokens, b.batch, b.seq_len, x);
  m.layers_forward(a, 0, 4, x);
  m.head_forward(a, std::move(x));
  m.loss_forward(a, b.targets);
  m.loss_backward(a, dlogits);
  m.head_backward(a, &dlogits, dx);
  WeightGradQueue<float> queue;
  m.layers_backward(a, 0, 4, dx, &queue);
  auto layer_matrices_zero = [&] {
    for (const auto& g : m.grads.refs())
      if (g.name.starts_with("layers.") && g.shape.size() == 2)
        for (size_t j = 0; j < g.size(); ++j)
          if (g.data[j] != 0) return false;
    return true;
  };
  EXPECT_TRUE(layer_matrices_zero());
  EXPECT_FALSE(queue.empty());
  queue.run();
  EXPECT_TRUE(queue.empty());
  EXPECT_FALSE(layer_matrices_zero());
}

INSTANTIATE_TEST_SUITE_P(Models, Stages, ::testing::Values(Kind::Dense, Kind::MlaMoe, Kind::MtpMoe),
                         [](const auto& info) {
                           std::string n = kind_name(info.param);
                           for (char& c : n)
                             if (c == '+') c = '_';
                           return n;
                         });

// Two micro-batches in flight on their own Activations (as a 1F1B stage
// holds them), backward in the reverse order: bitwise the same as two whole
// steps accumulating in that order.
TEST(StagesInFlight, TwoMicroBatchesAccumulateAsTwoWholeSteps) {
  Transformer<float> m(args_of(Kind::MlaMoe));
  m.init_weights(11);
  const Batch2 b1(m.args.vocab_size, 12), b2(m.args.vocab_size, 13);
  m.zero_grad();
  m.forward(b2.tokens, b2.targets, b2.batch, b2.seq_len);
  m.backward();
  m.forward(b1.tokens, b1.targets, b1.batch, b1.seq_len);
  m.backward();
  const std::vector<float> expected = flat(m.grads.arena());

  m.zero_grad();
  Activations<float> a1, a2;
  Tensor2<float> x1, x2, dlogits, dx;
  m.embed_forward(a1, b1.tokens, b1.batch, b1.seq_len, x1);
  m.layers_forward(a1, 0, 4, x1);
  m.embed_forward(a2, b2.tokens, b2.batch, b2.seq_len, x2);
  m.layers_forward(a2, 0, 4, x2);
  for (Activations<float>* a : {&a1, &a2}) m.head_forward(*a, std::move(a == &a1 ? x1 : x2));
  m.loss_forward(a1, b1.targets);
  m.loss_forward(a2, b2.targets);
  for (Activations<float>* a : {&a2, &a1}) {
    m.loss_backward(*a, dlogits);
    m.head_backward(*a, &dlogits, dx);
    m.layers_backward(*a, 0, 4, dx);
    m.embed_backward(*a, dx);
  }
  EXPECT_TRUE(bitwise_equal(expected, flat(m.grads.arena())));
}

TEST(Arena, EveryTensorIsAViewOfItsSlice) {
  Transformer<float> m(args_of(Kind::MtpMoe));
  for (TransformerParams<float>* p : {&m.params, &m.grads}) {
    const auto refs = p->refs();
    const auto& slices = p->arena().slices();
    ASSERT_EQ(refs.size(), slices.size());
    size_t end = 0;
    for (size_t i = 0; i < refs.size(); ++i) {
      EXPECT_EQ(refs[i].data, p->arena().data() + slices[i].offset) << refs[i].name;
      EXPECT_EQ(refs[i].size(), slices[i].size) << refs[i].name;
      EXPECT_EQ(refs[i].shape.size(), slices[i].rank) << refs[i].name;
      EXPECT_TRUE(refs[i].storage->is_view()) << refs[i].name;
      EXPECT_GE(slices[i].offset, end);
      EXPECT_EQ(slices[i].offset % (64 / sizeof(float)), 0u);
      end = slices[i].offset + slices[i].size;
    }
    EXPECT_LE(end, p->arena().size());
  }
  // The same layout for parameters and gradients.
  const auto& ps = m.params.arena().slices();
  const auto& gs = m.grads.arena().slices();
  ASSERT_EQ(ps.size(), gs.size());
  for (size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(ps[i].offset, gs[i].offset);
  size_t n = 0;
  for (const auto& s : ps) n += s.size;
  EXPECT_EQ(m.num_parameters(), n);
  // One fill zeroes every gradient.
  std::fill(m.grads.arena().data(), m.grads.arena().data() + m.grads.arena().size(), 1.0f);
  m.zero_grad();
  for (const auto& g : m.grads.refs())
    for (size_t j = 0; j < g.size(); ++j) ASSERT_EQ(g.data[j], 0.0f) << g.name;
  // A tensor in the arena keeps its place: assigning copies in, resizing throws.
  float* before = m.params.head.data();
  m.params.head = xt::ones<float>({size_t(m.args.vocab_size), size_t(m.args.dim)});
  EXPECT_EQ(m.params.head.data(), before);
  EXPECT_EQ(m.params.head(0, 0), 1.0f);
  EXPECT_THROW(m.params.head.resize({1, 1}), std::logic_error);
}

TEST(Copy, AReferenceModelIsIndependentAndEqual) {
  Transformer<float> policy(args_of(Kind::MlaMoe));
  policy.init_weights(14);
  Transformer<float> reference = policy;
  EXPECT_NE(reference.params.arena().data(), policy.params.arena().data());
  EXPECT_TRUE(bitwise_equal(flat(reference.params.arena()), flat(policy.params.arena())));
  for (const auto& r : reference.params.refs())
    EXPECT_TRUE(r.data >= reference.params.arena().data() &&
                r.data < reference.params.arena().data() + reference.params.arena().size())
        << r.name;
  const Batch2 b(policy.args.vocab_size, 15);
  const float before = reference.forward(b.tokens, b.targets, b.batch, b.seq_len);
  EXPECT_EQ(before, policy.forward(b.tokens, b.targets, b.batch, b.seq_len));
  // Training the policy leaves the reference as it was.
  policy.params.arena().data()[0] += 1.0f;
  policy.params.layers[2].attn_norm(0) += 0.5f;
  EXPECT_EQ(reference.forward(b.tokens, b.targets, b.batch, b.seq_len), before);
  EXPECT_NE(policy.forward(b.tokens, b.targets, b.batch, b.seq_len), before);
}

// A value head v = h_final w_v^T [N, 1] beside the LM head (PPO's value model
// on the policy's trunk), objective L = sum_n (v_n - r_n)^2 / 2: its gradient
// enters through head_backward's dh_extra, checked against central differences.
TEST(ValueHead, GradientThroughTheTrunkMatchesFiniteDifferences) {
  ModelArgs args = args_of(Kind::MlaMoe);
  args.balance = BalanceArgs{};  // the value objective alone
  Transformer<double> m(args);
  m.init_weights(16);
  const Batch2 b(args.vocab_size, 17);
  Tensor2<double> w_v = xt::zeros<double>({size_t(1), size_t(args.dim)});
  Rng rng(18);
  for (double& w : w_v) w = 0.5 * rng.normal();
  std::vector<double> r(b.tokens.size());
  for (double& x : r) x = rng.normal();
  auto objective = [&](Activations<double>& a) {
    Tensor2<double> x;
    m.embed_forward(a, b.tokens, b.batch, b.seq_len, x);
    m.layers_forward(a, 0, m.params.layers.size(), x);
    m.head_forward(a, std::move(x));
    Tensor2<double> v;
    linear_forward(v, a.h_final, w_v);
    double L = 0;
    for (size_t n = 0; n < r.size(); ++n) L += 0.5 * (v(n, 0) - r[n]) * (v(n, 0) - r[n]);
    return std::pair{L, v};
  };
  Activations<double> a;
  m.zero_grad();
  auto [L, v] = objective(a);
  Tensor2<double> dv = v, dh, dx, dw_v = xt::zeros<double>({size_t(1), size_t(args.dim)});
  for (size_t n = 0; n < r.size(); ++n) dv(n, 0) -= r[n];
  linear_backward(dh, dw_v, dv, a.h_final, w_v);
  m.head_backward(a, nullptr, dx, &dh);
  m.layers_backward(a, 0, m.params.layers.size(), dx);
  m.embed_backward(a, dx);
  // The LM head takes no gradient from the value objective.
  for (double g : m.grads.head) ASSERT_EQ(g, 0.0);
  int checked = 0;
  auto params = m.params.refs();
  auto grads = m.grads.refs();
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].name == "head.weight") continue;
    for (size_t j = 0; j < params[i].size(); j += 1 + params[i].size() / 3) {
      double& p = params[i].data[j];
      const double keep = p, h = 1e-5;
      Activations<double> scratch;
      p = keep + h;
      const double up = objective(scratch).first;
      p = keep - h;
      const double down = objective(scratch).first;
      p = keep;
      const double fd = (up - down) / (2 * h);
      EXPECT_NEAR(grads[i].data[j], fd, 1e-6 * std::max(1.0, std::fabs(fd))) << params[i].name << "[" << j << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 50);
}

}  // namespace
}  // namespace dslab
