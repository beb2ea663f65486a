#include "simulators/pipeline/simulator.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <stdexcept>
#include <string>

namespace dslab::pipeline {

namespace {

constexpr double kUnknown = -1.0;

// Flat index of a chunk: pipes one after another, stage-major.
class ChunkIndex {
 public:
  explicit ChunkIndex(const Schedule& s) : s_(s) {
    for (const Pipe& p : s.pipes) {
      offset_.push_back(size_);
      size_ += static_cast<int>(p.rank_of_stage.size()) * p.microbatches;
    }
  }
  int operator()(const ChunkRef& c) const {
    return offset_[c.pipe] + c.stage * s_.pipes[c.pipe].microbatches + c.mb;
  }
  int size() const { return size_; }

 private:
  const Schedule& s_;
  std::vector<int> offset_;
  int size_ = 0;
};

double stage_cost(const std::vector<double>& v, int stage) {
  return v.size() == 1 ? v[0] : v[stage];
}

// Duration and compute time of one op under `costs`.
class CostModel {
 public:
  explicit CostModel(const Costs& c) : c_(c) {
    slowdown_ = static_cast<double>(c.comm.sms) / (c.comm.sms - c.comm.comm_sms);
  }
  double f_compute(const ChunkRef& x) const { return slowdown_ * stage_cost(c_.f, x.stage); }
  double b_compute(const ChunkRef& x, bool split) const {
    const double b = stage_cost(c_.b, x.stage);
    return slowdown_ * (split ? b - stage_cost(c_.w, x.stage) : b);
  }
  OpTime time(const Op& op) const {
    OpTime t;
    switch (op.kind) {
      case OpKind::F:
        t.compute = f_compute(op.f);
        t.end = t.compute + c_.comm.a2a;
        break;
      case OpKind::B:
        t.compute = b_compute(op.b, op.split);
        t.end = t.compute + c_.comm.a2a;
        break;
      case OpKind::W:
        t.compute = slowdown_ * stage_cost(c_.w, op.b.stage);
        t.end = t.compute;
        break;
      case OpKind::FB:
        if (c_.fb >= 0) {
          t.compute = t.end = c_.fb;
        } else {
          t.compute = f_compute(op.f) + b_compute(op.b, false);
          t.end = overlapped_pair_time(f_compute(op.f), b_compute(op.b, false), c_.comm);
        }
        break;
    }
    return t;  // start 0: a duration
  }
  double p2p() const {
    return c_.p2p_latency + (c_.p2p_bandwidth > 0 ? c_.p2p_bytes / c_.p2p_bandwidth : 0.0);
  }

