// The GRPO loop (reference/rl_trainer.hpp) end to end on a tiny model:
//   - it optimises what it is rewarded for: with only DAPO's overlong penalty
//     as reward, responses get shorter;
//   - closed forms: rewards all equal and beta = 0 leave the weights bitwise
//     unchanged (zero advantage, zero gradient); with mu = 1 and one mini-batch
//     the update runs at pi_theta = pi_old (no token clipped); with the
//     reference reset every step and mu = 1 the KL of the update is exactly 0;
//     dynamic sampling drops every group whose rewards are all equal;
//   - PPO (value head, GAE): responses shorten too, and the value head learns
//     a constant return;
//   - the same numbers for 1 and 2 threads.
#include <omp.h>

#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

#include "reference/rl_trainer.hpp"

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

// 1-digit additions, 4 prompts x 4 completions of up to 24 tokens.
RlSetup tiny_setup() {
  RlSetup s;
  s.rl.steps = 3;
  s.rl.prompts_per_step = 4;
  s.rl.lr = 3e-3;
  s.rollout.group_size = 4;
  s.rollout.max_new_tokens = 24;
  s.task.kind = TaskKind::Addition;
  s.task.min_digits = s.task.max_digits = 1;
  return s;
}

// Rewards that vary from the first step: the completion ends at its first
// lower-case letter (26 of the 256 bytes a fresh model draws about evenly),
// and DAPO's overlong penalty with L_max = L_cache = 24 gives -length/24.
RlSetup length_setup() {
  RlSetup s = tiny_setup();
  s.rl.lr = 1e-2;
  for (char c = 'a'; c <= 'z'; ++c) s.rollout.stop.push_back(std::string(1, c));
  s.reward.accuracy = s.reward.format = 0;
  s.reward.overlong = 1;
  s.reward.max_length = s.reward.cache_length = 24;
  return s;
}

std::vector<float> weights(RlTrainer& t) {
  const Arena<float>& a = t.policy.params.arena();
  return {a.data(), a.data() + a.size()};
}

double mean(const std::vector<double>& x, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += x[i];
  return s / double(to - from);
}

TEST(Rl, RewardForShortAnswersShortensThem) {
  RlSetup s = length_setup();
  s.rl.steps = 16;
  RlTrainer t(tiny_model(), s, nullptr);
  t.run({});
  const std::vector<double>& len = t.metrics.at("response_length");
  const std::vector<double>& reward = t.metrics.at("reward_mean");
  ASSERT_EQ(len.size(), 16u);
  EXPECT_GT(mean(len, 0, 3), 4.0) << "the fresh model already answers in a few bytes: the test shows nothing";
  EXPECT_LT(mean(len, 13, 16), 0.5 * mean(len, 0, 3));
  EXPECT_GT(mean(reward, 13, 16), mean(reward, 0, 3));
  for (double gap : t.metrics.at("logprob_gap")) EXPECT_LT(gap, 1e-4);  // recomputed = sampling-time
}

TEST(Rl, PpoRewardForShortAnswersShortensThem) {
  RlSetup s = length_setup();
  s.rl.algorithm = RlAlgorithm::Ppo;
  s.rl.steps = 16;
  RlTrainer t(tiny_model(), s, nullptr);
  t.run({});
  const std::vector<double>& len = t.metrics.at("response_length");
  EXPECT_GT(mean(len, 0, 3), 4.0);
  EXPECT_LT(mean(len, 13, 16), 0.5 * mean(len, 0, 3));
  EXPECT_EQ(t.metrics.at("value_loss").size(), 16u);
}

