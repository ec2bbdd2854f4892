"""Row norms that the solvers compute every iteration."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["max_abs"]

# Above this many entries per row, two reductions beat torch's fused max-norm kernel.
_LONG_ROW = 4096


def max_abs(v: Tensor) -> Tensor:
    """``max_i |v_i|`` over the last dimension.

    ``torch.linalg.vector_norm(v, ord=inf)`` is one kernel, the cheapest for the
    short rows of batched small problems, but on CPU it is about ten times
    slower per entry than ``max(max v, -min v)``, which wins on long rows
    (at n = 1e6: 0.25 ms against 2.9 ms).
    """
    if v.shape[-1] < _LONG_ROW:
        return torch.linalg.vector_norm(v, ord=torch.inf, dim=-1)
    return torch.maximum(v.amax(dim=-1), -v.amin(dim=-1))
