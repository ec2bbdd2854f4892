"""The Nelder-Mead simplex method, batched: every problem moves its own simplex.

One iteration for each problem, with its ``n + 1`` vertices sorted so that
``f_1 <= ... <= f_{n+1}`` and ``c`` the centroid of the best ``n``::

    x_r = c + alpha (c - x_{n+1})                       # reflect the worst vertex
    if f_r < f_1:            x_e = c + gamma (x_r - c)  # expand; keep the better of x_e, x_r
    elif f_r < f_n:          keep x_r
    elif f_r < f_{n+1}:      x_c = c + rho (x_r - c)    # outside contraction; keep if f_c <= f_r
    else:                    x_c = c + rho (x_{n+1} - c)  # inside; keep if f_c < f_{n+1}
    if the contraction is rejected:  x_i = x_1 + sigma (x_i - x_1), i >= 2   # shrink

(Lagarias, Reeds, Wright & Wright, "Convergence properties of the Nelder-Mead
simplex method in low dimensions", SIAM J. Optim. 9, 1998; Nelder & Mead,
Comput. J. 7, 1965.) Each branch is a mask over the batch: one evaluation
serves every problem's reflection, a second every problem's expansion or
contraction, and the rare shrink costs ``n`` more for the problems that need it.

Cost per iteration: 1 or 2 function values, ``n + 1`` or ``n + 2`` with a shrink;
no gradients. Memory: the simplex, ``(n + 1) n`` numbers per problem.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.solve.methods.base import Solver, State, Tolerances
from taylorch.solve.objective import Objective
from taylorch.solve.result import Status

__all__ = ["NelderMead"]


class NelderMead(Solver):
    """Nelder-Mead simplex search; uses function values only.

    Stops a problem when its simplex is small in both senses:
    ``max_i |x_i - x_1|_inf <= xtol (1 + |x_1|_inf)`` and
    ``max_i |f_i - f_1| <= ftol (1 + |f_1|)`` (defaults: ``xtol = 1e-6``,
    ``ftol = 1e-10`` in float64, below which the vertices' values differ by
    little more than rounding; ``1e-4`` and ``1e-6`` in float32). ``gtol`` is
    not used. A simplex that has shrunk that far while some of its values are
    not finite stops with ``NONFINITE``. The iterate reported each iteration is
    the best vertex.

    Args:
        adaptive: use the dimension-dependent coefficients of Gao & Han,
            ``gamma = 1 + 2/n``, ``rho = 0.75 - 1/(2n)``, ``sigma = 1 - 1/n``,
            which keep the method making progress for larger ``n``
            ("Implementing the Nelder-Mead simplex algorithm with adaptive
            parameters", Comput. Optim. Appl. 51, 2012). Otherwise, and for
            ``n = 1``, the standard ``alpha, gamma, rho, sigma = 1, 2, 1/2, 1/2``.
        initial_simplex: the starting vertices, ``(n + 1, n)`` or ``(B, n + 1, n)``.
            By default ``x0`` and, for each coordinate ``i``, ``x0`` with
            ``x0_i`` scaled by 1.05 (set to ``2.5e-4`` where ``x0_i = 0``), as
            in scipy.

    Example:
        >>> import torch, taylorch
        >>> f = lambda x: (x[0] - 1) ** 2 + 10 * (x[1] + 2) ** 2
        >>> res = taylorch.minimize(f, torch.zeros(2, dtype=torch.float64), method="nelder-mead")
        >>> [round(v, 4) for v in res.x.tolist()]  # xtol: 1e-6 in the simplex's size
        [1.0, -2.0]
    """

    name = "nelder-mead"
    order = 0
    uses_gradient = False

    def __init__(self, *, adaptive: bool = False, initial_simplex: Tensor | None = None):
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {type(adaptive).__name__}")
        if initial_simplex is not None and not isinstance(initial_simplex, Tensor):
            raise TypeError(
                f"initial_simplex must be a tensor, got {type(initial_simplex).__name__}"
            )
        self.adaptive = adaptive
        self.initial_simplex = initial_simplex

    def default_tolerances(self, dtype: torch.dtype) -> Tolerances:
        if dtype == torch.float64:
            return Tolerances(gtol=0.0, xtol=1e-6, ftol=1e-10)
        return Tolerances(gtol=0.0, xtol=1e-4, ftol=1e-6)

    def init(self, objective: Objective, x0: Tensor) -> State:
        simplex = self._initial_simplex(x0)
        values = torch.stack([objective.value(simplex[:, i]) for i in range(simplex.shape[1])], 1)
        simplex, values = _sort(simplex, values)
        return State.start(simplex[:, 0], values[:, 0], None, simplex=simplex, values=values)

    def _initial_simplex(self, x0: Tensor) -> Tensor:
        batch, n = x0.shape
        if self.initial_simplex is None:
            scaled = torch.where(x0 != 0, 1.05 * x0, torch.full_like(x0, 2.5e-4))
            eye = torch.eye(n, dtype=torch.bool, device=x0.device)
            vertices = torch.where(eye, scaled[:, None, :], x0[:, None, :])
            return torch.cat([x0[:, None, :], vertices], dim=1)
        given = self.initial_simplex
        if given.shape not in ((n + 1, n), (batch, n + 1, n)):
            raise ValueError(
                f"initial_simplex must have shape {(n + 1, n)} or {(batch, n + 1, n)} "
                f"for x0 of shape {tuple(x0.shape)}, got {tuple(given.shape)}"
            )
        if not bool(torch.isfinite(given).all()):
            raise ValueError("initial_simplex must be finite")
        given = given.to(dtype=x0.dtype, device=x0.device)
        return given.expand(batch, n + 1, n).clone()

    def _coefficients(self, n: int) -> tuple[float, float, float, float]:
        if self.adaptive and n > 1:  # at n = 1 they would shrink the simplex to a point
            return 1.0, 1 + 2 / n, 0.75 - 1 / (2 * n), 1 - 1 / n
        return 1.0, 2.0, 0.5, 0.5

    def step(self, objective: Objective, state: State) -> State:
        simplex, values = state.memory["simplex"], state.memory["values"]
        alpha, gamma, rho, sigma = self._coefficients(simplex.shape[-1])
        worst, f_best, f_next, f_worst = simplex[:, -1], values[:, 0], values[:, -2], values[:, -1]
        centroid = simplex[:, :-1].mean(dim=1)

        x_r = centroid + alpha * (centroid - worst)
        f_r = objective.value(x_r)
        expand = f_r < f_best
        outside = (f_next <= f_r) & (f_r < f_worst)
        inside = ~(f_r < f_worst)
        x_2 = torch.where(
            expand[:, None],
            centroid + gamma * (x_r - centroid),
            centroid + rho * torch.where(outside[:, None], x_r - centroid, worst - centroid),
        )
        second = expand | outside | inside
        f_2 = torch.full_like(f_r, torch.inf)
        if bool((second & objective.active).any()):
            f_2 = objective.value(x_2, mask=second)

        take_2 = (expand & (f_2 < f_r)) | (outside & (f_2 <= f_r)) | (inside & (f_2 < f_worst))
        take_r = ~take_2 & ~outside & ~inside
        new_vertex = torch.where(take_2[:, None], x_2, torch.where(take_r[:, None], x_r, worst))
        new_value = torch.where(take_2, f_2, torch.where(take_r, f_r, f_worst))
        simplex = torch.cat([simplex[:, :-1], new_vertex[:, None]], dim=1)
        values = torch.cat([values[:, :-1], new_value[:, None]], dim=1)

        shrink = (outside | inside) & ~take_2
        if bool((shrink & objective.active).any()):
            simplex, values = _shrink(objective, simplex, values, shrink, sigma)
        simplex, values = _sort(simplex, values)
        return State(
            x=simplex[:, 0],
            f=values[:, 0],
            g=None,
            flag=state.flag,
            memory={"simplex": simplex, "values": values},
        )

    def converged(self, old: State, new: State, tol: Tolerances) -> Tensor:
        simplex, values = new.memory["simplex"], new.memory["values"]
        diameter = (simplex[:, 1:] - simplex[:, :1]).abs().flatten(1).amax(dim=1)
        spread = (values[:, 1:] - values[:, :1]).abs().amax(dim=1)
        tiny = diameter <= tol.xtol * (1 + new.x.abs().amax(dim=-1))
        status = torch.full_like(new.flag, Status.RUNNING)
        small = tiny & (spread <= tol.ftol * (1 + new.f.abs()))
        status = torch.where(small, torch.full_like(status, Status.SMALL_STEP), status)
        # Shrunk onto the best vertex with non-finite values all around it.
        walled = tiny & ~torch.isfinite(spread)
        return torch.where(walled, torch.full_like(status, Status.NONFINITE), status)


def _sort(simplex: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Order each problem's vertices by value, best first (ties keep their order)."""
    values, order = torch.sort(values, dim=1, stable=True)
    return torch.gather(simplex, 1, order[:, :, None].expand_as(simplex)), values


def _shrink(
    objective: Objective, simplex: Tensor, values: Tensor, rows: Tensor, sigma: float
) -> tuple[Tensor, Tensor]:
    """Move every vertex but the best toward it by ``sigma`` on ``rows``: ``n`` evaluations."""
    best = simplex[:, :1]
    shrunk = torch.where(rows[:, None, None], best + sigma * (simplex - best), simplex)
    fresh = [values[:, 0]]
    for i in range(1, simplex.shape[1]):
        f_i = objective.value(shrunk[:, i], mask=rows)
        fresh.append(torch.where(rows, f_i, values[:, i]))
    return shrunk, torch.stack(fresh, dim=1)