// Every completion runs past L_max = 1 byte: reward -1 on its last token, so
// (gamma = lambda = 1, beta = 0) every token's return is -1; the value head
// starts at v = 0 and must learn it.
// The same with the head on a critic of the policy's size, which alone the value loss trains.
TEST(Rl, PpoValueHeadLearnsTheReturn) {
  for (const ValueModel vm : {ValueModel::Head, ValueModel::Policy}) {
  RlSetup s = tiny_setup();
  s.rl.algorithm = RlAlgorithm::Ppo;
  s.rl.value_model = vm;
  s.rl.steps = 12;
  s.rl.lr = 1e-2;
  s.grpo.beta = 0;
  s.ppo.lam = 1;
  s.reward.accuracy = s.reward.format = 0;
  s.reward.overlong = 1;
  s.reward.max_length = s.reward.cache_length = 1;
  RlTrainer t(tiny_model(), s, nullptr);
  t.run({});
  const std::vector<double>& vl = t.metrics.at("value_loss");
  for (double r : t.metrics.at("reward_mean")) ASSERT_EQ(r, -1.0);
  EXPECT_NEAR(vl.front(), s.ppo.value_coef * 0.5, 1e-6);  // 0.5 (0 - (-1))^2, weighted
  EXPECT_LT(vl.back(), 0.25 * vl.front());
  EXPECT_LT(t.value_head.back(), -0.05f);  // the bias moved towards -1
  ASSERT_EQ(bool(t.critic), vm == ValueModel::Policy);
  if (t.critic) {
    // The critic moved; the policy's trunk got no value gradient: with the policy's
    // own advantages it moved too, but differently from the critic.
    const Arena<float>&c = t.critic->params.arena(), &p = t.policy.params.arena();
    EXPECT_NE(std::vector<float>(c.data(), c.data() + c.size()), std::vector<float>(p.data(), p.data() + p.size()));
  }
  }
}

TEST(Rl, EqualRewardsWithoutKlLeaveTheWeightsUnchanged) {
  RlSetup s = tiny_setup();  // a fresh model never answers an addition: every reward is 0
  s.grpo.beta = 0;
  s.rl.ppo_epochs = 2;
  s.rl.mini_batches = 2;
  RlTrainer t(tiny_model(), s, nullptr);
  const std::vector<float> before = weights(t);
  t.run({});
  for (double f : t.metrics.at("zero_std_fraction")) ASSERT_EQ(f, 1.0) << "some group earned a reward";
  EXPECT_EQ(before, weights(t));
  for (double l : t.metrics.at("loss")) EXPECT_EQ(l, 0.0);
}

TEST(Rl, OneEpochOneMiniBatchUpdatesAtTheSamplingPolicy) {
  RlSetup s = length_setup();
  s.rl.steps = 4;
  RlTrainer t(tiny_model(), s, nullptr);
  const std::vector<float> before = weights(t);
  t.run({});
  EXPECT_NE(before, weights(t));  // the rewards differ, so the policy moves
  for (double c : t.metrics.at("clip_fraction")) EXPECT_EQ(c, 0.0);  // rho = 1 exactly
  // With two epochs the second pass runs at pi_theta != pi_old and does clip.
  s.rl.ppo_epochs = 4;
  s.rl.lr = 2e-2;
  RlTrainer u(tiny_model(), s, nullptr);
  u.run({});
  double clipped = 0;
  for (double c : u.metrics.at("clip_fraction")) clipped += c;
  EXPECT_GT(clipped, 0.0);
}

TEST(Rl, ReferenceResetEveryStepMakesTheUpdatesKlZero) {
  RlSetup s = length_setup();
  s.rl.steps = 4;
  s.rl.ref_reset_every = 1;
  RlTrainer t(tiny_model(), s, nullptr);
  t.run({});
  for (double k : t.metrics.at("kl")) EXPECT_EQ(k, 0.0);
  // A fixed reference drifts away from the policy.
  s.rl.ref_reset_every = 0;
  RlTrainer u(tiny_model(), s, nullptr);
  u.run({});
  EXPECT_GT(u.metrics.at("kl").back(), 0.0);
}

