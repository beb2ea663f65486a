"""PyTorch oracle for the AdamW optimizer (reference/adamw.hpp).

usage: /usr/bin/python3 adamw_oracle.py IN.h5 OUT.h5

Runs torch.optim.AdamW in float64 with two parameter groups: matrices
(ndim >= 2) get the weight decay, vectors (RMSNorm gains) get none.

IN.h5: attributes beta1, beta2, eps, weight_decay; dataset lr [steps] (the
    learning rate of each step); params/<name>, the initial values;
    grads/<step>/<name>, the gradient fed to each step.
OUT.h5: params/<step>/<name> after each step; exp_avg/<name> and
    exp_avg_sq/<name> (the first and second moments) after the last step.
"""
import sys

try:
    import h5py
    import torch
except ImportError as error:
    sys.exit(f"{sys.argv[0]}: {error}. /usr/bin/python3 needs torch and h5py: "
             "run scripts/test, which installs them.")

from oracle_io import run_oracle


def run(fin, fout):
    a = {name: value.item() for name, value in fin.attrs.items()}
    params = {name: torch.tensor(fin["params"][name][...], dtype=torch.float64)
              for name in fin["params"]}
    matrices = [p for p in params.values() if p.dim() >= 2]
    vectors = [p for p in params.values() if p.dim() < 2]
    lrs = fin["lr"][...]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": a["weight_decay"]},
         {"params": vectors, "weight_decay": 0.0}],
        lr=float(lrs[0]), betas=(a["beta1"], a["beta2"]), eps=a["eps"])
    for step, lr in enumerate(lrs):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        for name, p in params.items():
            p.grad = torch.tensor(fin[f"grads/{step}/{name}"][...], dtype=torch.float64)
        optimizer.step()
        for name, p in params.items():
            fout[f"params/{step}/{name}"] = p.numpy()
    for name, p in params.items():
        state = optimizer.state[p]
        fout[f"exp_avg/{name}"] = state["exp_avg"].numpy()
        fout[f"exp_avg_sq/{name}"] = state["exp_avg_sq"].numpy()


if __name__ == "__main__":
    run_oracle(run)
