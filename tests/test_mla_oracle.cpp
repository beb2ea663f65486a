// MLA against PyTorch autograd (tests/oracle/mla_oracle.py), in double, on
// the same weights and inputs: the layer's output and the gradient of its
// input and of every weight, for each RoPE variant, with and without query
// compression, with the YaRN softmax factor.
//
// Agreement is normwise per tensor, max|ours - torch| / max|torch| <= 1e-10:
// both sides compute the same function in double along different operation
// orders, so they differ by rounding only (about 1e-15 measured); a wrong
// term gives an O(1) difference.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reference/mla.hpp"
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

void write_mla_args(H5::Group& g, const MlaArgs& a) {
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
  write_attr(g, "rope_theta", kRopeTheta);
  write_attr(g, "rope_factor", a.rope_factor);
  write_attr(g, "mscale", a.mscale);
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

const std::vector<LayerCase>& layer_cases() {
  static const std::vector<LayerCase> cases = {
      layer_case("decoupled", MlaRope::Decoupled, 12),
      layer_case("decoupled_direct_wq", MlaRope::Decoupled, 0),
      layer_case("none", MlaRope::None, 12),
      layer_case("full", MlaRope::Full, 12),
      layer_case("yarn", MlaRope::Decoupled, 12, 40.0, 0.707),
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
    if (c.args.rope != MlaRope::None) rope = RopeTable(c.seq_len, c.args.rope_dim(), kRopeTheta);
  }
};

void write_inputs(const std::string& path) {
  using namespace oracle;
  H5::H5File file(path, H5F_ACC_TRUNC);
  file.createGroup("/mla");
  for (const auto& c : layer_cases()) {
    H5::Group g = file.createGroup("/mla/" + c.name);
    write_mla_args(g, c.args);
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
    ASSERT_EQ(shape, torch.shape) << what;
    EXPECT_LE(oracle::relative_error(ours, torch.data), kTolerance) << what;
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

  static inline std::string out_path_, failure_;
};

TEST_F(MlaOracle, Decoupled) { check_layer(layer_cases()[0]); }
TEST_F(MlaOracle, DecoupledDirectWq) { check_layer(layer_cases()[1]); }
TEST_F(MlaOracle, NoRope) { check_layer(layer_cases()[2]); }
TEST_F(MlaOracle, FullRope) { check_layer(layer_cases()[3]); }
TEST_F(MlaOracle, YarnScale) { check_layer(layer_cases()[4]); }

}  // namespace
}  // namespace dslab
