"""dslab's reference layers as torch.autograd.Function objects.

Each function takes torch tensors (float64 or float32, on the CPU), runs dslab's C++
reference forward, and in backward its C++ reference backward, so a PyTorch module can
be diffed against the exact reference, gradients included, in a few lines:

    import dslab, dslab.autograd
    args = dslab.MlaArgs(dim=64, n_heads=4, q_lora_rank=32, kv_lora_rank=32,
                         qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16)
    weights = dict(my_mla.named_parameters())          # model.py's names
    out = dslab.autograd.mla(x, weights, args)          # x [batch, seq_len, dim]
    out.backward(r)                                     # grads land in my_mla's .grad

Nothing here computes anything itself: every number comes from the C++ reference.
"""
import numpy as np
import torch

from . import _core

__all__ = ["mla", "moe", "mtp_proj", "rms_norm", "rope", "attention", "cross_entropy", "policy_loss"]


def _np(t):
    return t.detach().cpu().contiguous().numpy()


def _torch(a, like):
    return torch.from_numpy(np.ascontiguousarray(a)).to(like.device)


class _Mla(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, args, rope_theta, names, *weights):
        out, context = _core.mla_forward(_np(x), {n: _np(w) for n, w in zip(names, weights)}, args, rope_theta)
        ctx.context, ctx.names = context, names
        return _torch(out, x)

    @staticmethod
    def backward(ctx, dout):
        dx, grads = _core.mla_backward(_np(dout), ctx.context)
        return (_torch(dx, dout), None, None, None) + tuple(_torch(grads[n], dout) for n in ctx.names)


def mla(x, weights, args, rope_theta=10000.0):
    """Multi-head Latent Attention, Eq. (6)-(17): x [batch, seq_len, dim] -> [batch, seq_len, dim].
    weights: {model.py name: tensor} ("wq_a.weight", "q_norm.weight", "wq_b.weight" or "wq.weight",
    "wkv_a.weight", "kv_norm.weight", "wkv_b.weight", "wo.weight")."""
    names = tuple(weights)
    return _Mla.apply(x, args, rope_theta, names, *(weights[n] for n in names))


class _Moe(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, args, bias, names, *weights):
        y, context = _core.moe_forward(_np(x), {n: _np(w) for n, w in zip(names, weights)}, args,
                                       None if bias is None else _np(bias))
        ctx.context, ctx.names = context, names
        return _torch(y, x)

    @staticmethod
    def backward(ctx, dy):
        dx, grads = _core.moe_backward(_np(dy), ctx.context)
        return (_torch(dx, dy), None, None, None) + tuple(_torch(grads[n], dy) for n in ctx.names)


def moe(x, weights, args, bias=None):
    """The DeepSeekMoE layer, Eq. (18)-(20): x [N, dim] -> [N, dim]. weights: {"gate.weight",
    "experts.<e>.w1.weight", ..., "shared_experts.w3.weight": tensor}; bias [E] (Eq. (24)) selects only."""
    names = tuple(weights)
    return _Moe.apply(x, args, bias, names, *(weights[n] for n in names))


class _MtpProj(torch.autograd.Function):
    @staticmethod
    def forward(ctx, e, h, eps, names, *weights):
        x, context = _core.mtp_proj_forward(_np(e), _np(h), {n: _np(w) for n, w in zip(names, weights)}, eps)
        ctx.context, ctx.names = context, names
        return _torch(x, e)

    @staticmethod
    def backward(ctx, dx):
        de, dh, grads = _core.mtp_proj_backward(_np(dx), ctx.context)
        return (_torch(de, dx), _torch(dh, dx), None, None) + tuple(_torch(grads[n], dx) for n in ctx.names)


def mtp_proj(e, h, weights, eps=1e-6):
    """MTP's input projection, Eq. (25): eh_proj [enorm(e) ; hnorm(h)], e = Emb(t_{i+k}) and h = h^{k-1}_i
    [..., dim]. weights: {"enorm.weight", "hnorm.weight", "eh_proj.weight": tensor} (DeepSeek-V3's names)."""
    names = tuple(weights)
    return _MtpProj.apply(e, h, eps, names, *(weights[n] for n in names))


