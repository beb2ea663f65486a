"""dslab.pipeline_simulate and dslab.balance_dynamics against the dslab program.

The same inputs through `import dslab` and through `dslab sim pipeline` / `dslab sim balance
dynamics --json` give the same numbers (the bindings only move data), and the DualPipe bubble
meets the review's closed form (PP/2 - 1)(F&B + B - 3W) on a middle rank (Sec. 2.4.1, the DualPipe table).
"""
import json
import os
import subprocess
import tempfile
import unittest

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

    def test_bad_options_raise(self):
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
