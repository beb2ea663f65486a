// Reading run configs (config.hpp, config_loader.hpp): each value is checked
// against the schema (config_schema.cpp) as it is read, from the base files,
// the file itself, then the overrides; the rules across keys, which are the
// reference's (ModelArgs::validate, TrainArgs::validate), once all values are
// in. This file adds only where: the file and line of each key.
#include "experiments/config_loader.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "experiments/config_schema.hpp"
#include "reference/args_error.hpp"

namespace dslab {
namespace config {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Nodes and errors

// "string \"four\"", "integer 3", "an array", ... for type errors.
std::string describe_node(const toml::node& n) {
  if (const auto* v = n.as_integer()) return "integer " + std::to_string(v->get());
  if (const auto* v = n.as_floating_point()) return "float " + toml_float(v->get());
  if (const auto* v = n.as_string()) return "string " + toml_string(v->get());
  if (const auto* v = n.as_boolean()) return std::string("boolean ") + (v->get() ? "true" : "false");
  if (n.is_array()) return "an array";
  if (n.is_table()) return "a table";
  return "a date or time";
}

// The TOML text of a scalar node, or of an array of strings (a list key's
// value); nullopt for other arrays, tables and dates.
std::optional<std::string> scalar_text(const toml::node& n) {
  if (const auto* v = n.as_integer()) return std::to_string(v->get());
  if (const auto* v = n.as_floating_point()) return toml_float(v->get());
  if (const auto* v = n.as_string()) return toml_string(v->get());
  if (const auto* v = n.as_boolean()) return v->get() ? "true" : "false";
  if (const auto* a = n.as_array()) {
    std::string text = "[";
    for (const toml::node& e : *a) {
      const auto* v = e.as_string();
      if (!v) return std::nullopt;
      if (text.size() > 1) text += ", ";  // appended, not "a" + b: g++ 12's -Wrestrict
      text += toml_string(v->get());
    }
    return text + "]";
  }
  return std::nullopt;
}

[[noreturn]] void fail(const std::string& where, const std::string& message) {
  throw ConfigError(where + ": " + message);
}

// "file:line" of a node.
std::string where(const toml::node& n, const std::string& file) {
  return file + ":" + std::to_string(n.source().begin.line);
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

// The candidate closest to `word`, if close enough to be a likely typo.
std::optional<std::string> nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_distance = std::max<size_t>(2, word.size() / 4) + 1;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_distance) best = c, best_distance = d;
  }
  return best;
}

// ---------------------------------------------------------------------------
// Reading TOML

bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::optional<std::string> read_text(const std::string& path) {
  if (!is_file(path)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

toml::table parse_toml(const std::string& text, const std::string& name) {
  try {
    return toml::parse(std::string_view(text), std::string_view(name));
  } catch (const toml::parse_error& e) {
    throw ConfigError(name + ":" + std::to_string(e.source().begin.line) +
                      ": TOML syntax error: " + std::string(e.description()));
  }
}

namespace {

// The same file reached by another path compares equal (for cycles of extends).
std::string identity(const std::string& path) {
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(path, ec);
  return ec ? fs::absolute(path).lexically_normal().string() : canonical.string();
}

std::optional<toml::table> try_parse_toml(const std::string& text) {
  try {
    return toml::parse(std::string_view(text));
  } catch (const toml::parse_error&) {
    return std::nullopt;
  }
}

bool before_in_file(const toml::node* a, const toml::node* b) {
  const auto& pa = a->source().begin;
  const auto& pb = b->source().begin;
  return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
}

}  // namespace

// A table's entries in the order of the file (toml++ keeps them sorted by key).
Entries in_file_order(const toml::table& table) {
  Entries entries;
  for (const auto& [key, node] : table) entries.emplace_back(std::string(key.str()), &node);
  std::stable_sort(entries.begin(), entries.end(),
                   [](const auto& a, const auto& b) { return before_in_file(a.second, b.second); });
  return entries;
}

// The leaves of nested tables as dotted paths ("train.steps"), in file order.
Entries flatten(const toml::table& table) {
  Entries leaves;
  for (const auto& [key, node] : in_file_order(table)) {
    if (const toml::table* sub = node->as_table()) {
      for (const auto& [sub_key, leaf] : flatten(*sub)) leaves.emplace_back(key + "." + sub_key, leaf);
    } else {
      leaves.emplace_back(key, node);
    }
  }
  std::stable_sort(leaves.begin(), leaves.end(),
                   [](const auto& a, const auto& b) { return before_in_file(a.second, b.second); });
  return leaves;
}

// ---------------------------------------------------------------------------
// Building a RunConfig

namespace {

// A schema key the misspelt `path` probably meant: the same name in another
// table (model.seq_len -> train.seq_len), else the nearest full path.
std::optional<std::string> nearest_key(const std::string& path, RunKind kind) {
  const std::string leaf = path.substr(path.rfind('.') + 1);
  std::vector<std::string> paths;
  for (const KeySpec& k : schema()) {
    if (!holds_key(k, kind)) continue;
    if (k.name == leaf) return k.path();
    paths.push_back(k.path());
  }
  return nearest(path, paths);
}

std::string unknown_key(const std::string& path, RunKind kind) {
  const std::string table = path.substr(0, path.find('.'));
  const auto hint = nearest_key(path, kind);
  return "unknown key '" + path + "' (" + (hint ? "did you mean '" + *hint + "'? " : "") +
         (is_table(table, kind) ? "keys of [" + table + "]: " + join(keys_of(table, kind), ", ")
                                : "tables: " + join(table_names(kind), ", ")) +
         ")";
}

std::string unknown_top_level_key(const std::string& key, RunKind kind) {
  std::vector<std::string> top = table_names(kind);
  top.push_back("extends");
  auto hint = nearest(key, top);
  if (!hint) hint = nearest_key(key, kind);
  const std::string tables = kind == RunKind::Train  ? "[model], [mtp], [train], [data], [task]"
                             : kind == RunKind::Rl ? "[model], [rl], [grpo], [rollout], [task], [reward], [data]"
                             : kind == RunKind::Reward ? "[model], [rm], [data]"
                                                   : "[model], [eval], [rollout], [task], [data] (and an RL config's)";
  return "unknown top-level key '" + key + "' (" + (hint ? "did you mean '" + *hint + "'? " : "") +
         "the top level holds extends and the tables " + tables + ")";
}

// The config being built, and where each key set so far got its value
// ("file:line", "--set key=value", ...), for messages naming the source.
struct Loader {
  RunConfig cfg;
  std::string source;   // for a message when no key was set by the user
  struct SetAt {
    int order;
    std::string origin;
  };
  std::map<std::string, SetAt> set_at;
  int writes = 0;

  void set(const KeySpec& key, const Value& value, const std::string& origin) {
    write_value(key, cfg, value);
    set_at[key.path()] = {++writes, origin};
  }
};

std::optional<Value> value_as(KeyType type, const toml::node& n) {
  switch (type) {
    case KeyType::Integer:
      if (const auto* v = n.as_integer()) return Value(v->get());
      break;
    case KeyType::Float:
      if (const auto* v = n.as_floating_point()) return Value(v->get());
      if (const auto* v = n.as_integer()) return Value(double(v->get()));
      break;
    case KeyType::String:
      if (const auto* v = n.as_string()) return Value(v->get());
      break;
    case KeyType::Bool:
      if (const auto* v = n.as_boolean()) return Value(v->get());
      break;
    case KeyType::StringList: {
      if (const auto* v = n.as_string()) return Value(std::vector<std::string>{v->get()});
      const auto* a = n.as_array();
      if (!a) break;
      std::vector<std::string> items;
      for (const toml::node& e : *a) {
        const auto* v = e.as_string();
        if (!v) return std::nullopt;
        items.push_back(v->get());
      }
      return Value(std::move(items));
    }
  }
  return std::nullopt;
}


void set_checked(Loader& L, const KeySpec& key, const Value& value, const std::string& origin) {
  if (const auto why = range_violation(key, value)) fail(origin, *why);
  L.set(key, value, origin);
}

void apply_node(Loader& L, const KeySpec& key, const toml::node& node, const std::string& origin) {
  const auto value = value_as(key.type, node);
  if (!value)
    fail(origin, key.path() + " must be " + type_with_article(key.type) + ", got " +
                     describe_node(node));
  set_checked(L, key, *value, origin);
}

// The [model], [mtp], [train] and [data] tables of one file.
void apply_tables(Loader& L, const toml::table& root, const std::string& file, bool allow_extends) {
  for (const auto& [name, node] : in_file_order(root)) {
    const std::string origin = where(*node, file);
    if (name == "extends") {
      if (!allow_extends) fail(origin, "extends is not allowed here: this text is a whole config");
      continue;
    }
    if (!is_table(name, L.cfg.kind)) fail(origin, unknown_top_level_key(name, L.cfg.kind));
    const toml::table* table = node->as_table();
    if (!table) fail(origin, name + " must be the table [" + name + "], got " + describe_node(*node));
    for (const auto& [key, value] : in_file_order(*table)) {
      const std::string path = name + "." + key;
      const KeySpec* spec = find_key(path, L.cfg.kind);
      if (!spec) fail(where(*value, file), unknown_key(path, L.cfg.kind));
      apply_node(L, *spec, *value, where(*value, file));
    }
  }
}

// Applies `path` after the chain of files it extends. `chain`: the files
// being read, outermost first (identities, and as shown in messages).
void apply_file(Loader& L, const std::string& path, std::vector<std::string>& chain,
                std::vector<std::string>& shown) {
  const auto text = read_text(path);
  if (!text) throw ConfigError(path + ": cannot read the config file");
  const toml::table root = parse_toml(*text, path);
  if (const toml::node* extends = root.get("extends")) {
    const std::string origin = where(*extends, path);
    const auto* name = extends->as_string();
    if (!name)
      fail(origin, "extends must be a string (a config path relative to this file), got " +
                       describe_node(*extends));
    const std::string base = (fs::path(path).parent_path() / name->get()).lexically_normal().string();
    const std::string canonical = identity(base);
    if (std::find(chain.begin(), chain.end(), canonical) != chain.end())
      fail(origin, "extends = " + toml_string(name->get()) + " makes a cycle: " + join(shown, " -> ") +
                       " -> " + base);
    if (!is_file(base))
      fail(origin, "extends = " + toml_string(name->get()) + ": no such file " + base);
    chain.push_back(canonical);
    shown.push_back(base);
    apply_file(L, base, chain, shown);
    chain.pop_back();
    shown.pop_back();
  }
  apply_tables(L, root, path, true);
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// "key.path=value": the value read as TOML (`v = value`); for a string key,
// anything that is not a TOML string is taken as raw text.
void apply_override(Loader& L, const std::string& text, const std::string& origin) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos) fail(origin, "expected key.path=value, e.g. train.steps=20");
  const std::string path = trim(text.substr(0, eq));
  const std::string raw = trim(text.substr(eq + 1));
  const KeySpec* key = find_key(path, L.cfg.kind);
  if (!key) fail(origin, unknown_key(path, L.cfg.kind));
  const auto parsed = try_parse_toml("v = " + raw);
  const toml::node* node = parsed && parsed->size() == 1 ? parsed->get("v") : nullptr;
  const bool list = key->type == KeyType::StringList;
  if ((key->type == KeyType::String || list) && !(node && (node->is_string() || (list && node->is_array())))) {
    // Keep only text the config can hold: it must read back as a TOML string.
    if (!try_parse_toml("v = " + toml_string(raw)))
      fail(origin, key->path() + " must be UTF-8 text");
    set_checked(L, *key, list ? Value(std::vector<std::string>{raw}) : Value(raw), origin);
    return;
  }
  if (!node)
    fail(origin, key->path() + " must be " + type_with_article(key->type) +
                     (key->type == KeyType::Float ? " in " + allowed(*key) : " (" + allowed(*key) + ")"));
  apply_node(L, *key, *node, origin);
}

// Fails naming the keys involved, at the source of the key set last; the
// sources of the others follow ("; model.dim set at base.toml:3").
[[noreturn]] void fail_across(const Loader& L, const std::vector<std::string>& keys,
                              const std::string& message) {
  const Loader::SetAt* last = nullptr;
  for (const std::string& k : keys) {
    const auto it = L.set_at.find(k);
    if (it != L.set_at.end() && (!last || it->second.order > last->order)) last = &it->second;
  }
  std::vector<std::string> others;
  for (const std::string& k : keys) {
    const auto it = L.set_at.find(k);
    if (it != L.set_at.end() && it->second.origin != last->origin)
      others.push_back(k + " set at " + it->second.origin);
  }
  fail(last ? last->origin : L.source,
       message + (others.empty() ? "" : "; " + join(others, "; ")));
}

// The rules across keys are the reference's; a broken one is reported where
// the last of its keys was set.
void check_rules(const Loader& L) {
  try {
    L.cfg.model.validate();
    if (L.cfg.kind == RunKind::Train) {
      L.cfg.train.validate(L.cfg.model);
    } else if (L.cfg.kind == RunKind::Reward) {
      L.cfg.rm.validate(L.cfg.model);
    } else {
      L.cfg.rl.validate(L.cfg.model);
      if (L.cfg.kind == RunKind::Eval) L.cfg.eval.validate();
    }
  } catch (const ArgsError& e) {
    fail_across(L, e.keys(), e.what());
  }
}

RunConfig finish(Loader& L) {
  // [task] is the RL run's problems, or the task text of a training run.
  if (L.cfg.kind != RunKind::Train) L.cfg.rl.task = L.cfg.task;
  else L.cfg.train.task_text.task = L.cfg.task;
  check_rules(L);
  L.cfg.text = to_toml_text(L.cfg);
  return L.cfg;
}

}  // namespace

RunConfig load_with_overrides(const std::string& path, const std::vector<Override>& overrides, RunKind kind) {
  Loader L;
  L.cfg.kind = kind;
  L.source = path;
  std::vector<std::string> chain = {identity(path)}, shown = {path};
  apply_file(L, path, chain, shown);
  for (const Override& o : overrides) apply_override(L, o.text, o.origin);
  return finish(L);
}

}  // namespace config

