// Pipeline-parallel schedules as per-rank op lists (review Sec. 2.4.1, Figure 4).
//
// A schedule places the stages of one or two pipes on ranks and gives every
// rank the order in which it runs its ops:
//   F   forward of one chunk (one stage, one micro-batch)
//   B   backward of one chunk; "split" when its weight gradient is deferred
//   W   a deferred weight gradient, taken first in, first out
//   FB  a forward chunk and a backward chunk run as one overlapped pair
// Schedules: GPipe, 1F1B, interleaved 1F1B (Megatron-LM, v chunks per rank),
// ZB1P (zero-bubble ZB-H1, Qi et al. 2023), DualPipe and DualPipeV (the op
// order of DeepSeek's official step(), phase by phase).
#pragma once

#include <string>
#include <vector>

namespace dslab::pipeline {

enum class ScheduleKind { GPipe, OneFOneB, Interleaved, ZB1P, DualPipe, DualPipeV };
enum class OpKind { F, B, W, FB };

// "gpipe", "1f1b", "interleaved", "zb1p", "dualpipe", "dualpipev".
std::string schedule_name(ScheduleKind kind);
// Inverse of schedule_name; throws std::invalid_argument listing the names allowed.
ScheduleKind parse_schedule(const std::string& name);
const char* op_name(OpKind kind);  // "F", "B", "W", "FB"

// Micro-batch `mb` of pipe `pipe` at position `stage` along that pipe.
struct ChunkRef {
  int pipe = 0;
  int stage = 0;
  int mb = 0;
};

struct Op {
  OpKind kind = OpKind::F;
  ChunkRef f;           // F, and the forward half of FB
  ChunkRef b;           // B, W (the B whose weight gradient it computes), backward half of FB
  bool split = false;   // B only: the weight gradient waits for a later W
  // Index (in this rank's list) of the op after which the official code sends
  // this op's output to the neighbouring rank: its own index unless a send is
  // held back. f_sent_after for the forward output, b_sent_after for the
  // input gradient.
  int f_sent_after = -1;
  int b_sent_after = -1;
};

// One pipe: the rank holding each stage, in the order a micro-batch visits them.
struct Pipe {
  std::vector<int> rank_of_stage;
  int microbatches = 0;
};

struct ScheduleSpec {
  ScheduleKind kind = ScheduleKind::OneFOneB;
  int pp = 4;            // stages, as in the DualPipe table (DualPipeV: pp/2 devices)
  int microbatches = 8;  // total over both directions, as the official step() counts
  int chunks = 2;        // interleaved only: model chunks per rank (v)
};

struct Schedule {
  ScheduleSpec spec;
  int ranks = 0;
  std::vector<Pipe> pipes;
  std::vector<std::vector<Op>> ops;  // [rank][position]
  // Size of one chunk's parameters and activations in units of one of the
  // pp stages (1, or 1/v for interleaved chunks).
  double chunk_size = 1.0;

  int num_stages(int pipe) const { return static_cast<int>(pipes[pipe].rank_of_stage.size()); }
  int rank_of(const ChunkRef& c) const { return pipes[c.pipe].rank_of_stage[c.stage]; }
  // Direction as DualPipe names it: 0 the pipe entering at rank 0, 1 the
  // reverse pipe (DualPipe) or the returning half of the V (DualPipeV).
  int dir(const ChunkRef& c) const;
};

// Empty when the spec is valid, else the rule it breaks and what is allowed.
std::string check_spec(const ScheduleSpec& spec);
// Builds the op lists; throws std::invalid_argument with check_spec's message.
Schedule build_schedule(const ScheduleSpec& spec);

// Empty when every rank's list is a complete, consistent program: each
// (pipe, stage, micro-batch) has exactly one F and one B on the rank holding
// that stage, a B follows its F, every split B has exactly one W after it and
// W's follow the split B's first in, first out, and every send point lies at
// or after its op. Deadlocks between ranks are found by the simulator.
std::string check_op_lists(const Schedule& s);

}  // namespace dslab::pipeline
