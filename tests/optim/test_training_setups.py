"""Training-loop setups beyond the contract: copies, refused parameters, mismatched
checkpoints, autocast around the step, layouts, closures that misbehave, lr = 0 groups."""

from __future__ import annotations

import contextlib
import copy
import pickle

import pytest
import torch

from taylorch import optim

from .references import CASE_IDS, CASES, ToyProblem
from .test_contract import run, snapshot


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_copied_optimizer_continues_like_the_original(case, how):
    problem = ToyProblem()
    opt = case.make(problem.params())
    run(case, problem, opt, 2)
    # The model and the optimizer copied together keep the parameters shared.
    if how == "deepcopy":
        problem2, opt2 = copy.deepcopy((problem, opt))
    else:
        problem2, opt2 = pickle.loads(pickle.dumps((problem, opt)))
    assert opt2.nonfinite == opt.nonfinite
    run(case, problem, opt, 3)
    run(case, problem2, opt2, 3)
    for a, b in zip(problem.params(), problem2.params()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "case", [c for c in CASES if not c.cls.supports_complex], ids=lambda c: c.name
)
def test_a_refused_parameter_group_leaves_no_trace(case):
    problem = ToyProblem()
    opt = case.make(problem.params())
    z = torch.nn.Parameter(torch.randn(3, dtype=torch.complex128))
    with pytest.raises(ValueError, match="complex"):
        opt.add_param_group({"params": [z]})
    assert len(opt.param_groups) == 1
    assert all(p is not z for p in opt.param_groups[0]["params"])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_checkpoint_of_other_parameters_is_refused(case):
    problem = ToyProblem()
    params = problem.params()
    opt = case.make([{"params": params[:2]}, {"params": params[2:]}])
    run(case, problem, opt, 1)
    saved = opt.state_dict()
    # The same group sizes in another order: torch would map the state by position.
    swapped = case.make([{"params": [params[1], params[0]]}, {"params": params[2:]}])
    stateful = any(
        isinstance(v, torch.Tensor) and v.ndim > 0 for s in opt.state.values() for v in s.values()
    )
    if stateful:
        with pytest.raises(ValueError, match="does not fit"):
            swapped.load_state_dict(saved)
    else:  # nothing per parameter to mismatch: the hyperparameters load as usual
        swapped.load_state_dict(saved)
        assert swapped.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


@pytest.mark.parametrize("case", [c for c in CASES if c.needs_closure], ids=lambda c: c.name)
def test_autocast_around_the_step_sees_every_trial_point(case):
    """Autocast caches the bfloat16 copy of each weight for its whole region: trials and
    perturbations inside one step must not reuse the copy taken at the first call."""
    results = []
    for around in (False, True):
        problem = ToyProblem(torch.float32)
        opt = case.make(problem.params())

        def closure(problem=problem, opt=opt, around=around):
            opt.zero_grad()
            inside = contextlib.nullcontext() if around else torch.autocast("cpu", torch.bfloat16)
            with inside:
                loss = ((problem.model(problem.X) - problem.Y) ** 2).float().mean()
            if torch.is_grad_enabled():
                loss.backward()
            return loss

        for _ in range(3):
            with torch.autocast("cpu", torch.bfloat16) if around else contextlib.nullcontext():
                opt.step(closure)
        results.append(snapshot(problem.params()))
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", [c for c in CASES if c.zeroth_order], ids=lambda c: c.name)
def test_zeroth_order_refuses_non_contiguous_parameters_before_moving_any(case):
    conv = torch.nn.Conv2d(3, 4, 2)
    with pytest.raises(ValueError, match="contiguous"):
        case.make(conv.to(memory_format=torch.channels_last).parameters())
    # A layout changed after construction is refused at the step, with nothing moved.
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Conv2d(3, 4, 2))
    opt = case.make(model.parameters())
    model[1].to(memory_format=torch.channels_last)
    before = snapshot(model.parameters())
    x = torch.randn(2, 3, 5, 5)

    def closure():
        return model[1](x).square().mean()

    with pytest.raises(ValueError, match="contiguous"):
        opt.step(closure)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def _smb_with_model_step() -> tuple[ToyProblem, optim.SMB]:
    problem = ToyProblem()
    return problem, optim.SMB(problem.params(), lr=50.0)  # Armijo fails: a model step


