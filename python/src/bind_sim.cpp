// The simulators from Python: pipeline schedules (simulators/pipeline; review
// Sec. 2.4.1: GPipe, 1F1B, interleaved, ZB1P, DualPipe, DualPipeV), the MoE
// balance studies (simulators/balance; Sec. 2.2.3: the f*P degeneracy, the
// router dynamics, the replay of router logits through Eq. (24)'s controllers)
// and the FP8 error simulator (simulators/fp8). Results come back as dicts with
// the same fields as `dslab sim ... --json`.
#include <pybind11/pybind11.h>

#include <cmath>

#include "python/src/arrays.hpp"
#include "simulators/balance/degeneracy.hpp"
#include "simulators/balance/dynamics.hpp"
#include "simulators/balance/replay.hpp"
#include "simulators/fp8/fp8_sim.hpp"
#include "simulators/pipeline/report.hpp"
#include "simulators/pipeline/schedule.hpp"
#include "simulators/pipeline/simulator.hpp"

namespace dslab::python {
namespace {

// A std::invalid_argument of a simulator's checks as a ValueError naming the function.
template <class F> auto checked(const char* fn, F&& f) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string(fn) + ": " + e.what());
  }
}

fp8::sim::DistConfig dist_config(const std::string& dist, double outlier_rate, double outlier_scale, int dof,
                                 const char* fn) {
  return checked(fn, [&] {
    fp8::sim::DistConfig d{.dist = fp8::sim::parse_distribution(dist), .outlier_rate = outlier_rate,
                           .outlier_scale = outlier_scale, .dof = dof};
    fp8::sim::validate(d);
    return d;
  });
}

