"""``curve_fit``: scipy-style model fitting on top of :func:`~taylorch.least_squares`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from taylorch.solve.least_squares import least_squares
from taylorch.solve.lsq.covariance import covariance
from taylorch.solve.result import Result

__all__ = ["curve_fit"]


def curve_fit(
    model: Callable[..., Tensor],
    xdata: Any,
    ydata: Tensor,
    p0: Tensor,
    sigma: Tensor | None = None,
    *,
    absolute_sigma: bool = False,
    bounds: tuple[Any, Any] | None = None,
    method: str = "lm",
    batched: bool = False,
    full_output: bool = False,
    **options: Any,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Result]:
    """Fit ``ydata ~ model(xdata, *params)`` by (weighted) least squares, as scipy's ``curve_fit``.

    The residual is ``(model(xdata, *p) - ydata) / sigma``; ``pcov`` is
    ``s^2 (J^T J)^-1`` with ``s^2 = RSS / (m - n)`` (``s^2 = 1`` with
    ``absolute_sigma=True``, when ``sigma`` holds the true standard deviations).

    Args:
        model: ``model(xdata, p_1, ..., p_n)`` returns predictions shaped like ``ydata``.
            Unbatched, each ``p_i`` is a 0-d tensor; batched, a ``(B, 1)`` column, so
            that ``a * torch.exp(-b * t)`` broadcasts to ``(B, N)`` unchanged.
        xdata: passed to ``model`` as it is (a tensor, a tuple of tensors ...).
        ydata: observations ``(N,)`` (or ``(B, N)`` batched; ``(N,)`` is then shared).
        p0: starting parameters ``(n,)`` (``(B, n)`` batched); required, as the model's
            arity cannot be read from a tensor function.
        sigma: standard deviations of ``ydata`` (broadcastable to it), all > 0.
        absolute_sigma: take ``sigma`` as absolute (no rescaling of ``pcov``).
        bounds: ``(lower, upper)`` for the parameters, as for ``least_squares``.
        method: a least-squares method name (default ``"lm"``).
        batched: fit ``B`` independent data sets in one call.
        full_output: also return the :class:`~taylorch.Result`.
        **options: passed to :func:`~taylorch.least_squares` (``loss``, ``max_iter`` ...).

    Returns:
        ``(popt, pcov)`` (``(n,)``, ``(n, n)``, or with a batch dimension), plus the
        ``Result`` when ``full_output``. ``pcov`` is ``inf`` where the parameters are
        not determined (``m <= n`` or a rank-deficient Jacobian).

    Raises:
        RuntimeError: an unbatched fit that does not succeed (batched fits report
            per-problem status in the ``Result`` instead).

    Example:
        >>> import torch, taylorch
        >>> t = torch.linspace(0, 3, 40, dtype=torch.float64)
        >>> y = 2.5 * torch.exp(-1.3 * t) + 0.5
        >>> popt, pcov = taylorch.curve_fit(lambda t, a, b, c: a * torch.exp(-b * t) + c,
        ...                                 t, y, torch.ones(3, dtype=torch.float64))
        >>> [round(v, 6) for v in popt.tolist()]
        [2.5, 1.3, 0.5]
    """
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    if not isinstance(ydata, Tensor) or not ydata.is_floating_point():
        raise TypeError("ydata must be a floating-point torch.Tensor")
    if not isinstance(p0, Tensor):
        raise TypeError(f"p0 must be a torch.Tensor, got {type(p0).__name__}")
    ydata = ydata.to(p0.dtype)
    if not bool(torch.isfinite(ydata).all()):
        raise ValueError("ydata must be finite; it contains NaN or inf")
    if sigma is not None:
        sigma = torch.as_tensor(sigma, dtype=p0.dtype, device=p0.device)
        if not bool((sigma > 0).all()) or not bool(torch.isfinite(sigma).all()):
            raise ValueError("sigma must be finite and > 0")
    weight = None if sigma is None else 1 / sigma

    def residual(p: Tensor) -> Tensor:
        params = p.unbind(-1) if not batched else p.split(1, dim=-1)
        predicted = model(xdata, *params)
        for name, data in (("ydata", ydata), ("sigma", weight)):
            if data is not None and _broadcast(predicted.shape, data.shape) != predicted.shape:
                raise ValueError(
                    f"model returned shape {tuple(predicted.shape)}, which {name} of shape "
                    f"{tuple(data.shape)} does not match (it must broadcast to the model's shape)"
                )
        r = predicted - ydata
        if weight is not None:
            r = r * weight
        return r.reshape(p.shape[0], -1) if batched else r.reshape(-1)

    result = least_squares(residual, p0, method=method, bounds=bounds, batched=batched, **options)
    if not batched and not result.success:
        raise RuntimeError(f"curve_fit: optimal parameters not found: {result.message}")
    pcov = result.covariance
    if absolute_sigma and result.jac is not None:
        jac = result.jac if batched else result.jac[None]
        cost = result.cost if batched else torch.tensor([result.cost], dtype=jac.dtype)
        pcov = covariance(jac, cost, absolute=True)[0]
        pcov = pcov if batched else pcov[0]
    if full_output:
        return result.x, pcov, result
    return result.x, pcov


def _broadcast(a: torch.Size, b: torch.Size) -> torch.Size | None:
    try:
        return torch.broadcast_shapes(a, b)
    except RuntimeError:
        return None
