"""gd, polyak and nonlinear cg against closed forms, linear CG, scipy, and their defining rules."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import taylorch
from taylorch.solve import Status
from taylorch.solve.line_search import Armijo, LineSearch, SearchResult, StrongWolfe
from taylorch.solve.methods.base import State
from taylorch.solve.methods.conjugate_gradient import CG, ConjugateDirection
from taylorch.solve.methods.gradient import GD
from taylorch.solve.objective import Objective

from .helpers import Counted, quadratic, rosenbrock, rowwise, spd_quadratic

ORDER1 = [("gd", {}), ("gd", {"initial_step": "previous"}), ("cg", {}), ("cg", {"beta": "hz"})]


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-5), (torch.float32, 1e-3)])
@pytest.mark.parametrize(("name", "options"), ORDER1)
def test_reaches_closed_form_minimizer(name, options, dtype, atol):
    a, b, x_star = spd_quadratic(6, seed=0, dtype=dtype, cond=30.0)
    res = taylorch.minimize(
        quadratic, torch.zeros(6, dtype=dtype), args=(a, b), method=name, **options
    )
    assert res.x.dtype == dtype
    torch.testing.assert_close(res.x, x_star, atol=atol, rtol=0)
    assert res.njev == res.nfev and res.n_hvp == 0
    # In float32 f ~ -1 resolves decreases of ~1e-7 only: |g| ~ sqrt(L eps |f|) ~ 1e-3 can be
    # the floor of a search on values, short of gtol = 1e-4; the result must then say so.
    reachable = (
        (Status.CONVERGED,) if dtype == torch.float64 else (Status.CONVERGED, Status.NO_PROGRESS)
    )
    assert res.status in reachable, res.message


def test_armijo_stops_when_trials_no_longer_move_x():
    # Near a float32 minimizer the backtracking reaches steps t with x + t p == x; such a
    # "step" used to pass the decrease test (f == f), and gd then idled until max_iter.
    # (Steps that f's values cannot judge but its slope can are taken while |g| still
    # falls; the stall counter ends those.)
    a, b, x_star = spd_quadratic(6, seed=0, dtype=torch.float32, cond=30.0)
    res = taylorch.minimize(
        quadratic, torch.zeros(6), args=(a, b), method="gd", gtol=1e-7, max_iter=1000
    )
    assert res.status == Status.NO_PROGRESS and res.nit < 200
    torch.testing.assert_close(res.x, x_star, atol=1e-3, rtol=0)


def test_a_failed_strong_wolfe_search_leaves_every_problem_where_it_was():
    # Row 0: a first trial so short that f falls by less than its assumed noise (1e-6 |f|),
    # the only trial allowed: no acceptable step. Row 1: the exact minimizer along p.
    objective = Objective(
        lambda x: 0.5 * (x * x).sum(-1), batched=True, batch_size=2, device=torch.device("cpu")
    )
    x = torch.tensor([[10.0, 1.0], [10.0, 1.0]], dtype=torch.float64)
    f, g = objective.value_and_grad(x)
    p = -g
    step = StrongWolfe(max_trials=1).search(objective, x, f, g, p, torch.tensor([1e-8, 1.0]))
    assert step.ok.tolist() == [False, True]
    assert step.t[0] == 0 and torch.equal(step.x[0], x[0])
    assert step.f[0] == f[0] and torch.equal(step.g[0], g[0])
    torch.testing.assert_close(step.x[1], torch.zeros(2, dtype=torch.float64))


@settings(max_examples=8, deadline=None)
@given(
    n=st.integers(2, 6),
    cond=st.floats(1.0, 100.0),
    seed=st.integers(0, 2**16),
    which=st.sampled_from(ORDER1),
)
def test_random_convex_quadratics_reach_their_minimizer(n, cond, seed, which):
    name, options = which
    a, b, x_star = spd_quadratic(n, seed=seed, cond=cond)
    # Plain gradient descent needs about cond * log(1/gtol) iterations: up to ~1400 here.
    res = taylorch.minimize(
        quadratic,
        torch.zeros(n, dtype=torch.float64),
        args=(a, b),
        method=name,
        max_iter=5000,
        **options,
    )
    assert res.success, res.message
    # |x - x*| <= |A^{-1}| |g| <= gtol sqrt(n) with gtol = 1e-6.
    torch.testing.assert_close(res.x, x_star, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("name", "options"), [*ORDER1, ("polyak", {"f_star": torch.tensor([0.0, 0.0, 0.0])})]
)
def test_batched_equals_loop_of_single_solves(name, options):
    a, b, _ = spd_quadratic(3, seed=4)
    funs = [lambda x: quadratic(x, a, b) - quadratic(torch.linalg.solve(a, b), a, b)]
    funs += [rosenbrock, lambda x: ((x - 0.5) ** 2 + (x - 0.5) ** 4).sum()]  # f* = 0 for all
    x0 = torch.tensor([[0.0, 0.0, 0.0], [-1.2, 1.0, 0.8], [2.0, -1.0, 0.3]], dtype=torch.float64)
    res = taylorch.minimize(rowwise(funs), x0, method=name, batched=True, max_iter=60, **options)
    for i, fun in enumerate(funs):
        single_options = {k: (v[i] if k == "f_star" else v) for k, v in options.items()}
        single = taylorch.minimize(fun, x0[i], method=name, max_iter=60, **single_options)
        torch.testing.assert_close(res.x[i], single.x, atol=0, rtol=0)
        assert (int(res.nit[i]), int(res.nfev[i])) == (single.nit, single.nfev)
        assert int(res.status[i]) == single.status


@pytest.mark.parametrize("name", ["gd", "cg", "bfgs", "l-bfgs"])
def test_batched_line_searches_do_not_wait_for_each_other(name):
    # Every call of the batched fun evaluates every running problem's next trial point, so
    # the batch is called exactly as often as its busiest problem is charged. In lockstep
    # (each round waiting for the slowest search) BFGS called it about twice as often.
    starts = torch.tensor(
        [[-1.2, 1.0, 0.8], [2.0, -1.0, 0.3], [0.0, 3.0, -2.0], [1.5, 1.5, 1.5], [-2.0, 2.0, 4.0]],
        dtype=torch.float64,
    )
    fun = Counted(rowwise([rosenbrock] * len(starts)))
    res = taylorch.minimize(fun, starts, method=name, batched=True, max_iter=3000)
    assert res.success.all()
    assert fun.calls == int(res.nfev.max())
    assert len(set(res.nfev.tolist())) > 1  # the problems did need different numbers of calls


@pytest.mark.parametrize("name", ["gd", "bfgs", "l-bfgs"])
def test_batched_max_iter_and_history_per_problem(name):
    starts = torch.tensor([[-1.2, 1.0], [2.0, -1.5], [0.3, 3.0]], dtype=torch.float64)
    res = taylorch.minimize(
        rowwise([rosenbrock] * 3), starts, method=name, batched=True, max_iter=6, history=True
    )
    assert (res.nit == 6).all() and (res.status == Status.MAX_ITER).all()
    # One history entry per call of fun in which some problem ended an iteration (and the
    # start); a problem's value never rises along it (every accepted step decreases f).
    f = res.history["f"]
    assert f.shape[1] == 3 and 7 <= f.shape[0] <= int(res.nfev.max())
    assert (f[1:] <= f[:-1]).all()


# -- gd ------------------------------------------------------------------------------------


class RecordingArmijo(Armijo):
    """Armijo that records every search's starting point and first trial step."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def begin(self, x, f, g, p, t0, rows):
        self.calls.append((x.clone(), g.clone(), t0.clone()))
        return super().begin(x, f, g, p, t0, rows)


