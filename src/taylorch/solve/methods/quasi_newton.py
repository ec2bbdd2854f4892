"""Quasi-Newton methods: BFGS and limited-memory BFGS with a strong-Wolfe search.

Both build a model of the inverse Hessian from the pairs ``s = x+ - x`` and
``y = g+ - g`` (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Ch. 6-7).
A pair is used only when its curvature is positive beyond rounding,
``<s, y> > n eps |s| |y|`` (the error bound of the computed dot product);
otherwise the update is skipped. This keeps the model positive definite, in
float32 too, where rounding can make ``<s, y>`` tiny or negative. A stricter
angle test (``sqrt(eps)`` in place of ``n eps``) throws away the legitimate,
nearly orthogonal pairs of badly scaled problems: on Powell's badly scaled
function it cost five times the evaluations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from taylorch.linalg.norms import dot
from taylorch.solve.line_search import LineSearch, SearchResult, StrongWolfe
from taylorch.solve.methods.base import State
from taylorch.solve.methods.descent import DescentMethod, Direction

__all__ = ["BFGS", "LBFGS"]


def _curvature_pairs(
    state: State, step: SearchResult
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(s, y, <s, y>, <y, y>, usable)`` for the step just taken."""
    s = step.x - state.x
    y = step.g - state.g
    sy, yy = dot(s, y), dot(y, y)
    guard = s.shape[-1] * torch.finfo(s.dtype).eps
    # False for a NaN <s, y> too.
    usable = step.ok & (sy > guard * torch.sqrt(dot(s, s) * yy))
    return s, y, sy, yy, usable


