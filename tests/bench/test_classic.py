"""Classic problems: formulas reproduce the published minima at the published starts."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from taylorch.bench.problems.classic import (
    CLASSIC,
    CLASSIC_NAMES,
    broyden_banded,
    classic_problem,
    classic_problems,
    discrete_integral_equation,
)


def _grad(fun, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fun(x), x)
    return g


def test_registry_size():
    assert len(CLASSIC_NAMES) >= 25
    mgh = [s for s in CLASSIC.values() if "Moré" in s.source]
    assert len(mgh) == 35
    assert len(classic_problems((100,))) == len(CLASSIC_NAMES) + 6


@pytest.mark.parametrize("name", [n for n in CLASSIC_NAMES if CLASSIC[n].x_star is not None])
def test_published_minimum_at_closed_form_minimizer(name):
    p = classic_problem(name)
    f = p.fun(p.x_star).item()
    assert abs(f - p.f_star) <= 1e-12 * max(1.0, abs(p.f_star))
    g = _grad(p.fun, p.x_star)
    g0 = _grad(p.fun, p.x0)
    assert g.abs().max() <= 1e-9 * max(1.0, g0.abs().max().item())


# Problems whose published minimum is not at a closed-form point: scipy's MINPACK
# Levenberg-Marquardt from the standard start must land on the published value.
_SCIPY_LM = [
    n
    for n in CLASSIC_NAMES
    if CLASSIC[n].x_star is None
    and CLASSIC[n].residual is not None
    and n != "trigonometric"  # MINPACK stops at the known local minimum 2.79506e-5
]


@pytest.mark.parametrize("name", _SCIPY_LM)
def test_published_minimum_matches_scipy_from_standard_start(name):
    p = classic_problem(name)
    res = scipy.optimize.least_squares(
        lambda z: p.residual(torch.from_numpy(z)).numpy(),
        p.x0.numpy(),
        method="lm",
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=5000,
    )
    f = 2 * res.cost
    assert abs(f - p.f_star) <= 1e-8 * abs(p.f_star) + 1e-20
    g = _grad(p.fun, torch.from_numpy(res.x)).abs().max()
    assert g <= 1e-6 * _grad(p.fun, p.x0).abs().max()


def test_trigonometric_known_local_minimum():
    p = classic_problem("trigonometric", 10)
    res = scipy.optimize.least_squares(
        lambda z: p.residual(torch.from_numpy(z)).numpy(), p.x0.numpy(), method="lm", xtol=1e-15
    )
    assert math.isclose(2 * res.cost, 2.79506e-5, rel_tol=1e-5)


def test_start_values_and_initial_values():
    """Standard starts from the paper, and hand-computed f(x0)."""
    expect = {
        "rosenbrock": ([-1.2, 1.0], 24.2),
        "freudenstein-roth": ([0.5, -2.0], 400.5),
        "beale": ([1.0, 1.0], 1.5**2 + 2.25**2 + 2.625**2),
        "helical-valley": ([-1.0, 0.0, 0.0], 2500.0),
        "powell-singular": ([3.0, -1.0, 0.0, 1.0], 215.0),
        "wood": ([-3.0, -1.0, -3.0, -1.0], 19192.0),
        "watson": ([0.0] * 6, 30.0),  # r_i = -1 for 29 residuals, r_31 = -1
        "meyer": ([0.02, 4000.0, 250.0], None),
        "osborne2": ([1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5], None),
    }
    for name, (x0, f0) in expect.items():
        p = classic_problem(name)
        assert p.x0.tolist() == x0, name
        if f0 is not None:
            assert math.isclose(p.fun(p.x0).item(), f0, rel_tol=1e-12), name
    assert classic_problem("extended-rosenbrock", 6).x0.tolist() == [-1.2, 1.0] * 3
    assert classic_problem("variably-dimensioned", 4).x0.tolist() == [0.75, 0.5, 0.25, 0.0]
    t = np.arange(1, 4) / 4
    np.testing.assert_allclose(classic_problem("discrete-boundary-value", 3).x0, t * (t - 1))


def test_discrete_integral_equation_matches_direct_sum():
    n = 7
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h = 1 / (n + 1)
    t = [(i + 1) * h for i in range(n)]
    c = [(x[j].item() + t[j] + 1) ** 3 for j in range(n)]
    direct = [
        x[i].item()
        + h
        * (
            (1 - t[i]) * sum(t[j] * c[j] for j in range(i + 1))
            + t[i] * sum((1 - t[j]) * c[j] for j in range(i + 1, n))
        )
        / 2
        for i in range(n)
    ]
    np.testing.assert_allclose(discrete_integral_equation(x).numpy(), direct, rtol=1e-13)


def test_broyden_banded_matches_direct_sum():
    n = 9
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    v = x.tolist()
    direct = [
        v[i] * (2 + 5 * v[i] ** 2)
        + 1
        - sum(v[j] * (1 + v[j]) for j in range(max(0, i - 5), min(n, i + 2)) if j != i)
        for i in range(n)
    ]
    np.testing.assert_allclose(broyden_banded(x).numpy(), direct, rtol=1e-13)


@pytest.mark.parametrize("name", CLASSIC_NAMES)
def test_batched_evaluation_equals_rowwise(name):
    p = classic_problem(name)
    gen = torch.Generator().manual_seed(2)
    xb = p.x0 + 0.1 * torch.randn(3, p.n, dtype=p.x0.dtype, generator=gen)
    fb = p.fun(xb)
    assert fb.shape == (3,)
    torch.testing.assert_close(fb, torch.stack([p.fun(row) for row in xb]))


def test_large_extended_sizes_and_dtype():
    for name in ("extended-rosenbrock", "extended-powell", "broyden-tridiagonal", "arwhead"):
        p = classic_problem(name, 10000, dtype=torch.float32)
        assert p.x0.shape == (10000,) and p.fun(p.x0).dtype == torch.float32
        if p.x_star is not None:
            assert p.fun(p.x_star).item() == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="name must be one of"):
        classic_problem("rastrigin")
    with pytest.raises(ValueError, match="n=3 is not valid for extended-rosenbrock"):
        classic_problem("extended-rosenbrock", 3)
    with pytest.raises(ValueError, match="n=5 is not valid for watson"):
        classic_problem("watson", 5)
