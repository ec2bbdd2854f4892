"""Batched problems: many independent small problems solved in one call.

A batched :class:`~taylorch.bench.problems.base.Problem` holds ``B`` starting
points of one classic family; its ``fun`` maps ``(B, n) -> (B,)`` because every
classic function is written for any leading shape. A solver with a batched
mode (``taylorch.minimize(..., batched=True)``) solves all ``B`` at once; the
runner gives a solver without one the rows one by one.
"""

from __future__ import annotations

import torch

from taylorch.bench.problems.base import Problem
from taylorch.bench.problems.classic import classic_problem

__all__ = ["batched_problem", "batched_problems", "batched_rosenbrock"]


def batched_problem(
    family: str,
    batch_size: int,
    n: int | None = None,
    *,
    seed: int = 0,
    spread: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> Problem:
    """``batch_size`` copies of a classic problem, started at ``x0 + spread * U(-1, 1)^n``.

    The starts are drawn from a ``torch.Generator`` seeded with ``seed``, so a
    batch is the same on every machine and dtype.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not spread >= 0:
        raise ValueError(f"spread must be >= 0, got {spread!r}")
    base = classic_problem(family, n, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch_size, base.n, generator=gen, dtype=torch.float64) * 2 - 1
    x0 = (base.x0 + spread * noise).to(dtype)
    x_star = None if base.x_star is None else base.x_star.expand(batch_size, -1).to(dtype)
    return Problem(
        name=f"{base.name}-x{batch_size}",
        x0=x0,
        fun=base.fun,
        residual=base.residual,
        f_star=base.f_star,
        x_star=x_star,
        batched=True,
        source=base.source,
        tags={**base.tags, "suite": "batched", "batch_size": batch_size, "seed": seed},
        tau=base.tau,
    )


def batched_rosenbrock(batch_size: int = 256, n: int = 10, *, seed: int = 0) -> Problem:
    """``B`` independent ``n``-d extended Rosenbrock problems, starts ``(-1.2, 1, ...) ± 1``."""
    return batched_problem("extended-rosenbrock", batch_size, n, seed=seed, spread=1.0)


def batched_problems(batch_size: int = 256, *, seed: int = 0) -> list[Problem]:
    """The batched suite: Rosenbrock (10-d), Broyden tridiagonal (10-d), Wood (4-d)."""
    return [
        batched_rosenbrock(batch_size, seed=seed),
        batched_problem("broyden-tridiagonal", batch_size, 10, seed=seed, spread=0.5),
        batched_problem("wood", batch_size, seed=seed, spread=1.0),
    ]
