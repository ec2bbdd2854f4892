"""Per-method summaries of a suite: solved, median cost, ratio to the best, NIST digits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from taylorch.bench.profiles import performance_profile
from taylorch.bench.records import RunRecord

__all__ = ["MethodSummary", "summarize"]


@dataclass
class MethodSummary:
    """One row of the results table.

    ``ratio_time`` / ``ratio_evals`` are the median Dolan-Moré ratios over the
    suite's problems (``inf`` when the method solved fewer than half).
    ``note`` says why a method did not run (not installed, unsupported).
    """

    suite: str
    method: str
    library: str
    problems: int
    ran: int
    solved: int
    failed: int
    median_evals: float
    median_time: float
    ratio_time: float
    ratio_evals: float
    median_digits: float | None = None
    note: str = ""


def _median(values: list[float]) -> float:
    return median(values) if values else math.nan


def summarize(records: Sequence[RunRecord]) -> list[MethodSummary]:
    """One summary per (suite, method), suites and methods in first-seen order."""
    out: list[MethodSummary] = []
    for suite in dict.fromkeys(r.suite for r in records):
        runs = [r for r in records if r.suite == suite]
        ratios_t = performance_profile(runs, "time").median_ratio()
        ratios_e = performance_profile(runs, "evals").median_ratio()
        for method in dict.fromkeys(r.method for r in runs):
            mine = [r for r in runs if r.method == method]
            ran = [r for r in mine if r.ran]
            solved = [r for r in ran if r.solved]
            digits = [r.accuracy for r in ran if r.accuracy is not None]
            note = ""
            if any(r.status == "unavailable" for r in mine):
                note = next(r.message for r in mine if r.status == "unavailable")
            elif len(ran) < len(mine):
                note = f"not supported on {len(mine) - len(ran)} of {len(mine)} problems"
            out.append(
                MethodSummary(
                    suite=suite,
                    method=method,
                    library=mine[0].library,
                    problems=len(mine),
                    ran=len(ran),
                    solved=len(solved),
                    failed=sum(r.status == "failed" for r in ran),
                    median_evals=_median([r.evals_to_solve for r in solved]),
                    median_time=_median([r.time_to_solve for r in solved]),
                    ratio_time=ratios_t.get(method, math.inf),
                    ratio_evals=ratios_e.get(method, math.inf),
                    median_digits=_median(digits) if digits else None,
                    note=note,
                )
            )
    return out
