#include "simulators/pipeline/schedule.hpp"

#include <algorithm>
#include <array>
#include <deque>
#include <stdexcept>

namespace dslab::pipeline {

namespace {

constexpr std::array<ScheduleKind, 6> kAllSchedules = {
    ScheduleKind::GPipe, ScheduleKind::OneFOneB, ScheduleKind::Interleaved,
    ScheduleKind::ZB1P,  ScheduleKind::DualPipe, ScheduleKind::DualPipeV};

// Appends ops to one rank's list. Every output is sent right after its op
// unless the caller holds the send back (set_f_sent / set_b_sent).
class RankProgram {
 public:
  explicit RankProgram(std::vector<Op>& ops) : ops_(ops) {}

  int forward(ChunkRef c) {
    Op op;
    op.kind = OpKind::F;
    op.f = c;
    return push(op);
  }
  int backward(ChunkRef c, bool split) {
    Op op;
    op.kind = OpKind::B;
    op.b = c;
    op.split = split;
    if (split) pending_w_.push_back(c);
    return push(op);
  }
  // The oldest deferred weight gradient (first in, first out).
  void weight() {
    Op op;
    op.kind = OpKind::W;
    op.b = pending_w_.front();
    pending_w_.pop_front();
    push(op);
  }
  int forward_backward(ChunkRef f, ChunkRef b) {
    Op op;
    op.kind = OpKind::FB;
    op.f = f;
    op.b = b;
    return push(op);
  }
  int pending_weights() const { return static_cast<int>(pending_w_.size()); }
  int last() const { return static_cast<int>(ops_.size()) - 1; }
  Op& at(int i) { return ops_[i]; }

 private:
  int push(Op op) {
    const int i = static_cast<int>(ops_.size());
    if (op.kind == OpKind::F || op.kind == OpKind::FB) op.f_sent_after = i;
    if (op.kind == OpKind::B || op.kind == OpKind::FB) op.b_sent_after = i;
    ops_.push_back(op);
    return i;
  }
  std::vector<Op>& ops_;
  std::deque<ChunkRef> pending_w_;
};

// --- GPipe: all forwards, then all backwards. ---
void build_gpipe(Schedule& s) {
  const int M = s.spec.microbatches;
  for (int r = 0; r < s.ranks; ++r) {
    RankProgram prog(s.ops[r]);
    for (int m = 0; m < M; ++m) prog.forward({0, r, m});
    for (int m = 0; m < M; ++m) prog.backward({0, r, m}, false);
  }
}

// --- 1F1B (PipeDream-flush): pp-r-1 warm-up forwards, then one forward and
// one backward in turn, then the remaining backwards. ---
void build_1f1b(Schedule& s) {
  const int M = s.spec.microbatches;
  for (int r = 0; r < s.ranks; ++r) {
    RankProgram prog(s.ops[r]);
    const int warmup = std::min(s.ranks - r - 1, M);
    int f = 0, b = 0;
    for (int i = 0; i < warmup; ++i) prog.forward({0, r, f++});
    while (f < M) {
      prog.forward({0, r, f++});
      prog.backward({0, r, b++}, false);
    }
    while (b < M) prog.backward({0, r, b++}, false);
  }
}

// --- Interleaved 1F1B (Megatron-LM): rank r holds stages r, r+p, ..., r+(v-1)p.
// Virtual micro-batch k runs chunk (k mod pv) / p (backwards: the mirror
// chunk) of micro-batch (k / pv) p + k mod p. ---
void build_interleaved(Schedule& s) {
  const int p = s.ranks, v = s.spec.chunks, M = s.spec.microbatches;
  const int total = M * v;
  auto chunk_ref = [&](int r, int k, bool forward) {
    int chunk = (k % (p * v)) / p;
    if (!forward) chunk = v - 1 - chunk;
    const int mb = (k / (p * v)) * p + k % p;
    return ChunkRef{0, chunk * p + r, mb};
  };
  for (int r = 0; r < p; ++r) {
    RankProgram prog(s.ops[r]);
    // With exactly p micro-batches Megatron runs every forward first.
    const int warmup = M == p ? total : std::min((p - r - 1) * 2 + (v - 1) * p, total);
    for (int k = 0; k < warmup; ++k) prog.forward(chunk_ref(r, k, true));
    for (int i = 0; i < total - warmup; ++i) {
      prog.forward(chunk_ref(r, warmup + i, true));
      prog.backward(chunk_ref(r, i, false), false);
    }
    for (int k = total - warmup; k < total; ++k) prog.backward(chunk_ref(r, k, false), false);
  }
}

// --- ZB1P (ZB-H1): 1F1B whose rank r defers the weight gradients of its
// first r backwards; each later backward is split and followed by the oldest
// deferred W, the last r W's close the step. Rank 0 runs full backwards. ---
void build_zb1p(Schedule& s) {
  const int p = s.ranks, M = s.spec.microbatches;
  for (int r = 0; r < p; ++r) {
    RankProgram prog(s.ops[r]);
    const bool first = r == 0;
    int f = 0, b = 0;
    for (int i = 0; i < p - r - 1 && f < M; ++i) prog.forward({0, r, f++});
    for (int i = 0; i < r && f < M; ++i) {  // F B, weight gradient deferred
      prog.forward({0, r, f++});
      prog.backward({0, r, b++}, true);
    }
    auto backward_then_weight = [&] {
      prog.backward({0, r, b++}, !first);
      if (!first) prog.weight();
    };
    while (f < M) {
      prog.forward({0, r, f++});
      backward_then_weight();
    }
    while (b < M) backward_then_weight();
    while (prog.pending_weights() > 0) prog.weight();
  }
}

// --- DualPipe and DualPipeV: the official step(), phase by phase. ---
//
// Each rank holds two chunks, one per phase. DualPipe: phase p of rank r is
// direction p xor (r in the second half); the pipe of direction 0 has stage r
// on rank r, direction 1 the reverse. DualPipeV (a V over R = pp/2 devices):
// phase 0 is stage r, phase 1 stage 2R-1-r of one pipe. Sends follow the
// official code: an output goes out when the code sends it, which is held
// back in a few places (step 2 and the first pair of step 4).
class DualPipeRank {
 public:
  DualPipeRank(Schedule& s, int rank) : s_(s), prog_(s.ops[rank]) {
    const int R = s.ranks;
    v_shape_ = s.spec.kind == ScheduleKind::DualPipeV;
    for (int phase = 0; phase < 2; ++phase) {
      if (v_shape_) {
        pipe_[phase] = 0;
        stage_[phase] = phase == 0 ? rank : 2 * R - 1 - rank;
      } else {
        const int dir = phase ^ (rank >= R / 2 ? 1 : 0);
        pipe_[phase] = dir;
        stage_[phase] = dir == 0 ? rank : R - 1 - rank;
      }
    }
  }

