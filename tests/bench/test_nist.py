"""The NIST StRD loader: every model reproduces its certified fit."""

import math

import pytest
import torch

from taylorch.bench.problems.nist import NIST_NAMES, load_nist, nist_problems


def test_all_27_datasets_are_known():
    assert len(NIST_NAMES) == 27
    assert len(nist_problems()) == 54


@pytest.mark.parametrize("name", NIST_NAMES)
def test_certified_rss_at_certified_parameters(name):
    p = load_nist(name)
    rss = p.rss(p.certified_params).item()
    # Parameters are printed to 11 digits; Lanczos1's certified RSS (1e-25) lies below what
    # 11-digit parameters can reproduce, so the floor is relative to the data's own scale.
    floor = 1e-16 * (p.y**2).sum().item()
    assert abs(rss - p.certified_rss) <= 1e-8 * p.certified_rss + floor
    # The certified residual standard deviation is sqrt(RSS / (N - p)).
    assert math.isclose(math.sqrt(p.certified_rss / p.dof), p.certified_residual_sd, rel_tol=1e-8)


@pytest.mark.parametrize("name", NIST_NAMES)
def test_certified_parameters_are_stationary(name):
    """The certified point is a minimum: the RSS gradient is tiny next to its size at Start 2."""
    p = load_nist(name)
    b = p.certified_params.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(p.rss(b), b)
    b2 = p.start2.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(p.rss(b2), b2)
    scaled = (g * p.certified_params).abs().max()
    scaled2 = (g2 * p.certified_params).abs().max()
    assert scaled <= 1e-5 * scaled2


def test_parsed_values_match_the_file_text():
    p = load_nist("Misra1a")
    torch.testing.assert_close(p.start1, torch.tensor([500.0, 1e-4], dtype=torch.float64))
    torch.testing.assert_close(p.start2, torch.tensor([250.0, 5e-4], dtype=torch.float64))
    assert p.certified_params[0].item() == 2.3894212918e02
    assert p.certified_std[1].item() == 7.2668688436e-06
    assert (p.x.shape, p.dof, p.difficulty) == ((14,), 12, "lower")
    assert p.x[0].item() == 77.6 and p.y[-1].item() == 81.78
    nelson = load_nist("Nelson")
    assert nelson.x.shape == (128, 2)
    assert math.isclose(nelson.y[0].item(), math.log(15.0))


def test_batched_parameters_and_dtype():
    p = load_nist("Gauss1")
    b = torch.stack([p.certified_params, p.start1, p.start2])
    r = p.residual(b)
    assert r.shape == (3, 250)
    torch.testing.assert_close(r[1], p.residual(p.start1))
    assert p.residual(p.start1.float()).dtype == torch.float32


def test_log_relative_error():
    p = load_nist("Misra1a")
    b = p.certified_params * (1 + 1e-4)
    torch.testing.assert_close(p.log_relative_error(b), torch.full((2,), 4.0, dtype=torch.float64))
    assert (p.log_relative_error(p.certified_params) == 11).all()


def test_bad_input():
    with pytest.raises(ValueError, match="name must be one of"):
        load_nist("Rosenbrock")
    with pytest.raises(ValueError, match="start"):
        load_nist("Misra1a").as_problem(3)
