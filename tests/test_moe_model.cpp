// DeepSeekMoE inside the transformer and the trainer (review Sec. 2.2):
// every parameter of a model with MoE layers and balance losses against finite
// differences; the objective is the sum of its terms; the auxiliary-loss-free
// bias moves by Eq. (24) after each step and never through AdamW; the balance
// metrics follow their formulas; resume and thread count leave every number
// bitwise the same; captured router logits reproduce the routing; config
// errors name the keys.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "experiments/config.hpp"
#include "experiments/results.hpp"
#include "reference/moe.hpp"
#include "reference/trainer.hpp"
#include "tests/model_gradcheck.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Two layers, the first dense (n_dense_layers = 1), the second MoE.
ModelArgs small_moe_model() {
  ModelArgs a;
  a.vocab_size = 11;
  a.dim = 8;
  a.n_layers = 2;
  a.n_heads = 2;
  a.n_kv_heads = 2;
  a.inter_dim = 12;
  a.max_seq_len = 8;
  a.init_std = 0.4;
  a.moe.n_routed_experts = 4;
  a.moe.n_activated_experts = 2;
  a.moe.n_shared_experts = 1;
  a.moe.moe_inter_dim = 6;
  a.n_dense_layers = 1;
  return a;
}

struct Tokens {
  std::vector<int> inputs, targets;
  int batch = 2, seq_len = 5;
  explicit Tokens(int vocab) {
    Rng rng(8);
    for (int n = 0; n < batch * seq_len; ++n) {
      inputs.push_back(int(rng.below(vocab)));
      targets.push_back(int(rng.below(vocab)));
    }
  }
};

// Every coordinate of every parameter, to 1e-8 of the tensor's largest
// gradient component (as test_gradcheck's whole-model check). The selection
// is piecewise constant: these seeds keep every top-K choice at least a step
// h away from a tie, so the numeric derivative sees the same experts.
void expect_model_gradients(const ModelArgs& args) {
  omp_set_num_threads(1);
  const Tokens t(args.vocab_size);
  Transformer<double> model(args);
  model.init_weights(9);
  Rng rng(10);
  test::randomize_gains(model, rng);
  auto loss = [&] { return double(model.forward(t.inputs, t.targets, t.batch, t.seq_len)); };
  test::expect_parameter_gradients(model, loss, 1e-8);
}

TEST(MoeModel, GradientsSoftmaxWithExpertAndSequenceLosses) {
  ModelArgs a = small_moe_model();
  a.balance.aux_alpha = 0.3;
  a.balance.seq_aux_alpha = 0.2;
  expect_model_gradients(a);
}

TEST(MoeModel, GradientsSigmoidGroupsWithDeviceAndCommunicationLosses) {
  ModelArgs a = small_moe_model();
  a.moe.n_routed_experts = 6;
  a.moe.n_expert_groups = 3;
  a.moe.n_limited_groups = 2;
  a.moe.score_func = ScoreFunc::Sigmoid;
  a.moe.route_scale = 2.5;
  a.balance.device_alpha = 0.3;
  a.balance.comm_alpha = 0.2;
  a.balance.n_devices = 3;
  a.balance.max_devices_per_token = 2;
  expect_model_gradients(a);
}

// V3's MTP module holds an MoE block: its experts, gate and balance losses
// join the objective, its bias is state like the main layers' biases.
TEST(MoeModel, GradientsWithAnMtpModuleOfMoeBlock) {
  ModelArgs a = small_moe_model();
  a.balance.aux_alpha = 0.3;
  a.balance.seq_aux_alpha = 0.2;
  a.balance.bias_update = BiasUpdate::Sign;
  a.mtp.depth = 1;
  a.mtp.lambda = 0.3;
  expect_model_gradients(a);
  Transformer<float> model(a);
  std::vector<std::string> buffers;
  for (const auto& b : model.params.buffers()) buffers.push_back(b.name);
  EXPECT_EQ(buffers, (std::vector<std::string>{"layers.1.ffn.gate.bias", "mtp.1.ffn.gate.bias"}));
}

