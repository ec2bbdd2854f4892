"""Broyden's quasi-Newton methods for ``F(x) = 0``, with a line search on ``0.5 |F|^2``.

The inverse Jacobian ``H ~ J^-1`` ``(B, n, n)`` starts exact (one Jacobian by
autograd) and is then updated from each step ``s`` and change ``y = F+ - F``
so that ``H+ y = s`` (the secant condition):

* "good" Broyden (``broyden1``), the rank-one update of ``J`` closest to it,
  written for ``H`` by Sherman-Morrison:  ``H+ = H + (s - H y) s^T H / (s^T H y)``;
* "bad" Broyden (``broyden2``), the update of ``H`` closest to it:
  ``H+ = H + (s - H y) y^T / (y^T y)``.

One iteration::

    p = -H F;  try x + p (one evaluation of F)
    if |F(x+p)|^2 > (1 - 2 c1) |F|^2:  Armijo backtracking on 0.5 |F|^2 along p
        (the slope is taken as -|F|^2, exact for the Newton step; at most 4 trials
        unless H is fresh; F kept from the accepted trial); if no step decreases
        the merit, H is reset to J(x)^-1
    H = update(H, s, y)

Cost per iteration: usually one evaluation of ``F`` and ``O(n^2)`` flops; memory
``n^2`` numbers per problem. Converges superlinearly near a regular root.

References: C. G. Broyden, "A class of methods for solving nonlinear
simultaneous equations", Math. Comp. 19, 1965; Dennis & Schnabel, *Numerical
Methods for Unconstrained Optimization and Nonlinear Equations*, 1983, Ch. 8.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from taylorch.solve.line_search import Armijo, SearchResult
from taylorch.solve.lsq.objective import ResidualObjective
from taylorch.solve.methods.base import State
from taylorch.solve.result import Status
from taylorch.solve.rootfind.base import RootSolver, check_square

__all__ = ["Broyden"]


def _inverse_jacobian(objective: ResidualObjective, x: Tensor, mask: Tensor | None) -> Tensor:
    """``J(x)^+`` by the SVD (the pseudo-inverse where ``J`` is singular)."""
    _, _, jac = objective.residual_and_jacobian(x, mask=mask)
    return torch.linalg.pinv(jac)


class Broyden(RootSolver):
    """Broyden's method ("good", ``broyden1``, or "bad", ``broyden2``) with a line search.

    Args:
        update: ``"good"`` or ``"bad"``.
        c1: sufficient decrease of the merit function, ``|F+|^2 <= (1 - 2 c1 t) |F|^2``.
    """

    def __init__(self, *, update: Literal["good", "bad"] = "good", c1: float = 1e-4):
        if update not in ("good", "bad"):
            raise ValueError(f"update must be 'good' or 'bad', got {update!r}")
        if not 0 < c1 < 0.5:
            raise ValueError(f"c1 must be in (0, 0.5), got {c1}")
        self.update = update
        self.c1 = c1
        self.name = "broyden1" if update == "good" else "broyden2"
        self._short = Armijo(c1=c1, max_trials=4, with_gradient=False)
        self._long = Armijo(c1=c1, max_trials=40, with_gradient=False)

    def init(self, objective: ResidualObjective, x0: Tensor) -> State:
        f, r, jac = objective.residual_and_jacobian(x0)
        check_square(objective, x0.shape[-1])
        h = torch.linalg.pinv(jac)
        return State.start(
            x0,
            f,
            None,
            r=r,
            rmax=r.abs().amax(dim=-1),
            H=h,
            fresh=torch.ones_like(f, dtype=torch.bool),
            bound=torch.full_like(f, torch.inf),
            xnorm=torch.linalg.vector_norm(x0, dim=-1),
        )

    @staticmethod
    def _backtrack(
        search: Armijo,
        objective: ResidualObjective,
        x: Tensor,
        f: Tensor,
        g: Tensor,
        p: Tensor,
        t0: Tensor,
    ) -> tuple[SearchResult, Tensor]:
        """The search's step on the active rows, and ``F`` at it: each trial evaluates the
        residual, and a search ends at the first trial it accepts, so ``F`` there needs no
        further call."""
        state = search.begin(x, f, g, p, t0, objective.active)
        r_found = x.new_zeros(x.shape[0], objective.size)
        while bool(state["pending"].any()):
            ft, rt = objective.residual(search.trial_point(x, state), mask=state["pending"])
            accepted = state["ok"]
            state = search.advance(state, x, f, ft, None)
            r_found = torch.where((state["ok"] & ~accepted)[:, None], rt, r_found)
        return search.conclude(state, x, f, g), r_found

    def step(self, objective: ResidualObjective, state: State) -> State:
        mem = state.memory
        x, f, r, h = state.x, state.f, mem["r"], mem["H"]
        p = -(h @ r[..., None])[..., 0]
        running = objective.active
        f1, r1 = objective.residual(x + p, mask=running)
        good = f1 <= (1 - 2 * self.c1) * f
        t = torch.where(good, torch.ones_like(f), torch.zeros_like(f))
        x_new, f_new, r_new = torch.where(good[:, None], x + p, x), torch.where(good, f1, f), r1

        # Backtrack from the minimizer of the quadratic through f, slope -2f and f1: briefly
        # along a quasi-Newton direction (a poor one is better replaced than searched), at
        # length along a fresh Newton direction.
        t0 = torch.clamp(f / torch.clamp(f1 + f, min=torch.finfo(f.dtype).tiny), 0.1, 0.5)
        slope_g = -2 * f / torch.clamp((p * p).sum(dim=-1), min=torch.finfo(f.dtype).tiny)
        for rows, search in (
            (running & ~good & ~mem["fresh"], self._short),
            (running & ~good & mem["fresh"], self._long),
        ):
            if not bool(rows.any()):
                continue
            objective.active = rows
            try:
                found, r_found = self._backtrack(
                    search, objective, x, f, slope_g[:, None] * p, p, t0
                )
            finally:
                objective.active = running
            moved = rows & found.ok
            t = torch.where(moved, found.t, t)
            x_new = torch.where(moved[:, None], found.x, x_new)
            f_new = torch.where(moved, found.f, f_new)
            r_new = torch.where(moved[:, None], r_found, r_new)
        stepped = t > 0
        r_new = torch.where(stepped[:, None], r_new, r)

        s, y = x_new - x, r_new - r
        hy = (h @ y[..., None])[..., 0]
        if self.update == "good":
            sh = (s[:, None, :] @ h)[:, 0]
            denom = (sh * y).sum(dim=-1)
            rank_one = (s - hy)[:, :, None] * sh[:, None, :]
        else:
            denom = (y * y).sum(dim=-1)
            rank_one = (s - hy)[:, :, None] * y[:, None, :]
        tiny = torch.finfo(f.dtype).eps * torch.linalg.vector_norm(s, dim=-1)
        usable = stepped & (denom.abs() > tiny * torch.linalg.vector_norm(y, dim=-1))
        h_new = torch.where(usable[:, None, None], h + rank_one / denom[:, None, None], h)

        # No decrease along -H F: start again from the exact inverse Jacobian; if that was
        # already fresh, the merit function cannot be decreased here.
        reset = running & ~stepped
        if bool(reset.any()):
            h_new = torch.where(reset[:, None, None], _inverse_jacobian(objective, x, reset), h_new)
        flag = torch.where(
            reset & mem["fresh"], torch.full_like(state.flag, Status.NO_PROGRESS), state.flag
        )
        return State(
            x=x_new,
            f=f_new,
            g=None,
            flag=flag,
            memory={
                "r": r_new,
                "rmax": r_new.abs().amax(dim=-1),
                "H": h_new,
                "fresh": reset,
                "bound": torch.where(
                    stepped, torch.linalg.vector_norm(s, dim=-1), torch.full_like(f, torch.inf)
                ),
                "xnorm": torch.linalg.vector_norm(x_new, dim=-1),
            },
        )
