"""The torch.optim contract, run for every optimizer in the registry (references.CASES)."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from .references import CASE_IDS, CASES, ToyProblem

STEPS = 4


def two_groups(problem: ToyProblem, lr: float) -> list[dict]:
    """Group A: first and last layer at ``lr``; group B: the rest (with the frozen one) at lr/2."""
    params = problem.params()
    first = [params[0], params[1], params[6], params[7]]
    rest = [p for p in params if all(p is not q for q in first)]
    return [{"params": first}, {"params": rest, "lr": lr / 2}]


def lr_per_param(problem: ToyProblem, opt: torch.optim.Optimizer) -> list[float]:
    lookup = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    return [lookup[id(p)] for p in problem.params()]


def run(case, problem, opt, steps, scheduler=None):
    """Step ``opt``; return the per-step, per-parameter learning rates it used."""
    table = []
    closure = problem.closure_for(opt)
    for _ in range(steps):
        table.append(lr_per_param(problem, opt))
        if case.zeroth_order or case.needs_closure:
            opt.step(closure)
        else:
            closure()
            opt.step()
        if scheduler is not None:
            scheduler.step()
    return table


def snapshot(params):
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_float64_reference_with_two_param_groups(case):
    problem = ToyProblem()
    x0 = snapshot(problem.params())
    opt = case.make(two_groups(problem, case.lr))
    table = run(case, problem, opt, STEPS)
    expected = case.reference_for(opt, problem, x0, table)
    for name, p, e, s in zip(problem.names, problem.params(), expected, x0):
        assert torch.allclose(p.detach(), e, rtol=1e-8, atol=1e-10), name
        if p.requires_grad:  # the step did something (and weight decay is in the reference)
            assert not torch.equal(p.detach(), s), name
        else:
            assert torch.equal(p.detach(), s), name
    assert all(len(opt.state[p]) == 0 for p in problem.params() if not p.requires_grad)


@pytest.mark.parametrize(
    "case", [c for c in CASES if "weight_decay" in c.hyper], ids=lambda c: c.name
)
def test_weight_decay_changes_the_step(case):
    runs = []
    for wd in (0.0, case.hyper["weight_decay"]):
        problem = ToyProblem()
        opt = case.make(problem.params(), weight_decay=wd)
        run(case, problem, opt, 2)
        runs.append(snapshot(problem.params()))
    moved = max((a - b).abs().max().item() for a, b in zip(*runs))
    assert moved > 1e-6


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_lr_scheduler_scales_steps_like_sgd(case):
    problem = ToyProblem()
    x0 = snapshot(problem.params())
    opt = case.make(two_groups(problem, case.lr))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5**k)
    table = run(case, problem, opt, STEPS, sched)
    # the lrs SGD sees under the same scheduler
    sgd = torch.optim.SGD(two_groups(ToyProblem(), case.lr), lr=case.lr)
    sgd_sched = torch.optim.lr_scheduler.LambdaLR(sgd, lambda k: 0.5**k)
    sgd_lrs = []
    for _ in range(STEPS):
        sgd_lrs.append([g["lr"] for g in sgd.param_groups])
        sgd.step()
        sgd_sched.step()
    assert [sorted(set(row)) for row in table] == [sorted(set(row)) for row in sgd_lrs]
    expected = case.reference_for(opt, problem, x0, table)
    for p, e in zip(problem.params(), expected):
        assert torch.allclose(p.detach(), e, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_resume_from_checkpoint_is_bit_exact(case, dtype):
    # bfloat16: the zeroth-order optimizers keep float32 moments, which torch's own
    # load_state_dict would round to the parameter's dtype
    problem = ToyProblem(dtype)
    opt = case.make(two_groups(problem, case.lr))
    run(case, problem, opt, 2)
    buffer = io.BytesIO()
    torch.save({"model": problem.model.state_dict(), "opt": opt.state_dict()}, buffer)
    run(case, problem, opt, 3)
    uninterrupted = snapshot(problem.params())

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = ToyProblem(dtype, init_seed=1)  # other initial values, overwritten by the checkpoint
    resumed.model.load_state_dict(saved["model"])
    opt2 = case.make(two_groups(resumed, 123.0))  # other lrs, overwritten too
    opt2.load_state_dict(saved["opt"])
    run(case, resumed, opt2, 3)
    for a, b in zip(uninterrupted, resumed.params()):
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_state_loads_onto_parameter_device_and_dtype(case):
    problem = ToyProblem(torch.float64)
    opt = case.make(problem.params())
    run(case, problem, opt, 1)
    meta = copy.deepcopy(problem.model).to(device="meta", dtype=torch.float32)
    opt_meta = case.make(meta.parameters())
    opt_meta.load_state_dict(opt.state_dict())
    for p in meta.parameters():
        for key, value in opt_meta.state[p].items():
            if isinstance(value, torch.Tensor) and key != "step":
                assert value.device.type == "meta", key
                assert value.dtype == opt_meta.state_dtype(p), key


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_step_returns_the_closure_loss_and_zero_grad(case):
    problem = ToyProblem()
    opt = case.make(problem.params())
    closure = problem.closure_for(opt)
    with torch.no_grad():
        loss0 = float(((problem.model(problem.X) - problem.Y) ** 2).mean())
    loss = float(opt.step(closure).detach())
    if case.zeroth_order:  # the mean of the two perturbed losses: within O(eps) of f(x)
        assert abs(loss - loss0) < 1e-3
    else:
        assert loss == pytest.approx(loss0, rel=1e-12)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is None or not p.grad.any() for p in problem.params())
    opt.zero_grad()
    assert all(p.grad is None for p in problem.params())


@pytest.mark.parametrize("case", [c for c in CASES if c.needs_closure], ids=lambda c: c.name)
def test_optimizers_that_need_the_loss_reject_a_missing_closure(case):
    problem = ToyProblem()
    opt = case.make(problem.params())
    with pytest.raises(TypeError, match="closure"):
        opt.step()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_same_seed_same_run_and_no_hidden_randomness(case):
    results = []
    for global_seed in (0, 1):  # the global RNG must not matter once a seed is given
        torch.manual_seed(123)
        problem = ToyProblem()
        opt = case.make(problem.params())
        torch.manual_seed(global_seed)
        run(case, problem, opt, 3)
        results.append(snapshot(problem.params()))
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("case", [c for c in CASES if c.zeroth_order], ids=lambda c: c.name)
def test_zeroth_order_seed_changes_the_directions(case):
    runs = []
    for seed in (1, 2):
        problem = ToyProblem()
        opt = case.make(problem.params(), seed=seed)
        run(case, problem, opt, 1)
        runs.append(snapshot(problem.params()))
    assert not torch.equal(runs[0][0], runs[1][0])
    # without a seed, torch.manual_seed decides
    draws = []
    for _ in range(2):
        torch.manual_seed(5)
        problem = ToyProblem()
        opt = case.make(problem.params(), seed=None)
        run(case, problem, opt, 1)
        draws.append(snapshot(problem.params()))
    assert all(torch.equal(a, b) for a, b in zip(*draws))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_hyperparameters_raise_value_error(case):
    problem = ToyProblem()
    for bad in [*case.bad, {"nonfinite": "ignore"}]:
        key = next(iter(bad))
        with pytest.raises(ValueError, match=key):
            case.make(problem.params(), **bad)


def poisoned_closure(problem, opt, where):
    """A closure whose loss (zeroth order) or gradient (first order) is NaN."""

    def closure():
        opt.zero_grad()
        out = problem.model(problem.X)
        loss = ((out - problem.Y) ** 2).mean()
        if where == "loss":
            loss = loss * float("nan")
        if torch.is_grad_enabled():
            loss.backward()
            if where == "grad":
                problem.params()[2].grad[0, 0] = float("inf")
        return loss

    return closure


# what each optimizer reads: a gradient (first order), a loss (closure-based), or both
NON_FINITE = [(c, "grad") for c in CASES if not c.zeroth_order] + [
    (c, "loss") for c in CASES if c.zeroth_order or c.needs_closure
]


@pytest.mark.parametrize(
    ("case", "where"), NON_FINITE, ids=[f"{c.name}-{w}" for c, w in NON_FINITE]
)
def test_non_finite_raises_or_skips_without_touching_state(case, where):
    problem = ToyProblem()
    opt = case.make(problem.params())
    run(case, problem, opt, 1)
    before = snapshot(problem.params())
    state_before = copy.deepcopy(opt.state_dict())
    with pytest.raises(FloatingPointError, match="non-finite"):
        opt.step(poisoned_closure(problem, opt, where))
    opt.nonfinite = "skip"
    opt.step(poisoned_closure(problem, opt, where))
    assert opt.skipped_steps == 1
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, problem.params()))
    after = opt.state_dict()
    assert after["param_groups"] == state_before["param_groups"]
    for k, st in state_before["state"].items():
        for key, value in st.items():
            same = (
                torch.equal(value, after["state"][k][key])
                if torch.is_tensor(value)
                else value == after["state"][k][key]
            )
            assert same, key


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_group_added_later_gets_the_defaults(case):
    problem = ToyProblem()
    x0 = snapshot(problem.params())
    first, second = two_groups(problem, case.lr)
    opt = case.make([first])
    opt.add_param_group(second)
    table = run(case, problem, opt, STEPS)
    expected = case.reference_for(opt, problem, x0, table)
    for p, e in zip(problem.params(), expected):
        assert torch.allclose(p.detach(), e, rtol=1e-8, atol=1e-10)
