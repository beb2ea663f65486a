#include "experiments/hf_checkpoint.hpp"

#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "experiments/commands.hpp"
#include "experiments/io.hpp"
#include "reference/fp8.hpp"

namespace dslab {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

// The config.json keys read into ModelArgs, and those a run never reads.
const std::set<std::string>& read_keys() {
  static const std::set<std::string> keys = {
      "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
      "num_attention_heads", "num_key_value_heads", "n_shared_experts", "n_routed_experts",
      "routed_scaling_factor", "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "v_head_dim",
      "qk_nope_head_dim", "head_dim", "qk_head_dim", "n_group", "topk_group", "num_experts_per_tok", "first_k_dense_replace",
      "norm_topk_prob", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
      "attention_bias", "attention_dropout", "tie_word_embeddings", "rope_interleave", "initializer_range",
      "num_nextn_predict_layers", "scoring_func", "topk_method", "moe_layer_freq", "model_type"};
  return keys;
}
const std::set<std::string>& ignored_keys() {
  static const std::set<std::string> keys = {
      "architectures", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "dtype",
      "transformers_version", "use_cache", "quantization_config", "pretraining_tp", "aux_loss_alpha",
      "seq_aux", "ep_size", "_name_or_path", "output_attentions", "output_hidden_states", "return_dict",
      "mlp_bias", "_attn_implementation_autoset"};
  return keys;
}

std::string joined(const std::set<std::string>& s) {
  std::string out;
  for (const std::string& k : s) out += (out.empty() ? "" : ", ") + k;
  return out;
}

// "layers.<l>." tail of a dslab name -> the Hugging Face tail (model.py's names
// to transformers', as DeepSeek's convert.py maps them the other way).
std::string ffn_weight(const std::string& w) {
  if (w == "w1") return "gate_proj";
  if (w == "w2") return "down_proj";
  if (w == "w3") return "up_proj";
  throw std::logic_error("hf_name: ffn weight " + w);
}

std::string block_tail(const std::string& t) {
  static const std::map<std::string, std::string> attn = {
      {"wq_a", "q_a_proj"}, {"q_norm", "q_a_layernorm"}, {"wq_b", "q_b_proj"}, {"wq", "q_proj"},
      {"wkv_a", "kv_a_proj_with_mqa"}, {"kv_norm", "kv_a_layernorm"}, {"wkv_b", "kv_b_proj"}, {"wo", "o_proj"}};
  if (t == "attn_norm.weight") return "input_layernorm.weight";
  if (t == "ffn_norm.weight") return "post_attention_layernorm.weight";
  if (t == "ffn.gate.weight") return "mlp.gate.weight";
  if (t == "ffn.gate.bias") return "mlp.gate.e_score_correction_bias";
  const auto dot = [](const std::string& s, size_t from) { return s.find('.', from); };
  if (t.rfind("attn.", 0) == 0) {
    const size_t e = dot(t, 5);
    return "self_attn." + attn.at(t.substr(5, e - 5)) + t.substr(e);
  }
  if (t.rfind("ffn.experts.", 0) == 0) {
    const size_t e = dot(t, 12), w = dot(t, e + 1);
    return "mlp.experts." + t.substr(12, e - 12) + "." + ffn_weight(t.substr(e + 1, w - e - 1)) + t.substr(w);
  }
  if (t.rfind("ffn.shared_experts.", 0) == 0) {
    const size_t w = dot(t, 19);
    return "mlp.shared_experts." + ffn_weight(t.substr(19, w - 19)) + t.substr(w);
  }
  if (t.rfind("ffn.", 0) == 0) {
    const size_t w = dot(t, 4);
    return "mlp." + ffn_weight(t.substr(4, w - 4)) + t.substr(w);
  }
  throw std::logic_error("hf_name: no Hugging Face name for layer tensor " + t);
}

template <class T> std::vector<ParamRef<T>> all_refs(Transformer<T>& m) {
  std::vector<ParamRef<T>> r = m.params.refs();
  for (ParamRef<T>& b : m.params.buffers()) r.push_back(b);
  return r;
}

}  // namespace

