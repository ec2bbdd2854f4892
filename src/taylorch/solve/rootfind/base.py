"""What every root finder shares: success means ``max_i |F_i(x)| <= tol``.

A root finder is a :class:`~taylorch.solve.methods.base.Solver` over a
:class:`~taylorch.solve.lsq.objective.ResidualObjective` whose residual is
``F`` (square: ``m = n``); its cost ``0.5 |F|^2`` is the merit function that
line searches and trust regions decrease. ``State.memory["rmax"]`` holds ``max |F_i(x)|``.

Tolerances (resolved by :func:`~taylorch.root`): ``ftol`` is the absolute
tolerance on ``max |F_i|`` -- the only way to ``CONVERGED``; ``xtol`` and
``gtol`` detect a stall (steps or trust region collapsed, or a stationary
point of the merit function that is not a root), reported as ``NO_PROGRESS``.

:class:`AsRoot` turns any least-squares method (Gauss-Newton, i.e.
Newton-Raphson with a line search; Levenberg-Marquardt; dogleg) into a root
finder with these tests.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from taylorch.solve.lsq.base import LeastSquaresSolver
from taylorch.solve.lsq.objective import ResidualObjective
from taylorch.solve.methods.base import Solver, State, Tolerances
from taylorch.solve.result import Status

__all__ = ["AsRoot", "RootSolver", "check_square"]


def check_square(objective: ResidualObjective, n: int) -> None:
    """Raise unless ``F`` has as many components as ``x`` (known after the first call)."""
    if objective.size != n:
        raise ValueError(
            f"fun must return as many components as x has (a square system): "
            f"x has {n}, fun returned {objective.size}; use least_squares for m != n"
        )


class RootSolver(Solver):
    """Base of the root finders: converged when ``max |F_i| <= ftol``.

    Subclasses leave in ``memory``: ``rmax`` (``max |F_i|``), ``bound`` (the step bound
    for the stall test) and ``xnorm``.
    """

    order = 1

    def default_tolerances(self, dtype: torch.dtype) -> Tolerances:
        eps = torch.finfo(dtype).eps
        return Tolerances(gtol=eps, xtol=16 * eps, ftol=eps ** (2 / 3))

    def stationary(self, state: State, tol: Tolerances) -> Tensor:
        return state.memory["rmax"] <= tol.ftol

    def stalled(self, old: State, new: State, tol: Tolerances) -> Tensor:
        """Whether the method can make no further progress (default: its step bound collapsed)."""
        mem = new.memory
        return mem["bound"] <= tol.xtol * (tol.xtol + mem["xnorm"])

    def converged(self, old: State, new: State, tol: Tolerances) -> Tensor:
        status = torch.full_like(new.flag, Status.RUNNING)
        status = torch.where(
            self.stalled(old, new, tol), torch.full_like(status, Status.NO_PROGRESS), status
        )
        return torch.where(
            self.stationary(new, tol), torch.full_like(status, Status.CONVERGED), status
        )


class AsRoot(RootSolver):
    """A least-squares method run as a root finder on ``0.5 |F|^2``.

    The method's own stopping tests (stationary merit function, collapsed
    trust region or step, no relative decrease left) mean it stalled short of
    a root unless ``max |F_i| <= ftol`` holds too.
    """

    def __init__(self, method: LeastSquaresSolver):
        self.method = method
        self.name = method.name

    def init(self, objective: ResidualObjective, x0: Tensor) -> State:
        state = self.method.init(objective, x0)
        check_square(objective, x0.shape[-1])
        return state

    def step(self, objective: ResidualObjective, state: State) -> State:
        return self.method.step(objective, state)

    def stalled(self, old: State, new: State, tol: Tolerances) -> Tensor:
        own = replace(self.method.default_tolerances(new.x.dtype), gtol=tol.gtol, xtol=tol.xtol)
        return self.method.converged(old, new, own) != Status.RUNNING

    def stationary(self, state: State, tol: Tolerances) -> Tensor:
        """``max |F_i| <= ftol``, and a Newton correction below ``sqrt(eps) (1 + |x|)``.

        ``|F|`` alone depends on how ``F`` is scaled: ``1e-12 (x - 1)`` is below any
        tolerance at ``x = 5``, ``exp(x)`` at ``x = -25``. The Newton step
        ``-J^{-1} F`` (from the QR factor the method keeps) says how far the root
        still is; where ``F`` is well scaled it is far below the bound whenever
        ``|F|`` is, and nothing changes. Where ``J`` is singular the step is the
        least-norm one, and the part of ``F`` outside the range of ``J`` must be
        rounding error: a consistent singular system (redundant equations) still
        converges, a point where ``F`` cannot be reduced to zero does not.
        """
        small = super().stationary(state, tol)
        mem = state.memory
        if "rfac" not in mem or not bool(small.any()):
            return small
        rfac, qtr = mem["rfac"], mem["qtr"]
        n = rfac.shape[-1]
        eps = torch.finfo(state.x.dtype).eps
        # The Newton step by the SVD of R (J = Q R): the least-norm correction where J is
        # singular, and the part of F that no step can reach (outside the range of J).
        u, sv, vh = torch.linalg.svd(rfac[..., :n, :])
        coeff = (u.mT @ qtr[..., :n, None])[..., 0]
        singular = sv <= n * eps * sv[..., :1]
        step = torch.where(singular, 0.0, coeff / torch.where(singular, 1.0, sv))
        correction = (vh.mT @ step[..., None])[..., 0].abs().amax(dim=-1)
        unreachable = torch.linalg.vector_norm(torch.where(singular, coeff, 0.0), dim=-1)
        # ...which must be rounding error of F: eps times the size of the terms in F
        # (|F| and sum_j |J_j| |x_j|). F = (x0^2 + 1e-11, x1 - 1) at x0 = 0, where J is
        # singular and F has no root, passed for converged when the step was taken as inf.
        terms = (torch.linalg.vector_norm(rfac, dim=-2) * state.x.abs()).sum(dim=-1)
        rounding = 16 * n * eps * (terms + torch.linalg.vector_norm(qtr, dim=-1))
        bound = eps**0.5 * (1 + state.x.abs().amax(dim=-1))
        exact = mem["rmax"] == 0  # a root to the last bit, whatever J is there
        return small & (exact | ((correction <= bound) & (unreachable <= rounding)))

    def __repr__(self) -> str:
        return f"AsRoot({self.method!r})"
