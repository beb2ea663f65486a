"""Read dslab result files (HDF5) in notebooks.

A result file holds /config (TOML text), /metrics/<name> (1-D float64),
/model/<param> (float32) and attributes on the root (seed, steps, ...);
see experiments/results.hpp.
"""

import glob
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """One run: its file, config (parsed and as text), attributes and metrics."""

    path: Path
    config: dict
    config_text: str
    attrs: dict
    metrics: dict

    @property
    def name(self) -> str:
        """The file name without .h5, e.g. "mla-seed=1"."""
        return self.path.name.removesuffix(".h5")


def results_dir() -> Path:
    """$DSLAB_RESULTS, else the repository's results/ folder."""
    return Path(os.environ.get("DSLAB_RESULTS", REPO / "results"))


def figures_dir() -> Path:
    """$DSLAB_FIGURES, else results/figures (created when missing)."""
    path = Path(os.environ.get("DSLAB_FIGURES", REPO / "results" / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plain(value):
    """An HDF5 attribute as a Python str, int or float."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_run(path) -> Run:
    """Reads one result file (or checkpoint); the weights stay on disk."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        config_text = f["config"].asstr()[()]
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        metrics = {k: f["metrics"][k][()] for k in f["metrics"]}
    return Run(path, tomllib.loads(config_text), config_text, attrs, metrics)


def load_runs(where, complete_only=True) -> list[Run]:
    """Every run in a folder (its *.h5) or matching a glob pattern, sorted by
    name. Checkpoints and unfinished runs are skipped unless complete_only is
    False."""
    where = str(where)
    pattern = os.path.join(where, "*.h5") if os.path.isdir(where) else where
    runs = [load_run(p) for p in sorted(glob.glob(pattern))]
    if complete_only:
        runs = [r for r in runs if r.attrs.get("complete") == 1]
    return runs


# ---- a user's runs beside the canonical ones ---------------------------------


def canonical_runs(experiment: str, folder) -> list[Run]:
    """The committed canonical runs of `experiment` (results/<experiment>/), or
    [] when `folder` is that folder itself (the canonical runs being redrawn)
    or there are none."""
    canonical = REPO / "results" / experiment
    if not canonical.is_dir() or Path(folder).resolve() == canonical.resolve():
        return []
    return load_runs(canonical)


def headline(run: Run):
    """(what, value) that sums a run up: pass@1 for an eval run, the final
    validation loss (or accuracy, for a reward model) for a training run, the
    mean accuracy over the last 10 steps for an RL run; None otherwise."""
    m = run.metrics
    if "pass_at_k" in m and "k" in m and len(m["k"]) and m["k"][0] == 1:
        return "pass@1", float(m["pass_at_k"][0])
    if "val_accuracy" in m and len(m["val_accuracy"]):
        return "final val accuracy", float(m["val_accuracy"][-1])
    if "val_loss" in m and len(m["val_loss"]) and "val_step" in m:
        return "final val loss", float(m["val_loss"][-1])
    if "accuracy" in m and "step" in m and len(m["accuracy"]):
        return "accuracy, last 10 steps", float(np.nanmean(m["accuracy"][-10:]))
    return None


def _variant(name: str) -> str:
    """A run's name without its seed: "mla-seed=2" -> "mla"."""
    return name.split("-seed=")[0]


def compare_with_canonical(experiment: str, runs: list[Run], folder):
    """Prints each of `runs` beside the canonical run of the same name, with
    the spread of the canonical runs that differ from it only in their seed, so
    that "agrees" means something: a difference inside about two standard
    deviations of the seed-to-seed spread is as close as another seed would
    come. Draws the same as a figure, <experiment>_vs_canonical.png. Does
    nothing when `folder` is the canonical one. Runs on another machine do not
    repeat the canonical numbers bit for bit (README, "What reproduces where")."""
    canonical = {r.name: r for r in canonical_runs(experiment, folder)}
    if not canonical:
        print(f"no canonical runs of {experiment} to compare with (these are them, or none are committed)")
        return
    if os.environ.get("DSLAB_SMOKE") == "1":
        print("smoke runs are shortened: they are not expected to agree with the canonical runs")
    cores = lambda rs: ", ".join(sorted({str(r.attrs.get("blas_core", "not recorded")) for r in rs})) or "none"
    print(f"OpenBLAS kernels: yours {cores(runs)}; canonical {cores(canonical.values())} "
          "(the same family and build are needed for bitwise agreement)")
    by_variant = {}
    for r in canonical.values():
        h = headline(r)
        if h is not None:
            by_variant.setdefault((_variant(r.name), h[0]), []).append(h[1])
    rows = []
    for run in runs:
        mine, theirs = headline(run), canonical.get(run.name)
        if mine is None or theirs is None or headline(theirs) is None or headline(theirs)[0] != mine[0]:
            continue
        spread = by_variant.get((_variant(run.name), mine[0]), [])
        std = float(np.std(spread, ddof=1)) if len(spread) > 1 else float("nan")
        rows.append((run.name, mine[0], mine[1], headline(theirs)[1], std))
    if not rows:
        print(f"none of these runs has a canonical run of the same name in results/{experiment}")
        return
    print(f"{'run':34s} {'metric':24s} {'yours':>9s} {'canonical':>9s} {'diff':>9s} {'seed std':>9s}  verdict")
    for name, what, mine, theirs, std in rows:
        diff = mine - theirs
        verdict = ("no seeds to compare" if np.isnan(std) else
                   "within the seed spread" if abs(diff) <= 2 * std else "outside 2 seed std")
        print(f"{name:34s} {what:24s} {mine:9.4f} {theirs:9.4f} {diff:+9.4f} {std:9.4f}  {verdict}")

    import matplotlib.pyplot as plt

    whats = sorted({r[1] for r in rows})
    fig, axes = plt.subplots(1, len(whats), figsize=(max(6, 0.5 * len(rows) + 3) * len(whats) ** 0.5, 4),
                             squeeze=False)
    for ax, what in zip(axes[0], whats):
        sel = [r for r in rows if r[1] == what]
        x = np.arange(len(sel))
        ax.errorbar(x + 0.1, [r[3] for r in sel], yerr=[2 * r[4] if not np.isnan(r[4]) else 0 for r in sel],
                    fmt="s", color="0.5", capsize=3, label="canonical (bars: 2 seed std)")
        ax.plot(x - 0.1, [r[2] for r in sel], "o", color="C0", label="yours")
        ax.set_xticks(x, [r[0] for r in sel], rotation=60, ha="right", fontsize=7)
        ax.set(ylabel=what, title=f"{experiment}: {what}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    figure = figures_dir() / f"{experiment}_vs_canonical.png"
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    print("saved", figure)
