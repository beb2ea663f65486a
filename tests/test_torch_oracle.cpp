// The reference transformer against PyTorch autograd (tests/oracle/torch_oracle.py),
// in double, on the same weights and tokens: loss, logits and the gradient of
// every parameter, for MHA, GQA and MQA; and attention alone with
// v_head_dim != head_dim.
//
// Agreement is normwise per tensor, max|ours - torch| / max|torch|, and must
// be within 1e-10. Both sides compute the same function in double along
// different operation orders, so they differ by rounding only: about
// eps = 2.2e-16 times a modest condition number (measured: below 1e-14).
// Any wrong term gives an O(1) relative difference.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "reference/attention.hpp"
#include "reference/transformer.hpp"
#include "tests/model_gradcheck.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

constexpr double kTolerance = 1e-10;

struct ModelCase {
  std::string name;
  ModelArgs args;
  int batch, seq_len;
};

ModelCase model_case(const std::string& name, int n_kv_heads, double rope_theta, double norm_eps) {
  ModelCase c{name, {}, 2, 7};
  c.args.vocab_size = 13;
  c.args.dim = 16;
  c.args.n_layers = 2;
  c.args.n_heads = 4;
  c.args.n_kv_heads = n_kv_heads;
  c.args.inter_dim = 24;
  c.args.max_seq_len = 9;
  c.args.rope_theta = rope_theta;
  c.args.norm_eps = norm_eps;
  c.args.init_std = 0.3;  // large enough for attention far from uniform
  return c;
}

const std::vector<ModelCase>& model_cases() {
  static const std::vector<ModelCase> cases = {model_case("mha", 4, 10000.0, 1e-6),
                                               model_case("gqa", 2, 500.0, 1e-5),
                                               model_case("mqa", 1, 10000.0, 1e-6)};
  return cases;
}

// Random weights and random RMSNorm gains (not all ones, so a gain that is
// dropped or misapplied shows), random tokens and targets.
struct ModelInputs {
  Transformer<double> model;
  std::vector<int> tokens, targets;
  explicit ModelInputs(const ModelCase& c) : model(c.args) {
    model.init_weights(21);
    Rng rng(22);
    test::randomize_gains(model, rng);
    for (int n = 0; n < c.batch * c.seq_len; ++n) {
      tokens.push_back(int(rng.below(c.args.vocab_size)));
      targets.push_back(int(rng.below(c.args.vocab_size)));
    }
  }
};

struct AttentionInputs {
  AttentionShape shape{2, 5, 4, 2, 6, 3, 0.45};
  Tensor2<double> q, k, v, r;
  AttentionInputs() {
    Rng rng(23);
    const size_t N = size_t(shape.batch) * shape.seq_len;
    auto fill = [&](Tensor2<double>& t, int width) {
      t.resize({N, size_t(width)});
      for (auto& x : t) x = rng.normal();
    };
    fill(q, shape.n_heads * shape.head_dim);
    fill(k, shape.n_kv_heads * shape.head_dim);
    fill(v, shape.n_kv_heads * shape.v_head_dim);
    fill(r, shape.n_heads * shape.v_head_dim);
  }
};

using Named = std::pair<std::string, const Tensor2<double>*>;

