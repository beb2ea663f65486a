// dslab train CONFIG.toml --out FILE.h5 [--set key.path=value ...] [--resume]
//
// Trains the reference transformer. A checkpoint (FILE.ckpt.h5) is written
// every train.checkpoint_every steps and on Ctrl-C; --resume continues from it
// and ends with exactly the numbers of an uninterrupted run. FILE.h5 appears
// only when the run is complete. Under `mpirun -np N` the ranks share each
// step's train.micro_batches (data parallel) with the same numbers for every N
// dividing it; rank 0 writes, and any rank's failure ends the job naming it.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include <CLI/CLI.hpp>

#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/io.hpp"
#include "experiments/mpi_parallel.hpp"
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

// What a failed set-up says and its exit status, as run_cli would print it.
struct Failure {
  int status = 0;
  std::string message;  // without the "dslab: " prefix
};
Failure failure_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const ConfigError& x) {
    return {kBadInput, std::string("config error: ") + x.what()};
  } catch (const BadInput& x) {
    return {kBadInput, x.what()};
  } catch (const std::exception& x) {
    return {1, std::string("error: ") + x.what()};
  }
}

// Under mpirun: whether every rank's set-up succeeded. When one failed, rank 0
// prints the first failure (naming its rank unless it is rank 0's own) and every
// rank exits with its status; no rank has started to wait on the others yet.
void agree_on_setup(const MpiSession& mpi, const std::exception_ptr& error) {
  const Failure f = error ? failure_of(error) : Failure{};
  int failed_rank = -1;
  std::string why;
  if (mpi.all_ok(!error, std::to_string(f.status) + "\n" + f.message, failed_rank, why)) return;
  const size_t nl = why.find('\n');
  const int status = std::stoi(why.substr(0, nl));
  if (mpi.rank() == 0)
    std::cerr << "dslab: " << (failed_rank ? "rank " + std::to_string(failed_rank) + ": " : "") << why.substr(nl + 1)
              << "\n";
  throw CLI::RuntimeError(status);  // quiet: the message is out
}

