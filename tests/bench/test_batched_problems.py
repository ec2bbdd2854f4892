"""Batched problems: seeded starts around the standard one, one call for the whole batch."""

import pytest
import torch

from taylorch.bench.problems.batched import batched_problem, batched_problems, batched_rosenbrock
from taylorch.bench.problems.classic import classic_problem


def test_rosenbrock_batch_shapes_and_minimum():
    p = batched_rosenbrock(32, 10, seed=3)
    assert p.batched and p.x0.shape == (32, 10) and p.batch_size == 32 and p.n == 10
    assert p.fun(p.x0).shape == (32,)
    assert (p.fun(p.x_star) == 0).all()
    single = classic_problem("extended-rosenbrock", 10)
    torch.testing.assert_close(p.fun(p.x0), torch.stack([single.fun(r) for r in p.x0]))


def test_starts_are_seeded_and_within_spread():
    a = batched_problem("wood", 8, seed=1, spread=0.5)
    b = batched_problem("wood", 8, seed=1, spread=0.5)
    c = batched_problem("wood", 8, seed=2, spread=0.5)
    torch.testing.assert_close(a.x0, b.x0)
    assert not torch.equal(a.x0, c.x0)
    base = classic_problem("wood").x0
    assert ((a.x0 - base).abs() <= 0.5).all()
    assert len({tuple(r.tolist()) for r in a.x0}) == 8


def test_suite_and_dtype():
    problems = batched_problems(4)
    assert [p.batch_size for p in problems] == [4, 4, 4]
    assert batched_problem("beale", 3, dtype=torch.float32).x0.dtype == torch.float32


def test_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        batched_problem("wood", 0)
    with pytest.raises(ValueError, match="spread"):
        batched_problem("wood", 2, spread=-1.0)
