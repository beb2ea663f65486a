"""Peer-library oracle for the GRPO / PPO objectives: the same tensors through verl's
and TRL's own functions (pinned in scripts/peers-requirements.txt).

usage: .venv/bin/python peer_grpo.py IN.h5 OUT.h5      (exits 77 when verl or TRL is missing)

verl 0.5.0, verl/trainer/ppo/core_algos.py: compute_policy_loss (clip-higher via
cliprange_low / cliprange_high, dual clip via clip_ratio_c), agg_loss (every
loss_agg_mode), kl_penalty ("k1", "k2", "low_var_kl"), compute_rewards (KL in the
reward), compute_gae_advantage_return, compute_value_loss, compute_grpo_outcome_advantage.
The one line that is not a verl function is dp_actor.update_policy's sum
pg_loss + kl_coef * agg_loss(kl_penalty(...)), rebuilt here as verl writes it.
TRL 0.23.0: GRPOTrainer._compute_loss, run on an instance made without __init__ whose
_get_per_token_logps_and_entropies returns the given log-probabilities (no model): the
k3 KL, the clipped surrogate, loss_type "grpo" / "bnpo" / "dr_grpo" / "dapo" and the
clip_ratio metrics are TRL's own code. TRL's advantages are computed inline in
_generate_and_score_completions and are not callable without a model and a reward function.

All tensors are float64 (torch's default dtype is set to float64, so the scalars verl makes
without a dtype are float64 too). Packed [N] inputs are padded to [S, W] with a mask;
W = max_len when max_len > 0, else the longest sequence.

IN.h5 (one subgroup per case; aggregation and kl as reference/grpo.hpp names them):
  policy/<case>: attrs aggregation, kl, beta, eps_low, eps_high, clip_c, max_len, verl (0/1),
      trl (a TRL loss_type, or ""); datasets offsets [S+1], logp, old_logp, ref_logp, adv [N].
  kl/<case>: datasets logp, ref_logp [N].
  value/<case>: attrs aggregation, value_clip, max_len; datasets offsets, values, old_values, returns.
  gae/<case>: attrs gamma, lam, beta; datasets offsets, rewards [S] (outcome, on the last token),
      logp, ref_logp, values [N].
  adv/<case>: attrs group_size, epsilon, mean_only (0/1); datasets offsets, rewards [S].
OUT.h5, same names:
  policy: verl/{loss, dlogp, pg_clipfrac, pg_clipfrac_lower}; trl/{loss, dlogp, clip_low,
      clip_high, clip_region, kl} (the metrics _compute_loss logs).
  kl: <verl name>/{value, dlogp} for k1, k2, low_var_kl.
  value: loss, dvalues, clipfrac.   gae: token_rewards, advantages, returns [N].   adv: advantages [N].
"""
import collections
import sys
import types

try:
    import numpy as np
    import torch
    from oracle_io import attributes, run_cases, run_oracle
    from verl.trainer.ppo import core_algos
    from trl import GRPOTrainer
    import trl
    import verl
except ImportError as error:
    print(f"{sys.argv[0]}: {error}: run scripts/peers, which makes .venv with verl and TRL")
    sys.exit(77)

torch.set_default_dtype(torch.float64)
DTYPE = torch.float64

VERL_AGG = {"seq_mean_token_mean": "seq-mean-token-mean", "token_mean": "token-mean",
            "seq_mean_token_sum": "seq-mean-token-sum", "dr_grpo_verl": "seq-mean-token-sum-norm",
            # dr_grpo_trl has no verl mode: verl's Dr. GRPO sum / W is answered (= S times ours).
            "dr_grpo_trl": "seq-mean-token-sum-norm"}
VERL_KL = {"k1": "k1", "k2": "k2", "k3": "low_var_kl"}


def lengths_of(case):
    offsets = case["offsets"][...].tolist()
    return offsets, [int(offsets[i + 1] - offsets[i]) for i in range(len(offsets) - 1)]


def pad(flat, offsets, width):
    """[N] packed -> [S, width] zero-padded, and the float mask."""
    S = len(offsets) - 1
    out = torch.zeros(S, width, dtype=DTYPE)
    mask = torch.zeros(S, width, dtype=DTYPE)
    for i in range(S):
        n = int(offsets[i + 1] - offsets[i])
        out[i, :n] = flat[int(offsets[i]):int(offsets[i]) + n]
        mask[i, :n] = 1
    return out, mask


