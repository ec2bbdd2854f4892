"""What every least-squares method shares: its state and its stopping tests.

A least-squares method is a :class:`~taylorch.solve.methods.base.Solver` over
a :class:`~taylorch.solve.lsq.objective.ResidualObjective`; ``State.f`` is the
cost, ``State.g = J^T r`` its gradient, and ``State.memory`` carries the
residual ``r`` ``(B, m)``, the Jacobian ``J`` ``(B, m, n)`` and the scales
``d`` ``(B, n)`` (Moré's ``D``: the largest column norms of ``J`` seen so far),
plus what the stopping tests read. The tests are scale-invariant, as in
MINPACK (Moré, Garbow & Hillstrom, "User guide for MINPACK-1", 1980):

* ``gtol``: the largest cosine between ``r`` and a column of ``J``,
  ``max_j |J_j^T r| / (|J_j| |r|) <= gtol`` (over the free variables when there
  are bounds) -- first-order optimality, ``CONVERGED``;
* ``ftol``: the last step's actual and predicted relative reductions of the cost
  are both at most ``ftol`` (and the actual at most twice the predicted) --
  ``SMALL_STEP``;
* ``xtol``: the step bound (trust-region radius, or the step taken) is at most
  ``xtol (xtol + |D x|)`` -- ``SMALL_STEP``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.solve.lsq.bounds import free_variables
from taylorch.solve.lsq.objective import ResidualObjective
from taylorch.solve.methods.base import Solver, State, Tolerances
from taylorch.solve.result import Status

__all__ = ["LeastSquaresSolver", "column_norms", "initial_scales", "lsq_memory"]


def column_norms(jac: Tensor) -> Tensor:
    """``|J_j|`` for every column, ``(B, n)``."""
    return torch.linalg.vector_norm(jac, dim=-2)


def initial_scales(jac: Tensor) -> Tensor:
    """Moré's initial ``D``: the column norms, with 1 for zero columns."""
    norms = column_norms(jac)
    return torch.where(norms > 0, norms, torch.ones_like(norms))


def optimality(
    x: Tensor, f: Tensor, g: Tensor, r: Tensor, jac: Tensor, objective: ResidualObjective
) -> Tensor:
    """The largest cosine between ``r`` and a free column of ``J`` (``inf`` where ``f`` is not)."""
    scale = column_norms(jac) * torch.linalg.vector_norm(r, dim=-1, keepdim=True)
    cosine = torch.where(scale > 0, g.abs() / torch.where(scale > 0, scale, 1.0), 0.0)
    free = free_variables(x, g, objective.lower, objective.upper)
    if free is not None:
        cosine = torch.where(free, cosine, 0.0)
    value = cosine.amax(dim=-1)
    return torch.where(torch.isfinite(f), value, torch.full_like(value, torch.inf))


def lsq_memory(
    objective: ResidualObjective, x: Tensor, f: Tensor, r: Tensor, jac: Tensor, d: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """``(g, memory)`` for a point with residual ``r`` and Jacobian ``J``."""
    g = (jac.mT @ r[..., None])[..., 0]
    memory = {
        "r": r,
        "J": jac,
        "d": d,
        "optimality": optimality(x, f, g, r, jac, objective),
        "xnorm": torch.linalg.vector_norm(d * x, dim=-1),
    }
    return g, memory


class LeastSquaresSolver(Solver):
    """Base of the least-squares methods: MINPACK's scale-invariant stopping tests.

    Every step must leave in ``memory``: ``actred`` and ``prered`` (actual and
    predicted decrease of the cost for the step tried), ``bound`` (the step
    bound for the ``xtol`` test), ``xnorm`` (``|D x|``) and ``optimality``.
    """

    order = 2

    def default_tolerances(self, dtype: torch.dtype) -> Tolerances:
        """Tight enough for full accuracy: a few units of rounding in the tested quantities."""
        eps = torch.finfo(dtype).eps
        return Tolerances(gtol=eps, xtol=16 * eps, ftol=16 * eps)

    def stationary(self, state: State, tol: Tolerances) -> Tensor:
        return state.memory["optimality"] <= tol.gtol

    def converged(self, old: State, new: State, tol: Tolerances) -> Tensor:
        mem = new.memory
        status = torch.full_like(new.flag, Status.RUNNING)
        status = torch.where(
            self.stationary(new, tol), torch.full_like(status, Status.CONVERGED), status
        )
        actred, prered, ref = mem["actred"], mem["prered"], old.f
        small_f = (
            (actred.abs() <= tol.ftol * ref) & (prered <= tol.ftol * ref) & (actred <= 2 * prered)
        )
        small_x = mem["bound"] <= tol.xtol * (tol.xtol + mem["xnorm"])
        return torch.where(
            (small_f | small_x) & (status == Status.RUNNING),
            torch.full_like(status, Status.SMALL_STEP),
            status,
        )
