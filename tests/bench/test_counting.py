"""The counting wrapper: evaluations and backward passes are counted, not taken from solvers."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from taylorch import derivatives
from taylorch.bench.counting import BudgetExceeded, CountedFunction
from taylorch.bench.methods.oracles import NumpyOracle
from taylorch.bench.problems.classic import classic_problem


def test_counts_match_scipys_own_counters():
    """scipy counts its calls independently; the wrapper must agree exactly."""
    p = classic_problem("rosenbrock")
    counted = CountedFunction(p.fun)
    oracle = NumpyOracle(counted, p.x0)
    res = scipy.optimize.minimize(oracle.value_and_grad, p.x0.numpy(), jac=True, method="BFGS")
    assert res.success
    assert counted.nfev == res.nfev and counted.ngev == res.njev
    counted_nm = CountedFunction(p.fun)
    res = scipy.optimize.minimize(NumpyOracle(counted_nm, p.x0).value, p.x0.numpy(),
                                  method="Nelder-Mead")  # fmt: skip
    assert counted_nm.nfev == res.nfev and counted_nm.ngev == 0


def test_batched_calls_count_per_problem():
    p = classic_problem("beale")
    counted = CountedFunction(p.fun, batch_size=4)
    x = p.x0.expand(4, -1).clone()
    for _ in range(3):
        counted(x)
    assert (counted.calls, counted.rows, counted.nfev) == (3, 12, 3.0)


def test_backward_passes_are_counted_through_autograd_and_torch_func():
    f = classic_problem("wood").fun
    x = torch.tensor([0.5, -0.3, 1.2, 0.7], dtype=torch.float64)
    counted = CountedFunction(f)
    derivatives.value_and_grad(counted, x)
    assert (counted.calls, counted.ngev) == (1, 1)
    torch.func.grad(counted)(x)
    assert counted.ngev == 2
    hv = derivatives.hvp(counted, x, torch.ones_like(x))
    assert counted.ngev == 4  # forward-over-reverse: one forward-mode and one reverse pass
    torch.testing.assert_close(hv, derivatives.hvp(f, x, torch.ones_like(x)))
    matvec = derivatives.hvp_operator(counted, x)  # one gradient graph, reused
    assert counted.ngev == 5
    for k in range(3):
        torch.testing.assert_close(matvec(torch.ones_like(x)), hv)
        assert counted.ngev == 6 + k  # each product: one backward through the gradient
    calls = counted.calls
    derivatives.hessian(counted, x)
    assert counted.calls == calls + 1
    residual = CountedFunction(classic_problem("wood").residual, residual=True)
    jac = NumpyOracle(residual, x).jacobian(x.numpy())
    assert residual.ngev == 1 and jac.shape == (6, 4)
    jac_fwd = torch.func.jacfwd(residual)(x)  # 4 JVPs, vmapped: one forward-mode pass
    assert residual.ngev == 2
    torch.testing.assert_close(jac_fwd, torch.from_numpy(jac))
    expected = torch.autograd.functional.jacobian(classic_problem("wood").residual, x)
    np.testing.assert_allclose(jac, expected.numpy(), rtol=1e-12)


def test_budget_stops_the_solve():
    counted = CountedFunction(lambda x: (x**2).sum(-1), max_evals=2)
    x = torch.ones(3)
    counted(x)
    counted(x)
    with pytest.raises(BudgetExceeded, match="evaluation budget"):
        counted(x)
    assert counted.nfev == 2 and "evaluation" in counted.exceeded
    timed = CountedFunction(lambda x: (x**2).sum(-1), max_time=1e-9)
    with pytest.raises(BudgetExceeded, match="time budget"):
        timed(x)


def test_trace_is_best_so_far_and_best_is_per_problem():
    counted = CountedFunction(lambda x: x.sum(-1), batch_size=2)
    for values in ([3.0, 5.0], [4.0, 1.0], [2.0, 6.0], [float("nan"), 7.0]):
        counted(torch.tensor(values).reshape(2, 1))
    trace = counted.trace()
    assert trace.evals == [1.0, 2.0, 3.0]
    assert trace.f == [4.0, 2.0, 1.5]  # means of the per-problem bests (3,5) (3,1) (2,1)
    assert trace.time == sorted(trace.time)
    torch.testing.assert_close(counted.best(), torch.tensor([2.0, 1.0], dtype=torch.float64))


def test_trace_counts_evaluations_as_the_tables_do():
    # The convergence plots' x-axis is the trace's; the tables count calls per problem
    # plus derivative passes. The plot of a gradient method ended at half its table cost.
    counted = CountedFunction(lambda x: (x**2).sum(-1))
    x = torch.tensor([3.0, 1.0])
    for _ in range(3):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(counted(xr), xr)
        x = x - 0.25 * g
    assert counted.trace().evals == [1.0, 3.0, 5.0]  # before each call: calls + passes so far
    assert counted.nfev + counted.ngev == 6


def test_residual_values_are_traced_as_sums_of_squares():
    counted = CountedFunction(lambda x: x - 1, residual=True)
    counted(torch.tensor([3.0, 1.0]))
    assert counted.trace().f == [4.0]


def test_elapsed_freezes_at_stop_and_bad_input():
    counted = CountedFunction(lambda x: x.sum())
    counted.stop()
    first = counted.elapsed()
    assert counted.elapsed() == first and math.isfinite(first)
    with pytest.raises(TypeError, match="fun must be callable"):
        CountedFunction(3)
    with pytest.raises(TypeError, match="not a Tensor"):
        CountedFunction(lambda x: 1.0)(torch.ones(1))
