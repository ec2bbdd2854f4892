"""Nonlinear conjugate gradient: Polak-Ribière+ and Hager-Zhang, with a strong-Wolfe search.

One iteration for every problem of the batch, with ``g_`` and ``p_`` the
previous gradient and direction and ``y = g - g_``::

    beta = max(0, <g, y> / |g_|^2)                                    # "pr+"
    beta = max(<y - 2 p_ |y|^2 / <p_, y>, g> / <p_, y>,               # "hz"
               -1 / (|p_| min(0.01, |g_|)))
    beta = 0 on the first iteration, after a failed search (and every `restart` iterations)
    p  = -g + beta p_
    t  = strong Wolfe (c2 = 0.1) from t0 = min(1, 1.01 * 2 (f - f_prev) / <g, p>)
    x+ = x + t p

Polak-Ribière+ (Polak & Ribière 1969; Polyak 1969; the ``max(0, .)`` of
Gilbert & Nocedal, SIAM J. Optim. 2, 1992) restarts by itself when ``beta``
would be negative. Hager-Zhang (Hager & Zhang, "A new conjugate gradient method
with guaranteed descent and an efficient line search", SIAM J. Optim. 16,
2005) gives ``<g, p> <= -7/8 |g|^2`` whatever the line search, and with the
lower bound ``eta_k`` converges on general smooth functions. The first
trial step is Nocedal & Wright's interpolation (*Numerical Optimization*,
2nd ed., eq. 3.60) as in scipy. With exact line searches on a quadratic both
reduce to linear CG and stop in at most ``n`` iterations.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.solve.line_search import LineSearch, StrongWolfe
from taylorch.solve.methods.base import State
from taylorch.solve.methods.descent import DescentMethod, Direction

__all__ = ["CG", "ConjugateDirection"]

_BETAS = ("pr+", "hz")


class ConjugateDirection(Direction):
    """``p = -g + beta p_`` with the Polak-Ribière+ or Hager-Zhang ``beta``.

    Memory per problem: the previous gradient and direction (``2 n`` numbers),
    the previous value and an iteration count.

    Args:
        beta: ``"pr+"`` or ``"hz"``.
        restart: iterations between restarts along ``-g``; by default none
            (beyond the ones above), which costs fewer evaluations on the
            Moré-Garbow-Hillstrom problems than restarting every ``n``.
    """

    def __init__(self, beta: str = "pr+", restart: int | None = None):
        if beta not in _BETAS:
            raise ValueError(f"beta must be one of {_BETAS}, got {beta!r}")
        if restart is not None and (
            isinstance(restart, bool) or not isinstance(restart, int) or restart < 1
        ):
            raise ValueError(f"restart must be a positive integer, got {restart!r}")
        self.beta = beta
        self.restart = restart

    def init(self, objective, x, f, g):
        return {
            "g_prev": torch.zeros_like(g),
            "p_prev": torch.zeros_like(g),
            "f_prev": torch.full_like(f, torch.inf),
            "since_restart": torch.zeros_like(f, dtype=torch.long),
        }

    def compute(self, objective, state):
        mem = state.memory
        g, g_prev, p_prev = state.g, mem["g_prev"], mem["p_prev"]
        y = g - g_prev
        if self.beta == "pr+":
            beta = torch.clamp((g * y).sum(dim=-1) / (g_prev * g_prev).sum(dim=-1), min=0)
        else:
            py = (p_prev * y).sum(dim=-1)
            pg = (p_prev * g).sum(dim=-1)
            beta_n = ((y * g).sum(dim=-1) - 2 * (y * y).sum(dim=-1) * pg / py) / py
            eta = -1 / (
                torch.linalg.vector_norm(p_prev, dim=-1)
                * torch.clamp(torch.linalg.vector_norm(g_prev, dim=-1), max=0.01)
            )
            beta = torch.maximum(beta_n, eta)
        fresh = (mem["since_restart"] == 0) | self._periodic(mem["since_restart"])
        beta = torch.where(fresh | ~torch.isfinite(beta), torch.zeros_like(beta), beta)
        return -g + beta[:, None] * p_prev

    def initial_step(self, state: State, p: Tensor, steepest: Tensor) -> Tensor:
        slope = (state.g * p).sum(dim=-1)
        interpolated = 1.01 * 2 * (state.f - state.memory["f_prev"]) / slope
        usable = torch.isfinite(interpolated) & (interpolated > 0)
        return torch.where(usable, torch.clamp(interpolated, max=1.0), steepest)

    def update(self, objective, state, step, memory):
        moved = step.ok
        p = self.compute(objective, state)
        since = memory["since_restart"]
        after = torch.where(self._periodic(since), 1, since + 1)
        return {
            "g_prev": torch.where(moved[:, None], state.g, memory["g_prev"]),
            "p_prev": torch.where(moved[:, None], p, memory["p_prev"]),
            "f_prev": torch.where(moved, state.f, memory["f_prev"]),
            "since_restart": torch.where(moved, after, since),
        }

    def _periodic(self, since: Tensor) -> Tensor:
        """Whether a periodic restart is due after ``since`` steps."""
        if self.restart is None:
            return torch.zeros_like(since, dtype=torch.bool)
        return since >= self.restart

    def reset(self, memory, rows):
        return {
            **memory,
            "since_restart": torch.where(rows, 0, memory["since_restart"]),
            "f_prev": torch.where(rows, torch.inf, memory["f_prev"]),
        }


class CG(DescentMethod):
    """Nonlinear conjugate gradient ("cg"), Polak-Ribière+ or Hager-Zhang.

    Cost per iteration: the strong-Wolfe search's value-and-gradient trials,
    usually one to three; memory ``2 n`` numbers per problem (no matrix).

    Args:
        beta: ``"pr+"`` (default) or ``"hz"``.
        restart: iterations between restarts along ``-g`` (default: none).
        line_search: the step rule (default ``StrongWolfe(c1=1e-4, c2=0.1)``,
            the tighter curvature condition that conjugacy needs).
    """

    name = "cg"
    order = 1

    def __init__(
        self,
        *,
        beta: str = "pr+",
        restart: int | None = None,
        line_search: LineSearch | None = None,
    ):
        super().__init__(ConjugateDirection(beta, restart), line_search or StrongWolfe(c2=0.1))
