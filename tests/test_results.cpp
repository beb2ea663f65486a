// Result files and checkpoints: round trips, bitwise-exact resume, refusal of
// a checkpoint from another config, and files written whole or not at all.
#include <tuple>

#include <cblas.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <H5Cpp.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "dslab_version.hpp"
#include "experiments/results.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

ModelArgs tiny_model() {
  ModelArgs m;
  m.dim = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.inter_dim = 64;
  m.max_seq_len = 16;
  return m;
}

TrainArgs tiny_train() {
  TrainArgs t;
  t.steps = 10;
  t.batch_size = 4;
  t.seq_len = 16;
  t.warmup_steps = 3;
  t.eval_every = 4;
  t.eval_batches = 2;
  t.seed = 11;
  return t;
}

const char* kConfig =
    "[model]\ndim = 32\nn_layers = 2\nn_heads = 4\nn_kv_heads = 2\ninter_dim = 64\n"
    "[train]\nsteps = 10\nbatch_size = 4\nseq_len = 16\nseed = 11\n";

RunInfo run_info(const std::string& config_text = kConfig) {
  RunInfo info;
  info.config_text = config_text;
  info.seed = 11;
  info.threads = 2;
  info.wall_seconds = 1.5;
  return info;
}

class Results : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::temp_dir(std::string("results_") +
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    corpus = ByteCorpus::from_file(test::write_text_corpus(dir, 1 << 14), 0.1);
    fs::remove(dir + "/corpus.txt");
  }
  std::unique_ptr<Trainer> trainer(const ModelArgs& m = tiny_model()) {
    return std::make_unique<Trainer>(m, tiny_train(), corpus);
  }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::string dir;
  ByteCorpus corpus;
};

bool bitwise_equal(const ParamRef<float>& a, const ParamRef<float>& b) {
  return a.shape == b.shape && std::memcmp(a.data, b.data, a.size() * sizeof(float)) == 0;
}

void expect_same_weights(Transformer<float>& a, Transformer<float>& b) {
  const auto ra = a.params.refs(), rb = b.params.refs();
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_TRUE(bitwise_equal(ra[i], rb[i])) << ra[i].name;
}

void expect_same_moments(const AdamW<float>& a, const AdamW<float>& b) {
  EXPECT_EQ(a.t, b.t);
  ASSERT_EQ(a.offset, b.offset);
  for (size_t i = 0; i < a.offset.size(); ++i) {
    EXPECT_EQ(std::memcmp(a.m_of(i), b.m_of(i), a.size_of(i) * sizeof(float)), 0) << i;
    EXPECT_EQ(std::memcmp(a.v_of(i), b.v_of(i), a.size_of(i) * sizeof(float)), 0) << i;
  }
}

// The message of the std::runtime_error that `f` throws; a test failure when none.
template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::runtime_error was thrown";
  return "";
}

int64_t int_attr(const H5::H5File& f, const char* name) {
  int64_t v = 0;
  f.openAttribute(name).read(H5::PredType::NATIVE_INT64, &v);
  return v;
}

std::string string_attr(const H5::H5File& f, const char* name) {
  H5::Attribute a = f.openAttribute(name);
  std::string s;
  a.read(a.getStrType(), s);
  return s;
}

TEST_F(Results, ResultRoundTrip) {
  auto t = trainer();
  t->run(nullptr);
  const std::string path = dir + "/run.h5";
  write_result(path, run_info(), *t);

  EXPECT_EQ(listing(), std::vector<std::string>{"run.h5"});  // no temporary file left
  EXPECT_TRUE(result_complete(path));
  EXPECT_EQ(read_config_text(path), kConfig);
  EXPECT_EQ(read_metrics(path), t->metrics);  // every column, exactly
  EXPECT_EQ(read_metrics(path).at("val_step"), (std::vector<double>{4, 8, 10}));

  Transformer<float> model(tiny_model());
  read_model(path, model);
  expect_same_weights(model, t->model);

  const H5::H5File f(path, H5F_ACC_RDONLY);
  EXPECT_EQ(int_attr(f, "complete"), 1);
  EXPECT_EQ(int_attr(f, "steps"), 10);
  EXPECT_EQ(int_attr(f, "seed"), 11);
  EXPECT_EQ(int_attr(f, "threads"), 2);
  EXPECT_EQ(int_attr(f, "num_parameters"), int64_t(t->model.num_parameters()));
  EXPECT_EQ(string_attr(f, "dslab_version"), DSLAB_VERSION);
  EXPECT_EQ(string_attr(f, "git_commit"), DSLAB_GIT_COMMIT);
  EXPECT_EQ(string_attr(f, "blas_core"), std::string(openblas_get_corename()));
  EXPECT_FALSE(f.nameExists("optimizer"));
}

