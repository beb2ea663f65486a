"""PyTorch oracle for the reference transformer (reference/transformer.hpp).

usage: /usr/bin/python3 torch_oracle.py IN.h5 OUT.h5

The same model, written independently from PyTorch primitives in float64 and
differentiated by autograd. Layers follow DeepSeek-V3's inference/model.py:
RMSNorm, RoPE on adjacent feature pairs through complex numbers, causal
softmax attention (GQA by repeating each kv head for its query heads),
SwiGLU w2(silu(w1 x) * w3 x), mean cross-entropy.

IN.h5 holds groups
  transformer/<case>: model args and batch, seq_len as attributes; every
      parameter under its name (e.g. "layers.0.attn.wq.weight"); tokens, targets.
  attention/<case>: batch, seq_len, n_heads, n_kv_heads, head_dim, v_head_dim,
      softmax_scale as attributes; q, k, v [N, heads * dim] and r, the weights
      of the loss sum(out * r).
OUT.h5 gets, under the same group names,
  transformer/<case>: loss, logits [N, vocab], grads/<parameter name>.
  attention/<case>: out, grads/q, grads/k, grads/v.
"""
import sys

try:
    import h5py
    import torch
    import torch.nn.functional as F
except ImportError as error:
    sys.exit(f"{sys.argv[0]}: {error}. /usr/bin/python3 needs torch and h5py: "
             "run scripts/test, which installs them.")

from oracle_io import DTYPE, check_all_used, leaves, run_cases, run_oracle, write_model_answers


def rms_norm(x, weight, eps):
    """x / sqrt(mean(x^2) + eps) * weight, over the last dimension."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def precompute_freqs_cis(head_dim, seq_len, theta):
    """exp(i * t * theta^(-2j/head_dim)) for positions t and pairs j: [seq_len, head_dim/2]."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=DTYPE) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=DTYPE), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary_emb(x, freqs_cis):
    """Rotates the pairs (x[2j], x[2j+1]) of x [B, T, H, d] as complex numbers."""
    pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
    rotated = pairs * freqs_cis.view(1, x.size(1), 1, pairs.size(-1))
    return torch.view_as_real(rotated).flatten(3)


def causal_attention(q, k, v, scale):
    """q [B, T, H, d], k [B, T, KV, d], v [B, T, KV, dv] -> [B, T, H, dv]."""
    groups = q.size(2) // k.size(2)
    k = k.repeat_interleave(groups, dim=2)  # query head h reads kv head h // groups
    v = v.repeat_interleave(groups, dim=2)
    seq_len = q.size(1)
    scores = torch.einsum("bthd,bshd->bhts", q, k) * scale
    mask = torch.full((seq_len, seq_len), float("-inf"), dtype=DTYPE).triu(1)
    probs = (scores + mask).softmax(dim=-1)
    return torch.einsum("bhts,bshd->bthd", probs, v)


def attention(x, w, args):
    """MHA/GQA/MQA with RoPE; x [B, T, dim], w(name) the weight of wq, wk, wv or wo."""
    batch, seq_len, _ = x.shape
    n_heads, n_kv_heads = args["n_heads"], args["n_kv_heads"]
    head_dim = args["dim"] // n_heads
    freqs_cis = precompute_freqs_cis(head_dim, seq_len, args["rope_theta"])
    q = F.linear(x, w("wq")).view(batch, seq_len, n_heads, head_dim)
    k = F.linear(x, w("wk")).view(batch, seq_len, n_kv_heads, head_dim)
    v = F.linear(x, w("wv")).view(batch, seq_len, n_kv_heads, head_dim)
    q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
    return F.linear(causal_attention(q, k, v, head_dim ** -0.5).flatten(2), w("wo"))


def transformer_loss(p, args, tokens, targets):
    """Mean cross-entropy and logits [B*T, vocab] of the pre-norm decoder."""
    batch, seq_len = tokens.shape
    eps = args["norm_eps"]
    x = F.embedding(tokens, p["embed.weight"])
    for layer in range(args["n_layers"]):
        w = lambda name: p[f"layers.{layer}.{name}.weight"]
        x = x + attention(rms_norm(x, w("attn_norm"), eps), lambda name: w("attn." + name), args)
        h = rms_norm(x, w("ffn_norm"), eps)
        x = x + F.linear(F.silu(F.linear(h, w("ffn.w1"))) * F.linear(h, w("ffn.w3")), w("ffn.w2"))
    logits = F.linear(rms_norm(x, p["norm.weight"], eps), p["head.weight"])
    logits = logits.view(batch * seq_len, -1)
    return F.cross_entropy(logits, targets.view(-1)), logits


def run_transformer(group, out):
    args = {name: value.item() for name, value in group.attrs.items()}
    tokens = torch.from_numpy(group["tokens"][...]).long().view(args["batch"], args["seq_len"])
    targets = torch.from_numpy(group["targets"][...]).long().view(args["batch"], args["seq_len"])
    params = leaves(group, ("tokens", "targets"))
    loss, logits = transformer_loss(params, args, tokens, targets)
    loss.backward()
    check_all_used(group, params)
    write_model_answers(out, loss, logits, params)


def run_attention(group, out):
    a = {name: value.item() for name, value in group.attrs.items()}
    shape = lambda heads, dim: (a["batch"], a["seq_len"], heads, dim)
    q = torch.tensor(group["q"][...], dtype=DTYPE).view(shape(a["n_heads"], a["head_dim"]))
    k = torch.tensor(group["k"][...], dtype=DTYPE).view(shape(a["n_kv_heads"], a["head_dim"]))
    v = torch.tensor(group["v"][...], dtype=DTYPE).view(shape(a["n_kv_heads"], a["v_head_dim"]))
    r = torch.tensor(group["r"][...], dtype=DTYPE)
    for t in (q, k, v):
        t.requires_grad_()
    o = causal_attention(q, k, v, a["softmax_scale"]).flatten(2).view(r.shape)
    (o * r).sum().backward()
    out["out"] = o.detach().numpy()
    for name, t in (("q", q), ("k", k), ("v", v)):
        out[f"grads/{name}"] = t.grad.flatten(2).view(group[name].shape).numpy()


if __name__ == "__main__":
    run_oracle(lambda fin, fout: run_cases(fin, fout, {"transformer": run_transformer, "attention": run_attention}))