TEST(MoeModel, ObjectiveIsTheSumOfItsTermsAndEachLossIsItsOwnFunction) {
  ModelArgs a = small_moe_model();
  a.balance.aux_alpha = 0.3;
  a.balance.seq_aux_alpha = 0.2;
  const Tokens t(a.vocab_size);
  Transformer<double> model(a);
  model.init_weights(3);
  const double total = model.forward(t.inputs, t.targets, t.batch, t.seq_len);
  const auto parts = model.loss_parts();
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_DOUBLE_EQ(total, parts.at("main") + parts.at("aux") + parts.at("seq_aux"));
  const Routing<double>& r = *model.routing(1);
  EXPECT_DOUBLE_EQ(parts.at("aux"), expert_balance_loss<double>(r, 0.3, nullptr));
  EXPECT_DOUBLE_EQ(parts.at("seq_aux"), sequence_balance_loss<double>(r, t.seq_len, 0.2, nullptr));
  EXPECT_EQ(model.routing(0), nullptr) << "layer 0 is dense";
}

// The parameter names of DeepSeek's checkpoints; the bias is state, not a parameter.
TEST(MoeModel, NamesFollowDeepSeekAndTheBiasIsNotTrained) {
  ModelArgs a = small_moe_model();
  a.balance.bias_update = BiasUpdate::Sign;
  Transformer<float> model(a);
  std::vector<std::string> names;
  for (const auto& p : model.params.refs()) names.push_back(p.name);
  EXPECT_THAT(names, ::testing::Contains("layers.0.ffn.w1.weight"));
  EXPECT_THAT(names, ::testing::Contains("layers.1.ffn.gate.weight"));
  EXPECT_THAT(names, ::testing::Contains("layers.1.ffn.experts.3.w2.weight"));
  EXPECT_THAT(names, ::testing::Contains("layers.1.ffn.shared_experts.w3.weight"));
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("layers.1.ffn.w1.weight")));
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("layers.1.ffn.gate.bias")));
  const auto buffers = model.params.buffers();
  ASSERT_EQ(buffers.size(), 1u);
  EXPECT_EQ(buffers[0].name, "layers.1.ffn.gate.bias");
}

class MoeTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::temp_dir(std::string("moe_model_") +
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    corpus = ByteCorpus::from_file(test::write_text_corpus(dir, 1 << 14), 0.1);
    model = small_moe_model();
    model.vocab_size = 256;
    model.dim = 16;
    model.n_heads = 2;
    model.n_kv_heads = 1;
    model.max_seq_len = 16;
    model.init_std = 0.02;
    model.moe.n_routed_experts = 8;
    model.moe.n_activated_experts = 2;
    model.balance.aux_alpha = 0.01;
    model.balance.bias_update = BiasUpdate::Sign;
    model.balance.bias_gamma = 0.01;
    model.balance.n_devices = 2;
    train.steps = 8;
    train.batch_size = 4;
    train.seq_len = 16;
    train.warmup_steps = 2;
    train.eval_every = 4;
    train.eval_batches = 2;
    train.seed = 5;
  }
  std::unique_ptr<Trainer> trainer() { return std::make_unique<Trainer>(model, train, corpus); }
  std::string dir;
  ByteCorpus corpus;
  ModelArgs model;
  TrainArgs train;
};

std::vector<double> column_at(const Metrics& m, const std::string& prefix, int n, size_t step) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(m.at(prefix + std::to_string(i)).at(step));
  return v;
}

// b_i += gamma sign(mean load - load_i) from the batch's load; AdamW (with its
// weight decay) never touches the bias.
TEST_F(MoeTraining, BiasMovesByEquation24AfterEachStep) {
  auto t = trainer();
  const int E = model.moe.n_routed_experts;
  std::vector<float> bias(E, 0.0f);
  for (size_t s = 0; s < 3; ++s) {
    t->train_step();
    const std::vector<double> load = column_at(t->metrics, "layers.1.load.", E, s);
    const double mean = std::accumulate(load.begin(), load.end(), 0.0) / E;
    for (int e = 0; e < E; ++e) {
      const double gap = mean - load[e];
      bias[e] += float(model.balance.bias_gamma * double((gap > 0) - (gap < 0)));
      EXPECT_EQ(t->model.params.layers[1].moe()->bias(e), bias[e]) << "step " << s << " expert " << e;
    }
  }
}

