"""The runner: statuses, counts taken by wrapping, references, batches, and failures that
do not stop the run."""

import math
from types import SimpleNamespace

import pytest
import torch

from taylorch.bench import Problem, run
from taylorch.bench.methods import METHODS, Method, Outcome, Settings
from taylorch.bench.methods import base as methods_base
from taylorch.bench.problems.batched import batched_rosenbrock
from taylorch.bench.problems.classic import classic_problem
from taylorch.bench.problems.nist import load_nist
from taylorch.bench.runner import run_problems


class Scripted(Method):
    """A fake method: calls fun on a fixed path, then returns a point and a claim."""

    library = "taylorch"

    def __init__(
        self, name, path=(), answer=None, claim=True, error=None, loop=False, kind="minimize"
    ):
        self.algorithm, self.path, self.answer = name, path, answer
        self.claim, self.error, self.loop, self.kind = claim, error, loop, kind
        self.batched = False

    def prepare(self):
        pass

    def solve(self, fun, x0, settings):
        for p in self.path:
            fun(torch.as_tensor(p, dtype=x0.dtype))
        while self.loop:
            fun(x0)
        if self.error:
            raise self.error
        x = x0 if self.answer is None else torch.as_tensor(self.answer, dtype=x0.dtype)
        return Outcome(x, self.claim, "claimed success, nfev=1")


def _quad(f_star=0.0, name="quad"):
    return Problem(name, x0=torch.tensor([3.0, 4.0], dtype=torch.float64),
                   fun=lambda x: ((x - 1) ** 2).sum(-1), f_star=f_star)  # fmt: skip


def _by_method(records):
    return {r.method: r for r in records}


def test_statuses_and_counts_come_from_the_wrapper():
    good = Scripted("good", path=[[2.0, 2.0]] * 7, answer=[1.0, 1.0])
    lying = Scripted("lying", path=[[2.0, 2.0]] * 3, answer=[2.0, 3.0], claim=True)
    crash = Scripted("crash", path=[[2.0, 2.0]], error=RuntimeError("boom"))
    nan = Scripted("nan", answer=[math.nan, 1.0])
    after = Scripted("after", answer=[1.0, 1.0])
    recs = _by_method(run_problems([_quad()], [good, lying, crash, nan, after]))
    assert recs["taylorch:good"].status == "solved" and recs["taylorch:good"].nfev == 7
    assert recs["taylorch:good"].time_to_solve == recs["taylorch:good"].time
    assert recs["taylorch:lying"].status == "unsolved" and recs["taylorch:lying"].method_success
    assert recs["taylorch:crash"].status == "failed"
    assert "RuntimeError: boom" in recs["taylorch:crash"].message
    assert recs["taylorch:crash"].nfev == 1
    assert recs["taylorch:nan"].status == "failed" and "non-finite" in recs["taylorch:nan"].message
    assert recs["taylorch:after"].status == "solved"  # the run went on after the failures


def test_budget_is_enforced_and_best_value_kept():
    looping = Scripted("loop", loop=True)
    (rec,) = run_problems([_quad()], [looping], settings=Settings(max_evals=20, max_time=5.0))
    assert rec.status == "budget" and "evaluation budget" in rec.message
    assert rec.nfev == math.ceil(1.1 * 20 + 10)
    assert rec.f == pytest.approx(13.0)  # the only point it ever evaluated


def test_reference_without_f_star_is_the_best_any_method_reached():
    a = Scripted("a", answer=[1.0, 1.5])  # f = 0.25
    b = Scripted("b", answer=[1.0, 2.0])  # f = 1.0
    recs = _by_method(run_problems([_quad(f_star=None)], [a, b]))
    assert recs["taylorch:a"].f_ref == pytest.approx(0.25)
    assert recs["taylorch:a"].status == "solved" and recs["taylorch:b"].status == "unsolved"


def test_unsupported_and_unavailable(monkeypatch):
    monkeypatch.setitem(methods_base.LIBRARIES, "nolib", ("no_such_module_xyz", "no-such-pkg"))
    missing = Scripted("missing")
    missing.library = "nolib"
    lsq = Scripted("lsq", kind="least_squares")
    recs = _by_method(run_problems([_quad()], [missing, lsq]))
    assert recs["nolib:missing"].status == "unavailable"
    assert "pip install no-such-pkg" in recs["nolib:missing"].message
    assert recs["taylorch:lsq"].status == "unsupported"
    assert "needs a residual" in recs["taylorch:lsq"].message


