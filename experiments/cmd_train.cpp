// dslab train CONFIG.toml --out FILE.h5 [--set key.path=value ...] [--resume]
//
// Trains the reference transformer. A checkpoint (FILE.ckpt.h5) is written
// every train.checkpoint_every steps and on Ctrl-C; --resume continues from it
// and ends with exactly the numbers of an uninterrupted run. FILE.h5 appears
// only when the run is complete.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/io.hpp"
#include "experiments/results.hpp"
#include "experiments/run_loop.hpp"
#include "reference/args_error.hpp"
#include "reference/trainer.hpp"

namespace dslab {

namespace {

// Progress on stderr: a line every couple of seconds, at each evaluation and at the end.
class Progress {
 public:
  explicit Progress(std::string label) : label_(std::move(label)) {}
  void report(const StepReport& r) {
    steps_done_ += 1;
    seconds_ += r.seconds;
    const auto now = std::chrono::steady_clock::now();
    const bool due = std::chrono::duration<double>(now - last_print_).count() >= 2.0;
    if (!(due || r.evaluated || r.step == r.steps || steps_done_ == 1)) return;
    last_print_ = now;
    const double per_step = seconds_ / double(steps_done_);
    char line[256];
    std::snprintf(line, sizeof line, "%sstep %ld/%ld | loss %.4f | lr %.2e | %.1fk tok/s | ETA %s",
                  label_.c_str(), long(r.step), long(r.steps), r.train_loss, r.lr,
                  r.tokens_per_second / 1000.0, format_duration(per_step * (r.steps - r.step)).c_str());
    std::string text = line;
    if (r.evaluated) {
      std::snprintf(line, sizeof line, " | val %.4f", r.val_loss);
      text += line;
      if (r.val_task_loss) {
        std::snprintf(line, sizeof line, " | val task %.4f", *r.val_task_loss);
        text += line;
      }
    }
    std::cerr << text << std::endl;
  }

 private:
  std::string label_;
  long steps_done_ = 0;
  double seconds_ = 0;
  std::chrono::steady_clock::time_point last_print_{};
};

void train(const RunCommandOptions& o) {
  const RunConfig cfg = load_run_config(o.config, o.sets);
  const RunLock lock(o.out);
  if (already_complete(o.out, o.resume, o.label)) return;
  const ByteCorpus corpus = load_corpus(cfg.data);
  RunInfo info{cfg.text, cfg.train.seed, use_threads(o.threads), 0.0};

  std::vector<TaskExample> pairs;
  if (!cfg.train.pair_text.path.empty()) {
    try {
      for (const SftPair& p : read_pairs(cfg.train.pair_text.path)) pairs.push_back(pair_example(p.prompt, p.response));
    } catch (const std::runtime_error& e) {
      throw BadInput(std::string("data.pairs: ") + e.what());
    }
  }
  const auto make_trainer = [&] {
    try {
      return std::make_unique<Trainer>(cfg.model, cfg.train, corpus, pairs);
    } catch (const ArgsError& e) {
      throw BadInput(e.what());
    } catch (const std::invalid_argument& e) {
      throw BadInput(std::string("data.pairs: ") + e.what());
    }
  };
  const std::unique_ptr<Trainer> owned = make_trainer();
  Trainer& trainer = *owned;
  if (!cfg.train.init.empty()) read_init("train.init", cfg.train.init, trainer.model);
  const std::string ckpt = checkpoint_path(o.out);
  if (resume_from(ckpt, o.resume)) {
    reading_input([&] { read_checkpoint(ckpt, cfg.text, trainer); });
    std::cerr << o.label << "resuming from " << ckpt << " at step " << trainer.step << "\n";
  }
  std::cerr << o.label << "training " << trainer.model.num_parameters() << " parameters"
            << (cfg.train.init.empty() ? "" : " from " + cfg.train.init) << " for " << trainer.args.steps
            << " steps on " << corpus.train.size() << " bytes";
  if (const int n_task = task_rows(cfg.train.task_text, cfg.train.batch_size); n_task > 0)
    std::cerr << " with " << n_task << " of " << cfg.train.batch_size << " rows " << name_of(cfg.train.task_text.task.kind)
              << " text";
  if (!pairs.empty())
    std::cerr << " and " << std::lround(cfg.train.pair_text.share * cfg.train.batch_size) << " rows of " << pairs.size()
              << " SFT pairs";
  std::cerr << ", " << info.threads << " threads\n";

  Progress progress(o.label);
  const auto t0 = std::chrono::steady_clock::now();
  {
    const StopSignals stop;
    trainer.run([&](const StepReport& r) {
      progress.report(r);
      const bool checkpoint_due = cfg.train.checkpoint_every > 0 &&
                                  r.step % cfg.train.checkpoint_every == 0 && r.step < r.steps;
      if (checkpoint_due || stop.requested()) write_checkpoint(ckpt, info, trainer);
      return !stop.requested();
    });
    if (stop.requested()) StopSignals::exit_stopped(o.label, trainer.step, ckpt);
  }
  info.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const Captured captured = cfg.train.capture ? capture_tensors(trainer) : Captured{};
  write_result(o.out, info, trainer, captured);
  std::filesystem::remove(ckpt);
  const auto& val = trainer.metrics["val_loss"];
  std::cerr << o.label << "wrote " << o.out;
  if (!val.empty()) std::fprintf(stderr, " (val loss %.4f)", val.back());
  std::cerr << "\n";
}

}  // namespace

void add_train_command(CLI::App& app) {
  add_run_command_options(app.add_subcommand("train", "Train the reference transformer from a config file"),
                          RunKind::Train, "Run config (TOML)",
                          "List every config key with its type, range and default", train);
}

}  // namespace dslab
