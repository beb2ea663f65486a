// Run and experiment configs (see config.hpp). One schema lists every key;
// each value is checked against it as it is read, the cross-field rules once
// all values are in (base files, the file itself, then overrides).
#include "experiments/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <type_traits>
#include <utility>
#include <variant>

namespace dslab {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// The schema

enum class KeyType { Integer, Float, String, Bool };

using Value = std::variant<int64_t, double, std::string, bool>;

// Where a key's value lives in RunConfig.
using Field = std::variant<int& (*)(RunConfig&), int64_t& (*)(RunConfig&),
                           uint64_t& (*)(RunConfig&), double& (*)(RunConfig&),
                           std::string& (*)(RunConfig&), bool& (*)(RunConfig&)>;
#define DSLAB_FIELD(member) +[](RunConfig& c) -> auto& { return c.member; }

// Allowed floats: lo .. hi, each end open or closed.
struct Interval {
  double lo, hi;
  bool lo_open, hi_open;
};
Interval closed(double lo, double hi) { return {lo, hi, false, false}; }
Interval open_closed(double lo, double hi) { return {lo, hi, true, false}; }
Interval closed_open(double lo, double hi) { return {lo, hi, false, true}; }
Interval open(double lo, double hi) { return {lo, hi, true, true}; }

struct KeySpec {
  std::string table, name;
  KeyType type;
  Field field;
  int64_t int_min = 0, int_max = 0;       // Integer: allowed int_min .. int_max
  Interval interval{};                    // Float
  std::vector<std::string> choices{};     // String: allowed values; empty: any non-empty
  std::string description{};
  std::string path() const { return table + "." + name; }
};

KeySpec integer_key(const char* table, const char* name, Field field, int64_t min, int64_t max,
                    const char* description) {
  return {.table = table, .name = name, .type = KeyType::Integer, .field = field,
          .int_min = min, .int_max = max, .description = description};
}

KeySpec float_key(const char* table, const char* name, Field field, Interval interval,
                  const char* description) {
  return {.table = table, .name = name, .type = KeyType::Float, .field = field,
          .interval = interval, .description = description};
}

KeySpec string_key(const char* table, const char* name, Field field, const char* description) {
  return {.table = table, .name = name, .type = KeyType::String, .field = field,
          .description = description};
}

KeySpec choice_key(const char* table, const char* name, Field field,
                   std::vector<std::string> choices, const char* description) {
  return {.table = table, .name = name, .type = KeyType::String, .field = field,
          .choices = std::move(choices), .description = description};
}

KeySpec bool_key(const char* table, const char* name, Field field, const char* description) {
  return {.table = table, .name = name, .type = KeyType::Bool, .field = field,
          .description = description};
}

// Every key of a run config, table by table; defaults come from the structs.
const std::vector<KeySpec>& schema() {
  constexpr int64_t kMaxSteps = 1'000'000'000'000;
  constexpr int64_t kMaxWidth = 1 << 20;
  static const std::vector<KeySpec> keys = {
      integer_key("model", "vocab_size", DSLAB_FIELD(model.vocab_size), 256, kMaxWidth,
                  "vocabulary size V; byte-level tokens need at least 256"),
      integer_key("model", "dim", DSLAB_FIELD(model.dim), 1, 65536, "model width D"),
      integer_key("model", "n_layers", DSLAB_FIELD(model.n_layers), 1, 1024,
                  "number of transformer blocks"),
      integer_key("model", "n_heads", DSLAB_FIELD(model.n_heads), 1, 4096,
                  "query heads H; head_dim = dim / n_heads"),
      integer_key("model", "n_kv_heads", DSLAB_FIELD(model.n_kv_heads), 1, 4096,
                  "key/value heads: n_heads for MHA, 1 for MQA, in between for GQA"),
      integer_key("model", "inter_dim", DSLAB_FIELD(model.inter_dim), 1, kMaxWidth,
                  "hidden width of the SwiGLU FFN"),
      integer_key("model", "max_seq_len", DSLAB_FIELD(model.max_seq_len), 1, kMaxWidth,
                  "longest sequence the RoPE table covers"),
      float_key("model", "rope_theta", DSLAB_FIELD(model.rope_theta), open_closed(0, 1e12),
                "RoPE base frequency theta"),
      float_key("model", "norm_eps", DSLAB_FIELD(model.norm_eps), open_closed(0, 1),
                "epsilon inside the RMSNorm square root"),
      float_key("model", "init_std", DSLAB_FIELD(model.init_std), open_closed(0, 1),
                "standard deviation of the initial weight matrices"),
      choice_key("model", "attn", DSLAB_FIELD(model.attn), {"mha", "mla"},
                 "attention: \"mha\" (GQA/MQA by n_kv_heads) or \"mla\" (latent attention)"),
      integer_key("model", "q_lora_rank", DSLAB_FIELD(model.q_lora_rank), 0, kMaxWidth,
                  "MLA: query compression rank d_c'; 0 for a direct wq"),
      integer_key("model", "kv_lora_rank", DSLAB_FIELD(model.kv_lora_rank), 1, kMaxWidth,
                  "MLA: latent width d_c, cached per token"),
      integer_key("model", "qk_nope_head_dim", DSLAB_FIELD(model.qk_nope_head_dim), 1, kMaxWidth,
                  "MLA: per-head query/key width without RoPE, d_h"),
      integer_key("model", "qk_rope_head_dim", DSLAB_FIELD(model.qk_rope_head_dim), 0, kMaxWidth,
                  "MLA: per-head width of the decoupled RoPE query and shared key, d_h^R"),
      integer_key("model", "v_head_dim", DSLAB_FIELD(model.v_head_dim), 1, kMaxWidth,
                  "MLA: per-head value width"),
      choice_key("model", "rope", DSLAB_FIELD(model.rope), {"decoupled", "none", "full"},
                 "MLA: RoPE on the decoupled dims, nowhere, or on whole query/key heads"),
      float_key("model", "rope_factor", DSLAB_FIELD(model.rope_factor), closed(1, 1e6),
                "MLA: YaRN factor s; used only when max_seq_len > original_seq_len (4096): "
                "RoPE frequencies corrected, softmax scale times (0.1 mscale ln s + 1)^2"),
      float_key("model", "mscale", DSLAB_FIELD(model.mscale), open_closed(0, 100),
                "MLA: YaRN mscale"),

      integer_key("model", "n_routed_experts", DSLAB_FIELD(model.n_routed_experts), 0, 65536,
                  "MoE: routed experts E per MoE layer; 0 keeps every FFN dense"),
      integer_key("model", "n_shared_experts", DSLAB_FIELD(model.n_shared_experts), 0, 65536,
                  "MoE: always-on shared experts"),
      integer_key("model", "n_activated_experts", DSLAB_FIELD(model.n_activated_experts), 1, 65536,
                  "MoE: routed experts K chosen per token (top-K)"),
      integer_key("model", "moe_inter_dim", DSLAB_FIELD(model.moe_inter_dim), 1, kMaxWidth,
                  "MoE: hidden width of each expert's SwiGLU"),
      integer_key("model", "n_dense_layers", DSLAB_FIELD(model.n_dense_layers), 0, 1024,
                  "MoE: the first layers keep a dense FFN of inter_dim"),
      integer_key("model", "n_expert_groups", DSLAB_FIELD(model.n_expert_groups), 1, 65536,
                  "MoE: groups of routed experts for group-limited routing"),
      integer_key("model", "n_limited_groups", DSLAB_FIELD(model.n_limited_groups), 1, 65536,
                  "MoE: groups each token may route to"),
      choice_key("model", "score_func", DSLAB_FIELD(model.score_func), {"softmax", "sigmoid"},
                 "MoE: gate scores, softmax (V2) or sigmoid with renormalised top-K (V3)"),
      float_key("model", "route_scale", DSLAB_FIELD(model.route_scale), open_closed(0, 1e6),
                "MoE: factor on the gate values"),
      float_key("model", "capacity_factor", DSLAB_FIELD(model.capacity_factor), closed(0, 1e6),
                "MoE: expert capacity ceil(factor N K / E) tokens, the rest dropped; 0 drops none"),

      float_key("balance", "aux_alpha", DSLAB_FIELD(model.balance.aux_alpha), closed(0, 1e6),
                "expert-level balance loss weight alpha, Eq. (21)-(23); 0 off"),
      float_key("balance", "seq_aux_alpha", DSLAB_FIELD(model.balance.seq_aux_alpha), closed(0, 1e6),
                "sequence-wise balance loss weight (V3); 0 off"),
      float_key("balance", "device_alpha", DSLAB_FIELD(model.balance.device_alpha), closed(0, 1e6),
                "device-level balance loss weight (V2); 0 off"),
      float_key("balance", "comm_alpha", DSLAB_FIELD(model.balance.comm_alpha), closed(0, 1e6),
                "communication balance loss weight (V2); 0 off"),
      integer_key("balance", "n_devices", DSLAB_FIELD(model.balance.n_devices), 1, 65536,
                  "devices the routed experts are placed on, contiguously"),
      integer_key("balance", "max_devices_per_token", DSLAB_FIELD(model.balance.max_devices_per_token), 1,
                  65536, "M of the communication loss: devices a token may reach"),
      choice_key("balance", "bias_update", DSLAB_FIELD(model.balance.bias_update),
                 {"none", "sign", "proportional"},
                 "auxiliary-loss-free bias (Eq. (24)): none, sign, or proportional to the load gap"),
      float_key("balance", "bias_gamma", DSLAB_FIELD(model.balance.bias_gamma), open_closed(0, 1e6),
                "bias update speed gamma"),

      integer_key("mtp", "depth", DSLAB_FIELD(model.mtp.depth), 0, 64,
                  "Multi-Token Prediction modules D (Sec. 2.3); 0: next-token prediction only"),
      float_key("mtp", "lambda", DSLAB_FIELD(model.mtp.lambda), closed(0, 100),
                "weight lambda of the MTP loss, lambda/D sum_k L^k (Eq. (26)); V3: 0.3"),
      float_key("mtp", "lambda_final", DSLAB_FIELD(model.mtp.lambda_final), closed(0, 100),
                "lambda after the switch; V3: 0.1"),
      float_key("mtp", "lambda_switch", DSLAB_FIELD(model.mtp.lambda_switch), closed(0, 1),
                "fraction of train.steps after which lambda_final holds; 1: never "
                "(V3: 10T of 14.8T tokens, 0.676)"),

      integer_key("train", "steps", DSLAB_FIELD(train.steps), 1, kMaxSteps,
                  "optimisation steps"),
      integer_key("train", "batch_size", DSLAB_FIELD(train.batch_size), 1, 65536,
                  "sequences per step"),
      integer_key("train", "seq_len", DSLAB_FIELD(train.seq_len), 1, kMaxWidth,
                  "tokens per training sequence; at most model.max_seq_len"),
      float_key("train", "lr", DSLAB_FIELD(train.lr), open_closed(0, 10),
                "peak learning rate, reached at the end of warm-up"),
      float_key("train", "min_lr", DSLAB_FIELD(train.min_lr), closed(0, 10),
                "learning rate at the end of the cosine decay; at most lr"),
      integer_key("train", "warmup_steps", DSLAB_FIELD(train.warmup_steps), 0, kMaxSteps,
                  "steps of linear warm-up; at most steps"),
      float_key("train", "beta1", DSLAB_FIELD(train.adamw.beta1), closed_open(0, 1),
                "AdamW decay of the first moment m"),
      float_key("train", "beta2", DSLAB_FIELD(train.adamw.beta2), closed_open(0, 1),
                "AdamW decay of the second moment v"),
      float_key("train", "eps", DSLAB_FIELD(train.adamw.eps), open_closed(0, 1),
                "AdamW epsilon added to sqrt(v)"),
      float_key("train", "weight_decay", DSLAB_FIELD(train.adamw.weight_decay), closed(0, 10),
                "AdamW decoupled weight decay of the matrices"),
      float_key("train", "grad_clip", DSLAB_FIELD(train.grad_clip), closed(0, 1e6),
                "largest global gradient norm; 0 disables clipping"),
      integer_key("train", "seed", DSLAB_FIELD(train.seed), 0, INT64_MAX,
                  "seed of the initial weights and of the batch order"),
      integer_key("train", "eval_every", DSLAB_FIELD(train.eval_every), 0, kMaxSteps,
                  "steps between validation losses (one is always taken at the end); "
                  "0: only at the end"),
      integer_key("train", "eval_batches", DSLAB_FIELD(train.eval_batches), 1, 65536,
                  "validation batches per evaluation"),
      integer_key("train", "checkpoint_every", DSLAB_FIELD(train.checkpoint_every), 0,
                  kMaxSteps, "steps between checkpoints; 0 disables them"),
      bool_key("train", "capture", DSLAB_FIELD(train.capture),
               "keep tensors for the simulators in the result file (/captured)"),

      string_key("data", "path", DSLAB_FIELD(data.path),
                 "training text: \"kjv\" (the cached KJV Bible) or a file path"),
      float_key("data", "val_fraction", DSLAB_FIELD(data.val_fraction), open(0, 1),
                "last fraction of the bytes held out for validation"),

      choice_key("fp8", "recipe", DSLAB_FIELD(train.fp8.recipe), {"none", "v3"},
                 "FP8 inputs for the blocks' linear layers: none (fp32) or v3 (DeepSeek-V3's recipe)"),
      string_key("fp8", "format", DSLAB_FIELD(train.fp8.format),
                 "format of activations and weights: e4m3, e5m2, eXmY, eXmYfn"),
      string_key("fp8", "grad_format", DSLAB_FIELD(train.fp8.grad_format),
                 "format of activation gradients: e4m3, e5m2, eXmY, eXmYfn"),
      choice_key("fp8", "act_granularity", DSLAB_FIELD(train.fp8.act_granularity),
                 {"tile", "row", "tensor", "block", "mx"},
                 "activation scale groups along K: tile 1x128 (V3), row, tensor, block 128x128, mx 1x32"),
      choice_key("fp8", "weight_granularity", DSLAB_FIELD(train.fp8.weight_granularity),
                 {"block", "tile", "row", "tensor", "mx"}, "weight scale groups: block 128x128 (V3), ..."),
      choice_key("fp8", "grad_granularity", DSLAB_FIELD(train.fp8.grad_granularity),
                 {"tile", "block", "row", "tensor", "mx"},
                 "activation-gradient scale groups: tile 1x128 (V3), block 128x128 (diverged in V3), ..."),
      choice_key("fp8", "scale", DSLAB_FIELD(train.fp8.scale), {"exact", "pow2"},
                 "scales exact in fp32 or rounded up to a power of two (ue8m0)"),
      integer_key("fp8", "accum_bits", DSLAB_FIELD(train.fp8.accum_bits), 0, 40,
                  "0: fp32 sums; > 0: tensor-core accumulator keeping this many bits (slow)"),
      integer_key("fp8", "promote_every", DSLAB_FIELD(train.fp8.promote_every), 0, 65536,
                  "N_C: products between promotions to fp32 with accum_bits > 0; 0 = never"),
  };
  return keys;
}

const std::vector<std::string> kTables = {"model", "balance", "mtp", "train", "data", "fp8"};

const KeySpec* find_key(const std::string& path) {
  for (const KeySpec& k : schema())
    if (k.path() == path) return &k;
  return nullptr;
}

bool is_table(const std::string& name) {
  return std::find(kTables.begin(), kTables.end(), name) != kTables.end();
}

Value read_value(const KeySpec& key, RunConfig& cfg) {
  return std::visit(
      [&](auto field) -> Value {
        const auto& v = field(cfg);
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
          return int64_t(v);  // uint64_t seeds: the schema keeps them <= INT64_MAX
        else
          return Value(std::in_place_type<T>, v);
      },
      key.field);
}

// `value` already has the key's type and lies in its range.
void write_value(const KeySpec& key, RunConfig& cfg, const Value& value) {
  std::visit(
      [&](auto field) {
        auto& v = field(cfg);
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
          v = T(std::get<int64_t>(value));
        else
          v = std::get<T>(value);
      },
      key.field);
}

// ---------------------------------------------------------------------------
// Text

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

// Shortest text that reads back to the same double.
std::string shortest(double x) {
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, result.ptr);
}