std::string hf_name(const std::string& n, int n_layers) {
  if (n == "embed.weight") return "model.embed_tokens.weight";
  if (n == "norm.weight") return "model.norm.weight";
  if (n == "head.weight") return "lm_head.weight";
  if (n.rfind("layers.", 0) == 0) {
    const size_t e = n.find('.', 7);
    return "model.layers." + n.substr(7, e - 7) + "." + block_tail(n.substr(e + 1));
  }
  if (n.rfind("mtp.", 0) == 0) {
    const size_t e = n.find('.', 4);
    const int k = std::stoi(n.substr(4, e - 4));
    const std::string layer = "model.layers." + std::to_string(n_layers + k - 1) + ".", t = n.substr(e + 1);
    if (t == "enorm.weight" || t == "hnorm.weight" || t == "eh_proj.weight") return layer + t;
    if (t == "norm.weight") return layer + "shared_head.norm.weight";
    return layer + block_tail(t);
  }
  throw std::logic_error("hf_name: no Hugging Face name for " + n);
}

ModelArgs model_args_from_hf_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw BadInput("cannot read '" + path + "'");
  Json j;
  try {
    j = Json::parse(in);
  } catch (const Json::exception& e) {
    throw BadInput(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw BadInput(path + ": expected a JSON object (transformers' DeepseekV3Config)");
  for (const auto& [k, v] : j.items())
    if (!read_keys().count(k) && !ignored_keys().count(k))
      throw BadInput(path + ": unknown key \"" + k + "\"; a DeepseekV3 config.json has " + joined(read_keys()) +
                     " (and, not read, " + joined(ignored_keys()) + ")");
  auto fail = [&](const std::string& key, const std::string& what) -> BadInput {
    return BadInput(path + ": \"" + key + "\" = " + (j.contains(key) ? j[key].dump() : "(missing)") + ": " + what);
  };
  auto integer = [&](const std::string& key, int64_t min, std::optional<int64_t> def = std::nullopt) {
    if (!j.contains(key) || j[key].is_null()) {
      if (def) return int(*def);
      throw fail(key, "required, an integer >= " + std::to_string(min));
    }
    const Json& v = j[key];
    if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > INT_MAX)
      throw fail(key, "must be an integer in [" + std::to_string(min) + ", " + std::to_string(INT_MAX) + "]");
    return int(v.get<int64_t>());
  };
  auto number = [&](const Json& obj, const std::string& key, std::optional<double> def, const std::string& shown) {
    if (!obj.contains(key) || obj[key].is_null()) {
      if (def) return *def;
      throw BadInput(path + ": \"" + shown + "\" is required, a number");
    }
    if (!obj[key].is_number()) throw BadInput(path + ": \"" + shown + "\" = " + obj[key].dump() + " must be a number");
    return obj[key].get<double>();
  };
  // Keys dslab has no counterpart for: they must say what dslab computes.
  auto must_be = [&](const std::string& key, const Json& want, bool required = false) {
    if (!j.contains(key)) {
      if (required) throw fail(key, "required, " + want.dump());
      return;
    }
    if (j[key] != want) throw fail(key, "dslab computes only " + want.dump());
  };
  if (j.contains("model_type")) must_be("model_type", "deepseek_v3");
  must_be("hidden_act", "silu");
  must_be("attention_bias", false);
  must_be("tie_word_embeddings", false);
  must_be("rope_interleave", true);
  must_be("moe_layer_freq", 1);
  if (j.contains("attention_dropout") && !(j["attention_dropout"].is_number() && j["attention_dropout"] == 0))
    throw fail("attention_dropout", "dslab computes only 0");

  ModelArgs m;
  m.vocab_size = integer("vocab_size", 1);
  m.dim = integer("hidden_size", 1);
  m.inter_dim = integer("intermediate_size", 1);
  m.n_layers = integer("num_hidden_layers", 1);
  m.n_heads = integer("num_attention_heads", 1);
  m.n_kv_heads = m.n_heads;
  if (j.contains("num_key_value_heads") && integer("num_key_value_heads", 1) != m.n_heads)
    throw fail("num_key_value_heads", "MLA gives every head its own keys and values: must equal num_attention_heads");
  m.max_seq_len = integer("max_position_embeddings", 1);
  m.rope_theta = number(j, "rope_theta", 10000.0, "rope_theta");
  m.norm_eps = number(j, "rms_norm_eps", 1e-6, "rms_norm_eps");
  m.init_std = number(j, "initializer_range", 0.02, "initializer_range");
  m.attn = AttnKind::Mla;
  m.mla.rope = MlaRope::Decoupled;
  m.mla.q_lora_rank = integer("q_lora_rank", 0, 0);
  m.mla.kv_lora_rank = integer("kv_lora_rank", 1);
  m.mla.qk_nope_head_dim = integer("qk_nope_head_dim", 1);
  m.mla.qk_rope_head_dim = integer("qk_rope_head_dim", 1);
  m.mla.v_head_dim = integer("v_head_dim", 1);
  if (j.contains("head_dim") && integer("head_dim", 1) != m.mla.qk_rope_head_dim)
    throw fail("head_dim", "transformers rotates head_dim dimensions: must equal qk_rope_head_dim");
  if (j.contains("qk_head_dim") && integer("qk_head_dim", 1) != m.mla.qk_head_dim())
    throw fail("qk_head_dim", "must equal qk_nope_head_dim + qk_rope_head_dim");

  // YaRN. model.py applies it when max_seq_len > original_seq_len; transformers
  // whenever rope_scaling is set, with the softmax factor from mscale_all_dim and
  // cos, sin scaled by mscale(mscale) / mscale(mscale_all_dim). The two agree
  // when rope_scaling comes with max_position_embeddings above its
  // original_max_position_embeddings and mscale == mscale_all_dim (every
  // published V3 config: 1.0 and 1.0).
  m.mla.original_seq_len = m.max_seq_len;  // no YaRN unless rope_scaling says so
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const Json& r = j["rope_scaling"];
    if (!r.is_object()) throw fail("rope_scaling", "must be an object or null");
    const std::string type = r.value("type", r.value("rope_type", std::string()));
    if (type != "yarn") throw fail("rope_scaling", "dslab has YaRN only: type must be \"yarn\"");
    m.mla.rope_factor = number(r, "factor", std::nullopt, "rope_scaling.factor");
    m.mla.original_seq_len = int(number(r, "original_max_position_embeddings", std::nullopt,
                                        "rope_scaling.original_max_position_embeddings"));
    m.mla.beta_fast = number(r, "beta_fast", 32.0, "rope_scaling.beta_fast");
    m.mla.beta_slow = number(r, "beta_slow", 1.0, "rope_scaling.beta_slow");
    const double ms = number(r, "mscale", 1.0, "rope_scaling.mscale");
    const double ms_all = number(r, "mscale_all_dim", 0.0, "rope_scaling.mscale_all_dim");
    if (ms != ms_all)
      throw fail("rope_scaling", "mscale and mscale_all_dim must be equal (model.py has one mscale; "
                                 "transformers would scale cos and sin by their ratio)");
    if (r.contains("attention_factor") && !r["attention_factor"].is_null())
      throw fail("rope_scaling", "attention_factor is not model.py's YaRN: leave it out");
    if (r.contains("truncate") && r["truncate"] != true) throw fail("rope_scaling", "truncate must be true (model.py)");
    m.mla.mscale = ms_all;
    if (!(m.mla.rope_factor > 1) || m.max_seq_len <= m.mla.original_seq_len)
      throw fail("rope_scaling", "model.py applies YaRN only with factor > 1 and max_position_embeddings (" +
                                     std::to_string(m.max_seq_len) + ") > original_max_position_embeddings (" +
                                     std::to_string(m.mla.original_seq_len) + ")");
  }

  const int experts = integer("n_routed_experts", 0, 0);
  m.n_dense_layers = integer("first_k_dense_replace", 0, 0);
  if (experts > 0 && m.n_dense_layers < m.n_layers) {
    m.moe.n_routed_experts = experts;
    m.moe.moe_inter_dim = integer("moe_intermediate_size", 1);
    m.moe.n_shared_experts = integer("n_shared_experts", 0, 0);
    m.moe.n_activated_experts = integer("num_experts_per_tok", 1);
    m.moe.n_expert_groups = integer("n_group", 1, 1);
    m.moe.n_limited_groups = integer("topk_group", 1, 1);
    m.moe.route_scale = number(j, "routed_scaling_factor", 1.0, "routed_scaling_factor");
    // transformers' DeepseekV3 router: sigmoid scores, e_score_correction_bias in the
    // selection (Eq. (24)), weights normalised over the top-K (norm_topk_prob), as model.py's V3 gate.
    if (j.contains("scoring_func")) must_be("scoring_func", "sigmoid");
    if (j.contains("topk_method")) must_be("topk_method", "noaux_tc");
    must_be("norm_topk_prob", true, true);
    m.moe.score_func = ScoreFunc::Sigmoid;
    m.balance.bias_update = BiasUpdate::Sign;
  } else {
    m.n_dense_layers = std::min(m.n_dense_layers, m.n_layers - 1);
    m.moe.n_routed_experts = 0;
  }
  m.mtp.depth = integer("num_nextn_predict_layers", 0, 0);
  try {
    m.validate();
  } catch (const std::invalid_argument& e) {
    throw BadInput(path + ": " + e.what());
  }
  return m;
}

