"""Row norms that the solvers compute every iteration."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["max_abs"]

# Above this many entries per row, two reductions beat a temporary |v|.
_LONG_ROW = 4096


def max_abs(v: Tensor) -> Tensor:
    """``max_i |v_i|`` over the last dimension (NaN where a row holds NaN).

    Not ``torch.linalg.vector_norm(v, ord=inf)``: on CPU (torch 2.13) that kernel
    is about ten times slower than ``|v|.amax()`` on the short rows of batched
    problems (0.19 ms against 0.02 ms for 1024 x 10) and than
    ``max(max v, -min v)`` on long ones (2.9 ms against 0.25 ms at n = 1e6),
    which spares the n-sized temporary.
    """
    if v.shape[-1] < _LONG_ROW:
        return v.abs().amax(dim=-1)
    return torch.maximum(v.amax(dim=-1), -v.amin(dim=-1))
