// Reading run configs (config.hpp): TOML files with extends, --set overrides,
// and errors with file and line. Shared by config_loader.cpp and
// experiment.cpp; commands use config.hpp and experiment.hpp.
#pragma once

#include <toml++/toml.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "experiments/config.hpp"

namespace dslab::config {

// Throws ConfigError("where: message").
[[noreturn]] void fail(const std::string& where, const std::string& message);
std::string where(const toml::node& n, const std::string& file);  // "file:line"
std::string describe_node(const toml::node& n);                   // "string \"four\"", "an array", ...
std::optional<std::string> scalar_text(const toml::node& n);      // TOML text; nullopt for arrays, tables, dates
// The candidate closest to `word`, if close enough to be a likely typo.
std::optional<std::string> nearest(const std::string& word, const std::vector<std::string>& candidates);

bool is_file(const std::string& path);
std::optional<std::string> read_text(const std::string& path);
toml::table parse_toml(const std::string& text, const std::string& name);  // ConfigError on bad syntax

using Entries = std::vector<std::pair<std::string, const toml::node*>>;
Entries in_file_order(const toml::table& table);  // a table's entries in the order of the file
Entries flatten(const toml::table& table);        // the leaves as dotted paths ("train.steps"), in file order

struct Override {
  std::string text;     // "key.path=value"
  std::string origin;   // where it came from, for messages
};

// The config file `path` (after the files it extends), then `overrides` in
// order, then the rules across keys. Throws ConfigError.
RunConfig load_with_overrides(const std::string& path, const std::vector<Override>& overrides,
                              RunKind kind = RunKind::Train);

}  // namespace dslab::config
