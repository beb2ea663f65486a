// Multi-Token Prediction (reference/mtp.hpp, Sec. 2.3, Eq. (25)-(26)) and
// speculative decoding with the MTP modules (reference/sampler.hpp).
//
// Oracles: finite differences in double (tests/finite_difference.hpp; the
// tolerance is test_gradcheck's, 1e-8 of the largest gradient component) for
// the input projection and for whole models with MTP (GQA with D = 2, MLA with
// D = 1); PyTorch autograd (tests/oracle/mtp_oracle.py, within 1e-10 as
// test_torch_oracle) for the loss, each L^k_MTP, the logits and every gradient;
// the model without MTP for lambda = 0 (bitwise); plain greedy decoding for
// speculative greedy decoding (token for token); and for the sampling rule,
// the exact output distribution of a small model, enumerated.
#include <gmock/gmock.h>
#include <nlohmann/json.hpp>
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "experiments/results.hpp"
#include "reference/mtp.hpp"
#include "reference/sampler.hpp"
#include "reference/trainer.hpp"
#include "reference/transformer.hpp"
#include "tests/model_gradcheck.hpp"
#include "tests/oracle/oracle.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

using test::gradient_error;
using ::testing::HasSubstr;

constexpr double kFdTolerance = 1e-8;      // as test_gradcheck
constexpr double kTorchTolerance = 1e-10;  // as test_torch_oracle

Tensor2<double> random_matrix(Rng& rng, size_t rows, size_t cols, double scale = 1.0) {
  Tensor2<double> t({rows, cols});
  for (auto& x : t) x = scale * rng.normal();
  return t;
}

// A small model with MTP: every weight random, RMSNorm gains away from 1.
ModelArgs small_args(const std::string& attn, int depth) {
  ModelArgs a;
  a.vocab_size = 11;
  a.dim = 8;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.inter_dim = 12;
  a.max_seq_len = 8;
  a.init_std = 0.4;
  a.attn = attn == "mla" ? AttnKind::Mla : AttnKind::Mha;
  if (attn == "mla") {
    a.n_heads = 2;
    a.mla.kv_lora_rank = 6;
    a.mla.q_lora_rank = 5;
    a.mla.qk_nope_head_dim = 4;
    a.mla.qk_rope_head_dim = 2;
    a.mla.v_head_dim = 3;
  }
  a.mtp.depth = depth;
  a.mtp.lambda = 0.7;
  return a;
}

template <class T> void randomize(Transformer<T>& model, uint64_t seed) {
  model.init_weights(seed);
  Rng rng(seed + 1);
  test::randomize_gains(model, rng);
}

struct TokenBatch {
  std::vector<int> tokens, targets;
  int batch = 2, seq_len = 6;
  TokenBatch(int vocab, uint64_t seed) {
    Rng rng(seed);
    for (int n = 0; n < batch * seq_len; ++n) {
      tokens.push_back(int(rng.below(vocab)));
      targets.push_back(int(rng.below(vocab)));
    }
  }
};

class Mtp : public ::testing::Test {
 protected:
  void SetUp() override { omp_set_num_threads(1); }  // tiny layers; same numbers on any count
};

TEST_F(Mtp, ProjectionGradcheck) {
  Rng rng(1);
  const size_t N = 5, D = 4;
  MtpProjWeights<double> w{xt::zeros<double>({D}), xt::zeros<double>({D}), random_matrix(rng, D, 2 * D)};
  for (size_t d = 0; d < D; ++d) w.enorm(d) = 1 + 0.3 * rng.normal(), w.hnorm(d) = 1 + 0.3 * rng.normal();
  Tensor2<double> e = random_matrix(rng, N, D), h = random_matrix(rng, N, D, 3.0);
  const Tensor2<double> R = random_matrix(rng, N, D);
  auto loss = [&] {
    Tensor2<double> x;
    MtpProjCache<double> c;
    mtp_proj_forward(x, c, e, h, w, 1e-6);
    double s = 0;
    for (size_t j = 0; j < x.size(); ++j) s += x.data()[j] * R.data()[j];
    return s;
  };
  Tensor2<double> x, de, dh;
  MtpProjCache<double> c;
  mtp_proj_forward(x, c, e, h, w, 1e-6);
  MtpProjWeights<double> g{xt::zeros<double>({D}), xt::zeros<double>({D}), xt::zeros<double>({D, 2 * D})};
  mtp_proj_backward(de, dh, g, R, c, w);
  EXPECT_LE(gradient_error(loss, e.data(), de.data(), e.size()), kFdTolerance) << "e";
  EXPECT_LE(gradient_error(loss, h.data(), dh.data(), h.size()), kFdTolerance) << "h";
  EXPECT_LE(gradient_error(loss, w.enorm.data(), g.enorm.data(), D), kFdTolerance) << "enorm";
  EXPECT_LE(gradient_error(loss, w.hnorm.data(), g.hnorm.data(), D), kFdTolerance) << "hnorm";
  EXPECT_LE(gradient_error(loss, w.eh_proj.data(), g.eh_proj.data(), 2 * D * D), kFdTolerance)
      << "eh_proj";
}

