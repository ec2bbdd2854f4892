"""root and fixed_point: known roots, globalization where plain Newton diverges, scipy, bad input."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch

import taylorch
from taylorch import Status
from taylorch.solve.rootfind import ROOT_METHODS

F64 = torch.float64
METHODS = sorted(ROOT_METHODS)


def rosenbrock_system(x):
    return torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def powell_badly_scaled(x):
    return torch.stack([1e4 * x[0] * x[1] - 1, torch.exp(-x[0]) + torch.exp(-x[1]) - 1.0001])


def broyden_tridiagonal(x):
    left = torch.cat([x.new_zeros(1), x[:-1]])
    right = torch.cat([x[1:], x.new_zeros(1)])
    return (3 - 2 * x) * x - left - 2 * right + 1


def test_plain_newton_diverges_on_atan_but_the_line_search_saves_it():
    x = 1.5
    for _ in range(6):  # the undamped Newton map x - atan(x) (1 + x^2)
        x = x - math.atan(x) * (1 + x * x)
    assert abs(x) > 1e3  # diverges, as it does for every |x0| > 1.3917
    res = taylorch.root(torch.atan, torch.tensor([1.5], dtype=F64), method="newton")
    assert res.success and res.status == Status.CONVERGED
    assert abs(res.x.item()) < 1e-12
    assert res.residuals.abs().max() <= 3.7e-11


@pytest.mark.parametrize("method", ["newton", "lm", "dogleg", "broyden1", "broyden2"])
def test_atan_from_far_away(method):
    res = taylorch.root(torch.atan, torch.tensor([10.0, -3.0], dtype=F64), method=method)
    assert res.success, res.message
    assert res.x.abs().max() < 1e-10


@pytest.mark.parametrize("method", ["newton", "lm", "dogleg", "broyden1", "broyden2"])
def test_rosenbrock_system(method):
    res = taylorch.root(rosenbrock_system, torch.tensor([-1.2, 1.0], dtype=F64), method=method)
    assert res.success, res.message
    torch.testing.assert_close(res.x, torch.ones(2, dtype=F64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", ["newton", "lm", "dogleg"])
def test_powell_badly_scaled(method):
    """Root (1.098e-5, 9.106) (Moré, Garbow & Hillstrom 1981, problem 3)."""
    res = taylorch.root(powell_badly_scaled, torch.tensor([0.0, 1.0], dtype=F64), method=method)
    ref = scipy.optimize.root(
        lambda x: powell_badly_scaled(torch.as_tensor(x)).numpy(), [0.0, 1.0], tol=1e-14
    )
    assert res.success, res.message
    np.testing.assert_allclose(res.x.numpy(), ref.x, rtol=1e-8)
    np.testing.assert_allclose(res.x.numpy(), [1.098159e-5, 9.106146], rtol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_broyden_tridiagonal_matches_scipy(method):
    x0 = -torch.ones(10, dtype=F64)
    options = {"beta": -0.15} if method == "anderson" else {}  # J(x0) ~ 7 I
    res = taylorch.root(broyden_tridiagonal, x0, method=method, **options)
    ref = scipy.optimize.root(
        lambda x: broyden_tridiagonal(torch.as_tensor(x)).numpy(), x0.numpy(), tol=1e-14
    )
    assert res.success, res.message
    np.testing.assert_allclose(res.x.numpy(), ref.x, rtol=1e-9)
    assert res.residuals.abs().max() <= 3.7e-11


@pytest.mark.parametrize("method", ["newton", "lm", "broyden1", "anderson"])
def test_batched_equals_loop(method):
    targets = torch.tensor([[0.5, 2.0], [1.0, 3.0], [2.0, 0.5]], dtype=F64)

    def fun(x, target):  # x_i + 0.1 sin(x_j) = target_i, batched or not
        return x + 0.1 * torch.sin(x.flip(-1)) - target

    x0 = torch.zeros(3, 2, dtype=F64)
    res = taylorch.root(fun, x0, method=method, batched=True, args=(targets,))
    for i in range(3):
        one = taylorch.root(fun, x0[i], method=method, args=(targets[i],))
        torch.testing.assert_close(res.x[i], one.x, rtol=1e-12, atol=1e-12)
        assert res.nfev[i].item() == one.nfev
    assert res.success.all()


def test_no_real_root_is_an_honest_failure():
    res = taylorch.root(lambda x: x**2 + 1, torch.tensor([0.7], dtype=F64))
    assert not res.success and res.status == Status.NO_PROGRESS
    assert abs(res.x.item()) < 1e-6  # it found the minimum of |F|, not a root


def test_singular_jacobian_at_the_start():
    """F(x) = x^3 - 1 has J = 0 at x0 = 0: the first step is -g = 0, so nothing moves."""
    res = taylorch.root(lambda x: x**3 - 1, torch.tensor([0.0], dtype=F64))
    assert not res.success
    res = taylorch.root(lambda x: x**3 - 1, torch.tensor([0.0], dtype=F64), method="lm")
    assert not res.success
    res = taylorch.root(lambda x: x**3 - 1, torch.tensor([0.1], dtype=F64))
    assert res.success and math.isclose(res.x.item(), 1.0, rel_tol=1e-12)


def test_fixed_point_of_cos_matches_scipy():
    ref = scipy.optimize.fixed_point(np.cos, 1.0, xtol=1e-14)
    for method in ("anderson", "newton"):
        res = taylorch.fixed_point(torch.cos, torch.ones(1, dtype=F64), method=method)
        assert res.success
        assert math.isclose(res.x.item(), float(ref), rel_tol=1e-10)


@pytest.mark.parametrize("method", ["anderson", "newton"])
def test_fixed_point_of_cos_in_float32(method):
    # With one variable and m = 5 differences the Anderson Gram matrix is singular; its
    # 1e-10 regularization was below float32 rounding and the solve raised.
    ref = scipy.optimize.fixed_point(np.cos, 1.0, xtol=1e-14)
    res = taylorch.fixed_point(torch.cos, torch.ones(1), method=method)
    assert res.success, res.message
    assert float(res.x) == pytest.approx(float(ref), rel=1e-5)  # float32: ~10 eps


def test_fixed_point_of_an_affine_contraction_matches_a_linear_solve():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20, 20, generator=g, dtype=F64)
    a = 0.9 * a / torch.linalg.matrix_norm(a, ord=2)
    b = torch.randn(20, generator=g, dtype=F64)
    expected = torch.linalg.solve(torch.eye(20, dtype=F64) - a, b)
    plain = taylorch.fixed_point(lambda x: a @ x + b, torch.zeros(20, dtype=F64), m=0)
    accel = taylorch.fixed_point(lambda x: a @ x + b, torch.zeros(20, dtype=F64), m=10)
    assert accel.success
    torch.testing.assert_close(accel.x, expected, rtol=1e-9, atol=1e-10)
    # Anderson on a linear map is GMRES in disguise: far fewer calls than plain iteration.
    assert accel.nfev < plain.nfev or not plain.success


def test_anderson_restarts_after_a_nonfinite_value():
    calls = []

    def g(x):
        calls.append(1)
        y = 0.5 * x + 1
        return y if len(calls) != 3 else torch.full_like(x, math.nan)

    res = taylorch.fixed_point(g, torch.zeros(2, dtype=F64))
    assert res.success
    torch.testing.assert_close(res.x, torch.full((2,), 2.0, dtype=F64))


def test_bad_input():
    x0 = torch.zeros(2, dtype=F64)
    with pytest.raises(ValueError, match="square system"):
        taylorch.root(lambda x: torch.cat([x, x]), x0)
    with pytest.raises(ValueError, match="square system"):
        taylorch.root(lambda x: torch.cat([x, x]), x0, method="anderson")
    with pytest.raises(ValueError, match="unknown method 'hybr'"):
        taylorch.root(lambda x: x, x0, method="hybr")
    with pytest.raises(ValueError, match="tol must be a finite number > 0"):
        taylorch.root(lambda x: x, x0, tol=0.0)
    with pytest.raises(ValueError, match="jac must be"):
        taylorch.root(lambda x: x, x0, jac="matrix-free")
    with pytest.raises(ValueError, match="beta must be a finite nonzero number"):
        taylorch.root(lambda x: x, x0, method="anderson", beta=0.0)
    with pytest.raises(ValueError, match="update must be 'good' or 'bad'"):
        taylorch.solve.rootfind.Broyden(update="ugly")
    with pytest.raises(TypeError, match="g must be callable"):
        taylorch.fixed_point(None, x0)
    res = taylorch.root(lambda x: torch.log(x), torch.tensor([-1.0], dtype=F64))
    assert res.status == Status.NONFINITE and not res.success


def test_counts_are_exact():
    calls = []

    def fun(x):
        calls.append(1)
        return torch.atan(x) - 0.3

    for method in METHODS:
        calls.clear()
        res = taylorch.root(fun, torch.tensor([2.0], dtype=F64), method=method)
        assert res.success, method
        assert len(calls) == res.nfev + 1, method  # + the uncounted final residual


@pytest.mark.parametrize("method", ["newton", "lm", "dogleg"])
def test_a_small_residual_is_not_a_root_while_newton_says_it_is_far(method):
    # |F| <= tol alone: 1e-12 (x - 1) "converged" at x0 = 5, exp(x) at x = -25 (no root),
    # and (x - 1)^3 stopped with x off by 3e-4.
    scaled = taylorch.root(lambda x: 1e-12 * (x - 1), torch.tensor([5.0], dtype=F64), method=method)
    assert scaled.success and float(scaled.x) == pytest.approx(1.0, abs=1e-12)
    none = taylorch.root(torch.exp, torch.zeros(1, dtype=F64), method=method)
    assert not none.success
    triple = taylorch.root(lambda x: (x - 1) ** 3, torch.tensor([3.0], dtype=F64), method=method)
    assert triple.success and abs(float(triple.x) - 1) <= 1e-7


@pytest.mark.parametrize("batched", [False, True])
def test_a_converged_root_says_which_test_it_passed(batched):
    def fun(x):
        return x**3 - torch.tensor([8.0, 27.0], dtype=x.dtype)

    x0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    res = taylorch.root(fun, x0[None] if batched else x0, method="newton", batched=batched)
    message = res.message[0] if batched else res.message
    assert bool(res.success if not batched else res.success.all())
    assert "|F(x)|" in message and "gtol" not in message
    torch.testing.assert_close(res.x.reshape(-1), torch.tensor([2.0, 3.0], dtype=torch.float64))


# -- found by a sweep over the MINPACK test systems ---------------------------------------


@pytest.mark.parametrize("method", ["broyden1", "broyden2"])
def test_broyden_counts_every_call_and_keeps_to_max_fev(method):
    # A line search that found no step used to be followed by one more call of fun,
    # charged to no problem: rosenbrock from (-1.2, 1) made 99 calls and reported 94.
    calls = []

    def fun(x):
        calls.append(1)
        return rosenbrock_system(x)

    res = taylorch.root(fun, torch.tensor([-1.2, 1.0], dtype=F64), method=method)
    assert res.success and len(calls) == res.nfev + 1
    calls.clear()
    res = taylorch.root(fun, torch.tensor([-1.2, 1.0], dtype=F64), method=method, max_fev=12)
    assert res.nfev <= 12 and len(calls) <= 12 + 1


@pytest.mark.parametrize("method", METHODS)
def test_a_budget_of_one_evaluation_ends_with_max_fev(method):
    res = taylorch.root(
        lambda x: x**3 - 8, torch.tensor([0.5, 1.5], dtype=F64), method=method, max_fev=1
    )
    assert res.status == Status.MAX_FEV and res.nfev == 1 and not res.success


def test_a_budget_too_small_to_start_is_a_clear_error():
    with pytest.raises(ValueError, match="max_fev=2 is too small for nelder-mead"):
        taylorch.minimize(
            lambda x: (x**2).sum(), torch.ones(3, dtype=F64), method="nelder-mead", max_fev=2
        )


@pytest.mark.parametrize(
    "wrong", [lambda x: x.sum(), lambda x: torch.cos(x[:1]), lambda x: x[:, None]]
)
def test_fixed_point_refuses_g_of_another_shape(wrong):
    # g(x) - x broadcast a wrong shape into another problem, which then "converged".
    with pytest.raises(ValueError, match=r"g must return a tensor of the shape of x \(2,\)"):
        taylorch.fixed_point(wrong, torch.ones(2, dtype=F64))


def test_anderson_reports_an_overflow_as_nonfinite():
    # Variably dimensioned function (Moré, Garbow & Hillstrom, 1981) from its standard start:
    # Anderson's plain first steps overflow F; the stall test (x did not move) reported
    # NO_PROGRESS, "the tolerance may be too tight for the dtype".
    def variably_dimensioned(x):  # MINPACK's square version: F_j = x_j - 1 + j s (1 + 2 s^2)
        j = torch.arange(1, x.numel() + 1, dtype=x.dtype)
        s = (j * (x - 1)).sum()
        return x - 1 + j * s * (1 + 2 * s * s)

    x0 = torch.tensor([1 - j / 10 for j in range(1, 11)], dtype=F64)
    res = taylorch.root(variably_dimensioned, x0, method="anderson")
    assert res.status == Status.NONFINITE and not res.success


@pytest.mark.parametrize("method", ["newton", "lm", "dogleg"])
def test_singular_jacobians_converge_only_where_f_can_vanish(method):
    # No real root, J exactly singular at x0 = 0: the Newton step came out infinite,
    # which passed the correction test.
    none = taylorch.root(
        lambda x: torch.stack([x[0] ** 2 + 1e-11, x[1] - 1]),
        torch.tensor([0.0, 5.0], dtype=F64),
        method=method,
    )
    assert not none.success and none.status == Status.NO_PROGRESS
    shifted = taylorch.fixed_point(lambda x: x + 1e-12, torch.zeros(3, dtype=F64), method="newton")
    assert not shifted.success
    # Redundant but consistent equations: J singular everywhere, a line of roots.
    res = taylorch.root(
        lambda x: torch.stack([x[0] + x[1] - 2, 2 * x[0] + 2 * x[1] - 4, x[2] - 3]),
        torch.tensor([0.0, 5.0, 1.0], dtype=F64),
        method=method,
    )
    assert res.success
    torch.testing.assert_close(res.x[0] + res.x[1], torch.tensor(2.0, dtype=F64))
    torch.testing.assert_close(res.x[2], torch.tensor(3.0, dtype=F64))