// The KL diagnostics: with the reference equal to the policy every estimate
// and the exact KL are 0; once the policy has moved, k1 and k3 are unbiased
// estimates of the exact KL over the sampled tokens (Schulman: E[k1] = E[k3] =
// KL), so their means lie within a few standard errors of it, while k2 is
// biased upward by about the third cumulant (for small KL, k2 ~ KL too). Each
// token's exact KL is the full-vocabulary sum; the estimators see one token.
TEST(Rl, KlEstimatorsAgreeWithTheExactKlOnAverage) {
  RlSetup s = length_setup();
  s.rl.steps = 6;
  s.rl.prompts_per_step = 8;
  RlTrainer t(tiny_model(), s, nullptr);
  t.run({});
  const Metrics& m = t.metrics;
  for (const char* k : {"kl_exact", "kl_k1_mean", "kl_k2_mean", "kl_k3_mean", "kl_k1_std"})
    EXPECT_EQ(m.at(k)[0], 0.0) << k;  // step 1: the reference is the policy
  const size_t last = m.at("kl_exact").size() - 1;
  const double exact = m.at("kl_exact")[last];
  ASSERT_GT(exact, 1e-4) << "the policy did not move: the test shows nothing";
  const double tokens = m.at("response_length")[last] * s.rl.prompts_per_step * s.rollout.group_size;
  for (const char* k : {"k1", "k3"}) {
    const double mean = m.at(std::string("kl_") + k + "_mean")[last], sd = m.at(std::string("kl_") + k + "_std")[last];
    EXPECT_NEAR(mean, exact, 4 * sd / std::sqrt(tokens) + 1e-12) << k;
  }
  EXPECT_GE(m.at("kl_k3_mean")[last], 0.0);  // k3 >= 0 token by token
  EXPECT_GE(m.at("kl_k2_mean")[last], 0.0);
}

TEST(Rl, DynamicSamplingDropsGroupsWithoutSignal) {
  RlSetup s = tiny_setup();  // every reward 0
  s.rl.dynamic_sampling = true;
  s.rl.max_sampling_rounds = 2;
  RlTrainer t(tiny_model(), s, nullptr);
  const std::vector<float> before = weights(t);
  t.run({});
  for (double g : t.metrics.at("groups_trained")) EXPECT_EQ(g, 0.0);
  EXPECT_EQ(before, weights(t));
  s = length_setup();
  s.rl.dynamic_sampling = true;
  RlTrainer u(tiny_model(), s, nullptr);
  u.run({});
  for (double g : u.metrics.at("groups_trained")) EXPECT_LE(g, 4.0);
  EXPECT_GT(u.metrics.at("groups_trained").front(), 0.0);
}

TEST(Rl, SameNumbersForOneAndTwoThreads) {
  for (const int variant : {0, 1, 2}) {  // GRPO, PPO with a value head, PPO with a critic
    const RlAlgorithm algo = variant == 0 ? RlAlgorithm::Grpo : RlAlgorithm::Ppo;
    RlSetup s = length_setup();
    s.rl.algorithm = algo;
    s.rl.value_model = variant == 2 ? ValueModel::Policy : ValueModel::Head;
    s.rl.ppo_epochs = 2;
    s.rl.mini_batches = 2;
    if (algo == RlAlgorithm::Grpo) s.grpo.kl_estimator = KlEstimator::Exact;
    std::vector<std::vector<float>> w, head;
    std::vector<Metrics> m;
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      RlTrainer t(tiny_model(), s, nullptr);
      t.run({});
      w.push_back(weights(t));
      head.push_back(t.value_head);
      m.push_back(t.metrics);
    }
    omp_set_num_threads(2);
    EXPECT_EQ(w[0], w[1]) << name_of(algo);
    EXPECT_EQ(head[0], head[1]) << name_of(algo);
    for (const char* name : {"reward_mean", "response_length", "loss", "kl", "clip_fraction", "entropy", "grad_norm"})
      EXPECT_EQ(m[0].at(name), m[1].at(name)) << name << ", " << name_of(algo);
  }
}

