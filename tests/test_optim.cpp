// The optimizer pieces in reference/adamw.hpp:
//   AdamW against torch.optim.AdamW (tests/oracle/adamw_oracle.py), in double,
//     over several steps with a changing learning rate;
//   global_grad_norm, clip_grad_norm and LrSchedule against closed forms.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "reference/adamw.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

// Three tensors: a matrix and a gain vector with gradients of order 1, and a
// matrix whose gradients (~1e-8) are as small as eps, where an eps added in
// the wrong place shows.
struct OptimProblem {
  static constexpr int kSteps = 6;
  AdamWArgs args;  // the defaults the trainer uses
  LrSchedule schedule{0.05, 0.005, 2, kSteps};
  std::vector<std::string> names = {"w", "gain", "tiny"};
  std::vector<std::vector<size_t>> shapes = {{4, 5}, {5}, {3, 2}};
  std::vector<double> grad_scale = {1.0, 1.0, 1e-8};
  std::vector<std::vector<double>> initial;            // [tensor][element]
  std::vector<std::vector<std::vector<double>>> grads;  // [step][tensor][element]

  OptimProblem() {
    Rng rng(31);
    auto random = [&](size_t n, double scale) {
      std::vector<double> x(n);
      for (double& e : x) e = scale * rng.normal();
      return x;
    };
    for (const auto& shape : shapes) initial.push_back(random(numel(shape), 1.0));
    grads.resize(kSteps);
    for (auto& step : grads)
      for (size_t i = 0; i < shapes.size(); ++i)
        step.push_back(random(numel(shapes[i]), grad_scale[i]));
  }
  static size_t numel(const std::vector<size_t>& shape) {
    size_t n = 1;
    for (size_t d : shape) n *= d;
    return n;
  }
};

void write_problem(const OptimProblem& pb, const std::string& path) {
  using namespace oracle;
  H5::H5File file(path, H5F_ACC_TRUNC);
  H5::Group root = file.openGroup("/");
  write_attr(root, "beta1", pb.args.beta1);
  write_attr(root, "beta2", pb.args.beta2);
  write_attr(root, "eps", pb.args.eps);
  write_attr(root, "weight_decay", pb.args.weight_decay);
  std::vector<double> lr;
  for (int s = 0; s < pb.kSteps; ++s) lr.push_back(pb.schedule.at(s));
  write_array(root, "lr", lr.data(), {lr.size()});
  H5::Group params = file.createGroup("/params");
  for (size_t i = 0; i < pb.names.size(); ++i)
    write_array(params, pb.names[i], pb.initial[i].data(), pb.shapes[i]);
  file.createGroup("/grads");
  for (int s = 0; s < pb.kSteps; ++s) {
    H5::Group g = file.createGroup("/grads/" + std::to_string(s));
    for (size_t i = 0; i < pb.names.size(); ++i)
      write_array(g, pb.names[i], pb.grads[s][i].data(), pb.shapes[i]);
  }
}

// Parameters after every step agree with torch to 1e-12, normwise, on the
// distance moved from the initial values (the part AdamW computes; the
// values themselves would hide an update error behind |p| >> |update|).
// The moments after the last step agree to 1e-12 too. Both sides evaluate the
// same formulas in double in a different order: rounding differences are
// ~1e-16 relative (measured: at most 1e-14).
TEST(AdamW, MatchesTorchAdamW) {
  const OptimProblem pb;
  const std::string dir = test::temp_dir("adamw_oracle");
  const std::string in_path = dir + "/in.h5", out_path = dir + "/out.h5";
  write_problem(pb, in_path);
  const std::string failure = oracle::run_script("adamw_oracle.py", in_path, out_path);
  ASSERT_TRUE(failure.empty()) << failure;
  const H5::H5File out(out_path, H5F_ACC_RDONLY);

  std::vector<std::vector<double>> values = pb.initial;
  std::vector<ParamRef<double>> params, grads;
  std::vector<std::vector<double>> grad_buffers(pb.names.size());
  for (size_t i = 0; i < pb.names.size(); ++i) {
    params.push_back({pb.names[i], values[i].data(), pb.shapes[i]});
    grad_buffers[i].resize(values[i].size());
    grads.push_back({pb.names[i], grad_buffers[i].data(), pb.shapes[i]});
  }
  AdamW<double> opt(params);
  for (int s = 0; s < pb.kSteps; ++s) {
    for (size_t i = 0; i < pb.names.size(); ++i) grad_buffers[i] = pb.grads[s][i];
    opt.step(params, grads, pb.schedule.at(s), pb.args);
    for (size_t i = 0; i < pb.names.size(); ++i) {
      const auto torch =
          oracle::read_array(out, "/params/" + std::to_string(s) + "/" + pb.names[i]);
      ASSERT_EQ(torch.data.size(), values[i].size());
      std::vector<double> ours_moved(values[i].size()), torch_moved(values[i].size());
      for (size_t j = 0; j < values[i].size(); ++j) {
        ours_moved[j] = values[i][j] - pb.initial[i][j];
        torch_moved[j] = torch.data[j] - pb.initial[i][j];
      }
      EXPECT_LE(oracle::relative_error(ours_moved.data(), torch_moved), 1e-12)
          << pb.names[i] << " after step " << s;
    }
  }
  EXPECT_EQ(opt.t, pb.kSteps);
  for (size_t i = 0; i < pb.names.size(); ++i) {
    const auto m = oracle::read_array(out, "/exp_avg/" + pb.names[i]);
    const auto v = oracle::read_array(out, "/exp_avg_sq/" + pb.names[i]);
    ASSERT_EQ(m.data.size(), opt.size_of(i));
    ASSERT_EQ(v.data.size(), opt.size_of(i));
    EXPECT_LE(oracle::relative_error(opt.m_of(i), m.data), 1e-12) << pb.names[i];
    EXPECT_LE(oracle::relative_error(opt.v_of(i), v.data), 1e-12) << pb.names[i];
  }
}

