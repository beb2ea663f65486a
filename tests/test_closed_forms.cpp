// Closed forms checked in plain C++, beside the PyTorch oracle tests:
//   AdamW's first step (reference/adamw.hpp): with zero moments, bias
//   correction makes m_hat = g and v_hat = g^2, so the update is
//   p1 = p0 - lr * (g / (|g| + eps) + wd * p0), wd only on matrices;
//   MTP's targets (reference/mtp.hpp, Eq. (25)): depth k at position i reads
//   token i+k and predicts token i+k+1 of the stream, and L^k_MTP is
//   -1/T sum_i log P^k_i[t_{i+k+1}].
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "reference/adamw.hpp"
#include "reference/mtp.hpp"
#include "reference/transformer.hpp"

namespace dslab {
namespace {

TEST(AdamWClosedForm, FirstStepIsLrTimesGOverAbsGPlusEps) {
  Rng rng(5);
  std::vector<double> w(3 * 4), gain(4), gw(w.size()), gg(gain.size());
  for (auto& x : w) x = rng.normal();
  for (auto& x : gain) x = 1 + 0.3 * rng.normal();
  for (auto& x : gw) x = 0.01 * rng.normal();
  for (auto& x : gg) x = 3 * rng.normal();
  gw[0] = 0;        // no gradient: only the decay moves it
  gw[1] = 1e-9;     // |g| of the order of eps
  gg[0] = -2e-8;
  const std::vector<double> w0 = w, gain0 = gain;
  std::vector<ParamRef<double>> params = {{"m.weight", w.data(), {3, 4}}, {"n.weight", gain.data(), {4}}};
  std::vector<ParamRef<double>> grads = {{"m.weight", gw.data(), {3, 4}}, {"n.weight", gg.data(), {4}}};
  for (double wd : {0.0, 0.1}) {
    for (double beta1 : {0.9, 0.5})
      for (double beta2 : {0.95, 0.999}) {
        w = w0;
        gain = gain0;
        AdamW<double> opt(params);
        AdamWArgs a;
        a.beta1 = beta1;
        a.beta2 = beta2;
        a.eps = 1e-8;
        a.weight_decay = wd;
        const double lr = 0.003;
        opt.step(params, grads, lr, a);
        EXPECT_EQ(opt.t, 1);
        for (size_t j = 0; j < w.size(); ++j) {
          const double want = w0[j] - lr * (gw[j] / (std::abs(gw[j]) + a.eps) + wd * w0[j]);
          EXPECT_NEAR(w[j], want, 1e-15) << "matrix " << j << " wd " << wd << " b1 " << beta1 << " b2 " << beta2;
        }
        for (size_t j = 0; j < gain.size(); ++j) {  // gains: no weight decay
          const double want = gain0[j] - lr * gg[j] / (std::abs(gg[j]) + a.eps);
          EXPECT_NEAR(gain[j], want, 1e-15) << "gain " << j << " wd " << wd << " b1 " << beta1 << " b2 " << beta2;
        }
        // The moments after one step: (1-b1) g and (1-b2) g^2.
        for (size_t j = 0; j < gw.size(); ++j) {
          EXPECT_NEAR(opt.m_of(0)[j], (1 - beta1) * gw[j], 1e-14 * std::abs(gw[j]));
          EXPECT_NEAR(opt.v_of(0)[j], (1 - beta2) * gw[j] * gw[j], 1e-14 * gw[j] * gw[j]);
        }
      }
  }
  // A large gradient moves every parameter by about lr, whatever its size.
  w = w0;
  for (auto& x : gw) x = 1e3;
  AdamW<double> opt(params);
  AdamWArgs none;
  none.weight_decay = 0;
  opt.step(params, grads, 0.01, none);
  for (size_t j = 0; j < w.size(); ++j) EXPECT_NEAR(w0[j] - w[j], 0.01, 1e-12);
}

TEST(AdamWClosedForm, SecondStepWithAConstantGradientMovesByLrAgain) {
  // A constant gradient g: m_hat = g and v_hat = g^2 at every step, so each
  // step moves by lr * g / (|g| + eps) (no decay): bias correction at t = 2.
  std::vector<double> p = {0.5, -1.0, 2.0}, g = {0.2, -0.7, 1e-3};
  const std::vector<double> p0 = p;
  std::vector<ParamRef<double>> params = {{"n.weight", p.data(), {3}}}, grads = {{"n.weight", g.data(), {3}}};
  AdamW<double> opt(params);
  AdamWArgs a;
  for (int step = 1; step <= 3; ++step) {
    opt.step(params, grads, 0.01, a);
    for (size_t j = 0; j < p.size(); ++j)
      EXPECT_NEAR(p[j], p0[j] - step * 0.01 * g[j] / (std::abs(g[j]) + a.eps), 1e-12)
          << "step " << step << " j " << j;
  }
}

TEST(MtpClosedForm, DepthKTargetOfPositionIIsTokenIPlusKPlusOne) {
  omp_set_num_threads(1);
  ModelArgs a;
  a.vocab_size = 64;
  a.dim = 8;
  a.n_layers = 1;
  a.n_heads = 2;
  a.n_kv_heads = 1;
  a.inter_dim = 12;
  a.max_seq_len = 8;
  a.mtp.depth = 3;
  a.mtp.lambda = 0.5;
  Transformer<double> model(a);
  model.init_weights(9);
  // Batch 2, seq_len 7, from streams whose token j of sequence b is 10 b + j:
  // inputs t_0..t_6, targets t_1..t_7.
  const int B = 2, T = 7;
  std::vector<int> tokens, targets;
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < T; ++i) {
      tokens.push_back(10 * b + i);
      targets.push_back(10 * b + i + 1);
    }
  model.forward(tokens, targets, B, T);
  ASSERT_EQ(model.acts.mtp.size(), 3u);
  for (int k = 1; k <= 3; ++k) {
    const auto& c = model.acts.mtp[k - 1];
    SCOPED_TRACE("depth " + std::to_string(k));
    EXPECT_EQ(c.positions, T - k);
    ASSERT_EQ(c.targets.size(), size_t(B * (T - k)));
    ASSERT_EQ(c.tokens.size(), size_t(B * (T - k)));
    double loss = 0;
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < T - k; ++i) {
        const size_t n = size_t(b * (T - k) + i);
        EXPECT_EQ(c.tokens[n], 10 * b + i + k) << "input token of position " << i;
        EXPECT_EQ(c.targets[n], 10 * b + i + k + 1) << "target of position " << i;
        loss -= std::log(double(c.probs(n, size_t(10 * b + i + k + 1))));
      }
    // Eq. (25): the sum over the B (T - k) positions divided by B T.
    EXPECT_NEAR(model.mtp_losses()[k - 1], loss / (B * T), 1e-12);
  }
  EXPECT_EQ(shift_positions(targets, B, T, 2),
            (std::vector<int>{3, 4, 5, 6, 7, 13, 14, 15, 16, 17}));
}

}  // namespace
}  // namespace dslab
