"""``max_abs`` and ``dot`` against plain references, on both sides of their size switches."""

from __future__ import annotations

import math

import pytest
import torch

from taylorch.linalg.norms import dot, max_abs


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


@pytest.mark.parametrize("n", [1, 10, 65535, 65536, 200_000])
@pytest.mark.parametrize("rows", [1, 3])  # one long row takes the einsum kernel
def test_dot_is_the_row_wise_inner_product(n, rows):
    gen = torch.Generator().manual_seed(n)
    a = torch.randn(rows, n, generator=gen, dtype=torch.float64)
    b = torch.randn(rows, n, generator=gen, dtype=torch.float64)
    # Reference: the products summed without rounding error (math.fsum).
    exact = torch.tensor([math.fsum((a[i] * b[i]).tolist()) for i in range(rows)], dtype=a.dtype)
    # The error bound of a computed dot product of length n: n eps sum |a_i b_i|.
    bound = n * torch.finfo(torch.float64).eps * (a * b).abs().sum(dim=-1)
    out = dot(a, b)
    assert out.shape == (rows,) and ((out - exact).abs() <= bound).all()
    assert dot(a[0], b[0]).shape == ()
    torch.testing.assert_close(dot(a[0], b[0]), out[0], rtol=0, atol=float(bound[0]))
