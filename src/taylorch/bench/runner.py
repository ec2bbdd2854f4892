"""Run methods on problems, count what they evaluate, and score the outcome.

One run = one method on one problem (or on one batch of problems)::

    counted = CountedFunction(problem.fun or problem.residual, budget)
    try:    outcome = method.solve(counted, x0, settings)     # its point and verdict
    except BudgetExceeded: the best value seen stands
    except Exception as e: status "failed", message = e
    f = problem.fun(outcome.x)                               # re-evaluated, uncounted

Scoring waits until every method has run on a problem, because a problem
without a known minimum is scored against the best value any method reached:
a run is *solved* when ``f - f_ref <= tau (f(x0) - f_ref)`` for every problem
of its batch (or, for NIST, when its parameters have ``min_accuracy`` correct
digits). A solved run costs its evaluations and seconds; anything else costs
``inf`` in the performance profiles.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from taylorch.bench.counting import BudgetExceeded, CountedFunction
from taylorch.bench.methods import METHODS, Method, Outcome, Settings, select
from taylorch.bench.problems.base import Problem
from taylorch.bench.records import RunRecord

__all__ = ["Observer", "RunState", "run_method", "run_problems", "score"]


class Observer:
    """Hooks for live progress; the default does nothing.

    ``start`` announces how many runs follow, ``begin``/``done`` bracket each
    run, ``scored`` hands over a problem's finished records, ``finish`` ends it.
    """

    def start(self, total: int, label: str) -> None: ...

    def begin(self, problem: str, method: str) -> None: ...

    def done(self) -> None: ...

    def scored(self, records: Sequence[RunRecord]) -> None: ...

    def finish(self) -> None: ...


@dataclass
class RunState:
    """What scoring needs beyond the record: per-problem values and the returned point."""

    record: RunRecord
    f_rows: Tensor | None = None  # final value of each problem of the batch
    f0_rows: Tensor | None = None
    x: Tensor | None = None
    budget_hit: bool = False
    failed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _one_row(fun: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """A batched function ``(B, n) -> (B, ...)`` as a function of one point ``(n,)``."""
    return lambda x: fun(x.unsqueeze(0)).squeeze(0)


def _values(problem: Problem, x: Tensor) -> Tensor:
    """``fun`` at ``x`` for each problem of the batch, shape ``(B,)``, uncounted.

    ``fun`` gets the shape it was written for: ``(B, n)`` if batched, else ``(n,)``.
    """
    with torch.no_grad():
        f = problem.fun(x.reshape(problem.x0.shape))
    return f.detach().double().cpu().reshape(-1)


def _row_values(problem: Problem, x: Tensor) -> Tensor:
    """Values at a method's answer: the whole batch, or one row of it (solved alone)."""
    if x.numel() == problem.x0.numel():
        return _values(problem, x)
    with torch.no_grad():
        f = _one_row(problem.fun)(x.reshape(problem.n))
    return f.detach().double().cpu().reshape(-1)


