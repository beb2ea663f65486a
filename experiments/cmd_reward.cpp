// dslab reward CONFIG.toml --out FILE.h5 [--set key.path=value ...] [--resume] [--threads N]
//
// Trains a scalar reward model on preference pairs made from the [data] text
// (reference/reward_model.hpp: the Bradley-Terry loss, corrupted continuations
// as the rejected side), for R1's stage 4 (`reward.model` of an RL config).
// The same guarantees as dslab train: config errors name file, line and key
// (exit 2, nothing written); a checkpoint (FILE.ckpt.h5) every
// rm.checkpoint_every steps and on Ctrl-C; --resume continues from it with
// exactly the numbers of an uninterrupted run; FILE.h5 appears only when the
// run is complete.
#include <chrono>
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
#include "reference/reward_model.hpp"

namespace dslab {

namespace {

void report(const std::string& label, const RmStepReport& r, double& seconds, int64_t& done,
            std::chrono::steady_clock::time_point& last) {
  ++done;
  seconds += r.seconds;
  const auto now = std::chrono::steady_clock::now();
  if (!(std::chrono::duration<double>(now - last).count() >= 2.0 || done == 1 || r.step == r.steps || r.evaluated))
    return;
  last = now;
  const double eta = seconds / double(done) * double(r.steps - r.step);
  std::fprintf(stderr, "%sstep %ld/%ld | loss %.4f | acc %.3f | margin %.3f | lr %.2e | %.1fk tok/s | ETA %s",
               label.c_str(), long(r.step), long(r.steps), r.loss, r.accuracy, r.margin, r.lr,
               r.tokens_per_second / 1000.0, format_duration(eta).c_str());
  if (r.evaluated) std::fprintf(stderr, " | val loss %.4f acc %.3f", r.val_loss, r.val_accuracy);
  std::fprintf(stderr, "\n");
}

void reward(const RunCommandOptions& o) {
  const RunConfig cfg = load_reward_config(o.config, o.sets);
  const RunLock lock(o.out);
  if (already_complete(o.out, o.resume, o.label)) return;
  const ByteCorpus corpus = load_corpus(cfg.data);
  RunInfo info{cfg.text, cfg.rm.seed, use_threads(o.threads), 0.0};
  const auto make_trainer = [&] {
    try {
      return std::make_unique<RewardModelTrainer>(cfg.model, cfg.rm, corpus);
    } catch (const std::invalid_argument& e) {
      throw BadInput(std::string("data.path: ") + e.what());
    }
  };
  const std::unique_ptr<RewardModelTrainer> owned = make_trainer();
  RewardModelTrainer& trainer = *owned;
  if (!cfg.rm.init.empty()) read_init("rm.init", cfg.rm.init, trainer.model.trunk);
  const std::string ckpt = checkpoint_path(o.out);
  if (resume_from(ckpt, o.resume)) {
    reading_input([&] { read_reward_checkpoint(ckpt, cfg.text, trainer); });
    std::cerr << o.label << "resuming from " << ckpt << " at step " << trainer.step << "\n";
  }
  std::cerr << o.label << "reward model: " << trainer.model.trunk.num_parameters() << " parameters"
            << (cfg.rm.init.empty() ? "" : " from " + cfg.rm.init) << ", " << cfg.rm.steps << " steps of "
            << cfg.rm.pairs_per_step << " pairs (" << cfg.rm.prefix_bytes << " + " << cfg.rm.response_bytes
            << " bytes, " << name_of(cfg.rm.corruption) << "), " << info.threads << " threads\n";

  double seconds = 0;
  int64_t done = 0;
  auto last = std::chrono::steady_clock::now();
  const auto t0 = std::chrono::steady_clock::now();
  {
    const StopSignals stop;
    trainer.run([&](const RmStepReport& r) {
      report(o.label, r, seconds, done, last);
      const bool due = cfg.rm.checkpoint_every > 0 && r.step % cfg.rm.checkpoint_every == 0 && r.step < r.steps;
      if (due || stop.requested()) write_reward_checkpoint(ckpt, info, trainer);
      return !stop.requested();
    });
    if (stop.requested()) StopSignals::exit_stopped(o.label, trainer.step, ckpt);
  }
  info.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_reward_result(o.out, info, trainer);
  std::filesystem::remove(ckpt);
  std::fprintf(stderr, "%swrote %s (held-out pair accuracy %.3f)\n", o.label.c_str(), o.out.c_str(),
               trainer.metrics["val_accuracy"].back());
}

}  // namespace

void add_reward_command(CLI::App& app) {
  add_run_command_options(
      app.add_subcommand("reward", "Train a reward model on preference pairs made from text (R1 stage 4)"),
      RunKind::Reward, "Reward-model config (TOML)", "List every reward-model config key with its type, range and default",
      reward);
}

}  // namespace dslab
