"""The one batched loop every method runs in: init, step, terminate, postprocess.

Each problem of the batch stops on its own: a boolean ``active`` mask over the
batch decides which rows a step may change, and a per-problem status records
why each stopped. A method's step is one iteration of every running problem,
or one round of iterations that end at different rounds (``State.advanced``
says whose ended; ``nit``, the stopping tests, the callback and the history
follow those problems). The loop itself synchronizes with the host to test
whether any problem is still running and, for such a method, whether any
iteration ended.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from taylorch.solve.methods.base import Solver, State, Tolerances, masked_update
from taylorch.solve.objective import BudgetExhausted, Objective
from taylorch.solve.progress import ProgressLine
from taylorch.solve.result import Result, Status, status_fields

__all__ = ["UNBOUNDED_BELOW", "run"]

#: A problem whose objective falls below ``-UNBOUNDED_BELOW max(1, |f(x0)|)`` stops as
#: ``UNBOUNDED`` (the convention of KNITRO's ``objrange``): a solver would otherwise
#: follow it to ``-1e308`` and report the overflow as a lack of progress.
UNBOUNDED_BELOW = 1e20


def run(
    solver: Solver,
    objective: Objective,
    x0: Tensor,
    *,
    tol: Tolerances,
    max_iter: int,
    max_time: float | None,
    callback: Callable[[Result], Any] | None,
    progress: bool,
    history: bool,
    batched: bool,
    finalize: Callable[[Result, Objective], Result] | None = None,
) -> Result:
    """Minimize from ``x0`` (shape ``(B, n)``) until every problem has stopped."""
    start = time.perf_counter()
    try:
        state = solver.init(objective, x0)
    except BudgetExhausted:
        raise ValueError(
            f"max_fev={objective.max_fev} is too small for {solver.name}: it needs more "
            "evaluations than that to start (nelder-mead: n + 1)"
        ) from None
    status = state.flag.clone()
    status = torch.where(
        solver.stationary(state, tol) & (status == Status.RUNNING),
        torch.full_like(status, Status.CONVERGED),
        status,
    )
    try:  # a second-order method may turn a saddle point back to RUNNING
        status, state = solver.confirm(objective, state, status)
    except BudgetExhausted as exhausted:
        status = torch.where(exhausted.rows, torch.full_like(status, Status.MAX_FEV), status)
    best = _Best(state)
    nit = torch.zeros_like(objective.nfev)
    unbounded_below = -UNBOUNDED_BELOW * torch.clamp(state.f.abs(), min=1.0)
    trace = _Trace(state) if history else None

    with ProgressLine(enabled=progress, name=solver.name, batch_size=x0.shape[0]) as line:
        for passes in itertools.count():
            if passes >= max_iter:  # before that no problem can have made max_iter iterations
                status = torch.where(
                    (status == Status.RUNNING) & (nit >= max_iter),
                    torch.full_like(status, Status.MAX_ITER),
                    status,
                )
            active = status == Status.RUNNING
            if not bool(active.any()):
                break
            objective.active = active
            try:
                new = solver.step(objective, state)
                step_status = solver.converged(state, new, tol)
                # The method's own verdict (a non-finite trial, no descent) explains a stop
                # better than the generic stall test, which sees only that x did not move.
                step_status = torch.where(
                    ((step_status == Status.RUNNING) | (step_status == Status.NO_PROGRESS))
                    & (new.flag != Status.RUNNING),
                    new.flag,
                    step_status,
                )
                step_status, new = solver.confirm(objective, new, step_status)
            except BudgetExhausted as exhausted:
                status = torch.where(
                    exhausted.rows, torch.full_like(status, Status.MAX_FEV), status
                )
                continue
            # Nothing to mask when every problem is still running (always so for one problem)
            # or when the method changed only the rows it reports as advanced.
            if new.advanced is None and not bool(active.all()):
                new = masked_update(active, new, state)
            state = new
            # The problems whose iteration ended with this step (all of them, unless the
            # method's step is one round of iterations that end at different rounds).
            moved = active if new.advanced is None else active & new.advanced
            if new.advanced is None or bool(moved.any()):
                nit += moved.long()
                status = torch.where(moved, step_status, status)
                status = torch.where(
                    moved & (state.f < unbounded_below),
                    torch.full_like(status, Status.UNBOUNDED),
                    status,
                )
                best.update(state, moved, converged=moved & (step_status == Status.CONVERGED))
                if trace is not None:
                    trace.append(state)
                line.update(nit, state, status)
                if callback is not None and _callback_stops(
                    callback, best.result(solver, objective, nit, status, start, batched, trace)
                ):
                    status = torch.where(
                        status == Status.RUNNING, torch.full_like(status, Status.CALLBACK), status
                    )
            if max_time is not None and time.perf_counter() - start > max_time:
                status = torch.where(
                    status == Status.RUNNING, torch.full_like(status, Status.MAX_TIME), status
                )
    objective.active = torch.ones_like(objective.active)
    result = best.result(solver, objective, nit, status, start, batched, trace)
    return finalize(result, objective) if finalize is not None else result


def _callback_stops(callback: Callable[[Result], Any], intermediate: Result) -> bool:
    try:
        return bool(callback(intermediate))
    except StopIteration:
        return True


class _Best:
    """The best iterate seen per problem: lowest finite ``f``, or the converged point."""

    def __init__(self, state: State):
        self.x, self.f = state.x.clone(), state.f.clone()
        self.g = None if state.g is None else state.g.clone()

    def update(self, state: State, active: Tensor, converged: Tensor) -> None:
        # A problem that has just met the optimality test returns that point, even where
        # an earlier iterate has a value lower by rounding noise: the status speaks of x.
        better = (active & (state.f < self.f)) | converged
        if bool(better.all()):  # the usual case for one problem: no copy of x and g
            self.x, self.f, self.g = state.x, state.f, state.g
            return
        self.x = torch.where(better[:, None], state.x, self.x)
        self.f = torch.where(better, state.f, self.f)
        if self.g is not None and state.g is not None:
            self.g = torch.where(better[:, None], state.g, self.g)

    def result(
        self,
        solver: Solver,
        objective: Objective,
        nit: Tensor,
        status: Tensor,
        start: float,
        batched: bool,
        trace: _Trace | None,
    ) -> Result:
        codes, success, message = status_fields(status, batched)
        pick = (lambda t: t.clone()) if batched else (lambda t: t[0].clone())
        number = (lambda t: t.clone()) if batched else (lambda t: t[0].item())
        return Result(
            x=pick(self.x),
            fun=number(self.f),
            jac=None if self.g is None else pick(self.g),
            nit=number(nit),
            nfev=number(objective.nfev),
            njev=number(objective.njev),
            n_hvp=number(objective.n_hvp),
            status=codes,
            success=success,
            message=message,
            method=solver.name,
            wall_time=time.perf_counter() - start,
            history=None if trace is None else trace.tensors(batched),
        )


class _Trace:
    """Per-iteration value and gradient norm, kept when ``history=True``."""

    def __init__(self, state: State):
        self.f: list[Tensor] = []
        self.gnorm: list[Tensor] = []
        self.append(state)

    def append(self, state: State) -> None:
        self.f.append(state.f.clone())
        if state.g is not None:
            self.gnorm.append(state.g.abs().amax(dim=-1))

    def tensors(self, batched: bool) -> dict[str, Tensor]:
        out = {"f": torch.stack(self.f)}
        if self.gnorm:
            out["gnorm"] = torch.stack(self.gnorm)
        return out if batched else {k: v[:, 0] for k, v in out.items()}