std::string hf_config_json(const ModelArgs& a) {
  auto refuse = [](const std::string& field, const std::string& why) {
    return BadInput("this model has no DeepseekV3 config.json: " + field + " " + why);
  };
  if (a.attn != AttnKind::Mla) throw refuse("attn = \"mha\"", "(DeepseekV3 is MLA)");
  if (a.mla.rope != MlaRope::Decoupled) throw refuse("mla.rope", "is not \"decoupled\"");
  const bool moe = a.moe.n_routed_experts > 0;
  if (moe && a.moe.score_func != ScoreFunc::Sigmoid) throw refuse("moe.score_func = \"softmax\"", "(DeepseekV3's router is sigmoid)");
  if (moe && a.moe.capacity_factor > 0) throw refuse("moe.capacity_factor", "> 0 (DeepseekV3 drops no token)");
  Json j;
  j["architectures"] = {"DeepseekV3ForCausalLM"};
  j["model_type"] = "deepseek_v3";
  j["vocab_size"] = a.vocab_size;
  j["hidden_size"] = a.dim;
  j["intermediate_size"] = a.inter_dim;
  j["num_hidden_layers"] = a.n_layers;
  j["num_attention_heads"] = a.n_heads;
  j["num_key_value_heads"] = a.n_heads;
  j["q_lora_rank"] = a.mla.q_lora_rank > 0 ? Json(a.mla.q_lora_rank) : Json(nullptr);
  j["kv_lora_rank"] = a.mla.kv_lora_rank;
  j["qk_nope_head_dim"] = a.mla.qk_nope_head_dim;
  j["qk_rope_head_dim"] = a.mla.qk_rope_head_dim;
  j["head_dim"] = a.mla.qk_rope_head_dim;
  j["v_head_dim"] = a.mla.v_head_dim;
  j["first_k_dense_replace"] = moe ? a.n_dense_layers : a.n_layers;
  j["n_routed_experts"] = moe ? a.moe.n_routed_experts : 1;
  j["moe_intermediate_size"] = moe ? a.moe.moe_inter_dim : 1;
  j["n_shared_experts"] = moe ? a.moe.n_shared_experts : 0;
  j["num_experts_per_tok"] = moe ? a.moe.n_activated_experts : 1;
  j["n_group"] = moe ? a.moe.n_expert_groups : 1;
  j["topk_group"] = moe ? a.moe.n_limited_groups : 1;
  j["routed_scaling_factor"] = moe ? a.moe.route_scale : 1.0;
  j["scoring_func"] = "sigmoid";
  j["topk_method"] = "noaux_tc";
  j["norm_topk_prob"] = true;
  j["moe_layer_freq"] = 1;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = a.max_seq_len;
  j["rms_norm_eps"] = a.norm_eps;
  j["rope_theta"] = a.rope_theta;
  const MlaArgs m = a.mla_args();
  if (m.yarn())
    j["rope_scaling"] = {{"type", "yarn"}, {"factor", m.rope_factor},
                         {"original_max_position_embeddings", m.original_seq_len}, {"beta_fast", m.beta_fast},
                         {"beta_slow", m.beta_slow}, {"mscale", m.mscale}, {"mscale_all_dim", m.mscale}};
  else
    j["rope_scaling"] = nullptr;
  j["rope_interleave"] = true;
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["tie_word_embeddings"] = false;
  j["initializer_range"] = a.init_std;
  j["num_nextn_predict_layers"] = a.mtp.depth;
  return j.dump(2) + "\n";
}

