"""import dslab against the C++ reference run straight from C++: bitwise.

tests/python/write_cases.cpp runs MLA (prefill and latent-cache decode), the MoE
layer, RMSNorm, cross-entropy and the whole model in float64 and float32, GRPO's
policy loss and FP8 quantization, on seeded inputs, and writes inputs and outputs.
Here the same inputs go through the bindings, and every output must be the same
bits: the bindings only move data, so any transposition, dtype slip, dropped
argument or wrong default shows up as a difference.
"""
import os
import subprocess
import tempfile
import unittest

import h5py
import numpy as np

import dslab

CASES = None


def setUpModule():
    global CASES
    tmp = os.environ.get("DSLAB_TEST_TMP") or tempfile.gettempdir()
    os.makedirs(tmp, exist_ok=True)
    path = os.path.join(tmp, f"python_cases_{os.getpid()}.h5")
    subprocess.run([os.environ["DSLAB_WRITE_CASES"], path], check=True)
    with h5py.File(path, "r") as f:
        CASES = {}
        f.visititems(lambda name, obj: CASES.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        CASES["attrs"] = {name: dict(f[name].attrs) for name in ("float64/mla", "float64/model")}
    os.remove(path)


def group(prefix):
    """{name: array} of the datasets under prefix/ (e.g. "float64/mla/w")."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in CASES.items() if k.startswith(prefix + "/")}


def mla_args():
    a = CASES["attrs"]["float64/mla"]
    return dslab.MlaArgs(**{k: (int(v) if k not in ("rope_factor", "mscale") else float(v)) for k, v in a.items()})


def model_args():
    return dslab.ModelArgs(
        vocab_size=40, dim=32, n_layers=2, n_heads=2, n_kv_heads=2, inter_dim=48, max_seq_len=16, attn="mla",
        mla=dslab.MlaArgs(q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8),
        moe=dslab.MoeArgs(moe_inter_dim=8, n_routed_experts=4, n_shared_experts=1, n_activated_experts=2),
        n_dense_layers=1, mtp=dslab.MtpArgs(depth=1), balance=dslab.BalanceArgs(seq_aux_alpha=0.01))


class Bitwise(unittest.TestCase):
    def same(self, ours, theirs, what):
        ours, theirs = np.atleast_1d(np.asarray(ours)), np.atleast_1d(theirs)
        self.assertEqual(ours.dtype, theirs.dtype, what)
        self.assertEqual(ours.shape, theirs.shape, what)
        self.assertTrue(np.array_equal(ours.view(np.uint8), theirs.view(np.uint8)),
                        f"{what}: max |diff| {np.max(np.abs(ours.astype(float) - theirs.astype(float)))}")

    def test_mla_forward_backward_and_latent_decode(self):
        for dt in ("float64", "float32"):
            c = f"{dt}/mla"
            w = group(c + "/w")
            out, ctx = dslab.mla_forward(CASES[c + "/x"], w, mla_args())
            self.same(out, CASES[c + "/out"], f"{dt} mla out")
            dx, g = dslab.mla_backward(CASES[c + "/dout"], ctx)
            self.same(dx, CASES[c + "/dx"], f"{dt} mla dx")
            self.assertEqual(sorted(g), sorted(group(c + "/g")))
            for name, grad in group(c + "/g").items():
                self.same(g[name], grad, f"{dt} mla grad {name}")
            dec = dslab.MlaDecoder(w, mla_args(), max_len=8, cache="latent", dtype=dt)
            steps = np.stack([dec.step(x) for x in CASES[c + "/x"][0]])
            self.same(steps, CASES[f"{dt}/mla_decode/out"], f"{dt} mla latent decode")
            self.assertEqual(dec.len, 5)

    def test_moe_layer_with_groups_bias_and_shared_expert(self):
        args = dslab.MoeArgs(dim=16, moe_inter_dim=8, n_routed_experts=8, n_shared_experts=1, n_activated_experts=2,
                             n_expert_groups=4, n_limited_groups=2, route_scale=2.5, score_func="sigmoid")
        for dt in ("float64", "float32"):
            c = f"{dt}/moe"
            y, ctx = dslab.moe_forward(CASES[c + "/x"], group(c + "/w"), args, bias=CASES[c + "/bias"])
            self.same(y, CASES[c + "/y"], f"{dt} moe y")
            self.same(ctx.routing["indices"].ravel(), CASES[c + "/indices"], f"{dt} moe indices")
            dx, g = dslab.moe_backward(CASES[c + "/dy"], ctx)
            self.same(dx, CASES[c + "/dx"], f"{dt} moe dx")
            for name, grad in group(c + "/g").items():
                self.same(g[name], grad, f"{dt} moe grad {name}")

    def test_rms_norm_and_cross_entropy(self):
        for dt in ("float64", "float32"):
            c = f"{dt}/rms_norm"
            y, rstd = dslab.rms_norm_forward(CASES[c + "/x"], CASES[c + "/weight"], 1e-6)
            self.same(y, CASES[c + "/y"], f"{dt} rms_norm y")
            self.same(rstd, CASES[c + "/rstd"], f"{dt} rms_norm rstd")
            dx, dw = dslab.rms_norm_backward(CASES[c + "/dy"], CASES[c + "/x"], CASES[c + "/weight"], rstd)
            self.same(dx, CASES[c + "/dx"], f"{dt} rms_norm dx")
            self.same(dw, CASES[c + "/dweight"], f"{dt} rms_norm dweight")
            c = f"{dt}/cross_entropy"
            loss, probs, _ = dslab.cross_entropy_forward(CASES[c + "/logits"], CASES[c + "/targets"])
            self.same(np.float64(loss), CASES[c + "/loss"][0], f"{dt} cross-entropy loss")
            self.same(probs, CASES[c + "/probs"], f"{dt} cross-entropy probs")
            self.same(dslab.cross_entropy_backward(probs, CASES[c + "/targets"]), CASES[c + "/dlogits"],
                      f"{dt} cross-entropy dlogits")

    def test_whole_model_init_forward_and_backward(self):
        for dt in ("float64", "float32"):
            c = f"{dt}/model"
            model = dslab.Model(model_args(), dtype=dt, seed=3)
            weights = group(c + "/w")
            state = model.state_dict()
            self.assertEqual(sorted(state), sorted(weights))
            for name, w in weights.items():
                self.same(state[name], w, f"{dt} init {name}")
            model.load_state_dict(weights)
            tokens, targets = CASES[c + "/tokens"].reshape(2, 6), CASES[c + "/targets"].reshape(2, 6)
            loss = model.forward(tokens, targets)
            self.same(np.float64(loss), CASES[c + "/loss"][0], f"{dt} model loss")
            self.assertEqual(sorted(model.loss_parts()), ["main", "mtp", "seq_aux"])
            self.same(model.logits().reshape(12, 40), CASES[c + "/logits"], f"{dt} model logits")
            model.backward()
            grads = model.grads()
            for name, g in group(c + "/g").items():
                self.same(grads[name], g, f"{dt} model grad {name}")
            logits = model.forward(tokens)
            self.same(logits.reshape(12, 40), CASES[c + "/logits"], f"{dt} forward without targets")

    def test_grpo_policy_loss(self):
        c = "float64/policy_loss"
        args = dslab.GrpoArgs(clip_eps_high=0.28, aggregation="token_mean")
        stats, dlogp = dslab.policy_loss(CASES[c + "/offsets"], CASES[c + "/logp"], CASES[c + "/old_logp"],
                                         CASES[c + "/ref_logp"], CASES[c + "/advantages"], args, group_size=2)
        self.same(np.float64(stats["loss"]), CASES[c + "/loss"][0], "policy loss")
        self.same(dlogp, CASES[c + "/dlogp"], "policy loss dlogp")

    def test_fp8_block_quantization(self):
        c = "float32/fp8"
        cfg = dslab.QuantConfig(granularity="block")
        codes, scales = dslab.fp8_quantize(CASES[c + "/x"], cfg)
        self.same(codes, CASES[c + "/codes"], "fp8 codes")
        self.same(scales, CASES[c + "/scales"], "fp8 scales")
        self.assertEqual(scales.shape, (2, 3))  # 130 x 260 in 128 x 128 blocks, edge blocks smaller
        self.same(dslab.fp8_dequantize(codes, scales, cfg), CASES[c + "/deq"], "fp8 dequantized")
        self.same(dslab.fp8_quantize_dequantize(CASES[c + "/x"], cfg), CASES[c + "/deq"], "fp8 quantize_dequantize")


if __name__ == "__main__":
    unittest.main()
