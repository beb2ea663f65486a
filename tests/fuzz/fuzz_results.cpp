// libFuzzer, structure-aware: HDF5 result files and checkpoints read back.
//
// Each input edits a valid file (a tiny MoE model's result with captured
// router logits, or its checkpoint) through HDF5 itself: objects deleted,
// datasets replaced by others of another type or shape, attributes (complete,
// steps, seed, adamw_t, ...) removed or retyped, the stored config rewritten,
// extra members added; now and then the bytes of the file are cut short or
// flipped as well. Byte-level mutation of HDF5 alone would mostly exercise
// libhdf5's own parser; these edits make files that open and are wrong in the
// ways a user's files are (a checkpoint of another model, a hand-edited or
// half-copied result).
//
// The edited file then goes through every command that reads one, in process
// (run_cli): `dslab sample FILE`, `dslab train --resume` with FILE as the
// checkpoint, `dslab train` with train.init = FILE, and `dslab sim balance
// replay --logits FILE`. The rule: each exits 0 or 2 (BadInput, a message
// naming the file); exit 1, a crash, an escaping exception or a leak is a bug.
// result_complete (which must never throw) and read_metrics (std::runtime_error
// only) are called directly as well.
#include <H5Cpp.h>
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "experiments/capture.hpp"
#include "experiments/commands.hpp"
#include "experiments/config.hpp"
#include "experiments/results.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace {

namespace fs = std::filesystem;
using dslab::fuzz::scratch_dir;

struct Files {
  std::string config, result, checkpoint, config_text;
};

