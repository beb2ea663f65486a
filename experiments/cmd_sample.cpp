// dslab sample RESULT.h5 --prompt TEXT --tokens N [--temperature T --top-k K --seed S]
// Generates text from the weights in a result file (or a checkpoint).
#include <filesystem>
#include <iostream>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/results.hpp"
#include "reference/sampler.hpp"

namespace dslab {

namespace {

struct SampleOptions {
  std::string path, prompt = "\n";
  SampleArgs args;
  int threads = 0;
};

void sample(const SampleOptions& o) {
  if (!std::filesystem::exists(o.path))
    throw BadInput("'" + o.path + "' does not exist; give a result file written by dslab train");
  const RunConfig cfg = parse_run_config_text(read_config_text(o.path));
  Transformer<float> model(cfg.model);
  read_model(o.path, model);
  use_threads(o.threads);
  std::cout << o.prompt << generate(model, o.prompt, o.args) << std::endl;
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto o = std::make_shared<SampleOptions>();
  auto* cmd = app.add_subcommand("sample", "Generate text from a trained model");
  cmd->add_option("checkpoint", o->path, "Result file or checkpoint (HDF5) of dslab train")->required();
  cmd->add_option("--prompt", o->prompt, "Text to continue");
  cmd->add_option("--tokens", o->args.tokens, "Bytes to generate")
      ->check(CLI::Range(1, 1000000))->capture_default_str();
  cmd->add_option("--temperature", o->args.temperature, "Softmax temperature; 0 = greedy")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  cmd->add_option("--top-k", o->args.top_k, "Sample among the k most likely bytes; 0 = all")
      ->check(CLI::Range(0, 256))->capture_default_str();
  cmd->add_option("--seed", o->args.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--threads", o->threads, "OpenMP threads")->check(CLI::Range(1, 1024));
  cmd->callback([o] { sample(*o); });
}

}  // namespace dslab
