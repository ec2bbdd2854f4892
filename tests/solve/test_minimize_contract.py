"""The contract every registered minimization method keeps, tested generically.

A method added to ``taylorch.solve.METHODS`` is picked up here automatically:
convergence to a closed-form minimizer, batched equals a loop of single
solves, exact evaluation counts (by wrapping ``fun``), budgets honoured,
the best iterate returned, callbacks, non-finite values, and bad input.
"""

from __future__ import annotations

import math

import pytest
import torch

import taylorch
from taylorch.solve import METHODS, Status

from .helpers import Counted, quadratic, rosenbrock

ALL = sorted(METHODS)
WITH_GRADIENT = sorted(name for name, cls in METHODS.items() if cls.order >= 1)


def options(name: str, f_star=0.0) -> dict:
    """Options a method needs to run at all: Polyak steps need the problem's optimal value."""
    return {"f_star": f_star} if name == "polyak" else {}


def quadratic_minimum(a, b, x_star):
    return -0.5 * (b * x_star).sum(-1)


def quadratic_problem(n: int = 4, dtype=torch.float64, seed: int = 0):
    """f(x) = 1/2 x^T A x - b^T x with A SPD (condition ~10); minimizer A^{-1} b."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=dtype))
    a = q @ torch.diag(torch.linspace(1.0, 10.0, n, dtype=dtype)) @ q.T
    b = torch.randn(n, generator=gen, dtype=dtype)
    return a, b, torch.linalg.solve(a, b)


@pytest.mark.parametrize("name", ALL)
def test_reaches_closed_form_minimizer_of_quadratic(name):
    a, b, x_star = quadratic_problem()
    f_star = float(quadratic_minimum(a, b, x_star))
    res = taylorch.minimize(
        quadratic,
        torch.zeros(4, dtype=torch.float64),
        args=(a, b),
        method=name,
        **options(name, f_star),
    )
    assert res.success, res.message
    tol = 1e-5 if METHODS[name].order >= 1 else 1e-3
    torch.testing.assert_close(res.x, x_star, atol=tol, rtol=0)
    assert res.method == name
    assert isinstance(res.status, Status)


@pytest.mark.parametrize("name", ALL)
def test_batched_equals_loop_of_single_solves(name):
    problems = [quadratic_problem(seed=s) for s in range(3)]
    a = torch.stack([p[0] for p in problems])
    b = torch.stack([p[1] for p in problems])
    x0 = torch.stack([torch.full((4,), float(s)) for s in range(3)]).double()

    def batched(x):  # each row evaluated exactly as the single problem is: same rounding
        return torch.stack([quadratic(x[i], a[i], b[i]) for i in range(3)])

    f_star = torch.stack([quadratic_minimum(*p) for p in problems])
    res = taylorch.minimize(batched, x0, method=name, batched=True, **options(name, f_star))
    assert res.x.shape == (3, 4) and res.fun.shape == (3,) and res.status.shape == (3,)
    for i in range(3):
        single = taylorch.minimize(
            quadratic, x0[i], args=(a[i], b[i]), method=name, **options(name, float(f_star[i]))
        )
        torch.testing.assert_close(res.x[i], single.x, atol=1e-9, rtol=1e-9)
        assert int(res.nit[i]) == single.nit
        assert int(res.nfev[i]) == single.nfev
        assert bool(res.success[i]) == single.success


@pytest.mark.parametrize("name", ALL)
def test_nfev_counts_every_call_of_fun(name):
    fun = Counted(rosenbrock)
    res = taylorch.minimize(
        fun,
        torch.tensor([-1.2, 1.0], dtype=torch.float64),
        method=name,
        max_iter=30,
        **options(name),
    )
    assert res.nfev == fun.calls
    assert res.njev <= res.nfev
    assert res.nit <= 30


@pytest.mark.parametrize("name", ALL)
def test_max_fev_is_never_exceeded(name):
    fun = Counted(rosenbrock)
    res = taylorch.minimize(
        fun,
        torch.tensor([-1.2, 1.0], dtype=torch.float64),
        method=name,
        max_fev=7,
        **options(name),
    )
    assert fun.calls <= 7
    assert res.nfev == fun.calls
    assert res.status == Status.MAX_FEV and not res.success


@pytest.mark.parametrize("name", ALL)
def test_max_iter_is_honoured_exactly(name):
    res = taylorch.minimize(
        rosenbrock,
        torch.tensor([-1.2, 1.0], dtype=torch.float64),
        method=name,
        max_iter=3,
        **options(name),
    )
    assert res.nit == 3
    assert res.status == Status.MAX_ITER and not res.success
    assert "maximum number of iterations" in res.message


@pytest.mark.parametrize("name", ALL)
def test_result_is_the_best_iterate_and_consistent(name):
    res = taylorch.minimize(
        rosenbrock,
        torch.tensor([-1.2, 1.0], dtype=torch.float64),
        method=name,
        max_iter=15,
        history=True,
        **options(name),
    )
    assert res.history["f"].shape[0] == res.nit + 1
    lowest = float(res.history["f"].min())
    if res.status == Status.CONVERGED:  # the converged point, within rounding of the lowest
        assert res.fun <= lowest + 1e-12 * max(1.0, abs(lowest))
    else:
        assert res.fun == lowest
    assert res.fun == pytest.approx(float(rosenbrock(res.x)), rel=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_callback_stops_the_solve(name):
    seen = []

    def callback(intermediate):
        seen.append(intermediate.nit)
        return intermediate.nit >= 2

    res = taylorch.minimize(
        rosenbrock,
        torch.tensor([-1.2, 1.0], dtype=torch.float64),
        method=name,
        callback=callback,
        **options(name),
    )
    assert seen == [1, 2]
    assert res.nit == 2 and res.status == Status.CALLBACK

    def raising(intermediate):
        raise StopIteration

    res = taylorch.minimize(
        rosenbrock,
        torch.tensor([-1.2, 1.0], dtype=torch.float64),
        method=name,
        callback=raising,
        **options(name),
    )
    assert res.nit == 1 and res.status == Status.CALLBACK


@pytest.mark.parametrize("name", WITH_GRADIENT)
def test_works_inside_no_grad_and_continues_from_its_result(name):
    a, b, x_star = quadratic_problem()
    f_star = float(quadratic_minimum(a, b, x_star))
    with torch.no_grad():
        res = taylorch.minimize(
            quadratic,
            torch.zeros(4, dtype=torch.float64),
            args=(a, b),
            method=name,
            **options(name, f_star),
        )
    assert res.success
    again = taylorch.minimize(quadratic, res, args=(a, b), method=name, **options(name, f_star))
    assert again.success and again.nit <= 1
    torch.testing.assert_close(again.x, x_star, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", WITH_GRADIENT)
def test_float32_never_returns_nan_and_reports_honestly(name):
    # The minimizer A^{-1} b is not representable in float32, so the gradient at the
    # best float32 point is ~ eps |A| |x| >> 1e-12: gtol=1e-12 is out of reach.
    a, b, x_star = quadratic_problem(n=6, dtype=torch.float32, seed=3)
    res = taylorch.minimize(
        quadratic,
        torch.zeros(6),
        args=(100 * a, 100 * b),
        method=name,
        gtol=1e-12,
        max_iter=500,
        **options(
            name, float(quadratic_minimum(100 * a.double(), 100 * b.double(), x_star.double()))
        ),
    )
    assert res.x.dtype == torch.float32
    assert torch.isfinite(res.x).all() and math.isfinite(res.fun)
    assert res.status != Status.CONVERGED and not res.success
    assert res.status in (Status.NO_PROGRESS, Status.MAX_ITER)
    torch.testing.assert_close(res.x, x_star, atol=1e-3, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_nan_region_is_rejected_and_backtracked(name):
    # f is NaN beyond |x| > 2; the minimizer (1.5, ...) lies close to that edge.
    def fun(x):
        value = ((x - 1.5) ** 2).sum()
        return torch.where((x.abs() > 2).any(), torch.tensor(float("nan"), dtype=x.dtype), value)

    res = taylorch.minimize(fun, torch.zeros(3, dtype=torch.float64), method=name, **options(name))
    assert res.success, res.message
    torch.testing.assert_close(res.x, torch.full((3,), 1.5, dtype=torch.float64), atol=1e-3, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_nonfinite_everywhere_but_start_gives_honest_status(name):
    x0 = torch.ones(2, dtype=torch.float64)

    def fun(x):
        at_start = (x == x0).all()
        return torch.where(at_start, (x**2).sum(), torch.tensor(float("nan"), dtype=x.dtype))

    res = taylorch.minimize(fun, x0, method=name, max_iter=50, **options(name))
    assert not res.success
    assert res.status in (Status.NO_PROGRESS, Status.NONFINITE, Status.MAX_ITER)
    torch.testing.assert_close(res.x, x0)
    assert res.fun == 2.0


def test_nonfinite_value_at_start_is_reported():
    res = taylorch.minimize(
        lambda x: torch.log(x).sum(), -torch.ones(2, dtype=torch.float64), method="bfgs"
    )
    assert res.status == Status.NONFINITE and not res.success and res.nit == 0


def test_batched_problems_stop_on_their_own():
    x0 = torch.tensor([[1.0, 1.0], [-1.2, 1.0]], dtype=torch.float64)  # solved / hard
    res = taylorch.minimize(rosenbrock, x0, method="bfgs", batched=True, history=True)
    assert res.success.all()
    assert int(res.nit[0]) == 0 < int(res.nit[1])
    assert int(res.nfev[0]) == 1


def test_auto_says_which_method_it_picked():
    a, b, _ = quadratic_problem()
    res = taylorch.minimize(quadratic, torch.zeros(4, dtype=torch.float64), args=(a, b))
    assert res.method in METHODS and res.success


def test_progress_line_goes_to_stderr(capsys):
    taylorch.minimize(rosenbrock, torch.zeros(2, dtype=torch.float64), method="bfgs", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "bfgs" in captured.err and "iter" in captured.err


def test_quiet_by_default(capsys):
    taylorch.minimize(rosenbrock, torch.zeros(2, dtype=torch.float64), method="bfgs")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x0": torch.tensor([1.0, float("nan")])}, ValueError, "x0 must be finite"),
        ({"x0": torch.ones(2, 2)}, ValueError, r"x0 must have shape \(n,\)"),
        ({"x0": torch.ones(2), "batched": True}, ValueError, r"x0 must have shape \(B, n\)"),
        ({"x0": torch.ones(2, dtype=torch.long)}, ValueError, "x0 must have a floating dtype"),
        ({"fun": lambda x: x**2}, ValueError, "fun must return a scalar"),
        ({"fun": 3}, TypeError, "fun must be callable"),
        ({"method": "nope"}, ValueError, "known methods: auto, .*bfgs"),
        ({"gtol": 0.0}, ValueError, "gtol must be a finite number > 0"),
        ({"xtol": -1.0}, ValueError, "xtol must be"),
        ({"max_iter": 0}, ValueError, "max_iter must be a positive integer"),
        ({"max_fev": 2.5}, ValueError, "max_fev must be a positive integer"),
        ({"max_time": -1}, ValueError, "max_time must be > 0"),
        ({"method": "bfgs", "no_such_option": 1}, TypeError, "invalid options for method 'bfgs'"),
        ({"args": [1]}, TypeError, "args must be a tuple"),
        ({"x0": torch.ones(0, dtype=torch.float64)}, ValueError, "x0 must have at least one"),
        ({"x0": torch.ones(2, dtype=torch.float16)}, ValueError, "x0 must be float32 or float64"),
        ({"x0": torch.ones(2, dtype=torch.bfloat16)}, ValueError, "x0 must be float32 or float64"),
        (
            {"fun": lambda x: (x.double() ** 2).sum(), "x0": torch.ones(2)},
            ValueError,
            r"fun must return the dtype of x \(torch.float32\), got torch.float64",
        ),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    call = {"fun": lambda x: (x**2).sum(), "x0": torch.ones(2, dtype=torch.float64)}
    call.update(kwargs)
    with pytest.raises(error, match=match):
        taylorch.minimize(call.pop("fun"), call.pop("x0"), **call)


def test_method_object_with_options_is_rejected():
    with pytest.raises(TypeError, match="configure the BFGS object"):
        taylorch.minimize(
            lambda x: (x**2).sum(), torch.ones(2), method=taylorch.solve.BFGS(), history_size=3
        )


def test_result_reads_like_scipy():
    res = taylorch.minimize(rosenbrock, torch.zeros(2, dtype=torch.float64), method="bfgs")
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "n_hvp", "success", "status", "message"):
        assert key in res.keys()
        assert res[key] is getattr(res, key)
    assert "Result(" in repr(res)
    assert res.wall_time > 0


@pytest.mark.parametrize("name", WITH_GRADIENT)
def test_a_function_without_a_graph_is_an_error_not_a_stationary_point(name):
    # Without a graph every gradient reads as zero: the solve used to report CONVERGED at x0.
    def outside_torch(x):  # numpy, as a user might wrap existing code
        return torch.tensor(float((x.detach().numpy() ** 2).sum()), dtype=x.dtype)

    x0 = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="no autograd graph to x"):
        taylorch.minimize(outside_torch, x0, method=name, **options(name))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        taylorch.minimize(lambda x: (x**2).sum(), x0, method=name, **options(name))


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("polyak", "zo-gd")])
def test_an_objective_unbounded_below_is_reported_as_such(name):
    # -|x|^2 + x_0 has no minimum: methods used to follow it to -1e308 and report that as
    # NO_PROGRESS ("the tolerance may be too tight"), NONFINITE or MAX_ITER.
    def fun(x):
        return -(x * x).sum() + x[0]

    res = taylorch.minimize(fun, torch.zeros(3, dtype=torch.float64), method=name, max_iter=500)
    assert res.status == Status.UNBOUNDED and not res.success, res.message
    assert res.fun < -1e20


@pytest.mark.parametrize("name", ["bfgs", "l-bfgs", "cg", "newton", "newton-cg"])
def test_a_linear_objective_is_found_unbounded_in_a_few_searches(name):
    # f falls at the same rate all the way: the strong-Wolfe search expanded by 4 per
    # round for 25 rounds, restarted short at every iteration, and these methods spent
    # 15,000 evaluations reaching only -3e17 (MAX_ITER). The expansion now grows.
    res = taylorch.minimize(lambda x: x.sum(), torch.zeros(3, dtype=torch.float64), method=name)
    assert res.status == Status.UNBOUNDED, res.message
    assert res.nfev <= 100


def test_a_misspelt_minimize_option_gets_a_hint_and_the_repr_names_the_status():
    def square(x):
        return (x**2).sum()

    with pytest.raises(TypeError, match=r"'maxiter'.*did you mean 'max_iter'"):
        taylorch.minimize(square, torch.ones(2, dtype=torch.float64), method="bfgs", maxiter=5)
    res = taylorch.minimize(square, torch.ones(2, dtype=torch.float64), method="bfgs")
    assert "status: 0 (CONVERGED)" in repr(res)
