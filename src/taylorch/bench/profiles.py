"""Dolan-Moré performance profiles.

For problems ``p`` and methods ``s`` with costs ``t[p, s]`` (time or
evaluations; ``inf`` when ``s`` did not solve ``p``)::

    r[p, s]   = t[p, s] / min_s t[p, s]          performance ratio (inf stays inf)
    rho_s(tau) = #{p : r[p, s] <= tau} / #problems

``rho_s(1)`` is the fraction of problems on which ``s`` was the fastest,
``rho_s(inf)`` the fraction it solved at all. A problem no method solved has
``r = inf`` for every method. Costs are floored (at one evaluation, or a
microsecond) so a zero cost cannot make a ratio undefined.

Reference: E. D. Dolan, J. J. Moré, "Benchmarking optimization software with
performance profiles", Math. Programming 91:201-213, 2002.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from taylorch.bench.records import RunRecord

__all__ = ["PerformanceProfile", "performance_profile", "performance_ratios"]

Cost = Literal["time", "evals"]
FLOOR = {"time": 1e-6, "evals": 1.0}


def performance_ratios(costs: np.ndarray) -> np.ndarray:
    """``r[p, s] = t[p, s] / min_s t[p, s]`` for a ``(problems, methods)`` cost array.

    ``inf`` (unsolved) stays ``inf``; a row with no finite cost is all ``inf``.
    """
    costs = np.asarray(costs, dtype=float)
    if costs.ndim != 2:
        raise ValueError(f"costs must be a (problems, methods) array, got shape {costs.shape}")
    if np.isnan(costs).any() or (costs <= 0).any():
        raise ValueError("costs must be > 0 (use inf for an unsolved problem), got NaN or <= 0")
    best = costs.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        ratios = costs / best
    return np.where(np.isfinite(best), ratios, np.inf)


@dataclass
class PerformanceProfile:
    """Ratios ``(problems, methods)`` and the profile ``rho_s(tau)`` built from them."""

    problems: list[str]
    methods: list[str]
    ratios: np.ndarray
    cost: str = "time"

    def rho(self, tau: float | np.ndarray) -> np.ndarray:
        """``rho_s(tau)`` for every method; shape ``(methods,)`` or ``(len(tau), methods)``."""
        tau = np.asarray(tau, dtype=float)
        hits = self.ratios[None, :, :] <= tau.reshape(-1, 1, 1)
        out = hits.mean(axis=1)
        return out[0] if tau.ndim == 0 else out

    def curve(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """One method's step function: breakpoints ``tau >= 1`` and ``rho_s`` at each."""
        j = self.methods.index(method)
        r = self.ratios[:, j]
        taus = np.unique(np.concatenate([[1.0], r[np.isfinite(r)]]))
        return taus, self.rho(taus)[:, j]

    def median_ratio(self) -> dict[str, float]:
        """For each method, the median ratio over problems (``inf`` if it solved under half)."""
        return {m: float(np.median(self.ratios[:, j])) for j, m in enumerate(self.methods)}


def performance_profile(records: Sequence[RunRecord], cost: Cost = "time") -> PerformanceProfile:
    """The profile of every method that ran (not unavailable) over the problems in ``records``.

    A run counts with its cost to solve (``time_to_solve`` or
    ``evals_to_solve``) when solved and ``inf`` otherwise, including problems
    a method does not support.
    """
    if cost not in FLOOR:
        raise ValueError(f"cost must be 'time' or 'evals', got {cost!r}")
    runs = [r for r in records if r.status != "unavailable"]
    problems = list(dict.fromkeys(r.problem for r in runs))
    methods = list(dict.fromkeys(r.method for r in runs))
    costs = np.full((len(problems), len(methods)), np.inf)
    for r in runs:
        if r.solved:
            value = r.time_to_solve if cost == "time" else r.evals_to_solve
            costs[problems.index(r.problem), methods.index(r.method)] = max(value, FLOOR[cost])
    return PerformanceProfile(problems, methods, performance_ratios(costs), cost)
