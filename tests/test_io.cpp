// experiments/io: atomic writes leave the whole file or the previous one and
// never a temporary file; JSON reads back as written; provenance and
// --threads mean one thing everywhere.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cblas.h>
#include <omp.h>

#include <cstdint>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dslab_version.hpp"
#include "experiments/commands.hpp"
#include "experiments/io.hpp"
#include "tests/test_support.hpp"

namespace dslab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// The names in `dir`, sorted.
std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

TEST(AtomicWrite, FileHasTheExactBytesAndNoTemporaryFileRemains) {
  const std::string dir = test::temp_dir("io_exact");
  const std::string path = dir + "/out.bin";
  constexpr char bytes[] = "line one\r\nline two\n\0binary\xff tail";
  const std::string text(bytes, sizeof bytes - 1);  // the NUL inside included
  write_file_atomically(path, text);
  EXPECT_EQ(test::read_file(path), text);
  EXPECT_EQ(listing(dir), std::vector<std::string>{"out.bin"});

  // A second write replaces the content whole, including with less of it.
  write_file_atomically(path, "short");
  EXPECT_EQ(test::read_file(path), "short");
  EXPECT_EQ(listing(dir), std::vector<std::string>{"out.bin"});
}

TEST(AtomicWrite, StreamWriterFillsTheFile) {
  const std::string dir = test::temp_dir("io_stream");
  const std::string path = dir + "/numbers.txt";
  write_file_atomically(path, [](std::ostream& out) {
    for (int i = 0; i < 3; ++i) out << i << "\n";
  });
  EXPECT_EQ(test::read_file(path), "0\n1\n2\n");
  EXPECT_EQ(listing(dir), std::vector<std::string>{"numbers.txt"});
}

TEST(AtomicWrite, WriterThatThrowsMidwayLeavesThePreviousFileAndNoTemporary) {
  const std::string dir = test::temp_dir("io_throw");
  const std::string path = dir + "/result.json";
  write_file_atomically(path, "previous\n");
  const std::string error = error_of([&] {
    write_file_atomically(path, [](std::ostream& out) {
      out << "half of the new content";
      out.flush();  // the bytes are in the temporary file when the writer fails
      throw std::runtime_error("the writer failed");
    });
  });
  EXPECT_THAT(error, HasSubstr("cannot write " + path));
  EXPECT_THAT(error, HasSubstr("the writer failed"));
  EXPECT_EQ(test::read_file(path), "previous\n");
  EXPECT_EQ(listing(dir), std::vector<std::string>{"result.json"});
}

TEST(AtomicWrite, AnExceptionOfAnyTypeIsCleanedUpAndPassedOn) {
  const std::string dir = test::temp_dir("io_throw_any");
  const std::string path = dir + "/out.txt";
  EXPECT_THROW(write_atomically(path,
                                [](const std::string& tmp) {
                                  std::ofstream(tmp) << "partial";
                                  throw 42;
                                }),
               int);
  EXPECT_TRUE(listing(dir).empty());
}

TEST(AtomicWrite, FailedRenameRemovesTheTemporaryFile) {
  // The final name is taken by a folder that is not empty: the content is
  // written whole under the temporary name, and the rename fails.
  const std::string dir = test::temp_dir("io_rename");
  fs::create_directories(dir + "/taken/inside");
  const std::string path = dir + "/taken";
  EXPECT_THAT(error_of([&] { write_file_atomically(path, "text"); }), HasSubstr("cannot write " + path));
  EXPECT_EQ(listing(dir), std::vector<std::string>{"taken"});
  EXPECT_TRUE(fs::is_directory(path));
}

TEST(AtomicWrite, MissingFolderIsAnErrorNamingTheFileAndCreatesNothing) {
  const std::string dir = test::temp_dir("io_missing");
  const std::string path = dir + "/no/such/folder/out.txt";
  EXPECT_THAT(error_of([&] { write_file_atomically(path, "text"); }), HasSubstr("cannot write " + path));
  EXPECT_TRUE(listing(dir).empty());
}

// Strings that need escaping, numbers at the edges of their types, nesting.
nlohmann::json awkward_document() {
  return {{"quote", "say \"hi\""},
          {"backslash", "C:\\path\\to"},
          {"control", std::string("tab\tnewline\nbell\x07nul\0end", 24)},  // 24: the NUL and "end" too
          {"unicode", "µ → ∞, 日本"},
          {"max_u64", std::numeric_limits<uint64_t>::max()},
          {"min_i64", std::numeric_limits<int64_t>::min()},
          {"third", 1.0 / 3.0},
          {"tiny", 5e-324},
          {"negative_zero", -0.0},
          {"null", nullptr},
          {"flags", {true, false}},
          {"nested", {{"empty_array", nlohmann::json::array()}, {"empty_object", nlohmann::json::object()}}}};
}

