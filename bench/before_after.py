"""The same benchmarks from two builds of dslab, alternated round by round in
one run, so that a change is judged by ratios taken under the same load:

    /usr/bin/python3 bench/before_after.py --before BUILD_A --after BUILD_B [--rounds 3]

BUILD_A and BUILD_B are build trees with the benchmark programs
(cmake -DDSLAB_BUILD_BENCH=ON), e.g. a worktree of the parent commit and this
one. Each round runs, for each build in turn (the order swaps every round):
  - bench_train_step (dim 256, 4 layers, 8 heads, seq 256, batch 8; 2 threads,
    OMP_WAIT_POLICY=passive), median step and CPU time;
  - bench_moe at the two shapes of bench/RESULTS.md (1 thread), CPU time;
  - bench_mla_decode, latent (absorbed) and naive caches at 2048 and 8192 (1 thread).
A table entry is the median over rounds; the ratio is after / before (below 1: faster).
The 1-minute load average is printed with each round.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import run_google_benchmark, thread_env  # noqa: E402

MOE_SMALL = ["--dim=256", "--moe_inter_dim=128", "--n_routed_experts=16", "--n_activated_experts=4",
             "--n_shared_experts=1", "--tokens=2048", "--warmup=1", "--steps=5"]
MOE_LARGE = ["--dim=512", "--moe_inter_dim=256", "--n_routed_experts=64", "--n_activated_experts=6",
             "--n_shared_experts=2", "--tokens=2048", "--sigmoid=1", "--warmup=1", "--steps=3"]
MLA_CASES = ["Absorbed/2048", "Absorbed/8192", "Naive/2048", "Naive/8192"]


def mla_decode(build, case):
    exe = os.path.join(build, "bench", "bench_mla_decode")
    out = subprocess.run([exe, f"--benchmark_filter=^{case}$", "--benchmark_min_time=0.3",
                          "--benchmark_format=json"], env=thread_env(1, "passive", 1), check=True,
                         capture_output=True, text=True).stdout
    b = json.loads(out)["benchmarks"][0]
    return {"cpu_ms": b["cpu_time"] * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]}


def one_round(build):
    r = {}
    s = run_google_benchmark(build, "bench_train_step", ["--warmup=2", "--steps=8"], thread_env(2, "passive", 1))
    r["train step, 2 threads: wall ms"] = float(s["median_step_ms"])
    r["train step, 2 threads: CPU ms"] = float(s["median_cpu_ms"])
    for name, args in (("MoE dim 256, 16 experts top-4", MOE_SMALL), ("MoE dim 512, 64 experts top-6", MOE_LARGE)):
        m = run_google_benchmark(build, "bench_moe", args, thread_env(1, "passive", 1))
        r[f"{name}, 1 thread: CPU ms"] = float(m["median_cpu_ms"])
    for case in MLA_CASES:
        r[f"MLA decode {case}, 1 thread: CPU ms/token"] = mla_decode(build, case)["cpu_ms"]
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    runs = {"before": [], "after": []}
    for i in range(a.rounds):
        order = ("before", "after") if i % 2 == 0 else ("after", "before")
        for side in order:
            runs[side].append(one_round(getattr(a, side)))
            print(f"round {i + 1}/{a.rounds} {side} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print("| benchmark | before (median) | after (median) | after / before |")
    print("|---|---|---|---|")
    for key in runs["before"][0]:
        b = statistics.median(r[key] for r in runs["before"])
        f = statistics.median(r[key] for r in runs["after"])
        print(f"| {key} | {b:.2f} | {f:.2f} | {f / b:.3f} |")


if __name__ == "__main__":
    main()
