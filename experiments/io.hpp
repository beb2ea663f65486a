// What every dslab command does the same way when it writes its outputs:
// files appear whole or not at all, JSON has one format, every output names
// the build that wrote it, and --threads means one thing.
//
// Atomic writes: the content goes to PATH.tmp-<pid> in PATH's own folder (so
// the rename never crosses a file system) and is renamed to PATH only once it
// is complete. A process killed midway leaves at most the temporary file,
// never a half-written PATH; a write that fails removes the temporary file and
// leaves PATH as it was (its previous content, or absent).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace dslab {

// ---- atomic writes ----------------------------------------------------------

// Calls `write(tmp_path)`, which creates and fills the file at tmp_path (an
// HDF5 file, say), then renames tmp_path to `path`. If `write` throws or the
// rename fails, tmp_path is removed, `path` is untouched, and a
// std::runtime_error "cannot write PATH: <reason>" is thrown (an exception not
// derived from std::exception passes through unchanged, after the clean-up).
// The folder of `path` is not created.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp_path)>& write);

// The same for a file written through a stream (binary mode, no newline
// translation): `write` fills the stream; a stream that fails while open or
// on closing counts as a failed write.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

// The same for a file whose whole content is `text`, byte for byte.
void write_file_atomically(const std::string& path, const std::string& text);

// ---- JSON -------------------------------------------------------------------

// `doc` as dslab writes JSON: doc.dump(indent) (UTF-8, keys of nlohmann::json
// sorted, of ordered_json in insertion order) and a final newline.
void write_json(std::ostream& out, const nlohmann::json& doc, int indent = 2);
void write_json(std::ostream& out, const nlohmann::ordered_json& doc, int indent = 2);

// The same to a file, atomically. The path is one the user named (--json):
// when it cannot be written the error is BadInput (exit status 2), its
// message "cannot write PATH: <reason>".
void write_json(const std::string& path, const nlohmann::json& doc, int indent = 2);
void write_json(const std::string& path, const nlohmann::ordered_json& doc, int indent = 2);

// ---- provenance -------------------------------------------------------------

// The build that wrote an output: recorded in every HDF5 result and checkpoint
// (attributes on /) and in every JSON result, and printed by `dslab --version`.
struct Provenance {
  std::string dslab_version;  // the project version (CMake's PROJECT_VERSION)
  std::string git_commit;     // the commit the program was built from, taken at build time
  // OpenBLAS's kernel family in this process (openblas_get_corename: "Haswell",
  // "SkylakeX", "Cooperlake", "Zen", ...), chosen from the CPU at start unless
  // OPENBLAS_CORETYPE names one. Two runs whose families differ round their
  // matrix products differently: the first reason results differ across
  // machines (README, "What reproduces where").
  std::string blas_core;
};
const Provenance& provenance();

// The start of a JSON result: {"dslab_version", "git_commit", "blas_core"}, plus "command"
// when `command` is not empty and "seed" when given.
nlohmann::json provenance_json(const std::string& command = "", std::optional<uint64_t> seed = std::nullopt);

// ---- threads ----------------------------------------------------------------

// --threads N: sets the OpenMP thread count when n > 0 (n <= 0 keeps
// OMP_NUM_THREADS, or all cores); returns the count now in effect.
int use_threads(int n);

}  // namespace dslab
