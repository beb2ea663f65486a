"""PyTorch oracle for YaRN (reference/rope.hpp yarn_frequencies, MlaArgs::softmax_scale).

usage: /usr/bin/python3 yarn_oracle.py IN.h5 OUT.h5

DeepSeek-V3's inference/model.py (precompute_freqs_cis and MLA.__init__),
written again here with torch, line by line, with the dtype as a parameter:
model.py computes the frequencies in float32; the C++ reference, and this
oracle's float64 answers, in double.

IN.h5 holds groups
  yarn/<case>: attributes rope_dim (the rotated width d: qk_rope_head_dim in
      model.py), qk_nope_head_dim, qk_rope_head_dim, rope_theta, rope_factor,
      mscale, max_seq_len, original_seq_len, beta_fast, beta_slow, table_len.
OUT.h5 gets, under the same group names,
  yarn/<case>: freqs [d/2] (float64), freqs_float32 [d/2] (model.py's own dtype),
      cos, sin [table_len, d/2] (float64, of the angles t * freqs), softmax_scale.
"""
import math
import sys

try:
    import h5py
    import torch
except ImportError as error:
    sys.exit(f"{sys.argv[0]}: {error}. /usr/bin/python3 needs torch and h5py: "
             "run scripts/test, which installs them.")

from oracle_io import attributes, run_cases, run_oracle


def yarn_on(a):
    """model.py's condition: the model's max_seq_len beyond the pre-training context.
    Without a max_seq_len attribute (cases that predate YaRN) it is off."""
    return a.get("max_seq_len", 0) > a.get("original_seq_len", 4096)


def precompute_freqs(dim, a, dtype):
    """model.py precompute_freqs_cis up to (not including) the outer product with t:
    the rotation frequency of each of the dim/2 pairs, YaRN-corrected when yarn_on(a)."""
    base, factor = a["rope_theta"], a.get("rope_factor", 1.0)

    def find_correction_dim(num_rotations, dim, base, max_seq_len):
        return dim * math.log(max_seq_len / (num_rotations * 2 * math.pi)) / (2 * math.log(base))

    def find_correction_range(low_rot, high_rot, dim, base, max_seq_len):
        low = math.floor(find_correction_dim(low_rot, dim, base, max_seq_len))
        high = math.ceil(find_correction_dim(high_rot, dim, base, max_seq_len))
        return max(low, 0), min(high, dim - 1)

    def linear_ramp_factor(min, max, dim):
        if min == max:
            max += 0.001
        linear_func = (torch.arange(dim, dtype=dtype) - min) / (max - min)
        return torch.clamp(linear_func, 0, 1)

    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=dtype) / dim))
    if yarn_on(a):
        low, high = find_correction_range(a["beta_fast"], a["beta_slow"], dim, base,
                                          a["original_seq_len"])
        smooth = 1 - linear_ramp_factor(low, high, dim // 2)
        freqs = freqs / factor * (1 - smooth) + freqs * smooth
    return freqs


def freqs_cis(dim, seq_len, a, dtype):
    """exp(i t freqs): [seq_len, dim/2], as model.py's precompute_freqs_cis returns it."""
    angles = torch.outer(torch.arange(seq_len, dtype=dtype), precompute_freqs(dim, a, dtype))
    return torch.polar(torch.ones_like(angles), angles)


def softmax_scale(a):
    """model.py MLA.__init__: qk_head_dim^-0.5, times mscale^2 under yarn_on(a)."""
    scale = (a["qk_nope_head_dim"] + a["qk_rope_head_dim"]) ** -0.5
    if yarn_on(a):
        mscale = 0.1 * a["mscale"] * math.log(a["rope_factor"]) + 1.0
        scale = scale * mscale * mscale
    return scale


def run_case(group, out):
    a = attributes(group)
    dim = a["rope_dim"]
    freqs = precompute_freqs(dim, a, torch.float64)
    angles = torch.outer(torch.arange(a["table_len"], dtype=torch.float64), freqs)
    out["freqs"] = freqs.numpy()
    out["freqs_float32"] = precompute_freqs(dim, a, torch.float32).numpy()
    out["cos"] = torch.cos(angles).numpy()
    out["sin"] = torch.sin(angles).numpy()
    out["softmax_scale"] = softmax_scale(a)


if __name__ == "__main__":
    run_oracle(lambda fin, fout: run_cases(fin, fout, {"yarn": run_case}))