TEST_F(Mtp, PositionsOfEachDepth) {
  // Depth k at position i reads token i+k and predicts target i+k (= token i+k+1).
  const std::vector<int> ids = {0, 1, 2, 3, 10, 11, 12, 13};  // batch 2, seq_len 4
  EXPECT_EQ(shift_positions(ids, 2, 4, 1), (std::vector<int>{1, 2, 3, 11, 12, 13}));
  EXPECT_EQ(shift_positions(ids, 2, 4, 3), (std::vector<int>{3, 13}));
  Tensor2<double> x = xt::zeros<double>({6, 1}), y;
  for (size_t n = 0; n < 6; ++n) x(n, 0) = double(n);
  take_positions(y, x, 2, 2);  // rows 0,1 of sequence 0 (rows 0-2), rows 0,1 of sequence 1
  EXPECT_EQ(y, (Tensor2<double>{{0}, {1}, {3}, {4}}));
  Tensor2<double> dx = xt::zeros<double>({6, 1});
  take_positions_backward(dx, y, 2);
  EXPECT_EQ(dx, (Tensor2<double>{{0}, {1}, {0}, {3}, {4}, {0}}));
}

void check_every_parameter(const std::string& attn, int depth) {
  const ModelArgs a = small_args(attn, depth);
  Transformer<double> model(a);
  randomize(model, 2);
  const TokenBatch b(a.vocab_size, 3);
  auto loss = [&] { return model.forward(b.tokens, b.targets, b.batch, b.seq_len); };
  test::expect_parameter_gradients(model, loss, kFdTolerance);
  const auto params = model.params.refs();
  size_t mtp_tensors = 0;
  for (const auto& p : params) mtp_tensors += p.name.starts_with("mtp.");
  const size_t block_tensors = (params.size() - 3 - mtp_tensors) / a.n_layers;
  EXPECT_EQ(mtp_tensors, size_t(depth) * (4 + block_tensors));
}

TEST_F(Mtp, GradcheckGqaDepthTwo) { check_every_parameter("mha", 2); }
TEST_F(Mtp, GradcheckMlaDepthOne) { check_every_parameter("mla", 1); }

TEST_F(Mtp, ObjectiveIsMainPlusLambdaOverDepthTimesEachDepth) {
  const ModelArgs a = small_args("mha", 3);
  Transformer<double> model(a);
  randomize(model, 4);
  const TokenBatch b(a.vocab_size, 5);
  const double objective = model.forward(b.tokens, b.targets, b.batch, b.seq_len);
  const auto& parts = model.loss_parts();
  ASSERT_EQ(model.mtp_losses().size(), 3u);
  double sum = 0;
  for (double l : model.mtp_losses()) sum += l;
  EXPECT_DOUBLE_EQ(parts.at("mtp"), a.mtp.lambda / 3 * sum);
  EXPECT_DOUBLE_EQ(objective, parts.at("main") + parts.at("mtp"));
}

