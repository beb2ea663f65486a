// FP8-simulated training (reference/fp8_linear.hpp): the three GEMMs of a
// linear layer take the quantize-dequantize of the right groups, the gate and
// the head stay in fp32, the loss stays close to fp32 training, runs repeat
// bitwise on any thread count, captured GEMM inputs reach `dslab sim fp8`, and
// bad [fp8] keys exit with status 2.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "experiments/config.hpp"
#include "reference/fp8_linear.hpp"
#include "reference/linear.hpp"
#include "reference/moe.hpp"
#include "reference/trainer.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

using ::testing::HasSubstr;

Tensor2<float> random_matrix(size_t rows, size_t cols, uint64_t seed, double std = 1.0) {
  Rng rng(seed);
  Tensor2<float> x = Tensor2<float>::from_shape({rows, cols});
  for (float& v : x) v = float(std * rng.normal());
  return x;
}

Tensor2<float> transposed(const Tensor2<float>& x) { return xt::transpose(x); }

fp8::Recipe v3_recipe(const std::string& grad_granularity = "tile") {
  fp8::Fp8Args a;
  a.recipe = fp8::RecipeKind::V3;
  a.grad_granularity = fp8::parse_granularity(grad_granularity);
  return a.to_recipe();
}

// C [M, N] = A [M, K] B [N, K]^T summed in double, and sum_k |A| |B|.
struct Exact {
  Tensor2<double> c, magnitude;
};
Exact exact_product(const Tensor2<float>& a, const Tensor2<float>& b) {
  const size_t M = a.shape(0), N = b.shape(0), K = a.shape(1);
  Exact e{xt::zeros<double>({M, N}), xt::zeros<double>({M, N})};
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n)
      for (size_t k = 0; k < K; ++k) {
        e.c(m, n) += double(a(m, k)) * double(b(n, k));
        e.magnitude(m, n) += std::fabs(double(a(m, k)) * double(b(n, k)));
      }
  return e;
}

// Largest |c - exact| relative to the fp32 summation bound K * 2^-24 * sum |a||b|
// (Higham's gamma_K): at most 1 when c is an fp32 sum of exactly these products.
double worst_vs_fp32_bound(const Tensor2<float>& c, const Exact& e, size_t K) {
  double worst = 0;
  for (size_t i = 0; i < c.size(); ++i)
    worst = std::max(worst, std::fabs(double(c.data()[i]) - e.c.data()[i]) /
                                (K * 0x1p-24 * e.magnitude.data()[i] + 1e-30));
  return worst;
}

// Shapes with partial tiles and blocks on every side: N = 200 tokens, in = 320, out = 192.
constexpr size_t kN = 200, kIn = 320, kOut = 192;

TEST(Fp8Linear, ForwardMultipliesTilesOfXAndBlocksOfW) {
  const fp8::Recipe r = v3_recipe();
  const Tensor2<float> x = random_matrix(kN, kIn, 1), w = random_matrix(kOut, kIn, 2, 0.05);
  Tensor2<float> y;
  fp8::linear_forward(y, x, w, r);
  // y = Q_tile(x) Q_block(W)^T: 1x128 tiles of x along `in`, the GEMM's K.
  const Tensor2<float> xq = fp8::quantize_dequantize(x, r.activation), wq = fp8::quantize_dequantize(w, r.weight);
  EXPECT_LE(worst_vs_fp32_bound(y, exact_product(xq, wq), kIn), 1.0);
  // Not the unquantized product, nor per-tensor scales of x.
  EXPECT_GT(worst_vs_fp32_bound(y, exact_product(x, w), kIn), 100.0);
  fp8::QuantConfig per_tensor = r.activation;
  per_tensor.granularity = fp8::Granularity::PerTensor;
  EXPECT_GT(worst_vs_fp32_bound(y, exact_product(fp8::quantize_dequantize(x, per_tensor), wq), kIn), 100.0);
}

