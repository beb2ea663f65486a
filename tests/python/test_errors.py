"""Bad input to `import dslab` raises a Python exception naming what was wrong
and what is allowed; nothing crashes. A wrong dtype is a TypeError, a wrong
shape, value or name a ValueError (or TypeError for an unknown keyword)."""
import unittest

import numpy as np

import dslab

ARGS = dict(dim=16, n_heads=2, q_lora_rank=8, kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=4)


def full_weights():
    a = ARGS
    r = a["qk_nope_head_dim"] + a["qk_rope_head_dim"]
    return {
        "wq_a.weight": np.ones((8, 16)), "q_norm.weight": np.ones(8), "wq_b.weight": np.ones((2 * r, 8)),
        "wkv_a.weight": np.ones((8 + 4, 16)), "kv_norm.weight": np.ones(8), "wkv_b.weight": np.ones((2 * 8, 8)),
        "wo.weight": np.ones((16, 8)),
    }


class Errors(unittest.TestCase):
    def raises(self, exc, fragments, fn, *args, **kw):
        with self.assertRaises(exc) as cm:
            fn(*args, **kw)
        for f in fragments:
            self.assertIn(f, str(cm.exception))

    def test_dtypes(self):
        a = dslab.MlaArgs(**ARGS)
        self.raises(TypeError, ["x", "int64", "float64 or float32"], dslab.mla_forward, np.zeros((1, 2, 16), dtype=np.int64),
                    full_weights(), a)
        self.raises(TypeError, ["wo.weight", "float32", "expected float64"], dslab.mla_forward, np.zeros((1, 2, 16)),
                    full_weights() | {"wo.weight": np.ones((16, 8), dtype=np.float32)}, a)
        self.raises(TypeError, ["targets", "integer"], dslab.cross_entropy_forward, np.zeros((2, 3)), np.zeros(2))
        self.raises(TypeError, ["x", "float32"], dslab.fp8_quantize, np.zeros((4, 4)))
        self.raises(TypeError, ["x", "None"], dslab.rms_norm_forward, None, np.ones(3))

    def test_shapes(self):
        a = dslab.MlaArgs(**ARGS)
        self.raises(ValueError, ["x", "(1, 2, 15)", "dim=16"], dslab.mla_forward, np.zeros((1, 2, 15)), full_weights(), a)
        self.raises(ValueError, ["wq_a.weight", "(8, 15)", "(8, 16)"], dslab.mla_forward, np.zeros((1, 2, 16)),
                    full_weights() | {"wq_a.weight": np.ones((8, 15))}, a)
        _, ctx = dslab.mla_forward(np.zeros((1, 2, 16)), full_weights(), a)
        self.raises(ValueError, ["dout", "(1, 3, 16)", "seq_len=2"], dslab.mla_backward, np.zeros((1, 3, 16)), ctx)
        self.raises(ValueError, ["weight", "dim=4"], dslab.rms_norm_forward, np.zeros((3, 4)), np.ones(5))
        self.raises(ValueError, ["k", "n_kv_heads"], dslab.attention_forward, np.zeros((1, 3, 4, 2)),
                    np.zeros((1, 3, 3, 2)), np.zeros((1, 3, 3, 2)))
        self.raises(ValueError, ["targets[1] = 9", "vocab_size"], dslab.cross_entropy_forward, np.zeros((2, 3)),
                    np.array([0, 9]))
        self.raises(ValueError, ["scales"], dslab.fp8_dequantize, np.zeros((4, 256), dtype=np.uint16),
                    np.ones((4, 1), dtype=np.float32))

    def test_names_and_values(self):
        a = dslab.MlaArgs(**ARGS)
        self.raises(ValueError, ["lacks 'wo.weight'"], dslab.mla_forward, np.zeros((1, 2, 16)),
                    {k: v for k, v in full_weights().items() if k != "wo.weight"}, a)
        self.raises(ValueError, ["'wk.weight'", "names no tensor", "wq_a.weight"], dslab.mla_forward,
                    np.zeros((1, 2, 16)), full_weights() | {"wk.weight": np.ones(3)}, a)
        self.raises(TypeError, ["no field 'dimm'", "dim, n_heads"], dslab.MlaArgs, dimm=3)
        self.raises(ValueError, ["rope = 'yarn'", "decoupled, none, full"], setattr, a, "rope", "yarn")
        self.raises(ValueError, ["score_func", "softmax, sigmoid"], dslab.MoeArgs, score_func="relu")
        self.raises(ValueError, ["offsets must not decrease"], dslab.policy_loss, np.array([0, 3, 2]), np.zeros(2),
                    np.zeros(2), np.zeros(2), np.zeros(2))
        self.raises(ValueError, ["group_size", "divide"], dslab.group_advantages, np.ones(5), 2)
        self.raises(ValueError, ["format", "e4m3"], dslab.fp8_encode, np.zeros(2, dtype=np.float32), "e9m9")
        self.raises(ValueError, ["n_heads"], dslab.mla_forward, np.zeros((1, 2, 16)), full_weights(),
                    dslab.MlaArgs(**(ARGS | {"n_heads": 0})))
        bad = dslab.ModelArgs(dim=30, n_heads=4)
        self.raises(ValueError, ["dim"], dslab.Model, bad)
        self.raises(ValueError, ["dtype", "float64, float32"], dslab.Model, dslab.ModelArgs(), dtype="float16")
        decoder = dslab.MlaDecoder(full_weights(), a, max_len=1)
        decoder.step(np.zeros(16))
        self.raises(ValueError, ["cache is full", "max_len = 1"], decoder.step, np.zeros(16))

    def test_files(self):
        self.raises(ValueError, ["/nonexistent.toml"], dslab.ModelArgs.from_config, "/nonexistent.toml")
        self.raises(ValueError, ["/nonexistent.json"], dslab.ModelArgs.from_deepseek_json, "/nonexistent.json")
        self.raises(ValueError, ["/nonexistent.h5"], dslab.load_metrics, "/nonexistent.h5")
        self.raises(ValueError, ["/nonexistent.h5"], dslab.Model.from_result, "/nonexistent.h5")


if __name__ == "__main__":
    unittest.main()
