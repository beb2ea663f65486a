// dslab export RESULT.h5 --out DIR [--dtype F32|BF16|F64]
// Writes the model of a dslab result file (or checkpoint) as a Hugging Face
// DeepseekV3 checkpoint: DIR/config.json and DIR/model.safetensors with the
// published tensor names (experiments/hf_checkpoint.hpp), each file whole or
// not at all. transformers' DeepseekV3ForCausalLM.from_pretrained(DIR) loads it;
// `dslab sample DIR` and dslab.Model.from_hf(DIR) read it back.
#include <filesystem>
#include <iostream>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/hf_checkpoint.hpp"
#include "experiments/results.hpp"
#include "experiments/run_loop.hpp"

namespace dslab {

namespace {

struct ExportOptions {
  std::string path, out, dtype = "F32";
};

void export_model(const ExportOptions& o) {
  if (!std::filesystem::exists(o.path))
    throw BadInput("'" + o.path + "' does not exist; give a result file written by dslab train");
  if (o.dtype != "F32" && o.dtype != "BF16" && o.dtype != "F64")
    throw BadInput("--dtype " + o.dtype + ": allowed F32, BF16, F64");
  const RunConfig cfg = parse_run_config_text(reading_input([&] { return read_config_text(o.path); }));
  hf_config_json(cfg.model);  // refuses, naming the field, a model DeepseekV3 cannot describe
  Transformer<float> model(cfg.model);
  reading_input([&] { read_model(o.path, model); });
  write_hf_checkpoint(o.out, model, parse_st_dtype(o.dtype, "--dtype"));
  std::cerr << "dslab export: " << o.out << "/config.json and " << o.out << "/model.safetensors ("
            << model.num_parameters() << " parameters, " << o.dtype << ")\n";
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto o = std::make_shared<ExportOptions>();
  auto* cmd = app.add_subcommand("export", "Write a trained model as a Hugging Face DeepseekV3 checkpoint (safetensors)");
  cmd->add_option("result", o->path, "Result file or checkpoint (HDF5) of dslab train")->required();
  cmd->add_option("--out", o->out, "Folder for config.json and model.safetensors")->required();
  cmd->add_option("--dtype", o->dtype, "Tensor type in the file: F32, BF16 or F64")->capture_default_str();
  cmd->callback([o] { export_model(*o); });
}

}  // namespace dslab
