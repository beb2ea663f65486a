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
