#!/bin/sh
# Regenerates results/rope_ablation/decode_time.json: the decode time per token
# of each variant of experiments/rope_ablation.toml (its attention layers, all
# 4, with the cache the reference decodes with), at contexts 128, 512, 2048.
# Each variant's config is the effective config kept in its seed-1 result file;
# model.max_seq_len is raised to 2048 for the RoPE tables (timing only: the
# models were trained on 128-byte contexts). One thread; about a minute.
# Usage: results/rope_ablation/regenerate_decode_time.sh [path/to/dslab]
#        (default: build/dslab of this checkout)
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
DSLAB=${1:-$HERE/../../build/dslab}
DSLAB=$(cd "$(dirname "$DSLAB")" && pwd)/$(basename "$DSLAB")
cd "$HERE"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
/usr/bin/python3 - "$DSLAB" <<'PY'
import datetime, json, os, platform, subprocess, sys, tempfile
import h5py

dslab = sys.argv[1]
contexts = "128,512,2048"
variants = ["mla_decoupled", "mla_none", "mla_full", "mha", "gqa", "mqa"]


def load_average():
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


record = {
    "command": "results/rope_ablation/regenerate_decode_time.sh",
    "per_variant": f"dslab info CONFIG --set model.max_seq_len=2048 --decode-time "
                   f"--contexts {contexts} --repeats 200 --json (OMP_NUM_THREADS=1)",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "cpu": cpu_model(),
    "load_average_before": load_average(),
    "variants": {},
}
for v in variants:
    with h5py.File(f"{v}-seed=1.h5", "r") as f:
        text = f["config"][()]
    text = text.decode() if isinstance(text, bytes) else text
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        out = subprocess.run([dslab, "info", f.name, "--set", "model.max_seq_len=2048", "--decode-time",
                              "--contexts", contexts, "--repeats", "200", "--json"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    j = json.loads(out)
    record["variants"][v] = {"params_total": j["params_total"],
                             "kv_cache_elements_per_token": j["kv_cache_elements_per_token"],
                             **j["decode_time"]}
    print(v, [f"{1e6 * s:.1f} us" for s in j["decode_time"]["seconds_per_token_median"]], file=sys.stderr)
record["load_average_after"] = load_average()
with open("decode_time.json.tmp", "w") as f:
    json.dump(record, f, indent=1)
    f.write("\n")
os.replace("decode_time.json.tmp", "decode_time.json")
PY
