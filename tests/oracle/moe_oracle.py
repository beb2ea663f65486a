"""PyTorch oracle for the DeepSeekMoE layer and its balance losses (reference/moe.hpp).

usage: /usr/bin/python3 moe_oracle.py IN.h5 OUT.h5

The gate is DeepSeek-V3's inference/model.py Gate.forward, written out line by
line (in float64); the layer loops over experts with index_add as model.py's
MoE.forward does; the balance losses follow the review's Eq. (21)-(23), V2's
device-level and communication losses and V3's sequence-wise loss, with the
token counts f detached. Autograd gives every gradient of
    loss = sum(y * R) + expert + device + comm + sequence losses.

IN.h5: attributes topk, n_groups, topk_groups, sigmoid (0/1), route_scale,
    capacity_factor, has_bias (0/1), alpha_expert, alpha_device, alpha_comm,
    alpha_seq, seq_len, n_devices, max_devices_per_token; datasets x [N, dim],
    gate [E, dim], bias [E], w1 [E, inter, dim], w2 [E, dim, inter],
    w3 [E, inter, dim], shared_w1/w2/w3 (absent without shared experts),
    R [N, dim], device_of_expert [E].
OUT.h5: y, indices [N, K], weights [N, K], losses [4] (expert, device, comm,
    sequence), and the gradients dx, dgate, dw1, dw2, dw3, dshared_w1/2/3.
"""
import math
import sys

try:
    import h5py
    import torch
    import torch.nn.functional as F
except ImportError as error:
    sys.exit(f"{sys.argv[0]}: {error}. /usr/bin/python3 needs torch and h5py: "
             "run scripts/test, which installs them.")

from oracle_io import run_oracle


def gate(x, weight, bias, a):
    """inference/model.py Gate.forward (DeepSeek-V3), float64. The one change:
    masked_fill instead of masked_fill_, since without a bias the in-place fill
    would write into the softmax output that autograd needs."""
    scores = F.linear(x, weight)
    if not a["sigmoid"]:
        scores = scores.softmax(dim=-1)
    else:
        scores = scores.sigmoid()
    original_scores = scores
    if bias is not None:
        scores = scores + bias
    if a["n_groups"] > 1:
        scores = scores.view(x.size(0), a["n_groups"], -1)
        if bias is None:
            group_scores = scores.amax(dim=-1)
        else:
            group_scores = scores.topk(2, dim=-1)[0].sum(dim=-1)
        indices = group_scores.topk(a["topk_groups"], dim=-1)[1]
        mask = scores.new_ones(x.size(0), a["n_groups"], dtype=bool).scatter_(1, indices, False)
        scores = scores.masked_fill(mask.unsqueeze(-1), float("-inf")).flatten(1)
    indices = torch.topk(scores, a["topk"], dim=-1)[1]
    weights = original_scores.gather(1, indices)
    if a["sigmoid"]:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    weights = weights * a["route_scale"]
    return weights, indices, original_scores


def swiglu(x, w1, w2, w3):
    return F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)


def capacity_mask(indices, scores, n_experts, capacity_factor):
    """Each expert keeps its ceil(cf * N * K / E) highest-scoring tokens."""
    keep = torch.ones_like(indices, dtype=torch.bool)
    if capacity_factor <= 0:
        return keep
    n, k = indices.shape
    capacity = math.ceil(capacity_factor * n * k / n_experts)
    for e in range(n_experts):
        tok, slot = torch.where(indices == e)
        if len(tok) <= capacity:
            continue
        order = torch.sort(scores[tok, e].detach(), descending=True, stable=True)[1]
        dropped = order[capacity:]
        keep[tok[dropped], slot[dropped]] = False
    return keep


def fp_loss(indices, p_norm, n_experts, topk, alpha):
    """alpha * sum_i f_i P_i over the given tokens (Eq. (21)-(23)); f detached."""
    t = indices.shape[0]
    load = torch.bincount(indices.flatten(), minlength=n_experts).to(torch.float64)
    f = load * n_experts / (topk * t)
    return alpha * (f * p_norm.mean(dim=0)).sum()


def balance_losses(indices, scores, device_of_expert, a):
    n, k = indices.shape
    n_experts = scores.shape[1]
    p_norm = scores / scores.sum(dim=-1, keepdim=True)
    expert = fp_loss(indices, p_norm, n_experts, k, a["alpha_expert"])
    # V2 device-level: f' = mean of f over a device's experts, P' = sum of P.
    D = a["n_devices"]
    load = torch.bincount(indices.flatten(), minlength=n_experts).to(torch.float64)
    f = load * n_experts / (k * n)
    P = p_norm.mean(dim=0)
    onehot = F.one_hot(device_of_expert, D).to(torch.float64)  # [E, D]
    f_dev = (f @ onehot) / onehot.sum(dim=0)
    P_dev = P @ onehot
    device = a["alpha_device"] * (f_dev * P_dev).sum()
    # V2 communication: f'' = D / (M T) * tokens sent to the device.
    reached = torch.zeros(n, D, dtype=torch.float64)
    reached[torch.arange(n).unsqueeze(1).expand(n, k), device_of_expert[indices]] = 1.0
    f_comm = reached.sum(dim=0) * D / (a["max_devices_per_token"] * n)
    comm = a["alpha_comm"] * (f_comm * P_dev).sum()
    # V3 sequence-wise: Eq. (21)-(23) per sequence, averaged.
    L = a["seq_len"]
    seqs = [fp_loss(indices[b:b + L], p_norm[b:b + L], n_experts, k, a["alpha_seq"])
            for b in range(0, n, L)]
    sequence = torch.stack(seqs).mean()
    return torch.stack([expert, device, comm, sequence])


def run(fin, fout):
    a = {name: value.item() for name, value in fin.attrs.items()}
    t = {name: torch.tensor(fin[name][...], dtype=torch.float64, requires_grad=True)
         for name in ["x", "gate", "w1", "w2", "w3"] + [n for n in ["shared_w1", "shared_w2", "shared_w3"] if n in fin]}
    bias = torch.tensor(fin["bias"][...], dtype=torch.float64) if a["has_bias"] else None
    R = torch.tensor(fin["R"][...], dtype=torch.float64)
    device_of_expert = torch.tensor(fin["device_of_expert"][...], dtype=torch.long)
    x = t["x"]
    n_experts = t["gate"].shape[0]

    weights, indices, scores = gate(x, t["gate"], bias, a)
    keep = capacity_mask(indices, scores, n_experts, a["capacity_factor"])
    weights = weights * keep
    y = torch.zeros_like(x)
    for e in range(n_experts):
        tok, slot = torch.where((indices == e) & keep)
        if len(tok) == 0:
            continue
        out = swiglu(x[tok], t["w1"][e], t["w2"][e], t["w3"][e])
        y = y.index_add(0, tok, out * weights[tok, slot, None])
    if "shared_w1" in t:
        y = y + swiglu(x, t["shared_w1"], t["shared_w2"], t["shared_w3"])
    losses = balance_losses(indices, scores, device_of_expert, a)
    loss = (y * R).sum() + losses.sum()
    loss.backward()

    fout["y"] = y.detach().numpy()
    fout["indices"] = indices.numpy().astype("int32")
    fout["weights"] = weights.detach().numpy()
    fout["losses"] = losses.detach().numpy()
    for name, v in t.items():
        fout["d" + name] = v.grad.numpy()


if __name__ == "__main__":
    run_oracle(run)
