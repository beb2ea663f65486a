// What the C++ tests need to ask a PyTorch oracle script (tests/oracle/*.py):
// write the inputs to HDF5, run `/usr/bin/python3 SCRIPT IN.h5 OUT.h5`, read
// the answers back, and compare.
#pragma once

#include <H5Cpp.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/test_support.hpp"

namespace dslab::oracle {

inline void write_attr(H5::Group& g, const std::string& name, int value) {
  g.createAttribute(name, H5::PredType::NATIVE_INT, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_INT, &value);
}

inline void write_attr(H5::Group& g, const std::string& name, double value) {
  g.createAttribute(name, H5::PredType::NATIVE_DOUBLE, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_DOUBLE, &value);
}

inline void write_attr(H5::Group& g, const std::string& name, const std::string& value) {
  const H5::StrType type(H5::PredType::C_S1, std::max<size_t>(value.size(), 1));
  g.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value);
}

inline void write_array(H5::Group& g, const std::string& name, const double* data,
                        const std::vector<size_t>& shape) {
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5::DataSpace space(int(dims.size()), dims.data());
  g.createDataSet(name, H5::PredType::NATIVE_DOUBLE, space)
      .write(data, H5::PredType::NATIVE_DOUBLE);
}

inline void write_ints(H5::Group& g, const std::string& name, const std::vector<int>& values) {
  const hsize_t n = values.size();
  H5::DataSpace space(1, &n);
  g.createDataSet(name, H5::PredType::NATIVE_INT, space)
      .write(values.data(), H5::PredType::NATIVE_INT);
}

// A dataset of doubles and its shape.
struct Array {
  std::vector<double> data;
  std::vector<size_t> shape;
};

inline Array read_array(const H5::H5File& file, const std::string& path) {
  const H5::DataSet ds = file.openDataSet(path);
  const H5::DataSpace space = ds.getSpace();
  std::vector<hsize_t> dims(space.getSimpleExtentNdims());
  space.getSimpleExtentDims(dims.data());
  Array a;
  a.shape.assign(dims.begin(), dims.end());
  a.data.resize(space.getSimpleExtentNpoints());
  ds.read(a.data.data(), H5::PredType::NATIVE_DOUBLE);
  return a;
}

// Normwise relative error max|a - b| / max|b| of `ours` against the oracle's.
inline double relative_error(const double* ours, const std::vector<double>& oracle) {
  return test::relative_error(ours, oracle.data(), oracle.size());
}

// Expects `ours` (of `shape`) to match the oracle's tensor to `tolerance`.
inline void expect_close(const std::string& what, const double* ours,
                         const std::vector<size_t>& shape, const Array& oracle, double tolerance) {
  ASSERT_EQ(shape, oracle.shape) << what;
  EXPECT_LE(relative_error(ours, oracle.data), tolerance) << what;
}

// Runs tests/oracle/<script> on in_path with `python`, which writes out_path. Returns an
// empty string on success, otherwise what went wrong (with the script's output); the
// script's exit status goes to *exit_status when given.
inline std::string run_script(const std::string& script, const std::string& in_path,
                              const std::string& out_path, const std::string& python = "/usr/bin/python3",
                              int* exit_status = nullptr) {
  if (!std::filesystem::exists(python))
    return python + " is missing: run scripts/test, which installs it with torch and h5py";
  const std::string cmd = python + " " + DSLAB_SOURCE_DIR "/tests/oracle/" + script + " " +
                          in_path + " " + out_path + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return "could not start: " + cmd;
  std::string output;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) output.append(buf.data(), n);
  const int status = pclose(pipe);
  if (exit_status) *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (!WIFEXITED(status))
    return cmd + " was killed by signal " + std::to_string(WTERMSIG(status)) + ":\n" + output;
  if (WEXITSTATUS(status) != 0)
    return cmd + " failed with exit status " + std::to_string(WEXITSTATUS(status)) + ":\n" + output;
  if (!std::filesystem::exists(out_path)) return cmd + " wrote no " + out_path;
  return "";
}

}  // namespace dslab::oracle