std::string hf_config_path(const std::string& path) {
  const fs::path p(path);
  return (fs::is_directory(p) ? p : p.parent_path()) / "config.json";
}

// The safetensors files of a checkpoint: model.safetensors, the shards of
// model.safetensors.index.json, or the one file given.
static std::vector<std::string> checkpoint_files(const std::string& path) {
  const fs::path p(path);
  std::vector<std::string> files;
  if (fs::is_directory(p)) {
    if (fs::exists(p / "model.safetensors.index.json")) {
      std::ifstream in(p / "model.safetensors.index.json");
      Json idx;
      try {
        idx = Json::parse(in);
      } catch (const Json::exception& e) {
        throw BadInput((p / "model.safetensors.index.json").string() + ": not valid JSON: " + e.what());
      }
      if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
        throw BadInput((p / "model.safetensors.index.json").string() + ": no \"weight_map\" object");
      std::set<std::string> shards;
      for (const auto& [k, v] : idx["weight_map"].items()) {
        if (!v.is_string() || v.get<std::string>().find('/') != std::string::npos)
          throw BadInput((p / "model.safetensors.index.json").string() + ": weight_map[\"" + k +
                         "\"] must be a file name in the folder");
        shards.insert(v.get<std::string>());
      }
      for (const std::string& s : shards) files.push_back((p / s).string());
    } else if (fs::exists(p / "model.safetensors")) {
      files.push_back((p / "model.safetensors").string());
    } else {
      throw BadInput(path + ": no model.safetensors or model.safetensors.index.json in the folder");
    }
  } else {
    files.push_back(path);
  }
  return files;
}

