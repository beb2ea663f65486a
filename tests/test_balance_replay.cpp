// `dslab sim balance replay`: captured router logits [B, N, E] fed through the
// auxiliary-loss-free controllers (Eq. (24)).
//
// On skewed synthetic logits: "none" equals MaxVio computed directly with the
// reference gate (route_logits, expert_load, max_violation) batch by batch and
// over all batches; the sign controller lowers MaxVio; the command reads the
// HDF5 layout the trainer writes (/captured/<name>) and rejects bad input
// with exit status 2, naming what was wrong.
#include <gtest/gtest.h>
#include <omp.h>

#include <H5Cpp.h>

#include <fstream>
#include <numeric>
#include <string>

#include <nlohmann/json.hpp>

#include <xtensor/xview.hpp>

#include "simulators/balance/replay.hpp"
#include "tests/test_support.hpp"

namespace dslab::balance {
namespace {

constexpr int kBatches = 40, kTokens = 128, kExperts = 8, kTopk = 2;

// Expert e's logit carries a skew 1.5 (E - 1 - e)/(E - 1) on top of N(0, 1):
// left alone, the low experts take most tokens.
Tensor3<float> skewed_logits() {
  Tensor3<float> z({size_t(kBatches), size_t(kTokens), size_t(kExperts)});
  Rng rng(7);
  for (int b = 0; b < kBatches; ++b)
    for (int t = 0; t < kTokens; ++t)
      for (int e = 0; e < kExperts; ++e)
        z(b, t, e) = float(1.5 * (kExperts - 1 - e) / (kExperts - 1) + rng.normal());
  return z;
}

ReplayGate gate() {
  ReplayGate g;
  g.topk = kTopk;
  g.score_func = ScoreFunc::Sigmoid;
  return g;
}

// MaxVio of each batch and over all batches, straight from the reference gate.
struct Direct {
  std::vector<double> maxvio_batch, load;
};
Direct direct_maxvio(const Tensor3<float>& z) {
  MoeArgs a;
  a.n_routed_experts = kExperts;
  a.n_activated_experts = kTopk;
  a.score_func = ScoreFunc::Sigmoid;
  Direct d;
  d.load.assign(kExperts, 0.0);
  for (int b = 0; b < kBatches; ++b) {
    Tensor2<float> batch = xt::view(z, b, xt::all(), xt::all());
    Routing<float> r;
    route_logits(r, batch, Tensor1<float>(), a);
    const std::vector<double> load = expert_load(r);
    d.maxvio_batch.push_back(max_violation(load));
    for (int e = 0; e < kExperts; ++e) d.load[e] += load[e];
  }
  return d;
}

double tail_mean(const std::vector<double>& v) {
  const size_t from = v.size() - v.size() / 4;
  return std::accumulate(v.begin() + from, v.end(), 0.0) / double(v.size() - from);
}

TEST(BalanceReplay, NoneEqualsTheReferenceGatesMaxVio) {
  omp_set_num_threads(1);
  const Tensor3<float> z = skewed_logits();
  const ReplayReport rep = replay(z, gate(), Controller{});
  const Direct d = direct_maxvio(z);
  EXPECT_EQ(rep.maxvio_batch, d.maxvio_batch);
  EXPECT_EQ(rep.load, d.load);
  EXPECT_EQ(rep.load_final, d.load);
  EXPECT_EQ(rep.maxvio_global, max_violation(d.load));
  EXPECT_DOUBLE_EQ(std::accumulate(rep.load.begin(), rep.load.end(), 0.0), double(kBatches) * kTokens * kTopk);
  EXPECT_GT(rep.maxvio_global, 0.5);  // the skew is there to be removed
}

TEST(BalanceReplay, SignControllerLowersMaxVio) {
  omp_set_num_threads(1);
  const Tensor3<float> z = skewed_logits();
  const ReplayReport none = replay(z, gate(), Controller{});
  for (BiasUpdate rule : {BiasUpdate::Sign, BiasUpdate::Proportional}) {
    const ReplayReport rep = replay(z, gate(), Controller{true, rule, 0.05});
    EXPECT_LT(rep.maxvio_global, 0.5 * none.maxvio_global) << int(rule);
    EXPECT_LT(rep.maxvio_global_final, 0.5 * none.maxvio_global) << int(rule);
    EXPECT_LT(tail_mean(rep.maxvio_batch), 0.5 * tail_mean(none.maxvio_batch)) << int(rule);
    // Eq. (24) raises the under-loaded experts: the least popular ends with the largest bias.
    EXPECT_GT(rep.bias[kExperts - 1], rep.bias[0]) << int(rule);
  }
}

TEST(BalanceReplay, RejectsGatesTheLogitsCannotHave) {
  ReplayGate g = gate();
  g.topk = kExperts + 1;
  EXPECT_THROW(validate(g, kExperts), std::invalid_argument);
  g = gate();
  g.groups = 3;
  EXPECT_THROW(validate(g, kExperts), std::invalid_argument);
  g.groups = 4;
  g.limited_groups = 5;
  EXPECT_THROW(validate(g, kExperts), std::invalid_argument);
  g.limited_groups = 1;
  g.topk = 3;  // one kept group of 2 experts
  EXPECT_THROW(validate(g, kExperts), std::invalid_argument);
  EXPECT_THROW(validate(Controller{true, BiasUpdate::Sign, 0.0}), std::invalid_argument);
}

// ---------------------------------------------------------------------------
// The command, on an HDF5 file laid out as the trainer writes it.
// ---------------------------------------------------------------------------

void write_h5(const std::string& path, const std::string& name, const std::vector<hsize_t>& dims,
              const float* data) {
  H5::H5File f(path, H5F_ACC_TRUNC);
  H5::Group g = f.createGroup("captured");
  g.createDataSet(name, H5::PredType::IEEE_F32LE, H5::DataSpace(int(dims.size()), dims.data()))
      .write(data, H5::PredType::NATIVE_FLOAT);
}

const std::string kName = "layers.1.ffn.router_logits";

std::string replay_args(const std::string& file) {
  return "sim balance replay --logits " + file + " --dataset " + kName + " --topk 2 --score-func sigmoid";
}

TEST(BalanceReplayCli, ReplaysCapturedLogits) {
  const std::string dir = test::temp_dir("balance_replay_cli");
  const Tensor3<float> z = skewed_logits();
  write_h5(dir + "/run.h5", kName, {kBatches, kTokens, kExperts}, z.data());
  std::string log;
  const std::string out = dir + "/replay.json";
  ASSERT_EQ(test::run_dslab(replay_args(dir + "/run.h5") + " --rule sign,proportional --gamma 0.01,0.05 --json " +
                                out, &log), 0)
      << log;
  std::ifstream in(out);
  const auto doc = nlohmann::json::parse(in);
  ASSERT_EQ(doc["controllers"].size(), 5u);  // none, then 2 rules x 2 rates
  const auto& none = doc["controllers"][0];
  EXPECT_EQ(none["name"], "none");
  const Direct d = direct_maxvio(z);
  EXPECT_EQ(none["maxvio_batch"].get<std::vector<double>>(), d.maxvio_batch);
  EXPECT_EQ(none["maxvio_global"].get<double>(), max_violation(d.load));
  EXPECT_EQ(doc["load_before"].get<std::vector<double>>(), d.load);
  for (size_t i = 1; i < doc["controllers"].size(); ++i) {
    const auto& c = doc["controllers"][i];
    EXPECT_LT(c["maxvio_global"].get<double>(), none["maxvio_global"].get<double>()) << c["name"];
    EXPECT_EQ(c["load"].size(), size_t(kExperts));
    EXPECT_EQ(c["load_final"].size(), size_t(kExperts));
  }
  EXPECT_EQ(doc["controllers"][1]["name"], "sign gamma=0.01");
}

TEST(BalanceReplayCli, BadInputExitsTwoNamingWhatWasWrong) {
  const std::string dir = test::temp_dir("balance_replay_bad");
  const Tensor3<float> z = skewed_logits();
  write_h5(dir + "/run.h5", kName, {kBatches, kTokens, kExperts}, z.data());
  write_h5(dir + "/rank2.h5", kName, {hsize_t(kBatches) * kTokens, kExperts}, z.data());
  std::ofstream(dir + "/text.h5") << "not hdf5\n";
  const std::string good = dir + "/run.h5";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {replay_args(dir + "/missing.h5"), "missing.h5"},
      {replay_args(dir + "/text.h5"), "not an HDF5 file"},
      {"sim balance replay --logits " + good + " --dataset layers.0.ffn.router_logits --topk 2 --score-func sigmoid",
       "layers.0.ffn.router_logits"},
      {replay_args(dir + "/rank2.h5"), "rank 2"},
      {"sim balance replay --logits " + good + " --dataset " + kName + " --topk 9 --score-func sigmoid", "--topk"},
      {"sim balance replay --logits " + good + " --dataset " + kName + " --topk 2 --score-func relu", "score_func"},
      {replay_args(good) + " --groups 3", "--groups"},
      {replay_args(good) + " --rule momentum", "momentum"},
      {replay_args(good) + " --gamma -1", "--gamma"},
  };
  for (const auto& [args, what] : cases) {
    std::string log;
    EXPECT_EQ(test::run_dslab(args + " --json " + dir + "/x.json", &log), 2) << args;
    EXPECT_NE(log.find(what), std::string::npos) << args << ": " << log;
  }
}

}  // namespace
}  // namespace dslab::balance
