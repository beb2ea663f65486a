"""dslab.autograd against oracles nobody here wrote the numbers of.

1. Finite differences: torch.autograd.gradcheck drives each wrapper (MLA, MoE,
   RMSNorm, RoPE with YaRN, GQA attention, cross-entropy, GRPO's loss) in float64
   and compares dslab's C++ backward with central differences of dslab's forward.
2. PyTorch autograd: the same MLA written from torch primitives after DeepSeek's
   inference/model.py (tests/oracle/mla_oracle.py) and GRPO's Eq. (28) written in
   torch here give the same outputs and gradients, normwise to 1e-12 (both sides
   compute the same function in float64 along different operation orders).
"""
import math
import os
import sys
import unittest

import numpy as np
import torch

import dslab
import dslab.autograd as da

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "oracle"))
import mla_oracle  # noqa: E402  (model.py's MLA in torch)

torch.manual_seed(0)
F64 = torch.float64


def rand(*shape, scale=1.0, grad=True):
    return (scale * torch.randn(*shape, dtype=F64)).requires_grad_(grad)


def mla_weights(a):
    r = a.qk_nope_head_dim + a.qk_rope_head_dim
    w = {}
    if a.q_lora_rank:
        w["wq_a.weight"] = rand(a.q_lora_rank, a.dim, scale=0.3)
        w["q_norm.weight"] = (1 + 0.1 * torch.randn(a.q_lora_rank, dtype=F64)).requires_grad_()
        w["wq_b.weight"] = rand(a.n_heads * r, a.q_lora_rank, scale=0.3)
    else:
        w["wq.weight"] = rand(a.n_heads * r, a.dim, scale=0.3)
    w["wkv_a.weight"] = rand(a.kv_lora_rank + a.qk_rope_head_dim, a.dim, scale=0.3)
    w["kv_norm.weight"] = (1 + 0.1 * torch.randn(a.kv_lora_rank, dtype=F64)).requires_grad_()
    w["wkv_b.weight"] = rand(a.n_heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank, scale=0.3)
    w["wo.weight"] = rand(a.dim, a.n_heads * a.v_head_dim, scale=0.3)
    return w


def small_mla(**kw):
    base = dict(dim=16, n_heads=2, q_lora_rank=8, kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4,
                v_head_dim=4)
    base.update(kw)
    return dslab.MlaArgs(**base)


def normwise(a, b):
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-300)


class FiniteDifferences(unittest.TestCase):
    def check(self, fn, *inputs):
        self.assertTrue(torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5))

    def test_mla_each_position_encoding_and_yarn(self):
        for kw in (dict(rope="decoupled", max_seq_len=32, original_seq_len=4, rope_factor=4.0, mscale=0.7),
                   dict(rope="full", q_lora_rank=0), dict(rope="none")):
            a = small_mla(**kw)
            w = mla_weights(a)
            names = list(w)
            self.check(lambda x, *ws: da.mla(x, dict(zip(names, ws)), a), rand(2, 5, 16), *w.values())

    def test_moe_with_sigmoid_groups_and_shared_expert(self):
        a = dslab.MoeArgs(dim=6, moe_inter_dim=4, n_routed_experts=4, n_shared_experts=1, n_activated_experts=2,
                          n_expert_groups=2, n_limited_groups=1, route_scale=2.5, score_func="sigmoid")
        w = {"gate.weight": rand(4, 6, scale=0.5)}
        for e in range(4):
            for k, s in (("w1", (4, 6)), ("w2", (6, 4)), ("w3", (4, 6))):
                w[f"experts.{e}.{k}.weight"] = rand(*s, scale=0.5)
        for k, s in (("w1", (4, 6)), ("w2", (6, 4)), ("w3", (4, 6))):
            w[f"shared_experts.{k}.weight"] = rand(*s, scale=0.5)
        names = list(w)
        bias = torch.tensor([0.1, -0.2, 0.0, 0.3], dtype=F64)
        self.check(lambda x, *ws: da.moe(x, dict(zip(names, ws)), a, bias), rand(5, 6), *w.values())

    def test_rms_norm_rope_attention_cross_entropy(self):
        self.check(lambda x, g: da.rms_norm(x, g, 1e-6), rand(3, 4, 8), rand(8))
        self.check(lambda x: da.rope(x, theta=100.0, original_seq_len=3, rope_factor=8.0), rand(2, 6, 2, 8))
        self.check(lambda q, k, v: da.attention(q, k, v), rand(2, 5, 4, 6), rand(2, 5, 2, 6), rand(2, 5, 2, 3))
        targets = torch.tensor([1, 0, 4, 4, 2])
        self.check(lambda z: da.cross_entropy(z, targets), rand(5, 7, scale=2.0))

    def test_grpo_policy_loss(self):
        offsets = torch.tensor([0, 3, 7, 8, 12])
        old = -1.0 + 0.3 * torch.randn(12, dtype=F64)
        ref = old + 0.1 * torch.randn(12, dtype=F64)
        adv = torch.randn(12, dtype=F64)
        for agg in ("seq_mean_token_mean", "token_mean", "dr_grpo_trl"):
            args = dslab.GrpoArgs(aggregation=agg, beta=0.04, clip_eps_high=0.28)
            logp = (old + 0.05 * torch.randn(12, dtype=F64)).requires_grad_()
            self.check(lambda lp: da.policy_loss(lp, old, ref, adv, offsets, args, 2), logp)