py::dict matrix_error_out(const fp8::sim::MatrixError& e) {
  py::dict d;
  d["max_rel_error"] = e.max_rel_error;
  d["normwise_rel_error"] = e.normwise_rel_error;
  d["deepgemm_diff"] = e.deepgemm_diff;
  return d;
}

}  // namespace

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

  m.def("balance_degeneracy", [](int experts, int topk, int tokens, double alpha, const std::vector<double>& epsilons,
                                 uint64_t seed, int fd_samples) {
          namespace bl = dslab::balance;
          const bl::DegeneracyConfig c{.experts = experts, .topk = topk, .tokens = tokens, .alpha = alpha,
                                       .seed = seed, .epsilons = epsilons, .fd_samples = fd_samples};
          const bl::DegeneracyReport r = checked("dslab.balance_degeneracy", [&] {
            bl::validate(c);
            return bl::run_degeneracy(c);
          });
          py::list states;
          for (const bl::StateReport& s : r.states) {
            py::dict d;
            d["name"] = s.name;
            d["description"] = s.description;
            d["load"] = array_out(s.load);
            d["f"] = array_out(s.f);
            d["P"] = array_out(s.P);
            d["max_vio"] = s.max_vio;
            d["loss"] = s.loss;
            d["value_spread_over_f"] = s.value_spread_over_f;
            d["value_grad_f_norm"] = s.value_grad_f_norm;
            d["grad_norm"] = s.grad_norm;
            d["grad_fd_error"] = s.grad_fd_error;
            d["grad_closed_form_error"] = s.grad_closed_form_error;
            d["fd_step"] = s.fd_step;
            d["fd_checked"] = s.fd_checked;
            d["alignment"] = s.alignment_defined ? py::object(py::float_(s.alignment)) : py::object(py::none());
            d["push"] = array_out(s.push);
            states.append(d);
          }
          return states;
        }, py::arg("experts") = 16, py::arg("topk") = 2, py::arg("tokens") = 64, py::arg("alpha") = 1.0,
        py::arg("epsilons") = std::vector<double>{1.0, 0.1, 0.01}, py::arg("seed") = 1, py::arg("fd_samples") = 1024,
        "The f_i*P_i degeneracy of `dslab sim balance degeneracy`: for each routing state, f, P, the loss, its "
        "spread over f at this P, and the router gradient checked by finite differences (a list of dicts).");

  m.def("balance_replay", [](const py::handle& logits_in, int topk, const std::string& score_func, int groups,
                             int limited_groups, const std::string& rule, double gamma) {
          namespace bl = dslab::balance;
          const char* fn = "dslab.balance_replay";
          const Tensor3<float> logits = float32_in<3>(
              logits_in, {{-1, "n_batches"}, {-1, "n_tokens"}, {-1, "n_experts"}}, fn, "logits", "captured router logits");
          if (logits.size() == 0) throw py::value_error(std::string(fn) + ": logits is empty");
          for (float v : logits)
            if (!std::isfinite(v)) throw py::value_error(std::string(fn) + ": logits holds a value that is not finite");
          const bl::ReplayReport r = checked(fn, [&] {
            const bl::ReplayGate g{.topk = topk, .score_func = parse_score_func(score_func), .groups = groups,
                                   .limited_groups = limited_groups};
            bl::validate(g, int(logits.shape(2)));
            bl::Controller c;
            if (rule != "none") c = {.has_bias = true, .rule = parse_bias_update(rule), .gamma = gamma};
            bl::validate(c);
            return bl::replay(logits, g, c);
          });
          py::dict d;
          d["maxvio_batch"] = array_out(r.maxvio_batch);
          d["maxvio_batch_mean"] = r.maxvio_batch_mean;
          d["maxvio_global"] = r.maxvio_global;
          d["load"] = array_out(r.load);
          d["load_final"] = array_out(r.load_final);
          d["maxvio_global_final"] = r.maxvio_global_final;
          d["bias"] = array_out(r.bias);
          return d;
        }, py::arg("logits"), py::arg("topk"), py::arg("score_func") = "sigmoid", py::arg("groups") = 1,
        py::arg("limited_groups") = 1, py::arg("rule") = "sign", py::arg("gamma") = 0.001,
        "Router logits [n_batches, n_tokens, n_experts] (float32, e.g. dslab's captured ones) routed batch by batch "
        "with Eq. (24)'s bias controller (rule sign or proportional; none: b = 0), as one controller of "
        "`dslab sim balance replay`.");

  m.def("fp8_sample", [](const std::string& dist, size_t rows, size_t cols, uint64_t seed, uint64_t stream,
                         double outlier_rate, double outlier_scale, int dof) {
          const auto d = dist_config(dist, outlier_rate, outlier_scale, dof, "dslab.fp8_sample");
          return array_out(fp8::sim::sample(d, rows, cols, seed, stream));
        }, py::arg("dist") = "normal", py::arg("rows") = 512, py::arg("cols") = 1024, py::arg("seed") = 1,
        py::arg("stream") = 0, py::arg("outlier_rate") = 0.01, py::arg("outlier_scale") = 100.0, py::arg("dof") = 3,
        "A float32 [rows, cols] tensor of the FP8 simulator (normal, laplace, student-t, outliers, uniform): the "
        "same numbers as `dslab sim fp8` draws for this seed (stream 0: A, 1: B of a GEMM).");

  m.def("fp8_quantization_error", [](const py::handle& x_in, const fp8::QuantConfig& cfg) {
          const char* fn = "dslab.fp8_quantization_error";
          const Tensor2<float> x =
              float32_in<2>(x_in, {{-1, "rows"}, {-1, "cols"}}, fn, "x", "the quantizer's input type");
          const fp8::sim::QuantizeReport r = checked(fn, [&] {
            fp8::validate(cfg);
            return fp8::sim::measure_quantization(x, cfg);
          });
          py::dict d, g;
          g["count"] = r.group_sqnr_db.count, g["min"] = r.group_sqnr_db.min, g["median"] = r.group_sqnr_db.median;
          g["mean"] = r.group_sqnr_db.mean, g["max"] = r.group_sqnr_db.max;
          d["sqnr_db"] = r.sqnr_db;
          d["group_sqnr_db"] = g;
          d["exact_groups"] = r.exact_groups;
          d["normwise_rel_error"] = r.normwise_rel_error;
          d["max_rel_error"] = r.max_rel_error;
          d["flushed_fraction"] = r.flushed_fraction;
          d["saturated_fraction"] = r.saturated_fraction;
          d["groups"] = r.groups;
          return d;
        }, py::arg("x"), py::arg("config") = fp8::QuantConfig{},
        "The error of quantizing x [rows, cols] (float32) with config, as `dslab sim fp8 quantize`: SQNR (whole and "
        "per group), normwise and max relative errors, flushed and saturated fractions.");

  m.def("fp8_gemm_error", [](size_t k, size_t m_, size_t n, const fp8::QuantConfig& a, const fp8::QuantConfig& b,
                             const fp8::AccumulatorModel& model, const std::string& dist, uint64_t seed,
                             double outlier_rate, double outlier_scale, int dof) {
          const char* fn = "dslab.fp8_gemm_error";
          if (k == 0 || m_ == 0 || n == 0) throw py::value_error(std::string(fn) + ": k, m and n must be positive");
          const fp8::sim::GemmConfig cfg{.m = m_, .n = n, .a = a, .b = b, .model = model,
                                         .dist = dist_config(dist, outlier_rate, outlier_scale, dof, fn)};
          const fp8::sim::GemmReport r = checked(fn, [&] {
            fp8::validate(a);
            fp8::validate(b);
            return fp8::sim::measure_gemm(cfg, k, seed);
          });
          py::dict d;
          d["k"] = r.k;
          d["accumulation"] = matrix_error_out(r.accumulation);
          d["total"] = matrix_error_out(r.total);
          return d;
        }, py::arg("k"), py::arg("m") = 128, py::arg("n") = 128, py::arg("a_config") = fp8::QuantConfig{},
        py::arg("b_config") = fp8::QuantConfig{.granularity = fp8::Granularity::Block128x128},
        py::arg("model") = fp8::AccumulatorModel{}, py::arg("dist") = "normal", py::arg("seed") = 1,
        py::arg("outlier_rate") = 0.01, py::arg("outlier_scale") = 100.0, py::arg("dof") = 3,
        "One GEMM of random A [m, k], B [n, k] as `dslab sim fp8 gemm`: the accumulator model's error against the "
        "exact sum of the FP8 products (accumulation) and against the unquantized product (total).");
}

}  // namespace dslab::python
