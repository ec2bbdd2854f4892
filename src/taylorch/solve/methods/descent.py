"""Line-search methods: a search ``Direction`` paired with a step-length rule.

One iteration, for every problem of the batch at once::

    p  = direction(state)                 # e.g. -H g for BFGS
    p  = -g where <g, p> >= 0, g != 0     # never walk uphill
    t  = line_search(x, f, g, p, t0)      # Armijo, strong Wolfe, fixed ...
    x+ = x + t p;  memory = update(memory, s = t p, y = g+ - g)

When the search finds no acceptable step the direction's memory is reset
(the next direction is steepest descent); a problem whose steepest-descent
search fails too reports ``NO_PROGRESS``: at that precision no step along
``-g`` decreases ``f``. So does a problem whose last ``patience`` steps,
failed searches included, improved neither its lowest ``f`` nor its
smallest ``|g|``: at the noise floor of ``f`` a failed quasi-Newton search,
a steepest-descent step that "decreases" ``f`` by rounding noise and a step
back can repeat forever (Meyer's function did, with BFGS).
"""

from __future__ import annotations

import abc
from dataclasses import replace

import torch
from torch import Tensor

from taylorch.linalg.norms import dot
from taylorch.solve.line_search import LineSearch, RoundSearch, SearchResult
from taylorch.solve.methods.base import Solver, State, where_rows
from taylorch.solve.objective import Objective
from taylorch.solve.result import Status

__all__ = ["DescentMethod", "Direction"]