def test_batched_problem_row_by_row_for_unbatched_methods():
    p = batched_rosenbrock(3, 4, seed=0)
    row_solver = Scripted("rows", path=[[0.0] * 4] * 5, answer=[1.0] * 4)
    (rec,) = run_problems([p], [row_solver])
    assert rec.status == "solved" and rec.solved_fraction == 1.0
    assert (rec.calls, rec.nfev, rec.batch_size) == (15, 5.0, 3)


def test_real_solvers_and_peers():
    p = classic_problem("rosenbrock")
    recs = _by_method(run_problems([p], ["taylorch:bfgs", "scipy:bfgs", "scipy:lm"]))
    assert all(r.status == "solved" for r in recs.values())
    assert recs["scipy:lm"].ngev > 0 and recs["scipy:bfgs"].nfev == recs["scipy:bfgs"].ngev
    batch = batched_rosenbrock(4, 4, seed=1)
    (rec,) = run_problems([batch], ["taylorch:bfgs"])
    assert rec.status == "solved" and rec.calls == rec.nfev  # one call serves the whole batch


def test_nist_is_scored_in_digits():
    recs = run_problems([load_nist("Misra1a").as_problem(2)], ["scipy:lm"])
    assert recs[0].accuracy >= 4 and recs[0].status == "solved"


def test_user_problem_objects_and_bad_methods():
    user = SimpleNamespace(name="mine", x0=torch.ones(3, dtype=torch.float64),
                           fun=lambda x: (x**2).sum(-1), f_star=0.0, metadata={"owner": "me"})  # fmt: skip
    result = run([user], methods="taylorch:bfgs,scipy:bfgs")
    assert [r.status for r in result.records] == ["solved", "solved"]
    assert result.records[0].tags == {"owner": "me"}
    with pytest.raises(ValueError, match="matches no method"):
        run([user], methods="nosuchmethod")
    with pytest.raises(ValueError, match="peers: unknown"):
        run([user], methods="taylorch:bfgs", peers="nosuchpeer")
    with pytest.raises(TypeError, match="has no x0"):
        run([object()], methods="taylorch:bfgs")
    assert "taylorch:bfgs" in METHODS


def test_unbatched_functions_only_ever_see_one_point():
    def strict(x):
        assert x.ndim == 1, f"got shape {tuple(x.shape)}"
        return (x[0] - 2) ** 2 + (x[1] + 1) ** 2

    p = Problem("strict", x0=torch.zeros(2, dtype=torch.float64), fun=strict, f_star=0.0)
    recs = run_problems([p], ["taylorch:bfgs", "scipy:bfgs", "scipy:nelder-mead"])
    assert [r.status for r in recs] == ["solved"] * 3, [r.message for r in recs]


def test_warnings_go_into_the_record_not_the_terminal(recwarn):
    class Warns(Scripted):
        def solve(self, fun, x0, settings):
            import warnings

            warnings.warn("overflow in the peer", RuntimeWarning, stacklevel=1)
            return super().solve(fun, x0, settings)

    (rec,) = run_problems([_quad()], [Warns("warns", answer=[1.0, 1.0])])
    assert rec.status == "solved"
    assert "warning: RuntimeWarning: overflow in the peer" in rec.message
    assert not [w for w in recwarn if "overflow in the peer" in str(w.message)]


def test_polyak_gets_the_problems_f_star_and_is_unsupported_without_one():
    problems = [
        Problem("quadratic", torch.tensor([3.0, -2.0], dtype=torch.float64),
                lambda x: (x**2).sum(-1) + 1.0, f_star=1.0),
        Problem("no-f-star", torch.tensor([3.0, -2.0], dtype=torch.float64),
                lambda x: (x**2).sum(-1)),
    ]  # fmt: skip
    records = {r.problem: r for r in run(problems, methods="taylorch:polyak").records}
    assert records["quadratic"].status == "solved"
    assert records["no-f-star"].status == "unsupported"
    assert "f_star" in records["no-f-star"].message


def test_a_method_of_the_users_own_library_runs():
    class Halving(Method):
        library, algorithm, kind, batched = "my-lab", "halving", "minimize", False

        def solve(self, fun, x0, settings):
            x = x0
            for _ in range(60):
                fun(x)
                x = x / 2
            return Outcome(x, True, "halved")

    methods_base.register(Halving())
    try:
        problem = Problem(
            "quad", torch.ones(3, dtype=torch.float64), lambda x: (x**2).sum(-1), f_star=0.0
        )
        (record,) = run([problem], methods="my-lab:halving").records
        assert record.status == "solved" and record.nfev == 60
    finally:
        del METHODS["my-lab:halving"]
