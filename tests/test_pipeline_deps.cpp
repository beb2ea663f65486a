// The pipeline simulator's input dependencies (simulators/pipeline/simulator.hpp):
// every F starts no earlier than the previous stage's output of its
// micro-batch arrives, every B (and each half of an overlapped FB) no earlier
// than the next stage's input gradient arrives, every W after its own B, an
// output sent at its send point arriving p2p_latency + bytes / bandwidth
// later on another rank and at once on the same rank. Producer / consumer
// pairs come from the schedule's own op lists (ChunkRefs and send points).
// Oracles: that rule, checked op by op on every schedule kind with
// non-uniform per-stage costs and latency; and small hand-built op lists
// whose times are worked out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "simulators/pipeline/simulator.hpp"

namespace dslab::pipeline {
namespace {

constexpr double kTol = 1e-9;

using Key = std::tuple<int, int, int>;  // pipe, stage, micro-batch
Key key(const ChunkRef& c) { return {c.pipe, c.stage, c.mb}; }
std::string name(const ChunkRef& c) {
  return "(pipe " + std::to_string(c.pipe) + ", stage " + std::to_string(c.stage) + ", mb " +
         std::to_string(c.mb) + ")";
}

struct Where {
  int rank = -1, pos = -1;
};

// For every op of `s` under result `r`: its start is no earlier than each
// input's arrival, and (tight) equals the latest of its rank's previous op's
// end and its inputs' arrivals. Returns the number of input edges checked.
int check_dependencies(const Schedule& s, const SimResult& r, double p2p) {
  std::map<Key, Where> f_of, b_of;  // who computes each chunk's forward / backward
  for (int rank = 0; rank < s.ranks; ++rank)
    for (int i = 0; i < int(s.ops[rank].size()); ++i) {
      const Op& op = s.ops[rank][i];
      if (op.kind == OpKind::F || op.kind == OpKind::FB) f_of[key(op.f)] = {rank, i};
      if (op.kind == OpKind::B || op.kind == OpKind::FB) b_of[key(op.b)] = {rank, i};
    }
  auto time = [&](Where w) { return r.ranks[w.rank].times[w.pos]; };
  // When the output of op `w` (forward output if `forward`) is there for `to`.
  auto arrival = [&](Where w, bool forward, int to) {
    const Op& op = s.ops[w.rank][w.pos];
    if (to == w.rank) return time(w).end;
    const int sent_after = forward ? op.f_sent_after : op.b_sent_after;
    EXPECT_GE(sent_after, w.pos);
    return r.ranks[w.rank].times[sent_after].end + p2p;
  };
  int edges = 0;
  for (int rank = 0; rank < s.ranks; ++rank) {
    std::vector<ChunkRef> split_bs;  // W's take these first in, first out
    size_t next_w = 0;
    for (int i = 0; i < int(s.ops[rank].size()); ++i) {
      const Op& op = s.ops[rank][i];
      const OpTime& t = r.ranks[rank].times[i];
      SCOPED_TRACE("rank " + std::to_string(rank) + " op " + std::to_string(i) + " " + op_name(op.kind));
      double ready = i > 0 ? r.ranks[rank].times[i - 1].end : 0.0;
      EXPECT_GE(t.start, ready - kTol) << "overlaps the rank's previous op";
      auto need = [&](double at, const std::string& what) {
        EXPECT_GE(t.start, at - kTol) << "starts before " << what << " arrives at " << at;
        ready = std::max(ready, at);
        ++edges;
      };
      if (op.kind == OpKind::F || op.kind == OpKind::FB) {
        if (op.f.stage > 0) {
          ChunkRef prev = op.f;
          --prev.stage;
          if (!f_of.count(key(prev))) { ADD_FAILURE() << "no forward of " << name(prev); return -1; }
          need(arrival(f_of[key(prev)], true, rank), "the forward output of " + name(prev));
        }
      }
      if (op.kind == OpKind::B || op.kind == OpKind::FB) {
        if (op.b.stage + 1 < s.num_stages(op.b.pipe)) {
          ChunkRef next = op.b;
          ++next.stage;
          if (!b_of.count(key(next))) { ADD_FAILURE() << "no backward of " << name(next); return -1; }
          need(arrival(b_of[key(next)], false, rank), "the input gradient of " + name(next));
        } else {
          if (!f_of.count(key(op.b))) { ADD_FAILURE() << "no forward of " << name(op.b); return -1; }
          const Where own = f_of[key(op.b)];
          EXPECT_EQ(own.rank, rank);
          need(time(own).end, "its own forward " + name(op.b));
        }
        if (op.kind == OpKind::B && op.split) split_bs.push_back(op.b);
      }
      if (op.kind == OpKind::W) {
        if (next_w >= split_bs.size()) { ADD_FAILURE() << "a W without a split B"; return -1; }
        EXPECT_EQ(key(op.b), key(split_bs[next_w]));
        need(time(b_of[key(split_bs[next_w])]).end, "its B");
        ++next_w;
      }
      // Nothing else holds an op back: it starts as soon as rank and inputs allow.
      EXPECT_NEAR(t.start, ready, kTol) << "start is not the later of its rank being free and its inputs arriving";
    }
  }
  return edges;
}

// Costs that differ from stage to stage, with W < B everywhere.
Costs random_costs(int stages, std::mt19937_64& rng, double latency) {
  std::uniform_real_distribution<> u(0.3, 2.5);
  Costs c;
  c.f.clear();
  c.b.clear();
  c.w.clear();
  for (int st = 0; st < stages; ++st) {
    c.f.push_back(u(rng));
    c.b.push_back(c.f.back() + u(rng));
    c.w.push_back(c.b.back() * std::uniform_real_distribution<>(0.1, 0.9)(rng));
  }
  c.p2p_latency = latency;
  return c;
}

int max_stages(const Schedule& s) {
  int n = 0;
  for (int p = 0; p < int(s.pipes.size()); ++p) n = std::max(n, s.num_stages(p));
  return n;
}

TEST(PipelineDependencies, EveryScheduleWaitsForItsInputsUnderNonUniformCosts) {
  std::mt19937_64 rng(20240602);
  for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB, ScheduleKind::Interleaved,
                         ScheduleKind::ZB1P, ScheduleKind::DualPipe, ScheduleKind::DualPipeV}) {
    int checked_specs = 0;
    for (int pp : {2, 4, 6, 8})
      for (int m : {pp, 2 * pp, 2 * pp + 2, 3 * pp}) {
        ScheduleSpec spec{k, pp, m, 2};
        if (!check_spec(spec).empty()) continue;
        ++checked_specs;
        const Schedule s = build_schedule(spec);
        SCOPED_TRACE(schedule_name(k) + " pp " + std::to_string(pp) + " m " + std::to_string(m));
        const int stages = max_stages(s);
        for (int trial = 0; trial < 3; ++trial) {
          SCOPED_TRACE("trial " + std::to_string(trial));
          Costs c = random_costs(stages, rng, 0.37 + 0.5 * trial);
          if (trial == 1) {  // expert-parallel all-to-alls, overlapped inside FB pairs
            c.comm.a2a = 0.6;
            c.comm.comm_sms = 20;
          }
          if (trial == 2) {  // messages with a size on a finite link; a fixed FB time
            c.p2p_bandwidth = 4.0;
            c.p2p_bytes = 1.0;
            c.fb = 1.7;
          }
          const double p2p = c.p2p_latency + (c.p2p_bandwidth > 0 ? c.p2p_bytes / c.p2p_bandwidth : 0);
          const SimResult r = simulate(s, c);
          const int edges = check_dependencies(s, r, p2p);
          EXPECT_GT(edges, 0);
        }
      }
    EXPECT_GT(checked_specs, 0) << schedule_name(k);
  }
}

