// dslab's OpenMP wait policy (experiments/omp_wait.hpp): with OMP_WAIT_POLICY
// and GOMP_SPINCOUNT unset, the program runs passive; a user's setting is
// kept; `dslab run`'s child processes inherit the default. The oracle is
// libgomp itself: OMP_DISPLAY_ENV=verbose makes its constructor print the
// settings it read, GOMP_SPINCOUNT among them (0 when passive, 300000 for
// libgomp's own default, 3e10 when active), once per process that loads it.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.hpp"

namespace dslab {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// stdout+stderr of `env -u ... <env> dslab <args>`: the OpenMP variables the
// test does not set are removed, whatever ctest's environment holds.
std::string run_with_env(const std::string& env, const std::string& args, int* status = nullptr) {
  const std::string cmd =
      "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u DSLAB_DEFAULT_OMP_WAIT_POLICY OMP_DISPLAY_ENV=verbose " +
      env + " " + DSLAB_BINARY + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int rc = pclose(pipe);
  if (status) *status = rc;
  return out;
}

int count(const std::string& text, const std::string& what) {
  int c = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++c;
  return c;
}

constexpr const char* kDisplay = "OPENMP DISPLAY ENVIRONMENT BEGIN";

TEST(OmpWait, PassiveWhenTheUserSetsNothing) {
  const std::string out = run_with_env("", "--version");
  // libgomp started once, in the re-executed process, and read a spin count of 0.
  EXPECT_EQ(count(out, kDisplay), 1) << out;
  EXPECT_THAT(out, HasSubstr("GOMP_SPINCOUNT = '0'")) << out;
  EXPECT_THAT(out, HasSubstr("OpenMP wait policy: passive (dslab's default")) << out;
}

TEST(OmpWait, TheUsersPolicyIsKept) {
  const std::string active = run_with_env("OMP_WAIT_POLICY=active", "--version");
  EXPECT_EQ(count(active, kDisplay), 1) << active;
  EXPECT_THAT(active, HasSubstr("OMP_WAIT_POLICY = 'ACTIVE'")) << active;
  EXPECT_THAT(active, Not(HasSubstr("GOMP_SPINCOUNT = '0'"))) << active;
  EXPECT_THAT(active, HasSubstr("OpenMP wait policy: OMP_WAIT_POLICY=active (from the environment)"));

  const std::string spin = run_with_env("GOMP_SPINCOUNT=1234", "--version");
  EXPECT_EQ(count(spin, kDisplay), 1) << spin;
  EXPECT_THAT(spin, HasSubstr("GOMP_SPINCOUNT = '1234'")) << spin;
  EXPECT_THAT(spin, HasSubstr("OpenMP wait policy: GOMP_SPINCOUNT=1234 (from the environment)"));
}

TEST(OmpWait, RunChildrenInheritTheDefault) {
  namespace fs = std::filesystem;
  const std::string dir = test::temp_dir("omp_wait_run");
  const std::string corpus = test::write_text_corpus(dir, 60000);
  fs::create_directories(dir + "/configs");
  fs::copy_file(std::string(DSLAB_SOURCE_DIR) + "/experiments/configs/tiny.toml", dir + "/configs/tiny.toml");
  std::ofstream(dir + "/sweep.toml") << "description = \"two seeds\"\nconfig = \"configs/tiny.toml\"\n"
                                     << "[[runs]]\nname = \"s\"\n[runs.set]\n"
                                     << "\"data.path\" = \"" << corpus << "\"\n"
                                     << "\"train.steps\" = 2\n\"train.warmup_steps\" = 1\n\"train.eval_every\" = 2\n"
                                     << "\"train.seed\" = [1, 2]\n";
  int status = -1;
  const std::string out = run_with_env("", "run " + dir + "/sweep.toml --jobs 2 --results " + dir + "/results",
                                       &status);
  ASSERT_EQ(status, 0) << out;
  // `dslab run` and its two `dslab train` children: three processes, all passive.
  EXPECT_EQ(count(out, kDisplay), 3) << out;
  EXPECT_EQ(count(out, "GOMP_SPINCOUNT = '0'"), 3) << out;
}

}  // namespace
}  // namespace dslab
