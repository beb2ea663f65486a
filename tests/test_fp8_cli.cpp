// `dslab sim fp8 quantize` and `dslab sim fp8 gemm`: JSON output and bad input.
#include <gtest/gtest.h>

#include <H5Cpp.h>

#include <cmath>
#include <filesystem>
#include <vector>
#include <nlohmann/json.hpp>

#include "reference/fp8.hpp"
#include "simulators/fp8/fp8_sim.hpp"
#include "tests/test_support.hpp"

using nlohmann::json;
namespace fp8 = dslab::fp8;

namespace {

json run_ok(const std::string& args, const std::string& path) {
  std::string out;
  const int rc = dslab::test::run_dslab(args + " --json " + path, &out);
  EXPECT_EQ(rc, 0) << out;
  return json::parse(dslab::test::read_file(path));
}

void expect_bad_input(const std::string& args, const std::string& mentions) {
  std::string out;
  EXPECT_EQ(dslab::test::run_dslab(args, &out), 2) << args << "\n" << out;
  EXPECT_NE(out.find(mentions), std::string::npos) << "message should mention '" << mentions << "':\n" << out;
}

TEST(SimFp8Cli, QuantizeWritesTheIssueKeys) {
  const std::string dir = dslab::test::temp_dir("sim_fp8_quantize");
  const json j = run_ok("sim fp8 quantize --format e4m3 --granularity tile --dist outliers --outlier-rate 0.02 "
                        "--outlier-scale 50 --rows 64 --cols 512 --seed 3",
                        dir + "/q.json");
  for (const char* key : {"sqnr_db", "group_sqnr_db", "normwise_rel_error", "max_rel_error", "flushed_fraction",
                          "saturated_fraction", "git_commit"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["groups"], 64 * 4);
  EXPECT_NEAR(j["sqnr_db"].get<double>(), -20 * std::log10(j["normwise_rel_error"].get<double>()), 1e-9);
  // The file holds the same numbers as the library on the same tensor.
  fp8::sim::DistConfig d;
  d.dist = fp8::sim::Distribution::Outliers;
  d.outlier_rate = 0.02;
  d.outlier_scale = 50;
  fp8::QuantConfig cfg;
  const auto r = fp8::sim::measure_quantization(fp8::sim::sample(d, 64, 512, 3), cfg);
  EXPECT_EQ(j["sqnr_db"].get<double>(), r.sqnr_db);
  EXPECT_EQ(j["flushed_fraction"].get<double>(), r.flushed_fraction);
  // No temporary files left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()), 1);
}

TEST(SimFp8Cli, QuantizeReadsAnHdf5Tensor) {
  const std::string dir = dslab::test::temp_dir("sim_fp8_hdf5");
  const dslab::Tensor2<float> x = fp8::sim::sample({}, 3 * 8, 256, 4);
  {
    H5::H5File file(dir + "/t.h5", H5F_ACC_TRUNC);
    const hsize_t dims[3] = {3, 8, 256};  // leading dimensions fold into rows
    file.createGroup("acts");
    H5::DataSet ds = file.createDataSet("acts/layer0", H5::PredType::NATIVE_FLOAT, H5::DataSpace(3, dims));
    ds.write(x.data(), H5::PredType::NATIVE_FLOAT);
  }
  const json j = run_ok("sim fp8 quantize --dist hdf5 --input " + dir + "/t.h5 --dataset acts/layer0 "
                        "--granularity mx --format e5m2",
                        dir + "/q.json");
  EXPECT_EQ(j["rows"], 24);
  EXPECT_EQ(j["cols"], 256);
  EXPECT_EQ(j["scale"], "pow2");
  fp8::QuantConfig cfg;
  cfg.format = fp8::e5m2();
  cfg.granularity = fp8::Granularity::Block1x32;
  cfg.scale_rounding = fp8::ScaleRounding::PowerOfTwo;
  EXPECT_EQ(j["sqnr_db"].get<double>(), fp8::sim::measure_quantization(x, cfg).sqnr_db);
  expect_bad_input("sim fp8 quantize --dist hdf5 --input " + dir + "/t.h5 --dataset nope --json " + dir + "/x.json",
                   "no dataset 'nope'");
  expect_bad_input("sim fp8 quantize --dist hdf5 --input " + dir + "/missing.h5 --dataset a --json " + dir +
                       "/x.json",
                   "does not exist");
}

TEST(SimFp8Cli, GemmSweepsK) {
  const std::string dir = dslab::test::temp_dir("sim_fp8_gemm");
  const json j = run_ok("sim fp8 gemm --m 16 --n 24 --k 256,512 --accum-bits 14 --promote-every 128 --seed 2",
                        dir + "/g.json");
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][1]["k"], 512);
  for (const json& r : j["results"]) {
    for (const char* key : {"max_rel_error", "normwise_rel_error", "deepgemm_diff"}) {
      EXPECT_GE(r[key].get<double>(), 0.0) << key;
      EXPECT_GE(r["total"][key].get<double>(), 0.0) << key;
    }
  }
  EXPECT_EQ(j["a_granularity"], "tile");
  EXPECT_EQ(j["b_granularity"], "block");
  // With promotion every 128 products, a 14-bit accumulator loses a few
  // units of 2^-14 relative, not nothing and not more than 2^-10; the FP8
  // inputs' own quantization adds more than that.
  for (const json& r : j["results"]) {
    const double acc = r["normwise_rel_error"].get<double>();
    EXPECT_GT(acc, std::ldexp(1.0, -18)) << "K " << r["k"];
    EXPECT_LT(acc, std::ldexp(1.0, -10)) << "K " << r["k"];
    EXPECT_GT(r["total"]["normwise_rel_error"].get<double>(), 2 * acc) << "K " << r["k"];
  }
}

