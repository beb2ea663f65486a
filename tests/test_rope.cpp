// RoPE frequencies and YaRN (reference/rope.hpp, MlaArgs in reference/mla.hpp)
// against DeepSeek-V3's inference/model.py.
//
// The published formula is written again below, line by line from model.py's
// precompute_freqs_cis and MLA.__init__, in double, and evaluated for V3's own
// settings (qk_rope_head_dim 64, rope_theta 10000, rope_factor 40,
// original_seq_len 4096, beta_fast 32, beta_slow 1, mscale 1, max_seq_len
// 4096 * 4 = 16384). Both sides evaluate the same expressions in double, but
// the compiler may fuse a*b + c*d differently, so they agree to a few ulps: the
// bound is 1e-15 relative. A wrong ramp end, clamp or blend moves a frequency
// by a factor up to rope_factor.
//
// The PyTorch oracle, tests/oracle/yarn_oracle.py, writes the same lines in
// torch, in float64 (to 1e-15 here) and in model.py's own float32 (to 1e-6:
// float32 rounding of the frequencies).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference/mla.hpp"
#include "reference/rope.hpp"
#include "reference/transformer.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

constexpr double kTolerance = 1e-15;

// The settings of model.py's ModelArgs defaults and V3's config.
struct V3 {
  static constexpr int qk_nope_head_dim = 128, qk_rope_head_dim = 64;
  static constexpr double rope_theta = 10000, rope_factor = 40, mscale = 1;
  static constexpr int original_seq_len = 4096, max_seq_len = 4096 * 4;
  static constexpr double beta_fast = 32, beta_slow = 1;
};

MlaArgs v3_args() {
  MlaArgs a;
  a.dim = 7168;
  a.n_heads = 128;
  a.q_lora_rank = 1536;
  a.kv_lora_rank = 512;
  a.qk_nope_head_dim = V3::qk_nope_head_dim;
  a.qk_rope_head_dim = V3::qk_rope_head_dim;
  a.v_head_dim = 128;
  a.rope_factor = V3::rope_factor;
  a.mscale = V3::mscale;
  a.max_seq_len = V3::max_seq_len;
  a.original_seq_len = V3::original_seq_len;
  a.beta_fast = V3::beta_fast;
  a.beta_slow = V3::beta_slow;
  return a;
}

// model.py precompute_freqs_cis, before the outer product with t, in double.
std::vector<double> model_py_freqs(int dim, double base, double factor, int seqlen,
                                   int original_seq_len, double beta_fast, double beta_slow) {
  auto find_correction_dim = [&](double num_rotations, int max_seq_len) {
    return dim * std::log(max_seq_len / (num_rotations * 2 * std::numbers::pi)) /
           (2 * std::log(base));
  };
  double low = std::floor(find_correction_dim(beta_fast, original_seq_len));
  double high = std::ceil(find_correction_dim(beta_slow, original_seq_len));
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;  // linear_ramp_factor
  std::vector<double> freqs(dim / 2);
  for (int j = 0; j < dim / 2; ++j) {
    double f = 1.0 / std::pow(base, double(2 * j) / dim);
    if (seqlen > original_seq_len) {
      const double ramp = std::clamp((j - low) / (high - low), 0.0, 1.0);
      const double smooth = 1 - ramp;
      f = f / factor * (1 - smooth) + f * smooth;
    }
    freqs[j] = f;
  }
  return freqs;
}

// model.py MLA.__init__'s softmax_scale.
double model_py_softmax_scale(int qk_head_dim, double mscale_arg, double factor, int max_seq_len,
                              int original_seq_len) {
  double softmax_scale = std::pow(qk_head_dim, -0.5);
  if (max_seq_len > original_seq_len) {
    const double mscale = 0.1 * mscale_arg * std::log(factor) + 1.0;
    softmax_scale = softmax_scale * mscale * mscale;
  }
  return softmax_scale;
}

double rel(double ours, double ref) { return std::abs(ours - ref) / std::abs(ref); }

TEST(Yarn, V3FrequenciesMatchModelPy) {
  const std::vector<double> ref =
      model_py_freqs(V3::qk_rope_head_dim, V3::rope_theta, V3::rope_factor, V3::max_seq_len,
                     V3::original_seq_len, V3::beta_fast, V3::beta_slow);
  const Yarn y{V3::original_seq_len, V3::rope_factor, V3::beta_fast, V3::beta_slow};
  const std::vector<double> ours = yarn_frequencies(V3::qk_rope_head_dim, V3::rope_theta, y);
  const RopeTable table = v3_args().rope_table(8, V3::rope_theta);  // what MLA rotates with
  ASSERT_EQ(ours.size(), 32u);
  ASSERT_EQ(table.freq.size(), 32u);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_LE(rel(ours[i], ref[i]), kTolerance) << "pair " << i;
    EXPECT_EQ(table.freq[i], ours[i]) << "pair " << i;
  }
}