def _solve_counted(
    method: Method, fun: Callable, x0: Tensor, settings: Settings, batch_size: int, residual: bool
) -> tuple[Outcome | None, CountedFunction, str | None, bool]:
    """One call of ``method.solve`` on a counted ``fun``: (outcome, counter, error, budget)."""
    counted = CountedFunction(
        fun,
        batch_size=batch_size,
        residual=residual,
        max_evals=1.1 * settings.max_evals + 10,
        max_time=1.1 * settings.max_time + 1,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome, error, budget = method.solve(counted, x0, settings), None, False
        except BudgetExceeded as exc:
            outcome, error, budget = None, str(exc), True
        except Exception as exc:  # a crashing method is a recorded failure, never the end
            outcome, error, budget = None, f"{type(exc).__name__}: {exc}", False
    counted.stop()
    counted.warnings = warning_summary(caught)
    return outcome, counted, error, budget


def warning_summary(caught: Sequence[warnings.WarningMessage], limit: int = 3) -> list[str]:
    """The first few distinct warnings a run raised, kept in its record instead of the terminal."""
    seen = dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
    return list(seen)[:limit]


def run_method(
    method: Method, problem: Problem, settings: Settings, *, suite: str = "", seed: int = 0
) -> RunState:
    """Run ``method`` on ``problem`` (already on its dtype and device) and record it, unscored."""
    run_settings = {
        "gtol": settings.gtol,
        "max_evals": settings.max_evals,
        "max_time": settings.max_time,
        "seed": seed,
        "dtype": str(problem.x0.dtype).removeprefix("torch."),
        "device": str(problem.x0.device),
    }
    base = {
        "problem": problem.name,
        "method": method.name,
        "library": method.library,
        "suite": suite,
        "n": problem.n,
        "batch_size": problem.batch_size,
        "tags": dict(problem.tags),
        "settings": run_settings,
    }
    reason = method.unavailable() or method.unsupported(problem)
    if reason:
        status = "unavailable" if method.unavailable() else "unsupported"
        return RunState(RunRecord(status=status, message=reason, **base))

    settings = replace(settings, f_star=problem.f_star)
    f0_rows = _values(problem, problem.x0)
    residual = method.kind == "least_squares"
    fun = problem.residual if residual else problem.fun
    torch.manual_seed(seed)
    if problem.batched and not method.batched:
        row_fun = _one_row(fun)
        parts = [_solve_counted(method, row_fun, x0, settings, 1, residual) for x0 in problem.x0]
    else:
        parts = [_solve_counted(method, fun, problem.x0, settings, problem.batch_size, residual)]

    counters = [c for _, c, _, _ in parts]
    errors = [e for _, _, e, budget in parts if e and not budget]
    budget_hit = any(budget for *_, budget in parts)
    rows = []
    for (outcome, counted, _, _), f0 in zip(parts, f0_rows.split(len(f0_rows) // len(parts))):
        if outcome is not None:
            rows.append(_row_values(problem, outcome.x))
        else:
            best = counted.best()
            rows.append(best if best is not None else f0.clone().fill_(math.inf))
    f_rows = torch.cat(rows)
    outcomes = [o for o, *_ in parts]
    x = None
    if all(o is not None for o in outcomes):
        xs = [o.x.detach().reshape(-1, problem.n) for o in outcomes]
        x = torch.cat(xs).reshape(problem.x0.shape)

    nonfinite = not bool(torch.isfinite(f_rows).all())
    messages = sorted({o.message for o in outcomes if o is not None and o.message})
    messages += sorted({e for *_, e, _ in parts if e})
    messages += [f"warning: {w}" for w in dict.fromkeys(w for c in counters for w in c.warnings)]
    if nonfinite and not errors:
        messages.append("the returned point has a non-finite objective value")
    finished = all(o is not None for o in outcomes)
    trace = _merge_traces(counters, f0_rows) if len(parts) > 1 else counters[0].trace()
    record = RunRecord(
        status="unsolved",
        message="; ".join(messages)[:2000],
        f=float(f_rows.mean()),
        f0=float(f0_rows.mean()),
        nfev=sum(c.nfev for c in counters) / len(counters),
        ngev=sum(c.ngev for c in counters) / len(counters),
        calls=sum(c.calls for c in counters),
        time=sum(c.elapsed() for c in counters),
        method_success=finished and all(bool(o.success) for o in outcomes),
        trace=trace.to_dict(),
        **base,
    )
    return RunState(record, f_rows, f0_rows, x, budget_hit, bool(errors) or nonfinite)


def _merge_traces(counters: Sequence[CountedFunction], f0_rows: Tensor):
    """One best-so-far trace for a batch solved row by row, one after another."""
    from taylorch.bench.counting import Trace

    current = f0_rows.clone()
    evals, times, fs = [], [], []
    done_evals = done_time = 0.0
    batch = len(counters)
    for i, counted in enumerate(counters):
        part = counted.trace()
        for e, t, f in zip(part.evals, part.time, part.f):
            current[i] = min(float(current[i]), f)
            evals.append((done_evals + e) / batch)
            times.append(done_time + t)
            fs.append(float(current.mean()))
        done_evals += counted.nfev
        done_time += counted.elapsed()
    return Trace(evals, times, fs)


def score(states: Sequence[RunState], problem: Problem) -> None:
    """Set status, reference value and cost of every run on ``problem``, in place."""
    ran = [s for s in states if s.f_rows is not None]
    if problem.f_star is not None:
        f_ref = torch.as_tensor(problem.f_star, dtype=torch.float64).cpu().reshape(-1)
        f_ref = f_ref.expand(problem.batch_size)
    elif ran:
        stacked = torch.stack([s.f_rows for s in ran])
        f_ref = torch.where(torch.isfinite(stacked), stacked, torch.inf).min(0).values
    else:
        f_ref = None
    for s in states:
        rec = s.record
        if s.f_rows is None:
            continue
        rec.f_ref = None if f_ref is None else float(f_ref.mean())
        if problem.accuracy is not None and not problem.batched and s.x is not None:
            rec.accuracy = float(problem.accuracy(s.x))
            solved_rows = torch.tensor([rec.accuracy >= problem.min_accuracy])
        elif problem.accuracy is not None:
            solved_rows = torch.zeros(problem.batch_size, dtype=torch.bool)
        else:
            gap = s.f_rows - f_ref
            allowed = problem.tau * (s.f0_rows - f_ref).clamp_min(0)
            solved_rows = torch.isfinite(s.f_rows) & (gap <= allowed)
        if problem.batched:
            rec.solved_fraction = float(solved_rows.double().mean())
        if bool(solved_rows.all()):
            rec.status = "solved"
            rec.time_to_solve, rec.evals_to_solve = rec.time, rec.evals
        elif s.failed:
            rec.status = "failed"
        elif s.budget_hit:
            rec.status = "budget"
        else:
            rec.status = "unsolved"


def _warm_up(method: Method, dtype: torch.dtype, device) -> None:
    """Import the method's library and solve a 2-d quadratic once, untimed, so first-call
    costs (lazy imports, torch.func setup) are not charged to the first timed run."""
    method.prepare()
    x0 = torch.zeros(2, dtype=dtype, device=device)
    residual = method.kind == "least_squares"
    fun = (lambda x: x - 1) if residual else (lambda x: ((x - 1) ** 2).sum(-1))
    _solve_counted(method, fun, x0, Settings(gtol=1e-6, max_evals=50, max_time=5.0), 1, residual)


def run_problems(
    problems: Iterable[Problem],
    methods: Sequence[Method | str] | str | None = None,
    *,
    settings: Settings | None = None,
    suite: str = "",
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    seed: int = 0,
    observer: Observer | None = None,
) -> list[RunRecord]:
    """Every method on every problem, scored. Methods are objects or names/patterns."""
    problems = list(problems)
    methods = _resolve(methods)
    observer = observer or Observer()
    settings = (settings or Settings()).for_dtype(dtype)
    for method in methods:
        if not method.unavailable():
            _warm_up(method, dtype, device)
    observer.start(len(problems) * len(methods), suite)
    records: list[RunRecord] = []
    for problem in problems:
        problem = problem.to(dtype=dtype, device=device)
        states = []
        for method in methods:
            observer.begin(problem.name, method.name)
            states.append(run_method(method, problem, settings, suite=suite, seed=seed))
            observer.done()
        score(states, problem)
        observer.scored([s.record for s in states])
        records += [s.record for s in states]
    observer.finish()
    return records


def _resolve(methods: Sequence[Method | str] | str | None) -> list[Method]:
    if methods is None:
        return select("taylorch:*")
    if isinstance(methods, str):
        return select(methods)
    out: list[Method] = []
    for m in methods:
        if isinstance(m, Method):
            out.append(m)
        elif isinstance(m, str):
            out += [x for x in select(m) if x not in out]
        else:
            raise TypeError(f"methods must be names or Method objects, got {type(m).__name__}")
    if not out:
        raise ValueError(f"methods: none given; known: {', '.join(sorted(METHODS))}")
    return out
