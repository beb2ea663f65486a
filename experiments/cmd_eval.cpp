// dslab eval CONFIG.toml --out FILE.h5 [--set key.path=value ...] [--threads N]
//
// pass@k and maj@k of a model on M problems of its task, n samples each, and
// the pairs rejection sampling keeps (reference/eval.hpp). CONFIG is an RL
// config with an [eval] section (eval.init: the result evaluated). The same
// guarantees as dslab train and rl: config errors name file, line and key
// (exit 2, nothing written); FILE.h5 is written whole when the run is done,
// never partly (an interrupted eval leaves nothing and starts over).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/io.hpp"
#include "experiments/results.hpp"
#include "experiments/run_loop.hpp"
#include "reference/eval.hpp"
#include "reference/trainer.hpp"

namespace dslab {

namespace {

void eval(const RunCommandOptions& o) {
  const RunConfig cfg = load_eval_config(o.config, o.sets);
  const RunLock lock(o.out);
  if (already_complete(o.out, o.resume, o.label)) return;
  const EvalArgs& a = cfg.eval;
  const Vocabulary vocab = load_vocabulary(cfg.data);
  // Read before sampling, so that a missing or short text fails at once.
  const ByteCorpus corpus = a.val_batches > 0 ? load_corpus(cfg.data) : ByteCorpus{};
  if (a.val_batches > 0 && corpus.val.size() < size_t(cfg.model.max_seq_len) + 1)
    throw BadInput("eval.val_batches = " + std::to_string(a.val_batches) + ": the validation split of data file '" +
                   resolve_data_path(cfg.data.path) + "' has " + std::to_string(corpus.val.size()) + " bytes, fewer than max_seq_len + 1 = " +
                   std::to_string(cfg.model.max_seq_len + 1) + " (a longer file, a larger data.val_fraction, or 0)");
  RunInfo info{cfg.text, a.seed, use_threads(o.threads), 0.0};
  Transformer<float> model(cfg.model);
  model.init_weights(a.seed);
  if (!a.init.empty()) read_init("eval.init", a.init, model);
  std::cerr << o.label << "eval on " << name_of(cfg.rl.task.kind) << ": "
            << (a.init.empty() ? std::string("fresh weights") : a.init) << ", " << a.problems << " problems x "
            << a.samples << " samples, " << info.threads << " threads\n";
  const auto t0 = std::chrono::steady_clock::now();
  const EvalResult r = evaluate(model, cfg.rl.task, cfg.rl.rollout, a, &vocab);
  // The validation loss dslab train reports, so that every stage of a recipe
  // (RL ones too) says what it did to the model's language.
  std::optional<double> val_loss;
  if (a.val_batches > 0)
    val_loss = validation_loss(model, corpus.val, kValBatchSize, cfg.model.max_seq_len, a.val_batches);
  info.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_eval_result(o.out, info, r, int64_t(model.num_parameters()), val_loss);
  std::fprintf(stderr, "%spass@1 %.3f | pass@%d %.3f | maj@%d %.3f | format %.3f | kept %zu pairs | %.0f tok/s%s\n",
               o.label.c_str(), r.pass_at_k.front(), r.k.back(), r.pass_at_k.back(), r.k.back(), r.maj_at_k.back(),
               r.format_rate, r.pairs.size(), r.sample_seconds > 0 ? double(r.tokens) / r.sample_seconds : 0.0,
               val_loss ? (" | val " + std::to_string(*val_loss).substr(0, 6)).c_str() : "");
  std::fprintf(stderr, "%swrote %s\n", o.label.c_str(), o.out.c_str());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  add_run_command_options(
      app.add_subcommand("eval", "pass@k, maj@k and rejection sampling of a model on its task (RL config + [eval])"),
      RunKind::Eval, "eval config (TOML): an RL config with [eval]",
      "List every eval config key with its type, range and default", eval);
}

}  // namespace dslab