// A TOML float: shortest round-trip digits, with ".0" where they look like an integer.
std::string toml_float(double x) {
  std::string s = shortest(x);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // 'n': inf, nan
  return s;
}

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", unsigned(c));
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

std::string format_value(const Value& v) {
  struct {
    std::string operator()(int64_t x) const { return std::to_string(x); }
    std::string operator()(double x) const { return toml_float(x); }
    std::string operator()(const std::string& x) const { return toml_string(x); }
    std::string operator()(bool x) const { return x ? "true" : "false"; }
  } format;
  return std::visit(format, v);
}

const char* type_name(KeyType t) {
  switch (t) {
    case KeyType::Integer: return "integer";
    case KeyType::Float: return "float";
    case KeyType::String: return "string";
    case KeyType::Bool: return "bool";
  }
  return "";
}

const char* type_with_article(KeyType t) {
  switch (t) {
    case KeyType::Integer: return "an integer";
    case KeyType::Float: return "a float";
    case KeyType::String: return "a string";
    case KeyType::Bool: return "a boolean";
  }
  return "";
}

std::string allowed(const KeySpec& k) {
  switch (k.type) {
    case KeyType::Integer: return std::to_string(k.int_min) + " .. " + std::to_string(k.int_max);
    case KeyType::Float:
      return (k.interval.lo_open ? "(" : "[") + shortest(k.interval.lo) + ", " +
             shortest(k.interval.hi) + (k.interval.hi_open ? ")" : "]");
    case KeyType::String:
      return k.choices.empty() ? "any non-empty string" : "one of " + join(k.choices, ", ");
    case KeyType::Bool: return "true or false";
  }
  return "";
}

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

