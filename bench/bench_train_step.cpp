// One training step of the reference transformer in float, as Trainer runs it:
//   zero grads -> forward -> backward -> global-norm clip -> AdamW.
//
//   bench_train_step [--dim=256] [--n_layers=4] [--n_heads=8] [--n_kv_heads=8]
//                    [--inter_dim=704] [--vocab_size=256] [--seq_len=256] [--batch=8]
//                    [--warmup=2] [--steps=10] [Google Benchmark flags]
//
// Each benchmark iteration is one step. Counters: median_step_ms (wall clock,
// median over the timed steps, after `warmup` untimed ones), median_cpu_ms
// (CPU time of all threads, median), tokens_per_s (batch*seq_len over the
// median wall time), peak_rss_MiB (VmHWM of this process), first_loss.
// Time it with OMP_NUM_THREADS set and OPENBLAS_NUM_THREADS=1.
#include <map>
#include <string>

#include "bench/side_by_side.hpp"
#include "reference/trainer.hpp"

namespace {

using dslab::bench::IntFlags;

IntFlags default_flags() {
  return {{"dim", {256, 2, "model width"}},
          {"n_layers", {4, 1, "transformer blocks"}},
          {"n_heads", {8, 1, "query heads"}},
          {"n_kv_heads", {8, 1, "key/value heads"}},
          {"inter_dim", {704, 1, "SwiGLU hidden width"}},
          {"vocab_size", {256, 2, "vocabulary (byte-level: at most 256)"}},
          {"seq_len", {256, 1, "tokens per sequence"}},
          {"batch", {8, 1, "sequences per step"}},
          {"warmup", {2, 0, "untimed steps before timing"}},
          {"steps", {10, 1, "timed steps"}}};
}

// The cross-field rules of the model flags.
void check_model_flags(const std::map<std::string, int>& f) {
  auto fail = [](const std::string& message) {
    dslab::bench::usage_error("bench_train_step", message, default_flags());
  };
  if (f.at("vocab_size") > 256) fail("--vocab_size must be at most 256 (bytes)");
  if (f.at("dim") % f.at("n_heads") != 0 || (f.at("dim") / f.at("n_heads")) % 2 != 0)
    fail("--dim must be n_heads times an even head dimension");
  if (f.at("n_heads") % f.at("n_kv_heads") != 0) fail("--n_heads must be a multiple of --n_kv_heads");
}

// Random bytes below vocab_size: timing does not depend on the text.
dslab::ByteCorpus random_corpus(int vocab_size, size_t bytes) {
  dslab::Rng rng(1234);
  std::string text(bytes, '\0');
  for (char& c : text) c = char(rng.below(uint64_t(vocab_size)));
  return dslab::ByteCorpus::from_text(text, 0.1);
}

void BM_TrainStep(benchmark::State& state, std::map<std::string, int> f) {
  dslab::ModelArgs model;
  model.vocab_size = f["vocab_size"];
  model.dim = f["dim"];
  model.n_layers = f["n_layers"];
  model.n_heads = f["n_heads"];
  model.n_kv_heads = f["n_kv_heads"];
  model.inter_dim = f["inter_dim"];
  model.max_seq_len = f["seq_len"];
  dslab::TrainArgs train;
  train.batch_size = f["batch"];
  train.seq_len = f["seq_len"];
  train.steps = 1 << 30;  // never reached: no final evaluation inside the timing
  train.eval_every = 0;
  train.warmup_steps = 0;
  train.grad_clip = 1.0;  // AdamW betas 0.9/0.95, weight decay 0.1 on matrices: the defaults
  const dslab::ByteCorpus corpus = random_corpus(model.vocab_size, size_t(1) << 20);
  dslab::Trainer trainer(model, train, corpus);

  double first_loss = 0;
  auto step = [&] {
    const double loss = trainer.train_step().train_loss;
    if (trainer.step == 1) first_loss = loss;
  };
  dslab::bench::time_steps(state, f["warmup"], double(train.batch_size) * train.seq_len, step);
  state.counters["first_loss"] = first_loss;
}

}  // namespace

int main(int argc, char** argv) {
  const auto flags = dslab::bench::take_int_flags("bench_train_step", default_flags(), argc, argv);
  check_model_flags(flags);
  return dslab::bench::run_benchmark("TrainStep",
                                     {"dim", "n_layers", "n_heads", "n_kv_heads", "inter_dim", "seq_len", "batch"},
                                     BM_TrainStep, flags, argc, argv);
}
