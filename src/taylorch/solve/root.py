"""``root`` and ``fixed_point``: argument checking, the method, the loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from taylorch.solve import iterate
from taylorch.solve.api import resolve_budget, resolve_tolerances, starting_point
from taylorch.solve.least_squares import resolve_solver
from taylorch.solve.lsq import LeastSquaresSolver, ResidualObjective
from taylorch.solve.lsq.objective import JacobianMode
from taylorch.solve.methods.base import Solver
from taylorch.solve.result import Result, Status
from taylorch.solve.rootfind import ROOT_METHODS, AsRoot, RootSolver

__all__ = ["fixed_point", "root"]


def root(
    fun: Callable[..., Tensor],
    x0: Tensor | Result,
    *,
    method: str | Solver = "newton",
    args: tuple = (),
    batched: bool = False,
    jac: JacobianMode = "auto",
    tol: float | None = None,
    xtol: float | None = None,
    max_iter: int | None = None,
    max_fev: int | None = None,
    max_time: float | None = None,
    callback: Callable[[Result], Any] | None = None,
    progress: bool = False,
    history: bool = False,
    **method_options: Any,
) -> Result:
    """Solve the square system ``F(x) = 0``.

    Args:
        fun: ``F(x, *args)`` maps ``(n,) -> (n,)``; with ``batched=True`` ``(B, n) -> (B, n)``.
        x0: starting point ``(n,)`` (or ``(B, n)``), or a previous ``Result``.
        method: ``"newton"`` (Newton-Raphson with a line search on ``0.5 |F|^2``, the
            default), ``"lm"`` (Levenberg-Marquardt trust region), ``"dogleg"`` (Powell's
            hybrid method), ``"broyden1"``/``"broyden2"`` (good/bad Broyden), ``"anderson"``
            (Anderson mixing of ``x + beta F``), or a configured method object.
        args: extra positional arguments for ``fun``.
        batched: solve ``B`` independent systems at once, each stopping on its own.
        jac: how Jacobians are formed (``"auto"``, ``"forward"``, ``"reverse"``).
        tol: success when ``max_i |F_i(x)| <= tol`` (default ``eps^(2/3)``: 3.7e-11 in
            float64, 2.4e-5 in float32). This is the only way to ``CONVERGED``; the
            Jacobian-based methods (``newton``, ``lm``, ``dogleg``) also need the Newton
            correction ``J^{-1} F`` below ``sqrt(eps) (1 + |x|)``, so that a badly
            scaled ``F`` is not taken for zero far from its root.
        xtol: a method whose steps (or trust region) shrink below ``xtol (xtol + |x|)``
            short of that has stalled: ``NO_PROGRESS``. So has one at a stationary point
            of ``|F|^2`` that is not a root. Default ``16 eps``.
        max_iter, max_fev, max_time, callback, progress, history: as for
            :func:`~taylorch.minimize`.
        **method_options: keyword arguments for the named method's constructor.

    Returns:
        A :class:`~taylorch.Result` with ``x`` (the point of least ``|F|``), ``fun`` =
        ``0.5 |F(x)|^2``, and ``residuals`` = ``F(x)`` (from one uncounted evaluation).

    Example:
        >>> import torch, taylorch
        >>> res = taylorch.root(lambda x: torch.atan(x), torch.tensor([1.5], dtype=torch.float64))
        >>> res.success, abs(res.x.item()) < 1e-10  # plain Newton diverges from 1.5
        (True, True)
    """
    x = starting_point(fun, x0, args, batched)
    if jac == "matrix-free":
        raise ValueError("root needs dense Jacobians; jac must be 'auto', 'forward' or 'reverse'")
    if isinstance(method, LeastSquaresSolver):
        method = AsRoot(method)
    solver = resolve_solver(method, method_options, ROOT_METHODS, kinds=(RootSolver,))
    tol_ = resolve_tolerances(solver, x.dtype, gtol=None, xtol=xtol, ftol=tol)
    max_iter, max_fev = resolve_budget(max_iter, max_fev, max_time, default_iter=50 * x.shape[-1])
    objective = ResidualObjective(
        fun,
        args,
        batched=batched,
        batch_size=x.shape[0],
        device=x.device,
        max_fev=max_fev,
        jac=jac,
        name="fun",
    )
    return iterate.run(
        solver,
        objective,
        x,
        tol=tol_,
        max_iter=max_iter,
        max_time=max_time,
        callback=callback,
        progress=progress,
        history=history,
        batched=batched,
        finalize=_residuals,
    )


def fixed_point(
    g: Callable[..., Tensor],
    x0: Tensor | Result,
    *,
    method: str | Solver = "anderson",
    args: tuple = (),
    batched: bool = False,
    **options: Any,
) -> Result:
    """Find ``x = g(x)`` by solving ``F(x) = g(x) - x = 0`` with :func:`root`.

    ``method="anderson"`` (default) accelerates the iteration ``x+ = g(x)``
    (Anderson mixing with ``beta = 1``); ``"newton"`` runs Newton-Raphson on
    ``F`` with the Jacobian ``J_g - I`` by autograd. Every other keyword is
    passed to :func:`root`; ``tol`` bounds ``max |g(x) - x|``.

    Example:
        >>> import torch, taylorch
        >>> res = taylorch.fixed_point(torch.cos, torch.ones(1, dtype=torch.float64))
        >>> round(res.x.item(), 10)  # the Dottie number
        0.7390851332
    """
    if not callable(g):
        raise TypeError(f"g must be callable, got {type(g).__name__}")

    def gap(x: Tensor, *extra: Any) -> Tensor:
        gx = g(x, *extra)
        if not isinstance(gx, Tensor) or gx.shape != x.shape:
            # g(x) - x would broadcast a wrong shape into another problem
            got = tuple(gx.shape) if isinstance(gx, Tensor) else type(gx).__name__
            raise ValueError(
                f"g must return a tensor of the shape of x {tuple(x.shape)}, got {got}"
            )
        return gx - x

    return root(gap, x0, method=method, args=args, batched=batched, **options)


_CONVERGED = "Converged: max |F(x)| is within tol."


def _residuals(result: Result, objective: ResidualObjective) -> Result:
    """Add ``residuals = F(x)`` at the returned point (one uncounted evaluation); a converged
    root's message names root's test (the generic one speaks of ``gtol``)."""
    x = result.x if objective.batched else result.x[None]
    _, r = objective.residual(x, mask=torch.zeros_like(objective.active))
    result.extra["residuals"] = r if objective.batched else r[0]
    if objective.batched:
        codes = result.status.tolist()
        result.message = [
            _CONVERGED if c == Status.CONVERGED else m for c, m in zip(codes, result.message)
        ]
    elif result.status == Status.CONVERGED:
        result.message = _CONVERGED
    return result