// The shape of V3's correction: dim(32 turns) = 10.47, dim(1 turn) = 22.51 over
// 4096 tokens, so pairs 0-10 keep theta^(-2i/64), pairs 23-31 are divided by 40
// exactly, and pairs 11-22 lie strictly between.
TEST(Yarn, V3CorrectionRangeAndRamp) {
  const Yarn y{V3::original_seq_len, V3::rope_factor, V3::beta_fast, V3::beta_slow};
  EXPECT_NEAR(yarn_correction_dim(32, 64, 10000, 4096), 10.47224081031802, 1e-13);
  EXPECT_NEAR(yarn_correction_dim(1, 64, 10000, 4096), 22.51344063687727, 1e-13);
  EXPECT_EQ(yarn_correction_range(64, 10000, y), std::make_pair(10, 23));
  const std::vector<double> plain = rope_frequencies(64, 10000), f = yarn_frequencies(64, 10000, y);
  for (int i = 0; i < 32; ++i) {
    if (i <= 10)
      EXPECT_EQ(f[i], plain[i]) << i;
    else if (i >= 23)
      EXPECT_EQ(f[i], plain[i] / 40) << i;
    else
      EXPECT_TRUE(f[i] < plain[i] && f[i] > plain[i] / 40) << i;
  }
}

// cos and sin of t * freq_i at positions up to V3's max_seq_len - 1. The angle
// carries the frequency's relative error times t: abs error below 1e-11.
TEST(Yarn, V3TableHoldsTheCorrectedAngles) {
  const std::vector<double> ref = model_py_freqs(64, 10000, 40, 16384, 4096, 32, 1);
  const RopeTable table = v3_args().rope_table(V3::max_seq_len, V3::rope_theta);
  ASSERT_EQ(table.d, 64);
  for (int t : {0, 1, 100, 4095, 4096, 16383})
    for (int i = 0; i < 32; ++i) {
      EXPECT_NEAR(table.cos(t, i), std::cos(t * ref[i]), 1e-11) << t << ", " << i;
      EXPECT_NEAR(table.sin(t, i), std::sin(t * ref[i]), 1e-11) << t << ", " << i;
    }
}

TEST(Yarn, V3SoftmaxScaleMatchesModelPy) {
  MlaArgs a = v3_args();
  EXPECT_LE(rel(a.softmax_scale(), model_py_softmax_scale(192, 1.0, 40, 16384, 4096)), kTolerance);
  EXPECT_LE(rel(a.softmax_scale(), std::pow(0.1 * std::log(40.0) + 1, 2) / std::sqrt(192.0)),
            kTolerance);
  a.mscale = 0.707;  // V2-Lite's
  EXPECT_LE(rel(a.softmax_scale(), model_py_softmax_scale(192, 0.707, 40, 16384, 4096)),
            kTolerance);
}

// model.py's condition is max_seq_len > original_seq_len, not rope_factor > 1:
// at or below the original context, rope_factor 40 changes nothing, bit for bit.
TEST(Yarn, OffUnlessMaxSeqLenExceedsOriginalSeqLen) {
  for (int max_seq_len : {0, 64, 4096}) {
    MlaArgs a = v3_args();
    a.max_seq_len = max_seq_len;
    EXPECT_FALSE(a.yarn()) << max_seq_len;
    EXPECT_EQ(a.softmax_scale(), 1.0 / std::sqrt(192.0)) << max_seq_len;
    const RopeTable yarn_off = a.rope_table(50, 10000), plain(50, 64, 10000);
    EXPECT_EQ(yarn_off.freq, plain.freq) << max_seq_len;
    EXPECT_TRUE(yarn_off.cos == plain.cos && yarn_off.sin == plain.sin) << max_seq_len;
  }
  MlaArgs a = v3_args();
  a.max_seq_len = 4097;
  EXPECT_TRUE(a.yarn());
  EXPECT_GT(a.softmax_scale(), 1.8 / std::sqrt(192.0));
  EXPECT_NE(a.rope_table(4, 10000).freq, rope_frequencies(64, 10000));
  // The condition reads original_seq_len too.
  a.max_seq_len = 16384;
  a.original_seq_len = 16384;
  EXPECT_FALSE(a.yarn());
}

// The transformer's MLA gets the model's max_seq_len, which decides YaRN.
TEST(Yarn, ModelArgsPassMaxSeqLenToMla) {
  ModelArgs m;
  m.attn = AttnKind::Mla;
  m.mla.rope_factor = 40;
  m.max_seq_len = 256;
  EXPECT_EQ(m.mla_args().max_seq_len, 256);
  EXPECT_FALSE(m.mla_args().yarn());
  m.max_seq_len = 16384;
  EXPECT_TRUE(m.mla_args().yarn());
}