// The run config (a 2-layer model, its second layer MoE, capture on) and the
// two valid files every input starts from: a checkpoint after 2 of 3 steps
// and a result of the same state.
const Files& base_files() {
  static const Files files = [] {
    const std::string d = scratch_dir() + "/results";
    fs::create_directories(d);
    std::string text;
    for (int i = 0; text.size() < 20000; ++i) text += "and the lord said unto them, go ye " + std::to_string(i % 7) + ".\n";
    std::ofstream(d + "/corpus.txt") << text;
    const std::vector<std::string> sets = {
        "data.path=" + d + "/corpus.txt", "model.n_routed_experts=4", "model.n_activated_experts=2",
        "model.n_shared_experts=1", "model.moe_inter_dim=16", "model.n_dense_layers=1", "model.dim=32",
        "model.inter_dim=64", "model.n_heads=2", "model.n_kv_heads=1",
        "train.steps=3", "train.batch_size=2", "train.seq_len=16", "train.warmup_steps=0",
        "train.eval_every=0", "train.eval_batches=1", "train.checkpoint_every=1", "train.capture=true"};
    const dslab::RunConfig cfg =
        dslab::load_run_config(std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml", sets);
    Files f{d + "/run.toml", d + "/base.h5", d + "/base.ckpt.h5", cfg.text};
    std::ofstream(f.config) << cfg.text;
    const dslab::ByteCorpus corpus = dslab::ByteCorpus::from_file(cfg.data.path, cfg.data.val_fraction);
    dslab::Trainer trainer(cfg.model, cfg.train, corpus);
    trainer.run([&](const dslab::StepReport& r) { return r.step < 2; });
    const dslab::RunInfo info{cfg.text, cfg.train.seed, 1, 0.0};
    dslab::write_checkpoint(f.checkpoint, info, trainer);
    dslab::write_result(f.result, info, trainer, dslab::capture_router_logits(trainer));
    return f;
  }();
  return files;
}

// Every group and dataset under `g` (paths from the root), depth first.
void collect(const H5::Group& g, const std::string& prefix, std::vector<std::string>& paths) {
  for (hsize_t i = 0; i < g.getNumObjs(); ++i) {
    const std::string path = prefix + "/" + g.getObjnameByIdx(i);
    paths.push_back(path);
    if (g.getObjTypeByIdx(i) == H5G_GROUP) collect(g.openGroup(g.getObjnameByIdx(i)), path, paths);
  }
}

// A dataset of a drawn type and shape at `path`, filled with input bytes.
void make_dataset(H5::H5File& file, const std::string& path, FuzzedDataProvider& in) {
  const int rank = in.ConsumeIntegralInRange(0, 3);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  size_t n = 1;
  for (auto& d : dims) n *= (d = in.ConsumeIntegralInRange<hsize_t>(0, 40));
  const H5::DataSpace space = rank == 0 ? H5::DataSpace() : H5::DataSpace(rank, dims.data());
  switch (in.ConsumeIntegralInRange(0, 4)) {
    case 0: {
      std::vector<float> v(n);
      for (auto& x : v) x = in.ConsumeFloatingPoint<float>();
      file.createDataSet(path, H5::PredType::IEEE_F32LE, space).write(v.data(), H5::PredType::NATIVE_FLOAT);
      break;
    }
    case 1: {
      std::vector<double> v(n);
      for (auto& x : v) x = in.ConsumeFloatingPoint<double>();
      file.createDataSet(path, H5::PredType::IEEE_F64LE, space).write(v.data(), H5::PredType::NATIVE_DOUBLE);
      break;
    }
    case 2: {
      std::vector<int64_t> v(n);
      for (auto& x : v) x = in.ConsumeIntegral<int64_t>();
      file.createDataSet(path, H5::PredType::STD_I64LE, space).write(v.data(), H5::PredType::NATIVE_INT64);
      break;
    }
    case 3: {
      std::vector<uint8_t> v(n);
      for (auto& x : v) x = in.ConsumeIntegral<uint8_t>();
      file.createDataSet(path, H5::PredType::STD_U8LE, space).write(v.data(), H5::PredType::NATIVE_UINT8);
      break;
    }
    default: {  // a variable-length string, as /config is
      H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
      const std::string s = in.ConsumeRandomLengthString(256);
      file.createDataSet(path, type, H5::DataSpace()).write(s, type);
    }
  }
}

void set_attribute(H5::Group& root, const std::string& name, FuzzedDataProvider& in) {
  if (root.attrExists(name)) root.removeAttr(name);
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: break;  // removed
    case 1: {
      const int64_t v = in.ConsumeIntegral<int64_t>();
      root.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace()).write(H5::PredType::NATIVE_INT64, &v);
      break;
    }
    case 2: {
      const double v = in.ConsumeFloatingPoint<double>();
      root.createAttribute(name, H5::PredType::IEEE_F64LE, H5::DataSpace()).write(H5::PredType::NATIVE_DOUBLE, &v);
      break;
    }
    default: {
      H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
      const std::string s = in.ConsumeRandomLengthString(64);
      root.createAttribute(name, type, H5::DataSpace()).write(type, s);
    }
  }
}