  void forward_chunk(int phase, bool send = true) {
    const int i = prog_.forward(next_chunk(phase, next_f_));
    f_ops_[phase].push_back(i);
    if (!last_stage(phase)) prog_.at(i).f_sent_after = -1;  // until sent
    if (send) send_forward(phase);
  }
  void backward_chunk(int phase, bool zero_bubble = false, bool send = true) {
    const int i = prog_.backward(next_chunk(phase, next_b_), zero_bubble);
    b_ops_[phase].push_back(i);
    if (stage_[phase] > 0) prog_.at(i).b_sent_after = -1;  // until sent
    if (send) send_backward(phase);
  }
  // Forward of phase0 overlapped with backward of phase1; never split.
  void forward_backward_chunk(int phase0, int phase1) {
    const ChunkRef f = next_chunk(phase0, next_f_);
    const ChunkRef b = next_chunk(phase1, next_b_);
    const int i = prog_.forward_backward(f, b);
    f_ops_[phase0].push_back(i);
    b_ops_[phase1].push_back(i);
    if (!last_stage(phase0)) prog_.at(i).f_sent_after = -1;
    if (stage_[phase1] > 0) prog_.at(i).b_sent_after = -1;
    send_forward(phase0);
    send_backward(phase1);
  }
  void weight_chunk() { prog_.weight(); }

  // The oldest unsent forward output of `phase` leaves after the latest op.
  void send_forward(int phase) {
    if (last_stage(phase)) return;  // the loss stays here
    const int next = stage_[phase] + 1;
    const int i = f_ops_[phase][sent_f_[phase]++];
    const bool local = s_.pipes[pipe_[phase]].rank_of_stage[next] == s_.rank_of(prog_.at(i).f);
    prog_.at(i).f_sent_after = local ? i : prog_.last();
  }
  void send_backward(int phase) {
    if (stage_[phase] == 0) return;  // first stage: no input gradient to send
    const int i = b_ops_[phase][sent_b_[phase]++];
    const int prev = stage_[phase] - 1;
    const bool local = s_.pipes[pipe_[phase]].rank_of_stage[prev] == s_.rank_of(prog_.at(i).b);
    prog_.at(i).b_sent_after = local ? i : prog_.last();
  }