TEST(Fp8Linear, BackwardTilesRunAlongTheContractedDimension) {
  for (const std::string grad : {"tile", "block"}) {
    const fp8::Recipe r = v3_recipe(grad);
    const Tensor2<float> x = random_matrix(kN, kIn, 3), w = random_matrix(kOut, kIn, 4, 0.05);
    const Tensor2<float> dy = random_matrix(kN, kOut, 5, 1e-3);
    Tensor2<float> dx, dw = xt::zeros<float>({kOut, kIn});
    fp8::linear_backward_input(dx, dy, w, r);
    fp8::linear_backward_weight(dw, dy, x, r);
    // dx [N, in] = Q_grad(dy) [N, out] . Q_block(W^T) [in, out]^T: K = out.
    const Tensor2<float> dyq = fp8::quantize_dequantize(dy, r.gradient);
    const Tensor2<float> wtq = fp8::quantize_dequantize(transposed(w), r.weight);
    EXPECT_LE(worst_vs_fp32_bound(dx, exact_product(dyq, wtq), kOut), 1.0) << grad;
    // dW [out, in] = Q_grad(dy^T) [out, N] . Q_act(x^T) [in, N]^T: K = N, so the
    // 1x128 tiles of dy^T and x^T are 128x1 tiles of dy and x, along tokens.
    const Tensor2<float> dytq = fp8::quantize_dequantize(transposed(dy), r.gradient);
    const Tensor2<float> xtq = fp8::quantize_dequantize(transposed(x), r.activation);
    EXPECT_LE(worst_vs_fp32_bound(dw, exact_product(dytq, xtq), kN), 1.0) << grad;
    // Tiles along features (the forward's layout) give another weight gradient.
    const Tensor2<float> dy_rows = transposed(fp8::quantize_dequantize(dy, r.gradient));
    const Tensor2<float> x_rows = transposed(fp8::quantize_dequantize(x, r.activation));
    EXPECT_GT(worst_vs_fp32_bound(dw, exact_product(dy_rows, x_rows), kN), 100.0) << grad;
  }
}

// Values of the E4M3 grid with a 448 in every 1x128 and every 128x1 tile (also
// the edge tiles of 200 x 320 and 200 x 192 matrices): with
// any granularity every scale is 1 and quantization changes nothing.
Tensor2<float> e4m3_grid_matrix(size_t rows, size_t cols, uint64_t seed) {
  const fp8::Format f = fp8::e4m3();
  Rng rng(seed);
  Tensor2<float> x = Tensor2<float>::from_shape({rows, cols});
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) {
      uint16_t code;
      do code = uint16_t(rng.below(256));
      while (fp8::is_nan(f, code));
      x(r, c) = r % 64 == c % 64 ? (code & 1 ? -448.0f : 448.0f) : fp8::decode(f, code);
    }
  return x;
}

TEST(Fp8Linear, EqualsThePlainLayerWhenQuantizationIsExact) {
  for (const std::string scale : {"exact", "pow2"}) {
    fp8::Fp8Args a;
    a.recipe = fp8::RecipeKind::V3;
    a.scale = *parse_enum<fp8::ScaleRounding>(scale);
    const fp8::Recipe r = a.to_recipe();
    const Tensor2<float> x = e4m3_grid_matrix(kN, kIn, 6), w = e4m3_grid_matrix(kOut, kIn, 7);
    const Tensor2<float> dy = e4m3_grid_matrix(kN, kOut, 8);
    ASSERT_EQ(fp8::quantize_dequantize(transposed(x), r.activation), transposed(x));
    Tensor2<float> y8, y, dx8, dx, dw8 = xt::zeros<float>({kOut, kIn}), dw = dw8;
    fp8::linear_forward(y8, x, w, r);
    fp8::linear_backward_input(dx8, dy, w, r);
    fp8::linear_backward_weight(dw8, dy, x, r);
    linear_forward(y, x, w);
    linear_backward(dx, dw, dy, x, w);
    EXPECT_EQ(y8, y) << scale;
    EXPECT_EQ(dx8, dx) << scale;
    EXPECT_EQ(dw8, dw) << scale;
  }
}