class BFGSDirection(Direction):
    """``p = -H g`` with the dense inverse-Hessian model ``H`` ``(B, n, n)``.

    The update (N&W eq. 6.17) ``H+ = (I - r s y^T) H (I - r y s^T) + r s s^T``,
    ``r = 1 / <s, y>``, is applied as two rank-1 updates. A problem with no
    usable pair yet (at the start, or after a reset) steps along ``-g`` and
    takes ``H = <s, y> / <y, y> I`` (N&W eq. 6.20) as the base of its first
    update. Cost per step: O(n^2) flops; memory n^2 per problem.
    """

    def init(self, objective, x, f, g):
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return {
            "inv_hessian": eye.expand(x.shape[0], -1, -1).clone(),
            "updates": torch.zeros_like(f, dtype=torch.long),
        }

    def compute(self, objective, state):
        fresh = state.memory["updates"] == 0
        hg = (state.memory["inv_hessian"] @ state.g[..., None])[..., 0]
        return -torch.where(fresh[:, None], state.g, hg)

    def initial_step(self, state, p, steepest):
        # min(1, 1/|g|) before any curvature is known, 1 afterwards
        return torch.where(state.memory["updates"] == 0, steepest, 1.0)

    def update(self, objective, state, step, memory):
        s, y, sy, yy, usable = _curvature_pairs(state, step)
        h = memory["inv_hessian"]  # updated in place: only usable rows change (see State)
        first = usable & (memory["updates"] == 0)
        if bool(first.any()):
            eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
            h.copy_(torch.where(first[:, None, None], (sy / yy)[:, None, None] * eye, h))
        # H+ = H + s a^T + Hy b^T with a = (r^2 yHy + r) s - r Hy, b = -r s; r = 0 where the
        # pair is not usable, which adds exact zeros there. Two rank-1 updates in place of a
        # batched (n x 2)(2 x n) product: on CPU the latter costs several times more.
        r = torch.where(usable, 1 / sy, 0.0)
        hy = (h @ y[..., None])[..., 0]
        c = r * r * dot(y, hy) + r
        a = c[:, None] * s - r[:, None] * hy
        h.addcmul_(s[:, :, None], a[:, None, :])
        h.addcmul_(hy[:, :, None], (-r[:, None] * s)[:, None, :])
        return {"inv_hessian": h, "updates": memory["updates"] + usable.long()}

    def reset(self, memory, rows):
        return {**memory, "updates": torch.where(rows, 0, memory["updates"])}


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

    def _pairs(self, memory: dict[str, Tensor]) -> tuple[Callable[[int], tuple[Tensor, ...]], int]:
        """Access to the ``j``-th newest pair ``(s, y, rho)``, and how many any problem holds.

        When every problem's ring buffer has the same head (always so for one
        problem) the pairs are views of the buffers; otherwise (the problems of
        a batch step at different rounds) one gather per buffer first puts
        each row's pairs in order, newest first.
        """
        head, count = memory["head"], memory["count"]
        held = int(count.max())
        s, y, rho = memory["s"], memory["y"], memory["rho"]
        if head.shape[0] == 1 or bool((head == head[0]).all()):
            newest = int(head[0])

            def slot(j: int) -> int:
                return (newest - 1 - j) % self.history

            return (lambda j: (s[:, slot(j)], y[:, slot(j)], rho[:, slot(j)])), held
        # Row b's j-th newest pair is its slot (head_b - 1 - j) mod m; with the batch and the
        # slots flattened into one dimension, one index_select per buffer gathers them
        # (on CPU several times faster than take_along_dim or advanced indexing).
        batch, m = rho.shape
        steps_back = torch.arange(1, held + 1, device=head.device)
        slots = (head[:, None] - steps_back) % m  # (B, held), newest first
        index = (torch.arange(batch, device=head.device)[:, None] * m + slots).reshape(-1)
        s, y = (
            buf.reshape(batch * m, -1).index_select(0, index).view(batch, held, -1)
            for buf in (s, y)
        )
        rho = rho.reshape(-1).index_select(0, index).view(batch, held)
        return (lambda j: (s[:, j], y[:, j], rho[:, j])), held

    def compute(self, objective, state):
        mem = state.memory
        pair, held = self._pairs(mem)
        q = state.g.clone()
        alphas = []
        for j in range(held):
            s, y, rho = pair(j)
            rho = rho * (j < mem["count"])  # 0 for an empty slot
            alpha = rho * dot(s, q)
            q.addcmul_(alpha[:, None], y, value=-1)
            alphas.append((alpha, rho, s, y))
        r = q.mul_(mem["gamma"][:, None])
        for alpha, rho, s, y in reversed(alphas):
            beta = rho * dot(y, r)
            r.addcmul_((alpha - beta)[:, None], s)
        return r.neg_()

    def initial_step(self, state, p, steepest):
        return torch.where(state.memory["count"] == 0, steepest, 1.0)

    def update(self, objective, state, step, memory):
        s, y, sy, yy, usable = _curvature_pairs(state, step)
        write = usable & objective.active
        # In place, on the rows that are running only (see State).
        for name, value in (("s", s), ("y", y), ("rho", 1 / sy)):
            _write_slot(memory[name], value, write, memory["head"])
        head = memory["head"]
        return {
            **memory,
            "count": torch.clamp(memory["count"] + write.long(), max=self.history),
            "head": torch.where(write, (head + 1) % self.history, head),
            "gamma": torch.where(write, sy / yy, memory["gamma"]),
        }

    def reset(self, memory, rows):
        return {
            **memory,
            "count": torch.where(rows, 0, memory["count"]),
            "gamma": torch.where(rows, torch.ones_like(memory["gamma"]), memory["gamma"]),
        }


def _write_slot(buffer: Tensor, value: Tensor, rows: Tensor, slot: Tensor) -> None:
    """``buffer[b, slot[b]] = value[b]`` for the ``rows`` that hold, in place."""
    if slot.shape[0] == 1 or bool((slot == slot[0]).all()):
        index = (slice(None), int(slot[0]))
    else:
        index = (torch.arange(slot.shape[0], device=slot.device), slot)
    if bool(rows.all()):
        buffer[index] = value
        return
    keep = rows if value.ndim == 1 else rows[:, None]
    buffer[index] = torch.where(keep, value, buffer[index])


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