// lambda = 0: the modules run but the main model's gradients are bitwise those
// of the model without MTP (same seed: the MTP tensors come after the main ones).
TEST_F(Mtp, LambdaZeroLeavesTheMainGradientsExactly) {
  for (const std::string attn : {"mha", "mla"}) {
    ModelArgs with = small_args(attn, 2), without = small_args(attn, 0);
    with.mtp.lambda = 0;
    Transformer<double> a(with), b(without);
    randomize(a, 6);
    randomize(b, 6);
    const TokenBatch batch(with.vocab_size, 7);
    a.zero_grad();
    b.zero_grad();
    EXPECT_EQ(a.forward(batch.tokens, batch.targets, batch.batch, batch.seq_len),
              b.forward(batch.tokens, batch.targets, batch.batch, batch.seq_len));
    a.backward();
    b.backward();
    const auto ga = a.grads.refs(), gb = b.grads.refs();
    ASSERT_GT(ga.size(), gb.size());
    for (size_t i = 0; i < gb.size(); ++i) {
      ASSERT_EQ(ga[i].name, gb[i].name);
      EXPECT_TRUE(std::equal(gb[i].data, gb[i].data + gb[i].size(), ga[i].data)) << attn << " " << gb[i].name;
    }
    // With lambda > 0 the MTP loss reaches the shared head and embedding.
    a.mtp_lambda = 0.3;
    a.zero_grad();
    a.forward(batch.tokens, batch.targets, batch.batch, batch.seq_len);
    a.backward();
    const auto head = a.grads.refs()[gb.size() - 1];
    ASSERT_EQ(head.name, "head.weight");
    EXPECT_FALSE(std::equal(gb.back().data, gb.back().data + gb.back().size(), head.data)) << attn;
  }
}

// Same numbers for any thread count: a float model with MTP, big enough for
// the GEMMs to split into tiles, gives bitwise the same loss and gradients.
TEST(MtpThreads, GradientsAreBitwiseTheSameOnOneAndThreeThreads) {
  ModelArgs a = small_args("mha", 2);
  a.vocab_size = 64;
  a.dim = 32;
  a.inter_dim = 48;
  a.max_seq_len = 32;
  Rng rng(70);
  std::vector<int> tokens(4 * 32), targets(4 * 32);
  for (int& t : tokens) t = int(rng.below(64));
  for (int& t : targets) t = int(rng.below(64));
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 3}) {
    omp_set_num_threads(threads);
    Transformer<float> model(a);
    randomize(model, 71);
    model.zero_grad();
    std::vector<float> numbers = {model.forward(tokens, targets, 4, 32)};
    model.backward();
    for (const auto& g : model.grads.refs()) numbers.insert(numbers.end(), g.data, g.data + g.size());
    runs.push_back(numbers);
  }
  EXPECT_TRUE(runs[0] == runs[1]);
}

// ---------------------------------------------------------------------------
// PyTorch autograd

struct OracleCase {
  std::string name;
  ModelArgs args;
};

const std::vector<OracleCase>& oracle_cases() {
  static const std::vector<OracleCase> cases = [] {
    OracleCase gqa{"gqa_depth2", small_args("mha", 2)}, mla{"mla_depth1", small_args("mla", 1)};
    gqa.args.mtp.lambda = 0.3;
    return std::vector<OracleCase>{gqa, mla};
  }();
  return cases;
}

void write_string_attr(H5::Group& g, const std::string& name, const std::string& value) {
  const H5::StrType type(H5::PredType::C_S1, value.size());
  g.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value);
}

void write_oracle_inputs(const std::string& path) {
  using namespace oracle;
  H5::H5File file(path, H5F_ACC_TRUNC);
  file.createGroup("/model");
  for (const auto& c : oracle_cases()) {
    H5::Group g = file.createGroup("/model/" + c.name);
    const ModelArgs& a = c.args;
    write_string_attr(g, "attn", a.attn == AttnKind::Mla ? "mla" : "mha");
    for (const auto& [name, v] : std::map<std::string, int>{
             {"vocab_size", a.vocab_size}, {"dim", a.dim}, {"n_layers", a.n_layers},
             {"n_heads", a.n_heads}, {"n_kv_heads", a.n_kv_heads}, {"inter_dim", a.inter_dim},
             {"q_lora_rank", a.mla.q_lora_rank}, {"kv_lora_rank", a.mla.kv_lora_rank},
             {"qk_nope_head_dim", a.mla.qk_nope_head_dim}, {"qk_rope_head_dim", a.mla.qk_rope_head_dim},
             {"v_head_dim", a.mla.v_head_dim}, {"depth", a.mtp.depth}})
      write_attr(g, name, v);
    write_string_attr(g, "rope", mla_rope_name(a.mla.rope));
    write_attr(g, "rope_theta", a.rope_theta);
    write_attr(g, "norm_eps", a.norm_eps);
    write_attr(g, "rope_factor", a.mla.rope_factor);
    write_attr(g, "mscale", a.mla.mscale);
    write_attr(g, "lambda", a.mtp.lambda);
    const TokenBatch b(a.vocab_size, 9);
    write_attr(g, "batch", b.batch);
    write_attr(g, "seq_len", b.seq_len);
    Transformer<double> model(a);
    randomize(model, 8);
    for (const auto& p : model.params.refs()) write_array(g, p.name, p.data, p.shape);
    write_ints(g, "tokens", b.tokens);
    write_ints(g, "targets", b.targets);
  }
}

