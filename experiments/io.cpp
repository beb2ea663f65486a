// Atomic writes, JSON output, provenance and --threads; see io.hpp.
#include "experiments/io.hpp"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "dslab_version.hpp"
#include "experiments/commands.hpp"

namespace dslab {

namespace fs = std::filesystem;

void write_atomically(const std::string& path, const std::function<void(const std::string& tmp_path)>& write) {
  // The process id keeps two processes writing the same PATH apart.
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  auto discard = [&] {
    std::error_code ignored;
    fs::remove(tmp, ignored);
  };
  try {
    write(tmp);
    fs::rename(tmp, path);  // atomic on POSIX: PATH is the old file or the new one
  } catch (const std::exception& e) {
    discard();
    throw std::runtime_error("cannot write " + path + ": " + e.what());
  } catch (...) {
    discard();
    throw;
  }
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
    write(out);
    out.flush();
    const int flush_errno = errno;  // ENOSPC (disk full), EFBIG (ulimit -f), EIO, ...
    if (!out) throw std::runtime_error("writing " + tmp + " failed: " + std::strerror(flush_errno));
    out.close();
    if (!out) throw std::runtime_error("closing " + tmp + " failed: " + std::strerror(errno));
  });
}

void write_file_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, [&](std::ostream& out) { out << text; });
}

namespace {

template <class Json> void write_json_to(std::ostream& out, const Json& doc, int indent) {
  out << doc.dump(indent) << "\n";
}

template <class Json> void write_json_file(const std::string& path, const Json& doc, int indent) {
  try {
    write_file_atomically(path, [&](std::ostream& out) { write_json_to(out, doc, indent); });
  } catch (const std::runtime_error& e) {
    throw BadInput(e.what());
  }
}

}  // namespace

void write_json(std::ostream& out, const nlohmann::json& doc, int indent) { write_json_to(out, doc, indent); }
void write_json(std::ostream& out, const nlohmann::ordered_json& doc, int indent) {
  write_json_to(out, doc, indent);
}
void write_json(const std::string& path, const nlohmann::json& doc, int indent) {
  write_json_file(path, doc, indent);
}
void write_json(const std::string& path, const nlohmann::ordered_json& doc, int indent) {
  write_json_file(path, doc, indent);
}

const Provenance& provenance() {
  static const Provenance p{DSLAB_VERSION, DSLAB_GIT_COMMIT, openblas_get_corename()};
  return p;
}

nlohmann::json provenance_json(const std::string& command, std::optional<uint64_t> seed) {
  nlohmann::json j = {{"dslab_version", provenance().dslab_version},
                      {"git_commit", provenance().git_commit},
                      {"blas_core", provenance().blas_core}};
  if (!command.empty()) j["command"] = command;
  if (seed) j["seed"] = *seed;
  return j;
}

int use_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
  return omp_get_max_threads();
}

}  // namespace dslab
