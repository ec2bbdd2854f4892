"""Quasi-Newton methods: BFGS and limited-memory BFGS with a strong-Wolfe search.

Both build a model of the inverse Hessian from the pairs ``s = x+ - x`` and
``y = g+ - g`` (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Ch. 6-7).
A pair is used only when its curvature is safely positive,
``<s, y> > sqrt(eps) |s| |y|``; otherwise the update is skipped. This keeps
the model positive definite, in float32 too, where rounding can make
``<s, y>`` tiny or negative.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.solve.line_search import LineSearch, SearchResult, StrongWolfe
from taylorch.solve.methods.base import State
from taylorch.solve.methods.descent import DescentMethod, Direction

__all__ = ["BFGS", "LBFGS"]


def _curvature_pairs(state: State, step: SearchResult) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(s, y, <s, y>, usable)`` for the step just taken."""
    s = step.x - state.x
    y = step.g - state.g
    sy = (s * y).sum(dim=-1)
    guard = torch.finfo(s.dtype).eps ** 0.5
    norms = torch.linalg.vector_norm(s, dim=-1) * torch.linalg.vector_norm(y, dim=-1)
    usable = step.ok & (sy > guard * norms) & torch.isfinite(sy)
    return s, y, sy, usable


def _first_step(count: Tensor, g: Tensor) -> Tensor:
    """``min(1, 1/|g|)`` before any curvature is known, 1 afterwards."""
    first = torch.clamp(1 / torch.linalg.vector_norm(g, dim=-1), max=1.0)
    return torch.where(count == 0, first, torch.ones_like(first))


class BFGSDirection(Direction):
    """``p = -H g`` with the dense inverse-Hessian model ``H`` ``(B, n, n)``.

    The update (N&W eq. 6.17) ``H+ = (I - r s y^T) H (I - r y s^T) + r s s^T``,
    ``r = 1 / <s, y>``; before the first update ``H`` is scaled to
    ``<s, y> / <y, y> I`` (N&W eq. 6.20). Cost per step: O(n^2) flops.
    """

    def init(self, objective, x, f, g):
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return {
            "inv_hessian": eye.expand(x.shape[0], -1, -1).clone(),
            "updates": torch.zeros_like(f, dtype=torch.long),
        }

    def compute(self, objective, state):
        return -(state.memory["inv_hessian"] @ state.g[..., None])[..., 0]

    def initial_step(self, state, p):
        return _first_step(state.memory["updates"], state.g)

    def update(self, objective, state, step, memory):
        s, y, sy, usable = _curvature_pairs(state, step)
        h = memory["inv_hessian"]
        first = memory["updates"] == 0
        scale = torch.where(first, sy / (y * y).sum(dim=-1), 1.0)
        eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
        h = torch.where(first[:, None, None], eye, h) * scale[:, None, None]
        # H+ = H + U W^T with U = [s, Hy], W = [(r^2 yHy + r) s - r Hy, -r s]: one rank-2 bmm.
        r = 1 / sy
        hy = (h @ y[..., None])[..., 0]
        c = r * r * (y * hy).sum(dim=-1) + r
        u = torch.stack((s, hy), dim=-1)
        w = torch.stack((c[:, None] * s - r[:, None] * hy, -r[:, None] * s), dim=-2)
        new_h = torch.baddbmm(h, u, w)
        return {
            "inv_hessian": torch.where(usable[:, None, None], new_h, memory["inv_hessian"]),
            "updates": memory["updates"] + usable.long(),
        }

    def reset(self, memory, rows):
        eye = torch.eye(memory["inv_hessian"].shape[-1], dtype=memory["inv_hessian"].dtype)
        eye = eye.to(memory["inv_hessian"].device)
        return {
            "inv_hessian": torch.where(rows[:, None, None], eye, memory["inv_hessian"]),
            "updates": torch.where(rows, 0, memory["updates"]),
        }