// Rounding to M mantissa bits moves a value by at most u = 2^-(M+1) relative
// (normal range), so |Q(x)Q(W)^T - xW^T| <= (2u + u^2) sum |x||W|, plus fp32 sums.
TEST(Fp8Linear, ErrorShrinksWithTheFormatsMantissa) {
  const Tensor2<float> x = random_matrix(kN, kIn, 9), w = random_matrix(kOut, kIn, 10, 0.05);
  const Exact e = exact_product(x, w);
  double previous = INFINITY;
  for (const auto& [format, mantissa] : std::vector<std::pair<std::string, int>>{{"e4m3", 3}, {"e5m6", 6}, {"e5m10", 10}}) {
    fp8::Fp8Args a;
    a.recipe = fp8::RecipeKind::V3;
    a.format = format;
    Tensor2<float> y;
    fp8::linear_forward(y, x, w, a.to_recipe());
    const double u = std::ldexp(1.0, -(mantissa + 1));
    double worst = 0, error = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      const double d = std::fabs(double(y.data()[i]) - e.c.data()[i]);
      worst = std::max(worst, d / (((2 * u + u * u) + 2 * kIn * 0x1p-24) * e.magnitude.data()[i]));
      error += d * d;
    }
    EXPECT_LE(worst, 1.0) << format;
    EXPECT_LT(error, previous) << format;
    previous = error;
  }
}

TEST(Fp8Linear, EmulatedAccumulatorWithWideSumsMatchesFp32Sums) {
  fp8::Fp8Args a;
  a.recipe = fp8::RecipeKind::V3;
  a.accum_bits = 23;  // fp32's mantissa: the model then sums as fp32 does, up to rounding direction
  const fp8::Recipe emulated = a.to_recipe(), plain = v3_recipe();
  const Tensor2<float> x = random_matrix(64, 256, 11), w = random_matrix(48, 256, 12, 0.05);
  const Tensor2<float> dy = random_matrix(64, 48, 13, 1e-3);
  Tensor2<float> y, y_ref, dx, dx_ref, dw = xt::zeros<float>({48, 256}), dw_ref = dw;
  fp8::linear_forward(y, x, w, emulated);
  fp8::linear_forward(y_ref, x, w, plain);
  fp8::linear_backward_input(dx, dy, w, emulated);
    fp8::linear_backward_weight(dw, dy, x, emulated);
  fp8::linear_backward_input(dx_ref, dy, w, plain);
    fp8::linear_backward_weight(dw_ref, dy, x, plain);
  for (const auto& [got, want] : {std::pair{&y, &y_ref}, {&dx, &dx_ref}, {&dw, &dw_ref}})
    EXPECT_LT(xt::amax(xt::abs(*got - *want))(), 1e-5 * xt::amax(xt::abs(*want))());
  EXPECT_NE(y, y_ref);  // the other path: not bitwise the same sums
}

TEST(Fp8Linear, PolicySwitchesLinearLayersInFloatOnly) {
  const fp8::Recipe r = v3_recipe();
  fp8::Recipe disabled = r;
  disabled.enabled = false;
  const Tensor2<float> x = random_matrix(kN, kIn, 14), w = random_matrix(kOut, kIn, 15, 0.05);
  Tensor2<float> plain, inside, suspended, expected;
  linear_forward(plain, x, w);
  linear_forward(inside, x, w, {.fp8 = &r});
  linear_forward(suspended, x, w, {.fp8 = &disabled});
  fp8::linear_forward(expected, x, w, r);
  EXPECT_EQ(inside, expected);
  EXPECT_EQ(suspended, plain);
  EXPECT_NE(inside, plain);
  // Double is never quantized.
  const Tensor2<double> xd = xt::cast<double>(x), wd = xt::cast<double>(w);
  Tensor2<double> yd, yd_inside;
  linear_forward(yd, xd, wd);
  linear_forward(yd_inside, xd, wd, {.fp8 = &r});
  EXPECT_EQ(yd, yd_inside);
}