// The clamps and the low == high branch of linear_ramp_factor (+0.001): with
// original_seq_len 2 both ends clamp to 0, so pair 0 keeps its frequency and
// every other pair is divided by rope_factor.
TEST(Yarn, DegenerateRange) {
  const Yarn y{2, 40, 32, 1};
  EXPECT_EQ(yarn_correction_range(8, 10000, y), std::make_pair(0, 0));
  const std::vector<double> plain = rope_frequencies(8, 10000), f = yarn_frequencies(8, 10000, y);
  const std::vector<double> ref = model_py_freqs(8, 10000, 40, 3, 2, 32, 1);
  EXPECT_EQ(f[0], plain[0]);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(f[i], plain[i] / 40) << i;
  for (int i = 0; i < 4; ++i) EXPECT_LE(rel(f[i], ref[i]), kTolerance) << i;
}

TEST(Yarn, ValidateNamesTheBadField) {
  auto error = [](auto edit) {
    MlaArgs a = v3_args();
    edit(a);
    try {
      a.validate();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error([](MlaArgs&) {}), "");
  EXPECT_NE(error([](MlaArgs& a) { a.original_seq_len = 0; }).find("original_seq_len"),
            std::string::npos);
  EXPECT_NE(error([](MlaArgs& a) { a.max_seq_len = -1; }).find("max_seq_len"), std::string::npos);
  EXPECT_NE(error([](MlaArgs& a) { a.beta_fast = 1; }).find("beta_fast > beta_slow"),
            std::string::npos);
  EXPECT_NE(error([](MlaArgs& a) { a.beta_slow = 0; a.beta_fast = 1; }).find("beta_slow > 0"),
            std::string::npos);
  EXPECT_NE(error([](MlaArgs& a) { a.rope_factor = 0.5; }).find("rope_factor"), std::string::npos);
}

// The PyTorch oracle: V3 (its whole table), V2-Lite's mscale, a full-RoPE
// width (192), a small head, a range clamped at both ends ([-0.16, 15.2] to
// [0, 15]), the degenerate one, and YaRN off.
struct OracleCase {
  std::string name;
  int rope_dim, qk_nope_head_dim, qk_rope_head_dim;
  double rope_factor, mscale;
  int max_seq_len, original_seq_len;
  double beta_fast, beta_slow;
  int table_len = 64;
  MlaArgs args() const {
    MlaArgs a = v3_args();
    a.qk_nope_head_dim = qk_nope_head_dim;
    a.qk_rope_head_dim = qk_rope_head_dim;
    a.rope = rope_dim == qk_rope_head_dim ? MlaRope::Decoupled : MlaRope::Full;
    a.rope_factor = rope_factor;
    a.mscale = mscale;
    a.max_seq_len = max_seq_len;
    a.original_seq_len = original_seq_len;
    a.beta_fast = beta_fast;
    a.beta_slow = beta_slow;
    return a;
  }
};

const std::vector<OracleCase>& oracle_cases() {
  static const std::vector<OracleCase> cases = {
      {"v3", 64, 128, 64, 40, 1.0, 16384, 4096, 32, 1, 16384},
      {"v2_lite_mscale", 64, 128, 64, 40, 0.707, 16384, 4096, 32, 1},
      {"full_rope_192", 192, 128, 64, 40, 1.0, 16384, 4096, 32, 1},
      {"small_head", 8, 6, 8, 16, 1.0, 1024, 256, 8, 2},
      {"clamped_both_ends", 16, 6, 16, 4, 1.0, 1 << 21, 1 << 20, 2e5, 0.004},
      {"degenerate", 8, 6, 8, 40, 1.0, 3, 2, 32, 1},
      {"off", 64, 128, 64, 40, 1.0, 4096, 4096, 32, 1},
  };
  return cases;
}

class YarnOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = test::temp_dir("yarn_oracle");
    const std::string in_path = dir + "/in.h5";
    out_path_ = dir + "/out.h5";
    {
      using oracle::write_attr;
      H5::H5File file(in_path, H5F_ACC_TRUNC);
      file.createGroup("/yarn");
      for (const auto& c : oracle_cases()) {
        H5::Group g = file.createGroup("/yarn/" + c.name);
        write_attr(g, "rope_dim", c.rope_dim);
        write_attr(g, "qk_nope_head_dim", c.qk_nope_head_dim);
        write_attr(g, "qk_rope_head_dim", c.qk_rope_head_dim);
        write_attr(g, "rope_theta", 10000.0);
        write_attr(g, "rope_factor", c.rope_factor);
        write_attr(g, "mscale", c.mscale);
        write_attr(g, "max_seq_len", c.max_seq_len);
        write_attr(g, "original_seq_len", c.original_seq_len);
        write_attr(g, "beta_fast", c.beta_fast);
        write_attr(g, "beta_slow", c.beta_slow);
        write_attr(g, "table_len", c.table_len);
      }
    }
    failure_ = oracle::run_script("yarn_oracle.py", in_path, out_path_);
  }
  void SetUp() override { ASSERT_TRUE(failure_.empty()) << failure_; }
  static inline std::string out_path_, failure_;
};

