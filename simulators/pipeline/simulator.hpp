// Discrete-event simulation of a pipeline schedule (review Sec. 2.4.1).
//
// Every rank runs its op list in order. An op starts when the rank is free and
// its inputs are there: a forward needs the previous stage's output, a
// backward the next stage's input gradient (the last stage its own forward),
// a W its own B. An output reaches another rank p2p_latency +
// p2p_bytes / p2p_bandwidth after the op that sends it ends; on the same rank
// it is there at once. Sends never block the sender.
//
// Expert-parallel communication (DualPipe's reason to exist): each F and B
// chunk is attention, all-to-all dispatch, MLP, all-to-all combine. Alone, a
// chunk waits for its own all-to-alls; in an overlapped FB pair each chunk's
// all-to-alls run on the communication stream while the other chunk computes.
// comm_sms of the sms SMs are given to communication, so compute runs
// sms / (sms - comm_sms) times slower.
#pragma once

#include <vector>

#include "simulators/pipeline/schedule.hpp"

namespace dslab::pipeline {

struct CommModel {
  double a2a = 0;           // dispatch + combine time of one chunk (F or B alike)
  double attn_share = 0.5;  // share of a chunk's compute in attention; the rest is MLP
  int sms = 132;
  int comm_sms = 0;         // V3: 20 of 132
};

struct Costs {
  // Per stage of a pipe, or one value for every stage. b is the full backward
  // (input and weight gradients); a split B costs b - w, its W costs w.
  std::vector<double> f{1.0}, b{2.0}, w{1.0};
  double fb = -1;  // an overlapped pair, when >= 0; else from the chunks (F + B without comm)
  double p2p_latency = 0;
  double p2p_bandwidth = 0;  // bytes per time unit; 0 means unlimited
  double p2p_bytes = 0;      // one activation (or gradient) message
  CommModel comm;
};

// Empty when the costs fit the schedule, else what is wrong and what is allowed.
std::string check_costs(const Costs& costs, const Schedule& s);

// Time of an overlapped pair on two streams. Compute stream: ATTN(F), MLP(B),
// MLP(F), ATTN(B); communication stream: COMBINE(B), DISPATCH(F),
// DISPATCH(B), COMBINE(F), each a2a / 2, each waiting for its own chunk's
// previous part (V3 report, Figure 4).
double overlapped_pair_time(double f_compute, double b_compute, const CommModel& comm);

struct OpTime {
  double start = 0;
  double end = 0;
  double compute = 0;  // the part of end - start spent computing; the rest is exposed comm
};

struct RankResult {
  std::vector<OpTime> times;   // one per op of the rank's list
  double busy = 0;             // sum of op durations
  double idle = 0;             // makespan - busy
  double exposed_comm = 0;     // busy minus compute
  double peak_activations = 0; // in one stage's activations for one micro-batch
  double parameters = 0;       // in one stage's parameters (1F1B holds 1)
};

struct SimResult {
  double makespan = 0;
  double ideal = 0;         // the busiest rank's busy time: the makespan without bubbles
  double bubble = 0;        // makespan - ideal, the time the DualPipe table gives
  double bubble_ratio = 0;  // bubble / ideal (actual vs ideal)
  double idle_share = 0;    // all ranks' idle time / (ranks x makespan)
  double exposed_comm = 0;  // summed over ranks
  std::vector<RankResult> ranks;
};

// Throws std::invalid_argument for bad costs, std::runtime_error naming the
// first blocked op when the op lists deadlock.
SimResult simulate(const Schedule& s, const Costs& costs);

}  // namespace dslab::pipeline