class MtpOracle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = test::temp_dir("mtp_oracle");
    out_path_ = dir + "/out.h5";
    write_oracle_inputs(dir + "/in.h5");
    failure_ = oracle::run_script("mtp_oracle.py", dir + "/in.h5", out_path_);
  }
  void SetUp() override { ASSERT_TRUE(failure_.empty()) << failure_; }

  static void check(const OracleCase& c) {
    Transformer<double> model(c.args);
    randomize(model, 8);
    const TokenBatch b(c.args.vocab_size, 9);
    model.zero_grad();
    const double loss = model.forward(b.tokens, b.targets, b.batch, b.seq_len);
    model.backward();
    const H5::H5File out(out_path_, H5F_ACC_RDONLY);
    const std::string group = "/model/" + c.name + "/";
    EXPECT_LE(oracle::relative_error(&loss, oracle::read_array(out, group + "loss").data),
              kTorchTolerance) << "loss";
    const auto depth_losses = oracle::read_array(out, group + "mtp_losses");
    ASSERT_EQ(depth_losses.data.size(), model.mtp_losses().size());
    EXPECT_LE(oracle::relative_error(model.mtp_losses().data(), depth_losses.data), kTorchTolerance)
        << "L^k_MTP";
    const auto& logits = model.logits();
    oracle::expect_close("logits", logits.data(), {logits.shape(0), logits.shape(1)},
                         oracle::read_array(out, group + "logits"), kTorchTolerance);
    for (const auto& g : model.grads.refs())
      oracle::expect_close(g.name, g.data, g.shape, oracle::read_array(out, group + "grads/" + g.name),
                           kTorchTolerance);
  }

  static inline std::string out_path_, failure_;
};

TEST_F(MtpOracle, GqaDepthTwo) { check(oracle_cases()[0]); }
TEST_F(MtpOracle, MlaDepthOne) { check(oracle_cases()[1]); }

// ---------------------------------------------------------------------------
// Speculative decoding

// A float model with byte vocabulary whose main head and MTP modules agree
// often enough for both accepted and rejected drafts: large weights make
// confident, repetitive predictions.
Transformer<float> speculative_model(int depth, int max_seq_len) {
  ModelArgs a;
  a.dim = 16;
  a.n_layers = 2;
  a.n_heads = 2;
  a.n_kv_heads = 1;
  a.inter_dim = 32;
  a.max_seq_len = max_seq_len;
  a.init_std = 0.5;
  a.mtp.depth = depth;
  Transformer<float> model(a);
  model.init_weights(30 + depth);
  return model;
}

TEST_F(Mtp, SpeculativeGreedyEqualsPlainGreedy) {
  for (int depth = 1; depth <= 3; ++depth) {
    Transformer<float> model = speculative_model(depth, 24);
    Rng rng(40);
    SampleArgs greedy;
    greedy.temperature = 0;
    greedy.tokens = 30;  // past max_seq_len: the window slides
    SpeculativeStats stats;
    for (int prompt = 0; prompt < 40; ++prompt) {
      std::vector<int> context(1 + rng.below(12));
      for (int& t : context) t = int(rng.below(256));
      const auto plain = generate_tokens(model, context, greedy);
      const auto fast = generate_speculative_tokens(model, context, greedy, &stats);
      ASSERT_EQ(fast, plain) << "depth " << depth << ", prompt " << prompt;
    }
    ASSERT_EQ(stats.judged.size(), size_t(depth));
    int64_t judged = 0, accepted = 0;
    for (int k = 0; k < depth; ++k) judged += stats.judged[k], accepted += stats.accepted[k];
    EXPECT_GT(accepted, 0) << "depth " << depth << ": no draft accepted, the test checks too little";
    EXPECT_LT(accepted, judged) << "depth " << depth << ": no draft rejected";
    EXPECT_EQ(stats.tokens, 40 * 30);
    EXPECT_LT(stats.forwards, stats.tokens);
  }
}