def pad_leaf(values, offsets, width):
    """A leaf [N] that collects the gradient, and its padded [S, width] view."""
    leaf = torch.tensor(values, dtype=DTYPE, requires_grad=True)
    S = len(offsets) - 1
    rows = [torch.cat([leaf[int(offsets[i]):int(offsets[i + 1])],
                       torch.zeros(width - int(offsets[i + 1] - offsets[i]), dtype=DTYPE)]) for i in range(S)]
    mask, _ = pad(torch.ones(len(values), dtype=DTYPE), offsets, width)
    return leaf, torch.stack(rows), mask


def unpad(padded, offsets):
    return torch.cat([padded[i, :int(offsets[i + 1] - offsets[i])] for i in range(len(offsets) - 1)])


def width_of(lengths, max_len):
    return max_len if max_len > 0 else max(lengths, default=0)


def verl_policy(case, a, out):
    offsets, lengths = lengths_of(case)
    W = width_of(lengths, a["max_len"])
    leaf, logp, mask = pad_leaf(case["logp"][...], offsets, W)
    old = pad(torch.tensor(case["old_logp"][...]), offsets, W)[0]
    ref = pad(torch.tensor(case["ref_logp"][...]), offsets, W)[0]
    adv = pad(torch.tensor(case["adv"][...]), offsets, W)[0]
    mode = VERL_AGG[a["aggregation"]]
    # clip_ratio_c must be > 1 in verl and the dual clip is always on: 1e30 turns it off.
    clip_c = a["clip_c"] if a["clip_c"] > 0 else 1e30
    pg_loss, pg_clipfrac, _ppo_kl, pg_clipfrac_lower = core_algos.compute_policy_loss(
        old_log_prob=old, log_prob=logp, advantages=adv, response_mask=mask,
        cliprange=a["eps_low"], cliprange_low=a["eps_low"], cliprange_high=a["eps_high"],
        clip_ratio_c=clip_c, loss_agg_mode=mode)
    loss = pg_loss
    if a["beta"] != 0:  # verl dp_actor.update_policy: policy_loss = pg_loss + kl_loss * kl_coef
        kld = core_algos.kl_penalty(logprob=logp, ref_logprob=ref, kl_penalty=VERL_KL[a["kl"]])
        loss = loss + a["beta"] * core_algos.agg_loss(loss_mat=kld, loss_mask=mask, loss_agg_mode=mode)
    loss.backward()
    out["loss"] = loss.item()
    out["dlogp"] = leaf.grad.numpy()
    out["pg_clipfrac"] = pg_clipfrac.item()
    out["pg_clipfrac_lower"] = pg_clipfrac_lower.item()


def trl_policy(case, a, out):
    offsets, lengths = lengths_of(case)
    W = max(lengths, default=0)
    leaf, logp, mask = pad_leaf(case["logp"][...], offsets, W)
    S = len(lengths)
    adv_seq = torch.tensor([float(case["adv"][offsets[i]]) if lengths[i] else 0.0 for i in range(S)])
    trainer = GRPOTrainer.__new__(GRPOTrainer)  # no model, no datasets: only _compute_loss runs
    trainer._get_per_token_logps_and_entropies = lambda *args, **kwargs: (logp, torch.zeros_like(logp))
    trainer.top_entropy_quantile = 1.0
    trainer.importance_sampling_level = "token"
    trainer.beta = a["beta"]
    trainer.epsilon_low, trainer.epsilon_high = a["eps_low"], a["eps_high"]
    trainer.args = types.SimpleNamespace(delta=None)
    trainer.use_vllm = False
    trainer.loss_type = a["trl"]
    trainer.max_completion_length = width_of(lengths, a["max_len"])
    trainer.current_gradient_accumulation_steps = 1
    trainer.model = types.SimpleNamespace(training=True)
    trainer._metrics = {"train": collections.defaultdict(list)}
    trainer.accelerator = types.SimpleNamespace(gather=lambda x: x, num_processes=1)
    inputs = {
        "prompt_ids": torch.zeros(S, 1, dtype=torch.long), "prompt_mask": torch.ones(S, 1, dtype=torch.long),
        "completion_ids": torch.zeros(S, W, dtype=torch.long), "completion_mask": mask,
        "advantages": adv_seq,
        "old_per_token_logps": pad(torch.tensor(case["old_logp"][...]), offsets, W)[0],
        "ref_per_token_logps": pad(torch.tensor(case["ref_logp"][...]), offsets, W)[0],
        "num_items_in_batch": mask.sum(),  # "dapo": sum / (tokens of the batch / processes)
    }
    loss = trainer._compute_loss(None, inputs)
    loss.backward()
    m = trainer._metrics["train"]
    out["loss"] = loss.item()
    out["dlogp"] = leaf.grad.numpy()
    out["clip_low"] = m["clip_ratio/low_mean"][0]
    out["clip_high"] = m["clip_ratio/high_mean"][0]
    out["clip_region"] = m["clip_ratio/region_mean"][0]
    out["kl"] = m["kl"][0] if "kl" in m else 0.0