// MaxVio = (max load - mean) / mean; f_i = E / (K T) load_i; P sums to 1;
// device loads sum the experts placed on them.
TEST_F(MoeTraining, BalanceMetricsFollowTheirFormulas) {
  auto t = trainer();
  t->run(nullptr);
  const Metrics& m = t->metrics;
  const int E = model.moe.n_routed_experts, K = model.moe.n_activated_experts;
  const double T = double(train.batch_size) * train.seq_len;
  for (size_t s = 0; s < size_t(train.steps); ++s) {
    const auto load = column_at(m, "layers.1.load.", E, s);
    const auto f = column_at(m, "layers.1.f.", E, s);
    const auto P = column_at(m, "layers.1.P.", E, s);
    const auto dev = column_at(m, "layers.1.device_load.", 2, s);
    const double mean = std::accumulate(load.begin(), load.end(), 0.0) / E;
    EXPECT_DOUBLE_EQ(mean, T * K / E);
    EXPECT_DOUBLE_EQ(m.at("layers.1.maxvio").at(s), (*std::max_element(load.begin(), load.end()) - mean) / mean);
    EXPECT_DOUBLE_EQ(m.at("maxvio_batch").at(s), m.at("layers.1.maxvio").at(s));
    for (int e = 0; e < E; ++e) EXPECT_DOUBLE_EQ(f[e], E / (K * T) * load[e]);
    EXPECT_NEAR(std::accumulate(P.begin(), P.end(), 0.0), 1.0, 1e-6);
    EXPECT_DOUBLE_EQ(dev[0], load[0] + load[1] + load[2] + load[3]);
    EXPECT_DOUBLE_EQ(dev[1], load[4] + load[5] + load[6] + load[7]);
  }
  EXPECT_EQ(m.at("loss_aux").size(), size_t(train.steps));
  EXPECT_EQ(m.at("val_maxvio_global").size(), m.at("val_loss").size());
}

void expect_bitwise_same(const Metrics& a, const Metrics& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, column] : a) {
    if (name == "tokens_per_second" || name == "step_seconds" || name == "peak_rss_mib") continue;  // machine state
    const auto& other = b.at(name);
    ASSERT_EQ(other.size(), column.size()) << name;
    EXPECT_EQ(std::memcmp(other.data(), column.data(), column.size() * sizeof(double)), 0) << name;
  }
}

void expect_same_state(Transformer<float>& a, Transformer<float>& b) {
  auto ra = a.params.refs(), rb = b.params.refs();
  for (auto& x : a.params.buffers()) ra.push_back(x);
  for (auto& x : b.params.buffers()) rb.push_back(x);
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i)
    EXPECT_EQ(std::memcmp(ra[i].data, rb[i].data, ra[i].size() * sizeof(float)), 0) << ra[i].name;
}

TEST_F(MoeTraining, ResumeFromACheckpointIsBitwiseExact) {
  auto straight = trainer();
  straight->run(nullptr);
  auto first = trainer();
  first->run([](const StepReport& r) { return r.step < 5; });
  const std::string path = dir + "/run.ckpt.h5", config = "[model]\nn_routed_experts = 8\n";
  RunInfo info;
  info.config_text = config;
  write_checkpoint(path, info, *first);
  first.reset();
  auto resumed = trainer();
  read_checkpoint(path, config, *resumed);
  const auto& bias = resumed->model.params.layers[1].moe()->bias;
  EXPECT_TRUE(std::any_of(bias.begin(), bias.end(), [](float b) { return b != 0; })) << "the bias came back";
  resumed->run(nullptr);
  expect_bitwise_same(straight->metrics, resumed->metrics);
  expect_same_state(straight->model, resumed->model);
}

TEST_F(MoeTraining, SameNumbersOnOneAndTwoThreads) {
  omp_set_num_threads(1);
  auto one = trainer();
  one->run(nullptr);
  omp_set_num_threads(2);
  auto two = trainer();
  two->run(nullptr);
  expect_bitwise_same(one->metrics, two->metrics);
  expect_same_state(one->model, two->model);
}

