"""PyTorch oracle for Multi-head Latent Attention (reference/mla.hpp).

usage: /usr/bin/python3 mla_oracle.py IN.h5 OUT.h5

MLA written from torch primitives in float64, following the "naive" path of
DeepSeek-V3's inference/model.py (class MLA), and differentiated by autograd:
  q = wq_b(q_norm(wq_a(x)))  or  wq(x)            -> heads [q_nope; q_pe]
  kv, k_pe = split(wkv_a(x), [kv_lora_rank, qk_rope_head_dim])
  k_nope, v = split(wkv_b(kv_norm(kv)), [qk_nope_head_dim, v_head_dim]) per head
  q = [q_nope; q_pe], k = [k_nope; k_pe shared by all heads]
  softmax_scale = (qk_nope + qk_rope)^-0.5, times (0.1 mscale ln(rope_factor) + 1)^2
  when max_seq_len > original_seq_len (YaRN);  out = wo(causal attention)
with RoPE on q_pe and k_pe (rope = "decoupled"), nowhere ("none"), or on the
whole query and key heads after the concatenation ("full"), its frequencies
YaRN-corrected under the same condition (yarn_oracle.py, from model.py's
precompute_freqs_cis; over the rotated width).

IN.h5 holds groups
  mla/<case>: attributes dim, n_heads, q_lora_rank, kv_lora_rank, qk_nope_head_dim,
      qk_rope_head_dim, v_head_dim, rope (string), norm_eps, rope_theta, rope_factor,
      mscale, batch, seq_len, and optionally max_seq_len, original_seq_len,
      beta_fast, beta_slow (without max_seq_len YaRN is off); datasets
      x [N, dim], r [N, dim] (the loss is sum(out * r)) and the weights by
      their model.py names (wq_a, q_norm, ...).
  model/<case>: the reference transformer with MLA attention: the same
      attributes plus vocab_size, n_layers, inter_dim; every parameter under its
      name ("layers.0.attn.wkv_a.weight", ...); tokens, targets.
OUT.h5 gets, under the same group names,
  mla/<case>: out, grads/x, grads/<weight name>.
  model/<case>: loss, logits, grads/<parameter name>.
"""
import sys

try:
    import h5py
    import torch
    import torch.nn.functional as F
except ImportError as error:
    sys.exit(f"{sys.argv[0]}: {error}. /usr/bin/python3 needs torch and h5py: "
             "run scripts/test, which installs them.")

from oracle_io import DTYPE, attributes, check_all_used, leaves, run_cases, run_oracle, write_model_answers
from torch_oracle import apply_rotary_emb, causal_attention, rms_norm
from yarn_oracle import freqs_cis as precompute_freqs_cis, softmax_scale


def mla(x, w, a):
    """x [B, T, dim] -> [B, T, dim]; w(name) returns the weight called name."""
    batch, seq_len, _ = x.shape
    n_heads, rank = a["n_heads"], a["kv_lora_rank"]
    nope, rope, v_dim = a["qk_nope_head_dim"], a["qk_rope_head_dim"], a["v_head_dim"]
    eps = a["norm_eps"]
    if a["q_lora_rank"] == 0:
        q = F.linear(x, w("wq"))
    else:
        q = F.linear(rms_norm(F.linear(x, w("wq_a")), w("q_norm"), eps), w("wq_b"))
    q = q.view(batch, seq_len, n_heads, nope + rope)
    q_nope, q_pe = torch.split(q, [nope, rope], dim=-1)
    kv, k_pe = torch.split(F.linear(x, w("wkv_a")), [rank, rope], dim=-1)
    k_pe = k_pe.unsqueeze(2)
    if a["rope"] == "decoupled":
        freqs_cis = precompute_freqs_cis(rope, seq_len, a, DTYPE)
        q_pe, k_pe = apply_rotary_emb(q_pe, freqs_cis), apply_rotary_emb(k_pe, freqs_cis)
    kv = F.linear(rms_norm(kv, w("kv_norm"), eps), w("wkv_b"))
    k_nope, v = torch.split(kv.view(batch, seq_len, n_heads, nope + v_dim), [nope, v_dim], dim=-1)
    q = torch.cat([q_nope, q_pe], dim=-1)
    k = torch.cat([k_nope, k_pe.expand(-1, -1, n_heads, -1)], dim=-1)
    if a["rope"] == "full":
        freqs_cis = precompute_freqs_cis(nope + rope, seq_len, a, DTYPE)
        q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
    o = causal_attention(q, k, v, softmax_scale(a))
    return F.linear(o.flatten(2), w("wo"))


def run_layer(group, out):
    a = attributes(group)
    params = leaves(group, ("r",))
    x = params["x"]
    r = torch.tensor(group["r"][...], dtype=DTYPE)
    y = mla(x.view(a["batch"], a["seq_len"], -1), lambda name: params[name], a).view(r.shape)
    (y * r).sum().backward()
    check_all_used(group, params)
    out["out"] = y.detach().numpy()
    for name, p in params.items():
        out[f"grads/{name}"] = p.grad.numpy()


def run_model(group, out):
    a = attributes(group)
    batch, seq_len = a["batch"], a["seq_len"]
    tokens = torch.from_numpy(group["tokens"][...]).long().view(batch, seq_len)
    targets = torch.from_numpy(group["targets"][...]).long().view(-1)
    p = leaves(group, ("tokens", "targets"))
    eps = a["norm_eps"]
    x = F.embedding(tokens, p["embed.weight"])
    for layer in range(a["n_layers"]):
        w = lambda name: p[f"layers.{layer}.{name}.weight"]
        x = x + mla(rms_norm(x, w("attn_norm"), eps), lambda name: w("attn." + name), a)
        h = rms_norm(x, w("ffn_norm"), eps)
        x = x + F.linear(F.silu(F.linear(h, w("ffn.w1"))) * F.linear(h, w("ffn.w3")), w("ffn.w2"))
    logits = F.linear(rms_norm(x, p["norm.weight"], eps), p["head.weight"]).view(batch * seq_len, -1)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    check_all_used(group, p)
    write_model_answers(out, loss, logits, p)


if __name__ == "__main__":
    run_oracle(lambda fin, fout: run_cases(fin, fout, {"mla": run_layer, "model": run_model}))
