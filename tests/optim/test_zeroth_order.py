"""Zeroth-order optimizers: exact restore in every dtype, accumulation, no stored noise."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from taylorch.optim import ZOSGD, ZOAdam, ZOAdaMU
from taylorch.optim.zeroth_order import adamu_schedule, derive_seed

from .references import ToyProblem

ZO = [ZOSGD, ZOAdam, ZOAdaMU]
BITS = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
        torch.float64: torch.int64}  # fmt: skip


def small_model(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4)).to(dtype)
    with torch.no_grad():  # values near zero and exact zeros: where rounding bites hardest
        model[0].weight[:4].mul_(1e-3)
        model[0].bias.zero_()
    return model


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("cls", ZO)
def test_perturb_and_restore_is_bit_exact(cls, dtype):
    model = small_model(dtype)
    x = torch.randn(8, 16).to(dtype)
    start = [p.detach().clone() for p in model.parameters()]
    seen = []

    def closure():
        assert not torch.is_grad_enabled()
        seen.append(max((p - s).abs().max().item() for p, s in zip(model.parameters(), start)))
        return model(x).float().square().mean()

    opt = cls(model.parameters(), lr=0.0, eps=1e-2, n_queries=3, seed=3, chunk_size=100)
    for _ in range(3):
        opt.step(closure)
    assert min(seen) > 1e-3  # the closure saw perturbed parameters every time
    for p, s in zip(model.parameters(), start):
        assert torch.equal(p.detach().view(BITS[dtype]), s.view(BITS[dtype]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_naive_add_subtract_would_not_restore_low_precision(dtype):
    # what the exact restore guards against: (x + eps z) - eps z != x after rounding
    model = small_model(dtype)
    p = model[0].weight.detach()
    z = torch.randn(p.shape, generator=torch.Generator().manual_seed(derive_seed(1, 2)))
    naive = ((p + 1e-2 * z.to(dtype)) - 1e-2 * z.to(dtype)).view(BITS[dtype])
    assert (naive != p.view(BITS[dtype])).any()


@pytest.mark.parametrize("cls", ZO)
def test_gradient_accumulation_over_micro_batches_equals_the_full_batch(cls):
    runs = []
    for split in (False, True):
        problem = ToyProblem(torch.float64)
        opt = cls(problem.params(), lr=0.01, n_queries=2, seed=5)

        def loss_on(rows, problem=problem):
            def closure():
                out = problem.model(problem.X[rows])
                return ((out - problem.Y[rows]) ** 2).mean()

            return closure

        halves = [loss_on(slice(0, 12)), loss_on(slice(12, 24))]
        for _ in range(3):
            opt.step(halves if split else loss_on(slice(0, 24)))
        runs.append([p.detach().clone() for p in problem.params()])
    for a, b in zip(*runs):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_zo_sgd_keeps_no_state_and_descends():
    problem = ToyProblem(torch.float32)
    opt = ZOSGD(problem.params(), lr=0.1, eps=1e-3, n_queries=4, seed=0, chunk_size=16)
    closure = problem.closure_for(opt)
    with torch.no_grad():
        first = float(closure())
    for _ in range(100):
        opt.step(closure)
    with torch.no_grad():
        last = float(closure())
    assert last < 0.9 * first
    assert all(len(s) == 0 for s in opt.state.values())
    assert opt.param_groups[0]["step"] == 100


def test_projected_gradient_is_the_directional_derivative():
    # f(x) = 0.5 ||x||^2 is quadratic: the central difference is exact, c = <x, z>.
    x = nn.Parameter(torch.randn(50, dtype=torch.float64))
    opt = ZOSGD([x], lr=0.0, eps=1e-2, seed=11)
    opt.step(lambda: 0.5 * x.square().sum())
    g = torch.Generator().manual_seed(derive_seed(11, 0, 0, 0, 0))
    z = torch.randn((1, 50), generator=g).double()[0]
    assert opt.last_projected_grads[0] == pytest.approx(float(x.detach() @ z), rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_fix_log_round_trip_on_arbitrary_bit_differences(dtype):
    # one full 65536-element chunk: int16 indices wrap, gaps longer than a nibble,
    # differences that fit the stream (|d| <= 7) and ones that do not (+0 vs -0 in
    # float16 is -32768 in int16, where abs() overflows), and an untouched chunk
    bits = BITS[dtype]
    n = 1 << 16
    opt = ZOSGD([nn.Parameter(torch.zeros(n + 10, dtype=dtype))], lr=0.0, seed=0, chunk_size=n)
    g = torch.Generator().manual_seed(0)
    info = torch.iinfo(bits)
    x = torch.randint(info.min, info.max, (n,), generator=g, dtype=torch.int64).to(bits)
    pos = torch.cat(
        [torch.tensor([0, 1, 17, 18, 40000, n - 1]), torch.randperm(n, generator=g)[:5000]]
    )
    pos = pos.unique()
    choices = torch.tensor([1, -1, 2, -7, 7, 8, -8, 300, info.min, info.max], dtype=torch.int64)
    delta = choices[torch.randint(0, len(choices), (len(pos),), generator=g)].to(bits)
    back = x.clone()
    back[pos] = x[pos] - delta  # wrapping integer arithmetic
    log = opt._log(x.device)
    log.clear()
    log.record((0, 0), x.view(dtype), x - back)
    log.record((0, n), x[:10].view(dtype), torch.zeros(10, dtype=bits))  # nothing to log
    assert log.wide_size > 0 and log.size >= len(pos)
    log.apply((0, 0), back.view(dtype))
    assert torch.equal(back, x)
    untouched = x[:10].clone()
    log.apply((0, n), untouched.view(dtype))
    assert torch.equal(untouched, x[:10])


def test_buffers_and_log_are_allocated_once_at_construction():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4))
    x = torch.randn(16, 64)
    opt = ZOSGD(model.parameters(), lr=1e-2, eps=1e-2, n_queries=2, seed=0, chunk_size=512)
    buffers = {key: t.data_ptr() for key, t in opt._workspace.items()}
    (log,) = opt._logs.values()
    arena = log.stream.data_ptr()
    for _ in range(3):
        opt.step(lambda: model(x).square().mean())
    assert {key: t.data_ptr() for key, t in opt._workspace.items()} == buffers
    assert log.stream.data_ptr() == arena and log.size > 0


def test_adamu_schedule_is_the_authors_shrinking_cosine():
    # the authors' trainer keeps a period that shrinks in place once per step of the
    # second phase; adamu_schedule is its closed form (defaults: T 20000, T1 1024, 0.8 T)
    total, warmup, end = 20000, 1024, 16000
    for phi in (1.0, 0.1, 1.5):
        limit, seen = float(total), []
        for t in range(total):
            if t < warmup:
                w = 1.0
            elif t < end:
                w = 0.5 * (1 + math.cos(math.pi * (t - warmup) / limit))
                limit -= phi * (total - end) / (end - warmup)
            else:
                w = 0.5 * (1 + math.cos(math.pi * (end - warmup) / limit))
            seen.append(w)
        for t in (0, warmup - 1, warmup, 5000, end - 1, end, total - 1, total + 10):
            want = seen[min(t, total - 1)]
            assert adamu_schedule(t, total, warmup, 0.8, phi) == pytest.approx(want, rel=1e-12)
    assert adamu_schedule(500, total, warmup, 0.8, 1.0) == 1.0
    # mid-way, the larger varphi has annealed further (beta1 slowest, beta2 fastest)
    mid = [adamu_schedule(8000, total, warmup, 0.8, phi) for phi in (0.1, 1.0, 1.5)]
    assert 1.0 > mid[0] > mid[1] > mid[2] > 0.0
