"""The benchmark problem: what a solver is asked to minimize, and what counts as solved.

A :class:`Problem` is a plain record. ``fun`` maps a point ``x`` of shape
``(..., n)`` to values of shape ``(...)``; where the objective is a sum of
squares, ``residual`` maps ``(..., n)`` to ``(..., m)`` and ``fun`` is
``sum(residual**2)`` (the Moré-Garbow-Hillstrom convention, so published
minima apply as printed). A batched problem holds ``B`` independent problems:
``x0`` has shape ``(B, n)`` and ``fun`` maps ``(B, n) -> (B,)``.

Users benchmark their own problems by building a ``Problem`` (or any object
with the same attributes) and passing it to :func:`taylorch.bench.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

__all__ = ["Problem", "sum_of_squares"]


def sum_of_squares(residual: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Return ``x -> sum(residual(x)**2, -1)``, batched like ``residual``."""

    def fun(x: Tensor) -> Tensor:
        r = residual(x)
        return (r * r).sum(-1)

    return fun


@dataclass
class Problem:
    """One benchmark problem (or one batch of independent problems).

    Args:
        name: a short unique name, shown in tables and plots.
        x0: the starting point, shape ``(n,)``, or ``(B, n)`` when ``batched``.
        fun: the objective, ``(..., n) -> (...)``. Built from ``residual`` when omitted.
        residual: for sums of squares, ``(..., m)``-valued; ``fun = sum(residual**2)``.
        f_star: the known minimum value (published or certified), if any; a
            float, or for a batched problem a float or a ``(B,)`` tensor.
        x_star: a known minimizer, if any.
        batched: whether ``x0`` holds ``B`` independent problems.
        source: where the problem and its minimum come from.
        tags: free-form metadata (family, difficulty, start number...).
        tau: a run counts as solved when it achieves all but a fraction ``tau`` of the
            possible decrease: ``f - f_ref <= tau * (f(x0) - f_ref)`` (Moré & Wild 2009),
            where ``f_ref`` is ``f_star`` or, when unknown, the best value any method reached.
        accuracy: optional ``x -> digits`` score of a solution (e.g. NIST's log relative
            error of the parameters); when given, a run is solved when
            ``accuracy(x) >= min_accuracy`` instead.
        min_accuracy: the digits a solution needs (default 4).
    """

    name: str
    x0: Tensor
    fun: Callable[[Tensor], Tensor] | None = None
    residual: Callable[[Tensor], Tensor] | None = None
    f_star: float | Tensor | None = None
    x_star: Tensor | None = None
    batched: bool = False
    source: str = ""
    tags: dict[str, Any] = field(default_factory=dict)
    tau: float = 1e-6
    accuracy: Callable[[Tensor], float] | None = None
    min_accuracy: float = 4.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.x0, Tensor) or not self.x0.is_floating_point():
            raise TypeError(f"x0 must be a floating torch.Tensor, got {type(self.x0).__name__}")
        want = 2 if self.batched else 1
        if self.x0.ndim != want:
            raise ValueError(
                f"x0 must have {want} dimension(s) (batched={self.batched}), "
                f"got shape {tuple(self.x0.shape)}"
            )
        if self.fun is None and self.residual is None:
            raise ValueError(f"problem {self.name!r}: give fun or residual")
        if self.fun is None:
            self.fun = sum_of_squares(self.residual)
        if not 0 < self.tau < 1:
            raise ValueError(f"tau must be in (0, 1), got {self.tau}")

    @property
    def n(self) -> int:
        """Number of variables (per problem of a batch)."""
        return int(self.x0.shape[-1])

    @property
    def batch_size(self) -> int:
        """Number of independent problems (1 unless batched)."""
        return int(self.x0.shape[0]) if self.batched else 1

    @property
    def is_least_squares(self) -> bool:
        return self.residual is not None

    def to(self, dtype: torch.dtype | None = None, device: str | torch.device | None = None):
        """This problem with its tensors cast; ``fun`` must follow its input's dtype and device."""

        def cast(t):
            return t.to(dtype=dtype, device=device) if isinstance(t, Tensor) else t

        return replace(self, x0=cast(self.x0), x_star=cast(self.x_star), f_star=cast(self.f_star))
