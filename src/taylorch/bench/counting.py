"""Count what a solver evaluates by wrapping the function it sees.

The harness never trusts a solver's own counters: every method, taylorch's
and the peers', receives a :class:`CountedFunction` in place of the
problem's ``fun`` (or ``residual``). The wrapper counts

* ``calls``: how often the function was called (one batched call is one call);
* ``nfev``: evaluations per problem, i.e. rows evaluated divided by the batch size;
* ``ngev``: derivative passes through the function, seen by identity
  autograd nodes on its input and output: each backward pass (a gradient, a batch of
  vector-Jacobian products), each forward-mode pass (a Jacobian-vector
  product, or a batch of them as in ``jacfwd``) and each backward pass
  through a gradient built with ``create_graph`` counts one. A
  forward-over-reverse Hessian-vector product counts two (its forward-mode
  and its backward pass), one that reuses a gradient graph counts one;

records the best value seen so far (per problem of a batch) with the time and
count at which it improved, and stops the solve by raising
:class:`BudgetExceeded` once the evaluation or time budget is spent. Values
are kept on the device until the run ends, so counting adds no host sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BudgetExceeded", "CountedFunction", "Trace"]


class BudgetExceeded(Exception):
    """Raised by a :class:`CountedFunction` when its evaluation or time budget is spent."""


class _Identity(torch.autograd.Function):
    """An identity node for counting; subclasses say what their passes count.

    The owner (the :class:`CountedFunction`) is a class attribute of a
    per-instance subclass, not an input: ``torch.func`` transforms copy
    non-tensor inputs of an autograd Function, so a counter passed in would
    not be shared.
    """

    generate_vmap_rule = True
    owner: CountedFunction

    @staticmethod
    def forward(t: Tensor) -> Tensor:
        return t.clone()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def jvp(ctx, tangent: Tensor) -> Tensor:
        return tangent


class _OutputTap(_Identity):
    """On the function's output: each backward and each forward-mode pass counts one."""

    @classmethod
    def backward(cls, ctx, grad: Tensor) -> Tensor:
        cls.owner.ngev += 1
        return grad

    @classmethod
    def jvp(cls, ctx, tangent: Tensor) -> Tensor:
        cls.owner.ngev += 1
        return tangent


class _GradTap(_Identity):
    """On a gradient built with ``create_graph``: each backward pass through it (a
    reverse-over-reverse Hessian-vector product) counts one."""

    @classmethod
    def backward(cls, ctx, grad: Tensor) -> Tensor:
        cls.owner.ngev += 1
        return grad


class _InputTap(_Identity):
    """On the function's input: counts nothing itself, but when a gradient is built to be
    differentiated again, marks it with a :class:`_GradTap` (which then lies on the path
    from ``x`` to the gradient, where a second backward pass goes through it)."""

    grad_tap: type[_GradTap]

    @classmethod
    def backward(cls, ctx, grad: Tensor) -> Tensor:
        return cls.grad_tap.apply(grad) if torch.is_grad_enabled() else grad


@dataclass
class Trace:
    """Best-so-far history of one run: at each improvement, the evaluations (as the tables
    count them: calls per problem plus derivative passes, before this call's own), seconds
    and value.

    For a batch, ``f`` is the mean over problems of each problem's best value.
    """

    evals: list[float]
    time: list[float]
    f: list[float]

    def to_dict(self) -> dict[str, list[float]]:
        return {"evals": self.evals, "time": self.time, "f": self.f}


class CountedFunction:
    """``fun`` wrapped for one run: counted, budgeted and traced.

    Args:
        fun: the problem's function, ``(..., n) -> (...)``, or its residual
            ``(..., n) -> (..., m)`` when ``residual=True``.
        batch_size: ``B`` for a batched problem, whose calls take ``(B, n)``; 1 otherwise.
        residual: whether ``fun`` returns residuals; the traced value is then ``sum(r**2)``.
        max_evals: evaluations per problem after which the next call raises.
        max_time: seconds after which the next call raises.

    The clock starts at construction or :meth:`start`.
    """

    def __init__(
        self,
        fun: Callable[[Tensor], Tensor],
        *,
        batch_size: int = 1,
        residual: bool = False,
        max_evals: float = float("inf"),
        max_time: float = float("inf"),
    ):
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        self.fun = fun
        self.batch_size = batch_size
        self.residual = residual
        self.max_evals = max_evals
        self.max_time = max_time
        self.calls = 0
        self.rows = 0
        self.ngev = 0
        self.exceeded: str | None = None
        self.warnings: list[str] = []  # set by the runner: what the method warned about
        self._values: list[tuple[int, float, Tensor]] = []
        grad_tap = type("GradTap", (_GradTap,), {"owner": self})
        self._input_tap = type("InputTap", (_InputTap,), {"owner": self, "grad_tap": grad_tap})
        self._output_tap = type("OutputTap", (_OutputTap,), {"owner": self})
        self.start()

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.t1: float | None = None

    def stop(self) -> None:
        """Freeze the clock: :meth:`elapsed` reports the run's duration from now on."""
        self.t1 = time.perf_counter()

    @property
    def nfev(self) -> float:
        """Evaluations per problem."""
        return self.rows / self.batch_size

    def elapsed(self) -> float:
        return (self.t1 if self.t1 is not None else time.perf_counter()) - self.t0

    def __call__(self, x: Tensor, *args) -> Tensor:
        if self.nfev >= self.max_evals:
            self.exceeded = f"evaluation budget ({self.max_evals:g}) spent"
            raise BudgetExceeded(self.exceeded)
        if self.elapsed() >= self.max_time:
            self.exceeded = f"time budget ({self.max_time:g} s) spent"
            raise BudgetExceeded(self.exceeded)
        y = self.fun(self._input_tap.apply(x), *args)
        if not isinstance(y, Tensor):
            raise TypeError(f"the problem's function returned {type(y).__name__}, not a Tensor")
        f = (y * y).sum(-1) if self.residual else y
        rows = f.numel()
        self.calls += 1
        self.rows += rows
        # The cost so far in the tables' unit: evaluations per problem and derivative passes.
        spent = self.rows / self.batch_size + self.ngev
        self._values.append((spent, self.elapsed(), f.detach().reshape(-1).clone()))
        return self._output_tap.apply(y)

    def _finished_values(self):
        """Recorded ``(evaluations, seconds, values)``, the values as float64 CPU tensors over
        the whole batch."""
        for spent, t, value in self._values:
            try:
                f = value.double().cpu()
            except RuntimeError:  # a value recorded inside a torch.func transform
                continue
            if f.numel() == self.batch_size:
                yield spent, t, torch.where(torch.isnan(f), torch.full_like(f, float("inf")), f)

    def best(self) -> Tensor | None:
        """The best value seen for each problem, shape ``(batch_size,)`` (``None`` if none)."""
        best = None
        for _, _, f in self._finished_values():
            best = f if best is None else torch.minimum(best, f)
        return best

    def trace(self) -> Trace:
        """The best-so-far history, computed once the run is over (one host transfer)."""
        evals, times, fs = [], [], []
        best: Tensor | None = None
        for spent, t, f in self._finished_values():
            new = f if best is None else torch.minimum(best, f)
            if best is None or bool((new < best).any()):
                best = new
                evals.append(spent)
                times.append(t)
                fs.append(float(best.mean()))
        return Trace(evals, times, fs)