// ---------------------------------------------------------------------------

namespace {

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides, RunKind kind) {
  using namespace config;
  std::vector<Override> tagged;
  for (const std::string& o : overrides) tagged.push_back({o, "--set " + o});
  return load_with_overrides(path, tagged, kind);
}

RunConfig parse_config_text(const std::string& text, RunKind kind) {
  using namespace config;
  const std::string name = "<config text>";
  Loader L;
  L.cfg.kind = kind;
  L.source = name;
  apply_tables(L, parse_toml(text, name), name, false);
  return finish(L);
}

}  // namespace

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  return load_config(path, overrides, RunKind::Train);
}

RunConfig parse_run_config_text(const std::string& text) { return parse_config_text(text, RunKind::Train); }

RunConfig load_rl_config(const std::string& path, const std::vector<std::string>& overrides) {
  return load_config(path, overrides, RunKind::Rl);
}

RunConfig parse_rl_config_text(const std::string& text) { return parse_config_text(text, RunKind::Rl); }

RunConfig load_eval_config(const std::string& path, const std::vector<std::string>& overrides) {
  return load_config(path, overrides, RunKind::Eval);
}

RunConfig parse_eval_config_text(const std::string& text) { return parse_config_text(text, RunKind::Eval); }

RunConfig load_reward_config(const std::string& path, const std::vector<std::string>& overrides) {
  return load_config(path, overrides, RunKind::Reward);
}

RunConfig parse_reward_config_text(const std::string& text) { return parse_config_text(text, RunKind::Reward); }

std::string resolve_data_path(const std::string& path) {
  if (path != "kjv") return path;
  const auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  if (!env("DSLAB_DATA").empty()) return env("DSLAB_DATA") + "/kjv.txt";
  if (!env("XDG_CACHE_HOME").empty()) return env("XDG_CACHE_HOME") + "/dslab/kjv.txt";
  if (!env("HOME").empty()) return env("HOME") + "/.cache/dslab/kjv.txt";
  throw ConfigError("data.path = \"kjv\": no place for the corpus cache: set DSLAB_DATA or HOME");
}

}  // namespace dslab
