"""The Polyak step: go as far as the linear model needs to reach the optimal value.

With the optimal value ``f*`` known, the step along a descent direction ``p``
is the one at which the first-order model meets it::

    f + t <g, p> = f*   =>   t = (f - f*) / -<g, p>        (= (f - f*) / |g|^2 for p = -g)

(B. T. Polyak, *Introduction to Optimization*, 1987, Sec. 5.3; Hazan &
Kakade, "Revisiting the Polyak step size", 2019.) For a convex ``f`` the
step with ``p = -g`` never increases the distance to the minimizers,
smooth or not; ``f`` itself need not decrease at every step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from taylorch.solve.line_search import LineSearch, SearchResult
from taylorch.solve.objective import Objective

__all__ = ["PolyakStep"]


#: halvings of a step that left the domain of ``f`` before it is given up (2^-50 ~ 1e-15)
_HALVINGS = 50


class PolyakStep(LineSearch):
    """Take ``t = scale (f - f*) / -<g, p>``; accept it when the new value is finite.

    No step is taken (``ok`` false) where ``f <= f*`` or ``p`` is not a descent
    direction. A step to a non-finite value (outside ``f``'s domain, e.g. of a
    barrier) is halved until the value is finite, one evaluation per halving.
    One value and gradient per step otherwise; the trial ``t0`` is not used.

    Args:
        f_star: the optimal value, a number or a ``(B,)``
            tensor with one value per problem of a batch.
        scale: multiplies the step, in (0, 2) (Polyak's relaxation; 1 is the
            classical step).
    """

    def __init__(self, f_star: float | Tensor, *, scale: float = 1.0):
        if isinstance(f_star, Tensor):
            if f_star.ndim > 1 or not bool(torch.isfinite(f_star).all()):
                raise ValueError(f"f_star must be finite, of shape () or (B,), got {f_star}")
        elif not isinstance(f_star, (int, float)) or not math.isfinite(f_star):
            raise ValueError(f"f_star must be a finite number or a tensor, got {f_star!r}")
        if not isinstance(scale, (int, float)) or not 0 < scale < 2:
            raise ValueError(f"scale must be in (0, 2), got {scale!r}")
        self.f_star = f_star
        self.scale = scale

    def gap(self, f: Tensor) -> Tensor:
        """``f - f*`` per problem."""
        f_star = torch.as_tensor(self.f_star, dtype=f.dtype, device=f.device)
        if f_star.ndim == 1 and f_star.shape != f.shape:
            raise ValueError(
                f"f_star has {f_star.shape[0]} values for a batch of {f.shape[0]} problems"
            )
        return f - f_star

    def search(
        self, objective: Objective, x: Tensor, f: Tensor, g: Tensor, p: Tensor, t0: Tensor
    ) -> SearchResult:
        slope = (g * p).sum(dim=-1)
        gap = self.gap(f)
        movable = (gap > 0) & (slope < 0)
        t = torch.where(movable, self.scale * gap / -slope, torch.zeros_like(f))
        xt = x + t[:, None] * p
        ft, gt = objective.value_and_grad(xt, mask=movable)
        # Outside f's domain (a non-finite value): halve the step until it is back in.
        outside = movable & ~torch.isfinite(ft)
        for _ in range(_HALVINGS):
            if not bool(outside.any()):
                break
            t = torch.where(outside, 0.5 * t, t)
            xt = x + t[:, None] * p
            f_in, g_in = objective.value_and_grad(xt, mask=outside)
            ft = torch.where(outside, f_in, ft)
            gt = torch.where(outside[:, None], g_in, gt)
            outside = outside & ~torch.isfinite(f_in)
        ok = movable & torch.isfinite(ft)
        return SearchResult(
            t=torch.where(ok, t, torch.zeros_like(t)),
            x=torch.where(ok[:, None], xt, x),
            f=torch.where(ok, ft, f),
            g=torch.where(ok[:, None], gt, g),
            ok=ok,
        )
