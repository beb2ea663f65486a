"""dslab: the exact CPU reference of DeepSeek-V3's and R1's techniques, from Python.

Every function takes and returns NumPy arrays, float64 or float32 (the dtype of the
first array argument picks the precision; the others must match), and runs dslab's
C++ reference: the same code that `dslab train` and the tests run. Weights travel as
dicts keyed by DeepSeek's inference/model.py state-dict names. Shapes and dtypes are
checked: a wrong one raises ValueError or TypeError naming the argument.

dslab.autograd wraps the layers as torch.autograd.Function objects, so that a PyTorch
module can be diffed against the reference in a few lines.
"""
from ._core import *  # noqa: F401,F403
from ._core import __doc__ as _core_doc  # noqa: F401
