#include "experiments/deepseek_config.hpp"

#include <climits>
#include <fstream>
#include <map>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "experiments/commands.hpp"

namespace dslab {

namespace {

using Json = nlohmann::ordered_json;

// DeepSeek-V3 inference/model.py ModelArgs: every key and its default.
const std::map<std::string, Json>& deepseek_keys() {
  static const std::map<std::string, Json> keys = {
      {"max_batch_size", 8}, {"max_seq_len", 4096 * 4}, {"dtype", "bf16"},
      {"scale_fmt", nullptr}, {"vocab_size", 102400}, {"dim", 2048}, {"inter_dim", 10944},
      {"moe_inter_dim", 1408}, {"n_layers", 27}, {"n_dense_layers", 1}, {"n_heads", 16},
      {"n_routed_experts", 64}, {"n_shared_experts", 2}, {"n_activated_experts", 6},
      {"n_expert_groups", 1}, {"n_limited_groups", 1}, {"score_func", "softmax"},
      {"route_scale", 1.0}, {"q_lora_rank", 0}, {"kv_lora_rank", 512},
      {"qk_nope_head_dim", 128}, {"qk_rope_head_dim", 64}, {"v_head_dim", 128},
      {"original_seq_len", 4096}, {"rope_theta", 10000.0}, {"rope_factor", 40},
      {"beta_fast", 32}, {"beta_slow", 1}, {"mscale", 1.0}};
  return keys;
}

}  // namespace

ModelArgs model_args_from_deepseek_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw BadInput("cannot read '" + path + "'");
  Json j;
  try {
    j = Json::parse(in);
  } catch (const Json::parse_error& e) {
    throw BadInput(path + ": not valid JSON: " + e.what());
  } catch (const Json::out_of_range& e) {  // a number beyond double's range, e.g. 1e400
    throw BadInput(path + ": a number out of range: " + e.what());
  }
  if (!j.is_object()) throw BadInput(path + ": expected a JSON object of model.py ModelArgs keys");
  std::string allowed;
  for (const auto& [k, v] : deepseek_keys()) allowed += (allowed.empty() ? "" : ", ") + k;
  for (const auto& [k, v] : j.items())
    if (!deepseek_keys().count(k))
      throw BadInput(path + ": unknown key \"" + k + "\"; DeepSeek's inference configs use " +
                     allowed);

  // The value of `key`, or model.py's default when the file leaves it out.
  auto value = [&](const std::string& key) -> const Json& {
    return j.contains(key) ? j[key] : deepseek_keys().at(key);
  };
  auto integer = [&](const std::string& key, int64_t min) {
    const Json& v = value(key);
    if (!v.is_number_integer() || v.get<int64_t>() < min)
      throw BadInput(path + ": \"" + key + "\" = " + v.dump() + " must be an integer >= " +
                     std::to_string(min));
    if (v.get<int64_t>() > INT_MAX)
      throw BadInput(path + ": \"" + key + "\" = " + v.dump() + " must be <= " +
                     std::to_string(INT_MAX));
    return int(v.get<int64_t>());
  };
  auto number = [&](const std::string& key) {
    const Json& v = value(key);
    if (!v.is_number()) throw BadInput(path + ": \"" + key + "\" = " + v.dump() + " must be a number");
    return v.get<double>();
  };

  ModelArgs m;
  m.vocab_size = integer("vocab_size", 1);
  m.dim = integer("dim", 1);
  m.n_layers = integer("n_layers", 1);
  m.n_dense_layers = integer("n_dense_layers", 0);
  m.inter_dim = integer("inter_dim", 1);
  m.moe.moe_inter_dim = integer("moe_inter_dim", 1);
  m.moe.n_routed_experts = integer("n_routed_experts", 1);
  m.moe.n_shared_experts = integer("n_shared_experts", 0);
  m.moe.n_activated_experts = integer("n_activated_experts", 1);
  m.attn = AttnKind::Mla;  // every DeepSeek config is MLA with decoupled RoPE
  m.n_heads = integer("n_heads", 1);
  m.n_kv_heads = m.n_heads;  // not used by MLA; every head has its own keys and values
  m.mla.rope = MlaRope::Decoupled;
  m.mla.q_lora_rank = integer("q_lora_rank", 0);
  m.mla.kv_lora_rank = integer("kv_lora_rank", 1);
  m.mla.qk_nope_head_dim = integer("qk_nope_head_dim", 1);
  m.mla.qk_rope_head_dim = integer("qk_rope_head_dim", 0);
  m.mla.v_head_dim = integer("v_head_dim", 1);
  const Json& sf = value("score_func");
  const auto score_func = sf.is_string() ? parse_enum<ScoreFunc>(sf.get<std::string>()) : std::nullopt;
  if (!score_func)
    throw BadInput(path + ": \"score_func\" = " + sf.dump() + ": allowed " + names_text<ScoreFunc>("\"", {}));
  m.moe.score_func = *score_func;
  // V3's gate, the sigmoid one, keeps Eq. (24)'s per-expert bias for the
  // top-K selection (model.py gives the bias to the dim = 7168 model, V3, the
  // only one with a sigmoid gate); V3 updates it by the sign rule.
  if (m.moe.score_func == ScoreFunc::Sigmoid) m.balance.bias_update = BiasUpdate::Sign;
  if (m.n_dense_layers > m.n_layers)
    throw BadInput(path + ": \"n_dense_layers\" = " + std::to_string(m.n_dense_layers) +
                   " must be <= \"n_layers\" = " + std::to_string(m.n_layers));
  if (m.moe.n_activated_experts > m.moe.n_routed_experts)
    throw BadInput(path + ": \"n_activated_experts\" = " + std::to_string(m.moe.n_activated_experts) +
                   " must be <= \"n_routed_experts\" = " + std::to_string(m.moe.n_routed_experts));
  m.moe.n_expert_groups = integer("n_expert_groups", 1);
  m.moe.n_limited_groups = integer("n_limited_groups", 1);
  m.moe.route_scale = number("route_scale");
  m.rope_theta = number("rope_theta");
  m.max_seq_len = integer("max_seq_len", 1);

  // YaRN context extension, as model.py applies it: only when the model runs
  // beyond the context it was trained on, max_seq_len > original_seq_len.
  // Then (a) the softmax scale (qk_head_dim)^-1/2 of Eq. (16) is multiplied by
  // (0.1 mscale ln(rope_factor) + 1)^2 (MLA.__init__), and (b) the RoPE
  // frequencies are interpolated by rope_factor between the dimensions that
  // rotate beta_fast and beta_slow times over original_seq_len positions
  // (precompute_freqs_cis). Hugging Face's config.json holds the same numbers in
  // "rope_scaling": factor = rope_factor, original_max_position_embeddings =
  // original_seq_len, beta_fast, beta_slow, and mscale_all_dim = mscale (its
  // own "mscale" over "mscale_all_dim" scales cos and sin, 1 in every
  // published config). MlaArgs::yarn() decides, with model.py's condition, from the fields below.
  m.mla.original_seq_len = integer("original_seq_len", 1);
  m.mla.rope_factor = number("rope_factor");
  m.mla.mscale = number("mscale");
  m.mla.beta_fast = number("beta_fast");
  m.mla.beta_slow = number("beta_slow");

  // The model's own rules, beyond each key's range.
  try {
    m.validate();  // every model rule, e.g. n_routed_experts % n_expert_groups, n_limited_groups <= n_expert_groups
  } catch (const std::invalid_argument& e) {
    throw BadInput(path + ": " + e.what());
  }
  return m;
}

}  // namespace dslab