class AgainstPyTorch(unittest.TestCase):
    def test_mla_matches_model_py_written_in_torch(self):
        theta = 10000.0
        for kw in (dict(rope="decoupled"), dict(rope="decoupled", max_seq_len=64, original_seq_len=8,
                                                 rope_factor=4.0, mscale=0.7),
                   dict(rope="full", q_lora_rank=0), dict(rope="none")):
            a = small_mla(dim=24, n_heads=3, kv_lora_rank=12, qk_nope_head_dim=8, qk_rope_head_dim=4,
                          v_head_dim=6, **kw)
            w = mla_weights(a)
            x = rand(2, 7, 24)
            r = torch.randn(2, 7, 24, dtype=F64)
            ours = da.mla(x, w, a, rope_theta=theta)
            (ours * r).sum().backward()
            ours_grads = {n: t.grad.clone() for n, t in w.items()} | {"x": x.grad.clone()}
            for t in list(w.values()) + [x]:
                t.grad = None
            attrs = {f: getattr(a, f) for f in dslab.MlaArgs.fields} | {"rope_theta": theta}
            torch_out = mla_oracle.mla(x, lambda name: w[name + ".weight"], attrs)
            (torch_out * r).sum().backward()
            self.assertLess(normwise(ours, torch_out), 1e-12, kw)
            for n, t in list(w.items()) + [("x", x)]:
                self.assertLess(normwise(ours_grads[n], t.grad), 1e-12, f"{kw} grad {n}")

    def test_grpo_loss_matches_eq_28_in_torch(self):
        """Eq. (28): 1/G sum_i 1/|o_i| sum_t [min(rho A, clip(rho, 1-eps, 1+eps) A) - beta D_KL], with
        D_KL = pi_ref/pi - log(pi_ref/pi) - 1 and rho = pi/pi_old; the loss is its negative."""
        offsets = [0, 4, 9, 11]
        old = -1.0 + 0.3 * torch.randn(11, dtype=F64)
        ref = old + 0.1 * torch.randn(11, dtype=F64)
        adv = torch.randn(11, dtype=F64)
        beta, eps = 0.04, 0.2
        logp = (old + 0.3 * torch.randn(11, dtype=F64)).requires_grad_()
        ours = da.policy_loss(logp, old, ref, adv, torch.tensor(offsets), dslab.GrpoArgs(beta=beta, clip_eps=eps))
        ours.backward()
        ours_grad = logp.grad.clone()
        logp.grad = None
        rho = torch.exp(logp - old)
        surrogate = torch.minimum(rho * adv, rho.clamp(1 - eps, 1 + eps) * adv)
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        per_token = surrogate - beta * kl
        objective = sum(per_token[s:e].mean() for s, e in zip(offsets, offsets[1:])) / (len(offsets) - 1)
        (-objective).backward()
        self.assertLess(abs(ours.item() + objective.item()), 1e-14)
        self.assertLess(normwise(ours_grad, logp.grad), 1e-12)

    def test_float32_wrappers_keep_float32(self):
        x = torch.randn(2, 3, 8, dtype=torch.float32, requires_grad=True)
        g = torch.ones(8, dtype=torch.float32, requires_grad=True)
        y = da.rms_norm(x, g)
        self.assertEqual(y.dtype, torch.float32)
        y.sum().backward()
        self.assertEqual(x.grad.dtype, torch.float32)
        expected = x.detach() / torch.sqrt((x.detach() ** 2).mean(-1, keepdim=True) + 1e-6)
        self.assertLess(normwise(y.detach(), expected), 1e-6)


if __name__ == "__main__":
    unittest.main()
