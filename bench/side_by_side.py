"""What the side-by-side benchmark scripts share (train_step_vs_torch.py,
moe_vs_torch.py): each side runs in its own process with its own thread
environment; dslab's side is a Google Benchmark program that prints JSON, the
PyTorch side the calling script itself run as a --torch-worker that prints one
JSON line last.
"""
import json
import os
import platform
import subprocess
import sys


def vm_kib(key):
    """A VmXXX line of /proc/self/status in KiB (VmHWM: peak RSS, VmRSS: now)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def thread_env(threads, policy, openblas_threads):
    """The environment of one side: OMP and OpenBLAS threads, and OMP_WAIT_POLICY
    unset for "default"."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(openblas_threads))
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    return env


def run_google_benchmark(build_dir, target, args, env):
    """The first benchmark entry of build_dir/bench/<target> run with args."""
    exe = os.path.join(build_dir, "bench", target)
    if not os.access(exe, os.X_OK):
        sys.exit(f"error: {exe} not found; build it with cmake -DDSLAB_BUILD_BENCH=ON and "
                 f"cmake --build {build_dir} --target {target}")
    out = subprocess.run([exe] + args + ["--benchmark_format=json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["benchmarks"][0]


def run_torch_worker(script, args, env):
    """The last line, JSON, of `script --torch-worker args`."""
    out = subprocess.run([sys.executable, os.path.abspath(script), "--torch-worker"] + args, env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()
