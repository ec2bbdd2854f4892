"""Robust losses for least squares, and the rescaling that keeps a Gauss-Newton model.

A loss ``rho`` acts on the squared, scaled residual ``z = (r / C)^2`` (``C`` is
``f_scale``); the cost is ``0.5 C^2 sum_i rho(z_i)``, so ``rho(z) = z`` is
ordinary least squares. Each residual's contribution ``l(r) = 0.5 C^2 rho(z)``
has derivatives ``l'(r) = rho'(z) r`` and ``l''(r) = rho'(z) + 2 z rho''(z)``
(the curvature of the loss alone; the residual's own curvature is dropped as
Gauss-Newton does). The quadratic model of ``l(r + delta)`` is that of an
ordinary least-squares term with

    w     = max(rho'(z) + 2 z rho''(z), eps)
    r_eff = rho'(z) r / sqrt(w),    J_eff = sqrt(w) J

(``0.5 (r_eff + sqrt(w) delta)^2 = const + rho' r delta + 0.5 w delta^2``), so
every least-squares method runs unchanged on ``(r_eff, J_eff)`` while the
acceptance tests use the true cost. Cost: ``O(m)`` per evaluation, plus
``O(m n)`` to rescale a dense Jacobian.

Reference: B. Triggs, P. McLauchlan, R. Hartley, A. Fitzgibbon, "Bundle
adjustment: a modern synthesis", Vision Algorithms 1999, Sec. 3.3.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["LOSSES", "Loss"]

# rho(z) -> (rho, rho', rho'') elementwise, for z >= 0.
Rho = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


def _linear(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return z, torch.ones_like(z), torch.zeros_like(z)


def _soft_l1(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    t = 1 + z
    root = torch.sqrt(t)
    return 2 * (root - 1), 1 / root, -0.5 / (t * root)


def _huber(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    inner = z <= 1
    root = torch.sqrt(torch.where(inner, torch.ones_like(z), z))
    rho = torch.where(inner, z, 2 * root - 1)
    d1 = torch.where(inner, torch.ones_like(z), 1 / root)
    d2 = torch.where(inner, torch.zeros_like(z), -0.5 / (root * root * root))
    return rho, d1, d2


def _cauchy(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    t = 1 + z
    return torch.log1p(z), 1 / t, -1 / (t * t)


def _arctan(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    t = 1 + z * z
    return torch.atan(z), 1 / t, -2 * z / (t * t)


LOSSES: dict[str, Rho] = {
    "linear": _linear,
    "soft_l1": _soft_l1,
    "huber": _huber,
    "cauchy": _cauchy,
    "arctan": _arctan,
}


class Loss:
    """A named robust loss with scale ``f_scale`` (``C``); ``"linear"`` is plain least squares."""

    def __init__(self, name: str = "linear", f_scale: float = 1.0):
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {name!r}")
        # Any real scalar: a Python number, a numpy scalar, a one-element tensor.
        if isinstance(f_scale, Tensor) and f_scale.numel() == 1:
            f_scale = f_scale.item()
        if (
            isinstance(f_scale, bool)
            or not isinstance(f_scale, numbers.Real)
            or not math.isfinite(f_scale)
            or not f_scale > 0
        ):
            raise ValueError(f"f_scale must be a finite number > 0, got {f_scale!r}")
        self.name = name
        self.f_scale = float(f_scale)
        self._rho = LOSSES[name]

    @property
    def is_linear(self) -> bool:
        return self.name == "linear"

    def cost(self, r: Tensor) -> Tensor:
        """``0.5 C^2 sum rho((r / C)^2)`` over the last dimension."""
        if self.is_linear:
            return 0.5 * (r * r).sum(-1)
        c2 = self.f_scale**2
        return 0.5 * c2 * self._rho(r * r / c2)[0].sum(-1)

    def weights(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """``(rho'(z), sqrt(w))`` per residual, with ``w`` as in the module docstring."""
        z = r * r / self.f_scale**2
        _, d1, d2 = self._rho(z)
        w = torch.clamp(d1 + 2 * z * d2, min=torch.finfo(r.dtype).eps)
        return d1, torch.sqrt(w)

    def effective(self, r: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(r_eff, sqrt(w))``; ``sqrt(w)`` is ``None`` for the linear loss (``J_eff = J``)."""
        if self.is_linear:
            return r, None
        d1, root_w = self.weights(r)
        return d1 * r / root_w, root_w

    def rescale(self, r: Tensor, jac: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(r_eff, J_eff, sqrt(w))``: :meth:`effective` with the Jacobian rows rescaled too."""
        r_eff, root_w = self.effective(r)
        return r_eff, jac if root_w is None else root_w[..., None] * jac, root_w

    def __repr__(self) -> str:
        return f"Loss({self.name!r}, f_scale={self.f_scale})"
