// The learned reward model of R1's stage 4 (reference/reward_model.hpp):
//   - the Bradley-Terry loss against its closed forms (log 2 at a tie, the
//     softplus far from it, no overflow) and its gradient against finite
//     differences;
//   - every parameter's gradient of the scalar head on the trunk
//     (LearnedRewardModel<double>) against finite differences, sequences of
//     different lengths in one batch;
//   - a sequence's score does not depend on what it is batched with;
//   - the pairs: the chosen side is the text, the rejected side keeps its
//     prompt and length and differs; each corruption does what it says;
//   - training separates the text from noise on held-out pairs, with the same
//     numbers for 1 and 2 threads;
//   - GRPO on general prompts raises the score of a fixed reward model.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "reference/reward_model.hpp"
#include "reference/rl_trainer.hpp"
#include "tests/finite_difference.hpp"
#include "tests/model_gradcheck.hpp"

namespace dslab {
namespace {

ModelArgs tiny_model() {
  ModelArgs m;
  m.dim = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.inter_dim = 64;
  m.max_seq_len = 64;
  return m;
}

// Sentences of a small word list: a text with regular words and spaces.
std::string word_text(size_t bytes, uint64_t seed) {
  static const char* words[] = {"and", "the", "lord", "said", "unto", "moses", "of", "israel",
                                "his", "people", "land", "went", "up", "into", "city", "they"};
  Rng rng(seed);
  std::string text;
  while (text.size() < bytes) {
    const int n = 4 + int(rng.below(6));
    for (int i = 0; i < n; ++i) text += std::string(words[rng.below(16)]) + (i + 1 < n ? " " : ". ");
  }
  return text.substr(0, bytes);
}

TEST(BradleyTerry, ClosedForms) {
  const BradleyTerry tie = bradley_terry({0.3, -1.0}, {0.3, -1.0});
  EXPECT_NEAR(tie.loss, std::log(2.0), 1e-15);
  EXPECT_DOUBLE_EQ(tie.dchosen[0], -0.25);  // -sigma(0) / P
  EXPECT_DOUBLE_EQ(tie.drejected[1], 0.25);
  EXPECT_EQ(tie.accuracy, 0.0);
  // Far from a tie: softplus(-Delta) without overflow.
  const BradleyTerry far = bradley_terry({1000.0, -1000.0}, {0.0, 0.0});
  EXPECT_NEAR(far.loss, (0.0 + 1000.0) / 2, 1e-12);
  EXPECT_TRUE(std::isfinite(far.dchosen[0]) && std::isfinite(far.dchosen[1]));
  EXPECT_NEAR(far.dchosen[1], -0.5, 1e-15);
  EXPECT_EQ(far.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(far.margin, 0.0);
  // -log sigma(d) = log(1 + exp(-d)) at a moderate d, computed directly.
  const double d = 0.7;
  EXPECT_NEAR(bradley_terry({d}, {0.0}).loss, std::log1p(std::exp(-d)), 1e-15);
  EXPECT_THROW(bradley_terry({1.0}, {}), std::invalid_argument);
}

TEST(BradleyTerry, GradientMatchesFiniteDifferences) {
  std::vector<double> chosen = {0.5, -2.0, 3.0, 0.1}, rejected = {1.5, -2.5, -1.0, 0.1};
  const BradleyTerry bt = bradley_terry(chosen, rejected);
  const auto loss = [&] { return bradley_terry(chosen, rejected).loss; };
  EXPECT_LT(test::gradient_error(loss, chosen.data(), bt.dchosen.data(), chosen.size()), 1e-9);
  EXPECT_LT(test::gradient_error(loss, rejected.data(), bt.drejected.data(), rejected.size()), 1e-9);
}

// Every parameter of the trunk and the head against finite differences of
// L = sum_b c_b r_b over three sequences of different lengths (right-padded).
TEST(LearnedRewardModel, GradientsMatchFiniteDifferences) {
  ModelArgs args = tiny_model();
  args.dim = 16;
  args.inter_dim = 24;
  args.max_seq_len = 16;
  LearnedRewardModel<double> rm(args);
  rm.trunk.init_weights(3);
  Rng rng(5);
  test::randomize_gains(rm.trunk, rng);
  for (double& w : rm.head) w = rng.normal();
  const std::vector<std::vector<int>> seqs = {{3, 70, 101, 9, 200, 14, 7}, {65, 66}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}};
  const std::vector<double> c = {0.7, -1.3, 0.4};
  const auto loss = [&] {
    Activations<double> acts;
    const std::vector<double> r = rm.score(seqs, acts);
    double l = 0;
    for (size_t b = 0; b < r.size(); ++b) l += c[b] * r[b];
    return l;
  };
  Activations<double> acts;
  rm.trunk.zero_grad();
  std::fill(rm.head_grad.begin(), rm.head_grad.end(), 0.0);
  rm.score(seqs, acts);
  rm.score_backward(acts, c);
  const auto params = rm.trunk.params.refs();
  const auto grads = rm.trunk.grads.refs();
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].name == "head.weight") {  // the LM head: not read by the reward model
      EXPECT_TRUE(std::all_of(grads[i].data, grads[i].data + grads[i].size(), [](double g) { return g == 0; }));
      continue;
    }
    EXPECT_LE(test::gradient_error(loss, params[i].data, grads[i].data, params[i].size()), 1e-6) << params[i].name;
  }
  EXPECT_LE(test::gradient_error(loss, rm.head.data(), rm.head_grad.data(), rm.head.size()), 1e-9) << "head";
}

