"""Training runs: counted passes, learning-rate sweeps, failures, scoring, built-in data."""

import math

import pytest
import torch

from taylorch.bench.methods.optimizers import TRAINING_METHODS, TrainingMethod, select_training
from taylorch.bench.problems.training import TRAINING_TASKS, TrainingTask, load_text
from taylorch.bench.train import TRAINING_TAU, run_training, train_once

LOGREG = TRAINING_TASKS["digits-logreg"]


def test_forward_and_backward_passes_are_counted():
    adamw = train_once(LOGREG, TRAINING_METHODS["torch.optim:adamw"], 1e-2, steps=6)
    assert (adamw.nfev, adamw.ngev, adamw.error) == (6, 6, None)
    assert adamw.loss < adamw.loss0
    zo = train_once(LOGREG, TRAINING_METHODS["taylorch:zo-sgd"], 1e-3, steps=4)
    assert zo.ngev == 0 and zo.nfev == 8  # two forward passes per step, no backward
    sls = train_once(LOGREG, TRAINING_METHODS["taylorch:sls"], 1.0, steps=3)
    assert sls.ngev == 3 and sls.nfev >= 6  # at least one trial point per step
    assert adamw.trace["steps"][0] == 0 and adamw.trace["steps"][-1] == 6


def test_same_seed_same_run():
    a = train_once(LOGREG, TRAINING_METHODS["torch.optim:sgd"], 0.1, steps=5, seed=3)
    b = train_once(LOGREG, TRAINING_METHODS["torch.optim:sgd"], 0.1, steps=5, seed=3)
    assert a.trace["f"] == b.trace["f"]


def _sgd_unless(lr_fails):
    sgd = TRAINING_METHODS["torch.optim:sgd"].make

    def make(model, lr):
        if lr == lr_fails:
            raise RuntimeError("cannot build")
        return sgd(model, lr)

    return make


def test_sweep_keeps_the_best_and_failures_are_recorded():
    # lr = inf drives the weights to non-finite values; lr = 7 crashes while building.
    sweep = TrainingMethod("torch.optim", "sgd-sweep", _sgd_unless(7.0), (math.inf, 7.0, 0.1))
    broken = TrainingMethod("torch.optim", "sgd-broken", _sgd_unless(7.0), (math.inf, 7.0))
    recs = {r.method: r for r in run_training([LOGREG], [sweep, broken], steps=4)}
    good = recs["torch.optim:sgd-sweep"]
    assert good.tags["lr"] == 0.1 and good.status == "solved" and math.isfinite(good.f)
    assert "non-finite" in good.tags["sweep"]["inf"] and "cannot build" in good.tags["sweep"]["7"]
    bad = recs["torch.optim:sgd-broken"]
    assert bad.status == "failed" and math.isnan(bad.f)
    assert "lr=inf: FloatingPointError" in bad.message and "lr=7: RuntimeError" in bad.message


def test_scoring_against_the_best_decrease():
    recs = run_training([LOGREG], select_training("torch.optim:sgd,taylorch:zo-sgd"), steps=10,
                        sweep=1)  # fmt: skip
    by = {r.method: r for r in recs}
    best = min(r.f for r in recs)
    for r in recs:
        assert r.f_ref == best
        solved = r.f - best <= TRAINING_TAU * (r.f0 - best)
        assert (r.status == "solved") == solved
    assert by["torch.optim:sgd"].time_to_solve <= by["torch.optim:sgd"].time


def test_missing_dependency_is_reported(monkeypatch):
    task = TrainingTask("needs-x", "d", LOGREG.build, steps=1, requires="no_such_module_xyz")
    (rec,) = run_training([task], select_training("torch.optim:adamw"))
    assert rec.status == "unsupported" and "pip install no_such_module_xyz" in rec.message


def test_text_and_char_model():
    text = load_text()
    assert len(text) > 4000 and text.isascii() and "Shall I compare thee" in text
    task = TRAINING_TASKS["char-transformer"]
    setup = task.build(0, torch.float32, torch.device("cpu"))
    inputs, targets = setup.next_batch()
    assert inputs.shape == targets.shape == (16, 32)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are the next characters
    # an untrained model is near-uniform: loss close to log(vocabulary size)
    vocab = len(set(text))
    assert abs(setup.eval_loss() - math.log(vocab)) < 0.5


def test_bad_method_name():
    with pytest.raises(ValueError, match="matches no training method"):
        select_training("nosuch")