def run_policy(case, out):
    a = attributes(case)
    if a["verl"]:
        verl_policy(case, a, out.create_group("verl"))
    if a["trl"]:
        trl_policy(case, a, out.create_group("trl"))


def run_kl(case, out):
    ref = torch.tensor(case["ref_logp"][...])
    for name in ("k1", "k2", "low_var_kl"):
        logp = torch.tensor(case["logp"][...], requires_grad=True)
        k = core_algos.kl_penalty(logprob=logp, ref_logprob=ref, kl_penalty=name)
        k.sum().backward()
        out[f"{name}/value"] = k.detach().numpy()
        out[f"{name}/dlogp"] = logp.grad.numpy()


def run_value(case, out):
    a = attributes(case)
    offsets, lengths = lengths_of(case)
    W = width_of(lengths, a["max_len"])
    leaf, vpreds, mask = pad_leaf(case["values"][...], offsets, W)
    values = pad(torch.tensor(case["old_values"][...]), offsets, W)[0]
    returns = pad(torch.tensor(case["returns"][...]), offsets, W)[0]
    loss, clipfrac = core_algos.compute_value_loss(
        vpreds=vpreds, returns=returns, values=values, response_mask=mask,
        cliprange_value=a["value_clip"], loss_agg_mode=VERL_AGG[a["aggregation"]])
    loss.backward()
    out["loss"] = loss.item()
    out["dvalues"] = leaf.grad.numpy()
    out["clipfrac"] = clipfrac.item()


def outcome_scores(rewards, lengths, W):
    """verl's token_level_scores: the sequence's reward on its last response token."""
    scores = torch.zeros(len(lengths), W, dtype=DTYPE)
    for i, n in enumerate(lengths):
        if n:
            scores[i, n - 1] = float(rewards[i])
    return scores


def run_gae(case, out):
    a = attributes(case)
    offsets, lengths = lengths_of(case)
    W = max(lengths)
    scores = outcome_scores(case["rewards"][...], lengths, W)
    logp, mask = pad(torch.tensor(case["logp"][...]), offsets, W)
    ref = pad(torch.tensor(case["ref_logp"][...]), offsets, W)[0]
    values = pad(torch.tensor(case["values"][...]), offsets, W)[0]
    token_rewards = core_algos.compute_rewards(scores, logp, ref, a["beta"]) * mask
    adv, ret = core_algos.compute_gae_advantage_return(
        token_level_rewards=token_rewards, values=values * mask, response_mask=mask,
        gamma=a["gamma"], lam=a["lam"])
    out["token_rewards"] = unpad(token_rewards, offsets).numpy()
    out["advantages"] = unpad(adv, offsets).numpy()
    out["returns"] = unpad(ret, offsets).numpy()


def run_adv(case, out):
    a = attributes(case)
    offsets, lengths = lengths_of(case)
    W = max(lengths)
    scores = outcome_scores(case["rewards"][...], lengths, W)
    _, mask = pad(torch.ones(offsets[-1], dtype=DTYPE), offsets, W)
    index = np.array([f"prompt{i // a['group_size']}" for i in range(len(lengths))], dtype=object)
    adv, _ = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=scores, response_mask=mask, index=index, epsilon=a["epsilon"],
        norm_adv_by_std_in_grpo=not a["mean_only"])
    out["advantages"] = unpad(adv, offsets).numpy()


def fill(fin, fout):
    fout.attrs["verl_version"] = str(verl.__version__)
    fout.attrs["trl_version"] = str(trl.__version__)
    fout.attrs["torch_version"] = str(torch.__version__)
    run_cases(fin, fout, {"policy": run_policy, "kl": run_kl, "value": run_value, "gae": run_gae, "adv": run_adv})


if __name__ == "__main__":
    run_oracle(fill)
