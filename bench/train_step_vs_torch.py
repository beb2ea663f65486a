#!/usr/bin/python3
"""One training step of the same transformer in dslab and in PyTorch on CPU.

Both sides: pre-norm decoder, RMSNorm (eps 1e-6, no biases), RoPE on adjacent
pairs, causal multi-head attention, SwiGLU FFN w2(silu(w1 x) * w3 x), untied
embedding and head, byte vocabulary, cross-entropy; a step is zero grads,
forward, backward, global-norm clip 1.0, AdamW (betas 0.9/0.95, eps 1e-8,
weight decay 0.1 on matrices). float32, the same number of threads.

Each side runs in its own process (so peak RSS is its own): dslab's
bench_train_step with OMP_NUM_THREADS=threads OPENBLAS_NUM_THREADS=1 (dslab
threads over fixed tiles itself), and this script's --torch-worker with
torch.set_num_threads(threads), OMP_NUM_THREADS=threads and
OPENBLAS_NUM_THREADS=threads (PyTorch's sgemm goes through OpenBLAS, which
threads itself). Each side also runs under every --omp-wait-policy given
("default" leaves OMP_WAIT_POLICY unset). The runs alternate for --rounds
rounds; each reports the median step time (wall clock and process CPU time)
over --steps timed steps after --warmup untimed ones, and the table shows the
median over rounds.

    /usr/bin/python3 bench/train_step_vs_torch.py --build-dir build --omp-wait-policy default passive

The PyTorch side is written as a user would: nn.Linear without bias, matmul
attention with a causal mask (torch 1.13 has no scaled_dot_product_attention),
complex-number RoPE as in DeepSeek's inference/model.py, torch.optim.AdamW,
no torch.compile.
"""
import argparse
import json
import os
import statistics
import sys
import time

from side_by_side import cpu_model, run_google_benchmark, run_torch_worker, thread_env, vm_kib

MODEL_KEYS = ("dim", "n_layers", "n_heads", "inter_dim", "vocab_size", "seq_len", "batch")


# --------------------------------------------------------------------------
# The PyTorch model and step (runs in the worker process only).