def test_gd_first_trial_is_the_short_barzilai_borwein_step():
    a, b, _ = spd_quadratic(4, seed=5)
    search = RecordingArmijo()
    res = taylorch.minimize(
        quadratic,
        torch.zeros(4, dtype=torch.float64),
        args=(a, b),
        method=GD(line_search=search),
    )
    assert res.success
    x, g, t0 = (torch.cat(parts) for parts in zip(*search.calls))
    torch.testing.assert_close(t0[0], torch.clamp(1 / g[0].norm(), max=1.0))
    s = x[1:] - x[:-1]
    y = s @ a  # on a quadratic y = A s exactly
    bb = (s * y).sum(-1) / (y * y).sum(-1)
    torch.testing.assert_close(t0[1:], bb)


def test_gd_with_previous_step_rule_doubles_the_accepted_step():
    a, b, _ = spd_quadratic(4, seed=6, cond=50.0)
    search = RecordingArmijo()
    taylorch.minimize(
        quadratic,
        torch.zeros(4, dtype=torch.float64),
        args=(a, b),
        method=GD(initial_step="previous", line_search=search),
        max_iter=20,
    )
    x, g, t0 = (torch.cat(parts) for parts in zip(*search.calls))
    # The accepted step t satisfies x+ = x - t g.
    t = ((x[:-1] - x[1:]) * g[:-1]).sum(-1) / (g[:-1] * g[:-1]).sum(-1)
    torch.testing.assert_close(t0[1:], 2 * t)


