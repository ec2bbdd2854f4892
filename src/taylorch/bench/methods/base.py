"""Method adapters: one small object per (library, algorithm), registered by name.

Every adapter turns a counted problem function into the call its library
expects and back into an :class:`Outcome`. Names are ``"library:algorithm"``
(``"taylorch:bfgs"``, ``"scipy:l-bfgs-b"``, ``"optimistix:lm"``). An adapter
whose library is not installed stays registered and says so through
:meth:`Method.unavailable`, so a missing peer is reported, never dropped.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

import torch
from torch import Tensor

from taylorch.bench.counting import CountedFunction
from taylorch.bench.problems.base import Problem

__all__ = [
    "LIBRARIES",
    "METHODS",
    "Method",
    "Outcome",
    "Settings",
    "library_missing",
    "match",
    "register",
    "select",
]

Kind = Literal["minimize", "least_squares"]
T = TypeVar("T")

DENSE_MAX_N = 2000
"""Largest ``n`` given to a method that keeps dense ``n x n`` (or ``m x n``) matrices."""

LIBRARIES: dict[str, tuple[str, str]] = {
    "taylorch": ("taylorch", "taylorch"),
    "scipy": ("scipy", "scipy"),
    "torchmin": ("torchmin", "pytorch-minimize"),
    "optimistix": ("optimistix", "optimistix (and jax)"),
    "lmfit": ("lmfit", "lmfit"),
    "torch.optim": ("torch", "torch"),
    "heavyball": ("heavyball", "heavyball"),
    "pytorch_optimizer": ("pytorch_optimizer", "pytorch-optimizer"),
}
"""Library name -> (module to import, package to install)."""


@functools.cache
def library_missing(library: str) -> str | None:
    """``None`` if ``library`` can be imported, else why not (naming the package to install).

    An installed library that fails to import (a broken or incompatible version) is
    reported as such, so its methods are recorded "unavailable" instead of ending the
    whole benchmark with its traceback. The import is tried once per process.
    """
    if library not in LIBRARIES:  # a user's own method: its module is the user's concern
        return None
    module, package = LIBRARIES[library]
    if importlib.util.find_spec(module) is None:
        return f"{library} is not installed (pip install {package})"
    if library == "optimistix" and importlib.util.find_spec("jax") is None:
        return "optimistix needs jax, which is not installed (pip install jax)"
    try:
        importlib.import_module(module)
    except Exception as exc:  # any failure of a third-party import: report, don't crash
        return f"{library} is installed but does not import: {type(exc).__name__}: {exc}"
    return None


@dataclass(frozen=True)
class Settings:
    """What every method is asked for: the same tolerance and budget for all.

    Args:
        gtol: gradient tolerance handed to methods that take one (mapped to each
            library's own option); ``None``: 1e-8 in float64, 1e-5 in float32.
        max_evals: evaluations per problem; the harness stops a run past
            ``1.1 * max_evals + 10`` even if the method ignores its own limit.
        max_time: seconds per run, enforced the same way.
        f_star: the problem's known minimum value, for methods built on it (Polyak's
            step); the runner fills it in from the problem.
    """

    gtol: float | None = None
    max_evals: int = 2000
    max_time: float = 20.0
    f_star: float | Tensor | None = None

    def __post_init__(self) -> None:
        if self.gtol is not None and not self.gtol > 0:
            raise ValueError(f"gtol must be > 0, got {self.gtol}")
        if not (isinstance(self.max_evals, int) and self.max_evals >= 1):
            raise ValueError(f"max_evals must be a positive integer, got {self.max_evals!r}")
        if not self.max_time > 0:
            raise ValueError(f"max_time must be > 0 seconds, got {self.max_time}")

    def for_dtype(self, dtype: torch.dtype) -> Settings:
        """These settings with ``gtol`` filled in for ``dtype`` when it was left ``None``."""
        if self.gtol is not None:
            return self
        return replace(self, gtol=1e-8 if dtype == torch.float64 else 1e-5)


@dataclass
class Outcome:
    """What a method returned: its point, its own verdict, and its message."""

    x: Tensor
    success: bool | None = None
    message: str = ""


class Method(ABC):
    """An optimization method from some library, as the harness runs it.

    Subclasses set ``library``, ``algorithm`` and ``kind`` (``"minimize"``: it
    gets the scalar ``fun``; ``"least_squares"``: it gets the residual) and
    implement :meth:`solve`. ``batched = True`` means the method takes a
    ``(B, n)`` start with a ``(B, n) -> (B,)`` function in one call; other
    methods get the problems of a batch one at a time.
    """

    library: str
    algorithm: str
    kind: Kind = "minimize"
    batched: bool = False
    label: str | None = None  # the name after "library:", when not the algorithm's
    modules: tuple[str, ...] = ()  # imported by prepare(), before any run is timed
    dense: bool = False  # keeps an n x n Hessian (model) or an m x n Jacobian

    @property
    def name(self) -> str:
        return f"{self.library}:{self.label or self.algorithm}"

    def unavailable(self) -> str | None:
        """Why this method cannot run here (its library is missing), or ``None``."""
        return library_missing(self.library)

    def prepare(self) -> None:
        """Import what :meth:`solve` needs, so no run's time includes a first import."""
        for module in self.modules:
            importlib.import_module(module)

    def unsupported(self, problem: Problem) -> str | None:
        """Why this method cannot take ``problem``, or ``None``."""
        if self.kind == "least_squares" and problem.residual is None:
            return f"{self.name} needs a residual; {problem.name} gives only fun"
        if self.dense and problem.n > DENSE_MAX_N:
            return f"{self.name} keeps dense matrices; n = {problem.n} > {DENSE_MAX_N}"
        return None

    @abstractmethod
    def solve(self, fun: CountedFunction, x0: Tensor, settings: Settings) -> Outcome:
        """Minimize ``fun`` (or the sum of squares of the residual ``fun``) from ``x0``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


METHODS: dict[str, Method] = {}
"""Every registered method by name."""


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a later registration under a name replaces it)."""
    if not isinstance(method, Method):
        raise TypeError(f"method must be a Method, got {type(method).__name__}")
    METHODS[method.name] = method
    return method


def match(patterns: list[str] | str, registry: dict[str, T], what: str = "method") -> list[T]:
    """Entries of ``registry`` matching comma-separated names or shell patterns, in order.

    ``"taylorch:*"`` and ``"*:bfgs"`` are patterns; a bare algorithm name
    (``"bfgs"``) matches it in every library.
    """
    if isinstance(patterns, str):
        patterns = [p for p in patterns.split(",") if p.strip()]
    chosen: list[T] = []
    for raw in patterns:
        pattern = raw.strip()
        if ":" not in pattern and not any(c in pattern for c in "*?["):
            pattern = f"*:{pattern}"
        hits = [m for name, m in registry.items() if fnmatch.fnmatch(name, pattern)]
        if not hits:
            known = ", ".join(sorted(registry))
            raise ValueError(f"methods: {raw!r} matches no {what}; known: {known}")
        chosen += [m for m in hits if m not in chosen]
    return chosen


def select(patterns: list[str] | str) -> list[Method]:
    """Registered solver methods matching ``patterns`` (see :func:`match`)."""
    return match(patterns, METHODS)
