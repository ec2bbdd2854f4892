"""``minimize``: argument checking, method lookup, and the call into the loop."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from taylorch.derivatives import check_point
from taylorch.solve import iterate
from taylorch.solve.methods import METHODS, Solver, Tolerances
from taylorch.solve.objective import Objective
from taylorch.solve.result import Result

__all__ = ["minimize"]


def minimize(
    fun: Callable[..., Tensor],
    x0: Tensor | Result,
    *,
    method: str | Solver = "auto",
    args: tuple = (),
    batched: bool = False,
    gtol: float | None = None,
    xtol: float | None = None,
    ftol: float | None = None,
    max_iter: int | None = None,
    max_fev: int | None = None,
    max_time: float | None = None,
    callback: Callable[[Result], Any] | None = None,
    progress: bool = False,
    history: bool = False,
    **method_options: Any,
) -> Result:
    """Minimize a scalar function of a tensor.

    Args:
        fun: ``fun(x, *args)`` returns a scalar tensor for ``x`` of shape ``(n,)``;
            with ``batched=True`` it maps ``(B, n) -> (B,)``, one value per problem.
        x0: starting point ``(n,)`` (or ``(B, n)``), or a previous ``Result`` to continue from.
        method: a name from ``taylorch.solve.METHODS`` or a configured method object;
            ``"auto"`` picks one from ``n`` and says which in ``Result.method``.
        args: extra positional arguments for ``fun``.
        batched: solve ``B`` independent problems at once, each stopping on its own.
        gtol: stop a problem when ``max_i |g_i| <= gtol`` (default 1e-6 in float64,
            1e-4 in float32; order-0 methods use their own measures).
        xtol, ftol: also stop when a step changes ``x`` by less than ``xtol (1 + |x|)``
            and ``f`` by less than ``ftol (1 + |f|)`` (off by default for gradient methods).
        max_iter: iterations per problem (default ``max(100, 200 n)``).
        max_fev: evaluations of ``fun`` per problem; never exceeded.
        max_time: seconds of wall time.
        callback: called after each iteration with an intermediate ``Result`` (in a batch:
            after each call of ``fun`` in which some problem ended an iteration); returning
            ``True`` or raising ``StopIteration`` stops the solve.
        progress: show a live progress line.
        history: keep ``f`` (and ``|g|``) of every iteration in ``Result.history`` (in a
            batch: as the callback sees them).
        **method_options: keyword arguments for the named method's constructor.

    Returns:
        A :class:`~taylorch.Result` holding the best iterate seen.

    Example:
        >>> import torch, taylorch
        >>> rosen = lambda x: (1 - x[:-1]).pow(2).sum() + 100 * (x[1:] - x[:-1] ** 2).pow(2).sum()
        >>> res = taylorch.minimize(rosen, torch.zeros(5, dtype=torch.float64), method="bfgs")
        >>> res.success, round(res.fun, 12)
        (True, 0.0)
    """
    x = starting_point(fun, x0, args, batched)
    solver = resolve_method(method, method_options, n=x.shape[-1])
    tol = resolve_tolerances(solver, x.dtype, gtol=gtol, xtol=xtol, ftol=ftol)
    max_iter, max_fev = resolve_budget(max_iter, max_fev, max_time, default_iter=200 * x.shape[-1])
    objective = Objective(
        fun, args, batched=batched, batch_size=x.shape[0], device=x.device, max_fev=max_fev
    )
    return iterate.run(
        solver,
        objective,
        x,
        tol=tol,
        max_iter=max_iter,
        max_time=max_time,
        callback=callback,
        progress=progress,
        history=history,
        batched=batched,
    )


def starting_point(
    fun: Callable[..., Tensor], x0: Tensor | Result, args: tuple, batched: bool, name: str = "fun"
) -> Tensor:
    """Check the problem's arguments; return ``x0`` (or a Result's ``x``) as a ``(B, n)`` copy."""
    if not callable(fun):
        raise TypeError(f"{name} must be callable, got {type(fun).__name__}")
    if isinstance(x0, Result):
        x0 = x0.x
    check_point(x0, batched, name="x0")
    if x0.dtype not in (torch.float32, torch.float64):
        # Half precision: LAPACK has no float16/bfloat16 kernels on CPU (Cholesky, eigh,
        # QR), and the stopping tests cannot resolve their defaults there (a simplex of
        # equal-looking values passed for converged).
        raise ValueError(
            f"x0 must be float32 or float64 for the solvers, got {x0.dtype}; solve in "
            "float32 (x0.float(), with fun computing in float32) and convert the result"
        )
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple, got {type(args).__name__}")
    x = x0.detach().clone()
    return x if batched else x[None]


def resolve_budget(
    max_iter: int | None, max_fev: int | None, max_time: float | None, *, default_iter: int
) -> tuple[int, int | None]:
    """Check the limits; ``max_iter`` defaults to ``max(100, default_iter)``."""
    if max_time is not None and not (max_time > 0):
        raise ValueError(f"max_time must be > 0 seconds, got {max_time}")
    max_iter = _positive_int("max_iter", max_iter, default=max(100, default_iter))
    return max_iter, _positive_int("max_fev", max_fev, default=None)


def resolve_method(method: str | Solver, options: dict[str, Any], *, n: int) -> Solver:
    """The method object for a name (with its options) or a method object."""
    if isinstance(method, Solver):
        if options:
            raise TypeError(
                f"options {sorted(options)} apply to a method given by name; "
                f"configure the {type(method).__name__} object instead"
            )
        return method
    if not isinstance(method, str):
        raise TypeError(f"method must be a name or a Solver, got {type(method).__name__}")
    name = auto_method(n) if method == "auto" else method.lower()
    if name not in METHODS:
        known = ", ".join(sorted(METHODS))
        raise ValueError(f"unknown method {method!r}; known methods: auto, {known}")
    try:
        return METHODS[name](**options)
    except TypeError as err:
        hint = "".join(
            f"; {key!r} is not an option of minimize, did you mean {close[0]!r}?"
            for key in options
            if (close := difflib.get_close_matches(key, _SOLVE_OPTIONS, n=1, cutoff=0.75))
        )
        raise TypeError(f"invalid options for method {name!r}: {err}{hint}") from None


#: minimize's own keywords, suggested for a misspelt option (scipy's ``maxiter``).
_SOLVE_OPTIONS = ("gtol", "xtol", "ftol", "max_iter", "max_fev", "max_time", "callback", "history")


def auto_method(n: int) -> str:
    """BFGS while its dense ``n x n`` model is cheap, L-BFGS beyond."""
    return "bfgs" if n <= 1000 else "l-bfgs"


def resolve_tolerances(
    solver: Solver,
    dtype: torch.dtype,
    *,
    gtol: float | None,
    xtol: float | None,
    ftol: float | None,
) -> Tolerances:
    default = solver.default_tolerances(dtype)
    values = {}
    for name, given in (("gtol", gtol), ("xtol", xtol), ("ftol", ftol)):
        if given is None:
            values[name] = getattr(default, name)
            continue
        if not isinstance(given, (int, float)) or not math.isfinite(given) or given <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {given!r}")
        values[name] = float(given)
    return Tolerances(**values)


def _positive_int(name: str, value: int | None, *, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
