// `dslab sim balance degeneracy | dynamics | replay ...`: the load-balancing
// simulator (review Sec. 2.2.3). Each writes one JSON file (to a temporary
// name, then renamed) and prints a short summary.
#include <H5Cpp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/commands.hpp"
#include "experiments/io.hpp"
#include "simulators/balance/degeneracy.hpp"
#include "simulators/balance/dynamics.hpp"
#include "simulators/balance/replay.hpp"

namespace dslab {
namespace {

using nlohmann::json;

// The JSON files of these commands are indented by one space.
constexpr int kIndent = 1;

// These problems are small: one thread is fastest, and the numbers are the
// same for any count.
void add_threads_option(CLI::App* cmd, int& threads) {
  cmd->add_option("--threads", threads, "OpenMP threads (same results for any count)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

void add_degeneracy(CLI::App& balance) {
  struct Options {
    balance::DegeneracyConfig c;
    int threads = 1;
    std::string json_path;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = balance.add_subcommand(
      "degeneracy", "The f_i*P_i loss at uniform P: its value (constant in f) and its gradient (not zero)");
  cmd->add_option("--experts", o->c.experts, "routed experts E")->capture_default_str();
  cmd->add_option("--topk", o->c.topk, "experts per token K (below E/2)")->capture_default_str();
  cmd->add_option("--tokens", o->c.tokens, "tokens T (even, T*K a multiple of E)")->capture_default_str();
  cmd->add_option("--alpha", o->c.alpha, "balance loss coefficient")->capture_default_str();
  cmd->add_option("--eps", o->c.epsilons, "logit scales of the uniform_p_skewed_f states")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--seed", o->c.seed, "random seed")->capture_default_str();
  cmd->add_option("--fd-samples", o->c.fd_samples,
                  "gradient coordinates checked by finite differences: all when tokens*experts <= this, "
                  "else this many at random")
      ->capture_default_str();
  add_threads_option(cmd, o->threads);
  cmd->add_option("--json", o->json_path, "write the results to this JSON file")->required();
  cmd->callback([o] {
    use_threads(o->threads);
    balance::DegeneracyReport rep;
    try {
      rep = balance::run_degeneracy(o->c);
    } catch (const std::invalid_argument& e) {
      throw BadInput(std::string("sim balance degeneracy: ") + e.what());
    }
    json doc = provenance_json("degeneracy", o->c.seed);
    doc["experts"] = o->c.experts;
    doc["topk"] = o->c.topk;
    doc["tokens"] = o->c.tokens;
    doc["alpha"] = o->c.alpha;
    doc["epsilons"] = o->c.epsilons;
    doc["fd_samples"] = o->c.fd_samples;
    doc["states"] = json::array();
    std::printf("%-32s %8s %10s %12s %10s %10s %10s\n", "state", "MaxVio", "loss", "spread(f)", "grad_norm",
                "fd_error", "alignment");
    for (const auto& s : rep.states) {
      doc["states"].push_back({{"name", s.name},
                               {"description", s.description},
                               {"load", s.load},
                               {"f", s.f},
                               {"P", s.P},
                               {"max_vio", s.max_vio},
                               {"loss", s.loss},
                               {"value_spread_over_f", s.value_spread_over_f},
                               {"value_grad_f_norm", s.value_grad_f_norm},
                               {"grad_norm", s.grad_norm},
                               {"grad_fd_error", s.grad_fd_error},
                               {"grad_closed_form_error", s.grad_closed_form_error},
                               {"fd_step", s.fd_step},
                               {"fd_checked", s.fd_checked},
                               {"alignment", s.alignment_defined ? json(s.alignment) : json(nullptr)},
                               {"push", s.push}});
      std::printf("%-32s %8.3f %10.6f %12.3e %10.3e %10.2e %10s\n", s.name.c_str(), s.max_vio, s.loss,
                  s.value_spread_over_f, s.grad_norm, s.grad_fd_error,
                  s.alignment_defined ? std::to_string(s.alignment).c_str() : "-");
    }
    write_json(o->json_path, doc, kIndent);
  });
}

void add_dynamics(CLI::App& balance) {
  struct Options {
    balance::DynamicsConfig c;
    std::string method = "none", score_func = "sigmoid", json_path;
    int threads = 1;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = balance.add_subcommand(
      "dynamics", "Train a router on skewed synthetic clusters with one balancing method; MaxVio and task loss");
  balance::DynamicsConfig& c = o->c;
  cmd->add_option("--method", o->method, "none, aux, sequence, device, bias-sign, bias-proportional")
      ->capture_default_str();
  cmd->add_option("--alpha", c.alpha, "coefficient of the aux, sequence or device loss")->capture_default_str();
  cmd->add_option("--gamma", c.gamma, "bias update rate of bias-sign / bias-proportional (Eq. (24))")
      ->capture_default_str();
  cmd->add_option("--experts", c.experts, "routed experts E")->capture_default_str();
  cmd->add_option("--topk", c.topk, "experts per token K")->capture_default_str();
  cmd->add_option("--dim", c.dim, "token feature dimension")->capture_default_str();
  cmd->add_option("--clusters", c.clusters, "token clusters")->capture_default_str();
  cmd->add_option("--zipf", c.zipf, "cluster frequency exponent: p(c) ~ (c+1)^-zipf")->capture_default_str();
  cmd->add_option("--preferred", c.preferred, "preferred experts per cluster (quality 1)")->capture_default_str();
  cmd->add_option("--popularity", c.popularity, "expert popularity exponent: weight (e+1)^-popularity")
      ->capture_default_str();
  cmd->add_option("--noise", c.noise, "feature noise around a cluster centre")->capture_default_str();
  cmd->add_option("--seq-topic", c.seq_topic, "share of a sequence's tokens from its topic cluster")
      ->capture_default_str();
  cmd->add_option("--quality-min", c.quality_min, "lowest quality of a non-preferred expert")->capture_default_str();
  cmd->add_option("--quality-max", c.quality_max, "highest quality of a non-preferred expert")->capture_default_str();
  cmd->add_option("--score-func", o->score_func, "softmax or sigmoid")->capture_default_str();
  cmd->add_option("--steps", c.steps, "SGD steps")->capture_default_str();
  cmd->add_option("--batch", c.batch, "tokens per step (a multiple of --seq-len)")->capture_default_str();
  cmd->add_option("--seq-len", c.seq_len, "tokens per sequence")->capture_default_str();
  cmd->add_option("--lr", c.lr, "SGD learning rate of the router")->capture_default_str();
  cmd->add_option("--init-std", c.init_std, "router weight init standard deviation")->capture_default_str();
  cmd->add_option("--devices", c.devices, "devices for the device method (contiguous placement)")
      ->capture_default_str();
  cmd->add_option("--val-tokens", c.val_tokens, "held-out tokens for MaxVio_global")->capture_default_str();
  cmd->add_option("--record-every", c.record_every, "record the training curves every N steps")
      ->capture_default_str();
  cmd->add_option("--seed", c.seed, "random seed")->capture_default_str();
  add_threads_option(cmd, o->threads);
  cmd->add_option("--json", o->json_path, "write the results to this JSON file")->required();
  cmd->callback([o] {
    use_threads(o->threads);
    balance::DynamicsConfig& c = o->c;
    balance::DynamicsReport rep;
    try {
      c.method = balance::parse_method(o->method);
      c.score_func = parse_score_func(o->score_func);
      rep = balance::run_dynamics(c);
    } catch (const std::invalid_argument& e) {
      throw BadInput(std::string("sim balance dynamics: ") + e.what());
    }
    json doc = provenance_json("dynamics", c.seed);
    doc["config"] = {{"method", o->method},       {"alpha", c.alpha},
                     {"gamma", c.gamma},          {"experts", c.experts},
                     {"topk", c.topk},            {"dim", c.dim},
                     {"clusters", c.clusters},    {"zipf", c.zipf},
                     {"preferred", c.preferred}, {"popularity", c.popularity},
                     {"noise", c.noise},          {"seq_topic", c.seq_topic},
                     {"quality_min", c.quality_min}, {"quality_max", c.quality_max},
                     {"score_func", o->score_func}, {"steps", c.steps},
                     {"batch", c.batch},          {"seq_len", c.seq_len},
                     {"lr", c.lr},                {"init_std", c.init_std},
                     {"devices", c.devices},      {"val_tokens", c.val_tokens},
                     {"record_every", c.record_every}};
    doc["curves"] = {{"step", rep.step},
                     {"maxvio_batch", rep.maxvio_batch},
                     {"task_loss", rep.task_loss},
                     {"balance_loss", rep.balance_loss}};
    doc["maxvio_batch_tail"] = rep.maxvio_batch_tail;
    doc["maxvio_global"] = rep.maxvio_global;
    doc["maxvio_batch_val"] = rep.maxvio_batch_val;
    doc["val_task_loss"] = rep.val_task_loss;
    doc["specialization"] = rep.specialization;
    doc["val_load_share"] = rep.val_load_share;
    doc["device_load_share"] = rep.device_load_share;
    doc["bias"] = rep.bias;
    write_json(o->json_path, doc, kIndent);
    std::printf("%s alpha=%g gamma=%g: MaxVio_global %.3f, MaxVio_batch (val) %.3f, (train, last 20%%) %.3f, "
                "task loss %.4f, specialization %.3f\n",
                o->method.c_str(), c.alpha, c.gamma, rep.maxvio_global, rep.maxvio_batch_val,
                rep.maxvio_batch_tail, rep.val_task_loss, rep.specialization);
  });
}


// Captured router logits [B, N, E] (float32) from a result file: `dataset` is
// a name under /captured, or a full path when it starts with '/'. Every way
// the file can be wrong is BadInput naming it.
Tensor3<float> read_router_logits_of(const std::string& file, const std::string& dataset);
Tensor3<float> read_router_logits(const std::string& file, const std::string& dataset) {
  try {
    return read_router_logits_of(file, dataset);
  } catch (const H5::Exception& e) {  // a damaged file: HDF5 fails past the checks below
    throw BadInput("sim balance replay: --logits file '" + file + "' cannot be read: " + e.getFuncName() + ": " +
                   e.getDetailMsg());
  }
}
Tensor3<float> read_router_logits_of(const std::string& file, const std::string& dataset) {
  namespace fs = std::filesystem;
  const std::string where = "sim balance replay: ";
  if (!fs::is_regular_file(file)) throw BadInput(where + "--logits file '" + file + "' does not exist");
  H5::Exception::dontPrint();
  H5::H5File h5;
  try {
    h5.openFile(file, H5F_ACC_RDONLY);
  } catch (const H5::Exception&) {
    throw BadInput(where + "--logits file '" + file + "' is not an HDF5 file");
  }
  const std::string path = dataset.starts_with('/') ? dataset : "/captured/" + dataset;
  bool found = false;
  try {
    found = h5.nameExists(path) && h5.childObjType(path) == H5O_TYPE_DATASET;
  } catch (const H5::Exception&) {  // a missing parent group
  }
  if (!found) {
    std::string names;
    if (h5.nameExists("/captured")) {
      H5::Group g = h5.openGroup("/captured");
      for (hsize_t i = 0; i < g.getNumObjs(); ++i) names += (names.empty() ? "" : ", ") + g.getObjnameByIdx(i);
    }
    throw BadInput(where + "no dataset '" + path + "' in '" + file + "'; /captured holds: " +
                   (names.empty() ? "nothing" : names) + " (train with train.capture = true to write them)");
  }
  H5::DataSet ds = h5.openDataSet(path);
  H5::DataSpace space = ds.getSpace();
  const int rank = space.getSimpleExtentNdims();
  if (rank != 3)
    throw BadInput(where + "'" + path + "' has rank " + std::to_string(rank) +
                   "; router logits must have rank 3: [n_batches, n_tokens, n_experts]");
  if (ds.getTypeClass() != H5T_FLOAT) throw BadInput(where + "'" + path + "' does not hold floating-point numbers");
  hsize_t dims[3];
  space.getSimpleExtentDims(dims);
  if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0)
    throw BadInput(where + "'" + path + "' is empty: shape [" + std::to_string(dims[0]) + ", " +
                   std::to_string(dims[1]) + ", " + std::to_string(dims[2]) + "]");
  Tensor3<float> logits({size_t(dims[0]), size_t(dims[1]), size_t(dims[2])});
  ds.read(logits.data(), H5::PredType::NATIVE_FLOAT);
  for (float v : logits)
    if (!std::isfinite(v)) throw BadInput(where + "'" + path + "' holds a value that is not finite");
  return logits;
}

void add_replay(CLI::App& balance) {
  struct Options {
    std::string logits_file, dataset, score_func, json_path;
    balance::ReplayGate gate;
    std::vector<std::string> rules = {"sign"};
    std::vector<double> gammas = {0.001};
    int threads = 1;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = balance.add_subcommand(
      "replay", "Route captured router logits through the auxiliary-loss-free bias controllers (Eq. (24))");
  cmd->add_option("--logits", o->logits_file, "result file (HDF5) with captured router logits")->required();
  cmd->add_option("--dataset", o->dataset,
                  "logits [n_batches, n_tokens, n_experts]: a name under /captured "
                  "(layers.<l>.ffn.router_logits) or a full path")
      ->required();
  cmd->add_option("--topk", o->gate.topk, "experts per token K (n_activated_experts)")->required();
  cmd->add_option("--score-func", o->score_func, "softmax or sigmoid (score_func)")->required();
  cmd->add_option("--groups", o->gate.groups, "expert groups (n_expert_groups)")->capture_default_str();
  cmd->add_option("--limited-groups", o->gate.limited_groups, "groups kept per token (n_limited_groups)")
      ->capture_default_str();
  cmd->add_option("--rule", o->rules, "bias update rules: sign, proportional (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--gamma", o->gammas, "bias update rates, each run with every rule (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  add_threads_option(cmd, o->threads);
  cmd->add_option("--json", o->json_path, "write the results to this JSON file")->required();
  cmd->callback([o] {
    use_threads(o->threads);
    std::vector<balance::Controller> controllers = {{}};  // "none" first: the captured run's own balance
    try {
      o->gate.score_func = parse_score_func(o->score_func);
      for (const auto& rule : o->rules)
        for (double g : o->gammas) controllers.push_back({true, parse_bias_update(rule), g});
      for (const auto& c : controllers) balance::validate(c);
    } catch (const std::invalid_argument& e) {
      throw BadInput(std::string("sim balance replay: ") + e.what());
    }
    const Tensor3<float> logits = read_router_logits(o->logits_file, o->dataset);
    try {
      balance::validate(o->gate, int(logits.shape(2)));
    } catch (const std::invalid_argument& e) {
      throw BadInput(std::string("sim balance replay: ") + e.what());
    }
    json doc = provenance_json("replay");
    doc["logits"] = o->logits_file;
    doc["dataset"] = o->dataset;
    doc["shape"] = {logits.shape(0), logits.shape(1), logits.shape(2)};
    doc["gate"] = {{"topk", o->gate.topk},
                   {"score_func", o->score_func},
                   {"groups", o->gate.groups},
                   {"limited_groups", o->gate.limited_groups}};
    doc["controllers"] = json::array();
    std::printf("%-28s %14s %14s %20s\n", "controller", "MaxVio_batch", "MaxVio_global", "global (final bias)");
    for (const auto& c : controllers) {
      const balance::ReplayReport rep = balance::replay(logits, o->gate, c);
      if (!c.has_bias) doc["load_before"] = rep.load;
      doc["controllers"].push_back({{"name", c.name()},
                                    {"rule", c.has_bias ? json(name_of(c.rule))
                                                        : json(nullptr)},
                                    {"gamma", c.has_bias ? json(c.gamma) : json(nullptr)},
                                    {"maxvio_batch", rep.maxvio_batch},
                                    {"maxvio_batch_mean", rep.maxvio_batch_mean},
                                    {"maxvio_global", rep.maxvio_global},
                                    {"load", rep.load},
                                    {"load_final", rep.load_final},
                                    {"maxvio_global_final", rep.maxvio_global_final},
                                    {"bias", rep.bias}});
      std::printf("%-28s %14.4f %14.4f %20.4f\n", c.name().c_str(), rep.maxvio_batch_mean, rep.maxvio_global,
                  rep.maxvio_global_final);
    }
    write_json(o->json_path, doc, kIndent);
  });
}

}  // namespace

void add_sim_balance_command(CLI::App& sim) {
  CLI::App* balance = sim.add_subcommand("balance", "MoE load balancing (Sec. 2.2.3): the f*P degeneracy, "
                                                    "router training dynamics, replay of captured logits");
  balance->require_subcommand(1);
  add_degeneracy(*balance);
  add_dynamics(*balance);
  add_replay(*balance);
}

}  // namespace dslab
