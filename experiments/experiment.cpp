// Experiment files (experiment.hpp): each [[runs]] entry expanded into its
// runs, every run's config loaded as `dslab run` would (its own config and
// kind), with and without the smoke overrides its kind has; then the run
// references linked and checked for cycles.
#include "experiments/experiment.hpp"

#include <algorithm>
#include <filesystem>
#include <functional>
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

// A list of strings for a key that takes one (rollout.stop) is its value;
// a list of such lists sweeps it.
std::vector<Axis> run_axes(const toml::table& set, const std::string& file, const std::string& run, RunKind kind) {
  std::vector<Axis> axes;
  for (const auto& [key, node] : flatten(set)) {
    const config::KeySpec* spec = config::find_key(key, kind);
    const toml::array* array = node->as_array();
    const bool value_list = spec && spec->type == config::KeyType::StringList && array &&
                            (array->empty() || !array->front().is_array());
    Axis axis{key, {}, node->is_array() && !value_list, where(*node, file)};
    if (value_list) {
      axis.values.push_back(node);
    } else if (const toml::array* list = node->as_array()) {
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

// A string value "@NAME": a reference to run NAME.
std::optional<std::string> reference_of(const toml::node& value) {
  const auto* s = value.as_string();
  if (!s || !s->get().starts_with('@')) return std::nullopt;
  return s->get().substr(1);
}

RunKind command_of(const toml::node& node, const std::string& at) {
  const auto* s = node.as_string();
  const auto kind = s ? parse_enum<RunKind>(s->get()) : std::nullopt;
  if (!kind)
    fail(at, "command must be one of " + names_text<RunKind>("\"") + " (the dslab command of the runs), got " +
                 describe_node(node));
  return *kind;
}

std::string config_of(const toml::node& node, const std::string& at, const std::string& file) {
  const std::string config = one_line(node, at, "config");
  const std::string resolved = (fs::path(file).parent_path() / config).lexically_normal().string();
  if (!is_file(resolved)) fail(at, "config = " + toml_string(config) + ": no such file " + resolved);
  return resolved;
}

// One [smoke] key: its override, where it is, and whether some run has it.
struct SmokeKey {
  std::string key, at;
  Override override;
  bool applies = false;
};

// Loads the config as the run would, with and without the smoke overrides its
// kind has (marking those as applied).
void validate_run(ExperimentRun& run, const std::vector<Override>& overrides, std::vector<SmokeKey>& smoke) {
  try {
    load_with_overrides(run.config_path, overrides, run.command);
  } catch (const ConfigError& e) {
    // An error in the config file itself (a train config run as rl, ...) says which run read it as what.
    const std::string message = e.what();
    if (message.find("run '" + run.name + "'") != std::string::npos) throw;
    throw ConfigError(message + " (reading " + run.config_path + " as " + (run.command == RunKind::Train ? "a " : "an ") +
                      std::string(name_of(run.command)) + " config for run '" + run.name + "')");
  }
  std::vector<Override> with_smoke = overrides;
  for (SmokeKey& s : smoke) {
    if (!find_key(s.key, run.command)) continue;
    s.applies = true;
    run.smoke_overrides.push_back(s.override.text);
    with_smoke.push_back({s.override.text, s.override.origin + " with run '" + run.name + "'"});
  }
  if (with_smoke.size() > overrides.size()) load_with_overrides(run.config_path, with_smoke, run.command);
}

// Expands one [[runs]] entry into the cartesian product of its lists, the
// first key varying slowest, and validates each run.
void expand_run(Experiment& e, const toml::table& entry, const std::string& file, std::vector<SmokeKey>& smoke,
                std::map<std::string, std::string>& seen) {
  const std::string at = where(entry, file);
  std::optional<std::string> name;
  RunKind command = e.command;
  std::string config = e.config_path;
  const toml::table* set = nullptr;
  for (const auto& [key, node] : in_file_order(entry)) {
    if (key == "name") {
      name = run_name(*node, where(*node, file));
    } else if (key == "command") {
      command = command_of(*node, where(*node, file));
    } else if (key == "config") {
      config = config_of(*node, where(*node, file), file);
    } else if (key == "set") {
      set = node->as_table();
      if (!set) fail(where(*node, file), "set must be the table [runs.set], got " + describe_node(*node));
    } else {
      fail(where(*node, file),
           "unknown key '" + key + "' in [[runs]] (a run holds name, command, config and [runs.set])");
    }
  }
  if (!name) fail(at, "a [[runs]] entry needs a name");
  if (config.empty())
    fail(at, "run '" + *name + "' has no config: give its [[runs]] entry config = \"...\" or the experiment "
             "a top-level config = \"...\" (relative to this file)" +
             (e.notebook.empty() ? "" : "; a sweep (notebook without config) has no [[runs]]"));
  const std::vector<Axis> axes = set ? run_axes(*set, file, *name, command) : std::vector<Axis>{};
  std::vector<size_t> index(axes.size(), 0);
  for (;;) {
    ExperimentRun run{*name, command, config, {}, {}, {}, {}};
    for (size_t i = 0; i < axes.size(); ++i) {
      const toml::node& v = *axes[i].values[index[i]];
      if (const auto ref = reference_of(v)) {
        RunReference r{i, *ref, axes[i].at};
        if (const size_t slash = ref->find('/'); slash != std::string::npos)
          r = {i, ref->substr(slash + 1), axes[i].at, ref->substr(0, slash)};
        run.references.push_back(std::move(r));
      }
      run.overrides.push_back(axes[i].key + "=" + *scalar_text(v));
      if (axes[i].swept) run.name.append("-").append(name_part(axes[i].key, v));
    }
    if (const auto it = seen.find(run.name); it != seen.end())
      fail(at, "duplicate run name '" + run.name + "' (also at " + it->second + ")");
    seen[run.name] = at;
    std::vector<Override> overrides;
    for (size_t i = 0; i < axes.size(); ++i)
      overrides.push_back({run.overrides[i], axes[i].at + ": run '" + run.name + "'"});
    validate_run(run, overrides, smoke);
    e.runs.push_back(std::move(run));
    // Next combination: the last key moves fastest.
    size_t i = axes.size();
    while (i > 0 && ++index[i - 1] == axes[i - 1].values.size()) index[--i] = 0;
    if (i == 0) break;
  }
}

// "rl.init = \"@base\"" for messages.
std::string reference_text(const ExperimentRun& run, const RunReference& ref) {
  const std::string& o = run.overrides[ref.override_index];
  const size_t eq = o.find('=');
  return o.substr(0, eq) + " = " + o.substr(eq + 1);
}

// Each reference names a run; needs lists them; no run depends on itself
// through any chain of references.
void link_references(Experiment& e) {
  std::map<std::string, size_t> index;
  std::vector<std::string> names;
  for (size_t i = 0; i < e.runs.size(); ++i) index[e.runs[i].name] = i, names.push_back(e.runs[i].name);
  for (ExperimentRun& run : e.runs)
    for (const RunReference& ref : run.references) {
      if (!ref.experiment.empty()) {  // another experiment's run: its file must exist
        const fs::path other = fs::path(e.path).parent_path() / (ref.experiment + ".toml");
        if (ref.run.empty() || !is_file(other.string()))
          fail(ref.at, "run '" + run.name + "': " + reference_text(run, ref) +
                           " must name a run of an experiment in the same folder (\"@EXPERIMENT/RUN\"); no file " +
                           other.string());
        continue;
      }
      if (!index.count(ref.run)) {
        const auto hint = nearest(ref.run, names);
        fail(ref.at, "run '" + run.name + "': " + reference_text(run, ref) + " names no run of this experiment (" +
                         (hint ? "did you mean '@" + *hint + "'? " : "") + "runs: " + join(names, ", ") + ")");
      }
      if (std::find(run.needs.begin(), run.needs.end(), ref.run) == run.needs.end()) run.needs.push_back(ref.run);
    }
  // Depth-first search; a reference to a run on the current path closes a cycle.
  enum class Mark { None, OnPath, Done };
  std::vector<Mark> mark(e.runs.size(), Mark::None);
  std::vector<size_t> path;
  std::function<void(size_t)> visit = [&](size_t i) {
    mark[i] = Mark::OnPath;
    path.push_back(i);
    for (const RunReference& ref : e.runs[i].references) {
      if (!ref.experiment.empty()) continue;
      const size_t j = index.at(ref.run);
      if (mark[j] == Mark::OnPath) {
        std::vector<std::string> cycle;
        for (auto it = std::find(path.begin(), path.end(), j); it != path.end(); ++it)
          cycle.push_back(e.runs[*it].name);
        cycle.push_back(e.runs[j].name);
        fail(ref.at, "run '" + e.runs[i].name + "': " + reference_text(e.runs[i], ref) +
                         " makes a cycle of references: " + join(cycle, " -> "));
      }
      if (mark[j] == Mark::None) visit(j);
    }
    path.pop_back();
    mark[i] = Mark::Done;
  };
  for (size_t i = 0; i < e.runs.size(); ++i)
    if (mark[i] == Mark::None) visit(i);
}

// The kinds of the experiment's runs, for messages: "train", "train or rl".
std::string kinds_text(const Experiment& e) {
  std::vector<std::string> kinds;
  for (RunKind k : enum_values<RunKind>())
    if (std::any_of(e.runs.begin(), e.runs.end(), [&](const ExperimentRun& r) { return r.command == k; }))
      kinds.emplace_back(name_of(k));
  return join(kinds, " or ");
}

}  // namespace

Experiment load_experiment(const std::string& path) {
  const auto text = read_text(path);
  if (!text) throw ConfigError(path + ": cannot read the experiment file");
  const toml::table root = parse_toml(*text, path);
  Experiment e;
  e.path = path;
  e.name = fs::path(path).stem().string();
  std::vector<SmokeKey> smoke;
  const toml::array* runs = nullptr;
  bool has_sweep = false;
  for (const auto& [key, node] : in_file_order(root)) {
    const std::string at = where(*node, path);
    if (key == "description") {
      e.description = one_line(*node, at, key);
    } else if (key == "command") {
      e.command = command_of(*node, at);
    } else if (key == "config") {
      e.config_path = config_of(*node, at, path);
    } else if (key == "smoke") {
      const toml::table* table = node->as_table();
      if (!table) fail(at, "smoke must be the table [smoke], got " + describe_node(*node));
      for (const auto& [k, v] : flatten(*table)) {
        const auto value = scalar_text(*v);
        if (!value || v->is_array())
          fail(where(*v, path), "[smoke] " + k + " takes one value, got " + describe_node(*v));
        if (reference_of(*v))
          fail(where(*v, path), "[smoke] " + k + " = " + *value +
                                    ": [smoke] takes no run references (put them in [runs.set])");
        smoke.push_back({k, where(*v, path), {k + "=" + *value, where(*v, path) + ": [smoke]"}});
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
      const auto hint =
          nearest(key, {"description", "command", "config", "smoke", "runs", "notebook", "sweep"});
      fail(at, "unknown key '" + key + "' (" + (hint ? "did you mean '" + *hint + "'? " : "") +
                   "an experiment holds description, command, config, [smoke], [[runs]], notebook, [sweep])");
    }
  }
  if (e.description.empty()) fail(path, "missing description = \"...\" (one line for dslab list)");
  if (e.config_path.empty() && !e.notebook.empty() && !runs) return e;  // a simulator sweep: its notebook runs it
  if (has_sweep) fail(path, "[sweep] belongs to a notebook-only experiment (no config, no [[runs]])");
  if (e.config_path.empty() && (!runs || runs->empty()))
    fail(path, "missing config = \"...\" (the run config, relative to this file), or notebook = "
               "\"...\" for a simulator sweep");
  if (!runs || runs->empty()) fail(path, "no runs: add a [[runs]] table with a name");
  std::map<std::string, std::string> seen;  // run name -> where its entry is
  for (const toml::node& entry : *runs) expand_run(e, *entry.as_table(), path, smoke, seen);
  link_references(e);
  for (const SmokeKey& s : smoke)
    if (!s.applies) {
      std::vector<std::string> keys;
      for (const KeySpec& k : schema())
        if (std::any_of(e.runs.begin(), e.runs.end(), [&](const ExperimentRun& r) { return is_table(k.table, r.command); }))
          keys.push_back(k.path());
      const auto hint = nearest(s.key, keys);
      fail(s.at, "[smoke] " + s.key + " applies to no run: no " + kinds_text(e) + " config has that key" +
               (hint ? " (did you mean '" + *hint + "'?)" : ""));
    }
  return e;
}

std::string run_result_path(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / (name + ".h5")).string();
}

std::string reference_path(const RunReference& ref, const std::string& dir) {
  return run_result_path(ref.experiment.empty() ? dir : (fs::path(dir).parent_path() / ref.experiment).string(),
                         ref.run);
}

std::vector<std::string> resolved_overrides(const ExperimentRun& run, const std::string& dir) {
  std::vector<std::string> out = run.overrides;
  for (const RunReference& ref : run.references) {
    std::string& o = out[ref.override_index];
    o = o.substr(0, o.find('=') + 1) + toml_string(reference_path(ref, dir));
  }
  return out;
}

}  // namespace dslab
