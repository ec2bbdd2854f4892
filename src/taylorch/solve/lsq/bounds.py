"""Simple bounds ``lower <= x <= upper`` for the trust-region least-squares methods.

A projected trust-region step, for every problem of the batch (Bertsekas,
"Projected Newton methods for optimization problems with simple
constraints", SIAM J. Control Optim. 1982, for the active set; Moré,
"Trust regions and projected gradients", 1988, for the projected Cauchy step):

1. variables at a bound whose gradient pushes outward are held fixed
   (:func:`free_variables`); the subproblem is solved over the others;
2. the trial point is the projection ``P(x + p)`` onto the box;
3. a second candidate, the Cauchy step along the free part of ``-g`` cut at
   the first bound it meets (:func:`bounded_cauchy_step`), guarantees the
   decrease that projection may have spoiled: of the two, the step with the
   larger predicted decrease is taken.

First-order optimality is the gradient over the free variables.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.solve.lsq.model import GaussNewtonModel

__all__ = ["bounded_cauchy_step", "free_variables", "project"]


def project(x: Tensor, lower: Tensor | None, upper: Tensor | None) -> Tensor:
    """``clamp(x, lower, upper)``; the identity without bounds."""
    if lower is None or upper is None:
        return x
    return torch.minimum(torch.maximum(x, lower), upper)


def free_variables(
    x: Tensor, g: Tensor, lower: Tensor | None, upper: Tensor | None
) -> Tensor | None:
    """``(B, n)`` mask of variables a descent step may move (``None`` without bounds)."""
    if lower is None or upper is None:
        return None
    blocked = ((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0))
    return ~blocked


def bounded_cauchy_step(
    model: GaussNewtonModel,
    radius: Tensor,
    x: Tensor,
    d: Tensor,
    lower: Tensor,
    upper: Tensor,
) -> Tensor:
    """The model minimizer along ``-g`` within the radius and the box (scaled variables).

    ``model.g`` is zero on the fixed variables; ``d`` are the scales (``x`` moves
    by ``u / d``). Cost ``O(n^2)`` per problem.
    """
    tiny = torch.finfo(x.dtype).tiny
    g = model.g
    gg = (g * g).sum(dim=-1)
    gag = model.curvature(g)
    t_model = torch.where(gag > 0, gg / torch.clamp(gag, min=tiny), torch.inf)
    t_region = radius / torch.clamp(torch.sqrt(gg), min=tiny)
    dx = -g / d  # the change of x per unit t
    room = torch.where(dx > 0, upper - x, lower - x)
    t_box = torch.where(dx != 0, room / torch.where(dx != 0, dx, 1.0), torch.inf).amin(dim=-1)
    t = torch.minimum(torch.minimum(t_model, t_region), torch.clamp(t_box, min=0.0))
    t = torch.where(torch.isfinite(t), t, torch.zeros_like(t))
    return -t[:, None] * g
