// Finite-difference checks, in double, of every backward in reference/.
//
// Each layer is wrapped in a scalar loss L = sum(out * R) with a fixed random
// R, so dL/dout = R is what its backward receives (cross-entropy and the whole
// model are checked on their own loss). The numeric derivative of L
// with respect to one input coordinate is a central difference improved by
// one Richardson step:
//   D(h) = (L(x+h) - L(x-h)) / 2h = L' + c h^2 + O(h^4)
//   (4 D(h/2) - D(h)) / 3        = L' + O(h^4)
// With h = 5e-4 and inputs of order 1 the truncation error is about
// h^4 |L^(5)| ~ 6e-14 |L^(5)| and the rounding error about eps |L| / h ~ 1e-12
// (eps = 2.2e-16, |L| ~ 1-10); h = 5e-4 balances the two for the whole model,
// where the fifth derivatives are largest. A tensor passes when
// max|numeric - analytic| is below 1e-8 of its largest analytic component:
// more than a hundred times the errors measured here (1e-13 to 5e-11), and far
// below the O(1) relative error that a wrong term in a backward produces.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "tests/model_gradcheck.hpp"
#include "reference/attention.hpp"
#include "reference/cross_entropy.hpp"
#include "reference/embedding.hpp"
#include "reference/ffn.hpp"
#include "reference/linear.hpp"
#include "reference/rmsnorm.hpp"
#include "reference/rope.hpp"
#include "reference/transformer.hpp"

