"""dslab's speed on a loaded machine: with 0, 2, 4 CPU hogs (busy-loop
processes this script starts and stops itself), the wall time of

  (a) `dslab train experiments/configs/tiny.toml --set train.steps=40`
      (default threads: all cores), and
  (b) bench_train_step at 2 threads (its default model: dim 256, 4 layers,
      seq 256, batch 8), the median step,

under each OpenMP setting of --policies:
  default  nothing set: dslab's own default (OMP_WAIT_POLICY=passive, experiments/omp_wait.hpp)
  before   GOMP_SPINCOUNT=300000: libgomp's default spin count, which is what dslab ran
           with before it chose passive waiting (OMP_WAIT_POLICY unset)
  active   OMP_WAIT_POLICY=active: spin and never sleep

Each time is set against the proportional-share expectation: a job of
`threads` threads among `hogs` busy processes on `cores` CPUs gets at most
cores/(threads+hogs) of a CPU per thread, so it should take no longer than
time_idle * max(1, (threads + hogs) / cores), time_idle being the same
setting's time with no hogs. The ratio column is time / expectation (1 or
less: no worse than its share). The 1-minute load average is printed with
each row. The hogs are killed on exit, normal or not.

    /usr/bin/python3 bench/under_load.py --build-dir build [--hogs 0 2 4] [--repeats 1]
"""
import argparse
import atexit
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICY_ENV = {"default": {}, "before": {"GOMP_SPINCOUNT": "300000"}, "active": {"OMP_WAIT_POLICY": "active"}}
HOGS = []


def stop_hogs():
    while HOGS:
        p = HOGS.pop()
        p.kill()
        p.wait()


def start_hogs(n):
    for _ in range(n):
        HOGS.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
    time.sleep(1.0)  # let the scheduler spread them


def policy_env(policy, threads=None):
    env = dict(os.environ)
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "DSLAB_DEFAULT_OMP_WAIT_POLICY", "OMP_NUM_THREADS"):
        env.pop(k, None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    env.update(POLICY_ENV[policy])
    return env


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def tiny_train(build, policy, timeout, workdir):
    # A fresh result path each run: a run stopped at the time limit leaves a checkpoint behind.
    out = os.path.join(tempfile.mkdtemp(dir=workdir), "tiny.h5")
    cmd = [os.path.join(build, "dslab"), "train", os.path.join(ROOT, "experiments/configs/tiny.toml"),
           "--set", "train.steps=40", "--out", out]
    t0 = time.monotonic()
    try:
        subprocess.run(cmd, env=policy_env(policy), check=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - t0


def train_step(build, policy, timeout):
    """bench_train_step's median step (s), as bench/side_by_side.py runs it, with a time limit."""
    exe = os.path.join(build, "bench", "bench_train_step")
    try:
        out = subprocess.run([exe, "--warmup=2", "--steps=8", "--benchmark_format=json"],
                             env=policy_env(policy, threads=2), check=True, capture_output=True, text=True,
                             timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return None
    return json.loads(out)["benchmarks"][0]["median_step_ms"] / 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--hogs", type=int, nargs="+", default=[0, 2, 4])
    ap.add_argument("--policies", nargs="+", default=["default", "before", "active"], choices=list(POLICY_ENV))
    ap.add_argument("--repeats", type=int, default=1, help="runs per cell; the table shows the median")
    ap.add_argument("--timeout", type=float, default=120, help="seconds before a run is stopped (shown as >T)")
    a = ap.parse_args()
    for exe in ("dslab", "bench/bench_train_step"):
        if not os.access(os.path.join(a.build_dir, exe), os.X_OK):
            sys.exit(f"error: {a.build_dir}/{exe} not found; build it with cmake -DDSLAB_BUILD_BENCH=ON and "
                     f"cmake --build {a.build_dir} --target dslab bench_train_step")
    if 0 not in a.hogs:
        sys.exit("error: --hogs needs 0: the expectation is relative to the time without hogs")
    atexit.register(stop_hogs)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    cores = os.cpu_count()
    # The tiny run's threads: dslab's default, all cores (OMP_NUM_THREADS is unset).
    jobs = [("tiny train, 40 steps (s)", cores, lambda p, w: tiny_train(a.build_dir, p, a.timeout, w)),
            ("train step, 2 threads (s/step)", 2, lambda p, w: train_step(a.build_dir, p, a.timeout))]
    times = {}
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for hogs in sorted(a.hogs):
            start_hogs(hogs)
            load0 = loadavg()
            for name, threads, fn in jobs:
                for policy in a.policies:
                    runs = [fn(policy, work) for _ in range(a.repeats)]
                    ok = [r for r in runs if r is not None]
                    t = statistics.median(ok) if len(ok) == len(runs) else None
                    times[(name, policy, hogs)] = t
                    rows.append((name, threads, policy, hogs, t, loadavg()))
                    print(f"{name} {policy} hogs={hogs}: {'>' + str(a.timeout) if t is None else f'{t:.3f}'}",
                          file=sys.stderr)
            stop_hogs()
            print(f"hogs={hogs}: load average {load0:.2f} at the start", file=sys.stderr)

    print(f"cores: {cores}; runs per cell: {a.repeats}; timeout {a.timeout:.0f} s\n")
    print("| workload | threads | OpenMP setting | hogs | time | expectation | time / expectation "
          "| vs default, same hogs | load avg (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, threads, policy, hogs, t, load in rows:
        idle = times.get((name, policy, 0))
        share = max(1.0, (threads + hogs) / cores)
        exp = idle * share if idle is not None else None
        base = times.get((name, "default", hogs))
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        tt = f">{a.timeout:.0f}" if t is None else f"{t:.3f}"
        ratio = "-" if t is None or exp is None else f"{t / exp:.2f}"
        vs = "-" if t is None or base is None else f"{t / base:.2f}x"
        print(f"| {name} | {threads} | {policy} | {hogs} | {tt} | {fmt(exp)} | {ratio} | {vs} | {load:.2f} |")


if __name__ == "__main__":
    main()
