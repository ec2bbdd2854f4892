"""``least_squares``: argument checking, the residual objective, the loop, and the fit's statistics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from taylorch.solve import iterate
from taylorch.solve.api import resolve_budget, resolve_tolerances, starting_point
from taylorch.solve.lsq import LSQ_METHODS, LeastSquaresSolver, Loss, ResidualObjective
from taylorch.solve.lsq.base import gradient_scale, optimality
from taylorch.solve.lsq.covariance import covariance
from taylorch.solve.lsq.objective import JacobianMode
from taylorch.solve.methods.base import Solver
from taylorch.solve.result import Result

__all__ = ["least_squares"]

Bounds = tuple[float | Tensor, float | Tensor]


def least_squares(
    residual: Callable[..., Tensor],
    x0: Tensor | Result,
    *,
    method: str | LeastSquaresSolver = "lm",
    bounds: Bounds | None = None,
    loss: str = "linear",
    f_scale: float = 1.0,
    jac: JacobianMode = "auto",
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
    """Minimize ``0.5 sum_i rho(r_i(x)^2)`` for a residual map ``r``, optionally within a box.

    Args:
        residual: ``residual(x, *args)`` maps ``(n,) -> (m,)``; with ``batched=True``
            ``(B, n) -> (B, m)``, row ``i`` the residual of problem ``i``.
        x0: starting point ``(n,)`` (or ``(B, n)``), or a previous ``Result``.
        method: ``"lm"`` (Levenberg-Marquardt, Moré's scaled trust region; the default),
            ``"dogleg"``, ``"gauss-newton"`` (with a line search), or a configured method.
        bounds: ``(lower, upper)``, each a number or a tensor of shape ``(n,)`` (or
            ``(B, n)``); ``±inf`` for none. Honoured by the trust-region methods by
            projection (see :mod:`taylorch.solve.lsq.bounds`); ``x0`` must lie inside.
        loss: ``"linear"`` (least squares), ``"soft_l1"``, ``"huber"``, ``"cauchy"`` or
            ``"arctan"``, applied to ``(r / f_scale)^2``.
        f_scale: the residual size where a robust loss departs from the quadratic.
        jac: Jacobians by ``"forward"`` mode (``n`` tangents), ``"reverse"`` mode (``m``
            cotangents), ``"auto"`` (the cheaper) -- one vectorized call each -- or
            ``"matrix-free"``: products ``J v``/``J^T u`` only (for ``method="lm"``,
            which then solves its subproblem by CG).
        args: extra positional arguments for ``residual``.
        batched: solve ``B`` independent problems at once, each stopping on its own.
        gtol: stop when every column of ``J`` is nearly orthogonal to ``r``:
            ``max_j |J_j^T r| / (|J_j| |r|) <= gtol`` (``CONVERGED``). Default ``eps``.
        ftol: stop when a step's actual and predicted relative reductions of the cost
            are both ``<= ftol`` (``SMALL_STEP``). Default ``16 eps``.
        xtol: stop when the step bound is ``<= xtol (xtol + |D x|)`` (``SMALL_STEP``).
            Default ``16 eps``. The defaults ask for all the accuracy the dtype allows;
            the tests stay honest because each stops only when its quantity is small.
        max_iter: iterations per problem (default ``max(100, 200 n)``); each costs one
            residual-and-Jacobian evaluation.
        max_fev: residual evaluations per problem; never exceeded.
        max_time, callback, progress, history: as for :func:`~taylorch.minimize`.
        **method_options: keyword arguments for the named method's constructor
            (e.g. ``geodesic=True`` for ``"lm"``).

    Returns:
        A :class:`~taylorch.Result`: ``x``, ``fun`` (= ``cost``), ``jac`` (the Jacobian
        ``(m, n)`` at ``x``), ``nfev``/``njev`` (residual and Jacobian evaluations made by
        the solver), plus ``residuals``, ``cost``, ``grad``, ``optimality``, ``covariance``
        (``s^2 (J^T J)^-1`` with ``s^2 = 2 cost / (m - n)``) and ``stderr`` (its root
        diagonal). One more, uncounted, evaluation at ``x`` provides these statistics.

    Example:
        >>> import torch, taylorch
        >>> t = torch.linspace(0, 4, 30, dtype=torch.float64)
        >>> y = 3 * torch.exp(-0.7 * t) + 0.5
        >>> res = taylorch.least_squares(
        ...     lambda p: p[0] * torch.exp(-p[1] * t) + p[2] - y, torch.ones(3, dtype=torch.float64)
        ... )
        >>> res.success, [round(v, 6) for v in res.x.tolist()]
        (True, [3.0, 0.7, 0.5])
    """
    x = starting_point(residual, x0, args, batched, name="residual")
    solver = resolve_solver(method, method_options, LSQ_METHODS, kinds=(LeastSquaresSolver,))
    tol = resolve_tolerances(solver, x.dtype, gtol=gtol, xtol=xtol, ftol=ftol)
    max_iter, max_fev = resolve_budget(max_iter, max_fev, max_time, default_iter=200 * x.shape[-1])
    lower, upper = check_bounds(bounds, x)
    if lower is not None and not solver.supports_bounds:
        raise ValueError(f"method {solver.name!r} does not support bounds; use 'lm' or 'dogleg'")
    objective = ResidualObjective(
        residual,
        args,
        batched=batched,
        batch_size=x.shape[0],
        device=x.device,
        max_fev=max_fev,
        loss=Loss(loss, f_scale),
        jac=jac,
        lower=lower,
        upper=upper,
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
        finalize=fit_statistics,
    )


def resolve_solver(
    method: str | Solver, options: dict[str, Any], registry: dict[str, Any], *, kinds: tuple
) -> Solver:
    """The method object for a name in ``registry`` (with its options) or a method object."""
    if isinstance(method, Solver):
        if not isinstance(method, kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise TypeError(f"method must be a {wanted}, got {type(method).__name__}")
        if options:
            raise TypeError(
                f"options {sorted(options)} apply to a method given by name; "
                f"configure the {type(method).__name__} object instead"
            )
        return method
    if not isinstance(method, str):
        raise TypeError(f"method must be a name or a Solver, got {type(method).__name__}")
    name = method.lower()
    if name not in registry:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(sorted(registry))}")
    try:
        return registry[name](**options)
    except TypeError as err:
        raise TypeError(f"invalid options for method {name!r}: {err}") from None


def check_bounds(bounds: Bounds | None, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """``(lower, upper)`` broadcast to ``x`` ``(B, n)``, checked; ``(None, None)`` for no bounds."""
    if bounds is None:
        return None, None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError("bounds must be a pair (lower, upper)")
    sides = []
    for name, side in zip(("lower", "upper"), bounds):
        if side is None:
            raise TypeError(f"bounds: {name} is None; use -inf or inf for a side without bound")
        t = torch.as_tensor(side, dtype=x.dtype, device=x.device)
        try:
            t = torch.broadcast_to(t, x.shape).clone()
        except RuntimeError:
            raise ValueError(
                f"bounds: {name} of shape {tuple(t.shape)} does not broadcast to x0 {tuple(x.shape[1:])}"
            ) from None
        if bool(torch.isnan(t).any()):
            raise ValueError(f"bounds: {name} contains NaN")
        sides.append(t)
    lower, upper = sides
    if bool((lower > upper).any()):
        raise ValueError("bounds: lower > upper for some variable; each needs lower <= upper")
    if bool(((x < lower) | (x > upper)).any()):
        raise ValueError("x0 lies outside the bounds; start from a point with lower <= x0 <= upper")
    if bool(torch.isinf(lower).all() and (lower < 0).all() and torch.isinf(upper).all()):
        return None, None  # (-inf, inf): no bounds at all
    return lower, upper


def fit_statistics(result: Result, objective: ResidualObjective) -> Result:
    """Add the residuals, Jacobian, gradient and covariance at ``result.x`` (one uncounted call)."""
    batched = objective.batched
    x = result.x if batched else result.x[None]
    none = torch.zeros_like(objective.active)
    missing = {}
    if objective.jac == "matrix-free":
        cost, r = objective.residual(x, mask=none)
        extra = {"residuals": r, "cost": cost}
        result.jac = None
        # No Jacobian is formed: the fields that need one are there, as None.
        missing = dict.fromkeys(("grad", "optimality", "covariance", "stderr"))
    else:
        cost, r, jac = objective.residual_and_jacobian(x, mask=none, raw=True)
        r_eff, j_eff, root_w = objective.loss.rescale(r, jac)
        pcov, stderr = covariance(j_eff, cost)
        g = (j_eff.mT @ r_eff[..., None])[..., 0]
        norms = torch.linalg.vector_norm(j_eff, dim=-2)
        extra = {
            "residuals": r,
            "cost": cost,
            "grad": g,
            "optimality": optimality(
                x,
                cost,
                g,
                gradient_scale(r_eff, root_w, jac, norms),
                objective,
                norms,
            ),
            "covariance": pcov,
            "stderr": stderr,
        }
        result.jac = jac if batched else jac[0]
    if not batched:
        extra = {k: v[0] if v.ndim > 1 else v[0].item() for k, v in extra.items()}
    result.extra.update(extra, **missing)
    return result
