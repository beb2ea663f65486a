"""dslab's safetensors files against the format's own library, and DeepseekV3 checkpoints.

- Files dslab writes (Model.save_hf, F32 / F64 / BF16) read back with Hugging Face's
  `safetensors` to the model's values; BF16 equals ml_dtypes' round-to-nearest-even.
- Files `safetensors` writes (F32, F64, F16, BF16, F8_E4M3, F8_E5M2 from ml_dtypes arrays) read
  into dslab to ml_dtypes' own float32 values.
- An FP8 checkpoint as V3 publishes it (E4M3 weights, a float32 weight_scale_inv per 128x128
  block) loads to x.float32 * scale, bitwise, as DeepSeek's weight_dequant computes it.
- Malformed files and checkpoints raise ValueError naming the file and the tensor.
Needs .venv-tools (scripts/setup makes it); without it the tests skip, saying why.
"""
import json
import os
import shutil
import struct
import tempfile
import unittest

import numpy as np

import dslab

try:
    import ml_dtypes
    import safetensors.numpy as stn
    HAVE_TOOLS = True
except ImportError:
    HAVE_TOOLS = False
SKIP = "needs safetensors and ml_dtypes from .venv-tools: run scripts/setup"


def tiny_args(dim=32, moe=True, depth=1):
    return dslab.ModelArgs(
        vocab_size=64, dim=dim, n_layers=2, n_heads=2, inter_dim=48, max_seq_len=64, attn="mla",
        mla=dslab.MlaArgs(q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                          original_seq_len=16, rope_factor=4.0, mscale=1.0),
        moe=dslab.MoeArgs(moe_inter_dim=8, n_routed_experts=4 if moe else 0, n_shared_experts=1,
                          n_activated_experts=2, score_func="sigmoid", n_expert_groups=2, n_limited_groups=1,
                          route_scale=2.5),
        n_dense_layers=1, mtp=dslab.MtpArgs(depth=depth),
        balance=dslab.BalanceArgs(bias_update="sign" if moe else "none"))


def with_random_bias(model, seed=0):
    sd = model.state_dict()
    rng = np.random.default_rng(seed)
    for k in sd:
        if k.endswith("gate.bias"):
            sd[k] = rng.normal(0, 0.1, sd[k].shape).astype(sd[k].dtype)
    model.load_state_dict(sd)
    return sd


