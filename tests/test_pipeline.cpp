// The pipeline schedule simulator against closed forms: the DualPipe table
// (deepseek-ai/DualPipe README; FACTS.md), the 1F1B, ZB-H1 and interleaved
// 1F1B bubbles, and the dependency validity of every op list.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "simulators/pipeline/report.hpp"
#include "simulators/pipeline/simulator.hpp"
#include "tests/test_support.hpp"

namespace dslab::pipeline {
namespace {

constexpr double kTol = 1e-9;

Schedule make(ScheduleKind kind, int pp, int m, int chunks = 2) {
  ScheduleSpec spec;
  spec.kind = kind;
  spec.pp = pp;
  spec.microbatches = m;
  spec.chunks = chunks;
  return build_schedule(spec);
}

Costs uniform(double f, double b, double w, double fb = -1) {
  Costs c;
  c.f = {f};
  c.b = {b};
  c.w = {w};
  c.fb = fb;
  return c;
}

double max_peak(const SimResult& r) {
  double p = 0;
  for (const RankResult& rr : r.ranks) p = std::max(p, rr.peak_activations);
  return p;
}

// Random costs with a fixed seed; each test states the ranges it needs.
struct CostDraw {
  std::mt19937_64 rng{20240601};
  double operator()(double lo, double hi) { return std::uniform_real_distribution<>(lo, hi)(rng); }
};

// --- Op lists ------------------------------------------------------------

TEST(PipelineOpLists, EveryScheduleIsCompleteAndDeadlockFree) {
  const Costs unit = uniform(1, 2, 1);
  Costs slow_links = uniform(1.3, 2.1, 0.6);
  slow_links.p2p_latency = 0.7;
  for (int pp : {2, 4, 6, 8, 16})
    for (int m : {pp, 2 * pp, 2 * pp + 2, 3 * pp, 5 * pp}) {
      for (ScheduleKind k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB, ScheduleKind::ZB1P,
                             ScheduleKind::Interleaved, ScheduleKind::DualPipe,
                             ScheduleKind::DualPipeV}) {
        ScheduleSpec spec{k, pp, m, 3};
        if (!check_spec(spec).empty()) continue;
        const Schedule s = build_schedule(spec);
        SCOPED_TRACE(schedule_name(k) + " pp " + std::to_string(pp) + " m " + std::to_string(m));
        EXPECT_EQ(check_op_lists(s), "");
        for (const Costs& c : {unit, slow_links}) {
          const SimResult r = simulate(s, c);
          // Each rank's ops run one at a time, in list order, after their inputs.
          for (const RankResult& rr : r.ranks)
            for (size_t i = 1; i < rr.times.size(); ++i)
              EXPECT_GE(rr.times[i].start, rr.times[i - 1].end - kTol);
        }
      }
    }
}

TEST(PipelineOpLists, CheckerRejectsBrokenLists) {
  Schedule s = make(ScheduleKind::OneFOneB, 4, 8);
  Schedule swapped = s;  // rank 3 (last stage): its first B before its first F
  std::swap(swapped.ops[3][0], swapped.ops[3][1]);
  EXPECT_NE(check_op_lists(swapped).find("before its F"), std::string::npos);
  Schedule dropped = s;
  dropped.ops[1].pop_back();
  EXPECT_NE(check_op_lists(dropped).find("missing"), std::string::npos);

  // A consistent-looking list that waits forever: rank 0 runs its first
  // backward before the forwards the later stages need.
  Schedule deadlock = s;
  auto& ops = deadlock.ops[0];
  const auto b0 = std::find_if(ops.begin(), ops.end(), [](const Op& o) { return o.kind == OpKind::B; });
  std::rotate(ops.begin() + 1, b0, b0 + 1);
  for (int i = 0; i < static_cast<int>(ops.size()); ++i) {
    if (ops[i].kind == OpKind::F) ops[i].f_sent_after = i;
    if (ops[i].kind == OpKind::B) ops[i].b_sent_after = i;
  }
  EXPECT_EQ(check_op_lists(deadlock), "");
  EXPECT_THROW(simulate(deadlock, uniform(1, 2, 1)), std::runtime_error);
}

// The official step(): every rank runs M/2 forwards and backwards per
// direction (DualPipe) or M per half of the V, the W's match the
// zero-bubble B's, and only the middle ranks (DualPipe) or the last rank
// (DualPipeV) open the main phase with a forward and a backward not overlapped.
TEST(PipelineOpLists, DualPipeStructure) {
  for (ScheduleKind k : {ScheduleKind::DualPipe, ScheduleKind::DualPipeV}) {
    const int pp = 8, m = 20;
    const Schedule s = make(k, pp, m);
    const bool v = k == ScheduleKind::DualPipeV;
    ASSERT_EQ(s.ranks, v ? pp / 2 : pp);
    for (int r = 0; r < s.ranks; ++r) {
      int f[2] = {0, 0}, b[2] = {0, 0}, w = 0, split = 0, fb = 0;
      int unpaired_fb_at = -1;  // first F directly followed by B of the other direction
      const auto& ops = s.ops[r];
      for (size_t i = 0; i < ops.size(); ++i) {
        const Op& op = ops[i];
        if (op.kind == OpKind::F || op.kind == OpKind::FB) ++f[s.dir(op.f)];
        if (op.kind == OpKind::B || op.kind == OpKind::FB) ++b[s.dir(op.b)];
        if (op.kind == OpKind::FB) ++fb;
        if (op.kind == OpKind::W) ++w;
        if (op.kind == OpKind::B && op.split) ++split;
        if (unpaired_fb_at < 0 && op.kind == OpKind::F && i + 1 < ops.size() &&
            ops[i + 1].kind == OpKind::B && s.dir(ops[i + 1].b) != s.dir(op.f) && fb == 0 &&
            i > 0 && ops[i - 1].kind == OpKind::F)
          unpaired_fb_at = static_cast<int>(i);
      }
      const int per_dir = v ? m : m / 2;
      EXPECT_EQ(f[0], per_dir);
      EXPECT_EQ(f[1], per_dir);
      EXPECT_EQ(b[0], per_dir);
      EXPECT_EQ(b[1], per_dir);
      EXPECT_EQ(w, split);
      const bool special = v ? r == s.ranks - 1 : (r == pp / 2 - 1 || r == pp / 2);
      EXPECT_EQ(unpaired_fb_at >= 0, special) << "rank " << r;
      // Every rank starts with forwards of the pipe it feeds (direction 0 on
      // the first half, 1 on the second half of DualPipe).
      EXPECT_EQ(ops[0].kind, OpKind::F);
      EXPECT_EQ(s.dir(ops[0].f), !v && r >= pp / 2 ? 1 : 0);
    }
  }
}

// The review's "cut-in-half" (Sec. 2.4.1): DualPipeV over pp stages with M
// micro-batches is the first half of DualPipe's ranks with 2M, op for op and,
// with free point-to-point links, to the same times.
TEST(PipelineOpLists, DualPipeVIsDualPipeCutInHalf) {
  CostDraw draw;
  for (int pp : {4, 8, 12, 16})
    for (int m : {pp, pp + 1, 3 * pp}) {
      const double f = draw(0.5, 2), b = draw(0.5, 3), w = draw(0, 1) * b, fb = draw(0.6, 1.1) * (f + b);
      const Schedule full = make(ScheduleKind::DualPipe, pp, 2 * m);
      const Schedule half = make(ScheduleKind::DualPipeV, pp, m);
      const SimResult rf = simulate(full, uniform(f, b, w, fb));
      const SimResult rh = simulate(half, uniform(f, b, w, fb));
      for (int r = 0; r < half.ranks; ++r) {
        ASSERT_EQ(full.ops[r].size(), half.ops[r].size()) << "pp " << pp << " m " << m;
        for (size_t i = 0; i < half.ops[r].size(); ++i) {
          const Op& a = full.ops[r][i];
          const Op& c = half.ops[r][i];
          EXPECT_EQ(a.kind, c.kind);
          EXPECT_EQ(a.split, c.split);
          const bool fwd = a.kind == OpKind::F || a.kind == OpKind::FB;
          const bool bwd = a.kind != OpKind::F;
          if (fwd) {
            EXPECT_EQ(full.dir(a.f), half.dir(c.f));
            EXPECT_EQ(a.f.mb, c.f.mb);
          }
          if (bwd) {
            EXPECT_EQ(full.dir(a.b), half.dir(c.b));
            EXPECT_EQ(a.b.mb, c.b.mb);
          }
          EXPECT_NEAR(rf.ranks[r].times[i].start, rh.ranks[r].times[i].start, 1e-9 * rf.makespan);
        }
      }
      EXPECT_NEAR(rf.makespan, rh.makespan, 1e-9 * rf.makespan);
    }
}

// --- Closed forms: bubbles -----------------------------------------------

// 1F1B and GPipe with uniform costs: makespan M(F+B) + (PP-1)(F+B), any F, B.
TEST(PipelineClosedForm, OneFOneBAndGPipeMakespan) {
  CostDraw draw;
  for (ScheduleKind k : {ScheduleKind::OneFOneB, ScheduleKind::GPipe})
    for (int pp : {1, 2, 3, 4, 8, 16})
      for (int m : {1, pp, 2 * pp + 1, 4 * pp}) {
        const double f = draw(0.2, 2), b = draw(0.2, 4), w = draw(0, 1) * b;
        const SimResult r = simulate(make(k, pp, m), uniform(f, b, w));
        EXPECT_NEAR(r.makespan, m * (f + b) + (pp - 1) * (f + b), kTol)
            << schedule_name(k) << " pp " << pp << " m " << m;
        EXPECT_NEAR(r.bubble, (pp - 1) * (f + b), kTol);
        // Both bubble definitions: (PP-1)/M of the ideal, and idle over all ranks.
        EXPECT_NEAR(r.bubble_ratio, (pp - 1.0) / m, kTol);
        EXPECT_NEAR(r.idle_share, (pp - 1.0) / (m + pp - 1.0), kTol);
      }
}

// ZB-H1: makespan M(F+B) + (PP-1)(F+B-2W) when M >= PP, W <= F and W <= B - W
// (each deferred W fits the gap it is meant to fill).
TEST(PipelineClosedForm, ZB1PMakespan) {
  CostDraw draw;
  for (int pp : {1, 2, 3, 4, 8, 16})
    for (int m : {pp, pp + 1, 2 * pp, 5 * pp}) {
      const double f = draw(0.2, 2), b = draw(0.2, 4);
      const double w = draw(0, 1) * std::min(f, b / 2);
      const SimResult r = simulate(make(ScheduleKind::ZB1P, pp, m), uniform(f, b, w));
      EXPECT_NEAR(r.makespan, m * (f + b) + (pp - 1) * (f + b - 2 * w), kTol)
          << "pp " << pp << " m " << m << " F " << f << " B " << b << " W " << w;
    }
}

TEST(PipelineClosedForm, ZB1PNeedsShortW) {
  // W > F: the deferred W's no longer fit the cool-down gaps.
  const SimResult r = simulate(make(ScheduleKind::ZB1P, 8, 32), uniform(1, 3, 1.4));
  EXPECT_GT(r.bubble, 7 * (1 + 3 - 2 * 1.4) + 0.1);
}

// Interleaved 1F1B (Megatron): with chunk costs F, B the bubble is
// (PP-1)(F+B), i.e. (1/v)(PP-1)/M of the ideal M v (F+B).
TEST(PipelineClosedForm, InterleavedBubble) {
  CostDraw draw;
  for (int pp : {2, 4, 8})
    for (int v : {1, 2, 3, 4})
      for (int m : {pp, 2 * pp, 4 * pp}) {
        const double f = draw(0.2, 2), b = draw(0.2, 4);
        const SimResult r =
            simulate(make(ScheduleKind::Interleaved, pp, m, v), uniform(f, b, 0.5 * b));
        EXPECT_NEAR(r.ideal, m * v * (f + b), kTol);
        EXPECT_NEAR(r.bubble, (pp - 1) * (f + b), kTol) << "pp " << pp << " v " << v << " m " << m;
        EXPECT_NEAR(r.bubble_ratio, (pp - 1.0) / (v * m), kTol);
      }
}

// DualPipe and DualPipeV: (PP/2-1)(F&B + B - 3W). It is the idle time of the
// middle ranks (DualPipe) or of the last device (DualPipeV) exactly when
// F = B - W (a forward costs what a backward-for-input costs), W <= F and
// F&B >= F + W; with F&B >= F + B as well it is the whole pipeline's bubble
// (makespan minus the busiest rank's work).
TEST(PipelineClosedForm, DualPipeBubble) {
  CostDraw draw;
  for (ScheduleKind k : {ScheduleKind::DualPipe, ScheduleKind::DualPipeV})
    for (int pp : {4, 6, 8, 12, 16, 24, 32})
      for (int m : {2 * pp, 2 * pp + 2, 6 * pp}) {
        const double w = draw(0.1, 1.5);
        const double f = w + draw(0, 1);
        const double b = f + w;
        const double fb = draw(f + w, 1.3 * (f + b));
        const double table = (pp / 2 - 1) * (fb + b - 3 * w);
        const SimResult r = simulate(make(k, pp, m), uniform(f, b, w, fb));
        const int special = pp / 2 - 1;  // a middle rank, or DualPipeV's last device
        SCOPED_TRACE(schedule_name(k) + " pp " + std::to_string(pp) + " m " + std::to_string(m));
        EXPECT_NEAR(r.ranks[special].idle, table, 1e-9 * r.makespan);
        const SimResult r2 = simulate(make(k, pp, m), uniform(f, b, w, fb + f + b));
        EXPECT_NEAR(r2.bubble, (pp / 2 - 1) * (fb + f + b + b - 3 * w), 1e-9 * r2.makespan);
      }
}

TEST(PipelineClosedForm, DualPipeBubbleOutsideItsAssumptions) {
  // F != B - W: the table's bubble is no longer the simulated one.
  const SimResult r = simulate(make(ScheduleKind::DualPipe, 8, 32), uniform(1, 2, 0.5, 3));
  const double table = 3 * (3 + 2 - 3 * 0.5);
  EXPECT_GT(std::abs(r.ranks[3].idle - table), 0.5);
}

// --- Closed forms: memory and parameters ---------------------------------

TEST(PipelineClosedForm, ActivationsAndParameters) {
  for (int pp : {4, 8, 16}) {
    const int m = 4 * pp;
    const Costs c = uniform(1, 2, 1);
    EXPECT_EQ(max_peak(simulate(make(ScheduleKind::OneFOneB, pp, m), c)), pp);
    EXPECT_EQ(max_peak(simulate(make(ScheduleKind::ZB1P, pp, m), c)), pp);
    EXPECT_EQ(max_peak(simulate(make(ScheduleKind::GPipe, pp, m), c)), m);
    for (ScheduleKind k : {ScheduleKind::DualPipe, ScheduleKind::DualPipeV}) {
      const SimResult r = simulate(make(k, pp, m), c);
      for (const RankResult& rr : r.ranks) {
        EXPECT_EQ(rr.peak_activations, pp + 1) << schedule_name(k);  // the table's PP+1
        EXPECT_EQ(rr.parameters, 2);                                // the table's 2x
      }
    }
    for (int v : {2, 4}) {
      // Megatron's warm-up on rank 0: 2(PP-1) + (v-1)PP forwards, then one
      // more before the first backward frees one; chunks are 1/v of a stage.
      const SimResult r = simulate(make(ScheduleKind::Interleaved, pp, m, v), c);
      EXPECT_DOUBLE_EQ(r.ranks[0].peak_activations,
                       (2.0 * (pp - 1) + (v - 1) * pp + 1) / v);
      EXPECT_DOUBLE_EQ(r.ranks[0].parameters, 1.0);
    }
  }
}

// --- Timing model ----------------------------------------------------------

TEST(PipelineTiming, PointToPointLatencyOnOneMicroBatch) {
  // One micro-batch crosses PP-1 links forward and PP-1 back.
  Costs c = uniform(1.5, 2.5, 1);
  c.p2p_latency = 0.3;
  c.p2p_bandwidth = 4;
  c.p2p_bytes = 2;
  const SimResult r = simulate(make(ScheduleKind::OneFOneB, 6, 1), c);
  EXPECT_NEAR(r.makespan, 6 * 4.0 + 2 * 5 * (0.3 + 0.5), kTol);
}

TEST(PipelineTiming, PerStageCosts) {
  // A uniform list equals the scalar; a slow last stage of 1F1B with one
  // micro-batch adds its extra time once.
  const Schedule s = make(ScheduleKind::OneFOneB, 4, 1);
  Costs list = uniform(1, 2, 1);
  list.f = {1, 1, 1, 1};
  EXPECT_DOUBLE_EQ(simulate(s, list).makespan, simulate(s, uniform(1, 2, 1)).makespan);
  list.f = {1, 1, 1, 3};
  EXPECT_DOUBLE_EQ(simulate(s, list).makespan, 4 * 3.0 + 2);
  list.f = {1, 1, 1};
  EXPECT_NE(check_costs(list, s).find("one per stage (4)"), std::string::npos);
}

TEST(PipelineTiming, OverlappedPairClosedForms) {
  CommModel comm;
  comm.a2a = 0;
  EXPECT_DOUBLE_EQ(overlapped_pair_time(1.5, 2.5, comm), 4.0);
  // Each all-to-all half (a2a/2) shorter than the compute it hides behind:
  // nothing exposed.
  comm.a2a = 1.4;
  EXPECT_DOUBLE_EQ(overlapped_pair_time(1.5, 2.5, comm), 4.0);
  // No compute: the four all-to-alls run back to back on the comm stream.
  EXPECT_DOUBLE_EQ(overlapped_pair_time(0, 0, comm), 2 * 1.4);
  // Communication-bound: the comm stream's 2 a2a bound it from below; at
  // most the compute after the last all-to-all adds to it.
  comm.a2a = 10;
  const double t = overlapped_pair_time(1.5, 2.5, comm);
  EXPECT_GE(t, 2 * 10.0);
  EXPECT_LT(t, 2 * 10.0 + 4.0);
}

TEST(PipelineTiming, ExposedCommunication) {
  // Alone, every F and B exposes its all-to-all: 1F1B exposes 2 M C per rank.
  const int pp = 4, m = 16;
  Costs c = uniform(2, 4, 2);
  c.comm.a2a = 1;
  const SimResult one = simulate(make(ScheduleKind::OneFOneB, pp, m), c);
  EXPECT_NEAR(one.exposed_comm, pp * 2.0 * m * 1, kTol);
  // DualPipe hides it in every overlapped pair; only the chunks run alone expose it.
  const Schedule dual = make(ScheduleKind::DualPipe, pp, m);
  const SimResult r = simulate(dual, c);
  for (int k = 0; k < dual.ranks; ++k) {
    int alone = 0;
    for (const Op& op : dual.ops[k]) alone += op.kind == OpKind::F || op.kind == OpKind::B;
    EXPECT_NEAR(r.ranks[k].exposed_comm, alone * 1.0, kTol);
  }
  EXPECT_LT(r.exposed_comm, 0.5 * one.exposed_comm);
}

TEST(PipelineTiming, CommunicationSMsSlowCompute) {
  Costs c = uniform(1, 2, 1);
  c.comm.comm_sms = 20;  // V3: 20 of 132 SMs
  const SimResult r = simulate(make(ScheduleKind::OneFOneB, 4, 8), c);
  EXPECT_NEAR(r.makespan, (8 + 3) * 3.0 * 132 / 112, kTol);
}

// --- Validation --------------------------------------------------------------

TEST(PipelineValidation, RulesNameWhatIsAllowed) {
  auto err = [](ScheduleKind k, int pp, int m, int v = 2) {
    return check_spec(ScheduleSpec{k, pp, m, v});
  };
  EXPECT_NE(err(ScheduleKind::DualPipe, 7, 20).find("even --pp"), std::string::npos);
  EXPECT_NE(err(ScheduleKind::DualPipe, 8, 21).find("even --microbatches"), std::string::npos);
  EXPECT_NE(err(ScheduleKind::DualPipe, 8, 14).find(">= 2 x ranks = 16"), std::string::npos);
  EXPECT_NE(err(ScheduleKind::DualPipeV, 8, 6).find(">= 2 x devices = 8"), std::string::npos);
  EXPECT_NE(err(ScheduleKind::DualPipeV, 5, 10).find("even --pp"), std::string::npos);
  EXPECT_NE(err(ScheduleKind::Interleaved, 4, 6).find("multiple of --pp"), std::string::npos);
  EXPECT_NE(err(ScheduleKind::OneFOneB, 0, 6).find("--pp must be at least 1"), std::string::npos);
  EXPECT_EQ(err(ScheduleKind::DualPipe, 8, 16), "");
  EXPECT_EQ(err(ScheduleKind::DualPipeV, 8, 8), "");
  EXPECT_THROW(build_schedule(ScheduleSpec{ScheduleKind::DualPipe, 3, 12, 2}), std::invalid_argument);
  EXPECT_THROW(parse_schedule("dualpipe2"), std::invalid_argument);

  const Schedule s = make(ScheduleKind::OneFOneB, 4, 8);
  EXPECT_NE(check_costs(uniform(1, 2, 3), s).find("--cost-w must not exceed --cost-b"),
            std::string::npos);
  Costs both = uniform(1, 2, 1, 2.5);
  both.comm.a2a = 1;
  EXPECT_NE(check_costs(both, s).find("exclude each other"), std::string::npos);
  Costs sms = uniform(1, 2, 1);
  sms.comm.comm_sms = 132;
  EXPECT_NE(check_costs(sms, s).find("--comm-sms"), std::string::npos);
}

// --- Command line ------------------------------------------------------------

TEST(PipelineCli, WritesResultTraceAndChart) {
  const std::string dir = test::temp_dir("pipeline_cli");
  std::string out;
  const int rc = test::run_dslab(
      "sim pipeline --schedule dualpipe --pp 8 --microbatches 20 --cost-f 1 --cost-b 2 "
      "--cost-w 1 --json " + dir + "/r.json --trace " + dir + "/t.json --svg " + dir + "/g.svg",
      &out);
  ASSERT_EQ(rc, 0) << out;
  const std::string json = test::read_file(dir + "/r.json");
  for (const char* key : {"\"makespan\"", "\"bubble\"", "\"idle_share\"", "\"actual_vs_ideal\"",
                          "\"exposed_comm\"", "\"ranks\"", "\"peak_activations\"",
                          "\"parameters\"", "\"bdir\"", "\"bmb\"", "\"split\""})
    EXPECT_NE(json.find(key), std::string::npos) << key;
  // The table's bubble with F=1, B=2, W=1, F&B=3: (8/2-1)(3+2-3) = 6.
  EXPECT_NE(json.find("\"bubble\": {\"time\": 6,"), std::string::npos);
  EXPECT_NE(test::read_file(dir + "/t.json").find("\"traceEvents\""), std::string::npos);
  EXPECT_NE(test::read_file(dir + "/g.svg").find("<svg"), std::string::npos);
}

TEST(PipelineCli, BadInputExitsTwoNamingTheRule) {
  const std::string dir = test::temp_dir("pipeline_cli_bad");
  std::string out;
  EXPECT_EQ(test::run_dslab("sim pipeline --schedule dualpipe --pp 7 --microbatches 20 --json " +
                                dir + "/r.json",
                            &out),
            2);
  EXPECT_NE(out.find("dualpipe needs an even --pp"), std::string::npos) << out;
  EXPECT_EQ(test::run_dslab("sim pipeline --schedule zigzag --pp 4 --microbatches 8 --json " +
                                dir + "/r.json",
                            &out),
            2);
  EXPECT_NE(out.find("allowed: gpipe, 1f1b, interleaved, zb1p, dualpipe, dualpipev"),
            std::string::npos)
      << out;
  EXPECT_EQ(test::run_dslab("sim pipeline --schedule 1f1b --pp 4 --microbatches 8 --cost-w 5 "
                            "--json " + dir + "/r.json",
                            &out),
            2);
  EXPECT_NE(out.find("--cost-w must not exceed --cost-b"), std::string::npos) << out;
  EXPECT_EQ(test::run_dslab("sim pipeline --schedule dualpipe --pp 4 --microbatches 8 "
                            "--cost-fb -1 --json " + dir + "/r.json",
                            &out),
            2);
  EXPECT_NE(out.find("--cost-fb must be >= 0"), std::string::npos) << out;
  EXPECT_EQ(test::run_dslab("sim pipeline --schedule 1f1b --pp 4 --microbatches 8 --json " + dir +
                                "/no/such/dir/r.json",
                            &out),
            2);
  EXPECT_NE(out.find("cannot write"), std::string::npos) << out;
}

}  // namespace
}  // namespace dslab::pipeline