 private:
  const Costs& c_;
  double slowdown_ = 1;
};

// Activation memory of one rank over its op list: a forward holds its chunk's
// activations from its start until the weight gradient is done (end of an
// unsplit B, or of the W of a split one). Ops run one after another, so the
// list order is the time order.
double peak_activations(const Schedule& s, int rank) {
  double live = 0, peak = 0;
  for (const Op& op : s.ops[rank]) {
    if (op.kind == OpKind::F || op.kind == OpKind::FB) live += s.chunk_size;
    peak = std::max(peak, live);
    const bool frees = op.kind == OpKind::W || op.kind == OpKind::FB ||
                       (op.kind == OpKind::B && !op.split);
    if (frees) live -= s.chunk_size;
  }
  return peak;
}

double parameters(const Schedule& s, int rank) {
  int held = 0;
  for (const Pipe& p : s.pipes)
    held += static_cast<int>(std::count(p.rank_of_stage.begin(), p.rank_of_stage.end(), rank));
  return held * s.chunk_size;  // DualPipe: its own stage and a copy of the mirror rank's
}

}  // namespace

double overlapped_pair_time(double f_compute, double b_compute, const CommModel& comm) {
  const double a = comm.attn_share, c = comm.a2a / 2;
  const double attn_f = a * f_compute, mlp_f = (1 - a) * f_compute;
  const double attn_b = a * b_compute, mlp_b = (1 - a) * b_compute;
  // Compute stream and communication stream, each part after its chunk's previous part.
  const double attn_f_end = attn_f;
  const double combine_b_end = c;
  const double dispatch_f_end = std::max(attn_f_end, combine_b_end) + c;
  const double mlp_b_end = std::max(attn_f_end, combine_b_end) + mlp_b;
  const double mlp_f_end = std::max(mlp_b_end, dispatch_f_end) + mlp_f;
  const double dispatch_b_end = std::max(dispatch_f_end, mlp_b_end) + c;
  const double attn_b_end = std::max(mlp_f_end, dispatch_b_end) + attn_b;
  const double combine_f_end = std::max(dispatch_b_end, mlp_f_end) + c;
  return std::max(attn_b_end, combine_f_end);
}

std::string check_costs(const Costs& c, const Schedule& s) {
  int stages = 0;
  for (const Pipe& p : s.pipes) stages = std::max(stages, static_cast<int>(p.rank_of_stage.size()));
  const std::string allowed = "one value or one per stage (" + std::to_string(stages) + ")";
  const std::pair<const char*, const std::vector<double>*> lists[] = {
      {"--cost-f", &c.f}, {"--cost-b", &c.b}, {"--cost-w", &c.w}};
  for (const auto& [name, v] : lists) {
    if (v->size() != 1 && static_cast<int>(v->size()) != stages)
      return std::string(name) + " has " + std::to_string(v->size()) + " values; allowed: " +
             allowed;
    for (double x : *v)
      if (!(x >= 0) || !std::isfinite(x))
        return std::string(name) + " must be finite and >= 0 (got " + std::to_string(x) + ")";
  }
  for (int st = 0; st < stages; ++st)
    if (stage_cost(c.w, st) > stage_cost(c.b, st))
      return "--cost-w must not exceed --cost-b (B is the full backward, W its weight part); "
             "stage " + std::to_string(st) + " has W " + std::to_string(stage_cost(c.w, st)) +
             " > B " + std::to_string(stage_cost(c.b, st));
  if (c.fb >= 0 && c.comm.a2a > 0)
    return "--cost-fb and --comm exclude each other: with --comm the overlapped pair's time "
           "follows from the chunks' compute and communication";
  const std::pair<const char*, double> scalars[] = {
      {"--p2p-latency", c.p2p_latency}, {"--p2p-bandwidth", c.p2p_bandwidth},
      {"--p2p-bytes", c.p2p_bytes}, {"--comm", c.comm.a2a}};
  for (const auto& [name, x] : scalars)
    if (!(x >= 0) || !std::isfinite(x))
      return std::string(name) + " must be finite and >= 0 (got " + std::to_string(x) + ")";
  if (c.p2p_bytes > 0 && c.p2p_bandwidth == 0)
    return "--p2p-bytes needs --p2p-bandwidth > 0";
  if (!(c.comm.attn_share >= 0 && c.comm.attn_share <= 1))
    return "--attn-share must lie in [0, 1] (got " + std::to_string(c.comm.attn_share) + ")";
  if (c.comm.sms < 1 || c.comm.comm_sms < 0 || c.comm.comm_sms >= c.comm.sms)
    return "--comm-sms must lie in [0, --sms) and --sms be >= 1 (got " +
           std::to_string(c.comm.comm_sms) + " of " + std::to_string(c.comm.sms) + ")";
  return "";
}

SimResult simulate(const Schedule& s, const Costs& costs) {
  if (const std::string err = check_costs(costs, s); !err.empty())
    throw std::invalid_argument(err);
  const CostModel model(costs);
  const ChunkIndex index(s);
  const double p2p = model.p2p();
  const int R = s.ranks;

  // When each chunk's forward output / input gradient is usable by its
  // consumer (the next / previous stage), and when its forward ended (the
  // last stage's backward starts from its own loss).
  std::vector<double> f_ready(index.size(), kUnknown), b_ready(index.size(), kUnknown),
      f_done(index.size(), kUnknown);
  // Outputs whose send is held back: sends[rank][i] lists (op, is_forward)
  // sent once op i of that rank ends.
  std::vector<std::vector<std::vector<std::pair<int, bool>>>> sends(R);
  for (int r = 0; r < R; ++r) {
    sends[r].resize(s.ops[r].size());
    for (int i = 0; i < static_cast<int>(s.ops[r].size()); ++i) {
      const Op& op = s.ops[r][i];
      if (op.f_sent_after >= 0) sends[r][op.f_sent_after].push_back({i, true});
      if (op.b_sent_after >= 0) sends[r][op.b_sent_after].push_back({i, false});
    }
  }
  auto has_next = [&](const ChunkRef& c) { return c.stage + 1 < s.num_stages(c.pipe); };
  auto next = [](ChunkRef c) { ++c.stage; return c; };
  auto prev = [](ChunkRef c) { --c.stage; return c; };

  // Earliest start allowed by the op's inputs, or kUnknown while one is missing.
  auto inputs_ready = [&](const Op& op) {
    double t = 0;
    if (op.kind == OpKind::F || op.kind == OpKind::FB) {
      if (op.f.stage > 0) {
        const double x = f_ready[index(prev(op.f))];
        if (x == kUnknown) return kUnknown;
        t = std::max(t, x);
      }
    }
    if (op.kind == OpKind::B || op.kind == OpKind::FB) {
      const double x = has_next(op.b) ? b_ready[index(next(op.b))] : f_done[index(op.b)];
      if (x == kUnknown) return kUnknown;
      t = std::max(t, x);
    }
    return t;  // a W follows its own B on this rank
  };

  SimResult res;
  res.ranks.resize(R);
  std::vector<int> pos(R, 0);
  std::vector<double> clock(R, 0.0);
  std::deque<int> work;
  std::vector<char> queued(R, 1);
  for (int r = 0; r < R; ++r) {
    work.push_back(r);
    res.ranks[r].times.resize(s.ops[r].size());
  }
  auto wake = [&](int r) {
    if (!queued[r]) {
      queued[r] = 1;
      work.push_back(r);
    }
  };
  // Publishes the outputs of rank r whose send point is op i, ending at t.
  auto deliver = [&](int r, int i, double t) {
    for (const auto& [j, forward] : sends[r][i]) {
      const Op& op = s.ops[r][j];
      if (forward) {
        if (!has_next(op.f)) continue;
        const int to = s.rank_of(next(op.f));
        f_ready[index(op.f)] = to == r ? res.ranks[r].times[j].end : t + p2p;
        wake(to);
      } else {
        if (op.b.stage == 0) continue;
        const int to = s.rank_of(prev(op.b));
        b_ready[index(op.b)] = to == r ? res.ranks[r].times[j].end : t + p2p;
        wake(to);
      }
    }
  };
  while (!work.empty()) {
    const int r = work.front();
    work.pop_front();
    queued[r] = 0;
    const auto& ops = s.ops[r];
    while (pos[r] < static_cast<int>(ops.size())) {
      const Op& op = ops[pos[r]];
      const double ready = inputs_ready(op);
      if (ready == kUnknown) break;
      OpTime t = model.time(op);
      t.start = std::max(clock[r], ready);
      t.end += t.start;
      res.ranks[r].times[pos[r]] = t;
      clock[r] = t.end;
      if (op.kind == OpKind::F || op.kind == OpKind::FB) f_done[index(op.f)] = t.end;
      deliver(r, pos[r], t.end);
      ++pos[r];
    }
  }
  for (int r = 0; r < R; ++r)
    if (pos[r] < static_cast<int>(s.ops[r].size())) {
      const Op& op = s.ops[r][pos[r]];
      throw std::runtime_error("the op lists deadlock: rank " + std::to_string(r) + " waits at op " +
                               std::to_string(pos[r]) + " (" + op_name(op.kind) + ")");
    }

  for (int r = 0; r < R; ++r) res.makespan = std::max(res.makespan, clock[r]);
  for (int r = 0; r < R; ++r) {
    RankResult& rr = res.ranks[r];
    double compute = 0;
    for (const OpTime& t : rr.times) {
      rr.busy += t.end - t.start;
      compute += t.compute;
    }
    rr.idle = res.makespan - rr.busy;
    rr.exposed_comm = rr.busy - compute;
    rr.peak_activations = peak_activations(s, r);
    rr.parameters = parameters(s, r);
    res.ideal = std::max(res.ideal, rr.busy);
    res.idle_share += rr.idle;
    res.exposed_comm += rr.exposed_comm;
  }
  res.bubble = res.makespan - res.ideal;
  res.bubble_ratio = res.ideal > 0 ? res.bubble / res.ideal : 0;
  res.idle_share = res.makespan > 0 ? res.idle_share / (R * res.makespan) : 0;
  return res;
}

}  // namespace dslab::pipeline