@unittest.skipUnless(HAVE_TOOLS, SKIP)
class Format(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("DSLAB_TEST_TMP"))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_files_dslab_writes_read_back_with_safetensors(self):
        for dtype, model_dtype in (("F64", "float64"), ("F32", "float32"), ("BF16", "float32")):
            m = dslab.Model(tiny_args(), dtype=model_dtype, seed=2)
            sd = with_random_bias(m)
            out = os.path.join(self.dir, dtype)
            m.save_hf(out, dtype)
            theirs = stn.load_file(os.path.join(out, "model.safetensors"))
            # every parameter under its Hugging Face name; V3's MTP copies of the embedding and head besides
            self.assertEqual(len(theirs), len(sd) + 2)
            ours_by_value = {k: v for k, v in sd.items()}
            back = dslab.Model.from_hf(out, dtype="float64").state_dict()
            for k, v in ours_by_value.items():
                if dtype == "BF16":
                    want = v.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)
                else:
                    want = v.astype(np.float64)
                self.assertTrue(np.array_equal(back[k], want), f"{dtype} {k}")
            self.assertEqual(theirs["model.embed_tokens.weight"].dtype,
                             {"F64": np.float64, "F32": np.float32, "BF16": ml_dtypes.bfloat16}[dtype])
            np.testing.assert_array_equal(theirs["model.embed_tokens.weight"].astype(np.float64),
                                          back["embed.weight"])
            np.testing.assert_array_equal(theirs["model.layers.2.embed_tokens.weight"],
                                          theirs["model.embed_tokens.weight"])

    def test_files_safetensors_writes_read_into_dslab(self):
        rng = np.random.default_rng(1)
        x = (rng.normal(0, 30, (7, 9))).astype(np.float32)
        x[0, :4] = [0.0, -0.0, 1e-40, 65504.0]
        arrays = {"f64": x.astype(np.float64) / 3, "f32": x, "f16": x.astype(np.float16),
                  "bf16": x.astype(ml_dtypes.bfloat16), "e4m3": (x / 4).astype(ml_dtypes.float8_e4m3fn),
                  "e5m2": x.astype(ml_dtypes.float8_e5m2)}
        path = os.path.join(self.dir, "t.safetensors")
        stn.save_file(arrays, path)
        ours = dslab.load_safetensors(path)
        self.assertEqual(sorted(ours), sorted(arrays))
        for k, a in arrays.items():
            want = a if k == "f64" else a.astype(np.float32)
            self.assertEqual(ours[k].dtype, want.dtype, k)
            self.assertTrue(np.array_equal(ours[k].view(np.uint8), want.view(np.uint8)), k)

    def test_fp8_checkpoint_dequantized_as_weight_dequant(self):
        # dim 160: 128 x 128 blocks with edge blocks of 32
        m = dslab.Model(tiny_args(dim=160, depth=0), dtype="float64", seed=4)
        sd = with_random_bias(m)
        m.save_hf(self.dir, "F32")
        tensors = stn.load_file(os.path.join(self.dir, "model.safetensors"))
        expected = {}
        for name, w in list(tensors.items()):
            if w.ndim != 2 or "embed" in name or "lm_head" in name or name.endswith("mlp.gate.weight"):
                continue  # V3 keeps these in BF16; any 2-D weight would do
            rows, cols = w.shape
            s = np.zeros(((rows + 127) // 128, (cols + 127) // 128), dtype=np.float32)
            q = np.zeros(w.shape, dtype=ml_dtypes.float8_e4m3fn)
            for i in range(s.shape[0]):
                for j in range(s.shape[1]):
                    blk = w[128 * i:128 * (i + 1), 128 * j:128 * (j + 1)]
                    s[i, j] = np.float32(max(np.abs(blk).max(), 1e-4) / 448.0)
                    q[128 * i:128 * (i + 1), 128 * j:128 * (j + 1)] = (blk / s[i, j]).astype(ml_dtypes.float8_e4m3fn)
            tensors[name] = q
            tensors[name + "_scale_inv"] = s
            # weight_dequant (DeepSeek's inference/kernel.py): y = x.to(float32) * s, block by block
            expected[name] = q.astype(np.float32) * np.repeat(np.repeat(s, 128, 0), 128, 1)[:rows, :cols]
        self.assertGreater(len(expected), 10)
        stn.save_file(tensors, os.path.join(self.dir, "model.safetensors"), metadata={"format": "pt"})
        back = dslab.Model.from_hf(self.dir, dtype="float64").state_dict()
        by_hf = {dslab.hf_name(k, 2): k for k in sd}
        for name, want in expected.items():
            self.assertTrue(np.array_equal(back[by_hf[name]], want.astype(np.float64)), name)
        # a quantized weight is close to the original, not equal: the check above is not vacuous
        some = next(iter(expected))
        self.assertFalse(np.array_equal(back[by_hf[some]], sd[by_hf[some]]))


@unittest.skipUnless(HAVE_TOOLS, SKIP)
class Malformed(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("DSLAB_TEST_TMP"))
        dslab.Model(tiny_args(), dtype="float32", seed=1).save_hf(self.dir, "F32")
        self.st = os.path.join(self.dir, "model.safetensors")
        self.tensors = stn.load_file(self.st)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def raises(self, fragments, fn, *args):
        with self.assertRaises(ValueError) as cm:
            fn(*args)
        for f in fragments:
            self.assertIn(f, str(cm.exception))

    def rewrite(self, header_bytes=None, length=None, data=b""):
        with open(self.st, "wb") as f:
            f.write(struct.pack("<Q", len(header_bytes) if length is None else length))
            f.write(header_bytes)
            f.write(data)

    def test_bad_headers(self):
        self.rewrite(b"{not json", data=b"")
        self.raises(["model.safetensors", "not JSON"], dslab.load_safetensors, self.st)
        self.rewrite(b"{}", length=10 ** 9)
        self.raises(["header length"], dslab.load_safetensors, self.st)
        self.rewrite(json.dumps({"w": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}}).encode(), data=bytes(8))
        self.raises(["'w'", "F31", "BF16"], dslab.load_safetensors, self.st)
        self.rewrite(json.dumps({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode(), data=bytes(8))
        self.raises(["'w'", "8 bytes for 3 F32"], dslab.load_safetensors, self.st)
        self.rewrite(json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}).encode(), data=bytes(8))
        self.raises(["'w'", "outside"], dslab.load_safetensors, self.st)
        self.rewrite(json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode(), data=bytes(12))
        self.raises(["share data bytes"], dslab.load_safetensors, self.st)
        with open(self.st, "wb") as f:
            f.write(b"abc")
        self.raises(["shorter than"], dslab.load_safetensors, self.st)

    def test_checkpoints_that_do_not_fit_the_config(self):
        name = "model.layers.1.mlp.experts.3.up_proj.weight"
        missing = {k: v for k, v in self.tensors.items() if k != name}
        stn.save_file(missing, self.st, metadata={"format": "pt"})
        self.raises([f"no tensor '{name}'", "layers.1.ffn.experts.3.w3.weight"], dslab.Model.from_hf, self.dir)
        stn.save_file(self.tensors | {"model.layers.0.mlp.bias": np.zeros(3, np.float32)}, self.st)
        self.raises(["'model.layers.0.mlp.bias'", "not part of the model"], dslab.Model.from_hf, self.dir)
        stn.save_file(self.tensors | {name: np.zeros((9, 32), np.float32)}, self.st)
        self.raises([name, "[9, 32]", "[8, 32]"], dslab.Model.from_hf, self.dir)
        stn.save_file(self.tensors | {name: self.tensors[name].astype(ml_dtypes.float8_e4m3fn)}, self.st)
        self.raises([name, "_scale_inv"], dslab.Model.from_hf, self.dir)
        stn.save_file(self.tensors | {name: self.tensors[name].astype(np.int32)}, self.st)
        self.raises([name, "I32"], dslab.Model.from_hf, self.dir)
        copy = "model.layers.2.shared_head.head.weight"
        stn.save_file(self.tensors | {copy: self.tensors[copy] + 1}, self.st)
        self.raises([copy, "differs from the shared head"], dslab.Model.from_hf, self.dir)

    def test_bad_config_json(self):
        cfg_path = os.path.join(self.dir, "config.json")
        cfg = json.load(open(cfg_path))
        for key, value, fragment in (("hidden_act", "gelu", "silu"), ("scoring_func", "softmax", "sigmoid"),
                                     ("num_hidden_layers", 0, "num_hidden_layers"), ("flash", True, "unknown key"),
                                     ("norm_topk_prob", False, "norm_topk_prob")):
            json.dump(cfg | {key: value}, open(cfg_path, "w"))
            self.raises(["config.json", fragment], dslab.Model.from_hf, self.dir)
        bad = cfg | {"rope_scaling": dict(cfg["rope_scaling"], mscale=0.5)}
        json.dump(bad, open(cfg_path, "w"))
        self.raises(["mscale_all_dim"], dslab.Model.from_hf, self.dir)


if __name__ == "__main__":
    unittest.main()