def test_gd_decreases_f_monotonically_on_rosenbrock():
    res = taylorch.minimize(
        rosenbrock, torch.tensor([-1.2, 1.0], dtype=torch.float64), method="gd", history=True
    )
    assert res.success
    torch.testing.assert_close(res.x, torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0)
    assert bool((res.history["f"][1:] <= res.history["f"][:-1]).all())


def test_gd_rejects_an_unknown_initial_step():
    with pytest.raises(ValueError, match="initial_step must be one of"):
        GD(initial_step="long")


# -- polyak --------------------------------------------------------------------------------


def test_polyak_halves_a_step_that_leaves_the_domain():
    # sum_i c_i x_i - log x_i - log(1 - x_i): NaN outside (0, 1)^n. Per coordinate the
    # minimizer solves c x^2 - (c + 2) x + 1 = 0 in (0, 1) (1/2 where c = 0).
    c = torch.linspace(-50, 50, 20, dtype=torch.float64)

    def barrier(x):
        return (c * x).sum() - torch.log(x).sum() - torch.log1p(-x).sum()

    safe_c = torch.where(c == 0, 1.0, c)
    root = ((c + 2) - torch.sqrt((c + 2) ** 2 - 4 * c)) / (2 * safe_c)
    x_star = torch.where(c == 0, 0.5, root)
    f_star = float(barrier(x_star))
    x0 = torch.full((20,), 0.5, dtype=torch.float64)
    res = taylorch.minimize(barrier, x0, method="polyak", f_star=f_star, gtol=1e-5)
    # the first step leaves the box (it stopped there, at x0, before); then gtol or the
    # value f* itself (to its rounding) ends the solve
    assert res.nit > 10 and res.fun == pytest.approx(f_star, rel=1e-10), res.message
    torch.testing.assert_close(res.x, x_star, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-5), (torch.float32, 1e-3)])
def test_polyak_reaches_minimizer_of_quadratic_with_known_optimal_value(dtype, atol):
    a, b, x_star = spd_quadratic(5, seed=7, dtype=dtype)
    f_star = float(quadratic(x_star.double(), a.double(), b.double()))
    res = taylorch.minimize(
        quadratic, torch.zeros(5, dtype=dtype), args=(a, b), method="polyak", f_star=f_star
    )
    torch.testing.assert_close(res.x, x_star, atol=atol, rtol=0)
    # In float32 f can round to <= f* before |g| <= gtol: then no step is left to take.
    reachable = (
        (Status.CONVERGED,) if dtype == torch.float64 else (Status.CONVERGED, Status.NO_PROGRESS)
    )
    assert res.status in reachable, res.message


def test_polyak_never_moves_away_from_the_minimizer_of_a_nonsmooth_function():
    # Polyak's bound for convex f: |x+ - x*|^2 <= |x - x*|^2 - (f - f*)^2 / |g|^2.
    center = torch.tensor([0.3, -1.7, 2.2, 0.9], dtype=torch.float64)
    xs = []
    res = taylorch.minimize(
        lambda x: (x - center).abs().sum(),
        torch.tensor([1.1, 0.4, -0.6, 0.25], dtype=torch.float64),
        method="polyak",
        f_star=0.0,
        max_iter=200,
        callback=lambda r: xs.append(r.x),
    )
    distances = torch.stack([(x - center).norm() for x in xs])
    assert bool((distances[1:] <= distances[:-1] + 1e-12).all())
    assert res.fun < 1e-8


def test_polyak_needs_f_star():
    with pytest.raises(TypeError, match="needs f_star"):
        taylorch.minimize(rosenbrock, torch.zeros(2), method="polyak")
    with pytest.raises(ValueError, match="f_star must be a finite number"):
        taylorch.minimize(rosenbrock, torch.zeros(2), method="polyak", f_star=float("nan"))
    with pytest.raises(ValueError, match="f_star has 3 values for a batch of 2"):
        taylorch.minimize(
            rosenbrock, torch.zeros(2, 2), batched=True, method="polyak", f_star=torch.zeros(3)
        )


# -- cg ------------------------------------------------------------------------------------


class ExactQuadraticSearch(LineSearch):
    """The exact minimizer along ``p`` of ``1/2 x^T A x - b^T x``: ``t = -<g, p> / <p, A p>``."""

    def __init__(self, a):
        self.a = a

    def search(self, objective, x, f, g, p, t0):
        t = -(g * p).sum(-1) / ((p @ self.a) * p).sum(-1)
        x_new = x + t[:, None] * p
        f_new, g_new = objective.value_and_grad(x_new)
        return SearchResult(t=t, x=x_new, f=f_new, g=g_new, ok=torch.ones_like(t, dtype=bool))


