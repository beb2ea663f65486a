// The simulators from Python: pipeline schedules (simulators/pipeline; review
// Sec. 2.4.1: GPipe, 1F1B, interleaved, ZB1P, DualPipe, DualPipeV) and the MoE
// balance dynamics (simulators/balance; Sec. 2.2.3). Results come back as dicts
// with the same fields as `dslab sim ... --json`.
#include <pybind11/pybind11.h>

#include "python/src/arrays.hpp"
#include "simulators/balance/dynamics.hpp"
#include "simulators/pipeline/report.hpp"
#include "simulators/pipeline/schedule.hpp"
#include "simulators/pipeline/simulator.hpp"

namespace dslab::python {

void bind_sim(py::module_& m) {
  m.def("pipeline_simulate", [](const std::string& schedule, int pp, int microbatches, int chunks, double f, double b,
                                double w, double fb, double a2a, int comm_sms, double p2p_latency) {
          namespace pl = dslab::pipeline;
          pl::ScheduleSpec spec{.kind = pl::parse_schedule(schedule), .pp = pp, .microbatches = microbatches,
                                .chunks = chunks};
          if (const std::string why = pl::check_spec(spec); !why.empty())
            throw py::value_error("dslab.pipeline_simulate: " + why);
          const pl::Schedule s = pl::build_schedule(spec);
          pl::Costs c;
          c.f = {f}, c.b = {b}, c.w = {w}, c.fb = fb, c.p2p_latency = p2p_latency;
          c.comm.a2a = a2a, c.comm.comm_sms = comm_sms;
          if (const std::string why = pl::check_costs(c, s); !why.empty())
            throw py::value_error("dslab.pipeline_simulate: " + why);
          return py::module_::import("json").attr("loads")(pl::result_json(s, c, pl::simulate(s, c)));
        }, py::arg("schedule") = "dualpipe", py::arg("pp") = 4, py::arg("microbatches") = 8, py::arg("chunks") = 2,
        py::arg("f") = 1.0, py::arg("b") = 2.0, py::arg("w") = 1.0, py::arg("fb") = -1.0, py::arg("a2a") = 0.0,
        py::arg("comm_sms") = 0, py::arg("p2p_latency") = 0.0,
        "Simulates a pipeline schedule (gpipe, 1f1b, interleaved, zb1p, dualpipe, dualpipev) with per-op costs: "
        "the dict of `dslab sim pipeline --json` (makespan, bubble, per-rank op times, peak activations, ...).");

  m.def("balance_dynamics", [](const py::kwargs& kw) {
          namespace bl = dslab::balance;
          bl::DynamicsConfig c;
          for (const auto& [k, v] : kw) {
            const std::string key = py::str(k);
            if (key == "experts") c.experts = v.cast<int>();
            else if (key == "topk") c.topk = v.cast<int>();
            else if (key == "steps") c.steps = v.cast<int>();
            else if (key == "batch") c.batch = v.cast<int>();
            else if (key == "seq_len") c.seq_len = v.cast<int>();
            else if (key == "method") c.method = bl::parse_method(v.cast<std::string>());
            else if (key == "alpha") c.alpha = v.cast<double>();
            else if (key == "gamma") c.gamma = v.cast<double>();
            else if (key == "lr") c.lr = v.cast<double>();
            else if (key == "val_tokens") c.val_tokens = v.cast<int>();
            else if (key == "record_every") c.record_every = v.cast<int>();
            else if (key == "seed") c.seed = v.cast<uint64_t>();
            else
              throw py::type_error("dslab.balance_dynamics: no option '" + key +
                                   "'; options: experts, topk, steps, batch, seq_len, method, alpha, gamma, lr, "
                                   "val_tokens, record_every, seed (the rest as `dslab sim balance dynamics`' defaults)");
          }
          bl::validate(c);
          const bl::DynamicsReport r = bl::run_dynamics(c);
          py::dict d;
          d["step"] = array_out(std::vector<long>(r.step.begin(), r.step.end()));
          d["maxvio_batch"] = array_out(r.maxvio_batch);
          d["task_loss"] = array_out(r.task_loss);
          d["balance_loss"] = array_out(r.balance_loss);
          d["maxvio_batch_tail"] = r.maxvio_batch_tail;
          d["maxvio_global"] = r.maxvio_global;
          d["maxvio_batch_val"] = r.maxvio_batch_val;
          d["val_task_loss"] = r.val_task_loss;
          d["specialization"] = r.specialization;
          d["val_load_share"] = array_out(r.val_load_share);
          d["bias"] = array_out(r.bias);
          return d;
        },
        "The MoE load-balancing dynamics of `dslab sim balance dynamics` (method none, aux, sequence, device, "
        "bias-sign, bias-proportional): MaxVio and losses along the steps, and the held-out balance.");
}

}  // namespace dslab::python
