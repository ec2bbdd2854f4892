"""Nelder-Mead and zo-gd against closed-form minimizers, scipy, and their own definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

import taylorch
from taylorch.solve import Status
from taylorch.solve.line_search import StrongWolfe
from taylorch.solve.methods.nelder_mead import NelderMead
from taylorch.solve.methods.zeroth_order import ZOGD
from taylorch.solve.objective import Objective

from .helpers import quadratic, rosenbrock, rowwise, spd_quadratic

# -- Nelder-Mead ---------------------------------------------------------------------------


@pytest.mark.parametrize("adaptive", [False, True])
def test_nelder_mead_reaches_minimizers_of_quadratic_and_rosenbrock(adaptive):
    a, b, x_star = spd_quadratic(3, seed=0)
    res = taylorch.minimize(
        quadratic,
        torch.zeros(3, dtype=torch.float64),
        args=(a, b),
        method="nelder-mead",
        adaptive=adaptive,
        xtol=1e-9,
        ftol=1e-15,
    )
    assert res.success and res.status == Status.SMALL_STEP
    torch.testing.assert_close(res.x, x_star, atol=1e-6, rtol=0)
    assert res.njev == 0 and res.n_hvp == 0 and res.jac is None

    res = taylorch.minimize(
        rosenbrock,
        torch.tensor([-1.2, 1.0], dtype=torch.float64),
        method="nelder-mead",
        adaptive=adaptive,
        xtol=1e-9,
        ftol=1e-15,
    )
    assert res.success
    torch.testing.assert_close(res.x, torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)


def test_nelder_mead_follows_scipy_iterate_by_iterate():
    # Same coefficients, same initial simplex: the best vertex after every iteration
    # must be scipy's, up to the rounding of differently written formulas.
    x0 = np.array([-1.2, 1.0])
    scipy_best = []
    scipy.optimize.minimize(
        scipy.optimize.rosen,
        x0,
        method="Nelder-Mead",
        callback=lambda xk: scipy_best.append(scipy.optimize.rosen(xk)),
        options={"maxiter": 60},
    )
    res = taylorch.minimize(
        rosenbrock, torch.tensor(x0), method="nelder-mead", max_iter=60, history=True
    )
    assert len(scipy_best) >= 50
    ours = res.history["f"][1 : 1 + len(scipy_best)].numpy()
    np.testing.assert_allclose(ours, np.array(scipy_best), rtol=1e-9, atol=0)


def _weighted_np(x):
    return (np.arange(1, 5) * (x - 2) ** 2).sum()


def _weighted(x):
    return (torch.arange(1, 5, dtype=x.dtype) * (x - 2) ** 2).sum()


@pytest.mark.parametrize(
    ("np_fun", "fun", "x0", "x_star"),
    [
        (scipy.optimize.rosen, rosenbrock, [-1.2, 1.0], [1.0, 1.0]),
        (scipy.optimize.rosen, rosenbrock, [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]),
        (_weighted_np, _weighted, [0.0] * 4, [2.0] * 4),
    ],
)
def test_nelder_mead_needs_no_more_evaluations_than_scipy(np_fun, fun, x0, x_star):
    ref = scipy.optimize.minimize(
        np_fun, np.array(x0), method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12}
    )
    assert ref.success and np.abs(ref.x - x_star).max() < 1e-6
    res = taylorch.minimize(
        fun, torch.tensor(x0, dtype=torch.float64), method="nelder-mead", xtol=1e-8, ftol=1e-12
    )
    assert res.success
    torch.testing.assert_close(res.x, torch.tensor(x_star, dtype=torch.float64), atol=1e-6, rtol=0)
    assert res.nfev <= ref.nfev


def test_nelder_mead_batched_equals_loop_of_single_solves():
    problems = [spd_quadratic(3, seed=s) for s in range(2)]
    funs = [lambda x, p=p: quadratic(x, p[0], p[1]) for p in problems] + [rosenbrock]
    x0 = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [-1.2, 1.0, -0.5]], dtype=torch.float64)
    res = taylorch.minimize(rowwise(funs), x0, method="nelder-mead", batched=True)
    assert res.success.all()
    assert len(set(res.nit.tolist())) == 3  # each problem stopped on its own
    for i, fun in enumerate(funs):
        single = taylorch.minimize(fun, x0[i], method="nelder-mead")
        torch.testing.assert_close(res.x[i], single.x, atol=0, rtol=0)
        assert (int(res.nit[i]), int(res.nfev[i])) == (single.nit, single.nfev)


def test_nelder_mead_float32_stays_float32_and_converges():
    a, b, x_star = spd_quadratic(4, seed=1, dtype=torch.float32)
    res = taylorch.minimize(quadratic, torch.zeros(4), args=(a, b), method="nelder-mead")
    assert res.success and res.x.dtype == torch.float32
    torch.testing.assert_close(res.x, x_star, atol=2e-3, rtol=0)


def test_nelder_mead_uses_the_given_initial_simplex():
    simplex = torch.tensor([[2.0, 2.0], [3.0, 2.0], [2.0, 3.0]], dtype=torch.float64)
    seen = []

    def fun(x):
        seen.append(x.clone())
        return rosenbrock(x)

    res = taylorch.minimize(
        fun, simplex[0], method="nelder-mead", initial_simplex=simplex, max_iter=1
    )
    torch.testing.assert_close(torch.stack(seen[:3]), simplex)
    # The first trial reflects the worst vertex through the centroid of the other two.
    order = torch.argsort(torch.stack([rosenbrock(v) for v in simplex]))
    centroid = simplex[order[:2]].mean(0)
    torch.testing.assert_close(seen[3], 2 * centroid - simplex[order[2]])
    assert res.nfev == len(seen)


def test_nelder_mead_rejects_a_simplex_of_the_wrong_shape():
    with pytest.raises(ValueError, match="initial_simplex must have shape"):
        taylorch.minimize(
            rosenbrock, torch.zeros(2), method="nelder-mead", initial_simplex=torch.zeros(2, 2)
        )
    with pytest.raises(TypeError, match="adaptive must be a bool"):
        NelderMead(adaptive=1)


# -- zo-gd ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-4), (torch.float32, 1e-2)])
@pytest.mark.parametrize("directions", [1, 3])
def test_zo_gd_reaches_minimizer_of_strongly_convex_quadratic(dtype, atol, directions):
    a, b, x_star = spd_quadratic(5, seed=2, dtype=dtype)
    res = taylorch.minimize(
        quadratic, torch.zeros(5, dtype=dtype), args=(a, b), method="zo-gd", directions=directions
    )
    assert res.success and res.x.dtype == dtype
    torch.testing.assert_close(res.x, x_star, atol=atol, rtol=0)
    assert res.njev == 0 and res.n_hvp == 0 and res.jac is None
    # Every iteration evaluates the k directions and at least one trial of the search.
    assert res.nfev >= 1 + (directions + 1) * res.nit


def test_zo_gd_seed_makes_runs_repeatable():
    a, b, _ = spd_quadratic(5, seed=3)
    runs = [
        taylorch.minimize(
            quadratic, torch.zeros(5, dtype=torch.float64), args=(a, b), method="zo-gd", seed=s
        )
        for s in (7, 7, 8)
    ]
    torch.testing.assert_close(runs[0].x, runs[1].x, atol=0, rtol=0)
    assert runs[0].nfev == runs[1].nfev
    assert not torch.equal(runs[0].x, runs[2].x)  # other directions, another path


def test_zo_gd_batched_equals_loop_of_single_solves():
    problems = [spd_quadratic(4, seed=s) for s in range(3)]
    funs = [lambda x, p=p: quadratic(x, p[0], p[1]) for p in problems]
    x0 = torch.stack([torch.full((4,), float(s)) for s in range(3)]).double()
    res = taylorch.minimize(rowwise(funs), x0, method="zo-gd", batched=True, seed=5)
    assert res.success.all()
    for i, fun in enumerate(funs):
        single = taylorch.minimize(fun, x0[i], method="zo-gd", seed=5)
        torch.testing.assert_close(res.x[i], single.x, atol=0, rtol=0)
        assert (int(res.nit[i]), int(res.nfev[i])) == (single.nit, single.nfev)


def test_zo_gd_estimate_is_unbiased_for_a_linear_function():
    # For f(x) = <c, x> each forward difference is exactly <c, u>, and E[<c, u> u] = c.
    c = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    objective = Objective(
        lambda x: (x * c).sum(-1), batched=True, batch_size=1, device=torch.device("cpu")
    )
    solver = ZOGD(directions=3000, seed=0)
    state = solver.init(objective, torch.zeros(1, 3, dtype=torch.float64))
    estimate, seen = solver._estimate(objective, state.x, state.f)
    assert bool(seen.all())
    # Standard error per coordinate: sqrt((|c|^2 + c_i^2) / k) < 0.06; 4 of them.
    torch.testing.assert_close(estimate, c, atol=0.24, rtol=0)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"directions": 0}, ValueError, "directions must be a positive integer"),
        ({"mu": -1.0}, ValueError, "mu must be a finite number > 0"),
        ({"patience": 0}, ValueError, "patience must be a positive integer"),
        ({"seed": "a"}, TypeError, "seed must be an int"),
        ({"line_search": StrongWolfe()}, ValueError, "line_search must be a step rule"),
    ],
)
def test_zo_gd_rejects_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        ZOGD(**options)


@pytest.mark.parametrize("adaptive", [False, True])
def test_nelder_mead_in_one_dimension(adaptive):
    # Gao-Han's shrink coefficient 1 - 1/n is 0 at n = 1; the standard ones apply there.
    res = taylorch.minimize(
        lambda x: ((x - 3) ** 2).sum(),
        torch.zeros(1, dtype=torch.float64),
        method="nelder-mead",
        adaptive=adaptive,
    )
    assert res.success
    torch.testing.assert_close(res.x, torch.tensor([3.0], dtype=torch.float64), atol=1e-5, rtol=0)
