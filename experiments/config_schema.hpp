// The schema of run configs (config.hpp): every key with its type, its range
// or choices, its field in RunConfig and its description; and the TOML text of
// values. Shared by config_schema.cpp, config_loader.cpp and experiment.cpp;
// commands use config.hpp.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "experiments/config.hpp"

namespace dslab::config {

enum class KeyType { Integer, Float, String, Bool, StringList };

using Value = std::variant<int64_t, double, std::string, bool, std::vector<std::string>>;

// A field that is an enum, read and written by its name (reference/enum_names.hpp).
struct EnumField {
  std::function<std::string(RunConfig&)> get;
  std::function<void(RunConfig&, const std::string&)> set;  // the name is one of the key's choices
};

// Where a key's value lives in RunConfig.
using Field = std::variant<int& (*)(RunConfig&), int64_t& (*)(RunConfig&), uint64_t& (*)(RunConfig&),
                           double& (*)(RunConfig&), std::string& (*)(RunConfig&), bool& (*)(RunConfig&),
                           std::vector<std::string>& (*)(RunConfig&), EnumField>;

// Allowed floats: lo .. hi, each end open or closed.
struct Interval {
  double lo, hi;
  bool lo_open, hi_open;
};

struct KeySpec {
  std::string table, name;
  KeyType type;
  Field field;
  int64_t int_min = 0, int_max = 0;       // Integer: allowed int_min .. int_max
  Interval interval{};                    // Float
  std::vector<std::string> choices{};     // String: allowed values (an enum's names); empty: any non-empty
  bool allow_empty = false;               // String without choices: "" allowed too
  std::string description{};
  std::optional<RunKind> only{};          // a key of this kind's configs only (data.task_share: Train)
  std::string path() const { return table + "." + name; }
};

// Every key of a run config, table by table; defaults come from the structs.
const std::vector<KeySpec>& schema();
// The tables a config of `kind` holds: Train: model, balance, mtp, train, data,
// fp8, task; Rl: model, balance, mtp, data, fp8, rl, grpo, ppo, rollout, task, reward.
const std::vector<std::string>& table_names(RunKind kind = RunKind::Train);
// nullptr for an unknown key or one a config of `kind` does not hold.
const KeySpec* find_key(const std::string& path, RunKind kind = RunKind::Train);
bool is_table(const std::string& name, RunKind kind = RunKind::Train);
bool holds_key(const KeySpec& key, RunKind kind);  // its table is of `kind` and it is not only another's
std::vector<std::string> keys_of(const std::string& table, RunKind kind);

Value read_value(const KeySpec& key, RunConfig& cfg);
// `value` already has the key's type and lies in its range.
void write_value(const KeySpec& key, RunConfig& cfg, const Value& value);
// Why `v` is not allowed for `key`, if it is not.
std::optional<std::string> range_violation(const KeySpec& key, const Value& v);
std::string allowed(const KeySpec& key);       // "1 .. 65536", "(0, 1]", "one of mha, mla", ...
const char* type_name(KeyType t);              // "integer"
const char* type_with_article(KeyType t);      // "an integer"

// Every key of cfg.kind's tables, table by table, in schema order (RunConfig::text).
std::string to_toml_text(const RunConfig& cfg);

// Text
std::string join(const std::vector<std::string>& items, const std::string& sep);
std::string shortest(double x);             // shortest text that reads back to the same double
std::string toml_float(double x);           // shortest, with ".0" where it looks like an integer
std::string toml_string(const std::string& s);
std::string format_value(const Value& v);   // as TOML

}  // namespace dslab::config
