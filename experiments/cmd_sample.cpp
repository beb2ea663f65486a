// dslab sample RESULT.h5 --prompt TEXT --tokens N [--temperature T --top-k K --seed S]
//                        [--speculative [--json FILE]]
// Generates text from the weights in a result file (or a checkpoint), or in a
// Hugging Face DeepseekV3 checkpoint folder (config.json + safetensors,
// experiments/hf_checkpoint.hpp) whose vocabulary is dslab's 256 bytes.
// --speculative decodes with the model's MTP modules as drafters (Sec. 2.3;
// reference/sampler.hpp) and reports, per depth, how many drafts the main model
// accepted, and the tokens per main-model forward.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/hf_checkpoint.hpp"
#include "experiments/io.hpp"
#include "experiments/results.hpp"
#include "experiments/run_loop.hpp"
#include "reference/sampler.hpp"

namespace dslab {

namespace {

struct SampleOptions {
  std::string path, prompt = "\n", json;
  SampleArgs args;
  bool speculative = false;
  int threads = 0;
};

nlohmann::ordered_json stats_json(const SpeculativeStats& s) {
  nlohmann::ordered_json j;
  j["depth"] = s.judged.size();
  j["tokens"] = s.tokens;
  j["main_forwards"] = s.forwards;
  j["tokens_per_forward"] = s.tokens_per_forward();
  j["accept_rate"] = nlohmann::ordered_json::array();
  for (int k = 1; k <= int(s.judged.size()); ++k) j["accept_rate"].push_back(s.accept_rate(k));
  j["judged"] = s.judged;
  j["accepted"] = s.accepted;
  return j;
}

void report(const SpeculativeStats& s) {
  for (int k = 1; k <= int(s.judged.size()); ++k)
    std::fprintf(stderr, "depth %d: accepted %ld of %ld drafts (%.1f%%)\n", k, long(s.accepted[k - 1]),
                 long(s.judged[k - 1]), 100.0 * s.accept_rate(k));
  std::fprintf(stderr, "%ld tokens in %ld main-model forwards: %.3f tokens per forward\n",
               long(s.tokens), long(s.forwards), s.tokens_per_forward());
}

void sample(const SampleOptions& o) {
  if (!std::filesystem::exists(o.path))
    throw BadInput("'" + o.path + "' does not exist; give a result file written by dslab train");
  if (!o.json.empty() && !o.speculative) throw BadInput("--json reports --speculative: add it");
  const bool hf = std::filesystem::is_directory(o.path) || o.path.ends_with(".safetensors");
  const ModelArgs args = hf ? hf_checkpoint_args(o.path)
                            : parse_run_config_text(reading_input([&] { return read_config_text(o.path); })).model;
  if (hf && args.vocab_size != 256)
    throw BadInput("dslab sample reads and writes bytes (vocab_size 256); '" + o.path + "' has vocab_size " +
                   std::to_string(args.vocab_size) + ": load it with import dslab (dslab.Model.from_hf) and its tokenizer");
  if (o.speculative && args.mtp.depth == 0)
    throw BadInput("--speculative needs a model trained with mtp.depth > 0; '" + o.path +
                   "' has no MTP modules");
  Transformer<float> model(args);
  if (hf) read_hf_checkpoint(o.path, model);
  else reading_input([&] { read_model(o.path, model); });
  use_threads(o.threads);
  if (!o.speculative) {
    std::cout << o.prompt << generate(model, o.prompt, o.args) << std::endl;
    return;
  }
  SpeculativeStats stats;
  std::cout << o.prompt << generate_speculative(model, o.prompt, o.args, &stats) << std::endl;
  report(stats);
  if (!o.json.empty()) write_json(o.json, stats_json(stats));
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto o = std::make_shared<SampleOptions>();
  auto* cmd = app.add_subcommand("sample", "Generate text from a trained model");
  cmd->add_option("checkpoint", o->path, "Result file or checkpoint (HDF5) of dslab train, or a Hugging Face DeepseekV3 checkpoint folder")->required();
  cmd->add_option("--prompt", o->prompt, "Text to continue");
  cmd->add_option("--tokens", o->args.tokens, "Bytes to generate")
      ->check(CLI::Range(1, 1000000))->capture_default_str();
  cmd->add_option("--temperature", o->args.temperature, "Softmax temperature; 0 = greedy")
      ->check(CLI::Range(0.0, 100.0))->capture_default_str();
  cmd->add_option("--top-k", o->args.top_k, "Sample among the k most likely bytes; 0 = all")
      ->check(CLI::Range(0, 256))->capture_default_str();
  cmd->add_option("--seed", o->args.seed, "Sampling seed")->capture_default_str();
  cmd->add_flag("--speculative", o->speculative,
                "Speculative decoding: the MTP modules draft, the main model verifies; "
                "acceptance per depth on stderr");
  cmd->add_option("--json", o->json, "With --speculative: write the acceptance counts here (JSON)");
  cmd->add_option("--threads", o->threads, "OpenMP threads")->check(CLI::Range(1, 1024));
  cmd->callback([o] { sample(*o); });
}

}  // namespace dslab