// The drafts themselves: MTP modules trained for their depth on a text with
// a short period draft what the main model then says, so their acceptance
// beats that of the same model untrained (greedy output alone cannot tell:
// it equals plain greedy whatever the drafts).
TEST_F(Mtp, TrainedDraftsAreAcceptedMoreThanUntrainedOnes) {
  std::string text;
  while (text.size() < 6000) text += "the quick brown fox jumps over the lazy dog; ";
  const ByteCorpus corpus = ByteCorpus::from_text(text, 0.2);
  ModelArgs a;
  a.dim = 32;
  a.n_layers = 1;
  a.n_heads = 2;
  a.n_kv_heads = 1;
  a.inter_dim = 64;
  a.max_seq_len = 32;
  a.mtp.depth = 2;
  a.mtp.lambda = 1.0;
  TrainArgs t;
  t.steps = 150;
  t.batch_size = 8;
  t.seq_len = 32;
  t.lr = 1e-2;
  t.min_lr = 1e-3;
  t.warmup_steps = 10;
  t.eval_batches = 4;
  Trainer untrained(a, t, corpus);
  const SpeculativeStats before = untrained.measure_acceptance();
  Trainer trained(a, t, corpus);
  trained.run([](const StepReport&) { return true; });
  const SpeculativeStats after = trained.measure_acceptance();
  ASSERT_EQ(after.judged.size(), 2u);
  for (int k = 1; k <= 2; ++k) {
    EXPECT_GT(after.judged[k - 1], 0) << "depth " << k;
    EXPECT_GT(after.accept_rate(k), 0.8) << "depth " << k;
    EXPECT_GT(after.accept_rate(k), before.accept_rate(k) + 0.3) << "depth " << k;
  }
  EXPECT_GT(after.tokens_per_forward(), 2.0);
  EXPECT_GT(after.tokens_per_forward(), before.tokens_per_forward() + 0.5);
  EXPECT_LE(after.tokens_per_forward(), 1.0 + a.mtp.depth);
  std::printf("acceptance untrained %.3f %.3f (%.3f tokens/forward), trained %.3f %.3f (%.3f)\n",
              before.accept_rate(1), before.accept_rate(2), before.tokens_per_forward(),
              after.accept_rate(1), after.accept_rate(2), after.tokens_per_forward());
}

// The acceptance rule alone: d ~ q, then accept_or_resample, is distributed as p.
TEST_F(Mtp, AcceptanceRuleFollowsTheTarget) {
  const std::vector<double> p = {0.5, 0.05, 0.3, 0.0, 0.15}, q = {0.1, 0.4, 0.2, 0.3, 0.0};
  Rng rng(50);
  const int n = 200000;
  std::vector<double> count(p.size(), 0);
  for (int i = 0; i < n; ++i) {
    bool accepted;
    count[accept_or_resample(p, q, draw(q, rng), rng, &accepted)] += 1;
  }
  for (size_t v = 0; v < p.size(); ++v) {
    const double sigma = std::sqrt(p[v] * (1 - p[v]) / n);
    EXPECT_NEAR(count[v] / n, p[v], 5 * sigma + 1e-12) << "token " << v;
  }
}

