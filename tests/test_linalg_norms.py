"""``max_abs`` against ``torch.linalg.vector_norm(ord=inf)`` on both sides of its size switch."""

from __future__ import annotations

import math

import pytest
import torch

from taylorch.linalg.norms import max_abs


@pytest.mark.parametrize("n", [1, 7, 4095, 4096, 100_000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_abs_is_the_infinity_norm_of_each_row(n, dtype):
    v = torch.randn(3, n, generator=torch.Generator().manual_seed(n), dtype=dtype)
    v[1] = -v[1].abs()  # a row whose largest magnitude is negative
    v[2] = 0.0
    torch.testing.assert_close(max_abs(v), torch.linalg.vector_norm(v, ord=math.inf, dim=-1))


@pytest.mark.parametrize("n", [5, 10_000])
def test_max_abs_propagates_nan_and_inf(n):
    v = torch.ones(2, n, dtype=torch.float64)
    v[0, -1] = math.nan
    v[1, 0] = -math.inf
    out = max_abs(v)
    assert math.isnan(out[0]) and out[1] == math.inf