TEST_F(Results, CheckpointRoundTrip) {
  auto t = trainer();
  for (int i = 0; i < 5; ++i) t->train_step();
  const std::string path = checkpoint_path(dir + "/run.h5");
  EXPECT_EQ(path, dir + "/run.ckpt.h5");
  write_checkpoint(path, run_info(), *t);
  EXPECT_EQ(listing(), std::vector<std::string>{"run.ckpt.h5"});
  EXPECT_FALSE(result_complete(path));

  auto restored = trainer();
  read_checkpoint(path, kConfig, *restored);
  EXPECT_EQ(restored->step, 5);
  EXPECT_EQ(restored->metrics, t->metrics);
  expect_same_weights(restored->model, t->model);
  expect_same_moments(restored->optimizer, t->optimizer);
}

// N steps straight vs k steps, checkpoint, a fresh trainer restored, on to N.
TEST_F(Results, ResumeIsBitwiseExact) {
  auto straight = trainer();
  straight->run(nullptr);

  auto first = trainer();
  first->run([](const StepReport& r) { return r.step < 6; });
  ASSERT_EQ(first->step, 6);
  const std::string path = dir + "/run.ckpt.h5";
  write_checkpoint(path, run_info(), *first);
  first.reset();

  auto resumed = trainer();
  read_checkpoint(path, kConfig, *resumed);
  resumed->run(nullptr);

  ASSERT_EQ(resumed->step, straight->step);
  for (const auto& [name, column] : straight->metrics) {
    if (name == "tokens_per_second" || name == "step_seconds" || name == "peak_rss_mib")
      continue;  // timings and this process's memory
    ASSERT_TRUE(resumed->metrics.count(name)) << name;
    const auto& other = resumed->metrics.at(name);
    ASSERT_EQ(other.size(), column.size()) << name;
    EXPECT_EQ(std::memcmp(other.data(), column.data(), column.size() * sizeof(double)), 0) << name;
  }
  EXPECT_EQ(resumed->metrics.size(), straight->metrics.size());
  expect_same_weights(resumed->model, straight->model);
  expect_same_moments(resumed->optimizer, straight->optimizer);
}

TEST_F(Results, CheckpointOfAnotherConfigIsRefused) {
  auto t = trainer();
  t->train_step();
  const std::string path = dir + "/run.ckpt.h5";
  write_checkpoint(path, run_info(), *t);

  std::string other = kConfig;
  other.replace(other.find("seq_len = 16"), 12, "seq_len = 8");
  auto fresh = trainer();
  const std::string error = error_of([&] { read_checkpoint(path, other, *fresh); });
  EXPECT_THAT(error, HasSubstr(path));
  EXPECT_THAT(error, HasSubstr("`seq_len = 16` in the checkpoint and `seq_len = 8`"));
  EXPECT_EQ(fresh->step, 0);  // left unchanged
}

TEST_F(Results, CheckpointOfAnotherModelShapeIsRefused) {
  auto t = trainer();
  t->train_step();
  const std::string path = dir + "/run.ckpt.h5";
  write_checkpoint(path, run_info(), *t);

  ModelArgs wider = tiny_model();
  wider.dim = 48;
  auto w = trainer(wider);
  const std::string error = error_of([&] { read_checkpoint(path, kConfig, *w); });
  EXPECT_THAT(error, HasSubstr(path));
  EXPECT_THAT(error, HasSubstr("has shape [256, 32], the model expects [256, 48]"));

  ModelArgs deeper = tiny_model();
  deeper.n_layers = 3;
  auto d = trainer(deeper);
  EXPECT_THAT(error_of([&] { read_checkpoint(path, kConfig, *d); }), HasSubstr("has no layers.2."));
}

TEST_F(Results, ResultIsNotACheckpoint) {
  auto t = trainer();
  t->train_step();
  const std::string path = dir + "/run.h5";
  write_result(path, run_info(), *t);
  auto fresh = trainer();
  EXPECT_THAT(error_of([&] { read_checkpoint(path, kConfig, *fresh); }),
              HasSubstr("not a checkpoint"));
}