// The MoE layer hands its FP8 recipe to the experts but not to the gate: the
// scores are the fp32 ones, and the gate's weight-gradient GEMM (seen in a
// split backward's queue) has no recipe while every expert GEMM has it.
TEST(Fp8Linear, MoeGateStaysInHighPrecision) {
  MoeArgs a;
  a.dim = 128;
  a.moe_inter_dim = 32;
  a.n_routed_experts = 8;
  a.n_activated_experts = 2;
  a.n_shared_experts = 1;
  MoeParams<float> p(a), dp(a);
  p.init(16, 0.1);
  const Tensor2<float> x = random_matrix(130, 128, 17), dy = random_matrix(130, 128, 18);
  const fp8::Recipe recipe = v3_recipe();
  Tensor2<float> y32, y8, dx;
  MoeCache<float> c32, c8;
  moe_forward(y32, c32, x, p, Tensor1<float>{}, a);
  moe_forward(y8, c8, x, p, Tensor1<float>{}, a, {.fp8 = &recipe});
  EXPECT_EQ(c8.routing.scores, c32.routing.scores);
  EXPECT_NE(y8, y32);  // the experts did run in FP8
  WeightGradQueue<float> queue;
  const Tensor2<float>* no_balance = nullptr;
  moe_backward(dx, dp, dy, no_balance, x, c8, p, a, {.fp8 = &recipe, .defer = &queue});
  int gate_calls = 0, expert_calls = 0;
  for (const auto& e : queue.entries()) {
    if (e.dw == &dp.gate) {
      ++gate_calls;
      EXPECT_EQ(e.fp8, nullptr);
    } else {
      ++expert_calls;
      EXPECT_EQ(e.fp8, &recipe);
    }
  }
  EXPECT_EQ(gate_calls, 1);
  EXPECT_GT(expert_calls, 0);
}

ModelArgs small_model(int n_layers = 2) {
  ModelArgs m;
  m.vocab_size = 256;
  m.dim = 128;
  m.n_layers = n_layers;
  m.n_heads = 4;
  m.n_kv_heads = 4;
  m.inter_dim = 128;
  m.max_seq_len = 64;
  return m;
}

TEST(Fp8Transformer, BlocksInFp8HeadAndEmbeddingInFp32) {
  Transformer<float> model(small_model());
  model.init_weights(19);
  model.fp8_recipe = v3_recipe();
  std::map<const float*, std::string> name_of;  // gradient tensor -> its parameter's name
  for (const auto& p : model.grads.refs()) name_of[p.data] = p.name;
  std::map<std::string, std::set<bool>> seen;  // weight -> fp8 flags of its weight-gradient GEMMs
  Rng rng(20);
  std::vector<int> tokens, targets;
  for (int i = 0; i < 2 * 64; ++i) {
    tokens.push_back(int(rng.below(256)));
    targets.push_back(int(rng.below(256)));
  }
  {
    // The split backward's queue names every linear layer and the recipe its GEMMs ran under.
    WeightGradQueue<float> queue;
    Tensor2<float> dlogits, dx;
    model.forward(tokens, targets, 2, 64);
    model.loss_backward(model.acts, dlogits);
    model.head_backward(model.acts, &dlogits, dx, nullptr, &queue);
    model.layers_backward(model.acts, 0, model.params.layers.size(), dx, &queue);
    for (const auto& e : queue.entries()) seen[name_of.at(e.dw->data())].insert(e.fp8 != nullptr);
  }
  EXPECT_EQ(seen.at("head.weight"), std::set<bool>{false});
  size_t block_linears = 0;
  for (const auto& p : model.params.refs())
    if (p.name.starts_with("layers.") && p.shape.size() == 2) {
      EXPECT_EQ(seen.at(p.name), std::set<bool>{true}) << p.name;
      ++block_linears;
    }
  EXPECT_EQ(block_linears, 2u * 7u);  // wq wk wv wo w1 w2 w3
  EXPECT_EQ(seen.size(), block_linears + 1);  // the embedding is a lookup, not a GEMM
}