def torch_worker(a):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    rss_after_import = vm_kib("VmRSS") / 1024

    class RMSNorm(nn.Module):
        def __init__(self, dim, eps=1e-6):
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    def precompute_freqs_cis(head_dim, seq_len, theta=10000.0):
        freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        t = torch.arange(seq_len, dtype=torch.float32)
        return torch.polar(torch.ones(seq_len, head_dim // 2), torch.outer(t, freqs))

    def apply_rotary_emb(x, freqs_cis):  # x [B, T, H, d]: rotate adjacent pairs
        xc = torch.view_as_complex(x.float().view(*x.shape[:-1], -1, 2))
        xc = xc * freqs_cis.view(1, xc.size(1), 1, xc.size(-1))
        return torch.view_as_real(xc).flatten(3)

    class Attention(nn.Module):
        def __init__(self, dim, n_heads):
            super().__init__()
            self.n_heads, self.head_dim = n_heads, dim // n_heads
            self.wq = nn.Linear(dim, dim, bias=False)
            self.wk = nn.Linear(dim, dim, bias=False)
            self.wv = nn.Linear(dim, dim, bias=False)
            self.wo = nn.Linear(dim, dim, bias=False)

        def forward(self, x, freqs_cis, mask):
            B, T, _ = x.shape
            q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
            k = self.wk(x).view(B, T, self.n_heads, self.head_dim)
            v = self.wv(x).view(B, T, self.n_heads, self.head_dim)
            q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, d]
            scores = q @ k.transpose(-2, -1) * self.head_dim ** -0.5 + mask
            out = F.softmax(scores, dim=-1) @ v
            return self.wo(out.transpose(1, 2).reshape(B, T, -1))

    class FeedForward(nn.Module):
        def __init__(self, dim, inter_dim):
            super().__init__()
            self.w1 = nn.Linear(dim, inter_dim, bias=False)
            self.w2 = nn.Linear(inter_dim, dim, bias=False)
            self.w3 = nn.Linear(dim, inter_dim, bias=False)

        def forward(self, x):
            return self.w2(F.silu(self.w1(x)) * self.w3(x))

    class Block(nn.Module):
        def __init__(self, dim, n_heads, inter_dim):
            super().__init__()
            self.attn_norm, self.attn = RMSNorm(dim), Attention(dim, n_heads)
            self.ffn_norm, self.ffn = RMSNorm(dim), FeedForward(dim, inter_dim)

        def forward(self, x, freqs_cis, mask):
            x = x + self.attn(self.attn_norm(x), freqs_cis, mask)
            return x + self.ffn(self.ffn_norm(x))

    class Transformer(nn.Module):
        def __init__(self, a):
            super().__init__()
            self.embed = nn.Embedding(a.vocab_size, a.dim)
            self.layers = nn.ModuleList(Block(a.dim, a.n_heads, a.inter_dim) for _ in range(a.n_layers))
            self.norm = RMSNorm(a.dim)
            self.head = nn.Linear(a.dim, a.vocab_size, bias=False)
            self.register_buffer("freqs_cis", precompute_freqs_cis(a.dim // a.n_heads, a.seq_len))
            mask = torch.full((a.seq_len, a.seq_len), float("-inf")).triu_(1)
            self.register_buffer("mask", mask)
            for name, p in self.named_parameters():
                if p.dim() == 2:  # output projections scaled as in dslab's init
                    std = 0.02 / (2 * a.n_layers) ** 0.5 if name.endswith(("wo.weight", "w2.weight")) else 0.02
                    nn.init.normal_(p, std=std)

        def forward(self, tokens, targets):
            x = self.embed(tokens)
            for layer in self.layers:
                x = layer(x, self.freqs_cis, self.mask)
            logits = self.head(self.norm(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    torch.manual_seed(1)
    model = Transformer(a)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(1234)

    def step():
        data = torch.randint(0, a.vocab_size, (a.batch, a.seq_len + 1), generator=gen)
        opt.zero_grad()
        loss = model(data[:, :-1], data[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    first_loss = step()
    for _ in range(a.warmup - 1):
        step()
    seconds, cpu_seconds = [], []
    for _ in range(a.steps):
        t0, cpu0 = time.perf_counter(), time.process_time()
        step()
        cpu_seconds.append(time.process_time() - cpu0)
        seconds.append(time.perf_counter() - t0)
    median = statistics.median(seconds)
    print(json.dumps({
        "median_step_ms": median * 1e3,
        "median_cpu_ms": statistics.median(cpu_seconds) * 1e3,
        "tokens_per_s": a.batch * a.seq_len / median,
        "peak_rss_MiB": vm_kib("VmHWM") / 1024,
        "rss_after_import_MiB": rss_after_import,
        "first_loss": first_loss,
        "version": torch.__version__,
    }))


# --------------------------------------------------------------------------
# The driver.

def run_dslab(a, policy):
    args = [f"--{k}={getattr(a, k)}" for k in MODEL_KEYS] + [
        f"--n_kv_heads={a.n_heads}", f"--warmup={a.warmup}", f"--steps={a.steps}"]
    return run_google_benchmark(a.build_dir, "bench_train_step", args, thread_env(a.threads, policy, 1))


def run_torch(a, policy):
    args = [f"--{k}={getattr(a, k)}" for k in MODEL_KEYS + ("threads", "warmup", "steps")]
    return run_torch_worker(__file__, args, thread_env(a.threads, policy, a.threads))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default="build")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--n_layers", type=int, default=4)
    p.add_argument("--n_heads", type=int, default=8)
    p.add_argument("--inter_dim", type=int, default=704)
    p.add_argument("--vocab_size", type=int, default=256)
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--omp-wait-policy", nargs="+", default=["default"],
                   choices=["default", "passive", "active"],
                   help="run both sides under each of these OMP_WAIT_POLICY settings")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    for k in MODEL_KEYS + ("threads", "warmup", "steps", "rounds"):
        if getattr(a, k) < (0 if k == "warmup" else 1):
            p.error(f"--{k}={getattr(a, k)} is not allowed: it must be positive")
    if a.torch_worker:
        a.warmup = max(a.warmup, 1)
        return torch_worker(a)

    load_before = os.getloadavg()[0]
    variants = [(side, policy) for policy in a.omp_wait_policy for side in ("dslab", "torch")]
    runs = {v: [] for v in variants}
    for r in range(a.rounds):
        for side, policy in variants:
            res = (run_dslab if side == "dslab" else run_torch)(a, policy)
            runs[(side, policy)].append(res)
            print(f"round {r + 1}/{a.rounds} {side} (wait policy {policy}): median step "
                  f"{res['median_step_ms']:.1f} ms, load {os.getloadavg()[0]:.2f}", file=sys.stderr)

    def med(v, key):
        return statistics.median(float(x[key]) for x in runs[v])

    best_torch_ms = min(med(v, "median_step_ms") for v in variants if v[0] == "torch")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; {a.threads} thread(s) per side; "
          f"torch {runs[variants[1]][0]['version']}; 1-minute load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"Config: dim {a.dim}, n_layers {a.n_layers}, n_heads {a.n_heads}, inter_dim {a.inter_dim}, "
          f"vocab {a.vocab_size}, seq_len {a.seq_len}, batch {a.batch}, float32; "
          f"{a.warmup} warm-up + {a.steps} timed steps per round, {a.rounds} rounds; "
          f"date {time.strftime('%Y-%m-%d')}\n")
    print("| implementation | OMP_WAIT_POLICY | median step (ms) | per-round medians (ms) | tokens/s "
          "| CPU time per step (ms) | peak RSS (MiB) | first loss | speed vs fastest PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        ms = med(v, "median_step_ms")
        per_round = ", ".join(f"{float(x['median_step_ms']):.0f}" for x in runs[v])
        label = "dslab reference" if v[0] == "dslab" else "PyTorch eager"
        print(f"| {label} | {v[1]} | {ms:.1f} | {per_round} | {a.batch * a.seq_len / ms * 1e3:.0f} | "
              f"{med(v, 'median_cpu_ms'):.0f} | {med(v, 'peak_rss_MiB'):.0f} | "
              f"{float(runs[v][0]['first_loss']):.4f} | {best_torch_ms / ms:.2f}x |")
    torch_import = statistics.median(float(x["rss_after_import_MiB"]) for v in variants if v[0] == "torch"
                                     for x in runs[v])
    print(f"\nPyTorch's RSS right after `import torch`: {torch_import:.0f} MiB. "
          "CPU time counts every thread of the process, spin-waiting included.")

if __name__ == "__main__":
    main()
