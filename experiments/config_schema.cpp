// The schema of run configs: one entry per key (config_schema.hpp). Adding a
// key is one entry here (and its field in the reference's structs); its
// default comes from the struct, its choices, for an enum, from the enum's
// name table.
#include "experiments/config_schema.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <type_traits>
#include <utility>

#include "reference/args_error.hpp"
#include "reference/enum_names.hpp"

namespace dslab {
namespace config {
namespace {

using fp8::Granularity;

#define DSLAB_FIELD(member) +[](RunConfig& c) -> auto& { return c.member; }

Interval closed(double lo, double hi) { return {lo, hi, false, false}; }
Interval open_closed(double lo, double hi) { return {lo, hi, true, false}; }
Interval closed_open(double lo, double hi) { return {lo, hi, false, true}; }
Interval open(double lo, double hi) { return {lo, hi, true, true}; }

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

// A closed set, by the names of its enum. Messages list the names of
// `listed_first` first (the order the key has always shown), then the rest
// in the enum's order.
template <NamedEnum E>
KeySpec enum_key(const char* table, const char* name, E& (*field)(RunConfig&), const char* description,
                 std::vector<E> listed_first = {}) {
  for (E e : enum_values<E>())
    if (std::find(listed_first.begin(), listed_first.end(), e) == listed_first.end()) listed_first.push_back(e);
  std::vector<std::string> choices;
  for (E e : listed_first) choices.emplace_back(name_of(e));
  EnumField access{[field](RunConfig& c) { return std::string(name_of(field(c))); },
                   [field](RunConfig& c, const std::string& s) { field(c) = *parse_enum<E>(s); }};
  return {.table = table, .name = name, .type = KeyType::String, .field = std::move(access),
          .choices = std::move(choices), .description = description};
}

// A string that may be empty ("" meaning none), read and written through `field`.
KeySpec optional_string_key(const char* table, const char* name, Field field, const char* description) {
  KeySpec k = string_key(table, name, std::move(field), description);
  k.allow_empty = true;
  return k;
}

// A list of non-empty strings; a config may give one string for a list of one.
KeySpec string_list_key(const char* table, const char* name, Field field, const char* description) {
  return {.table = table, .name = name, .type = KeyType::StringList, .field = field,
          .description = description};
}

KeySpec bool_key(const char* table, const char* name, Field field, const char* description) {
  return {.table = table, .name = name, .type = KeyType::Bool, .field = field,
          .description = description};
}

KeySpec only(RunKind kind, KeySpec key) {
  key.only = kind;
  return key;
}

}  // namespace

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
      enum_key("model", "attn", DSLAB_FIELD(model.attn),
               "attention: \"mha\" (GQA/MQA by n_kv_heads) or \"mla\" (latent attention)"),
      integer_key("model", "q_lora_rank", DSLAB_FIELD(model.mla.q_lora_rank), 0, kMaxWidth,
                  "MLA: query compression rank d_c'; 0 for a direct wq"),
      integer_key("model", "kv_lora_rank", DSLAB_FIELD(model.mla.kv_lora_rank), 1, kMaxWidth,
                  "MLA: latent width d_c, cached per token"),
      integer_key("model", "qk_nope_head_dim", DSLAB_FIELD(model.mla.qk_nope_head_dim), 1, kMaxWidth,
                  "MLA: per-head query/key width without RoPE, d_h"),
      integer_key("model", "qk_rope_head_dim", DSLAB_FIELD(model.mla.qk_rope_head_dim), 0, kMaxWidth,
                  "MLA: per-head width of the decoupled RoPE query and shared key, d_h^R"),
      integer_key("model", "v_head_dim", DSLAB_FIELD(model.mla.v_head_dim), 1, kMaxWidth,
                  "MLA: per-head value width"),
      enum_key("model", "rope", DSLAB_FIELD(model.mla.rope),
               "MLA: RoPE on the decoupled dims, nowhere, or on whole query/key heads"),
      float_key("model", "rope_factor", DSLAB_FIELD(model.mla.rope_factor), closed(1, 1e6),
                "MLA: YaRN factor; with max_seq_len > original_seq_len the RoPE frequencies are corrected and the softmax scale is multiplied by "
                "(0.1 mscale ln(rope_factor) + 1)^2"),
      float_key("model", "mscale", DSLAB_FIELD(model.mla.mscale), open_closed(0, 100),
                "MLA: YaRN mscale"),
      integer_key("model", "original_seq_len", DSLAB_FIELD(model.mla.original_seq_len), 1, kMaxWidth,
                  "MLA: YaRN's pre-training context; YaRN applies when max_seq_len exceeds it"),
      float_key("model", "beta_fast", DSLAB_FIELD(model.mla.beta_fast), open_closed(0, 1e6),
                "MLA: YaRN correction range, fast end (rotations per context)"),
      float_key("model", "beta_slow", DSLAB_FIELD(model.mla.beta_slow), open_closed(0, 1e6),
                "MLA: YaRN correction range, slow end"),