class Direction(abc.ABC):
    """Where to go from the current state, with any memory it keeps."""

    def init(self, objective: Objective, x: Tensor, f: Tensor, g: Tensor) -> dict[str, Tensor]:
        """Initial memory (tensors with the batch first)."""
        return {}

    @abc.abstractmethod
    def compute(self, objective: Objective, state: State) -> Tensor:
        """The direction ``p`` ``(B, n)``."""

    def initial_step(self, state: State, p: Tensor, steepest: Tensor) -> Tensor:
        """First trial step ``(B,)`` for the line search: 1 (the natural Newton step).

        ``steepest`` is ``min(1, 1/|g|)``, the first trial along ``-g`` (a step of
        length at most 1), for directions that know no better yet.
        """
        return torch.ones_like(state.f)

    def update(
        self, objective: Objective, state: State, step: SearchResult, memory: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Memory after the step from ``state`` to ``step`` (rows with ``step.ok``)."""
        return memory

    def reset(self, memory: dict[str, Tensor], rows: Tensor) -> dict[str, Tensor]:
        """Forget what was learned on ``rows`` so that the next direction is ``-g``."""
        return memory

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class DescentMethod(Solver):
    """A :class:`Direction` and a :class:`LineSearch`, run as one solver.

    With a :class:`~taylorch.solve.line_search.RoundSearch` (Armijo, strong
    Wolfe) and a first-order direction, every problem of a batch searches on its
    own clock: one :meth:`step` is one round, one evaluation of the batch, and
    a problem whose search ends this round takes its step, updates its memory
    and starts its next search at the next round (``State.advanced`` tells the
    loop whose iteration ended). In lockstep, every round would wait for the
    slowest search of the batch: on 1,024 Rosenbrock problems BFGS then
    evaluated the batch 2.9 times per iteration, where each problem alone
    needs 1.1. Each problem's sequence of points is the same either way, and
    the same as when it is solved alone. Second-order directions run in
    lockstep: their curvature is computed for the whole batch at one point
    per problem, which the batch shares only when all problems start
    together.
    """

    patience: int = 30

    def __init__(self, direction: Direction, line_search: LineSearch):
        self.direction = direction
        self.line_search = line_search

    @property
    def asynchronous(self) -> bool:
        """Whether the problems of a batch search on their own clocks (see above)."""
        return self.order < 2 and isinstance(self.line_search, RoundSearch)

    def init(self, objective: Objective, x0: Tensor) -> State:
        if self.order == 2:
            objective.expect_curvature()
        f, g = objective.value_and_grad(x0)
        memory = self.direction.init(objective, x0, f, g)
        gnorm = torch.linalg.vector_norm(g, dim=-1)
        return State.start(
            x0,
            f,
            g,
            fresh=torch.ones_like(f, dtype=torch.bool),
            best_f=f.clone(),
            gnorm=gnorm,
            best_gnorm=gnorm.clone(),
            stalled=torch.zeros_like(f, dtype=torch.long),
            **memory,
        )

    def step(self, objective: Objective, state: State) -> State:
        memory = dict(state.memory)
        progress = {key: memory.pop(key) for key in _PROGRESS_KEYS}
        search = state.carry
        if not isinstance(self.line_search, RoundSearch):
            p, t0, uphill = self._direction(objective, state, progress)
            step = self.line_search.search(objective, state.x, state.f, state.g, p, t0)
            return self._take(objective, state, step, memory, progress, uphill, ended=None)

        starting = objective.active if not search else objective.active & ~search["pending"]
        if not search or bool(starting.any()):
            p, t0, uphill = self._direction(objective, state, progress)
            fresh = self.line_search.begin(state.x, state.f, state.g, p, t0, starting)
            fresh["uphill"] = uphill
            search = fresh if not search else _where_dict(starting, fresh, search)
        while True:  # one round, or (in lockstep) rounds until every search has ended
            ft, gt = self.line_search.trial(objective, state.x, search)
            search = self.line_search.advance(search, state.x, state.f, ft, gt)
            if self.asynchronous or not bool(search["pending"].any()):
                break
        step = self.line_search.conclude(search, state.x, state.f, state.g)
        ended = ~search["pending"] & objective.active
        if not bool(ended.any()):  # every search goes on: nothing moves yet
            return replace(state, advanced=ended, carry=search)
        if bool(ended.all()):  # every search ended: nothing to carry to the next round
            return self._take(
                objective, state, step, memory, progress, search["uphill"], ended=None
            )
        new = self._take(objective, state, step, memory, progress, search["uphill"], ended)
        if self.asynchronous:  # in lockstep no search is left under way
            new.carry = search
        return new

    def _direction(
        self, objective: Objective, state: State, progress: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The search direction, its first trial step and where ``-g`` replaced it."""
        p = self.direction.compute(objective, state)
        slope = dot(state.g, p)
        # At g = 0 exactly no direction has a negative slope; a second-order method's
        # direction of negative curvature (zero slope) is then kept, not replaced by -g = 0.
        stationary = ~(state.g != 0).any(dim=-1)
        # A non-finite entry of p makes the slope NaN or infinite: that p is replaced too.
        uphill = (~(slope < 0) & ~stationary) | ~(slope > -torch.inf)
        if bool(uphill.any()):
            p = torch.where(uphill[:, None], -state.g, p)
        steepest = torch.clamp(1 / progress["gnorm"], max=1.0)
        t0 = torch.where(uphill, steepest, self.direction.initial_step(state, p, steepest))
        return p, t0, uphill

    def _take(
        self,
        objective: Objective,
        state: State,
        step: SearchResult,
        memory: dict[str, Tensor],
        progress: dict[str, Tensor],
        uphill: Tensor,
        ended: Tensor | None,
    ) -> State:
        """The state after the searches that ``ended`` (``None``: all of them); every other
        problem, stopped ones included, stays exactly where it was, memory and all."""
        if ended is not None:
            step.ok = step.ok & ended
            step.x = where_rows(ended, step.x, state.x)
            step.f = where_rows(ended, step.f, state.f)
            step.g = where_rows(ended, step.g, state.g)
        new_memory = self.direction.update(objective, state, step, memory)
        restart = ~step.ok | uphill
        new_memory = self.direction.reset(new_memory, restart if ended is None else restart & ended)
        failed = ~step.ok & (progress["fresh"] | uphill)
        new_progress = self._track_progress(progress, step)
        stuck = failed | (new_progress["stalled"] >= self.patience)
        if ended is not None:
            stuck &= ended
            new_memory = _where_dict(ended, new_memory, memory)
            new_progress = _where_dict(ended, new_progress, progress)
        flag = torch.where(stuck, torch.full_like(state.flag, Status.NO_PROGRESS), state.flag)
        return State(
            x=step.x,
            f=step.f,
            g=step.g,
            flag=flag,
            memory={**new_progress, **new_memory},
            advanced=ended,
        )

    @staticmethod
    def _track_progress(progress: dict[str, Tensor], step: SearchResult) -> dict[str, Tensor]:
        """Below the precision floor the approximate Wolfe test admits steps that move ``f``
        by rounding noise only: count the steps in a row (failed ones too) that improve
        neither the lowest ``f`` nor the smallest ``|g|`` seen."""
        gnorm = torch.linalg.vector_norm(step.g, dim=-1)
        improved = (step.f < progress["best_f"]) | (gnorm < progress["best_gnorm"])
        return {
            "fresh": ~step.ok,
            "best_f": torch.minimum(step.f, progress["best_f"]),
            "gnorm": gnorm,
            "best_gnorm": torch.minimum(gnorm, progress["best_gnorm"]),
            "stalled": torch.where(improved, 0, progress["stalled"] + 1),
        }


_PROGRESS_KEYS = ("fresh", "best_f", "gnorm", "best_gnorm", "stalled")


def _where_dict(rows: Tensor, new: dict[str, Tensor], old: dict[str, Tensor]) -> dict[str, Tensor]:
    """:func:`~taylorch.solve.methods.base.where_rows`, entry by entry."""
    return {key: where_rows(rows, value, old[key]) for key, value in new.items()}