// The TOML text of a scalar node; nullopt for arrays, tables and dates.
std::optional<std::string> scalar_text(const toml::node& n) {
  if (const auto* v = n.as_integer()) return std::to_string(v->get());
  if (const auto* v = n.as_floating_point()) return toml_float(v->get());
  if (const auto* v = n.as_string()) return toml_string(v->get());
  if (const auto* v = n.as_boolean()) return v->get() ? "true" : "false";
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Errors

[[noreturn]] void fail(const std::string& where, const std::string& message) {
  throw ConfigError(where + ": " + message);
}

// "file:line" of a node.
std::string where(const toml::node& n, const std::string& file) {
  return file + ":" + std::to_string(n.source().begin.line);
}

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

// A schema key the misspelt `path` probably meant: the same name in another
// table (model.seq_len -> train.seq_len), else the nearest full path.
std::optional<std::string> nearest_key(const std::string& path) {
  const std::string leaf = path.substr(path.rfind('.') + 1);
  std::vector<std::string> paths;
  for (const KeySpec& k : schema()) {
    if (k.name == leaf) return k.path();
    paths.push_back(k.path());
  }
  return nearest(path, paths);
}

std::vector<std::string> keys_of(const std::string& table) {
  std::vector<std::string> names;
  for (const KeySpec& k : schema())
    if (k.table == table) names.push_back(k.name);
  return names;
}

std::string unknown_key(const std::string& path) {
  const std::string table = path.substr(0, path.find('.'));
  const auto hint = nearest_key(path);
  return "unknown key '" + path + "' (" + (hint ? "did you mean '" + *hint + "'? " : "") +
         (is_table(table) ? "keys of [" + table + "]: " + join(keys_of(table), ", ")
                          : "tables: " + join(kTables, ", ")) +
         ")";
}

std::string unknown_top_level_key(const std::string& key) {
  std::vector<std::string> top = kTables;
  top.push_back("extends");
  auto hint = nearest(key, top);
  if (!hint) hint = nearest_key(key);
  return "unknown top-level key '" + key + "' (" + (hint ? "did you mean '" + *hint + "'? " : "") +
         "the top level holds extends and the tables [model], [mtp], [train], [data])";
}

// ---------------------------------------------------------------------------
// Reading TOML

bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

// The same file reached by another path compares equal (for cycles of extends).
std::string identity(const std::string& path) {
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(path, ec);
  return ec ? fs::absolute(path).lexically_normal().string() : canonical.string();
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

std::optional<toml::table> try_parse_toml(const std::string& text) {
  try {
    return toml::parse(std::string_view(text));
  } catch (const toml::parse_error&) {
    return std::nullopt;
  }
}

using Entries = std::vector<std::pair<std::string, const toml::node*>>;

bool before_in_file(const toml::node* a, const toml::node* b) {
  const auto& pa = a->source().begin;
  const auto& pb = b->source().begin;
  return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
}

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
  }
  return std::nullopt;
}