ModelArgs hf_checkpoint_args(const std::string& path) {
  ModelArgs a = model_args_from_hf_config(hf_config_path(path));
  if (a.mtp.depth == 0) return a;
  const std::string first = "model.layers." + std::to_string(a.n_layers) + ".";
  for (const std::string& f : checkpoint_files(path)) {
    const SafetensorsFile header(f, true);
    for (const auto& [name, e] : header.entries())
      if (name.rfind(first, 0) == 0) return a;
  }
  a.mtp.depth = 0;
  return a;
}

template <class T> void read_hf_checkpoint(const std::string& path, Transformer<T>& model) {
  const std::vector<std::string> files = checkpoint_files(path);
  std::vector<SafetensorsFile> st;
  for (const std::string& f : files) st.emplace_back(f);

  const int L = model.args.n_layers;
  std::map<std::string, ParamRef<T>> wanted;  // HF name -> parameter
  for (const ParamRef<T>& r : all_refs(model)) wanted.emplace(hf_name(r.name, L), r);
  std::set<std::string> seen;
  std::vector<std::pair<std::string, const SafetensorsFile*>> copies;  // MTP's stored embedding and head
  for (const SafetensorsFile& f : st)
    for (const auto& [name, e] : f.entries()) {
      if (name.size() > 10 && name.compare(name.size() - 10, 10, "_scale_inv") == 0 &&
          wanted.count(name.substr(0, name.size() - 10)))
        continue;  // read with its weight
      const auto it = wanted.find(name);
      if (it == wanted.end()) {
        bool copy = false;
        for (int k = 1; k <= model.args.mtp.depth; ++k) {
          const std::string layer = "model.layers." + std::to_string(L + k - 1) + ".";
          copy |= name == layer + "embed_tokens.weight" || name == layer + "shared_head.head.weight";
        }
        if (!copy)
          throw BadInput(f.path() + ": tensor '" + name + "' is not part of the model its config.json describes");
        copies.emplace_back(name, &f);
        continue;
      }
      if (!seen.insert(name).second) throw BadInput(f.path() + ": tensor '" + name + "' is stored twice");
      const ParamRef<T>& r = it->second;
      if (e.shape != r.shape) {
        std::string want, got;
        for (size_t s : r.shape) want += (want.empty() ? "" : ", ") + std::to_string(s);
        for (size_t s : e.shape) got += (got.empty() ? "" : ", ") + std::to_string(s);
        throw BadInput(f.path() + ": tensor '" + name + "' has shape [" + got + "]; the model's " + r.name +
                       " is [" + want + "]");
      }
      if (e.dtype == StDtype::F8_E4M3) {
        // DeepSeek's weight_dequant: y = x * s, one fp32 scale per 128 x 128 block.
        const std::string sname = name + "_scale_inv";
        if (r.shape.size() != 2 || !f.has(sname))
          throw BadInput(f.path() + ": F8_E4M3 tensor '" + name + "' needs its 2-D scales '" + sname + "'");
        const size_t rows = r.shape[0], cols = r.shape[1];
        const std::vector<size_t> sshape = {(rows + 127) / 128, (cols + 127) / 128};
        if (f.entry(sname).shape != sshape)
          throw BadInput(f.path() + ": '" + sname + "' must hold one scale per 128x128 block, [" +
                         std::to_string(sshape[0]) + ", " + std::to_string(sshape[1]) + "]");
        fp8::QuantizedMatrix q{.format = fp8::e4m3(), .group = {128, 128}, .codes = {}, .scales = {}};
        q.codes = Tensor2<uint16_t>({rows, cols});
        q.scales = Tensor2<float>({sshape[0], sshape[1]});
        const fp8::Format e4m3 = fp8::e4m3();
        const std::vector<float> vals = f.floats(name);
        for (size_t i = 0; i < vals.size(); ++i) q.codes.data()[i] = fp8::encode(e4m3, vals[i], fp8::Saturation::None);
        const std::vector<float> s = f.floats(sname);
        std::copy(s.begin(), s.end(), q.scales.data());
        const Tensor2<float> w = fp8::dequantize(q);
        for (size_t i = 0; i < r.size(); ++i) r.data[i] = T(w.data()[i]);
      } else if constexpr (std::is_same_v<T, double>) {
        const std::vector<double> v = f.doubles(name);
        std::copy(v.begin(), v.end(), r.data);
      } else {
        const std::vector<float> v = f.floats(name);
        std::copy(v.begin(), v.end(), r.data);
      }
    }
  for (const auto& [name, r] : wanted)
    if (!seen.count(name))
      throw BadInput(path + ": no tensor '" + name + "' (the model's " + r.name + ")");
  // The MTP modules share the main embedding and head; V3 stores copies, which must agree.
  for (const auto& [name, f] : copies) {
    const bool embed = name.find("embed_tokens") != std::string::npos;
    const Tensor2<T>& shared = embed ? model.params.embed : model.params.head;
    const std::vector<double> v = f->doubles(name);
    bool same = v.size() == shared.size();
    for (size_t i = 0; same && i < v.size(); ++i) same = T(v[i]) == shared.data()[i];
    if (!same)
      throw BadInput(f->path() + ": '" + name + "' differs from the shared " + (embed ? "embedding" : "head") +
                     " (dslab's MTP modules share them, as V3's)");
  }
}