// The solver's scratchpad as a completion: every step checks, each ending at
// the last byte of its line; a corrupted digit zeroes its own step.
TEST(Rl, ProcessStepRewardsOfASolverTrace) {
  TaskArgs task;
  task.kind = TaskKind::Addition;
  task.min_digits = task.max_digits = 3;
  const Problem p = make_problem(task, 7, 0);
  const std::string trace = solution_trace(p);
  Completion c;
  for (unsigned char b : trace) c.tokens.push_back(b);
  Completion wrong = c;
  const size_t eq = trace.find('=');
  wrong.tokens[eq + 1] = wrong.tokens[eq + 1] == '9' ? '8' : wrong.tokens[eq + 1] + 1;
  const StepRewards s = completion_step_rewards({p}, {c, wrong}, 2);
  ASSERT_EQ(s.step_offsets.size(), 3u);
  const size_t n = s.step_offsets[1];
  ASSERT_EQ(n, 3u);  // one step per digit position
  ASSERT_EQ(s.step_offsets[2], 2 * n);
  for (size_t j = 0; j < n; ++j) {
    EXPECT_EQ(s.reward[j], 1.0);
    EXPECT_EQ(trace[s.end_token[j] + 1], '\n') << j;  // the line's last byte, before its newline
  }
  EXPECT_EQ(s.reward[n], 0.0);  // the first step of the corrupted trace
  EXPECT_EQ(s.reward[n + 1] + s.reward[n + 2], 2.0);
}

// The completions' outcome rewards differ (the length reward), but a fresh model
// writes no <think> steps: under process supervision nothing moves.
TEST(Rl, ProcessSupervisionWithoutStepsLeavesTheWeightsUnchanged) {
  RlSetup s = length_setup();
  s.grpo.supervision = Supervision::Process;
  s.grpo.beta = 0;
  RlTrainer t(tiny_model(), s, nullptr);
  const std::vector<float> before = weights(t);
  t.run({});
  EXPECT_EQ(before, weights(t));
}

TEST(Rl, ArgsAreChecked) {
  RlArgs a;
  a.prompts_per_step = 4;
  a.mini_batches = 3;
  try {
    a.validate(tiny_model(), RolloutArgs{});
    FAIL() << "mini_batches must divide prompts_per_step";
  } catch (const ArgsError& e) {
    EXPECT_NE(std::string(e.what()).find("rl.mini_batches"), std::string::npos) << e.what();
  }
  a.mini_batches = 1;
  RolloutArgs r;
  r.max_new_tokens = 64;
  EXPECT_THROW(a.validate(tiny_model(), r), ArgsError);  // no room for the prompt
  RlSetup s = tiny_setup();
  s.rl.algorithm = RlAlgorithm::Ppo;
  s.grpo.kl_estimator = KlEstimator::Exact;  // PPO's KL is a per-token reward
  try {
    s.validate(tiny_model());
    FAIL() << "ppo with the exact KL";
  } catch (const ArgsError& e) {
    EXPECT_NE(std::string(e.what()).find("grpo.kl_estimator"), std::string::npos) << e.what();
  }
  const auto rejects = [](const RlSetup& bad, const char* key) {
    try {
      bad.validate(tiny_model());
      ADD_FAILURE() << "accepted; expected an error naming " << key;
    } catch (const ArgsError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  s = tiny_setup();
  s.grpo.supervision = Supervision::Process;
  s.grpo.kl_placement = KlPlacement::Reward;  // process advantages would drop the KL
  rejects(s, "grpo.kl_placement");
  s = tiny_setup();
  s.rl.dynamic_sampling = true;
  s.rollout.group_size = 1;  // every group would be dropped
  rejects(s, "rollout.group_size");
  s = tiny_setup();
  s.grpo.max_response_length = 8;  // shorter than the responses may be
  rejects(s, "grpo.max_response_length");
  EXPECT_NO_THROW(tiny_setup().validate(tiny_model()));
  s = tiny_setup();
  s.reward.language = 1;
  EXPECT_THROW(RlTrainer(tiny_model(), s, nullptr), std::invalid_argument);  // no vocabulary
}

}  // namespace
}  // namespace dslab