      integer_key("model", "n_routed_experts", DSLAB_FIELD(model.moe.n_routed_experts), 0, 65536,
                  "MoE: routed experts E per MoE layer; 0 keeps every FFN dense"),
      integer_key("model", "n_shared_experts", DSLAB_FIELD(model.moe.n_shared_experts), 0, 65536,
                  "MoE: always-on shared experts"),
      integer_key("model", "n_activated_experts", DSLAB_FIELD(model.moe.n_activated_experts), 1, 65536,
                  "MoE: routed experts K chosen per token (top-K)"),
      integer_key("model", "moe_inter_dim", DSLAB_FIELD(model.moe.moe_inter_dim), 1, kMaxWidth,
                  "MoE: hidden width of each expert's SwiGLU"),
      integer_key("model", "n_dense_layers", DSLAB_FIELD(model.n_dense_layers), 0, 1024,
                  "MoE: the first layers keep a dense FFN of inter_dim"),
      integer_key("model", "n_expert_groups", DSLAB_FIELD(model.moe.n_expert_groups), 1, 65536,
                  "MoE: groups of routed experts for group-limited routing"),
      integer_key("model", "n_limited_groups", DSLAB_FIELD(model.moe.n_limited_groups), 1, 65536,
                  "MoE: groups each token may route to"),
      enum_key("model", "score_func", DSLAB_FIELD(model.moe.score_func),
               "MoE: gate scores, softmax (V2) or sigmoid with renormalised top-K (V3)"),
      float_key("model", "route_scale", DSLAB_FIELD(model.moe.route_scale), open_closed(0, 1e6),
                "MoE: factor on the gate values"),
      float_key("model", "capacity_factor", DSLAB_FIELD(model.moe.capacity_factor), closed(0, 1e6),
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
      enum_key("balance", "bias_update", DSLAB_FIELD(model.balance.bias_update),
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
      integer_key("train", "micro_batches", DSLAB_FIELD(train.micro_batches), 1, 65536,
                  "micro-batches per step, each batch_size/micro_batches rows: the gradient is their mean, "
                  "added in micro-batch order; under mpirun the ranks share them, and the numbers are the "
                  "same for every rank count dividing it"),
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
      optional_string_key("train", "init", DSLAB_FIELD(train.init),
                          "a dslab train result (FILE.h5, a path from the working directory) whose weights "
                          "start the run (mid-training, SFT); \"\": fresh weights"),

      string_key("data", "path", DSLAB_FIELD(data.path),
                 "training text: \"kjv\" (the cached KJV Bible) or a file path"),
      float_key("data", "val_fraction", DSLAB_FIELD(data.val_fraction), open(0, 1),
                "last fraction of the bytes held out for validation"),
      only(RunKind::Train,
           float_key("data", "task_share", DSLAB_FIELD(train.task_text.share), closed(0, 1),
                     "share of each batch's rows that are [task] text (R1 template + response); 0: none")),
      only(RunKind::Train, enum_key("data", "response", DSLAB_FIELD(train.task_text.response),
                                    "response of a task row: answer (answer only) or trace (the solver's reasoning)")),
      only(RunKind::Train, enum_key("data", "loss", DSLAB_FIELD(train.task_text.loss),
                                    "task rows' loss on all bytes (mid-training) or on the responses only (SFT)")),
      only(RunKind::Train,
           optional_string_key("data", "pairs", DSLAB_FIELD(train.pair_text.path),
                               "SFT pairs: a dslab eval result (its /pairs) or a JSON Lines file of "
                               "{\"prompt\", \"response\"}; \"\": none")),
      only(RunKind::Train, float_key("data", "pairs_share", DSLAB_FIELD(train.pair_text.share), closed(0, 1),
                                     "share of each batch's rows that are SFT pairs (loss on the responses)")),
      only(RunKind::Train,
           float_key("data", "pairs_epochs", DSLAB_FIELD(train.pair_text.epochs), closed(0, 1e6),
                     "> 0: train.steps becomes the steps that pass over the pairs this many times")),

      enum_key("fp8", "recipe", DSLAB_FIELD(model.fp8.recipe),
               "FP8 inputs for the blocks' linear layers: none (fp32) or v3 (DeepSeek-V3's recipe)"),
      string_key("fp8", "format", DSLAB_FIELD(model.fp8.format),
                 "format of activations and weights: e4m3, e5m2, eXmY, eXmYfn"),
      string_key("fp8", "grad_format", DSLAB_FIELD(model.fp8.grad_format),
                 "format of activation gradients: e4m3, e5m2, eXmY, eXmYfn"),
      enum_key("fp8", "act_granularity", DSLAB_FIELD(model.fp8.act_granularity),
               "activation scale groups along K: tile 1x128 (V3), row, tensor, block 128x128, mx 1x32",
               {Granularity::Tile1x128, Granularity::PerRow, Granularity::PerTensor}),
      enum_key("fp8", "weight_granularity", DSLAB_FIELD(model.fp8.weight_granularity),
               "weight scale groups: block 128x128 (V3), ...",
               {Granularity::Block128x128, Granularity::Tile1x128, Granularity::PerRow, Granularity::PerTensor}),
      enum_key("fp8", "grad_granularity", DSLAB_FIELD(model.fp8.grad_granularity),
               "activation-gradient scale groups: tile 1x128 (V3), block 128x128 (diverged in V3), ...",
               {Granularity::Tile1x128, Granularity::Block128x128, Granularity::PerRow, Granularity::PerTensor}),
      enum_key("fp8", "scale", DSLAB_FIELD(model.fp8.scale),
               "scales exact in fp32 or rounded up to a power of two (ue8m0)"),
      integer_key("fp8", "accum_bits", DSLAB_FIELD(model.fp8.accum_bits), 0, 40,
                  "0: fp32 sums; > 0: tensor-core accumulator keeping this many bits (slow)"),
      integer_key("fp8", "promote_every", DSLAB_FIELD(model.fp8.promote_every), 0, 65536,
                  "N_C: products between promotions to fp32 with accum_bits > 0; 0 = never"),

      enum_key("rl", "algorithm", DSLAB_FIELD(rl.rl.algorithm),
               "grpo (Eq. (28): group advantages, no value model) or ppo (Eq. (27): a value head, GAE, KL in the reward)",
               {RlAlgorithm::Grpo}),
      enum_key("rl", "value_model", DSLAB_FIELD(rl.rl.value_model),
               "PPO: the value head on the policy's own trunk, or on a critic of the policy's size (DeepSeekMath)",
               {ValueModel::Head}),
      integer_key("rl", "steps", DSLAB_FIELD(rl.rl.steps), 1, kMaxSteps, "RL steps: rollouts, then ppo_epochs of updates"),
      integer_key("rl", "prompts_per_step", DSLAB_FIELD(rl.rl.prompts_per_step), 1, 65536,
                  "P problems per step, each sampled rollout.group_size times"),
      integer_key("rl", "ppo_epochs", DSLAB_FIELD(rl.rl.ppo_epochs), 1, 1024,
                  "mu: passes of policy updates over each rollout batch (Eq. (28)'s pi_old differs after the first)"),
      integer_key("rl", "mini_batches", DSLAB_FIELD(rl.rl.mini_batches), 1, 65536,
                  "optimizer steps per pass, over disjoint sets of groups; divides prompts_per_step"),
      float_key("rl", "lr", DSLAB_FIELD(rl.rl.lr), open_closed(0, 10), "learning rate, constant after warm-up"),
      integer_key("rl", "warmup_steps", DSLAB_FIELD(rl.rl.warmup_steps), 0, kMaxSteps,
                  "steps of linear learning-rate warm-up"),
      float_key("rl", "weight_decay", DSLAB_FIELD(rl.rl.adamw.weight_decay), closed(0, 10),
                "AdamW decoupled weight decay of the matrices (betas and eps as [train]'s defaults)"),
      float_key("rl", "grad_clip", DSLAB_FIELD(rl.rl.grad_clip), closed(0, 1e6),
                "largest global gradient norm; 0 disables clipping"),
      integer_key("rl", "seed", DSLAB_FIELD(rl.rl.seed), 0, INT64_MAX,
                  "seed of the rollouts (and of the initial weights without init)"),
      integer_key("rl", "task_seed", DSLAB_FIELD(rl.rl.task_seed), 0, INT64_MAX,
                  "seed of the problems: problem j is the same in every run with this seed"),
      optional_string_key("rl", "init", DSLAB_FIELD(rl.rl.init),
                          "a dslab train result (FILE.h5, a path from the working directory) whose weights "
                          "start the policy and the reference; \"\": fresh weights"),
      integer_key("rl", "ref_reset_every", DSLAB_FIELD(rl.rl.ref_reset_every), 0, kMaxSteps,
                  "steps between resets of the reference to the policy (DeepSeekMath Alg. 1); 0: fixed"),
      bool_key("rl", "dynamic_sampling", DSLAB_FIELD(rl.rl.dynamic_sampling),
               "DAPO: drop groups whose rewards are all equal and sample more prompts"),
      integer_key("rl", "max_sampling_rounds", DSLAB_FIELD(rl.rl.max_sampling_rounds), 1, 1024,
                  "rounds of prompts_per_step prompts a dynamic-sampling step may draw"),
      integer_key("rl", "sample_every", DSLAB_FIELD(rl.rl.sample_every), 0, kMaxSteps,
                  "steps between kept samples (prompt, completions, rewards); 0: first and last only"),
      integer_key("rl", "checkpoint_every", DSLAB_FIELD(rl.rl.checkpoint_every), 0, kMaxSteps,
                  "steps between checkpoints; 0 disables them"),
      integer_key("rl", "general_prompts", DSLAB_FIELD(rl.rl.general_prompts), 0, 65536,
                  "R1 stage 4: the last this many of each step's prompts are general ([data] text, scored by "
                  "reward.model); 0: tasks only"),
      integer_key("rl", "general_prefix", DSLAB_FIELD(rl.rl.general_prefix), 1, kMaxWidth,
                  "bytes of [data] text in a general prompt"),

      enum_key("grpo", "supervision", DSLAB_FIELD(rl.grpo.supervision),
               "advantages from one reward per completion (outcome) or per reasoning step (process, DeepSeekMath 4.1.3)"),
      enum_key("grpo", "aggregation", DSLAB_FIELD(rl.grpo.aggregation),
               "how token losses make the loss: Eq. (28)'s seq_mean_token_mean, DAPO's token_mean, ... (docs/grpo.md)"),
      enum_key("grpo", "kl_estimator", DSLAB_FIELD(rl.grpo.kl_estimator),
               "KL(pi_theta || pi_ref) per token: k1, k2, k3 (Eq. (28)), k3_ratio (unbiased gradient), exact"),
      enum_key("grpo", "kl_placement", DSLAB_FIELD(rl.grpo.kl_placement),
               "beta KL in the loss (GRPO) or subtracted from the reward (PPO style)"),
      float_key("grpo", "beta", DSLAB_FIELD(rl.grpo.beta), closed(0, 1e6), "KL weight beta; 0: no KL term"),
      float_key("grpo", "clip_eps", DSLAB_FIELD(rl.grpo.clip_eps), open_closed(0, 10), "clip range epsilon of Eq. (28)"),
      float_key("grpo", "clip_eps_low", DSLAB_FIELD(rl.grpo.clip_eps_low), closed(0, 10),
                "lower clip range (DAPO clip-higher: 0.2); 0: clip_eps"),
      float_key("grpo", "clip_eps_high", DSLAB_FIELD(rl.grpo.clip_eps_high), closed(0, 10),
                "upper clip range (DAPO clip-higher: 0.28); 0: clip_eps"),
      float_key("grpo", "clip_c", DSLAB_FIELD(rl.grpo.clip_c), closed(0, 1e6),
                "dual clip c > 1 for negative advantages (verl: 3); 0: off"),
      integer_key("grpo", "max_response_length", DSLAB_FIELD(rl.grpo.max_response_length), 0, kMaxWidth,
                  "L of the Dr. GRPO aggregations; 0: the longest response of the batch"),
      bool_key("grpo", "std_bessel", DSLAB_FIELD(rl.grpo.advantages.std_bessel),
               "group std with Bessel's correction (as torch.std in TRL and verl)"),
      float_key("grpo", "std_eps", DSLAB_FIELD(rl.grpo.advantages.std_eps), closed(0, 1),
                "added to the std of the advantages (TRL 1e-4, verl 1e-6)"),
      bool_key("grpo", "mean_only", DSLAB_FIELD(rl.grpo.advantages.mean_only),
               "advantage r - mean r without the std (Dr. GRPO)"),
      enum_key("grpo", "scope", DSLAB_FIELD(rl.grpo.advantages.scope),
               "std of the advantages over the group or the whole batch"),

      float_key("ppo", "gamma", DSLAB_FIELD(rl.ppo.gamma), closed(0, 1), "PPO: discount of GAE"),
      float_key("ppo", "lam", DSLAB_FIELD(rl.ppo.lam), closed(0, 1), "PPO: GAE lambda"),
      float_key("ppo", "value_clip", DSLAB_FIELD(rl.ppo.value_clip), closed(0, 1e6),
                "PPO: clip range of the value around its old value; 0: no clip"),
      float_key("ppo", "value_coef", DSLAB_FIELD(rl.ppo.value_coef), closed(0, 1e6), "PPO: weight of the value loss"),
      bool_key("ppo", "whiten_advantages", DSLAB_FIELD(rl.ppo.whiten_advantages),
               "PPO: advantages to mean 0 and std 1 over the batch"),

      integer_key("rollout", "group_size", DSLAB_FIELD(rl.rollout.group_size), 1, 65536,
                  "G completions per prompt (a GRPO group)"),
      integer_key("rollout", "max_new_tokens", DSLAB_FIELD(rl.rollout.max_new_tokens), 1, kMaxWidth,
                  "longest completion, in tokens (bytes)"),
      float_key("rollout", "temperature", DSLAB_FIELD(rl.rollout.temperature), closed(0, 100),
                "sampling temperature; the policy's probabilities are softmax(logits / T); 0: greedy"),
      integer_key("rollout", "top_k", DSLAB_FIELD(rl.rollout.top_k), 0, kMaxWidth,
                  "draw among the k most likely tokens; 0: all"),
      float_key("rollout", "top_p", DSLAB_FIELD(rl.rollout.top_p), open_closed(0, 1),
                "nucleus: the smallest set of tokens with probability >= top_p; 1: all"),
      string_list_key("rollout", "stop", DSLAB_FIELD(rl.rollout.stop),
                      "a completion ends with any of these texts, included; []: only max_new_tokens ends it"),

      enum_key("task", "kind", DSLAB_FIELD(task.kind), "countdown (reach a target with + - * /) or addition"),
      integer_key("task", "n_numbers", DSLAB_FIELD(task.n_numbers), 2, 6, "countdown: numbers given"),
      integer_key("task", "min_number", DSLAB_FIELD(task.min_number), 1, 999, "countdown: smallest number"),
      integer_key("task", "max_number", DSLAB_FIELD(task.max_number), 1, 999, "countdown: largest number"),
      integer_key("task", "min_target", DSLAB_FIELD(task.min_target), 0, 1000000, "countdown: smallest target"),
      integer_key("task", "max_target", DSLAB_FIELD(task.max_target), 0, 1000000, "countdown: largest target"),
      enum_key("task", "use", DSLAB_FIELD(task.use),
               "countdown: every number exactly once (TinyZero) or at most once"),
      integer_key("task", "min_digits", DSLAB_FIELD(task.min_digits), 1, 12, "addition: fewest digits of an addend"),
      integer_key("task", "max_digits", DSLAB_FIELD(task.max_digits), 1, 12, "addition: most digits of an addend"),

      float_key("reward", "accuracy", DSLAB_FIELD(rl.reward.accuracy), closed(0, 1e6),
                "weight of the accuracy reward (R1-Zero): the verifier on <answer>"),
      float_key("reward", "format", DSLAB_FIELD(rl.reward.format), closed(0, 1e6),
                "weight of the format reward (R1-Zero): <think>...</think><answer>...</answer>"),
      float_key("reward", "language", DSLAB_FIELD(rl.reward.language), closed(0, 1e6),
                "weight of R1's language-consistency reward: share of [data] vocabulary words in <think>"),
      float_key("reward", "overlong", DSLAB_FIELD(rl.reward.overlong), closed(0, 1e6),
                "weight of DAPO's soft overlong punishment"),
      float_key("reward", "length", DSLAB_FIELD(rl.reward.length), closed(0, 1e6),
                "weight of Kimi k1.5's group length reward"),
      integer_key("reward", "max_length", DSLAB_FIELD(rl.reward.max_length), 1, kMaxWidth,
                  "DAPO's L_max, bytes"),
      integer_key("reward", "cache_length", DSLAB_FIELD(rl.reward.cache_length), 0, kMaxWidth,
                  "DAPO's L_cache, bytes; at most max_length"),
      optional_string_key("reward", "model", DSLAB_FIELD(rl.reward.model),
                          "R1 stage 4: a dslab reward result scoring the general prompts (rl.general_prompts); "
                          "\"\": none"),
      float_key("reward", "preference", DSLAB_FIELD(rl.reward.preference), closed(0, 1e6),
                "weight of the reward model's score on a general prompt"),

      optional_string_key("eval", "init", DSLAB_FIELD(eval.init),
                          "the result (FILE.h5) whose weights are evaluated; \"\": fresh weights of eval.seed"),
      integer_key("eval", "problems", DSLAB_FIELD(eval.problems), 1, 1 << 20,
                  "M problems: make_problem(task, eval.task_seed, 0 .. M-1)"),
      integer_key("eval", "samples", DSLAB_FIELD(eval.samples), 1, 4096,
                  "n samples per problem; pass@k and maj@k for k = 1, 2, 4, ..., n"),
      integer_key("eval", "seed", DSLAB_FIELD(eval.seed), 0, INT64_MAX, "seed of the sampling streams"),
      integer_key("eval", "task_seed", DSLAB_FIELD(eval.task_seed), 0, INT64_MAX,
                  "the problem stream; rl.task_seed's is the RL prompts' (held out: another seed)"),
      integer_key("eval", "batch", DSLAB_FIELD(eval.batch), 1, 4096,
                  "problems sampled together (memory and speed; the numbers do not depend on it)"),
      float_key("eval", "keep_language", DSLAB_FIELD(eval.keep_language), closed(0, 1),
                "rejection sampling: a kept response needs language consistency >= this"),
      integer_key("eval", "keep_per_problem", DSLAB_FIELD(eval.keep_per_problem), 0, 4096,
                  "rejection sampling: at most this many distinct correct responses per problem; 0: all"),
      integer_key("eval", "val_batches", DSLAB_FIELD(eval.val_batches), 0, 65536,
                  "val_loss on the [data] text: dslab train's, batches of 16 windows of max_seq_len; 0: none"),

      integer_key("rm", "steps", DSLAB_FIELD(rm.steps), 1, kMaxSteps, "reward-model training steps"),
      integer_key("rm", "pairs_per_step", DSLAB_FIELD(rm.pairs_per_step), 1, 65536,
                  "P preference pairs per step (2P sequences in one batch)"),
      integer_key("rm", "prefix_bytes", DSLAB_FIELD(rm.prefix_bytes), 1, kMaxWidth,
                  "the prompt of each pair: bytes of [data] text"),
      integer_key("rm", "response_bytes", DSLAB_FIELD(rm.response_bytes), 2, kMaxWidth,
                  "the continuation scored after the prompt: the text's own (chosen) or corrupted (rejected)"),
      enum_key("rm", "corruption", DSLAB_FIELD(rm.corruption),
               "how a rejected continuation is made: shuffle_words, noise (bytes replaced), splice (another "
               "window's), mixed (one of the three per pair)"),
      float_key("rm", "noise_rate", DSLAB_FIELD(rm.noise_rate), open_closed(0, 1),
                "corruption noise: the share of the continuation's bytes replaced"),
      float_key("rm", "lr", DSLAB_FIELD(rm.lr), open_closed(0, 10), "learning rate, constant after warm-up"),
      integer_key("rm", "warmup_steps", DSLAB_FIELD(rm.warmup_steps), 0, kMaxSteps,
                  "linear learning-rate warm-up steps; at most rm.steps"),
      float_key("rm", "weight_decay", DSLAB_FIELD(rm.adamw.weight_decay), closed(0, 10),
                "AdamW decoupled weight decay of the matrices"),
      float_key("rm", "grad_clip", DSLAB_FIELD(rm.grad_clip), closed(0, 1e6),
                "max global gradient norm (trunk and head together); 0 disables"),
      integer_key("rm", "seed", DSLAB_FIELD(rm.seed), 0, INT64_MAX,
                  "the training pairs; the trunk's weights when rm.init is empty"),
      optional_string_key("rm", "init", DSLAB_FIELD(rm.init),
                          "a result (FILE.h5) whose model weights start the trunk; \"\": fresh weights of rm.seed"),
      integer_key("rm", "eval_every", DSLAB_FIELD(rm.eval_every), 0, kMaxSteps,
                  "steps between evaluations on held-out pairs (and at the last step); 0: the last only"),
      integer_key("rm", "eval_pairs", DSLAB_FIELD(rm.eval_pairs), 1, 1 << 20,
                  "held-out pairs from the [data] validation split"),
      integer_key("rm", "checkpoint_every", DSLAB_FIELD(rm.checkpoint_every), 0, kMaxSteps,
                  "steps between checkpoints; 0: only on Ctrl-C"),
  };
  return keys;
}

const std::vector<std::string>& table_names(RunKind kind) {
  static const std::vector<std::string> train = {"model", "balance", "mtp", "train", "data", "fp8", "task"};
  static const std::vector<std::string> rl = {"model", "balance", "mtp", "data", "fp8",
                                              "rl", "grpo", "ppo", "rollout", "task", "reward"};
  static const std::vector<std::string> eval = {"model", "balance", "mtp", "data", "fp8", "rl",
                                                "grpo", "ppo", "rollout", "task", "reward", "eval"};
  static const std::vector<std::string> reward = {"model", "balance", "mtp", "data", "fp8", "rm"};
  return kind == RunKind::Train ? train : kind == RunKind::Rl ? rl : kind == RunKind::Reward ? reward : eval;
}

const KeySpec* find_key(const std::string& path, RunKind kind) {
  for (const KeySpec& k : schema())
    if (k.path() == path) return holds_key(k, kind) ? &k : nullptr;
  return nullptr;
}

bool holds_key(const KeySpec& key, RunKind kind) {
  return is_table(key.table, kind) && (!key.only || *key.only == kind);
}

bool is_table(const std::string& name, RunKind kind) {
  const auto& tables = table_names(kind);
  return std::find(tables.begin(), tables.end(), name) != tables.end();
}

std::vector<std::string> keys_of(const std::string& table, RunKind kind) {
  std::vector<std::string> names;
  for (const KeySpec& k : schema())
    if (k.table == table && holds_key(k, kind)) names.push_back(k.name);
  return names;
}

Value read_value(const KeySpec& key, RunConfig& cfg) {
  return std::visit(
      [&](const auto& field) -> Value {
        if constexpr (std::is_same_v<std::decay_t<decltype(field)>, EnumField>) {
          return field.get(cfg);
        } else {
          const auto& v = field(cfg);
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
            return int64_t(v);  // uint64_t seeds: the schema keeps them <= INT64_MAX
          else
            return Value(std::in_place_type<T>, v);
        }
      },
      key.field);
}

void write_value(const KeySpec& key, RunConfig& cfg, const Value& value) {
  std::visit(
      [&](const auto& field) {
        if constexpr (std::is_same_v<std::decay_t<decltype(field)>, EnumField>) {
          field.set(cfg, std::get<std::string>(value));
        } else {
          auto& v = field(cfg);
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
            v = T(std::get<int64_t>(value));
          else
            v = std::get<T>(value);
        }
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

std::string shortest(double x) { return value_text(x); }  // as the reference's messages show values

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
    std::string operator()(const std::vector<std::string>& x) const {
      std::vector<std::string> items;
      for (const std::string& s : x) items.push_back(toml_string(s));
      return "[" + join(items, ", ") + "]";
    }
  } format;
  return std::visit(format, v);
}

const char* type_name(KeyType t) {
  switch (t) {
    case KeyType::Integer: return "integer";
    case KeyType::Float: return "float";
    case KeyType::String: return "string";
    case KeyType::Bool: return "bool";
    case KeyType::StringList: return "strings";
  }
  return "";
}

const char* type_with_article(KeyType t) {
  switch (t) {
    case KeyType::Integer: return "an integer";
    case KeyType::Float: return "a float";
    case KeyType::String: return "a string";
    case KeyType::Bool: return "a boolean";
    case KeyType::StringList: return "a list of strings (or one string)";
  }
  return "";
}

std::string allowed(const KeySpec& k) {
  switch (k.type) {
    case KeyType::Integer: return std::to_string(k.int_min) + " .. " + std::to_string(k.int_max);
    case KeyType::Float: {
      std::string text = k.interval.lo_open ? "(" : "[";  // appended, not "(" + ...: g++ 12's -Wrestrict
      text += shortest(k.interval.lo);
      text += ", ";
      text += shortest(k.interval.hi);
      return text + (k.interval.hi_open ? ")" : "]");
    }
    case KeyType::String:
      if (!k.choices.empty()) return "one of " + join(k.choices, ", ");
      return k.allow_empty ? "any string" : "any non-empty string";
    case KeyType::Bool: return "true or false";
    case KeyType::StringList: return "a list of non-empty strings, e.g. [\"</answer>\", \"\\n\\n\"]";
  }
  return "";
}

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
                          ? !s.empty() || key.allow_empty
                          : std::find(key.choices.begin(), key.choices.end(), s) != key.choices.end();
      if (!ok) return shown + " is not allowed: expected " + allowed(key);
      break;
    }
    case KeyType::Bool: break;
    case KeyType::StringList:
      for (const std::string& s : std::get<std::vector<std::string>>(v))
        if (s.empty()) return shown + " is not allowed: expected " + allowed(key);
      break;
  }
  return std::nullopt;
}

std::string to_toml_text(const RunConfig& cfg) {
  RunConfig c = cfg;  // the field accessors take a mutable config
  std::string out, table;
  for (const KeySpec& k : schema()) {
    if (!holds_key(k, cfg.kind)) continue;
    if (k.table != table) {
      out += (out.empty() ? "[" : "\n[") + k.table + "]\n";
      table = k.table;
    }
    out += k.name + " = " + format_value(read_value(k, c)) + "\n";
  }
  return out;
}

}  // namespace config

std::vector<std::string> describe_config_keys(RunKind kind) {
  using namespace config;
  RunConfig defaults;
  std::vector<std::array<std::string, 5>> rows;
  for (const KeySpec& k : schema())
    if (holds_key(k, kind))
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

}  // namespace dslab
