// Experiment files (experiment.hpp): each [[runs]] entry expanded into its
// runs, every run's config loaded as `dslab run` would, with and without the
// smoke overrides.
#include "experiments/experiment.hpp"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <utility>

#include "experiments/config_loader.hpp"
#include "experiments/config_schema.hpp"

namespace dslab {
namespace {

using namespace config;
namespace fs = std::filesystem;

std::string one_line(const toml::node& node, const std::string& at, const std::string& key) {
  const auto* s = node.as_string();
  if (!s || s->get().empty() || s->get().find_first_of("\r\n") != std::string::npos)
    fail(at, key + " must be one non-empty line of text, got " + describe_node(node));
  return s->get();
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Characters safe in a file name anywhere but at its start.
bool inner_name_char(char c) { return name_char(c) || c == '.' || c == '-' || c == '+' || c == '='; }

// Run names become file names: letters, digits and _ . - + =, starting with
// a letter, digit or '_'.
std::string run_name(const toml::node& node, const std::string& at) {
  const auto* s = node.as_string();
  const bool ok = s && !s->get().empty() && name_char(s->get()[0]) &&
                  std::all_of(s->get().begin(), s->get().end(), inner_name_char);
  if (!ok)
    fail(at, "name must be letters, digits and _ . - + = (starting with a letter, digit or _), "
             "got " + describe_node(node));
  return s->get();
}

// "n_kv_heads=2": the last path component and the value, safe in a file name.
std::string name_part(const std::string& key, const toml::node& value) {
  const auto* s = value.as_string();
  std::string text = key.substr(key.rfind('.') + 1) + "=" + (s ? s->get() : *scalar_text(value));
  for (char& c : text)
    if (!inner_name_char(c)) c = '_';
  return text;
}

// One key of [runs.set]: its values (several when swept) and where it is.
struct Axis {
  std::string key;
  std::vector<const toml::node*> values;
  bool swept;
  std::string at;
};

std::vector<Axis> run_axes(const toml::table& set, const std::string& file, const std::string& run) {
  std::vector<Axis> axes;
  for (const auto& [key, node] : flatten(set)) {
    Axis axis{key, {}, node->is_array(), where(*node, file)};
    if (const toml::array* list = node->as_array()) {
      if (list->empty()) fail(axis.at, "run '" + run + "': " + key + " = [] sweeps no value");
      for (const toml::node& v : *list) axis.values.push_back(&v);
    } else {
      axis.values.push_back(node);
    }
    for (const toml::node* v : axis.values)
      if (!scalar_text(*v))
        fail(axis.at, "run '" + run + "': " + key + " takes a value or a list of values, got " +
                          describe_node(*v));
    axes.push_back(std::move(axis));
  }
  return axes;
}

// Loads the config as the run would, with and without the smoke overrides.
void validate_run(const Experiment& e, const std::string& run, const std::vector<Override>& overrides,
                  const std::vector<Override>& smoke) {
  load_with_overrides(e.config_path, overrides);
  if (smoke.empty()) return;
  std::vector<Override> with_smoke = overrides;
  for (const Override& s : smoke) with_smoke.push_back({s.text, s.origin + " with run '" + run + "'"});
  load_with_overrides(e.config_path, with_smoke);
}

// Expands one [[runs]] entry into the cartesian product of its lists, the
// first key varying slowest, and validates each run.
void expand_run(Experiment& e, const toml::table& entry, const std::string& file,
                const std::vector<Override>& smoke, std::map<std::string, std::string>& seen) {
  const std::string at = where(entry, file);
  std::optional<std::string> name;
  const toml::table* set = nullptr;
  for (const auto& [key, node] : in_file_order(entry)) {
    if (key == "name") {
      name = run_name(*node, where(*node, file));
    } else if (key == "set") {
      set = node->as_table();
      if (!set) fail(where(*node, file), "set must be the table [runs.set], got " + describe_node(*node));
    } else {
      fail(where(*node, file), "unknown key '" + key + "' in [[runs]] (a run holds name and [runs.set])");
    }
  }
  if (!name) fail(at, "a [[runs]] entry needs a name");
  const std::vector<Axis> axes = set ? run_axes(*set, file, *name) : std::vector<Axis>{};
  std::vector<size_t> index(axes.size(), 0);
  for (;;) {
    ExperimentRun run{*name, {}};
    for (size_t i = 0; i < axes.size(); ++i) {
      const toml::node& v = *axes[i].values[index[i]];
      run.overrides.push_back(axes[i].key + "=" + *scalar_text(v));
      if (axes[i].swept) run.name.append("-").append(name_part(axes[i].key, v));
    }
    if (const auto it = seen.find(run.name); it != seen.end())
      fail(at, "duplicate run name '" + run.name + "' (also at " + it->second + ")");
    seen[run.name] = at;
    std::vector<Override> overrides;
    for (size_t i = 0; i < axes.size(); ++i)
      overrides.push_back({run.overrides[i], axes[i].at + ": run '" + run.name + "'"});
    validate_run(e, run.name, overrides, smoke);
    e.runs.push_back(std::move(run));
    // Next combination: the last key moves fastest.
    size_t i = axes.size();
    while (i > 0 && ++index[i - 1] == axes[i - 1].values.size()) index[--i] = 0;
    if (i == 0) break;
  }
}

}  // namespace

Experiment load_experiment(const std::string& path) {
  const auto text = read_text(path);
  if (!text) throw ConfigError(path + ": cannot read the experiment file");
  const toml::table root = parse_toml(*text, path);
  Experiment e;
  e.path = path;
  e.name = fs::path(path).stem().string();
  std::vector<Override> smoke;
  const toml::array* runs = nullptr;
  bool has_sweep = false;
  for (const auto& [key, node] : in_file_order(root)) {
    const std::string at = where(*node, path);
    if (key == "description") {
      e.description = one_line(*node, at, key);
    } else if (key == "config") {
      const std::string config = one_line(*node, at, key);
      e.config_path = (fs::path(path).parent_path() / config).lexically_normal().string();
      if (!is_file(e.config_path))
        fail(at, "config = " + toml_string(config) + ": no such file " + e.config_path);
    } else if (key == "smoke") {
      const toml::table* table = node->as_table();
      if (!table) fail(at, "smoke must be the table [smoke], got " + describe_node(*node));
      for (const auto& [k, v] : flatten(*table)) {
        const auto value = scalar_text(*v);
        if (!value || v->is_array())
          fail(where(*v, path), "[smoke] " + k + " takes one value, got " + describe_node(*v));
        smoke.push_back({k + "=" + *value, where(*v, path) + ": [smoke]"});
        e.smoke_overrides.push_back(k + "=" + *value);
      }
    } else if (key == "runs") {
      runs = node->as_array();
      if (!runs || !runs->is_array_of_tables())
        fail(at, "runs must be [[runs]] tables, each with a name, got " + describe_node(*node));
    } else if (key == "notebook") {
      const std::string notebook = one_line(*node, at, key);
      e.notebook = (fs::path(path).parent_path() / notebook).lexically_normal().string();
      if (!is_file(e.notebook))
        fail(at, "notebook = " + toml_string(notebook) + ": no such file " + e.notebook);
    } else if (key == "sweep") {
      if (!node->is_table()) fail(at, "sweep must be the table [sweep], got " + describe_node(*node));
      has_sweep = true;  // the notebook's own parameters, read by the notebook
    } else {
      const auto hint = nearest(key, {"description", "config", "smoke", "runs", "notebook", "sweep"});
      fail(at, "unknown key '" + key + "' (" + (hint ? "did you mean '" + *hint + "'? " : "") +
                   "an experiment holds description, config, [smoke], [[runs]], notebook, [sweep])");
    }
  }
  if (e.description.empty()) fail(path, "missing description = \"...\" (one line for dslab list)");
  if (e.config_path.empty() && !e.notebook.empty()) {
    // A simulator sweep: its notebook runs the simulators and draws the figures.
    if (runs) fail(path, "a sweep (notebook without config) has no [[runs]]; its notebook runs it");
    return e;
  }
  if (has_sweep) fail(path, "[sweep] belongs to a notebook-only experiment (no config, no [[runs]])");
  if (e.config_path.empty())
    fail(path, "missing config = \"...\" (the run config, relative to this file), or notebook = "
               "\"...\" for a simulator sweep");
  if (!runs || runs->empty()) fail(path, "no runs: add a [[runs]] table with a name");
  std::map<std::string, std::string> seen;  // run name -> where its entry is
  for (const toml::node& entry : *runs) expand_run(e, *entry.as_table(), path, smoke, seen);
  return e;
}

}  // namespace dslab