// dslab train, in one process (mpi null) or as one rank of `mpirun -np N`
// (data parallel: reference/data_parallel.hpp). Every rank builds the same
// trainer; rank 0 alone takes the lock, prints, and writes checkpoints and the result.
void train_as(const RunCommandOptions& o, const MpiSession* mpi) {
  const bool root = !mpi || mpi->rank() == 0;
  std::optional<MpiDataParallel> parallel;
  if (mpi) parallel.emplace(*mpi);

  RunConfig cfg;
  std::optional<RunLock> lock;
  bool done = false;
  std::optional<ByteCorpus> corpus;
  std::unique_ptr<Trainer> owned;
  RunInfo info;
  const std::string ckpt = checkpoint_path(o.out);
  bool resumed = false;
  size_t n_pairs = 0;
  std::exception_ptr error;
  try {
    cfg = load_run_config(o.config, o.sets);
    if (root) lock.emplace(o.out);
    done = root && already_complete(o.out, o.resume, o.label);
    if (!done) {
      corpus.emplace(load_corpus(cfg.data));
      info = {cfg.text, cfg.train.seed, use_threads(o.threads), 0.0};
      std::vector<TaskExample> pairs;
      if (!cfg.train.pair_text.path.empty()) {
        try {
          for (const SftPair& p : read_pairs(cfg.train.pair_text.path))
            pairs.push_back(pair_example(p.prompt, p.response));
        } catch (const std::runtime_error& e) {
          throw BadInput(std::string("data.pairs: ") + e.what());
        }
      }
      n_pairs = pairs.size();
      try {
        owned = std::make_unique<Trainer>(cfg.model, cfg.train, *corpus, pairs, parallel ? &*parallel : nullptr);
      } catch (const ArgsError& e) {
        throw BadInput(e.what());
      } catch (const std::invalid_argument& e) {
        throw BadInput(std::string("data.pairs: ") + e.what());
      }
      if (!cfg.train.init.empty()) read_init("train.init", cfg.train.init, owned->model);
      resumed = resume_from(ckpt, o.resume);
      if (resumed) reading_input([&] { read_checkpoint(ckpt, cfg.text, *owned); });
    }
  } catch (...) {
    if (!mpi) throw;
    error = std::current_exception();
  }
  if (mpi) {
    agree_on_setup(*mpi, error);
    done = parallel->any(done);
  }
  if (done) return;
  Trainer& trainer = *owned;

  if (root) {
    if (resumed) std::cerr << o.label << "resuming from " << ckpt << " at step " << trainer.step << "\n";
    std::cerr << o.label << "training " << trainer.model.num_parameters() << " parameters"
              << (cfg.train.init.empty() ? "" : " from " + cfg.train.init) << " for " << trainer.args.steps
              << " steps on " << corpus->train.size() << " bytes";
    if (const int n_task = task_rows(cfg.train.task_text, cfg.train.batch_size); n_task > 0)
      std::cerr << " with " << n_task << " of " << cfg.train.batch_size << " rows "
                << name_of(cfg.train.task_text.task.kind) << " text";
    if (n_pairs > 0)
      std::cerr << " and " << std::lround(cfg.train.pair_text.share * cfg.train.batch_size) << " rows of " << n_pairs
                << " SFT pairs";
    std::cerr << ", " << info.threads << " threads";
    if (mpi)
      std::cerr << " on each of " << mpi->size() << " ranks (" << cfg.train.micro_batches / mpi->size()
                << " of " << cfg.train.micro_batches << " micro-batches each)";
    else if (cfg.train.micro_batches > 1)
      std::cerr << " (" << cfg.train.micro_batches << " micro-batches per step)";
    std::cerr << "\n";
  }

  Progress progress(o.label);
  const auto t0 = std::chrono::steady_clock::now();
  bool stopped = false;
  try {
    const StopSignals stop;
    trainer.run([&](const StepReport& r) {
      if (root) progress.report(r);
      // Under mpirun the ranks stop together, after the same step.
      stopped = parallel ? parallel->any(stop.requested()) : stop.requested();
      const bool checkpoint_due = cfg.train.checkpoint_every > 0 &&
                                  r.step % cfg.train.checkpoint_every == 0 && r.step < r.steps;
      if (root && (checkpoint_due || stopped)) write_checkpoint(ckpt, info, trainer);
      return !stopped;
    });
    info.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!stopped && root) {
      const Captured captured = cfg.train.capture ? capture_tensors(trainer) : Captured{};
      write_result(o.out, info, trainer, captured);
      std::filesystem::remove(ckpt);
    }
  } catch (...) {
    if (!mpi) throw;
    // The other ranks may be waiting for this one in a collective: end them all.
    const Failure f = failure_of(std::current_exception());
    std::cerr << "dslab: rank " << mpi->rank() << ": " << f.message << "\n";
    mpi->abort(f.status);
  }
  if (stopped) {
    if (!root) throw CLI::RuntimeError(kStopped);
    StopSignals::exit_stopped(o.label, trainer.step, ckpt);
  }
  if (!root) return;
  const auto& val = trainer.metrics["val_loss"];
  std::cerr << o.label << "wrote " << o.out;
  if (!val.empty()) std::fprintf(stderr, " (val loss %.4f)", val.back());
  std::cerr << "\n";
}

void train(const RunCommandOptions& o) {
  if (!launched_by_mpirun()) return train_as(o, nullptr);
  if (!built_with_mpi())
    throw BadInput("started by mpirun, but this dslab was built without MPI (install libopenmpi-dev and build again)");
  const MpiSession mpi;
  train_as(o, &mpi);
}

}  // namespace

void add_train_command(CLI::App& app) {
  add_run_command_options(app.add_subcommand("train", "Train the reference transformer from a config file"),
                          RunKind::Train, "Run config (TOML)",
                          "List every config key with its type, range and default", train);
}

}  // namespace dslab