// A small byte-level model on a generated corpus.
struct SmallRun {
  std::string dir = test::temp_dir("fp8_training");
  std::string corpus_path = test::write_text_corpus(dir, 80000);
  ByteCorpus corpus = ByteCorpus::from_file(corpus_path, 0.1);

  TrainArgs args(int64_t steps) const {
    TrainArgs t;
    t.steps = steps;
    t.batch_size = 4;
    t.seq_len = 32;
    t.lr = 3e-3;
    t.min_lr = 3e-4;
    t.warmup_steps = 10;
    t.eval_every = 0;
    t.eval_batches = 4;
    t.seed = 21;
    return t;
  }
};

fp8::Fp8Args args_of(const std::string& format, const std::string& granularity) {
  fp8::Fp8Args a;
  a.recipe = fp8::RecipeKind::V3;
  a.format = a.grad_format = format;
  a.act_granularity = a.grad_granularity = a.weight_granularity = fp8::parse_granularity(granularity);
  return a;
}

// Relative error of the FP8 run's losses against fp32's, averaged over the
// last 10 steps (single steps are noisy: the runs see the same batches but
// drift apart) and at the final validation.
TEST(Fp8Transformer, TrainingLossStaysCloseToFp32) {
  SmallRun run;
  const int64_t steps = 30;
  auto losses = [&](const fp8::Fp8Args& fp8) {
    ModelArgs model = small_model(1);
    model.fp8 = fp8;
    Trainer t(model, run.args(steps), run.corpus);
    t.run(nullptr);
    const auto& train = t.metrics.at("train_loss");
    double tail = 0;
    for (int64_t s = steps - 10; s < steps; ++s) tail += train[s] / 10;
    return std::pair{tail, t.metrics.at("val_loss").back()};
  };
  const auto [train32, val32] = losses(fp8::Fp8Args{});
  const auto [train8, val8] = losses(args_of("e4m3", "tile"));
  // A 4-bit format (E2M1, 1 mantissa bit, max 3) with one scale per tensor: most
  // values flush to zero, and the check must see it.
  const auto [train_coarse, val_coarse] = losses(args_of("e2m1", "tensor"));
  const double rel_train = std::fabs(train8 / train32 - 1), rel_val = std::fabs(val8 / val32 - 1);
  const double rel_coarse = std::fabs(val_coarse / val32 - 1);
  std::printf("relative loss error vs fp32: v3 train %.4f val %.4f; e2m1 per tensor val %.4f\n", rel_train,
              rel_val, rel_coarse);
  // V3 reports < 0.25% against BF16 at scale. Here, 30 steps of a one-block model
  // on 128 tokens per step, the runs see the same batches but drift apart, and
  // that drift, not a bias, dominates: measured 0.2% (train and validation),
  // against 17% for the 4-bit control. 1% is four times V3's bound and a
  // sixteenth of the control's error.
  EXPECT_LT(rel_train, 0.01) << train8 << " vs " << train32;
  EXPECT_LT(rel_val, 0.01) << val8 << " vs " << val32;
  EXPECT_GT(rel_coarse, 0.01) << val_coarse << " vs " << val32;
}