// The stored config with one line dropped, one line replaced by input text, or wholly input text.
std::string edited_config(const std::string& text, FuzzedDataProvider& in) {
  std::vector<std::string> lines;
  for (size_t at = 0, next; at < text.size(); at = next + 1) {
    next = text.find('\n', at);
    if (next == std::string::npos) next = text.size();
    lines.push_back(text.substr(at, next - at));
  }
  const int how = in.ConsumeIntegralInRange(0, 2);
  if (how == 2 || lines.empty()) return in.ConsumeRandomLengthString(512);
  const size_t i = in.ConsumeIntegralInRange<size_t>(0, lines.size() - 1);
  if (how == 0) lines.erase(lines.begin() + long(i));
  else lines[i] = in.ConsumeRandomLengthString(80);
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

void edit(const std::string& path, const std::string& config_text, FuzzedDataProvider& in) {
  static const char* const kAttributes[] = {"complete", "steps", "seed", "threads", "num_parameters",
                                            "adamw_t", "wall_seconds", "dslab_version", "git_commit", "blas_core"};
  H5::H5File file(path, H5F_ACC_RDWR);
  H5::Group root = file.openGroup("/");
  const int edits = in.ConsumeIntegralInRange(1, 4);
  for (int e = 0; e < edits && in.remaining_bytes() > 0; ++e) {
    std::vector<std::string> paths;
    collect(root, "", paths);
    const std::string target = paths.empty() ? "/x" : paths[in.ConsumeIntegralInRange<size_t>(0, paths.size() - 1)];
    switch (in.ConsumeIntegralInRange(0, 4)) {
      case 0:  // delete a group or dataset
        if (file.nameExists(target)) file.unlink(target);
        break;
      case 1:  // the same name, another type or shape
        if (file.nameExists(target) && file.childObjType(target) == H5O_TYPE_DATASET) {
          file.unlink(target);
          make_dataset(file, target, in);
        }
        break;
      case 2: {
        H5::Group r = file.openGroup("/");
        set_attribute(r, kAttributes[in.ConsumeIntegralInRange<size_t>(0, std::size(kAttributes) - 1)], in);
        break;
      }
      case 3: {  // the stored config, edited
        if (file.nameExists("/config")) file.unlink("/config");
        H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
        type.setCset(H5T_CSET_UTF8);
        file.createDataSet("/config", type, H5::DataSpace()).write(edited_config(config_text, in), type);
        break;
      }
      default: {  // an extra member beside the target
        const std::string parent = target.substr(0, target.rfind('/'));
        std::string name = in.ConsumeRandomLengthString(12);
        if (name.empty() || name.find_first_of("/.") != std::string::npos) name = "extra";
        const std::string at = parent + "/" + name;
        if (!file.nameExists(at) && (parent.empty() || file.childObjType(parent) == H5O_TYPE_GROUP))
          make_dataset(file, at, in);
      }
    }
  }
  root.close();
  file.close();
}

// Cuts the file short or flips one byte of it (a half-copied or damaged file).
void damage_bytes(const std::string& path, FuzzedDataProvider& in) {
  const auto size = fs::file_size(path);
  if (size == 0) return;
  const auto at = in.ConsumeIntegralInRange<uintmax_t>(0, size - 1);
  if (in.ConsumeBool()) {
    fs::resize_file(path, at);
    return;
  }
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(std::streamoff(at));
  const char c = char(f.get() ^ (1 + in.ConsumeIntegral<uint8_t>() % 255));
  f.seekp(std::streamoff(at));
  f.put(c);
}

int run(std::vector<std::string> words) {
  words.insert(words.begin(), "dslab");
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());
  return dslab::run_cli(int(argv.size()), argv.data());
}

void expect_clean_exit(const std::vector<std::string>& words) {
  const int rc = run(words);
  if (rc != 0 && rc != dslab::kBadInput) std::abort();  // exit 1 (an error that is not the input's) or worse
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  H5::Exception::dontPrint();
  const Files& base = base_files();
  FuzzedDataProvider in(data, size);
  const std::string d = scratch_dir() + "/results";
  const std::string file = d + "/in.h5";
  fs::copy_file(in.ConsumeBool() ? base.checkpoint : base.result, file, fs::copy_options::overwrite_existing);
  try {
    edit(file, base.config_text, in);
  } catch (const H5::Exception&) {  // an edit HDF5 refused: the file as far as it got
  }
  if (in.ConsumeIntegralInRange(0, 7) == 0) damage_bytes(file, in);

  (void)dslab::result_complete(file);  // documented never to throw
  try {
    (void)dslab::read_metrics(file);
  } catch (const std::runtime_error&) {
  }

  expect_clean_exit({"sample", file, "--tokens", "3", "--threads", "1"});
  const std::string out = d + "/out.h5";
  fs::remove(out);
  fs::copy_file(file, dslab::checkpoint_path(out), fs::copy_options::overwrite_existing);
  expect_clean_exit({"train", base.config, "--out", out, "--resume", "--threads", "1"});
  fs::remove(out);
  fs::remove(dslab::checkpoint_path(out));
  expect_clean_exit({"train", base.config, "--out", out, "--threads", "1", "--set", "train.init=" + file, "--set",
                     "train.steps=1", "--set", "train.checkpoint_every=0"});
  fs::remove(out);
  expect_clean_exit({"sim", "balance", "replay", "--logits", file, "--dataset", "layers.1.ffn.router_logits",
                     "--topk", "2", "--score-func", "sigmoid", "--json", d + "/replay.json"});
  return 0;
}
