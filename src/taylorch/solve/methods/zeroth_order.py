"""Zeroth-order gradient descent: random two-point gradient estimates and a value-only search.

One iteration for every problem of the batch::

    u_1 .. u_k ~ N(0, I_n)                                # shared by the batch
    h  = mu (1 + |x|_inf) / sqrt(n)                       # per problem; |h u| ~ mu (1 + |x|)
    g~ = (1/k) sum_j (f(x + h u_j) - f(x)) / h  u_j       # forward differences
    t  = Armijo on values only along p = -g~, from t0 = 2 t_prev
    x+ = x + t p

``g~`` is an unbiased estimate of the gradient of the Gaussian smoothing
``f_h(x) = E f(x + h u)`` (Nesterov & Spokoiny, "Random gradient-free
minimization of convex functions", Found. Comput. Math. 17, 2017), which
for small ``h`` is the gradient of ``f``; the search makes the step size
adapt to each problem instead of the paper's fixed ``1 / (4 (n + 4) L)``.

The directions of one iteration are shared by every problem of the batch:
the problems are independent, so each still sees independent Gaussian
directions, and a problem's iterates do not depend on what else is in the
batch (a batched solve equals a loop of single solves with the same seed).
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.solve.line_search import Armijo, LineSearch
from taylorch.solve.methods.base import Solver, State, Tolerances
from taylorch.solve.objective import Objective
from taylorch.solve.result import Status

__all__ = ["ZOGD"]


class ZOGD(Solver):
    """Gradient descent on random-direction forward-difference estimates ("zo-gd").

    Evaluates values only. Stops a problem when each of its last ``patience``
    steps changed ``x`` by less than ``xtol (1 + |x|)`` and ``f`` by less than
    ``ftol (1 + |f|)`` (defaults ``1e-6``/``1e-10`` in float64, ``1e-4``/``1e-6``
    in float32). One small step proves little here: a direction nearly
    orthogonal to the gradient gives one, and so does a search that finds no
    decrease along it; ``patience`` consecutive ones do. A problem whose
    value was not finite along any direction for ``patience`` iterations in a
    row stops with ``NONFINITE``.

    Cost per iteration: ``directions`` function values for the estimate plus the
    line search's trials (usually one or two); memory O(n) per problem.

    Args:
        directions: Gaussian directions ``k`` averaged per estimate.
        mu: smoothing parameter: the length of a perturbation ``h u`` is about
            ``mu (1 + |x|_inf)``; by default the
            square root of the dtype's machine epsilon (the forward-difference
            balance of truncation and rounding error).
        patience: consecutive small steps that stop a problem; by default
            ``max(2, ceil(n / directions))``, as many directions as span the space.
        seed: seed of the direction generator. The default 0 makes a solve a
            function of its inputs, like every other method; vary it to draw
            other directions.
        line_search: a step rule that evaluates values only (default
            ``Armijo(with_gradient=False)``).
    """

    name = "zo-gd"
    order = 0
    uses_gradient = False

    def __init__(
        self,
        *,
        directions: int = 1,
        mu: float | None = None,
        patience: int | None = None,
        seed: int = 0,
        line_search: LineSearch | None = None,
    ):
        if isinstance(directions, bool) or not isinstance(directions, int) or directions < 1:
            raise ValueError(f"directions must be a positive integer, got {directions!r}")
        if mu is not None and not (isinstance(mu, (int, float)) and 0 < mu < float("inf")):
            raise ValueError(f"mu must be a finite number > 0, got {mu!r}")
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
        ):
            raise ValueError(f"patience must be a positive integer, got {patience!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        line_search = Armijo(with_gradient=False) if line_search is None else line_search
        if not isinstance(line_search, LineSearch) or line_search.needs_gradient:
            raise ValueError(
                f"line_search must be a step rule that evaluates values only, got {line_search!r}"
            )
        self.directions = directions
        self.mu = mu
        self.patience = patience
        self.seed = seed
        self.line_search = line_search
        self._generator: torch.Generator | None = None

    def default_tolerances(self, dtype: torch.dtype) -> Tolerances:
        if dtype == torch.float64:
            return Tolerances(gtol=0.0, xtol=1e-6, ftol=1e-10)
        return Tolerances(gtol=0.0, xtol=1e-4, ftol=1e-6)

    def init(self, objective: Objective, x0: Tensor) -> State:
        self._generator = torch.Generator(device=x0.device).manual_seed(self.seed)
        f = objective.value(x0)
        window = self.patience or max(2, -(-x0.shape[-1] // self.directions))
        unknown = torch.full((x0.shape[0], window), torch.inf, dtype=x0.dtype, device=x0.device)
        return State.start(
            x0,
            f,
            None,
            step_size=torch.zeros_like(f),
            recent_dx=unknown,
            recent_df=unknown,
            blind=torch.zeros_like(f, dtype=torch.long),
        )

    def step(self, objective: Objective, state: State) -> State:
        x, f = state.x, state.f
        g, seen = self._estimate(objective, x, f)
        p = -g
        previous = state.memory["step_size"]
        first = torch.clamp(1 / torch.linalg.vector_norm(g, dim=-1), max=1.0)
        t0 = torch.where(previous > 0, 2 * previous, first)
        found = self.line_search.search(objective, x, f, g, p, t0)
        step_size = torch.where(found.ok & (found.t > 0), found.t, previous)
        memory = {
            "step_size": step_size,
            "recent_dx": _push(state.memory["recent_dx"], (found.x - x).abs().amax(dim=-1)),
            "recent_df": _push(state.memory["recent_df"], (found.f - f).abs()),
            "blind": torch.where(seen, 0, state.memory["blind"] + 1),
        }
        return State(x=found.x, f=found.f, g=None, flag=state.flag, memory=memory)

    def converged(self, old: State, new: State, tol: Tolerances) -> Tensor:
        """``SMALL_STEP`` where every step of the window was small; ``NONFINITE`` where blind."""
        window = new.memory["recent_dx"].shape[-1]
        dx = new.memory["recent_dx"].amax(dim=-1)
        df = new.memory["recent_df"].amax(dim=-1)
        small = (dx < tol.xtol * (1 + new.x.abs().amax(dim=-1))) & (
            df < tol.ftol * (1 + new.f.abs())
        )
        status = torch.full_like(new.flag, Status.RUNNING)
        status = torch.where(small, torch.full_like(status, Status.SMALL_STEP), status)
        blind = new.memory["blind"] >= window
        return torch.where(blind, torch.full_like(status, Status.NONFINITE), status)

    def _estimate(self, objective: Objective, x: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        """The average of ``k`` forward-difference estimates, and whether any value was finite."""
        mu = torch.finfo(x.dtype).eps ** 0.5 if self.mu is None else self.mu
        h = mu * (1 + x.abs().amax(dim=-1)) / x.shape[-1] ** 0.5  # |h u| ~ mu (1 + |x|)
        u = torch.randn(
            self.directions, x.shape[-1], generator=self._generator, dtype=x.dtype, device=x.device
        )
        g = torch.zeros_like(x)
        seen = torch.zeros_like(f, dtype=torch.bool)
        for u_j in u:
            slope = (objective.value(x + h[:, None] * u_j) - f) / h
            # A direction that leaves the domain (non-finite value) says nothing.
            finite = torch.isfinite(slope)
            seen |= finite
            g = g + torch.where(finite, slope, torch.zeros_like(slope))[:, None] * u_j
        return g / self.directions, seen


def _push(window: Tensor, latest: Tensor) -> Tensor:
    """Drop the oldest column of ``window`` ``(B, m)`` and append ``latest`` ``(B,)``."""
    return torch.cat([window[:, 1:], latest[:, None]], dim=1)