TEST(Json, FileReadsBackAsWritten) {
  const std::string dir = test::temp_dir("io_json");
  const std::string path = dir + "/doc.json";
  const nlohmann::json doc = awkward_document();
  write_json(path, doc);
  const std::string text = test::read_file(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const nlohmann::json back = nlohmann::json::parse(text);
  EXPECT_EQ(back, doc);
  EXPECT_EQ(back["control"].get<std::string>(), doc["control"].get<std::string>());
  EXPECT_EQ(back["max_u64"].get<uint64_t>(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(back["third"].get<double>(), 1.0 / 3.0);  // shortest text that reads back exactly
  EXPECT_THAT(text, HasSubstr(R"("quote": "say \"hi\"")"));
  EXPECT_THAT(text, HasSubstr(R"("backslash": "C:\\path\\to")"));
  EXPECT_THAT(text, HasSubstr(R"(\u0000)"));
  EXPECT_EQ(listing(dir), std::vector<std::string>{"doc.json"});
}

TEST(Json, StreamFormatIsDumpWithIndentAndANewline) {
  const nlohmann::json doc = {{"b", 1}, {"a", {1, 2}}};
  std::ostringstream two, one;
  write_json(two, doc);
  write_json(one, doc, 1);
  EXPECT_EQ(two.str(), doc.dump(2) + "\n");
  EXPECT_EQ(one.str(), doc.dump(1) + "\n");
  EXPECT_EQ(two.str(), "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": 1\n}\n");  // json sorts keys
}

TEST(Json, OrderedJsonKeepsInsertionOrder) {
  nlohmann::ordered_json doc;
  doc["zeta"] = 1;
  doc["alpha"] = "two";
  std::ostringstream out;
  write_json(out, doc);
  EXPECT_EQ(out.str(), "{\n  \"zeta\": 1,\n  \"alpha\": \"two\"\n}\n");
  EXPECT_EQ(nlohmann::ordered_json::parse(out.str()), doc);
}

TEST(Json, UnwritableFileIsBadInput) {
  const std::string dir = test::temp_dir("io_json_bad");
  const std::string path = dir + "/missing/doc.json";
  EXPECT_THROW(write_json(path, nlohmann::json{{"a", 1}}), BadInput);
  EXPECT_THAT(error_of([&] { write_json(path, nlohmann::ordered_json{{"a", 1}}); }),
              HasSubstr("cannot write " + path));
  EXPECT_TRUE(listing(dir).empty());
}

TEST(Provenance, NamesThisBuild) {
  EXPECT_EQ(provenance().dslab_version, DSLAB_VERSION);
  EXPECT_EQ(provenance().git_commit, DSLAB_GIT_COMMIT);
  EXPECT_FALSE(provenance().git_commit.empty());
}

TEST(Provenance, JsonHasCommandAndSeedOnlyWhenGiven) {
  const nlohmann::json bare = provenance_json();
  EXPECT_EQ(bare, (nlohmann::json{{"dslab_version", DSLAB_VERSION},
                                   {"git_commit", DSLAB_GIT_COMMIT},
                                   {"blas_core", std::string(openblas_get_corename())}}));
  EXPECT_FALSE(bare["blas_core"].get<std::string>().empty());
  const nlohmann::json full = provenance_json("gemm", uint64_t(7));
  EXPECT_EQ(full["command"], "gemm");
  EXPECT_EQ(full["seed"].get<uint64_t>(), 7u);
  EXPECT_EQ(full["dslab_version"], DSLAB_VERSION);
  EXPECT_EQ(full.size(), 5u);
  EXPECT_FALSE(provenance_json("replay").contains("seed"));
}

TEST(Threads, PositiveCountIsSetZeroKeepsTheCurrentOne) {
  const int before = omp_get_max_threads();
  EXPECT_EQ(use_threads(0), before);
  EXPECT_EQ(use_threads(3), 3);
  EXPECT_EQ(omp_get_max_threads(), 3);
  EXPECT_EQ(use_threads(-1), 3);
  EXPECT_EQ(use_threads(before), before);
}

}  // namespace
}  // namespace dslab