// Whole speculative sampling on a 4-token vocabulary: the first three
// generated tokens follow the main model's joint distribution, enumerated
// exactly from its conditionals (chi-square over the 64 outcomes).
TEST_F(Mtp, SpeculativeSamplingFollowsTheMainModel) {
  ModelArgs a = small_args("mha", 2);
  a.vocab_size = 4;
  a.init_std = 0.6;
  Transformer<float> model(a);
  model.init_weights(60);
  SampleArgs s;
  s.temperature = 1.0;
  s.tokens = 3;
  const std::vector<int> prompt = {1, 3};
  auto next = [&](std::vector<int> context) {
    const auto& logits = model.forward_logits(context, 1, int(context.size()));
    return sampling_distribution(logits.data() + (context.size() - 1) * a.vocab_size, a.vocab_size, s);
  };
  std::vector<double> exact(64, 0.0);
  const auto p1 = next(prompt);
  for (int x = 0; x < 4; ++x) {
    const auto p2 = next({1, 3, x});
    for (int y = 0; y < 4; ++y) {
      const auto p3 = next({1, 3, x, y});
      for (int z = 0; z < 4; ++z) exact[16 * x + 4 * y + z] = p1[x] * p2[y] * p3[z];
    }
  }
  const int n = 6000;
  std::vector<double> count(64, 0.0);
  SpeculativeStats stats;
  for (int i = 0; i < n; ++i) {
    s.seed = uint64_t(1000 + i);
    const auto t = generate_speculative_tokens(model, prompt, s, &stats);
    count[16 * t[0] + 4 * t[1] + t[2]] += 1;
  }
  double chi2 = 0;
  int cells = 0;
  for (int c = 0; c < 64; ++c) {
    if (exact[c] * n < 1) continue;  // no outcome here is impossible: every p > 0
    chi2 += std::pow(count[c] - n * exact[c], 2) / (n * exact[c]);
    ++cells;
  }
  // chi-square with cells-1 degrees of freedom: mean cells-1, sd sqrt(2(cells-1)).
  EXPECT_LT(chi2, (cells - 1) + 6 * std::sqrt(2.0 * (cells - 1))) << "over " << cells << " cells";
  EXPECT_GT(stats.accepted[0], 0);
  EXPECT_LT(stats.accepted[0], stats.judged[0]);
}

// ---------------------------------------------------------------------------
// The command line

