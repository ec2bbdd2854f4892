"""Simple bounds ``lower <= x <= upper`` for the trust-region least-squares methods.

A projected trust-region step, for every problem of the batch (Bertsekas,
"Projected Newton methods for optimization problems with simple
constraints", SIAM J. Control Optim. 1982, for the active set; Moré,
"Trust regions and projected gradients", 1988, for the projected Cauchy step):

1. variables at a bound whose gradient pushes outward are held fixed
   (:func:`free_variables`); the subproblem is solved over the others;
2. the trial point is the projection ``P(x + p)`` onto the box;
3. two more candidates guarantee the decrease that projection may have spoiled:
   the model's step cut back to the first bound it meets, which lands that
   variable on its bound for the next step to hold (:func:`truncated_point`), and
   the Cauchy step along the free part of ``-g``, cut likewise
   (:func:`bounded_cauchy_point`); of the three, the step with the largest
   predicted decrease is taken.

First-order optimality is the gradient over the free variables.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.solve.lsq.model import GaussNewtonModel

__all__ = ["bounded_cauchy_point", "free_variables", "on_bounds", "project", "truncated_point"]


def project(x: Tensor, lower: Tensor | None, upper: Tensor | None) -> Tensor:
    """``clamp(x, lower, upper)``; the identity without bounds."""
    if lower is None or upper is None:
        return x
    return torch.minimum(torch.maximum(x, lower), upper)


def free_variables(
    x: Tensor,
    g: Tensor,
    lower: Tensor | None,
    upper: Tensor | None,
    scale: Tensor | None = None,
) -> Tensor | None:
    """``(B, n)`` mask of variables a descent step may move (``None`` without bounds).

    A variable is blocked where ``g`` pushes it out of the box and it lies on the
    bound; with the scales ``D`` ``(B, n)`` also where it lies within rounding of
    the bound in the scaled norm, ``D_i |x_i - bound_i| <= eps |D x|``. Steps land
    such near-misses (``1e-18`` above a bound of 0): taken as free, the variable's
    next step would be cut by projection to nothing, its Cauchy step too, and the
    radius would collapse onto a point that is not stationary.
    """
    if lower is None or upper is None:
        return None
    at_lower, at_upper = on_bounds(x, lower, upper, scale)
    blocked = (at_lower & (g > 0)) | (at_upper & (g < 0))
    return ~blocked


def on_bounds(
    x: Tensor, lower: Tensor, upper: Tensor, scale: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(at_lower, at_upper)``: on the bound, or within rounding of it in the scaled norm."""
    at_lower, at_upper = x <= lower, x >= upper
    if scale is not None:
        eps = torch.finfo(x.dtype).eps
        tol = eps * torch.linalg.vector_norm(scale * x, dim=-1, keepdim=True)
        at_lower = at_lower | (scale * (x - lower) <= tol)
        at_upper = at_upper | (scale * (upper - x) <= tol)
    return at_lower, at_upper


def _cut(x: Tensor, dx: Tensor, t_max: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``x + t dx`` for the largest ``t <= t_max`` in the box, with the variables whose
    bound stops it set on that bound exactly (``x + t dx`` lands a rounding error off it,
    and a variable left 1e-18 inside would look free to the next step)."""
    room = torch.where(dx > 0, upper - x, lower - x)
    t_each = torch.where(dx != 0, room / torch.where(dx != 0, dx, 1.0), torch.inf)
    t_each = torch.clamp(t_each, min=0.0)
    t = torch.minimum(t_max, t_each.amin(dim=-1))
    t = torch.where(torch.isfinite(t), t, torch.zeros_like(t))
    point = project(x + t[:, None] * dx, lower, upper)
    reached = (dx != 0) & (t_each <= t[:, None])
    return torch.where(reached, torch.where(dx > 0, upper, lower), point)


def truncated_point(x: Tensor, u: Tensor, d: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``x + t D^-1 u`` with the largest ``t <= 1`` that stays in the box.

    Along the model's step the model decreases all the way to ``t = 1``, so this
    keeps part of that decrease where projection bends the step into a worse one.
    """
    return _cut(x, u / d, torch.ones_like(x[:, 0]), lower, upper)


def bounded_cauchy_point(
    model: GaussNewtonModel,
    radius: Tensor,
    x: Tensor,
    d: Tensor,
    lower: Tensor,
    upper: Tensor,
) -> Tensor:
    """The model minimizer along ``-g`` within the radius and the box (scaled variables).

    ``model.g`` is zero on the fixed variables; ``d`` are the scales (``x`` moves
    by ``u / d``). Returns the point (see :func:`_cut`). Cost ``O(n^2)`` per problem.
    """
    tiny = torch.finfo(x.dtype).tiny
    # A variable on a bound (see on_bounds) that -g pushes outward stays (a gradient
    # of rounding size can point out even where the free set says otherwise): it
    # would stop the step at t = 0.
    at_lower, at_upper = on_bounds(x, lower, upper, d)
    g = model.g
    g = torch.where((at_upper & (g < 0)) | (at_lower & (g > 0)), 0.0, g)
    gg = (g * g).sum(dim=-1)
    gag = model.curvature(g)
    t_model = torch.where(gag > 0, gg / torch.clamp(gag, min=tiny), torch.inf)
    t_region = radius / torch.clamp(torch.sqrt(gg), min=tiny)
    return _cut(x, -g / d, torch.minimum(t_model, t_region), lower, upper)
