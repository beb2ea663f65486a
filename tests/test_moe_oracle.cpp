// The DeepSeekMoE layer and its balance losses against PyTorch
// (tests/oracle/moe_oracle.py), in double, on the same weights: the official
// gate's selection (DeepSeek-V3 inference/model.py Gate.forward, on tie-free
// random inputs), the gate values, the output, every balance loss, and the
// gradient of every parameter and of the input.
//
// Agreement is normwise per tensor, max|ours - torch| / max|torch| <= 1e-10:
// both sides compute the same function in double along different operation
// orders, so they differ by rounding only (measured: below 1e-14); a wrong
// term gives an O(1) difference. The selection must match exactly.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reference/moe.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

constexpr double kTolerance = 1e-10;
constexpr int kTokens = 32, kSeqLen = 8, kDevices = 4, kMaxDevices = 3;
constexpr double kAlphaExpert = 0.3, kAlphaDevice = 0.2, kAlphaComm = 0.1, kAlphaSeq = 0.4;

struct Case {
  std::string name;
  ScoreFunc score_func;
  int groups, limited;
  double route_scale, capacity;
  bool bias;
  int shared;
};

MoeArgs args_of(const Case& c) {
  MoeArgs a;
  a.dim = 8;
  a.moe_inter_dim = 6;
  a.n_routed_experts = 16;
  a.n_shared_experts = c.shared;
  a.n_activated_experts = 4;
  a.n_expert_groups = c.groups;
  a.n_limited_groups = c.limited;
  a.route_scale = c.route_scale;
  a.score_func = c.score_func;
  a.capacity_factor = c.capacity;
  return a;
}

// Stacks one weight of every expert into [E, rows, cols].
std::vector<double> stack(const MoeParams<double>& p, Tensor2<double> FfnWeights<double>::*w) {
  std::vector<double> out;
  for (const auto& e : p.experts) out.insert(out.end(), (e.*w).begin(), (e.*w).end());
  return out;
}