TEST_F(Results, ParentFolderIsCreated) {
  auto t = trainer();
  t->train_step();
  const std::string path = dir + "/a/b/run.h5";
  write_result(path, run_info(), *t);
  EXPECT_TRUE(result_complete(path));
  EXPECT_EQ(fs::directory_iterator(dir + "/a/b")->path().filename(), "run.h5");
}

TEST_F(Results, UnwritablePathThrowsAndLeavesNothing) {
  auto t = trainer();
  t->train_step();
  // A parent that is a regular file: the folder cannot be created.
  std::ofstream(dir + "/blocker") << "x";
  const std::string under_file = dir + "/blocker/run.h5";
  EXPECT_THAT(error_of([&] { write_result(under_file, run_info(), *t); }), HasSubstr(under_file));
  // A final name taken by a non-empty folder: the file is written whole to its
  // temporary name, the rename fails, and the temporary file must go.
  fs::create_directories(dir + "/taken.h5/inside");
  const std::string taken = dir + "/taken.h5";
  EXPECT_THAT(error_of([&] { write_checkpoint(taken, run_info(), *t); }), HasSubstr(taken));
  EXPECT_EQ(listing(), (std::vector<std::string>{"blocker", "taken.h5"}));
}

TEST_F(Results, ResultCompleteIsFalseForMissingGarbageAndCheckpoints) {
  EXPECT_FALSE(result_complete(dir + "/missing.h5"));
  std::ofstream(dir + "/garbage.h5") << "not an HDF5 file\n";
  EXPECT_FALSE(result_complete(dir + "/garbage.h5"));
  std::ofstream(dir + "/empty.h5").close();
  EXPECT_FALSE(result_complete(dir + "/empty.h5"));
  EXPECT_FALSE(result_complete(dir));

  auto t = trainer();
  t->train_step();
  write_checkpoint(dir + "/run.ckpt.h5", run_info(), *t);
  EXPECT_FALSE(result_complete(dir + "/run.ckpt.h5"));
}

// Found by fuzz_results: a checkpoint whose steps attribute had been set to
// INT64_MIN resumed and trained from there (signed overflow in the ETA, and a
// run that never ends). A step count outside [0, the config's steps], or a
// negative AdamW step count, is now refused naming the file.
TEST_F(Results, CheckpointWithAStepCountOutsideItsConfigIsRefused) {
  auto t = trainer();
  t->train_step();
  const std::string path = dir + "/run.ckpt.h5";
  for (const auto& [attr, value, message] :
       {std::tuple<const char*, int64_t, const char*>{"steps", INT64_MIN, "is outside [0, "},
        {"steps", -1, "steps = -1 is outside [0, "},
        {"steps", t->args.steps + 1, "the steps of its config"},
        {"adamw_t", -3, "adamw_t = -3 (AdamW's step count) is negative"}}) {
    write_checkpoint(path, run_info(), *t);
    {
      H5::H5File f(path, H5F_ACC_RDWR);
      f.removeAttr(attr);
      f.createAttribute(attr, H5::PredType::STD_I64LE, H5::DataSpace()).write(H5::PredType::NATIVE_INT64, &value);
    }
    auto fresh = trainer();
    const std::string error = error_of([&] { read_checkpoint(path, kConfig, *fresh); });
    EXPECT_THAT(error, HasSubstr(path)) << attr << " = " << value;
    EXPECT_THAT(error, HasSubstr(message)) << attr << " = " << value;
    EXPECT_EQ(fresh->step, 0);  // left unchanged
  }
}

TEST_F(Results, ReadErrorsNameTheFile) {
  const std::string missing = dir + "/missing.h5", garbage = dir + "/garbage.h5";
  std::ofstream(garbage) << "not an HDF5 file\n";
  Transformer<float> model(tiny_model());
  for (const std::string& path : {missing, garbage}) {
    EXPECT_THAT(error_of([&] { read_config_text(path); }), HasSubstr(path));
    EXPECT_THAT(error_of([&] { read_metrics(path); }), HasSubstr(path));
    EXPECT_THAT(error_of([&] { read_model(path, model); }), HasSubstr(path));
  }
}

}  // namespace
}  // namespace dslab
