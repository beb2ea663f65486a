#!/usr/bin/python3
"""Forward + backward of one DeepSeekMoE layer in dslab and in PyTorch on CPU.

Both sides: a gate z = x W_g^T, scores softmax (V2) or sigmoid (V3, weights
renormalised over the chosen experts, route_scale 2.5), top-k, SwiGLU experts
w2(silu(w1 x) * w3 x) of moe_inter_dim, n_shared_experts shared experts as one
SwiGLU of n_shared_experts * moe_inter_dim, y = shared(x) + sum_k g_k expert(x).
A step is zero grads, forward, backward of sum(y * dy); float32, the same
number of threads.

The PyTorch side is written as users write it (DeepSeek-V3's inference/model.py
MoE.forward with a backward): nn.Linear without bias, torch.topk, and a Python
loop over the experts that picks each expert's tokens with torch.where,
gathers them with index_select and adds the weighted outputs back with
index_add_. No torch.compile.

Each side runs in its own process: dslab's bench_moe with OMP_NUM_THREADS=threads
OPENBLAS_NUM_THREADS=1, and this script's --torch-worker with
torch.set_num_threads(threads), OMP_NUM_THREADS=threads and
OPENBLAS_NUM_THREADS=threads, each under every --omp-wait-policy given
("default" leaves OMP_WAIT_POLICY unset). The runs alternate for --rounds
rounds; each reports the median step time over --steps timed steps after
--warmup untimed ones, and the table shows the median over rounds.

    /usr/bin/python3 bench/moe_vs_torch.py --build-dir build --threads 1 2 --omp-wait-policy default passive
"""
import argparse
import json
import os
import statistics
import sys
import time

from side_by_side import cpu_model, run_google_benchmark, run_torch_worker, thread_env, vm_kib

LAYER_KEYS = ("dim", "moe_inter_dim", "n_routed_experts", "n_activated_experts", "n_shared_experts", "tokens",
              "sigmoid")


# --------------------------------------------------------------------------
# The PyTorch layer and step (runs in the worker process only).

def torch_worker(a):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)

    class Expert(nn.Module):
        def __init__(self, dim, inter_dim):
            super().__init__()
            self.w1 = nn.Linear(dim, inter_dim, bias=False)
            self.w2 = nn.Linear(inter_dim, dim, bias=False)
            self.w3 = nn.Linear(dim, inter_dim, bias=False)

        def forward(self, x):
            return self.w2(F.silu(self.w1(x)) * self.w3(x))

    class Gate(nn.Module):
        def __init__(self, a):
            super().__init__()
            self.topk = a.n_activated_experts
            self.sigmoid = bool(a.sigmoid)
            self.route_scale = 2.5 if a.sigmoid else 1.0
            self.weight = nn.Parameter(torch.empty(a.n_routed_experts, a.dim))

        def forward(self, x):
            scores = F.linear(x, self.weight)
            scores = scores.sigmoid() if self.sigmoid else scores.softmax(dim=-1)
            indices = torch.topk(scores, self.topk, dim=-1)[1]
            weights = scores.gather(1, indices)
            if self.sigmoid:
                weights = weights / weights.sum(dim=-1, keepdim=True)
            return weights * self.route_scale, indices

    class MoE(nn.Module):
        def __init__(self, a):
            super().__init__()
            self.n_routed_experts = a.n_routed_experts
            self.gate = Gate(a)
            self.experts = nn.ModuleList(Expert(a.dim, a.moe_inter_dim) for _ in range(a.n_routed_experts))
            self.shared_experts = Expert(a.dim, a.n_shared_experts * a.moe_inter_dim) if a.n_shared_experts else None
            for p in self.parameters():
                nn.init.normal_(p, std=0.02)

        def forward(self, x):
            weights, indices = self.gate(x)
            y = torch.zeros_like(x)
            for i in range(self.n_routed_experts):
                idx, top = torch.where(indices == i)
                if idx.numel() == 0:
                    continue
                out = self.experts[i](x.index_select(0, idx)) * weights[idx, top, None]
                y = y.index_add(0, idx, out)
            return y + self.shared_experts(x) if self.shared_experts is not None else y

    torch.manual_seed(1)
    layer = MoE(a)
    x = torch.randn(a.tokens, a.dim, requires_grad=True)
    dy = torch.randn(a.tokens, a.dim) / (a.tokens * a.dim)

    def step():
        layer.zero_grad(set_to_none=False)
        x.grad = None
        y = layer(x)
        y.backward(dy)

    for _ in range(a.warmup):
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
        "tokens_per_s": a.tokens / median,
        "peak_rss_MiB": vm_kib("VmHWM") / 1024,
        "version": torch.__version__,
    }))


