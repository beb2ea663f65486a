#!/usr/bin/python3
"""Rollout throughput: dslab's sample_completions (bench_rollout) against the
same sampling loop in PyTorch on CPU with a KV cache.

Both sides: the quickstart model's shape (dim 128, 4 layers, 4 heads, SwiGLU
inter_dim 384, vocab 256, RoPE, RMSNorm, untied head), random weights (a
throughput comparison: the weights are not shared), P prompts of prompt_len
random bytes, G completions each, new_tokens sampled per completion at
temperature 1 from the whole vocabulary. The PyTorch side is written as users
write it: one prefill forward over the P*G prompts, then one batched
forward per token with the keys and values appended to per-layer cache
tensors (torch.cat), softmax and torch.multinomial; float32, no torch.compile.

    /usr/bin/python3 bench/rollout_vs_torch.py --build-dir build --threads 2
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time


def torch_rollout(args):
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    D, L, H, F, V = 128, 4, 4, 384, 256
    d = D // H
    n = args.prompts * args.group_size
    std = 0.02

    def w(*shape):
        return torch.randn(*shape) * std

    layers = [dict(an=torch.ones(D), wq=w(D, D), wk=w(D, D), wv=w(D, D), wo=w(D, D), fn=torch.ones(D),
                   w1=w(F, D), w2=w(D, F), w3=w(F, D)) for _ in range(L)]
    embed, norm, head = w(V, D), torch.ones(D), w(V, D)
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    ang = torch.outer(torch.arange(128).float(), inv)
    cos, sin = ang.cos(), ang.sin()

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * g

    def rope(x, pos):  # x [B, H, T, d], pairs (2i, 2i+1)
        c, s = cos[pos][None, None], sin[pos][None, None]
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), -1).flatten(-2)

    def forward(tokens, caches, start):
        B, T = tokens.shape
        x = embed[tokens]
        pos = torch.arange(start, start + T)
        for l, p in enumerate(layers):
            h = rms(x, p["an"])
            q = (h @ p["wq"].T).view(B, T, H, d).transpose(1, 2)
            k = (h @ p["wk"].T).view(B, T, H, d).transpose(1, 2)
            v = (h @ p["wv"].T).view(B, T, H, d).transpose(1, 2)
            q, k = rope(q, pos), rope(k, pos)
            if caches[l] is not None:
                k = torch.cat((caches[l][0], k), 2)
                v = torch.cat((caches[l][1], v), 2)
            caches[l] = (k, v)
            att = (q @ k.transpose(-1, -2)) / d ** 0.5
            if T > 1:
                att = att + torch.full((T, T), float("-inf")).triu(1)
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
            x = x + o @ p["wo"].T
            h = rms(x, p["fn"])
            x = x + (torch.nn.functional.silu(h @ p["w1"].T) * (h @ p["w3"].T)) @ p["w2"].T
        return rms(x[:, -1], norm) @ head.T

    prompts = torch.randint(0, V, (args.prompts, args.prompt_len)).repeat_interleave(args.group_size, 0)
    times = []
    with torch.no_grad():
        for it in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            caches = [None] * L
            logits = forward(prompts, caches, 0)
            for i in range(args.new_tokens):
                tok = torch.multinomial(logits.softmax(-1), 1)
                if i + 1 < args.new_tokens:
                    logits = forward(tok, caches, args.prompt_len + i)
            if it >= args.warmup:
                times.append(time.perf_counter() - t0)
    return n * args.new_tokens / statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--torch-worker", action="store_true")
    args = ap.parse_args()
    if args.torch_worker:
        print(f"tokens_per_s={torch_rollout(args)}")
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([os.path.join(args.build_dir, "bench", "bench_rollout"), f"--group_size={args.group_size}",
                          f"--prompts={args.prompts}", f"--prompt_len={args.prompt_len}",
                          f"--new_tokens={args.new_tokens}", f"--warmup={args.warmup}", f"--steps={args.steps}"],
                         env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"tokens_per_s=([0-9.]+)(k?)", out)
    ours = float(m.group(1)) * (1000 if m.group(2) else 1)
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    out = subprocess.run([sys.executable, __file__, "--torch-worker"] + [a for a in sys.argv[1:]], env=env,
                         capture_output=True, text=True, check=True).stdout
    theirs = float(re.search(r"tokens_per_s=([0-9.e+]+)", out).group(1))
    print(f"threads {args.threads}, P={args.prompts} G={args.group_size} prompt {args.prompt_len} new {args.new_tokens}")
    print(f"dslab    {ours:10.0f} tokens/s")
    print(f"pytorch  {theirs:10.0f} tokens/s")
    print(f"ratio dslab / pytorch = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