 private:
  bool last_stage(int phase) const { return stage_[phase] + 1 == s_.num_stages(pipe_[phase]); }
  ChunkRef next_chunk(int phase, std::array<int, 2>& counter) {
    return {pipe_[phase], stage_[phase], counter[phase]++};
  }
  Schedule& s_;
  RankProgram prog_;
  bool v_shape_ = false;
  std::array<int, 2> pipe_{}, stage_{};
  std::array<int, 2> next_f_{}, next_b_{}, sent_f_{}, sent_b_{};
  std::array<std::vector<int>, 2> f_ops_, b_ops_;
};

// The eight phases of step(). DualPipe: `half_rank` = min(r, R-1-r), chunks
// per direction M/2, the non-overlapped first pair on the two middle ranks.
// DualPipeV: the same with half_rank = r, all M chunks, the last rank special.
void build_dual(Schedule& s) {
  const bool v = s.spec.kind == ScheduleKind::DualPipeV;
  const int R = s.ranks;
  const int half_ranks = v ? R : R / 2;
  const int chunks = v ? s.spec.microbatches : s.spec.microbatches / 2;
  for (int r = 0; r < R; ++r) {
    DualPipeRank d(s, r);
    const int h = v ? r : std::min(r, R - 1 - r);
    const bool special = v ? r == R - 1 : (r == R / 2 - 1 || r == R / 2);

    // Step 1: nF0
    for (int i = 0; i < (half_ranks - h - 1) * 2; ++i) d.forward_chunk(0);
    // Step 2: nF0F1
    const int step_2 = h + 1;
    for (int i = 0; i < step_2; ++i) {
      d.forward_chunk(0, /*send=*/!v && special);
      d.forward_chunk(1, /*send=*/!special || i < step_2 - 1);
      if (v || !special) d.send_forward(0);
    }
    // Step 3: nB1W1F1, zero bubble
    for (int i = 0; i < half_ranks - h - 1; ++i) {
      d.backward_chunk(1, /*zero_bubble=*/true);
      d.weight_chunk();
      d.forward_chunk(1);
    }
    // Step 4 (main): nF0B1F1B0
    const int step_4 = chunks - 2 * half_ranks + h + 1;
    for (int i = 0; i < step_4; ++i) {
      if (i == 0 && special) {
        // Not overlapped, to shorten the bubble; the held-back sends go now.
        d.forward_chunk(0, /*send=*/false);
        d.send_forward(1);
        d.backward_chunk(1, /*zero_bubble=*/false, /*send=*/false);
        d.send_forward(0);
        d.send_backward(1);
      } else {
        d.forward_backward_chunk(0, 1);
      }
      d.forward_backward_chunk(1, 0);
    }
    // Step 5: nB1F1B0
    for (int i = 0; i < half_ranks - h - 1; ++i) {
      d.backward_chunk(1);
      d.forward_backward_chunk(1, 0);
    }
    // Step 6: nB1B0, the second half of the chunks with zero bubble
    const int step_6 = h + 1;
    bool zero_bubble = false;
    for (int i = 0; i < step_6; ++i) {
      if (i == step_6 / 2 && h % 2 == 1) zero_bubble = true;
      d.backward_chunk(1, zero_bubble);
      if (i == step_6 / 2 && h % 2 == 0) zero_bubble = true;
      d.backward_chunk(0, zero_bubble);
    }
    // Step 7: nWB0, zero bubble
    for (int i = 0; i < half_ranks - h - 1; ++i) {
      d.weight_chunk();
      d.backward_chunk(0, true);
    }
    // Step 8: nW
    for (int i = 0; i < h + 1; ++i) d.weight_chunk();
  }
}

void place_stages(Schedule& s) {
  const ScheduleSpec& sp = s.spec;
  switch (sp.kind) {
    case ScheduleKind::GPipe:
    case ScheduleKind::OneFOneB:
    case ScheduleKind::ZB1P: {
      s.ranks = sp.pp;
      Pipe p{{}, sp.microbatches};
      for (int st = 0; st < sp.pp; ++st) p.rank_of_stage.push_back(st);
      s.pipes = {p};
      break;
    }
    case ScheduleKind::Interleaved: {
      s.ranks = sp.pp;
      Pipe p{{}, sp.microbatches};
      for (int st = 0; st < sp.pp * sp.chunks; ++st) p.rank_of_stage.push_back(st % sp.pp);
      s.pipes = {p};
      s.chunk_size = 1.0 / sp.chunks;
      break;
    }
    case ScheduleKind::DualPipe: {
      s.ranks = sp.pp;
      Pipe down{{}, sp.microbatches / 2}, up{{}, sp.microbatches / 2};
      for (int st = 0; st < sp.pp; ++st) {
        down.rank_of_stage.push_back(st);
        up.rank_of_stage.push_back(sp.pp - 1 - st);
      }
      s.pipes = {down, up};
      break;
    }
    case ScheduleKind::DualPipeV: {
      s.ranks = sp.pp / 2;
      Pipe p{{}, sp.microbatches};
      for (int st = 0; st < sp.pp; ++st)
        p.rank_of_stage.push_back(st < s.ranks ? st : sp.pp - 1 - st);
      s.pipes = {p};
      break;
    }
  }
}

}  // namespace

std::string schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::GPipe: return "gpipe";
    case ScheduleKind::OneFOneB: return "1f1b";
    case ScheduleKind::Interleaved: return "interleaved";
    case ScheduleKind::ZB1P: return "zb1p";
    case ScheduleKind::DualPipe: return "dualpipe";
    case ScheduleKind::DualPipeV: return "dualpipev";
  }
  return "";
}

