"""dslab's whole model against transformers' DeepseekV3, an implementation nobody here wrote.

Both ways, on tiny random models built from a config (no download):
- dslab -> transformers: a dslab model saved with Model.save_hf loads in
  DeepseekV3ForCausalLM.from_pretrained and gives the logits dslab computes;
- transformers -> dslab: a model transformers initialises and saves with save_pretrained loads
  with dslab.Model.from_hf and gives transformers' logits.
Configs cover MoE layers with group-limited routing and the e_score_correction_bias (Eq. (24)),
shared experts, YaRN (factor, mscale), query compression and none, and dense layers.

Tolerance: normwise max|dslab - transformers| / max|dslab| <= 1e-5, dslab in float64. transformers
computes its router, RMSNorm and rotary tables in float32 whatever the weights' dtype (and fails on
float64 MoE weights), so it runs in float32: measured differences are 1e-7 to 3e-7, float32 rounding
through a few layers. A wrong rotation layout, YaRN factor, routing rule or name mapping gives 1e-2
or more. Needs the .venv of scripts/peers (transformers 4.56.2, torch 2.6): without it the tests
skip, saying why.
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

import dslab

PEER = os.environ.get("DSLAB_PEER_PYTHON", "")
SCRIPT = os.path.join(os.path.dirname(__file__), "..", "oracle", "hf_deepseek_v3.py")
SKIP = f"needs transformers' DeepseekV3 in {PEER or '.venv'}: run scripts/peers (about 3 GB from PyPI)"
TOLERANCE = 1e-5


def config(moe=True, yarn=True, q_lora=16, groups=(2, 1), experts=4, topk=2, shared=1, dense=1):
    return dslab.ModelArgs(
        vocab_size=96, dim=48, n_layers=3, n_heads=3, inter_dim=64, max_seq_len=128 if yarn else 32,
        rope_theta=10000.0, attn="mla",
        mla=dslab.MlaArgs(q_lora_rank=q_lora, kv_lora_rank=24, qk_nope_head_dim=8, qk_rope_head_dim=8,
                          v_head_dim=12, original_seq_len=16 if yarn else 4096, rope_factor=8.0 if yarn else 1.0,
                          mscale=0.707 if yarn else 1.0),
        moe=dslab.MoeArgs(moe_inter_dim=16, n_routed_experts=experts if moe else 0, n_shared_experts=shared,
                          n_activated_experts=topk, score_func="sigmoid", n_expert_groups=groups[0],
                          n_limited_groups=groups[1], route_scale=2.5),
        n_dense_layers=dense, mtp=dslab.MtpArgs(depth=1 if moe else 0),
        balance=dslab.BalanceArgs(bias_update="sign" if moe else "none"))


CASES = {
    "moe_groups_bias_yarn": config(),
    "moe_no_query_compression_more_experts": config(q_lora=0, groups=(4, 2), experts=8, topk=3, shared=2, yarn=False),
    "dense_only": config(moe=False, yarn=True, q_lora=0),
}


def normwise(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(ours).max())


@unittest.skipUnless(os.path.exists(PEER), SKIP)
class HuggingFaceDeepseekV3(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("DSLAB_TEST_TMP"))
        self.tokens = os.path.join(self.dir, "tokens.npy")
        np.save(self.tokens, np.random.default_rng(5).integers(0, 96, (2, 30)))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def peer(self, *args):
        out = os.path.join(self.dir, "peer_logits.npy")
        run = subprocess.run([PEER, SCRIPT, *args, self.tokens, out], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr[-3000:])
        return np.load(out)

    def test_dslab_checkpoints_run_in_transformers(self):
        for name, args in CASES.items():
            model = dslab.Model(args, dtype="float64", seed=3)
            state = model.state_dict()
            rng = np.random.default_rng(7)
            for k in state:
                if k.endswith("gate.bias"):
                    state[k] = rng.normal(0, 0.1, state[k].shape)
                if k.endswith("norm.weight"):
                    state[k] = rng.uniform(0.8, 1.2, state[k].shape)
            model.load_state_dict(state)
            folder = os.path.join(self.dir, name)
            model.save_hf(folder, "F64")
            ours = model.forward(np.load(self.tokens))
            theirs = self.peer("run", folder)
            err = normwise(ours, theirs)
            print(f"{name}: dslab -> transformers, normwise logits difference {err:.2e}")
            self.assertLess(err, TOLERANCE, name)

    def test_transformers_checkpoints_run_in_dslab(self):
        for name, args in CASES.items():
            cfg = os.path.join(self.dir, name + ".json")
            with open(cfg, "w") as f:
                f.write(args.hf_config_json())
            folder = os.path.join(self.dir, name + "_hf")
            theirs = self.peer("make", cfg, folder)
            model = dslab.Model.from_hf(folder, dtype="float64")
            ours = model.forward(np.load(self.tokens))
            err = normwise(ours, theirs)
            print(f"{name}: transformers -> dslab, normwise logits difference {err:.2e}")
            self.assertLess(err, TOLERANCE, name)


if __name__ == "__main__":
    unittest.main()
