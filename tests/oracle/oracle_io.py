"""What every PyTorch oracle script shares: its command line, the HDF5 cases
the C++ test writes, and the answers it reads back.

A script is run as `/usr/bin/python3 SCRIPT IN.h5 OUT.h5`; OUT.h5 is written to
OUT.h5.partial and renamed, so the test sees it whole or not at all.
"""
import os
import sys

import h5py
import torch

DTYPE = torch.float64


def run_oracle(fill):
    """Reads IN.h5, lets fill(fin, fout) write the answers, renames OUT.h5 into place."""
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} IN.h5 OUT.h5")
    in_path, out_path = sys.argv[1:]
    partial = out_path + ".partial"
    with h5py.File(in_path, "r") as fin, h5py.File(partial, "w") as fout:
        fill(fin, fout)
    os.replace(partial, out_path)


def run_cases(fin, fout, runners):
    """Every case of every kind: runners maps a group name of IN.h5 ("model") to
    run(case_in, case_out), whose answers go under the same name in OUT.h5."""
    for kind, run in runners.items():
        for case in fin.get(kind, {}):
            run(fin[kind][case], fout.create_group(f"{kind}/{case}"))


def attributes(group):
    """A group's attributes as Python numbers and strings."""
    return {name: (value.decode() if isinstance(value, bytes) else
                   value if isinstance(value, str) else value.item())
            for name, value in group.attrs.items()}


def leaves(group, skip):
    """Every dataset of the group but `skip`, as float64 tensors that collect gradients."""
    return {name: torch.tensor(group[name][...], dtype=DTYPE, requires_grad=True)
            for name in group if name not in skip}


def check_all_used(group, params):
    """Fails when an input got no gradient: the oracle would check it against nothing."""
    unused = [name for name, p in params.items() if p.grad is None]
    if unused:
        raise ValueError(f"{group.name}: inputs the model does not use: {unused}")


def write_model_answers(out, loss, logits, params):
    """The answers of a whole-model case: loss, logits and grads/<name> of every parameter."""
    out["loss"] = loss.item()
    out["logits"] = logits.detach().numpy()
    for name, p in params.items():
        out[f"grads/{name}"] = p.grad.numpy()
