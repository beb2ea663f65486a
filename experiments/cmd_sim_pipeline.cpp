// `dslab sim pipeline`: simulate one pipeline schedule and write its timeline.
#include <iostream>
#include <memory>
#include <stdexcept>

#include "experiments/commands.hpp"
#include "experiments/io.hpp"
#include "simulators/pipeline/report.hpp"

namespace dslab {

namespace {

struct PipelineOptions {
  std::string schedule;
  pipeline::ScheduleSpec spec;
  pipeline::Costs costs;
  std::string json, trace, svg;
};

[[noreturn]] void bad_input(const std::string& message) { exit_bad_input("sim pipeline", message); }

void run_pipeline(const PipelineOptions& o) {
  pipeline::ScheduleSpec spec = o.spec;
  pipeline::Schedule s;
  pipeline::SimResult r;
  try {
    spec.kind = pipeline::parse_schedule(o.schedule);
    s = pipeline::build_schedule(spec);
    r = pipeline::simulate(s, o.costs);
  } catch (const std::invalid_argument& e) {
    bad_input(e.what());
  }
  try {
    write_file_atomically(o.json, pipeline::result_json(s, o.costs, r));
    if (!o.trace.empty()) write_file_atomically(o.trace, pipeline::chrome_trace(s, r));
    if (!o.svg.empty()) write_file_atomically(o.svg, pipeline::gantt_svg(s, r));
  } catch (const std::runtime_error& e) {
    bad_input(e.what());
  }
  std::cout << pipeline::schedule_name(spec.kind) << " pp=" << spec.pp
            << " devices=" << s.ranks << " microbatches=" << spec.microbatches
            << ": makespan " << r.makespan << ", bubble " << r.bubble << " ("
            << r.bubble_ratio << " of ideal, idle share " << r.idle_share
            << "), exposed comm " << r.exposed_comm << "\n";
}

}  // namespace

void add_sim_pipeline_command(CLI::App& sim) {
  auto o = std::make_shared<PipelineOptions>();
  CLI::App* cmd = sim.add_subcommand(
      "pipeline", "Pipeline schedules (1F1B, ZB1P, interleaved, DualPipe, DualPipeV): "
                  "makespan, bubble, memory, Gantt chart");
  cmd->add_option("--schedule", o->schedule, "gpipe, 1f1b, interleaved, zb1p, dualpipe, dualpipev")
      ->required();
  cmd->add_option("--pp", o->spec.pp, "Pipeline stages (DualPipeV runs them on pp/2 devices)")
      ->required();
  cmd->add_option("--microbatches", o->spec.microbatches,
                  "Micro-batches in total (DualPipe: half in each direction)")
      ->required();
  cmd->add_option("--chunks", o->spec.chunks, "interleaved: model chunks per rank (v)")
      ->capture_default_str();
  cmd->add_option("--cost-f", o->costs.f, "Forward chunk time: one value or one per stage")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--cost-b", o->costs.b,
                  "Full backward chunk time (input + weight gradients): one value or one per stage")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--cost-w", o->costs.w,
                  "Weight-gradient part of the backward: one value or one per stage")
      ->delimiter(',')
      ->capture_default_str();
  CLI::Option* fb = cmd->add_option(
      "--cost-fb", o->costs.fb, "Overlapped forward+backward pair time (default: F + B of its chunks)");
  cmd->add_option("--p2p-latency", o->costs.p2p_latency, "Point-to-point latency per message")
      ->capture_default_str();
  cmd->add_option("--p2p-bandwidth", o->costs.p2p_bandwidth,
                  "Point-to-point bandwidth, bytes per time unit (0: unlimited)")
      ->capture_default_str();
  cmd->add_option("--p2p-bytes", o->costs.p2p_bytes, "Bytes of one activation or gradient message")
      ->capture_default_str();
  cmd->add_option("--comm", o->costs.comm.a2a,
                  "Expert-parallel all-to-all time (dispatch + combine) of one chunk")
      ->capture_default_str();
  cmd->add_option("--attn-share", o->costs.comm.attn_share,
                  "Share of a chunk's compute in attention (the rest is MLP)")
      ->capture_default_str();
  cmd->add_option("--sms", o->costs.comm.sms, "SMs per GPU")->capture_default_str();
  cmd->add_option("--comm-sms", o->costs.comm.comm_sms,
                  "SMs given to communication, slowing compute by sms/(sms-comm_sms) (V3: 20)")
      ->capture_default_str();
  cmd->add_option("--json", o->json, "Result file (JSON)")->required();
  cmd->add_option("--trace", o->trace, "Chrome trace JSON (Perfetto), 1 time unit = 1 ms");
  cmd->add_option("--svg", o->svg, "Gantt chart (SVG)");
  cmd->callback([o, fb] {
    if (fb->count() > 0 && !(o->costs.fb >= 0))
      bad_input("--cost-fb must be >= 0 (got " + fb->as<std::string>() + ")");
    run_pipeline(*o);
  });
}

}  // namespace dslab