// Why `v` is not allowed for `key`, if it is not.
std::optional<std::string> range_violation(const KeySpec& key, const Value& v) {
  const std::string shown = key.path() + " = " + format_value(v);
  switch (key.type) {
    case KeyType::Integer: {
      const int64_t x = std::get<int64_t>(v);
      if (x < key.int_min || x > key.int_max)
        return shown + " is out of range: allowed " + allowed(key);
      break;
    }
    case KeyType::Float: {
      const double x = std::get<double>(v);
      const Interval& r = key.interval;
      const bool inside = (r.lo_open ? x > r.lo : x >= r.lo) && (r.hi_open ? x < r.hi : x <= r.hi);
      if (!inside) return shown + " is out of range: allowed " + allowed(key);
      break;
    }
    case KeyType::String: {
      const std::string& s = std::get<std::string>(v);
      const bool ok = key.choices.empty()
                          ? !s.empty()
                          : std::find(key.choices.begin(), key.choices.end(), s) != key.choices.end();
      if (!ok) return shown + " is not allowed: expected " + allowed(key);
      break;
    }
    case KeyType::Bool: break;
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
    if (!is_table(name)) fail(origin, unknown_top_level_key(name));
    const toml::table* table = node->as_table();
    if (!table) fail(origin, name + " must be the table [" + name + "], got " + describe_node(*node));
    for (const auto& [key, value] : in_file_order(*table)) {
      const std::string path = name + "." + key;
      const KeySpec* spec = find_key(path);
      if (!spec) fail(where(*value, file), unknown_key(path));
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
  const KeySpec* key = find_key(path);
  if (!key) fail(origin, unknown_key(path));
  const auto parsed = try_parse_toml("v = " + raw);
  const toml::node* node = parsed && parsed->size() == 1 ? parsed->get("v") : nullptr;
  if (key->type == KeyType::String && !(node && node->is_string())) {
    // Keep only text the config can hold: it must read back as a TOML string.
    if (!try_parse_toml("v = " + toml_string(raw)))
      fail(origin, key->path() + " must be UTF-8 text");
    set_checked(L, *key, Value(raw), origin);
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

template <class T> std::string str(T x) {
  if constexpr (std::is_floating_point_v<T>)
    return shortest(x);
  else
    return std::to_string(x);
}

void check_moe(const Loader& L) {
  const ModelArgs& m = L.cfg.model;
  const BalanceArgs& b = m.balance;
  if (m.n_routed_experts == 0) {
    if (b.has_loss() || m.has_expert_bias())
      fail_across(L, {"model.n_routed_experts", "balance.aux_alpha", "balance.seq_aux_alpha", "balance.device_alpha",
                      "balance.comm_alpha", "balance.bias_update"},
                  "load balancing needs MoE layers: set model.n_routed_experts > 0, or leave every "
                  "balance.*_alpha at 0 and balance.bias_update = \"none\"");
    return;
  }
  const std::string E = str(m.n_routed_experts);
  if (m.n_activated_experts > m.n_routed_experts)
    fail_across(L, {"model.n_activated_experts", "model.n_routed_experts"},
                "model.n_activated_experts = " + str(m.n_activated_experts) +
                    " must be <= model.n_routed_experts = " + E);
  if (m.n_routed_experts % m.n_expert_groups != 0)
    fail_across(L, {"model.n_expert_groups", "model.n_routed_experts"},
                "model.n_expert_groups = " + str(m.n_expert_groups) + " must divide model.n_routed_experts = " + E);
  if (m.n_limited_groups > m.n_expert_groups)
    fail_across(L, {"model.n_limited_groups", "model.n_expert_groups"},
                "model.n_limited_groups = " + str(m.n_limited_groups) + " must be <= model.n_expert_groups = " +
                    str(m.n_expert_groups));
  const int kept = m.n_limited_groups * (m.n_routed_experts / m.n_expert_groups);
  if (m.n_activated_experts > kept)
    fail_across(L, {"model.n_activated_experts", "model.n_limited_groups", "model.n_expert_groups"},
                "model.n_activated_experts = " + str(m.n_activated_experts) + " exceeds the " + str(kept) +
                    " experts of the model.n_limited_groups groups a token may use");
  if (m.n_dense_layers >= m.n_layers)
    fail_across(L, {"model.n_dense_layers", "model.n_layers"},
                "model.n_dense_layers = " + str(m.n_dense_layers) + " leaves no MoE layer among model.n_layers = " +
                    str(m.n_layers) + "; it must be < n_layers (or set model.n_routed_experts = 0)");
  if (b.n_devices > m.n_routed_experts)
    fail_across(L, {"balance.n_devices", "model.n_routed_experts"},
                "balance.n_devices = " + str(b.n_devices) + " must be <= model.n_routed_experts = " + E);
  if (b.max_devices_per_token > b.n_devices)
    fail_across(L, {"balance.max_devices_per_token", "balance.n_devices"},
                "balance.max_devices_per_token = " + str(b.max_devices_per_token) +
                    " must be <= balance.n_devices = " + str(b.n_devices));
}

void check_cross_fields(const Loader& L) {
  const ModelArgs& m = L.cfg.model;
  const TrainArgs& t = L.cfg.train;
  if (m.is_mla()) {
    if (m.rope == "decoupled" && (m.qk_rope_head_dim == 0 || m.qk_rope_head_dim % 2 != 0))
      fail_across(L, {"model.rope", "model.qk_rope_head_dim"},
                  "model.qk_rope_head_dim = " + str(m.qk_rope_head_dim) +
                      " must be even and > 0 with model.rope = \"decoupled\" (RoPE rotates pairs)");
    if (m.rope == "full" && (m.qk_nope_head_dim + m.qk_rope_head_dim) % 2 != 0)
      fail_across(L, {"model.rope", "model.qk_nope_head_dim", "model.qk_rope_head_dim"},
                  "model.qk_nope_head_dim + model.qk_rope_head_dim = " +
                      str(m.qk_nope_head_dim + m.qk_rope_head_dim) +
                      " must be even with model.rope = \"full\" (RoPE rotates pairs)");
  } else {
    if (m.dim % m.n_heads != 0)
      fail_across(L, {"model.dim", "model.n_heads"},
                  "model.dim = " + str(m.dim) + " must be a multiple of model.n_heads = " +
                      str(m.n_heads) + " (head_dim = dim / n_heads)");
    if (m.n_heads % m.n_kv_heads != 0)
      fail_across(L, {"model.n_heads", "model.n_kv_heads"},
                  "model.n_heads = " + str(m.n_heads) + " must be a multiple of model.n_kv_heads = " +
                      str(m.n_kv_heads) + " (each key/value head serves an equal group of query heads)");
    if (m.head_dim() % 2 != 0)
      fail_across(L, {"model.dim", "model.n_heads"},
                  "head_dim = model.dim / model.n_heads = " + str(m.dim) + " / " + str(m.n_heads) +
                      " = " + str(m.head_dim()) + " must be even (RoPE rotates pairs of dimensions)");
  }
  check_moe(L);
  if (t.seq_len > m.max_seq_len)
    fail_across(L, {"train.seq_len", "model.max_seq_len"},
                "train.seq_len = " + str(t.seq_len) + " must be <= model.max_seq_len = " +
                    str(m.max_seq_len));
  if (m.mtp.depth > 0 && t.seq_len <= m.mtp.depth)
    fail_across(L, {"train.seq_len", "mtp.depth"},
                "train.seq_len = " + str(t.seq_len) + " must be > mtp.depth = " + str(m.mtp.depth) +
                    " (depth k predicts the token k+1 places ahead within the sequence)");
  if (t.min_lr > t.lr)
    fail_across(L, {"train.min_lr", "train.lr"},
                "train.min_lr = " + str(t.min_lr) + " must be <= train.lr = " + str(t.lr));
  if (t.warmup_steps > t.steps)
    fail_across(L, {"train.warmup_steps", "train.steps"},
                "train.warmup_steps = " + str(t.warmup_steps) + " must be <= train.steps = " +
                    str(t.steps));
  try {
    t.fp8.to_recipe();
  } catch (const std::invalid_argument& e) {
    fail_across(L, {"fp8.recipe", "fp8.format", "fp8.grad_format", "fp8.act_granularity",
                    "fp8.weight_granularity", "fp8.grad_granularity", "fp8.scale", "fp8.accum_bits",
                    "fp8.promote_every"},
                e.what());
  }
}

// Every schema key, table by table, in schema order.
std::string to_toml_text(const RunConfig& cfg) {
  RunConfig c = cfg;  // the field accessors take a mutable config
  std::string out, table;
  for (const KeySpec& k : schema()) {
    if (k.table != table) {
      out += (out.empty() ? "[" : "\n[") + k.table + "]\n";
      table = k.table;
    }
    out += k.name + " = " + format_value(read_value(k, c)) + "\n";
  }
  return out;
}

RunConfig finish(Loader& L) {
  check_cross_fields(L);
  L.cfg.text = to_toml_text(L.cfg);
  return L.cfg;
}

struct Override {
  std::string text;     // "key.path=value"
  std::string origin;   // where it came from, for messages
};

RunConfig load_with_overrides(const std::string& path, const std::vector<Override>& overrides) {
  Loader L;
  L.source = path;
  std::vector<std::string> chain = {identity(path)}, shown = {path};
  apply_file(L, path, chain, shown);
  for (const Override& o : overrides) apply_override(L, o.text, o.origin);
  return finish(L);
}

// ---------------------------------------------------------------------------
// Experiments

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
      if (axes[i].swept) run.name += "-" + name_part(axes[i].key, v);
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

// ---------------------------------------------------------------------------

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::vector<Override> tagged;
  for (const std::string& o : overrides) tagged.push_back({o, "--set " + o});
  return load_with_overrides(path, tagged);
}

RunConfig parse_run_config_text(const std::string& text) {
  const std::string name = "<config text>";
  Loader L;
  L.source = name;
  apply_tables(L, parse_toml(text, name), name, false);
  return finish(L);
}

std::vector<std::string> describe_config_keys() {
  RunConfig defaults;
  std::vector<std::array<std::string, 5>> rows;
  for (const KeySpec& k : schema())
    rows.push_back({k.path(), type_name(k.type), allowed(k),
                    "default " + format_value(read_value(k, defaults)), k.description});
  std::array<size_t, 5> width{};
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c + 1 < row.size(); ++c) line += row[c] + std::string(width[c] - row[c].size() + 2, ' ');
    lines.push_back(line + row.back());
  }
  return lines;
}

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
