"""Optimizers that call the closure several times per step: randomness, gradients, overflow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from taylorch import optim

from .references import CASE_IDS, CASES

MULTI_CALL = [c for c in CASES if c.zeroth_order or c.name in ("SLS", "SMB")]
MULTI_IDS = [c.name for c in MULTI_CALL]


def dropout_problem(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))
    model = model.double()
    g = torch.Generator().manual_seed(1)
    X = torch.randn(32, 8, generator=g, dtype=torch.float64)
    Y = X.sum(dim=1, keepdim=True)
    return model, X, Y


def mse_closure(opt, model, X, Y, set_to_none: bool = True):
    """The closure convention: zero the grads, the loss, backward when grads are on."""

    def closure():
        opt.zero_grad(set_to_none=set_to_none)
        loss = ((model(X) - Y) ** 2).mean()
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("case", MULTI_CALL, ids=MULTI_IDS)
def test_every_closure_call_of_a_step_draws_the_same_random_numbers(case):
    model, X, Y = dropout_problem()
    opt = case.make(model.parameters())
    draws: list[torch.Tensor] = []

    def closure():
        opt.zero_grad()
        draws.append(torch.rand(3))  # what a dropout mask would be drawn from
        loss = ((model(X) - Y) ** 2).mean()
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    torch.manual_seed(123)
    per_step = []
    for _ in range(3):
        before = len(draws)
        opt.step(closure)
        per_step.append(draws[before:])
    for calls in per_step:
        assert len(calls) >= 2
        for d in calls[1:]:
            assert torch.equal(d, calls[0])
    assert not torch.equal(per_step[0][0], per_step[1][0])  # the stream moves between steps


def test_generator_after_steps_continues_the_one_call_stream():
    model, X, Y = dropout_problem()
    opt = optim.SLS(model.parameters(), lr=1.0)
    closure = mse_closure(opt, model, X, Y)

    torch.manual_seed(7)
    for _ in range(3):
        opt.step(closure)
    after = torch.rand(4)
    # the same three steps with one forward pass each: three dropout masks drawn
    model2, _, _ = dropout_problem()
    torch.manual_seed(7)
    for _ in range(3):
        model2(X)
    assert torch.equal(after, torch.rand(4))


def test_sls_under_dropout_keeps_its_step_size():
    # Without common random numbers, each trial saw another dropout mask, the Armijo test
    # compared different networks and tau collapsed (to ~1e-18 within 100 steps).
    model, X, Y = dropout_problem()
    opt = optim.SLS(model.parameters(), lr=1.0)
    closure = mse_closure(opt, model, X, Y)

    first = float(closure().detach())
    for _ in range(100):
        opt.step(closure)
    assert opt.param_groups[0]["tau"] > 1e-3
    with torch.no_grad():
        model.eval()
        assert float(((model(X) - Y) ** 2).mean()) < 0.5 * first


@pytest.mark.parametrize("set_to_none", [True, False])
def test_sls_trials_do_not_lose_the_gradient_to_zero_grad(set_to_none):
    torch.manual_seed(0)
    model = nn.Linear(10, 1).double()
    X = torch.randn(64, 10, dtype=torch.float64)
    Y = X.sum(dim=1, keepdim=True)
    opt = optim.SLS(model.parameters(), lr=10.0)
    closure = mse_closure(opt, model, X, Y, set_to_none)

    for _ in range(20):
        opt.step(closure)
    assert float(closure().detach()) < 1e-3
    # p.grad after a step: the gradient at the point the step started from
    w0 = [p.detach().clone() for p in model.parameters()]
    opt.step(closure)
    grads = [p.grad.clone() for p in model.parameters()]
    w0 = [w.requires_grad_() for w in w0]
    with torch.enable_grad():
        loss = ((torch.nn.functional.linear(X, w0[0], w0[1]) - Y) ** 2).mean()
        expected = torch.autograd.grad(loss, w0)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)


def test_sls_without_an_acceptable_trial_stays_put():
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = optim.SLS([p], lr=1.0, max_backtracks=3)
    calls = 0

    def closure():  # the loss rises at every trial point
        nonlocal calls
        calls += 1
        opt.zero_grad()
        loss = (p**2).sum() + (0.0 if calls == 1 else 10.0 * calls)
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    opt.step(closure)
    assert torch.equal(p.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64))
    assert opt.param_groups[0]["tau"] == pytest.approx(0.9**3)  # tau starts at its cap, 1


def test_smb_inner_products_do_not_overflow_float32():
    # g = 4e9 and the trial's gradient ~3e28 are finite in float32; their squares are not.
    # The model step used to be NaN and was written into the parameters. In float64 the
    # first tensor's model is degenerate (theta cancels to 0): it stays; the second steps.
    big, small = nn.Parameter(torch.tensor([1e3])), nn.Parameter(torch.tensor([1.0]))
    opt = optim.SMB([big, small], lr=0.5)

    def closure():
        opt.zero_grad()
        loss = (big**4).sum() + (small**4).sum()
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    opt.step(closure)
    assert opt.model_steps == 1
    assert float(big.detach()) == 1e3  # stayed, and said so
    assert opt.degenerate_models == 1
    assert torch.isfinite(small).all()
    # the second tensor's model is well posed: its model step, by the paper's formulas
    g, lr, eta = 4.0, 0.5, 0.99
    s, y = -lr * g, 4 * (1.0 - lr * g) ** 3 - g
    sigma = 0.5 * (abs(s) * (abs(y) + abs(g) / eta) - y * s)
    shifted, theta = y * s + 2 * sigma, (y * s + 2 * sigma) ** 2 - s * s * y * y
    c_g = -s * s / (2 * sigma)
    c_s = c_g / theta * (-shifted * y * g + y * y * s * g)
    c_y = c_g / theta * (-shifted * s * g + s * s * y * g)
    assert float(small.detach()) == pytest.approx(1.0 + c_s * s + c_g * g + c_y * y, rel=1e-5)


def test_smb_rejects_a_non_finite_trial_gradient_and_restores_the_start():
    p = nn.Parameter(torch.tensor([2.0, 1.0], dtype=torch.float64))
    opt = optim.SMB([p], lr=0.5)
    calls = 0

    def closure():
        nonlocal calls
        calls += 1
        opt.zero_grad()
        loss = (p**2).sum() + (0.0 if calls == 1 else 100.0)  # fails Armijo at the trial
        if torch.is_grad_enabled():
            loss.backward()
            if calls > 1:
                p.grad.fill_(float("nan"))
        return loss

    with pytest.raises(FloatingPointError, match="gradient at the trial point"):
        opt.step(closure)
    assert torch.equal(p.detach(), torch.tensor([2.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.needs_closure and not c.zeroth_order], ids=lambda c: c.name
)
def test_a_step_without_any_gradient_changes_nothing(case):
    p = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = case.make([p])

    def closure():  # the loss does not involve p
        opt.zero_grad()
        return torch.tensor(1.0, dtype=torch.float64)

    loss = opt.step(closure)
    assert float(loss) == 1.0
    assert torch.equal(p.detach(), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_complex_parameters_are_trained_or_rejected_by_name(case):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(8, 3, dtype=torch.complex128, generator=g)
    b = torch.randn(8, dtype=torch.complex128, generator=g)
    z = nn.Parameter(torch.zeros(3, dtype=torch.complex128))
    if not type(case.make([nn.Parameter(torch.ones(1))])).supports_complex:
        with pytest.raises(ValueError, match="complex"):
            case.make([z])
        return
    opt = case.make([z])

    def closure():
        opt.zero_grad()
        loss = (A @ z - b).abs().square().mean()
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    first = float(closure().detach())
    for _ in range(20):
        opt.step(closure)
    assert float(closure().detach()) < 0.9 * first
    assert z.imag.abs().max() > 0  # the imaginary part is trained too


@pytest.mark.parametrize("cls", [optim.SPS, optim.PolyakMomentum])
def test_polyak_warns_once_when_the_loss_is_below_f_star(cls):
    mu = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = cls([mu], f_star=0.0)

    def closure():  # a Gaussian negative log-likelihood: negative near its minimum
        opt.zero_grad()
        loss = 0.5 * (mu - 2.5).square().sum() - 1.0
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    with pytest.warns(UserWarning, match="below f_star") as record:
        opt.step(closure)
        opt.step(closure)
    assert len(record) == 1
    assert float(mu.detach()) == 2.0  # the Polyak step is 0 there
