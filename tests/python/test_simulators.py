"""The simulators through `import dslab` against the dslab program.

The same inputs through `import dslab` and through `dslab sim pipeline`, `dslab sim balance
dynamics | degeneracy | replay` and `dslab sim fp8 quantize | gemm` (each with --json) give the
same numbers (the bindings only move data); the DualPipe bubble meets the review's closed form
(PP/2 - 1)(F&B + B - 3W) on a middle rank (Sec. 2.4.1, the DualPipe table); the replay's
no-bias controller gives the MaxVio of loads counted here from the logits (Eq. (24) off).
"""
import json
import os
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

import dslab

DSLAB = os.environ.get("DSLAB", "")


def run_dslab(*args):
    with tempfile.TemporaryDirectory(dir=os.environ.get("DSLAB_TEST_TMP")) as d:
        out = os.path.join(d, "out.json")
        subprocess.run([DSLAB, *args, "--json", out], check=True, capture_output=True)
        with open(out) as f:
            return json.load(f)


@unittest.skipUnless(os.path.exists(DSLAB), "needs the dslab program ($DSLAB), which ctest sets")
class Simulators(unittest.TestCase):
    def test_pipeline_equals_the_command_and_the_closed_form(self):
        for schedule, pp, mb in (("dualpipe", 8, 20), ("1f1b", 4, 8), ("zb1p", 4, 12), ("dualpipev", 8, 16)):
            ours = dslab.pipeline_simulate(schedule, pp=pp, microbatches=mb, f=1.0, b=2.0, w=1.0, fb=2.5)
            theirs = run_dslab("sim", "pipeline", "--schedule", schedule, "--pp", str(pp), "--microbatches", str(mb),
                               "--cost-f", "1", "--cost-b", "2", "--cost-w", "1", "--cost-fb", "2.5")
            for key in ("makespan", "bubble", "ranks"):
                self.assertEqual(ours[key], theirs[key], f"{schedule} {key}")
        r = dslab.pipeline_simulate("dualpipe", pp=8, microbatches=20, f=1.0, b=2.0, w=1.0, fb=2.5)
        # the table's bubble is the idle time of a middle rank (pp/2 - 1), with F = B - W
        self.assertAlmostEqual(r["ranks"][3]["idle"], (8 / 2 - 1) * (2.5 + 2.0 - 3 * 1.0), places=12)

    def test_balance_dynamics_equals_the_command(self):
        ours = dslab.balance_dynamics(experts=16, topk=2, steps=60, method="bias-sign", gamma=0.01, seed=3)
        theirs = run_dslab("sim", "balance", "dynamics", "--experts", "16", "--topk", "2", "--steps", "60",
                           "--method", "bias-sign", "--gamma", "0.01", "--seed", "3")
        text = json.dumps(theirs)
        self.assertTrue(np.array_equal(ours["bias"], np.array(find(theirs, "bias"))), text[:300])
        self.assertEqual(ours["maxvio_global"], find(theirs, "maxvio_global"))

    def test_balance_degeneracy_equals_the_command(self):
        ours = dslab.balance_degeneracy(experts=8, topk=2, tokens=32, epsilons=[1.0, 0.01], seed=2)
        theirs = run_dslab("sim", "balance", "degeneracy", "--experts", "8", "--topk", "2", "--tokens", "32",
                           "--eps", "1,0.01", "--seed", "2")["states"]
        self.assertEqual([s["name"] for s in ours], [s["name"] for s in theirs])
        for o, t in zip(ours, theirs):
            for key in ("loss", "max_vio", "grad_norm", "grad_fd_error", "alignment"):
                self.assertEqual(o[key], t[key], f"{o['name']} {key}")
            self.assertTrue(np.array_equal(o["push"], np.array(t["push"])), o["name"])

    def test_balance_replay_equals_the_command_and_counted_loads(self):
        rng = np.random.default_rng(0)
        E, K = 8, 2
        logits = (rng.standard_normal((5, 64, E)) + np.linspace(0, 1.5, E)).astype(np.float32)
        with tempfile.TemporaryDirectory(dir=os.environ.get("DSLAB_TEST_TMP")) as d:
            path = os.path.join(d, "logits.h5")
            with h5py.File(path, "w") as f:
                f["captured/router_logits"] = logits
            theirs = run_dslab("sim", "balance", "replay", "--logits", path, "--dataset", "router_logits",
                               "--topk", str(K), "--score-func", "sigmoid", "--rule", "sign,proportional",
                               "--gamma", "0.01")["controllers"]
        for c in theirs:
            ours = dslab.balance_replay(logits, topk=K, score_func="sigmoid", rule=c["rule"] or "none",
                                        gamma=c["gamma"] or 0.0)
            for key in ("maxvio_batch", "load", "load_final", "bias"):
                self.assertTrue(np.array_equal(ours[key], np.array(c[key])), f"{c['name']} {key}")
            self.assertEqual(ours["maxvio_global"], c["maxvio_global"], c["name"])
        none = dslab.balance_replay(logits, topk=K, rule="none")
        # without a bias the top-K of sigmoid(z) is the top-K of z: loads counted here
        top = np.argsort(-logits, axis=2, kind="stable")[:, :, :K]
        load = np.bincount(top.ravel(), minlength=E).astype(float)
        self.assertTrue(np.array_equal(none["load"], load))
        self.assertAlmostEqual(none["maxvio_global"], load.max() / load.mean() - 1, places=12)

    def test_fp8_quantize_and_gemm_equal_the_command(self):
        x = dslab.fp8_sample("outliers", rows=64, cols=256, seed=3)
        self.assertEqual((x.dtype, x.shape), (np.float32, (64, 256)))
        ours = dslab.fp8_quantization_error(x, dslab.QuantConfig(granularity="tile"))
        theirs = run_dslab("sim", "fp8", "quantize", "--dist", "outliers", "--rows", "64", "--cols", "256",
                           "--seed", "3", "--granularity", "tile")
        for key in ("sqnr_db", "normwise_rel_error", "max_rel_error", "flushed_fraction", "groups"):
            self.assertEqual(ours[key], theirs[key], key)
        self.assertEqual(ours["group_sqnr_db"], theirs["group_sqnr_db"])
        model = dslab.AccumulatorModel(mantissa_bits=14, promote_every=128, alignment="floor")
        ours = dslab.fp8_gemm_error(1024, m=32, n=48, model=model, seed=5)
        theirs = run_dslab("sim", "fp8", "gemm", "--m", "32", "--n", "48", "--k", "1024", "--accum-bits", "14",
                           "--seed", "5")["results"][0]
        for part in ("accumulation", "total"):
            for key in ("max_rel_error", "normwise_rel_error", "deepgemm_diff"):
                want = theirs[key] if part == "accumulation" else theirs["total"][key]
                self.assertEqual(ours[part][key], want, f"{part} {key}")
        # the error of promoting every 128 products is below that of never promoting
        never = dslab.fp8_gemm_error(1024, m=32, n=48, model=dslab.AccumulatorModel(mantissa_bits=14, promote_every=0,
                                                                                    alignment="floor"), seed=5,
                                     b_config=dslab.QuantConfig(granularity="row"),
                                     a_config=dslab.QuantConfig(granularity="row"))
        self.assertGreater(never["accumulation"]["normwise_rel_error"], ours["accumulation"]["normwise_rel_error"])

    def test_bad_options_raise(self):
        with self.assertRaisesRegex(ValueError, "not finite"):
            dslab.balance_replay(np.full((1, 4, 4), np.nan, np.float32), topk=2)
        with self.assertRaisesRegex(TypeError, "float32"):
            dslab.balance_replay(np.zeros((1, 4, 4)), topk=2)
        with self.assertRaises(ValueError):
            dslab.balance_replay(np.zeros((1, 4, 4), np.float32), topk=5)
        with self.assertRaises(ValueError):
            dslab.balance_degeneracy(experts=8, topk=5)
        with self.assertRaises(ValueError):
            dslab.fp8_sample("cauchy")
        with self.assertRaises(ValueError):
            dslab.fp8_gemm_error(0)
        with self.assertRaises(ValueError):
            dslab.pipeline_simulate("nope")
        with self.assertRaises(ValueError):
            dslab.pipeline_simulate("dualpipe", pp=3)
        with self.assertRaises(TypeError):
            dslab.balance_dynamics(expertz=3)


def find(doc, key):
    """The first value under `key` anywhere in a JSON document."""
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        for v in doc.values():
            r = find(v, key)
            if r is not None:
                return r
    if isinstance(doc, list):
        for v in doc:
            r = find(v, key)
            if r is not None:
                return r
    return None


if __name__ == "__main__":
    unittest.main()
