"""Multi-Token Prediction from Python: the projection layer and the chain of modules.

1. dslab.mtp_proj_forward / backward (and dslab.autograd.mtp_proj) against the same layer
   written from torch primitives after DeepSeek-V3's MTP (enorm, hnorm, the embedding's half
   of eh_proj first), outputs and every gradient, and against torch.autograd.gradcheck.
2. dslab.Model.mtp_forward on hidden() of a forward gives that forward's loss_parts()['mtp']
   and mtp_losses() bitwise; mtp_backward gives the modules the gradients of the whole
   model's backward bitwise (only the MTP loss reaches them), and its d/d hidden matches
   central differences of mtp_forward.
3. mtp_logits (drafting): the cross-entropy of module 1's logits on one sequence is L^1_MTP
   of Eq. (25) times T/(T-1), computed here from the logits.
"""
import unittest

import numpy as np
import torch

import dslab
import dslab.autograd as da

F64 = torch.float64
torch.manual_seed(5)


def proj_weights(dim, grad=True):
    w = {"enorm.weight": 1 + 0.1 * torch.randn(dim, dtype=F64),
         "hnorm.weight": 1 + 0.1 * torch.randn(dim, dtype=F64),
         "eh_proj.weight": 0.3 * torch.randn(dim, 2 * dim, dtype=F64)}
    return {k: v.requires_grad_(grad) for k, v in w.items()}


def torch_rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def torch_mtp_proj(e, h, w, eps):
    cat = torch.cat([torch_rms_norm(e, w["enorm.weight"], eps), torch_rms_norm(h, w["hnorm.weight"], eps)], -1)
    return cat @ w["eh_proj.weight"].T


def dense_args(depth=2, **kw):
    base = dict(vocab_size=24, dim=16, n_layers=1, n_heads=2, n_kv_heads=2, inter_dim=24, max_seq_len=12,
                attn="mla",
                mla=dslab.MlaArgs(q_lora_rank=8, kv_lora_rank=8, qk_nope_head_dim=4, qk_rope_head_dim=4,
                                  v_head_dim=4),
                mtp=dslab.MtpArgs(depth=depth, lambda_=0.3))
    base.update(kw)
    return dslab.ModelArgs(**base)


def moe_args():
    return dense_args(n_layers=2, n_dense_layers=1,
                      moe=dslab.MoeArgs(moe_inter_dim=8, n_routed_experts=4, n_shared_experts=1,
                                        n_activated_experts=2),
                      balance=dslab.BalanceArgs(seq_aux_alpha=0.01))


def window(rng, args, batch, seq_len):
    ids = rng.integers(0, args.vocab_size, size=(batch, seq_len + 1))
    return ids[:, :-1].copy(), ids[:, 1:].copy()


class Projection(unittest.TestCase):
    def test_matches_torch_written_layer(self):
        for shape in ((5, 8), (2, 3, 8)):
            e = torch.randn(*shape, dtype=F64, requires_grad=True)
            h = torch.randn(*shape, dtype=F64, requires_grad=True)
            w = proj_weights(shape[-1])
            theirs = torch_mtp_proj(e, h, w, 1e-6)
            ours = da.mtp_proj(e, h, w)
            self.assertEqual(ours.shape, theirs.shape)
            r = torch.randn_like(theirs)
            got = torch.autograd.grad((ours * r).sum(), [e, h, *w.values()])
            want = torch.autograd.grad((theirs * r).sum(), [e, h, *w.values()])
            self.assertLess((ours - theirs).abs().max().item(), 1e-13)
            for g, t, name in zip(got, want, ["e", "h", *w]):
                self.assertLess((g - t).abs().max().item() / t.abs().max().item(), 1e-13, name)

    def test_gradcheck_and_float32(self):
        e = torch.randn(3, 4, dtype=F64, requires_grad=True)
        h = torch.randn(3, 4, dtype=F64, requires_grad=True)
        w = proj_weights(4)
        names = list(w)
        self.assertTrue(torch.autograd.gradcheck(
            lambda e, h, *ws: da.mtp_proj(e, h, dict(zip(names, ws))), (e, h, *w.values())))
        x, ctx = dslab.mtp_proj_forward(e.detach().float().numpy(), h.detach().float().numpy(),
                                        {k: v.detach().float().numpy() for k, v in w.items()})
        self.assertEqual(x.dtype, np.float32)
        de, dh, g = dslab.mtp_proj_backward(np.ones_like(x), ctx)
        self.assertEqual((de.dtype, dh.dtype, g["eh_proj.weight"].dtype), (np.float32,) * 3)

    def test_bad_input_raises(self):
        w = {k: v.detach().numpy() for k, v in proj_weights(4, grad=False).items()}
        e = np.zeros((3, 4))
        with self.assertRaisesRegex(ValueError, "h has shape"):
            dslab.mtp_proj_forward(e, np.zeros((3, 5)), w)
        with self.assertRaisesRegex(TypeError, "float64"):
            dslab.mtp_proj_forward(e, np.zeros((3, 4), np.float32), w)
        with self.assertRaisesRegex(ValueError, "lacks 'hnorm.weight'"):
            dslab.mtp_proj_forward(e, e, {k: v for k, v in w.items() if k != "hnorm.weight"})
        with self.assertRaisesRegex(ValueError, "eh_proj.weight"):
            dslab.mtp_proj_forward(e, e, dict(w, **{"eh_proj.weight": np.zeros((4, 4))}))
        _, ctx = dslab.mtp_proj_forward(e, e, w)
        with self.assertRaisesRegex(ValueError, "dx has shape"):
            dslab.mtp_proj_backward(np.zeros((4, 4)), ctx)