TEST(LearnedRewardModel, ScoreDoesNotDependOnTheBatch) {
  LearnedRewardModel<double> rm(tiny_model());
  rm.trunk.init_weights(1);
  Rng rng(2);
  for (double& w : rm.head) w = rng.normal();
  const std::vector<int> a = {10, 20, 30, 40, 50};
  Activations<double> acts;
  const double alone = rm.score({a}, acts)[0];
  const std::vector<double> batched = rm.score({std::vector<int>(40, 7), a, {99}}, acts);
  EXPECT_NEAR(batched[1], alone, 1e-12);
  EXPECT_THROW(rm.score({{}}, acts), std::invalid_argument);
  EXPECT_THROW(rm.score({std::vector<int>(65, 1)}, acts), std::invalid_argument);
}

TEST(PreferencePairs, EachCorruptionDoesWhatItSays) {
  const std::string s = word_text(20000, 1);
  const std::vector<uint8_t> text(s.begin(), s.end());
  RmArgs a;
  a.prefix_bytes = 16;
  a.response_bytes = 40;
  for (Corruption kind : {Corruption::ShuffleWords, Corruption::Noise, Corruption::Splice, Corruption::Mixed}) {
    std::vector<int> kinds(3, 0);
    for (uint64_t i = 0; i < 200; ++i) {
      Rng rng(7, i);
      const PreferencePair p = make_preference_pair(text, a, kind, rng);
      ASSERT_EQ(p.chosen.size(), 56u);
      ASSERT_EQ(p.rejected.size(), 56u);
      EXPECT_TRUE(std::equal(p.chosen.begin(), p.chosen.begin() + 16, p.rejected.begin()));  // the prompt
      EXPECT_NE(p.chosen, p.rejected);
      const std::string chosen(p.chosen.begin(), p.chosen.end());
      EXPECT_NE(s.find(chosen), std::string::npos) << "the chosen side is a window of the text";
      const std::string cr(p.chosen.begin() + 16, p.chosen.end()), rr(p.rejected.begin() + 16, p.rejected.end());
      ++kinds[int(p.kind)];
      if (p.kind == Corruption::ShuffleWords) {
        std::string x = cr, y = rr;
        std::sort(x.begin(), x.end());
        std::sort(y.begin(), y.end());
        EXPECT_EQ(x, y) << "a shuffle keeps the bytes";
      } else if (p.kind == Corruption::Splice) {
        EXPECT_NE(s.find(rr), std::string::npos) << "a splice is text from elsewhere";
      } else {
        for (size_t j = 0; j < rr.size(); ++j)
          if (rr[j] != cr[j]) EXPECT_NE(std::string("abcdefghijklmnopqrstuvwxyz ").find(rr[j]), std::string::npos);
      }
    }
    if (kind == Corruption::Mixed) {
      for (int k = 0; k < 3; ++k) EXPECT_GT(kinds[k], 30) << name_of(Corruption(k));
    } else if (kind == Corruption::Noise) {
      EXPECT_EQ(kinds[int(Corruption::Noise)], 200);
    } else {
      EXPECT_GT(kinds[int(kind)], 150) << "only an unchanged shuffle or splice falls back to noise";
    }
  }
  Rng rng(1);
  EXPECT_THROW(make_preference_pair(std::vector<uint8_t>(100, 'a'), a, Corruption::Noise, rng), std::invalid_argument);
  // The same seed, the same pairs; validation kinds in turn.
  a.corruption = Corruption::Mixed;
  a.eval_pairs = 6;
  EXPECT_EQ(train_pairs(text, a, 3)[5].rejected, train_pairs(text, a, 3)[5].rejected);
  EXPECT_NE(train_pairs(text, a, 3)[5].chosen, train_pairs(text, a, 4)[5].chosen);
  const auto val = validation_pairs(text, a);
  for (int i = 0; i < 6; ++i)
    if (val[i].kind != Corruption::Noise) EXPECT_EQ(int(val[i].kind), i % 3);
}

RmArgs tiny_rm() {
  RmArgs a;
  a.steps = 40;
  a.pairs_per_step = 8;
  a.prefix_bytes = 16;
  a.response_bytes = 32;
  a.corruption = Corruption::Noise;
  a.noise_rate = 0.3;
  a.lr = 3e-3;
  a.warmup_steps = 5;
  a.eval_every = 20;
  a.eval_pairs = 64;
  return a;
}