def test_smb_restores_the_parameters_when_the_closure_raises():
    problem, opt = _smb_with_model_step()
    before = snapshot(problem.params())

    def closure():  # calls backward unconditionally: fails at the no-grad trial pass
        opt.zero_grad()
        loss = ((problem.model(problem.X) - problem.Y) ** 2).mean()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError):
        opt.step(closure)
    assert all(torch.equal(a, b) for a, b in zip(before, problem.params()))


def test_smb_step_does_not_depend_on_where_the_gradients_are_zeroed():
    results = []
    for inside in (True, False):
        problem, opt = _smb_with_model_step()

        def closure(problem=problem, opt=opt, inside=inside):
            if inside:
                opt.zero_grad()
            loss = ((problem.model(problem.X) - problem.Y) ** 2).mean()
            if torch.is_grad_enabled():
                loss.backward()
            return loss

        opt.zero_grad()
        opt.step(closure)
        assert opt.model_steps == 1
        results.append(snapshot(problem.params()))
    assert all(torch.equal(a, b) for a, b in zip(*results))


def _linear(seed: int = 0) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(4, 2).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return (
        layer,
        torch.randn(16, 4, generator=g, dtype=torch.float64),
        torch.randn(16, 2, generator=g, dtype=torch.float64),
    )


def test_adabound_group_built_with_lr_zero_trains_once_its_lr_is_raised():
    runs = []
    for lr0 in (0.0, 1e-2):
        layer, x, y = _linear()
        opt = optim.AdaBound(layer.parameters(), lr=lr0, final_lr=0.05)
        opt.param_groups[0]["lr"] = 1e-2  # unfrozen before training
        for _ in range(5):
            opt.zero_grad()
            ((layer(x) - y) ** 2).mean().backward()
            opt.step()
        runs.append(snapshot(layer.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_adabound_bounds_follow_the_lr_at_construction_under_one_cycle():
    """OneCycleLR rewrites ``initial_lr``; the bound's target must stay the authors'
    ``final_lr * lr / lr_at_construction`` (as pytorch-optimizer's AdaBound)."""
    peer = pytest.importorskip("pytorch_optimizer")
    runs = []
    for cls in (optim.AdaBound, peer.AdaBound):
        layer, x, y = _linear()
        opt = cls(layer.parameters(), lr=1e-3, final_lr=0.1)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=20)
        for _ in range(15):
            opt.zero_grad()
            ((layer(x) - y) ** 2).mean().backward()
            opt.step()
            sched.step()
        runs.append(snapshot(layer.parameters()))
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [optim.SPS, optim.PolyakMomentum])
def test_polyak_step_ignores_groups_with_lr_zero(cls):
    runs = []
    for freeze in ("requires_grad", "lr"):
        torch.manual_seed(0)
        backbone, head = torch.nn.Linear(4, 8).double(), torch.nn.Linear(8, 1).double()
        x, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
        if freeze == "requires_grad":
            backbone.requires_grad_(False)
            opt = cls(head.parameters(), lr=10.0)
        else:
            opt = cls(
                [{"params": backbone.parameters(), "lr": 0.0}, {"params": head.parameters()}],
                lr=10.0,
            )

        def closure(opt=opt, backbone=backbone, head=head, x=x, y=y):
            opt.zero_grad()
            loss = ((head(torch.tanh(backbone(x))) - y) ** 2).mean()
            if torch.is_grad_enabled():
                loss.backward()
            return loss

        for _ in range(3):
            opt.step(closure)
        runs.append(snapshot(head.parameters()))
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_param_groups_as_sets_are_refused_as_torch_refuses_them(case):
    problem = ToyProblem()
    with pytest.raises(TypeError, match="ordered collections"):
        case.make([{"params": set(problem.params())}])
