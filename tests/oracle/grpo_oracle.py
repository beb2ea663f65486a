"""PyTorch oracle for the GRPO / PPO objectives (reference/grpo.hpp, reference/ppo.hpp).

usage: /usr/bin/python3 grpo_oracle.py IN.h5 OUT.h5

Each variant is rebuilt in float64 the way TRL and verl write it, on padded
[S, L] tensors with a response mask (TRL trl/trainer/grpo_trainer.py
_compute_loss and loss_type; verl verl/trainer/ppo/core_algos.py
compute_policy_loss_vanilla, agg_loss, kl_penalty, compute_value_loss,
compute_gae_advantage_return, verl/utils/torch_functional.py masked_whiten);
autograd gives the gradients.

IN.h5 groups, one subgroup per case:
  policy/<case>: attributes aggregation, kl (names of reference/grpo.hpp), placement
      ("loss"/"reward"), beta, eps_low, eps_high, clip_c, max_len; datasets offsets
      [S+1] (int), logp, old_logp, ref_logp, adv [N]; for kl = "exact" also
      logits [N, V] and ref_logits [N, V].
  value/<case>: attributes aggregation, value_clip, value_coef, max_len; datasets
      offsets, values, old_values, returns [N].
  gae/<case>: attributes gamma, lam, whiten (0/1); datasets offsets, rewards, values [N].
OUT.h5, same names: policy: loss, dlogp [N] (and dlogits [N, V] for exact);
  value: loss, dvalues [N]; gae: advantages, returns [N].
"""
import sys

try:
    import h5py  # noqa: F401
    import torch
except ImportError as error:
    sys.exit(f"{sys.argv[0]}: {error}. /usr/bin/python3 needs torch and h5py: "
             "run scripts/test, which installs them.")

from oracle_io import DTYPE, attributes, run_cases, run_oracle


def pad(flat, offsets, fill=0.0):
    """[N] packed -> [S, L] padded, L the longest sequence; and the mask."""
    S = len(offsets) - 1
    lengths = [int(offsets[i + 1] - offsets[i]) for i in range(S)]
    L = max(lengths) if lengths else 0
    rows, mask = [], torch.zeros(S, L, dtype=DTYPE)
    for i in range(S):
        n = lengths[i]
        row = flat[int(offsets[i]):int(offsets[i]) + n]
        rows.append(torch.cat([row, torch.full((L - n,) + tuple(flat.shape[1:]), fill, dtype=DTYPE)]))
        mask[i, :n] = 1
    return torch.stack(rows), mask


def unpad(padded, offsets):
    S = len(offsets) - 1
    return torch.cat([padded[i, :int(offsets[i + 1] - offsets[i])] for i in range(S)])