def linear_cg_iterates(a, b, steps):
    """Textbook linear CG on ``A x = b`` from 0 (Hestenes & Stiefel 1952)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    out = []
    for _ in range(steps):
        alpha = (r @ r) / (p @ a @ p)
        x = x + alpha * p
        r_new = r - alpha * (a @ p)
        p = r_new + (r_new @ r_new) / (r @ r) * p
        r = r_new
        out.append(x)
    return out


@pytest.mark.parametrize("beta", ["pr+", "hz"])
def test_cg_with_exact_search_is_linear_cg_and_stops_within_n_iterations(beta):
    n = 6
    a, b, x_star = spd_quadratic(n, seed=8, cond=50.0)
    xs = []
    res = taylorch.minimize(
        quadratic,
        torch.zeros(n, dtype=torch.float64),
        args=(a, b),
        method=CG(beta=beta, line_search=ExactQuadraticSearch(a)),
        gtol=1e-9,
        callback=lambda r: xs.append(r.x),
    )
    assert res.success and res.nit <= n
    torch.testing.assert_close(res.x, x_star, atol=1e-9, rtol=0)
    for ours, reference in zip(xs, linear_cg_iterates(a, b, res.nit)):
        torch.testing.assert_close(ours, reference, atol=1e-10, rtol=1e-8)


def _direction_state(g, g_prev, p_prev):
    batch = g.shape[0]
    memory = {
        "g_prev": g_prev,
        "p_prev": p_prev,
        "f_prev": torch.zeros(batch, dtype=g.dtype),
        "since_restart": torch.ones(batch, dtype=torch.long),
    }
    return State.start(torch.zeros_like(g), torch.zeros(batch, dtype=g.dtype), g, **memory)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_cg_betas_match_their_formulas_and_hz_guarantees_descent(n, seed):
    gen = torch.Generator().manual_seed(seed)
    g, g_prev, p_prev = torch.randn(3, 16, n, generator=gen, dtype=torch.float64)
    state = _direction_state(g, g_prev, p_prev)

    p = ConjugateDirection("pr+").compute(None, state)
    for i in range(16):
        beta = max(0.0, float(g[i] @ (g[i] - g_prev[i]) / (g_prev[i] @ g_prev[i])))
        torch.testing.assert_close(p[i], -g[i] + beta * p_prev[i])

    # Hager & Zhang 2005, Theorem 1.1: <g, p> <= -7/8 |g|^2 whatever the previous step,
    # for beta_N and for every beta between beta_N and 0, which covers max(beta_N, eta).
    p = ConjugateDirection("hz").compute(None, state)
    slope = (g * p).sum(-1)
    assert bool((slope <= -7 / 8 * (g * g).sum(-1) * (1 - 1e-10)).all())


def test_cg_restarts_along_steepest_descent():
    g, g_prev, p_prev = torch.randn(3, 2, 4, dtype=torch.float64, generator=torch.manual_seed(0))
    g_prev = -g  # makes the PR+ beta positive: a restart is the only way to beta = 0
    state = _direction_state(g, g_prev, p_prev)
    state.memory["since_restart"] = torch.tensor([0, 4])  # fresh; 4 steps since the last
    for beta in ("pr+", "hz"):
        torch.testing.assert_close(ConjugateDirection(beta, restart=4).compute(None, state), -g)
        p = ConjugateDirection(beta).compute(None, state)  # no periodic restart by default
        torch.testing.assert_close(p[0], -g[0])
        assert not torch.allclose(p[1], -g[1])


@pytest.mark.parametrize("beta", ["pr+", "hz"])
@pytest.mark.parametrize("n", [2, 5])
def test_cg_on_rosenbrock_against_scipy(beta, n):
    x0 = np.tile([-1.2, 1.0], n)[:n]
    ref = scipy.optimize.minimize(
        scipy.optimize.rosen, x0, jac=scipy.optimize.rosen_der, method="CG", options={"gtol": 1e-6}
    )
    assert ref.success
    res = taylorch.minimize(rosenbrock, torch.tensor(x0), method="cg", beta=beta, gtol=1e-6)
    assert res.success
    torch.testing.assert_close(res.x, torch.ones(n, dtype=torch.float64), atol=1e-5, rtol=0)
    # A regression guard; over the 35 MGH problems with n <= 12 pr+ needs a median 0.92x
    # of scipy's evaluations (benchmarks/minimize_order01.py), hz 1.2x, and on this start
    # for n = 5 up to 1.84x.
    assert res.nfev <= 2 * ref.nfev


@pytest.mark.parametrize(
    ("options", "match"),
    [({"beta": "fr"}, "beta must be one of"), ({"restart": 0}, "restart must be a positive")],
)
def test_cg_rejects_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        CG(**options)