// The captured logits [batches, N, E], routed by the reference gate with the
// final bias, choose the experts the model chose on the same window.
TEST_F(MoeTraining, CapturedRouterLogitsReproduceTheRouting) {
  train.capture = true;
  auto t = trainer();
  t->run(nullptr);
  const Captured captured = capture_tensors(*t);
  ASSERT_EQ(captured.count("layers.1.ffn.router_logits"), 1u);
  const CapturedTensor& c = captured.at("layers.1.ffn.router_logits");
  const size_t N = size_t(train.batch_size) * train.seq_len, E = model.moe.n_routed_experts;
  ASSERT_EQ(c.shape, (std::vector<size_t>{size_t(train.eval_batches), N, E}));
  Tensor2<float> last = xt::zeros<float>({N, E});
  std::copy(c.data.end() - N * E, c.data.end(), last.begin());  // the last window: the model's last forward
  Routing<float> r;
  route_logits(r, last, t->model.params.layers[1].moe()->bias, model.moe_args());
  EXPECT_EQ(r.indices, t->model.routing(1)->indices);

  const std::string path = dir + "/run.h5";
  RunInfo info;
  info.config_text = "[model]\n";
  write_result(path, info, *t, captured);
  EXPECT_TRUE(result_complete(path));
}

// `dslab info` counts what the model holds: parameters plus the gate biases,
// MTP modules included.
TEST(MoeModel, InfoCountsTheParametersTheModelHas) {
  const std::string dir = test::temp_dir("moe_info");
  const std::string moe = "n_routed_experts = 6\nn_activated_experts = 2\nn_shared_experts = 2\n"
                          "moe_inter_dim = 16\nn_dense_layers = 1\nscore_func = \"sigmoid\"\n";
  const std::vector<std::string> variants = {
      moe, moe + "[balance]\nbias_update = \"sign\"\n[mtp]\ndepth = 2\n", "[mtp]\ndepth = 1\n"};
  for (const std::string& variant : variants) {
    const std::string config = dir + "/model.toml";
    std::ofstream(config) << "[model]\ndim = 32\nn_layers = 3\nn_heads = 4\nn_kv_heads = 2\ninter_dim = 48\n" +
                                 variant;
    std::string output;
    ASSERT_EQ(test::run_dslab("info " + config + " --json", &output), 0) << output;
    const RunConfig cfg = parse_run_config_text(test::read_file(config));
    Transformer<float> model(cfg.model);
    size_t expected = model.num_parameters();
    for (const auto& b : model.params.buffers()) expected += b.size();
    EXPECT_THAT(output, HasSubstr("\"params_total\": " + std::to_string(expected))) << variant;
  }
}

std::string config_error(const std::string& text) {
  try {
    parse_run_config_text(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for\n" << text;
  return "";
}

TEST(MoeConfig, ErrorsNameTheKeysAndWhatIsAllowed) {
  EXPECT_THAT(config_error("[balance]\naux_alpha = 0.01\n"), HasSubstr("model.n_routed_experts > 0"));
  EXPECT_THAT(config_error("[model]\nn_routed_experts = 4\nn_activated_experts = 5\n"),
              HasSubstr("model.n_activated_experts = 5 must be <= model.n_routed_experts = 4"));
  EXPECT_THAT(config_error("[model]\nn_routed_experts = 6\nn_expert_groups = 4\n"),
              HasSubstr("model.n_expert_groups = 4 must divide"));
  EXPECT_THAT(config_error("[model]\nn_routed_experts = 8\nn_activated_experts = 4\n"
                           "n_expert_groups = 4\nn_limited_groups = 1\n"),
              HasSubstr("exceeds the 2 experts"));
  EXPECT_THAT(config_error("[model]\nn_layers = 2\nn_routed_experts = 4\nn_dense_layers = 2\n"),
              HasSubstr("leaves no MoE layer"));
  EXPECT_THAT(config_error("[model]\nn_routed_experts = 4\n[balance]\nbias_update = \"up\"\n"),
              HasSubstr("balance.bias_update"));
  EXPECT_THAT(config_error("[model]\nn_routed_experts = 4\n[balance]\nn_devices = 8\n"),
              HasSubstr("balance.n_devices = 8 must be <= model.n_routed_experts = 4"));
}

TEST(MoeConfig, BadKeyExitsTwoAndWritesNothing) {
  const std::string dir = test::temp_dir("moe_config_cli");
  const std::string out = dir + "/run.h5";
  std::string output;
  const int status = test::run_dslab("train " + std::string(DSLAB_SOURCE_DIR) +
                                         "/experiments/configs/tiny.toml --set model.n_routed_experts=4 "
                                         "--set model.score_func=relu --out " + out,
                                     &output);
  EXPECT_EQ(status, 2);
  EXPECT_THAT(output, HasSubstr("model.score_func"));
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace dslab