# --------------------------------------------------------------------------
# The driver.

def run_dslab(a, threads, policy):
    args = [f"--{k}={getattr(a, k)}" for k in LAYER_KEYS] + [f"--warmup={a.warmup}", f"--steps={a.steps}"]
    return run_google_benchmark(a.build_dir, "bench_moe", args, thread_env(threads, policy, 1))


def run_torch(a, threads, policy):
    args = [f"--threads={threads}"] + [f"--{k}={getattr(a, k)}" for k in LAYER_KEYS + ("warmup", "steps")]
    return run_torch_worker(__file__, args, thread_env(threads, policy, threads))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default="build")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--moe_inter_dim", type=int, default=128)
    p.add_argument("--n_routed_experts", type=int, default=16)
    p.add_argument("--n_activated_experts", type=int, default=4)
    p.add_argument("--n_shared_experts", type=int, default=1)
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--sigmoid", type=int, default=0, choices=[0, 1], help="1: V3's sigmoid gate, 0: softmax")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--omp-wait-policy", nargs="+", default=["default"], choices=["default", "passive", "active"])
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.torch_worker:
        a.threads = a.threads[0]
        return torch_worker(a)
    for k in LAYER_KEYS[:-1] + ("steps", "rounds"):
        if getattr(a, k) < (0 if k == "n_shared_experts" else 1):
            p.error(f"--{k}={getattr(a, k)} is not allowed: it must be positive")
    if not 1 <= a.n_activated_experts <= a.n_routed_experts:
        p.error("--n_activated_experts must be 1..n_routed_experts")

    load_before = os.getloadavg()[0]
    variants = [(side, t, policy) for t in a.threads for policy in a.omp_wait_policy for side in ("dslab", "torch")]
    runs = {v: [] for v in variants}
    for r in range(a.rounds):
        for v in variants:
            res = (run_dslab if v[0] == "dslab" else run_torch)(a, v[1], v[2])
            runs[v].append(res)
            print(f"round {r + 1}/{a.rounds} {v[0]} threads {v[1]} (wait policy {v[2]}): median step "
                  f"{float(res['median_step_ms']):.1f} ms, load {os.getloadavg()[0]:.2f}", file=sys.stderr)

    def med(v, key):
        return statistics.median(float(x[key]) for x in runs[v])

    torch_version = next(runs[v][0]["version"] for v in variants if v[0] == "torch")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; torch {torch_version}; "
          f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"Layer: dim {a.dim}, moe_inter_dim {a.moe_inter_dim}, {a.n_routed_experts} routed experts, "
          f"top-{a.n_activated_experts}, {a.n_shared_experts} shared, {a.tokens} tokens, "
          f"{'sigmoid' if a.sigmoid else 'softmax'} gate, float32; {a.warmup} warm-up + {a.steps} timed steps "
          f"per round, {a.rounds} rounds; date {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| implementation | threads | OMP_WAIT_POLICY | median step (ms) | per-round medians (ms) | tokens/s "
          "| CPU time per step (ms) | peak RSS (MiB) | speed vs fastest PyTorch (same threads) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        ms = med(v, "median_step_ms")
        best_torch = min(med(u, "median_step_ms") for u in variants if u[0] == "torch" and u[1] == v[1])
        per_round = ", ".join(f"{float(x['median_step_ms']):.1f}" for x in runs[v])
        label = "dslab reference" if v[0] == "dslab" else "PyTorch eager"
        print(f"| {label} | {v[1]} | {v[2]} | {ms:.1f} | {per_round} | {a.tokens / ms * 1e3:.0f} | "
              f"{med(v, 'median_cpu_ms'):.0f} | {med(v, 'peak_rss_MiB'):.0f} | {best_torch / ms:.2f}x |")


if __name__ == "__main__":
    main()