void check_case(const Case& c) {
  SCOPED_TRACE(c.name);
  const MoeArgs a = args_of(c);
  const size_t E = a.n_routed_experts, D = a.dim, I = a.moe_inter_dim;
  MoeParams<double> p(a);
  p.init(31, 0.4);
  Rng rng(32);
  Tensor2<double> x = Tensor2<double>::from_shape({size_t(kTokens), D}), R = x;
  for (auto& v : x) v = rng.normal();
  for (auto& v : R) v = rng.normal();
  Tensor1<double> bias;
  if (c.bias) {
    bias = Tensor1<double>::from_shape({E});
    for (auto& v : bias) v = 0.1 * rng.normal();
  }
  const Placement pl = Placement::contiguous(int(E), kDevices);

  // Ours.
  MoeCache<double> cache;
  Tensor2<double> y;
  moe_forward(y, cache, x, p, bias, a);
  const Routing<double>& r = cache.routing;
  Tensor2<double> ds = xt::zeros<double>({size_t(kTokens), E});
  const std::vector<double> losses = {expert_balance_loss(r, kAlphaExpert, &ds),
                                      device_balance_loss(r, pl, kAlphaDevice, &ds),
                                      comm_balance_loss(r, pl, kMaxDevices, kAlphaComm, &ds),
                                      sequence_balance_loss(r, kSeqLen, kAlphaSeq, &ds)};
  MoeParams<double> dp(a);
  Tensor2<double> dx;
  moe_backward(dx, dp, R, &ds, x, cache, p, a);

  // Theirs.
  const std::string dir = test::temp_dir("moe_oracle_" + c.name);
  const std::string in = dir + "/in.h5", out = dir + "/out.h5";
  {
    H5::H5File f(in, H5F_ACC_TRUNC);
    H5::Group g = f.openGroup("/");
    oracle::write_attr(g, "topk", a.n_activated_experts);
    oracle::write_attr(g, "n_groups", a.n_expert_groups);
    oracle::write_attr(g, "topk_groups", a.n_limited_groups);
    oracle::write_attr(g, "sigmoid", int(a.score_func == ScoreFunc::Sigmoid));
    oracle::write_attr(g, "route_scale", a.route_scale);
    oracle::write_attr(g, "capacity_factor", a.capacity_factor);
    oracle::write_attr(g, "has_bias", int(c.bias));
    oracle::write_attr(g, "alpha_expert", kAlphaExpert);
    oracle::write_attr(g, "alpha_device", kAlphaDevice);
    oracle::write_attr(g, "alpha_comm", kAlphaComm);
    oracle::write_attr(g, "alpha_seq", kAlphaSeq);
    oracle::write_attr(g, "seq_len", kSeqLen);
    oracle::write_attr(g, "n_devices", kDevices);
    oracle::write_attr(g, "max_devices_per_token", kMaxDevices);
    oracle::write_array(g, "x", x.data(), {size_t(kTokens), D});
    oracle::write_array(g, "R", R.data(), {size_t(kTokens), D});
    oracle::write_array(g, "gate", p.gate.data(), {E, D});
    const Tensor1<double> bias_or_zero = c.bias ? bias : Tensor1<double>(xt::zeros<double>({E}));
    oracle::write_array(g, "bias", bias_or_zero.data(), {E});
    oracle::write_array(g, "w1", stack(p, &FfnWeights<double>::w1).data(), {E, I, D});
    oracle::write_array(g, "w2", stack(p, &FfnWeights<double>::w2).data(), {E, D, I});
    oracle::write_array(g, "w3", stack(p, &FfnWeights<double>::w3).data(), {E, I, D});
    if (c.shared > 0) {
      const size_t S = size_t(c.shared) * I;
      oracle::write_array(g, "shared_w1", p.shared.w1.data(), {S, D});
      oracle::write_array(g, "shared_w2", p.shared.w2.data(), {D, S});
      oracle::write_array(g, "shared_w3", p.shared.w3.data(), {S, D});
    }
    oracle::write_ints(g, "device_of_expert", pl.device_of_expert);
  }
  const std::string error = oracle::run_script("moe_oracle.py", in, out);
  ASSERT_EQ(error, "");
  H5::H5File f(out, H5F_ACC_RDONLY);

  const oracle::Array idx = oracle::read_array(f, "indices");
  ASSERT_EQ(idx.data.size(), r.indices.size());
  for (size_t j = 0; j < idx.data.size(); ++j) ASSERT_EQ(int(idx.data[j]), r.indices[j]) << "slot " << j;
  auto expect_close = [&](const std::string& name, const double* ours) {
    const oracle::Array theirs = oracle::read_array(f, name);
    EXPECT_LE(oracle::relative_error(ours, theirs.data), kTolerance) << name;
  };
  expect_close("y", y.data());
  expect_close("weights", r.weights.data());
  const oracle::Array their_losses = oracle::read_array(f, "losses");
  for (size_t j = 0; j < losses.size(); ++j)
    EXPECT_NEAR(losses[j], their_losses.data[j], kTolerance * std::abs(their_losses.data[j])) << "loss " << j;
  expect_close("dx", dx.data());
  expect_close("dgate", dp.gate.data());
  expect_close("dw1", stack(dp, &FfnWeights<double>::w1).data());
  expect_close("dw2", stack(dp, &FfnWeights<double>::w2).data());
  expect_close("dw3", stack(dp, &FfnWeights<double>::w3).data());
  if (c.shared > 0) {
    expect_close("dshared_w1", dp.shared.w1.data());
    expect_close("dshared_w2", dp.shared.w2.data());
    expect_close("dshared_w3", dp.shared.w3.data());
  }
}

// V2-Lite-like (softmax, no groups), V2-like (softmax, group-limited by max,
// route_scale 16), V3-like (sigmoid, bias, groups by top-2 sum, renormalised,
// route_scale 2.5), and V2's capacity dropping without shared experts.
TEST(MoeOracle, V2LiteGate) { check_case({"v2lite", ScoreFunc::Softmax, 1, 1, 1.0, 0.0, false, 2}); }
TEST(MoeOracle, V2GroupLimitedGate) { check_case({"v2", ScoreFunc::Softmax, 8, 3, 16.0, 0.0, false, 2}); }
TEST(MoeOracle, V3SigmoidBiasGroups) { check_case({"v3", ScoreFunc::Sigmoid, 4, 2, 2.5, 0.0, true, 1}); }
TEST(MoeOracle, CapacityDropping) { check_case({"capacity", ScoreFunc::Softmax, 1, 1, 1.0, 1.0, false, 0}); }

}  // namespace
}  // namespace dslab
