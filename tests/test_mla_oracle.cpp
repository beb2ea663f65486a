// MLA against PyTorch autograd (tests/oracle/mla_oracle.py), in double, on
// the same weights and inputs: the layer's output and the gradient of its
// input and of every weight, for each RoPE variant, with and without query
// compression, with YaRN (frequencies and softmax factor, as model.py).
//
// And the whole transformer with attn = "mla": loss, logits and the gradient of
// every parameter, against the same model written in PyTorch.
//
// Agreement is normwise per tensor, max|ours - torch| / max|torch| <= 1e-10:
// both sides compute the same function in double along different operation
// orders, so they differ by rounding only (about 1e-15 measured); a wrong
// term gives an O(1) difference.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reference/mla.hpp"
#include "reference/transformer.hpp"
#include "tests/model_gradcheck.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

constexpr double kTolerance = 1e-10;
constexpr double kRopeTheta = 10000.0;

void write_string_attr(H5::Group& g, const std::string& name, const std::string& value) {
  const H5::StrType type(H5::PredType::C_S1, value.size());
  g.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value);
}

void write_mla_args(H5::Group& g, const MlaArgs& a, double rope_theta) {
  using oracle::write_attr;
  write_attr(g, "dim", a.dim);
  write_attr(g, "n_heads", a.n_heads);
  write_attr(g, "q_lora_rank", a.q_lora_rank);
  write_attr(g, "kv_lora_rank", a.kv_lora_rank);
  write_attr(g, "qk_nope_head_dim", a.qk_nope_head_dim);
  write_attr(g, "qk_rope_head_dim", a.qk_rope_head_dim);
  write_attr(g, "v_head_dim", a.v_head_dim);
  write_string_attr(g, "rope", mla_rope_name(a.rope));
  write_attr(g, "norm_eps", a.norm_eps);
  write_attr(g, "rope_theta", rope_theta);
  write_attr(g, "rope_factor", a.rope_factor);
  write_attr(g, "mscale", a.mscale);
  write_attr(g, "max_seq_len", a.max_seq_len);
  write_attr(g, "original_seq_len", a.original_seq_len);
  write_attr(g, "beta_fast", a.beta_fast);
  write_attr(g, "beta_slow", a.beta_slow);
}

struct LayerCase {
  std::string name;
  MlaArgs args;
  int batch = 2, seq_len = 7;
};

LayerCase layer_case(const std::string& name, MlaRope rope, int q_lora_rank,
                     double rope_factor = 1.0, double mscale = 1.0) {
  LayerCase c{name, {}};
  MlaArgs& a = c.args;
  a.dim = 16;
  a.n_heads = 4;
  a.q_lora_rank = q_lora_rank;
  a.kv_lora_rank = 10;
  a.qk_nope_head_dim = 6;
  a.qk_rope_head_dim = 4;
  a.v_head_dim = 5;
  a.rope = rope;
  a.norm_eps = 1e-5;
  a.rope_factor = rope_factor;
  a.mscale = mscale;
  return c;
}

// YaRN on (max_seq_len > original_seq_len). V3's settings: over the 2 rotated
// pairs the ramp runs from pair 0 to 2, keeping pair 0 and blending pair 1
// half and half. A full-RoPE head (5 pairs) with original_seq_len 64 and betas
// 16, 2: the range [-0.2, 0.9] is clamped to [0, 1], pairs 1-4 are divided by 40.
LayerCase yarn_case(const std::string& name, MlaRope rope, int max_seq_len, int original_seq_len,
                    double beta_fast, double beta_slow) {
  LayerCase c = layer_case(name, rope, 12, 40.0, 0.707);
  c.args.max_seq_len = max_seq_len;
  c.args.original_seq_len = original_seq_len;
  c.args.beta_fast = beta_fast;
  c.args.beta_slow = beta_slow;
  return c;
}