class LBFGSDirection(Direction):
    """``p = -H g`` by the two-loop recursion over the last ``history`` pairs.

    Memory per problem: ``2 * history * n`` numbers in a ring buffer; the
    initial matrix is ``gamma I`` with ``gamma = <s, y> / <y, y>`` of the newest
    pair (N&W Alg. 7.4, eq. 7.20). Cost per step: about ``4 * history * n`` flops.
    """

    def __init__(self, history: int = 10):
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        self.history = history

    def init(self, objective, x, f, g):
        batch, n = x.shape
        zeros = torch.zeros(batch, self.history, n, dtype=x.dtype, device=x.device)
        return {
            "s": zeros,
            "y": zeros.clone(),
            "rho": torch.zeros(batch, self.history, dtype=x.dtype, device=x.device),
            "count": torch.zeros(batch, dtype=torch.long, device=x.device),
            "head": torch.zeros(batch, dtype=torch.long, device=x.device),
            "gamma": torch.ones_like(f),
        }

    def compute(self, objective, state):
        mem = state.memory
        rows = torch.arange(state.x.shape[0], device=state.x.device)
        q = state.g.clone()
        alphas = []
        for j in range(self.history):
            idx = (mem["head"] - 1 - j) % self.history
            valid = j < mem["count"]
            s, y, rho = mem["s"][rows, idx], mem["y"][rows, idx], mem["rho"][rows, idx]
            alpha = torch.where(valid, rho * (s * q).sum(dim=-1), 0.0)
            q = q - alpha[:, None] * y
            alphas.append((alpha, s, y, rho, valid))
        r = mem["gamma"][:, None] * q
        for alpha, s, y, rho, valid in reversed(alphas):
            beta = rho * (y * r).sum(dim=-1)
            r = r + torch.where(valid, alpha - beta, 0.0)[:, None] * s
        return -r

    def initial_step(self, state, p):
        return _first_step(state.memory["count"], state.g)

    def update(self, objective, state, step, memory):
        s, y, sy, usable = _curvature_pairs(state, step)
        write = usable & objective.active
        rows = torch.arange(s.shape[0], device=s.device)
        head = memory["head"]
        # In place, on the rows that are running only (see State).
        memory["s"][rows, head] = torch.where(write[:, None], s, memory["s"][rows, head])
        memory["y"][rows, head] = torch.where(write[:, None], y, memory["y"][rows, head])
        memory["rho"][rows, head] = torch.where(write, 1 / sy, memory["rho"][rows, head])
        return {
            **memory,
            "count": torch.clamp(memory["count"] + write.long(), max=self.history),
            "head": torch.where(write, (head + 1) % self.history, head),
            "gamma": torch.where(write, sy / (y * y).sum(dim=-1), memory["gamma"]),
        }

    def reset(self, memory, rows):
        return {
            **memory,
            "count": torch.where(rows, 0, memory["count"]),
            "gamma": torch.where(rows, torch.ones_like(memory["gamma"]), memory["gamma"]),
        }


class BFGS(DescentMethod):
    """BFGS with a strong-Wolfe line search (Nocedal & Wright Alg. 6.1).

    Cost per iteration: usually one value-and-gradient (the unit step is
    accepted near the solution), O(n^2) flops, O(n^2) memory per problem.

    Args:
        line_search: the step rule (default ``StrongWolfe(c1=1e-4, c2=0.9)``).
    """

    name = "bfgs"
    order = 1

    def __init__(self, *, line_search: LineSearch | None = None):
        super().__init__(BFGSDirection(), line_search or StrongWolfe(c2=0.9))


class LBFGS(DescentMethod):
    """Limited-memory BFGS with a strong-Wolfe line search (Liu & Nocedal 1989).

    Cost per iteration: usually one value-and-gradient and ``4 m n`` flops;
    memory ``2 m n`` per problem.

    Args:
        history: number of curvature pairs ``m`` kept.
        line_search: the step rule (default ``StrongWolfe(c1=1e-4, c2=0.9)``).
    """

    name = "l-bfgs"
    order = 1

    def __init__(self, *, history: int = 10, line_search: LineSearch | None = None):
        super().__init__(LBFGSDirection(history), line_search or StrongWolfe(c2=0.9))