// The check above has something to bite on: under these costs some FB pairs
// of DualPipe do wait for an input (they start
// later than their rank is free).
TEST(PipelineDependencies, SomeOverlappedPairsWaitForAnInput) {
  std::mt19937_64 rng(7);
  for (ScheduleKind k : {ScheduleKind::DualPipe, ScheduleKind::DualPipeV}) {
    const Schedule s = build_schedule(ScheduleSpec{k, 8, 20, 2});
    const Costs c = random_costs(max_stages(s), rng, 0.9);
    const SimResult r = simulate(s, c);
    int pairs = 0, held_by_gradient = 0;
    for (int rank = 0; rank < s.ranks; ++rank)
      for (int i = 1; i < int(s.ops[rank].size()); ++i) {
        const Op& op = s.ops[rank][i];
        if (op.kind != OpKind::FB) continue;
        ++pairs;
        held_by_gradient += r.ranks[rank].times[i].start > r.ranks[rank].times[i - 1].end + kTol;
      }
    EXPECT_GT(pairs, 0) << schedule_name(k);
    EXPECT_GT(held_by_gradient, 0) << schedule_name(k) << ": no FB pair ever waits";
  }
}

// --- Hand-built op lists, times worked out by hand ---------------------------

Op f_op(int stage, int mb, int self) {
  Op op;
  op.kind = OpKind::F;
  op.f = {0, stage, mb};
  op.f_sent_after = self;
  return op;
}
Op b_op(int stage, int mb, int self) {
  Op op;
  op.kind = OpKind::B;
  op.b = {0, stage, mb};
  op.b_sent_after = self;
  return op;
}
Op fb_op(int stage, int f_mb, int b_mb, int self) {
  Op op;
  op.kind = OpKind::FB;
  op.f = {0, stage, f_mb};
  op.b = {0, stage, b_mb};
  op.f_sent_after = self;
  op.b_sent_after = self;
  return op;
}

