"""Anderson acceleration (Anderson mixing) for ``F(x) = 0`` and fixed points ``x = g(x)``.

The plain iteration is ``x+ = G(x) = x + beta F(x)``; for a fixed-point
problem ``F(x) = g(x) - x`` and ``beta = 1`` this is ``x+ = g(x)``. Anderson
mixing combines the last ``m`` iterates: with the differences
``dX_i = x_{i+1} - x_i`` and ``dF_i = F_{i+1} - F_i`` (columns of ``(n, m)``
matrices)::

    gamma = argmin |F - dF gamma|            (small regularized least squares)
    x+    = x + beta F - (dX + beta dF) gamma

the "type II" update of Walker & Ni, a multisecant quasi-Newton method
(Fang & Saad 2009). A non-finite ``F(x+)`` clears the history and retries the
plain step ``x + beta F``. Cost per iteration: one evaluation of ``F`` and
``O(m^2 n)`` flops; memory ``2 m n`` numbers per problem. No derivatives.

Convergence needs the plain iteration to be (locally) contractive, i.e. the
Jacobian of ``F`` close to ``-I / beta``: true for ``F = g(x) - x`` with a
contraction ``g``; ``beta`` scales other systems.

References: D. G. Anderson, "Iterative procedures for nonlinear integral
equations", J. ACM 12, 1965; H. F. Walker, P. Ni, "Anderson acceleration for
fixed-point iterations", SIAM J. Numer. Anal. 49, 2011.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from taylorch.solve.lsq.objective import ResidualObjective
from taylorch.solve.methods.base import State
from taylorch.solve.result import Status
from taylorch.solve.rootfind.base import RootSolver, check_square

__all__ = ["Anderson"]


class Anderson(RootSolver):
    """Anderson acceleration with memory ``m`` and mixing ``beta``.

    Args:
        m: how many past differences to combine (0: the plain iteration).
        beta: mixing parameter (the step of the plain iteration ``x + beta F``); take it
            near ``-1 / lambda`` when the Jacobian of ``F`` is near ``lambda I``.
        regularization: Tikhonov weight, relative to ``trace(dF^T dF) / m``, for ``gamma``
            (at least the dtype's eps).
    """

    name = "anderson"
    order = 0
    uses_gradient = False

    def __init__(self, *, m: int = 5, beta: float = 1.0, regularization: float = 1e-10):
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ValueError(f"m must be an integer >= 0, got {m!r}")
        if not (math.isfinite(beta) and beta != 0):
            raise ValueError(f"beta must be a finite nonzero number, got {beta}")
        if not regularization >= 0:
            raise ValueError(f"regularization must be >= 0, got {regularization}")
        self.m, self.beta, self.regularization = m, float(beta), float(regularization)

    def init(self, objective: ResidualObjective, x0: Tensor) -> State:
        f, r = objective.residual(x0)
        check_square(objective, x0.shape[-1])
        batch, n = x0.shape
        zeros = torch.zeros(batch, max(self.m, 1), n, dtype=x0.dtype, device=x0.device)
        return State.start(
            x0,
            f,
            None,
            r=r,
            rmax=r.abs().amax(dim=-1),
            dx=zeros,
            df=zeros.clone(),
            count=torch.zeros(batch, dtype=torch.long, device=x0.device),
            bound=torch.full_like(f, torch.inf),
            xnorm=torch.linalg.vector_norm(x0, dim=-1),
        )

    def _mixed_step(self, r: Tensor, dx: Tensor, df: Tensor, count: Tensor) -> Tensor:
        """``beta F - (dX + beta dF) gamma`` with ``gamma`` over the valid history slots."""
        if self.m == 0:
            return self.beta * r
        # Window slots, newest last; the last ``count`` hold differences.
        valid = torch.arange(self.m, device=r.device)[None, :] >= self.m - count[:, None]
        dfv = df * valid[..., None]
        gram = dfv @ dfv.mT  # (B, m, m)
        scale = gram.diagonal(dim1=-2, dim2=-1).sum(dim=-1) / self.m
        # At least eps of the scale: a history of more differences than variables (n < m)
        # makes the Gram matrix singular, and 1e-10 of it is below float32's rounding.
        info = torch.finfo(r.dtype)
        shift = max(self.regularization, info.eps) * scale + info.tiny
        gram = gram + torch.diag_embed(torch.where(valid, shift[:, None], 1.0))
        rhs = (dfv @ r[..., None])[..., 0]
        gamma, failed = torch.linalg.solve_ex(gram, rhs)
        usable = valid & torch.isfinite(gamma) & (failed == 0)[:, None]
        gamma = torch.where(usable, gamma, 0.0)  # else the plain step
        return self.beta * r - ((dx + self.beta * df) * gamma[..., None]).sum(dim=1)

    def step(self, objective: ResidualObjective, state: State) -> State:
        mem = state.memory
        x, r, count = state.x, mem["r"], mem["count"]
        running = objective.active
        x_new = x + self._mixed_step(r, mem["dx"], mem["df"], count)
        f_new, r_new = objective.residual(x_new, mask=running)
        # A non-finite value: forget the history and take the plain step instead.
        bad = running & ~torch.isfinite(f_new) & (count > 0)
        if bool(bad.any()):
            x_plain = x + self.beta * r
            f_plain, r_plain = objective.residual(x_plain, mask=bad)
            x_new = torch.where(bad[:, None], x_plain, x_new)
            f_new = torch.where(bad, f_plain, f_new)
            r_new = torch.where(bad[:, None], r_plain, r_new)
            count = torch.where(bad, 0, count)
        finite = torch.isfinite(f_new)

        # The history is a window, newest last: shift it and write the newest pair.
        push = (finite & running)[:, None, None]
        dx = torch.where(push, torch.cat([mem["dx"][:, 1:], (x_new - x)[:, None]], 1), mem["dx"])
        df = torch.where(push, torch.cat([mem["df"][:, 1:], (r_new - r)[:, None]], 1), mem["df"])

        keep = finite[:, None]
        x_out = torch.where(keep, x_new, x)
        flag = torch.where(finite, state.flag, torch.full_like(state.flag, Status.NONFINITE))
        return State(
            x=x_out,
            f=torch.where(finite, f_new, state.f),
            g=None,
            flag=flag,
            memory={
                "r": torch.where(keep, r_new, r),
                "rmax": torch.where(keep, r_new, r).abs().amax(dim=-1),
                "dx": dx,
                "df": df,
                "count": torch.where(finite, torch.clamp(count + 1, max=self.m), count),
                "bound": torch.linalg.vector_norm(x_out - x, dim=-1),
                "xnorm": torch.linalg.vector_norm(x_out, dim=-1),
            },
        )
