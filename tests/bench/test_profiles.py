"""Dolan-Moré performance profiles against a hand-worked example."""

import math

import numpy as np
import pytest

from taylorch.bench.profiles import performance_profile, performance_ratios
from taylorch.bench.records import RunRecord

INF = math.inf


def test_ratios_and_profile_by_hand():
    # costs: problems x methods (A, B, C); C fails p1 and p3; nobody solves p4.
    costs = np.array([[1.0, 2.0, INF], [4.0, 2.0, 8.0], [3.0, 6.0, INF], [INF, INF, INF]])
    ratios = performance_ratios(costs)
    expected = np.array([[1, 2, INF], [2, 1, 4], [1, 2, INF], [INF, INF, INF]])
    np.testing.assert_array_equal(ratios, expected)
    records = [
        RunRecord(problem=f"p{p}", method=m, library="x", suite="s",
                  status="solved" if math.isfinite(costs[p, j]) else "unsolved",
                  time_to_solve=costs[p, j] if math.isfinite(costs[p, j]) else None)
        for p in range(4) for j, m in enumerate("ABC")
    ]  # fmt: skip
    prof = performance_profile(records, "time")
    assert prof.methods == ["A", "B", "C"]
    # rho(1): A best on p1, p3; B on p2; C never.  rho(2): A p1-p3, B p1-p3, C none.
    np.testing.assert_allclose(prof.rho(1.0), [2 / 4, 1 / 4, 0])
    np.testing.assert_allclose(prof.rho(2.0), [3 / 4, 3 / 4, 0])
    np.testing.assert_allclose(prof.rho(4.0), [3 / 4, 3 / 4, 1 / 4])
    np.testing.assert_allclose(prof.rho([1.0, 4.0]), [[0.5, 0.25, 0], [0.75, 0.75, 0.25]])
    taus, rho = prof.curve("C")
    np.testing.assert_allclose(taus, [1.0, 4.0])
    np.testing.assert_allclose(rho, [0.0, 0.25])
    assert prof.median_ratio() == {"A": 1.5, "B": 2.0, "C": INF}  # medians of sorted rows


def test_unavailable_methods_are_left_out_and_unsupported_count_as_failures():
    records = [
        RunRecord(problem="p", method="A", library="x", suite="s", status="solved",
                  evals_to_solve=10.0, time_to_solve=1.0),
        RunRecord(problem="p", method="B", library="y", suite="s", status="unavailable"),
        RunRecord(problem="p", method="C", library="x", suite="s", status="unsupported"),
    ]  # fmt: skip
    prof = performance_profile(records, "evals")
    assert prof.methods == ["A", "C"]
    np.testing.assert_array_equal(prof.ratios, [[1.0, INF]])


def test_zero_cost_is_floored_and_bad_input():
    records = [
        RunRecord(problem="p", method=m, library="x", suite="s", status="solved",
                  evals_to_solve=e, time_to_solve=0.0)
        for m, e in (("A", 0.0), ("B", 4.0))
    ]  # fmt: skip
    np.testing.assert_array_equal(performance_profile(records, "evals").ratios, [[1.0, 4.0]])
    np.testing.assert_array_equal(performance_profile(records, "time").ratios, [[1.0, 1.0]])
    with pytest.raises(ValueError, match="cost must be"):
        performance_profile(records, "memory")
    with pytest.raises(ValueError, match="costs must be > 0"):
        performance_ratios(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="problems, methods"):
        performance_ratios(np.ones(3))
