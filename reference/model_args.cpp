#include "reference/model_args.hpp"

#include <cmath>
#include <string>

namespace dslab {

MlaArgs ModelArgs::mla_args() const {
  MlaArgs m = mla;
  m.dim = dim;
  m.n_heads = n_heads;
  m.norm_eps = norm_eps;
  m.max_seq_len = max_seq_len;
  return m;
}

MoeArgs ModelArgs::moe_args() const {
  MoeArgs m = moe;
  m.dim = dim;
  return m;
}

void ModelArgs::validate() const {
  const auto v = [](auto x) { return value_text(x); };
  const auto positive = [&](auto x, const char* key) {
    require(x > 0 && std::isfinite(double(x)), {key}, std::string(key) + " = " + v(x) + " must be > 0");
  };
  positive(vocab_size, "model.vocab_size");
  positive(dim, "model.dim");
  positive(n_layers, "model.n_layers");
  positive(n_heads, "model.n_heads");
  positive(n_kv_heads, "model.n_kv_heads");
  positive(inter_dim, "model.inter_dim");
  positive(max_seq_len, "model.max_seq_len");
  positive(rope_theta, "model.rope_theta");
  positive(norm_eps, "model.norm_eps");
  positive(init_std, "model.init_std");
  require(n_dense_layers >= 0, {"model.n_dense_layers"},
          "model.n_dense_layers = " + v(n_dense_layers) + " must be >= 0");

  if (attn == AttnKind::Mla) {
    mla_args().validate();
  } else {
    require(dim % n_heads == 0, {"model.dim", "model.n_heads"},
            "model.dim = " + v(dim) + " must be a multiple of model.n_heads = " + v(n_heads) +
                " (head_dim = dim / n_heads)");
    require(n_heads % n_kv_heads == 0, {"model.n_heads", "model.n_kv_heads"},
            "model.n_heads = " + v(n_heads) + " must be a multiple of model.n_kv_heads = " + v(n_kv_heads) +
                " (each key/value head serves an equal group of query heads)");
    require(head_dim() % 2 == 0, {"model.dim", "model.n_heads"},
            "head_dim = model.dim / model.n_heads = " + v(dim) + " / " + v(n_heads) + " = " + v(head_dim()) +
                " must be even (RoPE rotates pairs of dimensions)");
  }

  const int E = moe.n_routed_experts;
  if (E == 0) {
    require(!balance.has_loss() && !has_expert_bias(),
            {"model.n_routed_experts", "balance.aux_alpha", "balance.seq_aux_alpha", "balance.device_alpha",
             "balance.comm_alpha", "balance.bias_update"},
            "load balancing needs MoE layers: set model.n_routed_experts > 0, or leave every balance.*_alpha at 0 "
            "and balance.bias_update = \"" + std::string(name_of(BiasUpdate::None)) + "\"");
  } else {
    dslab::validate(moe_args());
    require(n_dense_layers < n_layers, {"model.n_dense_layers", "model.n_layers"},
            "model.n_dense_layers = " + v(n_dense_layers) + " leaves no MoE layer among model.n_layers = " +
                v(n_layers) + "; it must be < n_layers (or set model.n_routed_experts = 0)");
    require(balance.n_devices <= E, {"balance.n_devices", "model.n_routed_experts"},
            "balance.n_devices = " + v(balance.n_devices) + " must be <= model.n_routed_experts = " + v(E));
    balance.validate();
  }
  mtp.validate();
  fp8.validate();
}

}  // namespace dslab