ScheduleKind parse_schedule(const std::string& name) {
  std::string allowed;
  for (ScheduleKind k : kAllSchedules) {
    if (schedule_name(k) == name) return k;
    allowed += (allowed.empty() ? "" : ", ") + schedule_name(k);
  }
  throw std::invalid_argument("unknown schedule '" + name + "'; allowed: " + allowed);
}

const char* op_name(OpKind kind) {
  switch (kind) {
    case OpKind::F: return "F";
    case OpKind::B: return "B";
    case OpKind::W: return "W";
    case OpKind::FB: return "FB";
  }
  return "";
}

int Schedule::dir(const ChunkRef& c) const {
  if (spec.kind == ScheduleKind::DualPipe) return c.pipe;
  if (spec.kind == ScheduleKind::DualPipeV) return c.stage >= ranks ? 1 : 0;
  return 0;
}

std::string check_spec(const ScheduleSpec& sp) {
  const std::string name = schedule_name(sp.kind);
  const std::string pp = std::to_string(sp.pp), m = std::to_string(sp.microbatches);
  if (sp.pp < 1) return "--pp must be at least 1 (got " + pp + ")";
  if (sp.microbatches < 1) return "--microbatches must be at least 1 (got " + m + ")";
  switch (sp.kind) {
    case ScheduleKind::GPipe:
    case ScheduleKind::OneFOneB:
    case ScheduleKind::ZB1P:
      return "";
    case ScheduleKind::Interleaved:
      if (sp.chunks < 1) return "--chunks (model chunks per rank) must be at least 1 (got " +
                                std::to_string(sp.chunks) + ")";
      if (sp.microbatches % sp.pp != 0)
        return "interleaved needs --microbatches to be a multiple of --pp (got " + m + " and " +
               pp + ")";
      return "";
    case ScheduleKind::DualPipe:
      if (sp.pp < 2 || sp.pp % 2 != 0)
        return "dualpipe needs an even --pp of at least 2 (got " + pp + ")";
      if (sp.microbatches % 2 != 0)
        return "dualpipe needs an even --microbatches, half per direction (got " + m + ")";
      if (sp.microbatches < 2 * sp.pp)
        return "dualpipe needs --microbatches >= 2 x ranks = " + std::to_string(2 * sp.pp) +
               " (got " + m + ")";
      return "";
    case ScheduleKind::DualPipeV:
      if (sp.pp < 4 || sp.pp % 2 != 0)
        return "dualpipev needs an even --pp (stages, two per device) of at least 4 (got " + pp +
               ")";
      if (sp.microbatches < sp.pp)
        return "dualpipev needs --microbatches >= 2 x devices = " + pp + " (got " + m + ")";
      return "";
  }
  return "unknown schedule " + name;
}

Schedule build_schedule(const ScheduleSpec& spec) {
  if (const std::string err = check_spec(spec); !err.empty()) throw std::invalid_argument(err);
  Schedule s;
  s.spec = spec;
  place_stages(s);
  s.ops.assign(s.ranks, {});
  switch (spec.kind) {
    case ScheduleKind::GPipe: build_gpipe(s); break;
    case ScheduleKind::OneFOneB: build_1f1b(s); break;
    case ScheduleKind::Interleaved: build_interleaved(s); break;
    case ScheduleKind::ZB1P: build_zb1p(s); break;
    case ScheduleKind::DualPipe:
    case ScheduleKind::DualPipeV: build_dual(s); break;
  }
  return s;
}