TEST_F(YarnOracle, FrequenciesTablesAndScale) {
  const H5::H5File file(out_path_, H5F_ACC_RDONLY);
  for (const auto& c : oracle_cases()) {
    SCOPED_TRACE(c.name);
    const MlaArgs a = c.args();
    a.validate();
    ASSERT_EQ(a.rope_dim(), c.rope_dim);
    const RopeTable table = a.rope_table(c.table_len, 10000.0);
    const std::string g = "/yarn/" + c.name + "/";
    const size_t half = c.rope_dim / 2;
    oracle::expect_close("freqs", table.freq.data(), {half}, oracle::read_array(file, g + "freqs"),
                         kTolerance);
    // model.py's float32 frequencies: our double ones rounded, and float32's own rounding.
    oracle::expect_close("freqs_float32", table.freq.data(), {half},
                         oracle::read_array(file, g + "freqs_float32"), 1e-6);
    // Angles up to table_len * freq: the frequency's error times t.
    const double angle_tol = 4e-16 * c.table_len;
    oracle::expect_close("cos", table.cos.data(), {size_t(c.table_len), half},
                         oracle::read_array(file, g + "cos"), angle_tol);
    oracle::expect_close("sin", table.sin.data(), {size_t(c.table_len), half},
                         oracle::read_array(file, g + "sin"), angle_tol);
    const double scale = oracle::read_array(file, g + "softmax_scale").data.at(0);
    EXPECT_LE(rel(a.softmax_scale(), scale), kTolerance);
  }
}

// The YaRN-on cases do change frequencies (else the oracle compares plain RoPE).
TEST_F(YarnOracle, CasesExerciseTheCorrection) {
  for (const auto& c : oracle_cases()) {
    const MlaArgs a = c.args();
    const bool changed = a.rope_table(1, 10000.0).freq != rope_frequencies(c.rope_dim, 10000.0);
    EXPECT_EQ(changed, c.name != "off") << c.name;
  }
}

TEST(Rope, PlainFrequencies) {
  const std::vector<double> f = rope_frequencies(16, 500.0);
  ASSERT_EQ(f.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_DOUBLE_EQ(f[i], std::pow(500.0, -i / 8.0)) << i;
  EXPECT_THROW(rope_frequencies(7, 500.0), std::invalid_argument);
  const RopeTable t(5, 16, 500.0);
  EXPECT_EQ(t.d, 16);
  EXPECT_EQ(t.freq, f);
  EXPECT_EQ(t.cos(3, 2), std::cos(3 * f[2]));
}

// rope_rotate_heads with a head stride and an offset rotates exactly the
// table.d numbers of each head at the offset, by the row's position; sign -1
// undoes it.
TEST(Rope, StridedRotation) {
  const RopeTable table(4, 4, 10000.0);
  const int seq_len = 3, n_heads = 2, stride = 7, offset = 2;
  Tensor2<double> x({size_t(2 * seq_len), size_t(n_heads * stride)});
  Rng rng(5);
  for (auto& v : x) v = rng.normal();
  const Tensor2<double> x0 = x;
  rope_rotate_heads(x, seq_len, n_heads, stride, offset, table, 1.0);
  for (size_t n = 0; n < x.shape(0); ++n)
    for (int h = 0; h < n_heads; ++h)
      for (int j = 0; j < stride; ++j) {
        const size_t col = size_t(h * stride + j);
        const int k = j - offset;
        if (k < 0 || k >= table.d) {
          EXPECT_EQ(x(n, col), x0(n, col));
          continue;
        }
        const int i = k / 2, t = int(n % seq_len);
        const double c = std::cos(t * table.freq[i]), s = std::sin(t * table.freq[i]);
        const double a = x0(n, col - k % 2), b = x0(n, col - k % 2 + 1);
        EXPECT_NEAR(x(n, col), k % 2 == 0 ? a * c - b * s : a * s + b * c, 1e-15);
      }
  rope_rotate_heads(x, seq_len, n_heads, stride, offset, table, -1.0);
  for (size_t j = 0; j < x.size(); ++j) EXPECT_NEAR(x.data()[j], x0.data()[j], 1e-15);
}

}  // namespace
}  // namespace dslab