template <class T> void write_hf_checkpoint(const std::string& dir, Transformer<T>& model, StDtype dtype) {
  const std::string config = hf_config_json(model.args);
  std::vector<StTensorOut> out;
  const int L = model.args.n_layers;
  for (const ParamRef<T>& r : all_refs(model)) {
    out.push_back({hf_name(r.name, L), r.shape, std::vector<double>(r.data, r.data + r.size())});
    const std::string& n = r.name;
    if (n.rfind("mtp.", 0) == 0 && n.find(".enorm.weight") != std::string::npos) {  // V3's copies, once per module
      const std::string layer = "model.layers." + std::to_string(L + std::stoi(n.substr(4)) - 1) + ".";
      const Tensor2<T>& e = model.params.embed;
      const Tensor2<T>& h = model.params.head;
      out.push_back({layer + "embed_tokens.weight", {e.shape(0), e.shape(1)}, {e.begin(), e.end()}});
      out.push_back({layer + "shared_head.head.weight", {h.shape(0), h.shape(1)}, {h.begin(), h.end()}});
    }
  }
  fs::create_directories(dir);
  write_safetensors((fs::path(dir) / "model.safetensors").string(), out, dtype, {{"format", "pt"}});
  write_file_atomically((fs::path(dir) / "config.json").string(), config);
}

template void read_hf_checkpoint<float>(const std::string&, Transformer<float>&);
template void read_hf_checkpoint<double>(const std::string&, Transformer<double>&);
template void write_hf_checkpoint<float>(const std::string&, Transformer<float>&, StDtype);
template void write_hf_checkpoint<double>(const std::string&, Transformer<double>&, StDtype);

}  // namespace dslab