// The accumulator model: without promotion a 14-bit accumulator's error grows
// with K (positive terms: the running sum grows, the bits kept do not);
// promotion every N_C = 128 products keeps it flat and far smaller at large
// K; a 23-bit (FP32) accumulator is orders of magnitude more exact.
TEST(SimFp8Cli, GemmAccumulatorErrorGrowsWithKWithoutPromotion) {
  const std::string dir = dslab::test::temp_dir("sim_fp8_gemm_k");
  auto errors = [&](const std::string& opts) {
    const json j = run_ok("sim fp8 gemm --m 16 --n 24 --k 256,1024,4096 --dist uniform "
                          "--a-granularity row --b-granularity row --seed 2 " + opts,
                          dir + "/g.json");
    std::vector<double> e;
    for (const json& r : j["results"]) e.push_back(r["normwise_rel_error"].get<double>());
    EXPECT_EQ(e.size(), 3u) << opts;
    return e;
  };
  const auto none = errors("--accum-bits 14 --promote-every 0");
  const auto promoted = errors("--accum-bits 14 --promote-every 128");
  const auto fp32 = errors("--accum-bits 23 --promote-every 0");
  ASSERT_EQ(none.size(), 3u);
  ASSERT_EQ(promoted.size(), 3u);
  ASSERT_EQ(fp32.size(), 3u);
  EXPECT_GT(none[1], 3 * none[0]);
  EXPECT_GT(none[2], 3 * none[1]);
  EXPECT_LT(promoted[2], 2 * promoted[0]);
  EXPECT_GT(promoted[0], 0.0);
  EXPECT_LT(promoted[2], none[2] / 20);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_LT(fp32[i], none[i] / 100) << "K index " << i;
    EXPECT_GT(fp32[i], 0.0) << "K index " << i;
  }
}

TEST(SimFp8Cli, BadInputExitsWithTwo) {
  const std::string dir = dslab::test::temp_dir("sim_fp8_bad");
  const std::string out = " --json " + dir + "/x.json";
  expect_bad_input("sim fp8 quantize --format e9m9" + out, "allowed");
  expect_bad_input("sim fp8 quantize --granularity 2x2" + out, "allowed: tensor, row, tile");
  expect_bad_input("sim fp8 quantize --granularity mx --scale exact" + out, "E8M0");
  expect_bad_input("sim fp8 quantize --dist cauchy" + out, "allowed: normal");
  expect_bad_input("sim fp8 quantize --outlier-rate 0.1" + out, "only to --dist outliers");
  expect_bad_input("sim fp8 quantize --dist outliers --outlier-rate 2" + out, "outlier rate");
  expect_bad_input("sim fp8 quantize --rows 0" + out, "--rows");
  expect_bad_input("sim fp8 quantize --json /nonexistent-dir/x.json", "cannot write");
  expect_bad_input("sim fp8 gemm --promote-every 0" + out, "N_C = 0");
  expect_bad_input("sim fp8 gemm --promote-every 48 --a-granularity tensor --b-granularity tensor" + out,
                   "multiple of the products per step");
  expect_bad_input("sim fp8 gemm --alignment up" + out, "allowed: truncate, floor, nearest");
  expect_bad_input("sim fp8 gemm --k 0" + out, "--k");
  expect_bad_input("sim fp8 gemm --m abc" + out, "--m");
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.json"));
}

}  // namespace