namespace dslab {
namespace {

constexpr double kTolerance = 1e-8;  // max error / max |analytic gradient|, per tensor

using test::gradient_error;
using test::numeric_derivative;

// Checks every coordinate of tensor x against its analytic gradient.
template <class E, class G>
void expect_gradient(const std::string& name, const std::function<double()>& f, E& x,
                     const G& grad) {
  ASSERT_EQ(x.size(), grad.size()) << name;
  const double err = gradient_error(f, x.data(), grad.data(), x.size());
  EXPECT_LE(err, kTolerance) << name;
}

// Thousands of evaluations of tiny layers: run them on one thread, where an
// OpenMP barrier does not cost more than the work. The numbers are the same for
// any thread count (test_threads checks that bitwise).
class Gradcheck : public ::testing::Test {
 protected:
  void SetUp() override { omp_set_num_threads(1); }
};

template <size_t R>
Tensor<double, R> random_tensor(Rng& rng, const std::array<size_t, R>& shape,
                                     double scale = 1.0) {
  Tensor<double, R> t(shape);
  for (auto& x : t) x = scale * rng.normal();
  return t;
}

template <class E> double dot(const E& a, const E& b) {
  double s = 0;
  for (size_t j = 0; j < a.size(); ++j) s += a.data()[j] * b.data()[j];
  return s;
}

TEST_F(Gradcheck, Linear) {
  Rng rng(1);
  const size_t N = 7, in = 5, out = 4;
  auto x = random_tensor<2>(rng, {N, in});
  auto w = random_tensor<2>(rng, {out, in});
  const auto R = random_tensor<2>(rng, {N, out});
  auto loss = [&] {
    Tensor2<double> y;
    linear_forward(y, x, w);
    return dot(y, R);
  };
  // dW accumulates: start from a nonzero value and check the increment.
  const auto dw0 = random_tensor<2>(rng, {out, in});
  Tensor2<double> dx, dw = dw0;
  linear_backward(dx, dw, R, x, w);
  const Tensor2<double> dw_added = dw - dw0;
  expect_gradient("x", loss, x, dx);
  expect_gradient("w", loss, w, dw_added);
}

TEST_F(Gradcheck, Embedding) {
  Rng rng(2);
  const size_t V = 6, D = 3;
  const std::vector<int> tokens = {4, 1, 4, 0, 5, 4, 1};  // repeats must add up
  auto w = random_tensor<2>(rng, {V, D});
  const auto R = random_tensor<2>(rng, {tokens.size(), D});
  auto loss = [&] {
    Tensor2<double> x;
    embedding_forward(x, tokens, w);
    return dot(x, R);
  };
  const auto dw0 = random_tensor<2>(rng, {V, D});
  Tensor2<double> dw = dw0;
  embedding_backward(dw, R, tokens);
  const Tensor2<double> dw_added = dw - dw0;
  expect_gradient("w", loss, w, dw_added);
}

TEST_F(Gradcheck, RmsNorm) {
  Rng rng(3);
  const size_t N = 5, D = 8;
  const double eps = 1e-6;
  auto x = random_tensor<2>(rng, {N, D});
  Tensor1<double> g = 1.0 + random_tensor<1>(rng, {D}, 0.3);
  const auto R = random_tensor<2>(rng, {N, D});
  auto loss = [&] {
    Tensor2<double> y;
    Tensor1<double> rstd;
    rmsnorm_forward(y, rstd, x, g, eps);
    return dot(y, R);
  };
  Tensor2<double> y, dx;
  Tensor1<double> rstd;
  rmsnorm_forward(y, rstd, x, g, eps);
  const auto dg0 = random_tensor<1>(rng, {D});
  Tensor1<double> dg = dg0;
  rmsnorm_backward(dx, dg, R, x, g, rstd);
  const Tensor1<double> dg_added = dg - dg0;
  expect_gradient("x", loss, x, dx);
  expect_gradient("g", loss, g, dg_added);
}

TEST_F(Gradcheck, RopeBackwardIsTheTranspose) {
  Rng rng(4);
  const int B = 2, T = 5, H = 3, d = 6;
  const RopeTable table(T, d, 10000.0);
  auto x = random_tensor<2>(rng, {size_t(B * T), size_t(H * d)});
  const auto R = random_tensor<2>(rng, {size_t(B * T), size_t(H * d)});
  auto loss = [&] {
    Tensor2<double> y = x;
    rope_forward(y, T, H, table);
    return dot(y, R);
  };
  Tensor2<double> dx = R;
  rope_backward(dx, T, H, table);
  expect_gradient("x", loss, x, dx);
}

// Attention of random q, k, v; the scale is not head_dim^-1/2 on purpose, so
// a backward that ignores it fails.
void check_attention(int n_heads, int n_kv_heads, int head_dim, int v_head_dim) {
  Rng rng(5);
  const AttentionShape s{2, 5, n_heads, n_kv_heads, head_dim, v_head_dim, 0.7};
  const size_t N = size_t(s.batch) * s.seq_len;
  auto q = random_tensor<2>(rng, {N, size_t(n_heads * head_dim)});
  auto k = random_tensor<2>(rng, {N, size_t(n_kv_heads * head_dim)});
  auto v = random_tensor<2>(rng, {N, size_t(n_kv_heads * v_head_dim)});
  const auto R = random_tensor<2>(rng, {N, size_t(n_heads * v_head_dim)});
  auto loss = [&] {
    Tensor2<double> out;
    Tensor4<double> probs;
    attention_forward(out, probs, q, k, v, s);
    return dot(out, R);
  };
  Tensor2<double> out, dq, dk, dv;
  Tensor4<double> probs;
  attention_forward(out, probs, q, k, v, s);
  attention_backward(dq, dk, dv, R, q, k, v, probs, s);
  expect_gradient("q", loss, q, dq);
  expect_gradient("k", loss, k, dk);
  expect_gradient("v", loss, v, dv);
}

TEST_F(Gradcheck, AttentionMha) { check_attention(4, 4, 4, 4); }
TEST_F(Gradcheck, AttentionGqa) { check_attention(4, 2, 4, 4); }
TEST_F(Gradcheck, AttentionMqa) { check_attention(4, 1, 4, 4); }
TEST_F(Gradcheck, AttentionValueDimDiffers) { check_attention(4, 2, 6, 3); }

TEST_F(Gradcheck, SwiGluFfn) {
  Rng rng(6);
  const size_t N = 6, D = 5, F = 7;
  auto x = random_tensor<2>(rng, {N, D});
  FfnWeights<double> w{random_tensor<2>(rng, {F, D}, 0.6), random_tensor<2>(rng, {D, F}, 0.6),
                       random_tensor<2>(rng, {F, D}, 0.6)};
  const auto R = random_tensor<2>(rng, {N, D});
  auto loss = [&] {
    Tensor2<double> y;
    FfnCache<double> cache;
    ffn_forward(y, cache, x, w);
    return dot(y, R);
  };
  Tensor2<double> y, dx;
  FfnCache<double> cache;
  ffn_forward(y, cache, x, w);
  const FfnWeights<double> dw0{random_tensor<2>(rng, {F, D}), random_tensor<2>(rng, {D, F}),
                               random_tensor<2>(rng, {F, D})};
  FfnWeights<double> dw = dw0;
  FfnScratch<double> scratch;
  ffn_backward(dx, dw, R, x, cache, w, scratch);
  const Tensor2<double> dw1 = dw.w1 - dw0.w1, dw2 = dw.w2 - dw0.w2, dw3 = dw.w3 - dw0.w3;
  expect_gradient("x", loss, x, dx);
  expect_gradient("w1", loss, w.w1, dw1);
  expect_gradient("w2", loss, w.w2, dw2);
  expect_gradient("w3", loss, w.w3, dw3);
}

// Every target counted, and some of -1 (PyTorch's ignore_index: not counted).
TEST_F(Gradcheck, CrossEntropy) {
  Rng rng(7);
  const size_t N = 6, V = 7;
  auto logits = random_tensor<2>(rng, {N, V}, 2.0);
  const double dloss = 0.7;  // the upstream gradient, so L = 0.7 * mean loss
  for (const std::vector<int>& targets : {std::vector<int>{3, 0, 6, 3, 1, 5}, std::vector<int>{3, -1, 6, -1, -1, 5}}) {
    auto loss = [&] {
      Tensor2<double> probs;
      Tensor1<double> losses;
      return dloss * cross_entropy_forward(probs, losses, logits, targets);
    };
    Tensor2<double> probs, dlogits;
    Tensor1<double> losses;
    cross_entropy_forward(probs, losses, logits, targets);
    cross_entropy_backward(dlogits, probs, targets, dloss);
    expect_gradient("logits", loss, logits, dlogits);
  }
}

// Ignored targets: the loss is the mean over the counted rows alone - the same
// function on the counted rows - and an ignored row's loss and gradient are
// zero (the gradient of the rest: finite differences above).
TEST_F(Gradcheck, CrossEntropyIgnoresTargetsOfMinusOne) {
  Rng rng(8);
  const size_t N = 6, V = 7;
  const std::vector<int> targets = {3, -1, 6, -1, -1, 5};
  auto logits = random_tensor<2>(rng, {N, V}, 2.0);
  const double dloss = 0.7;
  Tensor2<double> probs, dlogits;
  Tensor1<double> losses;
  const double mean = cross_entropy_forward(probs, losses, logits, targets);
  cross_entropy_backward(dlogits, probs, targets, dloss);
  Tensor2<double> counted = Tensor2<double>::from_shape({3, V}), p2;
  Tensor1<double> l2;
  const size_t rows[] = {0, 2, 5};
  for (size_t r = 0; r < 3; ++r)
    for (size_t v = 0; v < V; ++v) counted(r, v) = logits(rows[r], v);
  EXPECT_NEAR(mean, cross_entropy_forward(p2, l2, counted, {3, 6, 5}), 1e-15);
  for (size_t n : {1, 3, 4}) {
    EXPECT_EQ(losses(n), 0.0);
    for (size_t v = 0; v < V; ++v) EXPECT_EQ(dlogits(n, v), 0.0);
  }
  // No counted target at all: loss 0, gradient 0 (not 0/0).
  const std::vector<int> none(N, -1);
  EXPECT_EQ(cross_entropy_forward(probs, losses, logits, none), 0.0);
  cross_entropy_backward(dlogits, probs, none, dloss);
  for (double d : dlogits) EXPECT_EQ(d, 0.0);
}

// A small GQA model with every parameter random (gains too), big enough for
// two layers, several heads per kv head and positions that RoPE rotates.
struct SmallModel {
  ModelArgs args;
  std::vector<int> tokens, targets;
  int batch = 2, seq_len = 5;
  SmallModel() {
    args.vocab_size = 11;
    args.dim = 8;
    args.n_layers = 2;
    args.n_heads = 4;
    args.n_kv_heads = 2;
    args.inter_dim = 12;
    args.max_seq_len = 8;
    args.init_std = 0.4;
    Rng rng(8);
    for (int n = 0; n < batch * seq_len; ++n) {
      tokens.push_back(int(rng.below(args.vocab_size)));
      targets.push_back(int(rng.below(args.vocab_size)));
    }
  }
  Transformer<double> make() const {
    Transformer<double> model(args);
    model.init_weights(9);
    Rng rng(10);
    test::randomize_gains(model, rng);
    return model;
  }
};

TEST_F(Gradcheck, TransformerEveryParameter) {
  const SmallModel m;
  Transformer<double> model = m.make();
  auto loss = [&] { return model.forward(m.tokens, m.targets, m.batch, m.seq_len); };
  ASSERT_EQ(model.params.refs().size(), 1 + 9 * size_t(m.args.n_layers) + 2);
  test::expect_parameter_gradients(model, loss, kTolerance);
}

// d/ds L(theta + s u) at s = 0 equals <grad L, u> for random directions u
// that move every parameter at once.
TEST_F(Gradcheck, TransformerDirectionalDerivatives) {
  const SmallModel m;
  Transformer<double> model = m.make();
  model.zero_grad();
  model.forward(m.tokens, m.targets, m.batch, m.seq_len);
  model.backward();
  auto params = model.params.refs();
  const auto grads = model.grads.refs();
  std::vector<double> theta0;
  for (const auto& p : params) theta0.insert(theta0.end(), p.data, p.data + p.size());

  Rng rng(11);
  for (int trial = 0; trial < 3; ++trial) {
    std::vector<double> u(theta0.size());
    double norm = 0;
    for (double& x : u) {
      x = rng.normal();
      norm += x * x;
    }
    for (double& x : u) x /= std::sqrt(norm);
    double s = 0;  // the step along u
    auto loss = [&] {
      size_t k = 0;
      for (auto& p : params)
        for (size_t j = 0; j < p.size(); ++j, ++k) p.data[j] = theta0[k] + s * u[k];
      return model.forward(m.tokens, m.targets, m.batch, m.seq_len);
    };
    double analytic = 0;
    size_t k = 0;
    for (const auto& g : grads)
      for (size_t j = 0; j < g.size(); ++j, ++k) analytic += g.data[j] * u[k];
    const double numeric = numeric_derivative(loss, &s);
    double grad_norm = 0;
    for (const auto& g : grads)
      for (size_t j = 0; j < g.size(); ++j) grad_norm += g.data[j] * g.data[j];
    // |<g, u>| <= |g|, so the error is measured against |g|.
    EXPECT_LE(std::abs(numeric - analytic), kTolerance * std::sqrt(grad_norm))
        << "direction " << trial << ": numeric " << numeric << " analytic " << analytic;
  }
}

}  // namespace
}  // namespace dslab