class Chain(unittest.TestCase):
    def test_equals_the_whole_models_loss_and_gradients(self):
        rng = np.random.default_rng(1)
        for args, dtype in ((dense_args(), "float64"), (moe_args(), "float64"), (moe_args(), "float32")):
            tokens, targets = window(rng, args, 2, 7)
            model = dslab.Model(args, dtype=dtype, seed=4)
            model.forward(tokens, targets)
            parts, losses = model.loss_parts(), model.mtp_losses()
            model.zero_grad()
            model.backward()
            whole = {k: v for k, v in model.grads().items() if k.startswith("mtp.")}
            hidden = model.hidden()
            self.assertEqual(hidden.shape, (2, 7, args.dim))

            alone = dslab.Model(args, dtype=dtype, seed=4)
            loss = alone.mtp_forward(hidden, tokens, targets)
            self.assertEqual(loss, parts["mtp"], dtype)
            self.assertEqual(alone.mtp_losses(), losses)
            alone.zero_grad()
            dhidden = alone.mtp_backward()
            self.assertEqual(dhidden.shape, hidden.shape)
            self.assertEqual(dhidden.dtype, hidden.dtype)
            mine = {k: v for k, v in alone.grads().items() if k.startswith("mtp.")}
            self.assertEqual(sorted(mine), sorted(whole))
            for k in whole:
                self.assertTrue(np.array_equal(mine[k], whole[k]), f"{dtype} {k}")
            self.assertTrue(np.any(alone.grads()["head.weight"] != 0))

    def test_hidden_gradient_matches_finite_differences(self):
        rng = np.random.default_rng(2)
        args = dense_args()
        tokens, targets = window(rng, args, 2, 6)
        model = dslab.Model(args, seed=7)
        model.forward(tokens, targets)
        hidden = model.hidden()
        model.mtp_forward(hidden, tokens, targets)
        dhidden = model.mtp_backward()
        step = 1e-5
        for flat in rng.choice(hidden.size, size=12, replace=False):
            idx = np.unravel_index(flat, hidden.shape)
            plus, minus = hidden.copy(), hidden.copy()
            plus[idx] += step
            minus[idx] -= step
            fd = (model.mtp_forward(plus, tokens, targets) - model.mtp_forward(minus, tokens, targets)) / (2 * step)
            self.assertAlmostEqual(dhidden[idx], fd, delta=1e-8 + 1e-6 * abs(fd), msg=str(idx))
        # positions the modules never read (the last `depth` of each sequence) get no gradient
        self.assertTrue(np.all(dhidden[:, -1, :] == 0))

    def test_drafting_logits_give_eq_25(self):
        rng = np.random.default_rng(3)
        args = dense_args(depth=1)
        tokens, targets = window(rng, args, 1, 8)
        model = dslab.Model(args, seed=2)
        model.forward(tokens, targets)
        want = model.mtp_losses()[0]
        model.forward(tokens)
        logits = model.mtp_logits(1, tokens[0, 1:])
        self.assertEqual(logits.shape, (7, args.vocab_size))
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        ce = -logp[np.arange(7), targets[0, 1:]].mean()
        self.assertAlmostEqual(ce * 7 / 8, want, delta=1e-12)

    def test_bad_input_raises(self):
        rng = np.random.default_rng(4)
        args = dense_args()
        tokens, targets = window(rng, args, 1, 6)
        model = dslab.Model(args)
        with self.assertRaisesRegex(ValueError, "call forward first"):
            model.hidden()
        with self.assertRaisesRegex(ValueError, "call mtp_forward first"):
            model.mtp_backward()
        with self.assertRaisesRegex(ValueError, "hidden has shape"):
            model.mtp_forward(np.zeros((1, 6, 15)), tokens, targets)
        with self.assertRaisesRegex(ValueError, "must exceed mtp.depth"):
            model.mtp_forward(np.zeros((1, 2, 16)), tokens[:, :2], targets[:, :2])
        with self.assertRaisesRegex(ValueError, "targets has shape"):
            model.mtp_forward(np.zeros((1, 6, 16)), tokens, targets[:, :5])
        with self.assertRaisesRegex(ValueError, "mtp.depth = 0"):
            dslab.Model(dense_args(depth=0)).mtp_forward(np.zeros((1, 6, 16)), tokens, targets)
        model.forward(tokens)
        with self.assertRaisesRegex(ValueError, "allowed: 1..2"):
            model.mtp_logits(3, tokens[0, 1:])


if __name__ == "__main__":
    unittest.main()