def agg_loss(loss_mat, mask, mode, max_len):
    """TRL / verl aggregation, named as reference/grpo.hpp names them."""
    width = max_len if max_len > 0 else loss_mat.shape[-1]
    if mode == "seq_mean_token_mean":   # TRL "grpo", verl "seq-mean-token-mean"
        return ((loss_mat * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if mode == "token_mean":            # verl "token-mean", TRL "bnpo"
        return (loss_mat * mask).sum() / mask.sum().clamp(min=1.0)
    if mode == "seq_mean_token_sum":    # verl "seq-mean-token-sum"
        return (loss_mat * mask).sum(-1).mean()
    if mode == "dr_grpo_trl":           # TRL "dr_grpo"
        return (loss_mat * mask).sum() / (loss_mat.size(0) * width)
    if mode == "dr_grpo_verl":          # verl "seq-mean-token-sum-norm"
        return (loss_mat * mask).sum() / width
    raise ValueError(f"unknown aggregation {mode}")


def kl_term(kind, logp, old_logp, ref_logp, logits, ref_logits):
    if kind == "k1":
        return logp - ref_logp
    if kind == "k2":
        return 0.5 * (logp - ref_logp).square()
    if kind == "exact":
        lp = torch.log_softmax(logits, dim=-1)
        lq = torch.log_softmax(ref_logits, dim=-1)
        return (lp.exp() * (lp - lq)).sum(-1)
    k3 = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    if kind == "k3":
        return k3
    if kind == "k3_ratio":              # TRL use_bias_correction_kl: per_token_kl * coef_1
        return torch.exp(logp - old_logp) * k3
    raise ValueError(f"unknown KL estimator {kind}")


def run_policy(case, out):
    a = attributes(case)
    offsets = case["offsets"][...].tolist()
    t = {name: torch.tensor(case[name][...], dtype=DTYPE) for name in ("logp", "old_logp", "ref_logp", "adv")}
    logp_flat = t["logp"].clone().requires_grad_(True)
    logits = ref_logits = None
    if a["kl"] == "exact":
        logits = torch.tensor(case["logits"][...], dtype=DTYPE, requires_grad=True)
        ref_logits = torch.tensor(case["ref_logits"][...], dtype=DTYPE)
    logp, mask = pad(logp_flat, offsets)
    old_logp, _ = pad(t["old_logp"], offsets)
    ref_logp, _ = pad(t["ref_logp"], offsets)
    adv, _ = pad(t["adv"], offsets)

    # verl compute_policy_loss_vanilla (= TRL's -min(coef_1 A, coef_2 A)), dual clip for A < 0.
    ratio = torch.exp(logp - old_logp)
    pg_losses1 = -adv * ratio
    pg_losses2 = -adv * torch.clamp(ratio, 1 - a["eps_low"], 1 + a["eps_high"])
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses = clip_pg_losses1
    if a["clip_c"] > 0:
        clip_pg_losses2 = torch.min(-adv * a["clip_c"], clip_pg_losses1)
        pg_losses = torch.where(adv < 0, clip_pg_losses2, clip_pg_losses1)
    per_token = pg_losses
    if a["placement"] == "loss" and a["beta"] != 0:
        if a["kl"] == "exact":
            kl, _ = pad(kl_term("exact", None, None, None, logits, ref_logits), offsets)
        else:
            kl = kl_term(a["kl"], logp, old_logp, ref_logp, None, None)
        per_token = per_token + a["beta"] * kl
    loss = agg_loss(per_token, mask, a["aggregation"], a["max_len"])
    loss.backward()
    out["loss"] = loss.item()
    out["dlogp"] = logp_flat.grad.numpy()
    if logits is not None:
        out["dlogits"] = (logits.grad if logits.grad is not None else torch.zeros_like(logits)).numpy()


def run_value(case, out):
    a = attributes(case)
    offsets = case["offsets"][...].tolist()
    values_flat = torch.tensor(case["values"][...], dtype=DTYPE, requires_grad=True)
    vpreds, mask = pad(values_flat, offsets)
    values, _ = pad(torch.tensor(case["old_values"][...], dtype=DTYPE), offsets)
    returns, _ = pad(torch.tensor(case["returns"][...], dtype=DTYPE), offsets)
    c = a["value_clip"]
    # verl compute_value_loss: clip_by_value is max(min(x, hi), lo).
    vpredclipped = torch.max(torch.min(vpreds, values + c), values - c)
    vf_losses1 = (vpreds - returns) ** 2
    vf_losses2 = (vpredclipped - returns) ** 2
    loss = a["value_coef"] * 0.5 * agg_loss(torch.max(vf_losses1, vf_losses2), mask, a["aggregation"], a["max_len"])
    loss.backward()
    out["loss"] = loss.item()
    out["dvalues"] = values_flat.grad.numpy()


def run_gae(case, out):
    a = attributes(case)
    offsets = case["offsets"][...].tolist()
    rewards, mask = pad(torch.tensor(case["rewards"][...], dtype=DTYPE), offsets)
    values, _ = pad(torch.tensor(case["values"][...], dtype=DTYPE), offsets)
    gamma, lam = a["gamma"], a["lam"]
    # verl compute_gae_advantage_return over right-padded responses.
    nextvalues, lastgaelam, reversed_adv = 0, 0, []
    for t in reversed(range(rewards.shape[-1])):
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam_ = delta + gamma * lam * lastgaelam
        nextvalues = values[:, t] * mask[:, t] + (1 - mask[:, t]) * nextvalues
        lastgaelam = lastgaelam_ * mask[:, t] + (1 - mask[:, t]) * lastgaelam
        reversed_adv.append(lastgaelam)
    advantages = torch.stack(reversed_adv[::-1], dim=1)
    returns = advantages + values
    if a["whiten"]:
        mean = (advantages * mask).sum() / mask.sum()
        var = (((advantages - mean) ** 2) * mask).sum() / mask.sum()
        var = var * mask.sum() / (mask.sum() - 1)      # masked_var(unbiased=True)
        advantages = (advantages - mean) * torch.rsqrt(var + 1e-8)
    out["advantages"] = unpad(advantages, offsets).numpy()
    out["returns"] = unpad(returns, offsets).numpy()


if __name__ == "__main__":
    run_oracle(lambda fin, fout: run_cases(fin, fout, {"policy": run_policy, "value": run_value, "gae": run_gae}))
