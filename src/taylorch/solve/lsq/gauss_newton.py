"""Gauss-Newton with a line search on the cost (damped Gauss-Newton).

One iteration, for every problem of the batch::

    u  = -(J_s^T J_s)^+ J_s^T r        # minimum-norm Gauss-Newton step, scaled variables
    p  = D^-1 u;  p = -g if <g, p> >= 0 # never walk uphill
    t  = line_search(cost, x, p)       # Armijo backtracking by default
    x+ = x + t p;  then r and J at x+  (one call)

For a square system ``F(x) = 0`` with a nonsingular Jacobian, ``p`` is the
Newton step and the cost is the merit function ``0.5 |F|^2``: this is
Newton-Raphson with a line search (Dennis & Schnabel, *Numerical Methods for
Unconstrained Optimization and Nonlinear Equations*, 1983, Alg. 6.3.1).
Cost per iteration: one residual evaluation per line-search trial plus one
residual-and-Jacobian evaluation at the accepted point; ``O(m n^2)`` flops
for the step (:class:`~taylorch.solve.lsq.model.GaussNewtonModel`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.solve.line_search import Armijo, LineSearch
from taylorch.solve.lsq.base import LeastSquaresSolver, Linearization, initial_scales, linearize
from taylorch.solve.lsq.model import GaussNewtonModel
from taylorch.solve.lsq.objective import ResidualObjective
from taylorch.solve.methods.base import State, where_rows
from taylorch.solve.result import Status

__all__ = ["GaussNewton"]


class GaussNewton(LeastSquaresSolver):
    """Gauss-Newton steps with a step-length rule (Armijo on values by default).

    Args:
        line_search: any :class:`~taylorch.solve.line_search.LineSearch` on the cost.
    """

    name = "gauss-newton"
    supports_bounds = False

    def __init__(self, *, line_search: LineSearch | None = None):
        if line_search is not None and not isinstance(line_search, LineSearch):
            raise TypeError(f"line_search must be a LineSearch, got {type(line_search).__name__}")
        self.line_search = line_search if line_search is not None else Armijo(with_gradient=False)

    def init(self, objective: ResidualObjective, x0: Tensor) -> State:
        lin = linearize(objective, x0, None)
        return State.start(x0, lin.f, lin.g, **lin.memory())

    def step(self, objective: ResidualObjective, state: State) -> State:
        mem = state.memory
        lin = Linearization(
            state.f,
            state.g,
            mem["rfac"],
            mem["qtr"],
            mem["rmax"],
            mem["optimality"],
            mem.get("noise"),
        )
        d = initial_scales(lin.column_norms())
        model = GaussNewtonModel(mem["rfac"], mem["qtr"], d)
        p = model.gauss_newton() / d
        uphill = ~((state.g * p).sum(dim=-1) < 0) | ~torch.isfinite(p).all(dim=-1)
        p = torch.where(uphill[:, None], -state.g, p)
        t0 = torch.where(uphill, _unit_length(state.g), torch.ones_like(state.f))
        found = self.line_search.search(objective, state.x, state.f, state.g, p, t0)

        ok = found.ok
        # A failed search took no step: no evaluation where no problem needs one.
        new = linearize(objective, found.x, objective.active & ok) if bool(ok.any()) else lin
        memory = {
            k: where_rows(ok, v, old)
            for (k, v), old in zip(new.memory().items(), lin.memory().values())
        }
        rows = ok[:, None]
        x_out = torch.where(rows, found.x, state.x)
        # The tests read the full Gauss-Newton step, not what the search kept of it: a
        # search that backtracks to a tiny step has not converged, the model's step
        # was poor (both the reductions and the step length would pass otherwise, far
        # from any solution). A full step below xtol has converged, even where no
        # step decreases f any more (a zero residual at its rounding level).
        full = d * p
        memory.update(
            xnorm=torch.linalg.vector_norm(d * x_out, dim=-1),
            actred=state.f - torch.where(ok, new.f, state.f),
            prered=model.decrease(full),
            bound=torch.linalg.vector_norm(full, dim=-1),
        )
        flag = torch.where(ok, state.flag, torch.full_like(state.flag, Status.NO_PROGRESS))
        return State(
            x=x_out,
            f=torch.where(ok, new.f, state.f),
            g=torch.where(rows, new.g, state.g),
            flag=flag,
            memory=memory,
        )


def _unit_length(g: Tensor) -> Tensor:
    """``min(1, 1/|g|)``: a first steepest-descent trial of length at most 1."""
    return torch.clamp(1 / torch.linalg.vector_norm(g, dim=-1), max=1.0)
