"""What every method is: a ``Solver`` with ``init`` and ``step`` over a batched ``State``."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import Tensor

from taylorch.linalg.norms import max_abs
from taylorch.solve.objective import Objective
from taylorch.solve.result import Status

__all__ = ["Solver", "State", "Tolerances", "masked_update", "where_rows"]


@dataclass(frozen=True)
class Tolerances:
    """Stopping tolerances, already resolved to numbers.

    ``gtol``: stop when ``max |g_i| <= gtol`` (first-order optimality);
    ``xtol``/``ftol``: stop when a step changes ``x`` by less than
    ``xtol * (1 + |x|)`` *and* ``f`` by less than ``ftol * (1 + |f|)``.
    A tolerance of 0 disables its test.
    """

    gtol: float
    xtol: float
    ftol: float


@dataclass
class State:
    """Everything a method carries between iterations, as tensors over the batch.

    ``x`` is ``(B, n)``, ``f`` ``(B,)``, ``g`` ``(B, n)`` (or ``None`` for methods
    that see values only). ``flag`` is ``(B,)`` of :class:`Status` codes that a
    step raises (``NO_PROGRESS``, ``NONFINITE`` ...), ``RUNNING`` otherwise.
    ``memory`` holds the method's own tensors, each with the batch as its
    first dimension, keyed by name. A method may update a large buffer in
    place (and return the same tensor) only on the rows of ``objective.active``.
    ``advanced`` ``(B,)`` marks the problems whose iteration ended with this
    state, for a method whose step is one round of iterations that end at
    different rounds (see :class:`~taylorch.solve.methods.descent.DescentMethod`);
    such a method leaves every other row exactly as it was, so the loop need
    not mask the state. ``None``: every running problem's iteration ended. ``carry`` holds such a method's working
    tensors for the iterations still under way; the loop hands them to the next
    step as they are, unmasked (the rows of stopped problems hold leftovers).
    """

    x: Tensor
    f: Tensor
    g: Tensor | None
    flag: Tensor
    memory: dict[str, Tensor] = field(default_factory=dict)
    advanced: Tensor | None = None
    carry: dict[str, Tensor] = field(default_factory=dict)

    @staticmethod
    def start(x: Tensor, f: Tensor, g: Tensor | None, **memory: Tensor) -> State:
        flag = torch.full_like(f, Status.RUNNING, dtype=torch.long)
        flag = torch.where(torch.isfinite(f), flag, torch.full_like(flag, Status.NONFINITE))
        return State(x=x, f=f, g=g, flag=flag, memory=dict(memory))


def where_rows(rows: Tensor, new: Tensor | None, old: Tensor | None) -> Tensor | None:
    """``new`` on ``rows`` (the batch dimension) and ``old`` elsewhere. A buffer updated
    in place on those rows only (``new is old``) or a missing one is kept as it is."""
    if new is None or old is None or new is old:
        return new
    if new.ndim > 1:  # a reshape costs as much as a where on the (B,) entries
        rows = rows.reshape(rows.shape + (1,) * (new.ndim - 1))
    return torch.where(rows, new, old)


def masked_update(mask: Tensor, new: State, old: State) -> State:
    """Take ``new`` on the rows where ``mask`` holds and ``old`` elsewhere."""
    return replace(
        new,
        x=where_rows(mask, new.x, old.x),
        f=where_rows(mask, new.f, old.f),
        g=where_rows(mask, new.g, old.g),
        flag=where_rows(mask, new.flag, old.flag),
        memory={k: where_rows(mask, v, old.memory.get(k)) for k, v in new.memory.items()},
    )


class Solver(abc.ABC):
    """A minimization method, written once for a batch of independent problems.

    Subclasses set ``name`` (the registry key) and ``order`` (0, 1 or 2), and
    implement :meth:`init` and :meth:`step`. ``step`` advances every row; the
    loop in :mod:`taylorch.solve.iterate` keeps only the rows still running, so
    a method never needs to look at the stopping mask.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    uses_gradient: ClassVar[bool] = True

    @abc.abstractmethod
    def init(self, objective: Objective, x0: Tensor) -> State:
        """Evaluate at ``x0`` and build the initial state."""

    @abc.abstractmethod
    def step(self, objective: Objective, state: State) -> State:
        """One iteration for every problem of the batch, or one round of iterations that
        end at different rounds (the new state's ``advanced`` says whose ended)."""

    def default_tolerances(self, dtype: torch.dtype) -> Tolerances:
        """Tolerances used where the caller gives none (gradient test only)."""
        return Tolerances(gtol=1e-6 if dtype == torch.float64 else 1e-4, xtol=0.0, ftol=0.0)

    def stationary(self, state: State, tol: Tolerances) -> Tensor:
        """Per-problem first-order test, ``max |g_i| <= gtol`` (false without a gradient).

        Methods with their own optimality measure (least squares) override it;
        the loop also applies it at the starting point.
        """
        if state.g is None:
            return torch.zeros_like(state.flag, dtype=torch.bool)
        return max_abs(state.g) <= tol.gtol

    def converged(self, old: State, new: State, tol: Tolerances) -> Tensor:
        """Per-problem status after a step: ``CONVERGED``, ``SMALL_STEP`` or ``RUNNING``."""
        status = torch.where(
            self.stationary(new, tol),
            torch.full_like(new.flag, Status.CONVERGED),
            torch.full_like(new.flag, Status.RUNNING),
        )
        if tol.xtol <= 0 or tol.ftol <= 0:  # the small-step test needs both
            return status
        dx = (new.x - old.x).abs().amax(dim=-1)
        df = (new.f - old.f).abs()
        small = (dx < tol.xtol * (1 + old.x.abs().amax(dim=-1))) & (
            df < tol.ftol * (1 + old.f.abs())
        )
        return torch.where(
            small & (status == Status.RUNNING), torch.full_like(status, Status.SMALL_STEP), status
        )

    def confirm(self, objective: Objective, state: State, status: Tensor) -> tuple[Tensor, State]:
        """A second look at the rows that ``status`` marks ``CONVERGED``; default: keep them.

        Second-order methods override this to require curvature too: a row whose
        Hessian has a clearly negative eigenvalue is a saddle, not a minimizer;
        they set it back to ``RUNNING`` and record the escape direction in
        ``state.memory``. Called by the loop after the start test and after
        every step; may evaluate (and charge) the rows it examines.
        """
        return status, state

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"