TEST(RewardModelTrainer, SeparatesTextFromNoiseWithTheSameNumbersOnAnyThreadCount) {
  const ByteCorpus corpus = ByteCorpus::from_text(word_text(40000, 2), 0.2);
  std::vector<Metrics> m;
  std::vector<std::vector<float>> head;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    RewardModelTrainer t(tiny_model(), tiny_rm(), corpus);
    t.run({});
    m.push_back(t.metrics);
    head.push_back(t.model.head);
  }
  omp_set_num_threads(2);
  EXPECT_EQ(m[0].at("loss"), m[1].at("loss"));
  EXPECT_EQ(m[0].at("val_loss"), m[1].at("val_loss"));
  EXPECT_EQ(head[0], head[1]);
  EXPECT_GT(m[0].at("val_accuracy").back(), 0.9) << "noise is easy to tell from the text";
  EXPECT_LT(m[0].at("val_loss").back(), 0.4);
  EXPECT_EQ(m[0].at("val_accuracy_noise"), m[0].at("val_accuracy"));
  EXPECT_EQ(m[0].at("step").size(), 40u);
  EXPECT_EQ(m[0].at("val_step"), (std::vector<double>{20, 40}));
}

TEST(RewardModelTrainer, ArgsAreChecked) {
  RmArgs a = tiny_rm();
  a.response_bytes = 60;  // 16 + 60 > 64
  try {
    a.validate(tiny_model());
    FAIL();
  } catch (const ArgsError& e) {
    EXPECT_NE(std::string(e.what()).find("model.max_seq_len = 64"), std::string::npos) << e.what();
  }
  a = tiny_rm();
  a.warmup_steps = 41;
  EXPECT_THROW(a.validate(tiny_model()), ArgsError);
  EXPECT_THROW(parse_corruption("garble"), ArgsError);
  EXPECT_EQ(parse_corruption("splice"), Corruption::Splice);
}

// GRPO on general prompts only, against a fixed reward model with a random
// head: the policy learns to raise the score (the reward hacking of stage 4
// in miniature: nothing holds the score to the text).
TEST(RlGeneralPrompts, RaisesTheRewardModelsScore) {
  const std::string s = word_text(20000, 3);
  const std::vector<uint8_t> text(s.begin(), s.end());
  LearnedRewardModel<float> rm(tiny_model());
  rm.trunk.init_weights(9);
  Rng rng(4);
  for (float& w : rm.head) w = float(rng.normal());
  RlSetup setup;
  setup.rl.steps = 12;
  setup.rl.prompts_per_step = 4;
  setup.rl.general_prompts = 4;
  setup.rl.general_prefix = 8;
  setup.rl.lr = 1e-2;
  setup.rollout.group_size = 4;
  setup.rollout.max_new_tokens = 16;
  setup.reward.model = "in memory";
  setup.grpo.beta = 0;
  setup.validate(tiny_model());
  RlTrainer t(tiny_model(), setup, nullptr, &rm, &text);
  t.run({});
  const auto& score = t.metrics.at("rm_score");
  ASSERT_EQ(score.size(), 12u);
  EXPECT_GT((score[9] + score[10] + score[11]) / 3, (score[0] + score[1] + score[2]) / 3 + 0.1);
  EXPECT_TRUE(std::isnan(t.metrics.at("accuracy").back())) << "no task prompt, no accuracy";
  EXPECT_GT(t.metrics.at("general_ref_nll").back(), 0.0);
  EXPECT_GT(t.metrics.at("general_kl_exact").back(), 0.0);
}

TEST(RlGeneralPrompts, ArgsAreChecked) {
  RlSetup setup;
  setup.rl.general_prompts = 2;
  EXPECT_THROW(setup.validate(tiny_model()), ArgsError) << "general prompts without reward.model";
  setup.reward.model = "rm.h5";
  setup.rl.general_prompts = 0;
  EXPECT_THROW(setup.validate(tiny_model()), ArgsError) << "reward.model without general prompts";
  setup.rl.general_prompts = setup.rl.prompts_per_step + 1;
  EXPECT_THROW(setup.validate(tiny_model()), ArgsError);
  setup.rl.general_prompts = 1;
  setup.rl.general_prefix = 60;
  setup.rollout.max_new_tokens = 8;
  EXPECT_THROW(setup.validate(tiny_model()), ArgsError) << "60 + 8 > max_seq_len 64";
  setup.rl.general_prefix = 8;
  setup.validate(tiny_model());
  EXPECT_THROW(RlTrainer(tiny_model(), setup, nullptr), std::invalid_argument) << "no reward model given";
  ModelArgs small = tiny_model();
  small.max_seq_len = 12;
  LearnedRewardModel<float> rm(small);
  const std::vector<uint8_t> text(1000, 'a');
  EXPECT_THROW(RlTrainer(tiny_model(), setup, nullptr, &rm, &text), ArgsError) << "8 + 8 > the model's 12";
}

}  // namespace
}  // namespace dslab
