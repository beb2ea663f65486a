// Same inputs => bitwise the same numbers for any thread count: one float
// training step (forward, backward, gradient clipping, AdamW) of the
// reference transformer on 1, 2 and 3 OpenMP threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <string>
#include <vector>

#include "reference/adamw.hpp"
#include "reference/transformer.hpp"

namespace dslab {
namespace {

// Every number one step produces, by name.
struct StepResult {
  float loss = 0;
  double grad_norm = 0;
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
};

// Shapes chosen so that every parallel loop splits: 96 token rows make three
// GEMM row tiles, batch * heads = 16 attention items, and 2 kv heads share 4
// query heads (the GQA accumulation into dk, dv).
StepResult train_step(int threads) {
  omp_set_num_threads(threads);
  ModelArgs args;
  args.vocab_size = 64;
  args.dim = 32;
  args.n_layers = 2;
  args.n_heads = 4;
  args.n_kv_heads = 2;
  args.inter_dim = 64;
  args.max_seq_len = 24;
  const int batch = 4, seq_len = 24;
  Transformer<float> model(args);
  model.init_weights(41);
  Rng rng(42);
  std::vector<int> tokens, targets;
  for (int n = 0; n < batch * seq_len; ++n) {
    tokens.push_back(int(rng.below(args.vocab_size)));
    targets.push_back(int(rng.below(args.vocab_size)));
  }

  StepResult r;
  model.zero_grad();
  r.loss = model.forward(tokens, targets, batch, seq_len);
  model.backward();
  const auto params = model.params.refs();
  const auto grads = model.grads.refs();
  for (const auto& g : grads) r.tensors.push_back({"grad " + g.name, {g.data, g.data + g.size()}});
  r.grad_norm = global_grad_norm(grads);
  clip_grad_norm(grads, r.grad_norm, 0.5 * r.grad_norm);
  AdamW<float> opt(params);
  opt.step(params, grads, 1e-3, AdamWArgs{});
  for (const auto& p : params) r.tensors.push_back({p.name, {p.data, p.data + p.size()}});
  return r;
}

// Index of the first element whose bits differ, or -1.
long first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  for (size_t j = 0; j < a.size(); ++j)
    if (std::memcmp(&a[j], &b[j], sizeof(float)) != 0) return long(j);
  return -1;
}

TEST(Threads, TrainingStepIsBitwiseTheSameOnOneTwoAndThreeThreads) {
  const StepResult one = train_step(1);
  for (int threads : {2, 3}) {
    const StepResult many = train_step(threads);
    EXPECT_EQ(std::memcmp(&one.loss, &many.loss, sizeof(float)), 0)
        << "loss " << one.loss << " vs " << many.loss << " on " << threads << " threads";
    EXPECT_EQ(std::memcmp(&one.grad_norm, &many.grad_norm, sizeof(double)), 0)
        << "gradient norm on " << threads << " threads";
    ASSERT_EQ(one.tensors.size(), many.tensors.size());
    for (size_t i = 0; i < one.tensors.size(); ++i) {
      const auto& [name, a] = one.tensors[i];
      const auto& b = many.tensors[i].second;
      ASSERT_EQ(a.size(), b.size()) << name;
      const long j = first_difference(a, b);
      EXPECT_EQ(j, -1) << name << " on " << threads << " threads differs at " << j << ": "
                       << a[j] << " vs " << b[j];
    }
  }
}

}  // namespace
}  // namespace dslab
