"""PyTorch oracle for Multi-Token Prediction (reference/mtp.hpp, Sec. 2.3).

usage: /usr/bin/python3 mtp_oracle.py IN.h5 OUT.h5

The reference transformer with D MTP modules, written from torch primitives in
float64 and differentiated by autograd. Module k (DeepSeek-V3's names):
  h'  = eh_proj(cat[enorm(embed(t_{i+k})), hnorm(h^{k-1}_i)])   for i < T-k
  h^k = block_k(h')                                               (causal, its own RoPE positions)
  L^k = sum_i CE(head(norm_k(h^k_i)), t_{i+k+1}) / (B*T)          Eq. (25)
  loss = CE_main + lambda/D sum_k L^k                             Eq. (26)
with h^0 the output of the main model's last block. Blocks reuse
torch_oracle.py (MHA/GQA/MQA) and mla_oracle.py (MLA).

IN.h5 holds groups model/<case>: attributes attn, rope (strings), the model
and MLA sizes, depth, lambda, batch, seq_len; every parameter under its name
("mtp.1.eh_proj.weight", ...); tokens, targets [B*T].
OUT.h5 gets model/<case>: loss, mtp_losses [D], logits (main head), grads/<name>.
"""
import sys

try:
    import h5py
    import torch
    import torch.nn.functional as F
except ImportError as error:
    sys.exit(f"{sys.argv[0]}: {error}. /usr/bin/python3 needs torch and h5py: "
             "run scripts/test, which installs them.")

from mla_oracle import mla
from oracle_io import attributes, check_all_used, leaves, run_cases, run_oracle, write_model_answers
from torch_oracle import attention as mha_attention, rms_norm


def attention(x, w, a):
    """MLA, or MHA/GQA/MQA as torch_oracle; x [B, T, dim]."""
    return mla(x, w, a) if a["attn"] == "mla" else mha_attention(x, w, a)


def block(x, p, prefix, a):
    """One pre-norm block whose weights are named prefix + "attn_norm.weight", ..."""
    w = lambda name: p[f"{prefix}{name}.weight"]
    eps = a["norm_eps"]
    x = x + attention(rms_norm(x, w("attn_norm"), eps), lambda name: w("attn." + name), a)
    h = rms_norm(x, w("ffn_norm"), eps)
    return x + F.linear(F.silu(F.linear(h, w("ffn.w1"))) * F.linear(h, w("ffn.w3")), w("ffn.w2"))


def run_model(group, out):
    a = attributes(group)
    batch, seq_len, depth, eps = a["batch"], a["seq_len"], a["depth"], a["norm_eps"]
    tokens = torch.from_numpy(group["tokens"][...]).long().view(batch, seq_len)
    targets = torch.from_numpy(group["targets"][...]).long().view(batch, seq_len)
    p = leaves(group, ("tokens", "targets"))
    head = lambda h, norm: F.linear(rms_norm(h, norm, eps), p["head.weight"])
    h = F.embedding(tokens, p["embed.weight"])
    for layer in range(a["n_layers"]):
        h = block(h, p, f"layers.{layer}.", a)
    logits = head(h, p["norm.weight"]).reshape(batch * seq_len, -1)
    loss = F.cross_entropy(logits, targets.reshape(-1))
    mtp_losses = []
    for k in range(1, depth + 1):
        m = lambda name: p[f"mtp.{k}.{name}.weight"]
        positions = seq_len - k
        e = rms_norm(F.embedding(tokens[:, k:], p["embed.weight"]), m("enorm"), eps)
        h = F.linear(torch.cat([e, rms_norm(h[:, :positions], m("hnorm"), eps)], -1), m("eh_proj"))
        h = block(h, p, f"mtp.{k}.", a)
        z = head(h, m("norm")).reshape(batch * positions, -1)
        ce = F.cross_entropy(z, targets[:, k:].reshape(-1), reduction="sum") / (batch * seq_len)
        mtp_losses.append(ce)
    total = loss + a["lambda"] / depth * sum(mtp_losses)
    total.backward()
    check_all_used(group, p)
    write_model_answers(out, total, logits, p)
    out["mtp_losses"] = torch.stack(mtp_losses).detach().numpy()


if __name__ == "__main__":
    run_oracle(lambda fin, fout: run_cases(fin, fout, {"model": run_model}))