TEST(MtpCli, BadKeysExitTwo) {
  const std::string tiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";
  const std::string out = test::temp_dir("mtp_cli_bad") + "/x.h5";
  std::string log;
  auto train = [&](const std::string& set) {
    return test::run_dslab("train " + tiny + " --out " + out + " --set " + set, &log);
  };
  EXPECT_EQ(train("mtp.depth=-1"), 2);
  EXPECT_THAT(log, HasSubstr("mtp.depth = -1 is out of range"));
  EXPECT_EQ(train("mtp.lambda=-0.5"), 2);
  EXPECT_THAT(log, HasSubstr("mtp.lambda"));
  EXPECT_EQ(train("mtp.lambda_switch=1.5"), 2);
  EXPECT_EQ(train("mtp.deph=1"), 2);
  EXPECT_THAT(log, HasSubstr("did you mean 'mtp.depth'"));
  EXPECT_EQ(train("mtp.depth=2.5"), 2);
  EXPECT_EQ(test::run_dslab("train " + tiny + " --out " + out +
                                " --set mtp.depth=64 --set train.seq_len=64", &log), 2);
  EXPECT_THAT(log, HasSubstr("train.seq_len = 64 must be > mtp.depth = 64"));
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(MtpCli, TrainRecordsAcceptanceAndSpeculativeSampleEqualsGreedy) {
  const std::string dir = test::temp_dir("mtp_cli");
  const std::string corpus = test::write_text_corpus(dir, 20000);
  const std::string tiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";
  const std::string common = " --set data.path=" + corpus +
                             " --set train.steps=6 --set train.eval_every=0 --set train.checkpoint_every=0";
  ASSERT_EQ(test::run_dslab("train " + tiny + " --out " + dir + "/mtp.h5 --set mtp.depth=2" + common), 0);
  ASSERT_EQ(test::run_dslab("train " + tiny + " --out " + dir + "/plain.h5" + common), 0);
  const Metrics m = read_metrics(dir + "/mtp.h5");
  const Metrics plain = read_metrics(dir + "/plain.h5");
  for (const std::string name : {"loss_mtp", "loss_mtp_1", "loss_mtp_2", "mtp_lambda"})
    EXPECT_EQ(m.at(name).size(), 6u) << name;
  for (const std::string name : {"accept_rate_depth_1", "accept_rate_depth_2",
                                 "accept_tokens_per_forward", "peak_rss_mib"})
    EXPECT_EQ(m.at(name).size(), 1u) << name;
  EXPECT_GE(m.at("accept_tokens_per_forward")[0], 1.0);
  EXPECT_GT(m.at("peak_rss_mib")[0], 1.0);
  // Each main forward yields 1 + the drafts it accepted, at most depth of
  // them, and draft 2 is judged only after draft 1 was accepted, so
  // 1 <= tokens per forward <= 1 + depth * accept_rate_depth_1, and it
  // exceeds 1 exactly when some draft was accepted.
  {
    const double tpf = m.at("accept_tokens_per_forward")[0];
    const double r1 = m.at("accept_rate_depth_1")[0], r2 = m.at("accept_rate_depth_2")[0];
    EXPECT_GE(r1, 0.0);
    EXPECT_LE(r1, 1.0);
    EXPECT_GE(r2, 0.0);
    EXPECT_LE(r2, 1.0);
    EXPECT_LE(tpf, 1.0 + 2.0 * r1 + 1e-12);
    EXPECT_EQ(tpf > 1.0, r1 > 0.0) << "tokens per forward " << tpf << ", depth-1 acceptance " << r1;
  }
  // The peak resident set holds at least the parameters, their gradients and
  // both AdamW moments (fp32), and is not in KiB or bytes by mistake.
  {
    ModelArgs a;  // experiments/configs/tiny.toml with mtp.depth = 2
    a.vocab_size = 256;
    a.dim = 64;
    a.n_layers = 2;
    a.n_heads = 4;
    a.n_kv_heads = 2;
    a.inter_dim = 192;
    a.max_seq_len = 64;
    a.mtp.depth = 2;
    Transformer<float> model(a);
    const double state_mib = 4.0 * double(model.params.arena().size()) * sizeof(float) / (1024.0 * 1024.0);
    EXPECT_GT(state_mib, 1.0);
    EXPECT_GE(m.at("peak_rss_mib")[0], state_mib);
    EXPECT_GE(plain.at("peak_rss_mib")[0], 0.8 * state_mib);
    EXPECT_LT(m.at("peak_rss_mib")[0], 4096.0) << "a tiny run does not take gigabytes";
  }
  EXPECT_EQ(plain.count("loss_mtp"), 0u);
  EXPECT_EQ(plain.count("accept_tokens_per_forward"), 0u);
  EXPECT_EQ(plain.at("peak_rss_mib").size(), 1u);

  const std::string sample = "sample " + dir + "/mtp.h5 --prompt 'the lord' --tokens 50 --temperature 0";
  std::string greedy, speculative;
  ASSERT_EQ(test::run_dslab(sample, &greedy), 0);
  ASSERT_EQ(test::run_dslab(sample + " --speculative --json " + dir + "/s.json", &speculative), 0);
  EXPECT_EQ(speculative.substr(0, greedy.size()), greedy);
  EXPECT_THAT(speculative, HasSubstr("tokens per forward"));
  EXPECT_THAT(test::read_file(dir + "/s.json"), HasSubstr("\"accept_rate\""));
  {
    // The counts agree with each other: every forward yields one token plus
    // the drafts it accepted; a draft is judged only after the one before it
    // was accepted; the rates and tokens per forward follow from the counts.
    const nlohmann::json j = nlohmann::json::parse(test::read_file(dir + "/s.json"));
    const int64_t tokens = j["tokens"], forwards = j["main_forwards"];
    const auto judged = j["judged"].get<std::vector<int64_t>>();
    const auto accepted = j["accepted"].get<std::vector<int64_t>>();
    EXPECT_EQ(tokens, 50);
    ASSERT_EQ(judged.size(), 2u);
    ASSERT_EQ(accepted.size(), 2u);
    EXPECT_EQ(tokens, forwards + accepted[0] + accepted[1]);
    EXPECT_LE(judged[0], forwards);
    EXPECT_LE(accepted[0], judged[0]);
    EXPECT_LE(accepted[1], judged[1]);
    EXPECT_LE(judged[1], accepted[0]);
    EXPECT_DOUBLE_EQ(j["tokens_per_forward"].get<double>(), double(tokens) / double(forwards));
    for (int k = 0; k < 2; ++k)
      EXPECT_DOUBLE_EQ(j["accept_rate"][k].get<double>(),
                       judged[k] > 0 ? double(accepted[k]) / double(judged[k]) : 0.0);
  }
  std::string log;
  EXPECT_EQ(test::run_dslab("sample " + dir + "/plain.h5 --speculative", &log), 2);
  EXPECT_THAT(log, HasSubstr("mtp.depth > 0"));
}

}  // namespace
}  // namespace dslab