const std::vector<LayerCase>& layer_cases() {
  static const std::vector<LayerCase> cases = {
      layer_case("decoupled", MlaRope::Decoupled, 12),
      layer_case("decoupled_direct_wq", MlaRope::Decoupled, 0),
      layer_case("none", MlaRope::None, 12),
      layer_case("full", MlaRope::Full, 12),
      yarn_case("yarn", MlaRope::Decoupled, 16384, 4096, 32, 1),
      yarn_case("yarn_full", MlaRope::Full, 128, 64, 16, 2),
  };
  return cases;
}

// Random weights, gains around 1, input and loss weights r.
struct LayerInputs {
  MlaWeights<double> w;
  Tensor2<double> x, r;
  RopeTable rope;
  explicit LayerInputs(const LayerCase& c) : w(c.args) {
    Rng rng(51);
    for (auto& p : w.refs(""))
      for (size_t j = 0; j < p.size(); ++j)
        p.data[j] = p.shape.size() == 1 ? 1.0 + 0.3 * rng.normal() : 0.5 * rng.normal();
    const size_t N = size_t(c.batch) * c.seq_len;
    x.resize({N, size_t(c.args.dim)});
    r.resize({N, size_t(c.args.dim)});
    for (auto& v : x) v = rng.normal();
    for (auto& v : r) v = rng.normal();
    rope = c.args.rope_table(c.seq_len, kRopeTheta);
  }
};

struct ModelCase {
  std::string name;
  ModelArgs args;
  int batch = 2, seq_len = 7;
};

ModelCase model_case(const std::string& name, const std::string& rope, int q_lora_rank,
                     double rope_theta) {
  ModelCase c{name, {}};
  ModelArgs& a = c.args;
  a.vocab_size = 13;
  a.dim = 16;
  a.n_layers = 2;
  a.n_heads = 4;
  a.inter_dim = 24;
  a.max_seq_len = 9;
  a.rope_theta = rope_theta;
  a.norm_eps = 1e-6;
  a.init_std = 0.3;
  a.attn = AttnKind::Mla;
  a.mla.q_lora_rank = q_lora_rank;
  a.mla.kv_lora_rank = 10;
  a.mla.qk_nope_head_dim = 6;
  a.mla.qk_rope_head_dim = 4;
  a.mla.v_head_dim = 5;
  a.mla.rope = parse_mla_rope(rope);
  return c;
}

const std::vector<ModelCase>& model_cases() {
  static const std::vector<ModelCase> cases = {model_case("decoupled", "decoupled", 12, 10000.0),
                                               model_case("none", "none", 0, 10000.0),
                                               model_case("full", "full", 12, 500.0)};
  return cases;
}

struct ModelInputs {
  Transformer<double> model;
  std::vector<int> tokens, targets;
  explicit ModelInputs(const ModelCase& c) : model(c.args) {
    model.init_weights(52);
    Rng rng(53);
    test::randomize_gains(model, rng);
    for (int n = 0; n < c.batch * c.seq_len; ++n) {
      tokens.push_back(int(rng.below(c.args.vocab_size)));
      targets.push_back(int(rng.below(c.args.vocab_size)));
    }
  }
};

void write_inputs(const std::string& path) {
  using namespace oracle;
  H5::H5File file(path, H5F_ACC_TRUNC);
  file.createGroup("/mla");
  for (const auto& c : layer_cases()) {
    H5::Group g = file.createGroup("/mla/" + c.name);
    write_mla_args(g, c.args, kRopeTheta);
    write_attr(g, "batch", c.batch);
    write_attr(g, "seq_len", c.seq_len);
    LayerInputs in(c);
    for (const auto& p : in.w.refs("")) {
      const std::string name = p.name.substr(0, p.name.size() - std::string(".weight").size());
      write_array(g, name, p.data, p.shape);
    }
    write_array(g, "x", in.x.data(), {in.x.shape(0), in.x.shape(1)});
    write_array(g, "r", in.r.data(), {in.r.shape(0), in.r.shape(1)});
  }
  file.createGroup("/model");
  for (const auto& c : model_cases()) {
    H5::Group g = file.createGroup("/model/" + c.name);
    const ModelArgs& a = c.args;
    write_mla_args(g, a.mla_args(), a.rope_theta);
    write_attr(g, "vocab_size", a.vocab_size);
    write_attr(g, "n_layers", a.n_layers);
    write_attr(g, "inter_dim", a.inter_dim);
    write_attr(g, "batch", c.batch);
    write_attr(g, "seq_len", c.seq_len);
    ModelInputs in(c);
    for (const auto& p : in.model.params.refs()) write_array(g, p.name, p.data, p.shape);
    write_ints(g, "tokens", in.tokens);
    write_ints(g, "targets", in.targets);
  }
}

class MlaOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = test::temp_dir("mla_oracle");
    const std::string in_path = dir + "/in.h5";
    out_path_ = dir + "/out.h5";
    write_inputs(in_path);
    failure_ = oracle::run_script("mla_oracle.py", in_path, out_path_);
  }
  void SetUp() override { ASSERT_TRUE(failure_.empty()) << failure_; }

  static void expect_close(const std::string& what, const double* ours,
                           const std::vector<size_t>& shape, const oracle::Array& torch) {
    oracle::expect_close(what, ours, shape, torch, kTolerance);
  }

  static void check_layer(const LayerCase& c) {
    LayerInputs in(c);
    Tensor2<double> out, dx;
    MlaCache<double> cache;
    mla_forward(out, cache, in.x, in.w, c.args, in.rope, c.batch, c.seq_len);
    MlaWeights<double> g(c.args);
    mla_backward(dx, g, in.r, cache, in.w, c.args, in.rope);
    const H5::H5File file(out_path_, H5F_ACC_RDONLY);
    const std::string group = "/mla/" + c.name + "/";
    expect_close("out", out.data(), {out.shape(0), out.shape(1)},
                 oracle::read_array(file, group + "out"));
    expect_close("x", dx.data(), {dx.shape(0), dx.shape(1)},
                 oracle::read_array(file, group + "grads/x"));
    for (const auto& p : g.refs("")) {
      const std::string name = p.name.substr(0, p.name.size() - std::string(".weight").size());
      expect_close(name, p.data, p.shape, oracle::read_array(file, group + "grads/" + name));
    }
  }

  static void check_model(const ModelCase& c) {
    ModelInputs in(c);
    Transformer<double>& model = in.model;
    model.zero_grad();
    const double loss = model.forward(in.tokens, in.targets, c.batch, c.seq_len);
    model.backward();
    const H5::H5File file(out_path_, H5F_ACC_RDONLY);
    const std::string group = "/model/" + c.name + "/";
    EXPECT_LE(oracle::relative_error(&loss, oracle::read_array(file, group + "loss").data),
              kTolerance)
        << "loss";
    const auto& logits = model.logits();
    expect_close("logits", logits.data(), {logits.shape(0), logits.shape(1)},
                 oracle::read_array(file, group + "logits"));
    for (const auto& g : model.grads.refs())
      expect_close(g.name, g.data, g.shape, oracle::read_array(file, group + "grads/" + g.name));
  }

  static inline std::string out_path_, failure_;
};

TEST_F(MlaOracle, Decoupled) { check_layer(layer_cases()[0]); }
TEST_F(MlaOracle, DecoupledDirectWq) { check_layer(layer_cases()[1]); }
TEST_F(MlaOracle, NoRope) { check_layer(layer_cases()[2]); }
TEST_F(MlaOracle, FullRope) { check_layer(layer_cases()[3]); }
TEST_F(MlaOracle, YarnScale) { check_layer(layer_cases()[4]); }
TEST_F(MlaOracle, YarnFullRope) { check_layer(layer_cases()[5]); }
TEST_F(MlaOracle, ModelDecoupled) { check_model(model_cases()[0]); }
TEST_F(MlaOracle, ModelNoRopeDirectWq) { check_model(model_cases()[1]); }
TEST_F(MlaOracle, ModelFullRope) { check_model(model_cases()[2]); }

}  // namespace
}  // namespace dslab