class _RmsNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        xn, wn = _np(x), _np(weight)
        y, rstd = _core.rms_norm_forward(xn, wn, eps)
        ctx.saved = (xn, wn, rstd)
        return _torch(y, x)

    @staticmethod
    def backward(ctx, dy):
        dx, dw = _core.rms_norm_backward(_np(dy), *ctx.saved)
        return _torch(dx, dy), _torch(dw, dy), None


def rms_norm(x, weight, eps=1e-6):
    """RMSNorm over the last axis."""
    return _RmsNorm.apply(x, weight, eps)


class _Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, options):
        ctx.options = options
        return _torch(_core.rope(_np(x), **options), x)

    @staticmethod
    def backward(ctx, dy):
        return _torch(_core.rope(_np(dy), **dict(ctx.options, inverse=True)), dy), None


def rope(x, theta=10000.0, original_seq_len=0, rope_factor=40.0, beta_fast=32.0, beta_slow=1.0):
    """RoPE on x [batch, seq_len, n_heads, head_dim] (model.py's interleaved pairs), YaRN when
    seq_len > original_seq_len > 0."""
    return _Rope.apply(x, dict(theta=theta, original_seq_len=original_seq_len, rope_factor=rope_factor,
                               beta_fast=beta_fast, beta_slow=beta_slow))


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, softmax_scale):
        qn, kn, vn = _np(q), _np(k), _np(v)
        out, probs = _core.attention_forward(qn, kn, vn, softmax_scale)
        ctx.saved = (qn, kn, vn, probs, softmax_scale)
        return _torch(out, q)

    @staticmethod
    def backward(ctx, dout):
        qn, kn, vn, probs, scale = ctx.saved
        dq, dk, dv = _core.attention_backward(_np(dout), qn, kn, vn, probs, scale)
        return _torch(dq, dout), _torch(dk, dout), _torch(dv, dout), None


def attention(q, k, v, softmax_scale=0.0):
    """Causal attention, Eq. (4): q [B, T, H, d], k [B, T, H_kv, d], v [B, T, H_kv, d_v] -> [B, T, H, d_v]."""
    return _Attention.apply(q, k, v, softmax_scale)


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets):
        t = _np(targets)
        loss, probs, _ = _core.cross_entropy_forward(_np(logits), t)
        ctx.saved = (probs, t)
        return torch.tensor(loss, dtype=logits.dtype, device=logits.device)

    @staticmethod
    def backward(ctx, dloss):
        probs, t = ctx.saved
        return _torch(_core.cross_entropy_backward(probs, t, float(dloss)), dloss), None


def cross_entropy(logits, targets):
    """Mean cross-entropy of logits [N, V] against integer targets [N]."""
    return _CrossEntropy.apply(logits, targets)


class _PolicyLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logp, old_logp, ref_logp, advantages, offsets, args, group_size):
        stats, dlogp = _core.policy_loss(_np(offsets), _np(logp), _np(old_logp), _np(ref_logp), _np(advantages),
                                         args, group_size)
        ctx.dlogp = dlogp
        ctx.stats = stats
        return torch.tensor(stats["loss"], dtype=logp.dtype, device=logp.device)

    @staticmethod
    def backward(ctx, dloss):
        return (_torch(ctx.dlogp, dloss).to(dloss.dtype) * dloss, None, None, None, None, None, None)


def policy_loss(logp, old_logp, ref_logp, advantages, offsets, args=None, group_size=1):
    """GRPO's objective, Eq. (28), over a flat batch (offsets [S+1], the rest [N]); differentiable in
    logp (old_logp, ref_logp and advantages are constants, as in the paper)."""
    return _PolicyLoss.apply(logp, old_logp, ref_logp, advantages, offsets,
                             _core.GrpoArgs() if args is None else args, group_size)