void write_inputs(const std::string& path) {
  using namespace oracle;
  H5::H5File file(path, H5F_ACC_TRUNC);
  file.createGroup("/transformer");
  for (const auto& c : model_cases()) {
    H5::Group g = file.createGroup("/transformer/" + c.name);
    const ModelArgs& a = c.args;
    write_attr(g, "vocab_size", a.vocab_size);
    write_attr(g, "dim", a.dim);
    write_attr(g, "n_layers", a.n_layers);
    write_attr(g, "n_heads", a.n_heads);
    write_attr(g, "n_kv_heads", a.n_kv_heads);
    write_attr(g, "inter_dim", a.inter_dim);
    write_attr(g, "max_seq_len", a.max_seq_len);
    write_attr(g, "rope_theta", a.rope_theta);
    write_attr(g, "norm_eps", a.norm_eps);
    write_attr(g, "batch", c.batch);
    write_attr(g, "seq_len", c.seq_len);
    ModelInputs in(c);
    for (const auto& p : in.model.params.refs()) write_array(g, p.name, p.data, p.shape);
    write_ints(g, "tokens", in.tokens);
    write_ints(g, "targets", in.targets);
  }
  const AttentionInputs in;
  file.createGroup("/attention");
  H5::Group g = file.createGroup("/attention/value_dim_differs");
  write_attr(g, "batch", in.shape.batch);
  write_attr(g, "seq_len", in.shape.seq_len);
  write_attr(g, "n_heads", in.shape.n_heads);
  write_attr(g, "n_kv_heads", in.shape.n_kv_heads);
  write_attr(g, "head_dim", in.shape.head_dim);
  write_attr(g, "v_head_dim", in.shape.v_head_dim);
  write_attr(g, "softmax_scale", in.shape.softmax_scale);
  for (const auto& [name, t] : {Named{"q", &in.q}, Named{"k", &in.k}, Named{"v", &in.v},
                                Named{"r", &in.r}})
    write_array(g, name, t->data(), {t->shape(0), t->shape(1)});
}

// One python process answers every case; each test reads its part.
class TorchOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = test::temp_dir("torch_oracle");
    const std::string in_path = dir + "/in.h5";
    out_path_ = dir + "/out.h5";
    write_inputs(in_path);
    failure_ = oracle::run_script("torch_oracle.py", in_path, out_path_);
  }
  void SetUp() override { ASSERT_TRUE(failure_.empty()) << failure_; }

  static void expect_close(const std::string& what, const double* ours,
                           const std::vector<size_t>& shape, const oracle::Array& torch) {
    oracle::expect_close(what, ours, shape, torch, kTolerance);
  }

  static void check_model(const ModelCase& c) {
    ModelInputs in(c);
    Transformer<double>& model = in.model;
    model.zero_grad();
    const double loss = model.forward(in.tokens, in.targets, c.batch, c.seq_len);
    model.backward();
    const H5::H5File out(out_path_, H5F_ACC_RDONLY);
    const std::string group = "/transformer/" + c.name + "/";
    const auto torch_loss = oracle::read_array(out, group + "loss");
    EXPECT_LE(oracle::relative_error(&loss, torch_loss.data), kTolerance) << "loss";
    const auto& logits = model.logits();
    expect_close("logits", logits.data(), {logits.shape(0), logits.shape(1)},
                 oracle::read_array(out, group + "logits"));
    for (const auto& g : model.grads.refs())
      expect_close(g.name, g.data, g.shape, oracle::read_array(out, group + "grads/" + g.name));
  }

  static inline std::string out_path_, failure_;
};

TEST_F(TorchOracle, Mha) { check_model(model_cases()[0]); }
TEST_F(TorchOracle, Gqa) { check_model(model_cases()[1]); }
TEST_F(TorchOracle, Mqa) { check_model(model_cases()[2]); }

TEST_F(TorchOracle, AttentionValueDimDiffers) {
  const AttentionInputs in;
  Tensor2<double> out, dq, dk, dv;
  Tensor4<double> probs;
  attention_forward(out, probs, in.q, in.k, in.v, in.shape);
  attention_backward(dq, dk, dv, in.r, in.q, in.k, in.v, probs, in.shape);
  const H5::H5File file(out_path_, H5F_ACC_RDONLY);
  const std::string group = "/attention/value_dim_differs/";
  for (const auto& [name, t] :
       {Named{"out", &out}, Named{"grads/q", &dq}, Named{"grads/k", &dk}, Named{"grads/v", &dv}})
    expect_close(name, t->data(), {t->shape(0), t->shape(1)},
                 oracle::read_array(file, group + name));
}

}  // namespace
}  // namespace dslab
