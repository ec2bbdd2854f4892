"""The Gauss-Newton model from Jacobian products only, for problems too large for a dense ``J``.

With ``v -> J v`` and ``u -> J^T u`` (each about one residual pass, see
:meth:`~taylorch.solve.lsq.objective.ResidualObjective.linearize`), the model
``m(u) = f + <g, u> + 0.5 |J u|^2``, ``g = J^T r``, gives the
Levenberg-Marquardt step for a radius ``Delta`` as

    lambda = |g| / Delta,    (J^T J + lambda I) u = -g  by conjugate gradients

so that ``|u| <= |g| / lambda = Delta``: the step lies in the region without
the secular equation (whose derivative would need a factorization); the
radius rule then steers ``lambda`` (the "inexact" LM of Wright & Holt, "An
inexact Levenberg-Marquardt method for large sparse nonlinear least squares",
J. Austral. Math. Soc. B 26, 1985). CG costs two products per iteration and
``O(n)`` memory; it runs batched over the problems
(:func:`taylorch.linalg.cg`). No scaling: ``D = I``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from taylorch.linalg import cg

__all__ = ["OperatorModel", "operator_optimality"]


def operator_optimality(g: Tensor, r: Tensor, jg: Tensor) -> Tensor:
    """``|g|^2 / (|r| |J g|)``: the cosine between ``r`` and ``J g`` (0 where ``g = 0``)."""
    gg = (g * g).sum(dim=-1)
    scale = torch.linalg.vector_norm(r, dim=-1) * torch.linalg.vector_norm(jg, dim=-1)
    return torch.where(scale > 0, gg / torch.where(scale > 0, scale, 1.0), 0.0)


class OperatorModel:
    """``m(u) = f + <g, u> + 0.5 |J u|^2`` from products, for a batch.

    Args:
        r: ``(B, m)``; matvec: ``(B, n) -> (B, m)``; rmatvec: ``(B, m) -> (B, n)``.
        free: ``(B, n)`` mask of the variables that may move, or ``None``.
        rtol, max_iter: CG's stopping rule for the step.
    """

    def __init__(
        self,
        r: Tensor,
        matvec: Callable[[Tensor], Tensor],
        rmatvec: Callable[[Tensor], Tensor],
        free: Tensor | None = None,
        *,
        rtol: float = 1e-6,
        max_iter: int | None = None,
    ):
        self._free = free
        self._mv, self._rmv = matvec, rmatvec
        self.rtol, self.max_iter = rtol, max_iter
        self.g = self._restrict(rmatvec(r))
        self.tiny = torch.finfo(r.dtype).tiny

    def _restrict(self, v: Tensor) -> Tensor:
        return v if self._free is None else v * self._free

    def jvp(self, u: Tensor) -> Tensor:
        return self._mv(self._restrict(u))

    def curvature(self, u: Tensor) -> Tensor:
        """``|J u|^2`` (one product)."""
        return self.jvp(u).pow(2).sum(dim=-1)

    def decrease(self, u: Tensor) -> Tensor:
        return -((self.g * u).sum(dim=-1) + 0.5 * self.curvature(u))

    def levenberg_marquardt(self, radius: Tensor, lam0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(u, lambda, newton)`` with ``lambda = |g| / Delta`` (``newton`` is all false)."""
        gnorm = torch.linalg.vector_norm(self.g, dim=-1)
        lam = gnorm / torch.clamp(radius, min=self.tiny)

        def shifted(v: Tensor) -> Tensor:
            return self._restrict(self._rmv(self.jvp(v))) + lam[:, None] * v

        solved = cg(shifted, -self.g, rtol=self.rtol, max_iter=self.max_iter)
        u = self._restrict(solved.x)
        return u, lam, torch.zeros_like(lam, dtype=torch.bool)

    def cauchy(self, radius: Tensor) -> Tensor:
        gg = (self.g * self.g).sum(dim=-1)
        gag = self.curvature(self.g)
        t = torch.where(gag > 0, gg / torch.clamp(gag, min=self.tiny), torch.inf)
        t = torch.minimum(t, radius / torch.clamp(torch.sqrt(gg), min=self.tiny))
        return -t[:, None] * self.g