// One pipe of two stages, stage s on rank s.
Schedule two_stages(int microbatches, std::vector<std::vector<Op>> ops) {
  Schedule s;
  s.ranks = 2;
  s.pipes = {Pipe{{0, 1}, microbatches}};
  s.ops = std::move(ops);
  return s;
}

Costs hand_costs(std::vector<double> f, std::vector<double> b, double latency, double fb = -1) {
  Costs c;
  c.f = std::move(f);
  c.b = std::move(b);
  c.w = {0.0};
  c.fb = fb;
  c.p2p_latency = latency;
  return c;
}

void expect_times(const SimResult& r, int rank, const std::vector<std::pair<double, double>>& want) {
  ASSERT_EQ(r.ranks[rank].times.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(r.ranks[rank].times[i].start, want[i].first, kTol) << "rank " << rank << " op " << i;
    EXPECT_NEAR(r.ranks[rank].times[i].end, want[i].second, kTol) << "rank " << rank << " op " << i;
  }
}

TEST(PipelineDependencies, HandBuiltLateForwardInputDelaysTheForward) {
  // f = {1, 3}, b = {2, 4}, latency 0.5. Rank 0: F 0-1, its output reaches
  // rank 1 at 1.5; F 1.5-4.5; the last stage's B follows its own F at once,
  // 4.5-8.5; its gradient reaches rank 0 at 9; B 9-11.
  const Schedule s = two_stages(1, {{f_op(0, 0, 0), b_op(0, 0, 1)}, {f_op(1, 0, 0), b_op(1, 0, 1)}});
  const SimResult r = simulate(s, hand_costs({1, 3}, {2, 4}, 0.5));
  expect_times(r, 0, {{0, 1}, {9, 11}});
  expect_times(r, 1, {{1.5, 4.5}, {4.5, 8.5}});
  EXPECT_NEAR(r.makespan, 11, kTol);
  EXPECT_GT(check_dependencies(s, r, 0.5), 0);
}