TEST(Fp8Transformer, SameSeedSameNumbersOnOneAndTwoThreads) {
  SmallRun run;
  auto params_after = [&](int threads) {
    omp_set_num_threads(threads);
    fp8::Fp8Args a = args_of("e4m3", "tile");
    a.weight_granularity = fp8::Granularity::Block128x128;
    ModelArgs model = small_model();
    model.fp8 = a;
    Trainer t(model, run.args(3), run.corpus);
    t.run(nullptr);
    std::vector<float> all;
    for (const auto& p : t.model.params.refs()) all.insert(all.end(), p.data, p.data + p.size());
    return std::pair{t.metrics.at("train_loss"), all};
  };
  const auto one = params_after(1), two = params_after(2);
  omp_set_num_threads(2);
  EXPECT_EQ(one.first, two.first);
  ASSERT_EQ(one.second.size(), two.second.size());
  EXPECT_EQ(0, std::memcmp(one.second.data(), two.second.data(), one.second.size() * sizeof(float)));
}

const std::string kTiny = std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml";

TEST(Fp8Cli, CapturedGemmInputsGoToTheSimulator) {
  const std::string dir = test::temp_dir("fp8_capture");
  const std::string corpus = test::write_text_corpus(dir, 60000);
  const std::string out = dir + "/r.h5";
  std::string log;
  ASSERT_EQ(test::run_dslab("train " + kTiny + " --set data.path=" + corpus +
                                " --set train.steps=2 --set train.warmup_steps=1 --set train.capture=true --set fp8.recipe=v3 --out " + out,
                            &log),
            0)
      << log;
  // tiny.toml: 2 layers (the middle block is layer 0), dim 64, inter_dim 192, 8 x 64 tokens.
  const std::map<std::string, std::pair<int, int>> shapes = {
      {"layers.0.ffn.w2.input", {512, 192}}, {"layers.0.ffn.w2.weight", {64, 192}},
      {"layers.0.ffn.w2.output_grad", {512, 64}}, {"layers.0.attn.wo.input", {512, 64}},
      {"layers.0.attn.wo.weight", {64, 64}}, {"layers.0.attn.wo.output_grad", {512, 64}}};
  for (const auto& [name, shape] : shapes) {
    const std::string json = dir + "/" + name + ".json";
    ASSERT_EQ(test::run_dslab("sim fp8 quantize --format e4m3 --granularity tile --dist hdf5 --input " + out +
                                  " --dataset /captured/" + name + " --json " + json,
                              &log),
              0)
        << name << "\n" << log;
    const auto j = nlohmann::json::parse(test::read_file(json));
    const int tiles = shape.first * ((shape.second + 127) / 128);
    EXPECT_EQ(j.at("groups").get<int>(), tiles) << name;
    EXPECT_GT(j.at("sqnr_db").get<double>(), 20.0) << name;  // E4M3 on real tensors: ~30 dB
  }
}

TEST(Fp8Cli, BadRecipeKeysExitWithStatus2) {
  const std::string dir = test::temp_dir("fp8_bad");
  const std::string corpus = test::write_text_corpus(dir, 20000);
  const std::map<std::string, std::string> bad = {
      {"--set fp8.recipe=v4", "fp8.recipe"},
      {"--set fp8.format=e9m3", "fp8.format"},
      {"--set fp8.grad_format=fp8", "fp8.grad_format"},
      {"--set fp8.grad_granularity=diagonal", "fp8.grad_granularity"},
      {"--set fp8.recipe=v3 --set fp8.act_granularity=mx", "pow2"},
      {"--set fp8.recipe=v3 --set fp8.accum_bits=14 --set fp8.promote_every=0", "promote_every"},
      {"--set fp8.recipe=v3 --set fp8.accum_bits=14 --set fp8.promote_every=48", "promote_every"},
      {"--set fp8.recipe=v3 --set fp8.accum_bits=14 --set fp8.promote_every=256", "promote_every"},
      {"--set fp8.accum_bits=41", "fp8.accum_bits"},
  };
  for (const auto& [sets, message] : bad) {
    std::string log;
    EXPECT_EQ(test::run_dslab("train " + kTiny + " --set data.path=" + corpus + " " + sets + " --out " + dir +
                                  "/r.h5",
                              &log),
              2)
        << sets << "\n" << log;
    EXPECT_THAT(log, HasSubstr(message)) << sets;
  }
}

}  // namespace
}  // namespace dslab
