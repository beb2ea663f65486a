// dslab rl CONFIG.toml --out FILE.h5 [--set key.path=value ...] [--resume] [--threads N]
//
// GRPO on a verifiable task (reference/rl_trainer.hpp). The same guarantees
// as dslab train: config errors name file, line and key (exit 2, nothing
// written); a checkpoint (FILE.ckpt.h5) every rl.checkpoint_every steps and on
// Ctrl-C; --resume continues from it with exactly the numbers of an
// uninterrupted run; FILE.h5 appears only when the run is complete.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/io.hpp"
#include "experiments/results.hpp"
#include "experiments/run_loop.hpp"
#include "reference/args_error.hpp"
#include "reference/rl_trainer.hpp"

namespace dslab {

namespace {

// One line every couple of seconds, and at the first and last step.
void report(const std::string& label, const RlStepReport& r, bool general, double& seconds, int64_t& done,
            std::chrono::steady_clock::time_point& last) {
  ++done;
  seconds += r.seconds;
  const auto now = std::chrono::steady_clock::now();
  if (!(std::chrono::duration<double>(now - last).count() >= 2.0 || done == 1 || r.step == r.steps)) return;
  last = now;
  const double eta = seconds / double(done) * double(r.steps - r.step);
  char rm[32] = "";
  if (general) std::snprintf(rm, sizeof rm, " | rm %.3f", r.rm_score);
  std::fprintf(stderr,
               "%sstep %ld/%ld | reward %.3f | acc %.3f | format %.3f | len %.1f | kl %.4f | clip %.3f | "
               "entropy %.3f%s | %.0f tok/s | ETA %s\n",
               label.c_str(), long(r.step), long(r.steps), r.reward_mean, r.accuracy, r.format_rate,
               r.response_length, r.kl, r.clip_fraction, r.entropy,
               rm, r.tokens_per_second,
               format_duration(eta).c_str());
}

void rl(const RunCommandOptions& o) {
  const RunConfig cfg = load_rl_config(o.config, o.sets);
  const RunLock lock(o.out);
  if (already_complete(o.out, o.resume, o.label)) return;
  const RlSetup& setup = cfg.rl;
  // The [data] text's vocabulary: the language-consistency reward's target
  // language, and its metric whatever reward.language's weight (0 included).
  const Vocabulary vocab = load_vocabulary(cfg.data);
  RunInfo info{cfg.text, setup.rl.seed, use_threads(o.threads), 0.0};
  // R1 stage 4: the reward model of the general prompts, and the text they come from.
  std::unique_ptr<LearnedRewardModel<float>> reward_model;
  ByteCorpus general;
  if (setup.rl.general_prompts > 0) {
    try {
      reward_model = std::make_unique<LearnedRewardModel<float>>(read_reward_model(setup.reward.model));
    } catch (const std::runtime_error& e) {
      throw BadInput(std::string("reward.model: ") + e.what());
    }
    general = load_corpus(cfg.data);
  }
  const auto make_trainer = [&] {
    try {
      return std::make_unique<RlTrainer>(cfg.model, setup, &vocab, reward_model.get(), &general.train);
    } catch (const ArgsError& e) {
      throw BadInput(e.what());
    }
  };
  const std::unique_ptr<RlTrainer> owned = make_trainer();
  RlTrainer& trainer = *owned;
  if (!setup.rl.init.empty()) {
    read_init("rl.init", setup.rl.init, trainer.policy);
    trainer.reset_reference();
  }
  const std::string ckpt = checkpoint_path(o.out);
  if (resume_from(ckpt, o.resume)) {
    reading_input([&] { read_rl_checkpoint(ckpt, cfg.text, trainer); });
    std::cerr << o.label << "resuming from " << ckpt << " at step " << trainer.step << "\n";
  }
  std::cerr << o.label << "GRPO on " << name_of(setup.task.kind) << ": " << trainer.policy.num_parameters()
            << " parameters, " << setup.rl.steps << " steps of " << setup.rl.prompts_per_step << " prompts x "
            << setup.rollout.group_size << " completions, " << info.threads << " threads\n";

  double seconds = 0;
  int64_t done = 0;
  auto last = std::chrono::steady_clock::now();
  const auto t0 = std::chrono::steady_clock::now();
  {
    const StopSignals stop;
    trainer.run([&](const RlStepReport& r) {
      report(o.label, r, setup.rl.general_prompts > 0, seconds, done, last);
      const bool due = setup.rl.checkpoint_every > 0 && r.step % setup.rl.checkpoint_every == 0 && r.step < r.steps;
      if (due || stop.requested()) write_rl_checkpoint(ckpt, info, trainer);
      return !stop.requested();
    });
    if (stop.requested()) StopSignals::exit_stopped(o.label, trainer.step, ckpt);
  }
  info.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_rl_result(o.out, info, trainer);
  std::filesystem::remove(ckpt);
  if (setup.rl.general_prompts < setup.rl.prompts_per_step)
    std::fprintf(stderr, "%swrote %s (accuracy %.3f at the last step)\n", o.label.c_str(), o.out.c_str(),
                 trainer.metrics["accuracy"].back());
  else
    std::fprintf(stderr, "%swrote %s (reward-model score %.3f at the last step)\n", o.label.c_str(), o.out.c_str(),
                 trainer.metrics["rm_score"].back());
}

}  // namespace

void add_rl_command(CLI::App& app) {
  add_run_command_options(
      app.add_subcommand("rl", "GRPO on a verifiable task (Countdown, addition) from an RL config file"),
      RunKind::Rl, "RL config (TOML)", "List every RL config key with its type, range and default", rl);
}

}  // namespace dslab