// sqrt(12 * 0.5^2 + 4 * 1.5^2) = sqrt(12), exactly representable sums.
TEST(GlobalGradNorm, SmallClosedForm) {
  std::vector<float> a(12, 0.5f), b(4, -1.5f);
  const std::vector<ParamRef<float>> grads = {{"a", a.data(), {3, 4}}, {"b", b.data(), {4}}};
  EXPECT_DOUBLE_EQ(global_grad_norm(grads), std::sqrt(12.0));
}

// 10^6 copies of x = 0.1f: the norm is 1000 x. A float accumulator would be
// off by more than 1e-3 relative; a double one by at most n eps / 2 ~ 6e-11.
TEST(GlobalGradNorm, AccumulatesInDouble) {
  std::vector<float> g(1000000, 0.1f);
  const std::vector<ParamRef<float>> grads = {{"g", g.data(), {1000, 1000}}};
  const double expected = 1000.0 * double(0.1f);
  EXPECT_NEAR(global_grad_norm(grads), expected, 1e-9 * expected);
}

// Above max_norm every gradient is scaled by max_norm / (norm + 1e-6) (the
// factor torch.nn.utils.clip_grad_norm_ uses): the direction is kept and
// the new norm is max_norm * norm / (norm + 1e-6).
TEST(ClipGradNorm, ScalesToMaxNorm) {
  Rng rng(32);
  std::vector<double> a(10), b(7);
  for (double& x : a) x = rng.normal();
  for (double& x : b) x = rng.normal();
  const std::vector<double> a0 = a, b0 = b;
  const std::vector<ParamRef<double>> grads = {{"a", a.data(), {2, 5}}, {"b", b.data(), {7}}};
  const double norm = global_grad_norm(grads);
  const double max_norm = norm / 4;
  clip_grad_norm(grads, norm, max_norm);
  EXPECT_NEAR(global_grad_norm(grads), max_norm * norm / (norm + 1e-6), 1e-14 * max_norm);
  const double factor = a[0] / a0[0];
  for (size_t j = 0; j < a.size(); ++j) EXPECT_NEAR(a[j] / a0[j], factor, 1e-15) << j;
  for (size_t j = 0; j < b.size(); ++j) EXPECT_NEAR(b[j] / b0[j], factor, 1e-15) << j;
}

TEST(ClipGradNorm, LeavesSmallNormsAndDisabledClippingAlone) {
  std::vector<double> g = {3.0, -4.0};
  const std::vector<ParamRef<double>> grads = {{"g", g.data(), {2}}};
  clip_grad_norm(grads, 5.0, 5.0);  // norm == max_norm: no change
  EXPECT_EQ(g, (std::vector<double>{3.0, -4.0}));
  clip_grad_norm(grads, 5.0, 0.0);  // max_norm <= 0 disables clipping
  EXPECT_EQ(g, (std::vector<double>{3.0, -4.0}));
}

// Warm-up: lr (s + 1) / warmup for s < warmup. Then
// min_lr + (lr - min_lr) (1 + cos(pi p)) / 2 with p = (s - warmup) / (total - warmup),
// held at min_lr after total.
TEST(LrSchedule, WarmupThenCosine) {
  const double lr = 1e-3, min_lr = 1e-4;
  const LrSchedule s{lr, min_lr, 4, 12};
  EXPECT_DOUBLE_EQ(s.at(0), lr / 4);
  EXPECT_DOUBLE_EQ(s.at(1), lr / 2);
  EXPECT_DOUBLE_EQ(s.at(3), lr);
  EXPECT_DOUBLE_EQ(s.at(4), lr);                                                  // p = 0
  EXPECT_DOUBLE_EQ(s.at(6), min_lr + 0.5 * (lr - min_lr) * (1 + std::sqrt(0.5)));  // p = 1/4
  EXPECT_DOUBLE_EQ(s.at(8), 0.5 * (lr + min_lr));                                 // p = 1/2
  EXPECT_DOUBLE_EQ(s.at(12), min_lr);                                             // p = 1
  EXPECT_DOUBLE_EQ(s.at(30), min_lr);
  for (int step = 4; step < 12; ++step) EXPECT_GT(s.at(step), s.at(step + 1)) << step;
}

TEST(LrSchedule, NoWarmupStartsAtPeak) {
  const LrSchedule s{2e-3, 0.0, 0, 10};
  EXPECT_DOUBLE_EQ(s.at(0), 2e-3);
  EXPECT_DOUBLE_EQ(s.at(5), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(10), 0.0);
}

}  // namespace
}  // namespace dslab
