"""Every peer adapter solves a classic problem, counted by the harness; dense methods refuse
sizes they cannot hold."""

import pytest
import torch

from taylorch.bench.methods import METHODS, Settings
from taylorch.bench.problems.classic import classic_problem
from taylorch.bench.problems.nist import load_nist
from taylorch.bench.runner import run_problems

PEERS = ["torchmin:bfgs", "torchmin:trust-ncg", "torch.optim:lbfgs", "scipy:trust-exact",
         "scipy:newton-cg", "optimistix:bfgs"]  # fmt: skip


@pytest.mark.parametrize("name", PEERS)
def test_minimizer_peers_solve_beale(name):
    (rec,) = run_problems([classic_problem("beale")], [name])
    assert rec.status == "solved", rec.message
    assert rec.nfev >= 1 and rec.ngev >= 1 and rec.trace["f"][-1] <= rec.trace["f"][0]


@pytest.mark.parametrize("name", ["lmfit:leastsq", "optimistix:lm", "scipy:trf"])
def test_least_squares_peers_fit_misra1a(name):
    (rec,) = run_problems([load_nist("Misra1a").as_problem(2)], [name])
    assert rec.status == "solved" and rec.accuracy >= 4, rec.message
    if name == "lmfit:leastsq":
        assert rec.ngev == 0  # lmfit differentiates by finite differences, all counted as nfev


def test_dense_methods_refuse_large_n_and_float32_tolerance():
    big = classic_problem("extended-rosenbrock", 4000)
    recs = {r.method: r for r in run_problems([big], ["scipy:bfgs", "taylorch:bfgs"],
                                              settings=Settings(max_evals=5))}  # fmt: skip
    assert all(r.status == "unsupported" and "dense" in r.message for r in recs.values())
    lsq = {r.method: r for r in run_problems([big], ["taylorch:lm", "taylorch:gauss-newton"])}
    assert lsq["taylorch:lm"].status == "solved"  # by Jacobian products at this size
    assert lsq["taylorch:gauss-newton"].status == "unsupported"
    assert Settings().for_dtype(torch.float32).gtol == 1e-5
    assert Settings().for_dtype(torch.float64).gtol == 1e-8
    assert Settings(gtol=1e-3).for_dtype(torch.float32).gtol == 1e-3
    assert not METHODS["taylorch:l-bfgs"].dense