std::string check_op_lists(const Schedule& s) {
  // Where each chunk's F and B sit: [pipe][stage][mb] -> (rank, position).
  struct Seen {
    int f_rank = -1, f_pos = -1, b_rank = -1, b_pos = -1, w = 0;
    bool split = false;
  };
  std::vector<std::vector<std::vector<Seen>>> seen(s.pipes.size());
  for (size_t p = 0; p < s.pipes.size(); ++p)
    seen[p].assign(s.pipes[p].rank_of_stage.size(),
                   std::vector<Seen>(s.pipes[p].microbatches));
  auto name = [](const ChunkRef& c) {
    return "(pipe " + std::to_string(c.pipe) + ", stage " + std::to_string(c.stage) + ", mb " +
           std::to_string(c.mb) + ")";
  };
  auto valid = [&](const ChunkRef& c) {
    return c.pipe >= 0 && c.pipe < static_cast<int>(s.pipes.size()) && c.stage >= 0 &&
           c.stage < s.num_stages(c.pipe) && c.mb >= 0 && c.mb < s.pipes[c.pipe].microbatches;
  };
  for (int r = 0; r < s.ranks; ++r) {
    std::deque<ChunkRef> pending_w;
    const auto& ops = s.ops[r];
    for (int i = 0; i < static_cast<int>(ops.size()); ++i) {
      const Op& op = ops[i];
      const std::string where = "rank " + std::to_string(r) + " op " + std::to_string(i) + ": ";
      const bool has_f = op.kind == OpKind::F || op.kind == OpKind::FB;
      const bool has_b = op.kind == OpKind::B || op.kind == OpKind::FB;
      if (has_f) {
        if (!valid(op.f)) return where + "forward of an unknown chunk";
        if (s.rank_of(op.f) != r) return where + "F" + name(op.f) + " belongs to another rank";
        Seen& e = seen[op.f.pipe][op.f.stage][op.f.mb];
        if (e.f_rank >= 0) return where + "second F" + name(op.f);
        e.f_rank = r;
        e.f_pos = i;
        if (op.f_sent_after < i) return where + "F" + name(op.f) + " is never sent";
      }
      if (has_b) {
        if (!valid(op.b)) return where + "backward of an unknown chunk";
        if (s.rank_of(op.b) != r) return where + "B" + name(op.b) + " belongs to another rank";
        Seen& e = seen[op.b.pipe][op.b.stage][op.b.mb];
        if (e.b_rank >= 0) return where + "second B" + name(op.b);
        if (e.f_rank != r) return where + "B" + name(op.b) + " before its F";
        e.b_rank = r;
        e.b_pos = i;
        e.split = op.kind == OpKind::B && op.split;
        if (op.kind == OpKind::FB && op.split) return where + "an overlapped pair cannot split";
        if (e.split) pending_w.push_back(op.b);
        if (op.b_sent_after < i) return where + "B" + name(op.b) + " is never sent";
      }
      if (op.kind == OpKind::W) {
        if (pending_w.empty()) return where + "W with no deferred weight gradient";
        const ChunkRef& c = pending_w.front();
        if (c.pipe != op.b.pipe || c.stage != op.b.stage || c.mb != op.b.mb)
          return where + "W" + name(op.b) + " out of first-in-first-out order";
        ++seen[c.pipe][c.stage][c.mb].w;
        pending_w.pop_front();
      }
      const int n = static_cast<int>(ops.size());
      if (op.f_sent_after >= n || op.b_sent_after >= n) return where + "send after the last op";
    }
    if (!pending_w.empty()) return "rank " + std::to_string(r) + ": W" +
                                   name(pending_w.front()) + " never runs";
  }
  for (size_t p = 0; p < s.pipes.size(); ++p)
    for (int st = 0; st < s.num_stages(static_cast<int>(p)); ++st)
      for (int m = 0; m < s.pipes[p].microbatches; ++m) {
        const Seen& e = seen[p][st][m];
        const ChunkRef c{static_cast<int>(p), st, m};
        if (e.f_rank < 0) return "F" + name(c) + " missing";
        if (e.b_rank < 0) return "B" + name(c) + " missing";
        if (e.w != (e.split ? 1 : 0)) return "W" + name(c) + " count wrong";
      }
  return "";
}

}  // namespace dslab::pipeline