TEST(PipelineDependencies, HandBuiltBackwardHalfOfAPairWaitsForItsGradient) {
  // Rank 0: F(mb0), FB(F mb1, B mb0), B(mb1); rank 1: F0, B0, F1, B1.
  // f = 1, b = 2, FB = 2.5, latency 0.5.
  //   r0 F0 0-1 -> r1 at 1.5; r1 F0 1.5-2.5, B0 2.5-4.5 -> r0 at 5.
  //   r0 FB: rank free at 1 and the forward half needs nothing, but the
  //   backward half needs mb0's gradient, there at 5: FB 5-7.5 -> r1 at 8.
  //   r1 F1 8-9, B1 9-11 -> r0 at 11.5; r0 B1 11.5-13.5.
  const Schedule s = two_stages(
      2, {{f_op(0, 0, 0), fb_op(0, 1, 0, 1), b_op(0, 1, 2)},
          {f_op(1, 0, 0), b_op(1, 0, 1), f_op(1, 1, 2), b_op(1, 1, 3)}});
  const SimResult r = simulate(s, hand_costs({1}, {2}, 0.5, 2.5));
  expect_times(r, 0, {{0, 1}, {5, 7.5}, {11.5, 13.5}});
  expect_times(r, 1, {{1.5, 2.5}, {2.5, 4.5}, {8, 9}, {9, 11}});
  EXPECT_NEAR(r.makespan, 13.5, kTol);
  EXPECT_GT(check_dependencies(s, r, 0.5), 0);
}

TEST(PipelineDependencies, HandBuiltForwardHalfOfAPairWaitsForItsInput) {
  // Rank 0: F0, F1, B0, B1; rank 1: F0, FB(F mb1, B mb0), B1.
  // f = {3, 0.5}, b = 2, FB = 2.5, latency 0.5.
  //   r0 F0 0-3 -> r1 at 3.5, F1 3-6 -> r1 at 6.5.
  //   r1 F0 3.5-4; FB: its backward half (the last stage's mb0) is ready at
  //   4, its forward half needs mb1's input, there at 6.5: FB 6.5-9, mb0's
  //   gradient reaches r0 at 9.5; B1 follows its own forward (the pair) 9-11 -> 11.5.
  //   r0 B0 9.5-11.5, B1 11.5-13.5.
  const Schedule s = two_stages(
      2, {{f_op(0, 0, 0), f_op(0, 1, 1), b_op(0, 0, 2), b_op(0, 1, 3)},
          {f_op(1, 0, 0), fb_op(1, 1, 0, 1), b_op(1, 1, 2)}});
  const SimResult r = simulate(s, hand_costs({3, 0.5}, {2}, 0.5, 2.5));
  expect_times(r, 0, {{0, 3}, {3, 6}, {9.5, 11.5}, {11.5, 13.5}});
  expect_times(r, 1, {{3.5, 4}, {6.5, 9}, {9, 11}});
  EXPECT_GT(check_dependencies(s, r, 0.5), 0);
}

TEST(PipelineDependencies, HandBuiltHeldBackSendDelaysTheConsumer) {
  // Rank 0: F0 (its output sent only after F1), F1, B0, B1; rank 1: F0, B0, F1, B1.
  // f = 1, b = 2, latency 0.5.
  //   r0 F0 0-1, F1 1-2; both outputs leave at 2 and arrive at 2.5.
  //   r1 F0 2.5-3.5, B0 3.5-5.5 -> r0 at 6, F1 5.5-6.5, B1 6.5-8.5 -> r0 at 9.
  //   r0 B0 6-8, B1 9-11.
  const Schedule s = two_stages(
      2, {{f_op(0, 0, 1), f_op(0, 1, 1), b_op(0, 0, 2), b_op(0, 1, 3)},
          {f_op(1, 0, 0), b_op(1, 0, 1), f_op(1, 1, 2), b_op(1, 1, 3)}});
  const SimResult r = simulate(s, hand_costs({1}, {2}, 0.5));
  expect_times(r, 0, {{0, 1}, {1, 2}, {6, 8}, {9, 11}});
  expect_times(r, 1, {{2.5, 3.5}, {3.5, 5.5}, {5.5, 6.5}, {6.5, 8.5}});
  EXPECT_GT(check_dependencies(s, r, 0.5), 0);
}

}  // namespace
}  // namespace dslab::pipeline
