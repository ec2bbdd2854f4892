"""Polar factors and inverse roots checked against SVD, eigh and scipy."""

import numpy as np
import pytest
import scipy.linalg
import torch

from taylorch.linalg import inverse_root, newton_schulz, polar_express
from taylorch.linalg.matfun import polar_express_coefficients


def spread_matrix(m, n, smin, dtype=torch.float64, seed=0, batch=()):
    """A matrix with singular values log-spaced in [smin, 1] and its exact polar factor."""
    g = torch.Generator().manual_seed(seed)
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(*batch, m, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(*batch, n, k, generator=g, dtype=torch.float64))
    s = torch.logspace(0, float(np.log10(smin)), k, dtype=torch.float64)
    G = (U * s) @ V.mT
    return G.to(dtype), U @ V.mT


def svd_polar(G):
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    return U @ Vh


def spectral_error(X, P):
    return torch.linalg.matrix_norm(X.double() - P, ord=2).max().item()


def test_polar_express_converges_to_svd_polar_factor_float64():
    G, P = spread_matrix(48, 24, 1e-2)
    assert torch.allclose(svd_polar(G), P, atol=1e-12)
    errors = [spectral_error(polar_express(G, steps), P) for steps in (5, 6, 7, 8)]
    print("polar express float64 errors, steps 5..8:", errors)
    assert errors[-1] < 1e-12
    assert errors == sorted(errors, reverse=True)


def test_cubic_newton_schulz_converges_to_svd_polar_factor():
    G, P = spread_matrix(20, 30, 0.1)
    assert spectral_error(newton_schulz(G, 25, "cubic"), P) < 1e-12


@pytest.mark.parametrize("steps", [4, 5, 6])
def test_polar_express_beats_newton_schulz_at_equal_steps(steps):
    # float32, singular values spread over three decades: the case Muon meets.
    G, P = spread_matrix(64, 32, 1e-3, dtype=torch.float32)
    pe = spectral_error(polar_express(G, steps), P)
    quintic = spectral_error(newton_schulz(G, steps, "quintic"), P)
    cubic = spectral_error(newton_schulz(G, steps, "cubic"), P)
    print(f"steps={steps}: polar express {pe:.3g}, NS quintic {quintic:.3g}, NS cubic {cubic:.3g}")
    assert pe < quintic < cubic


def test_polar_express_float32_accuracy_after_eight_steps():
    G, P = spread_matrix(64, 32, 1e-3, dtype=torch.float32)
    X = polar_express(G, 8)
    assert X.dtype == torch.float32
    assert spectral_error(X, P) < 1e-3
    sv = torch.linalg.svdvals(X.double())
    assert (sv - 1).abs().max() < 1e-5


def test_quintic_newton_schulz_singular_value_band():
    # Muon's tuned quintic does not converge to one; its documented band is ~[0.7, 1.2].
    G, _ = spread_matrix(64, 64, 1e-2, dtype=torch.float32)
    sv = torch.linalg.svdvals(newton_schulz(G, 5).double())
    assert 0.6 < sv.min() and sv.max() < 1.25


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_runs_in_input_dtype(dtype):
    G, _ = spread_matrix(32, 48, 0.1, dtype=dtype)
    P = svd_polar(G)  # polar factor of the rounded input
    for X in (polar_express(G, 6), newton_schulz(G, 10, "cubic")):
        assert X.dtype == dtype and X.shape == G.shape
        assert torch.isfinite(X).all()
        assert spectral_error(X, P) < 0.1


@pytest.mark.parametrize("method", [polar_express, newton_schulz])
def test_batched_equals_loop_and_tall_equals_transposed_wide(method):
    G, _ = spread_matrix(12, 7, 0.05, batch=(2, 3))
    X = method(G, 5)
    loop = torch.stack([torch.stack([method(G[i, j], 5) for j in range(3)]) for i in range(2)])
    assert torch.allclose(X, loop, atol=1e-12)
    assert torch.allclose(method(G.mT, 5), X.mT, atol=1e-12)


def test_greedy_composition_maps_interval_into_band():
    # Apply the composed scalar polynomials to a dense grid of [lower, 1] in float64.
    x = np.linspace(1e-3, 1.0, 200001)
    bands = []
    for steps in (1, 3, 5, 7):
        y = x.copy()
        for a, b, c in polar_express_coefficients(steps, 1e-3):
            y = a * y + b * y**3 + c * y**5
        bands.append(np.abs(y - 1).max())
    assert bands == sorted(bands, reverse=True)
    assert bands[0] > 0.9  # one quintic cannot do much over three decades
    assert bands[-1] < 1e-6


def test_first_polar_express_polynomial_beats_muon_quintic_and_cubic_on_interval():
    # Minimax optimality of step 1 (safety off): its worst error on [l, 1] is the smallest.
    x = np.linspace(0.1, 1.0, 100001)

    def worst(c):
        return np.abs(1 - (c[0] * x + c[1] * x**3 + c[2] * x**5)).max()

    (best,) = polar_express_coefficients(1, 0.1, 1.0)
    assert worst(best) < worst((3.4445, -4.7750, 2.0315))
    assert worst(best) < worst((1.5, -0.5, 0.0))
    # equioscillation: error at x = l equals the max error
    assert abs(worst(best) - abs(1 - sum(c * 0.1**k for c, k in zip(best, (1, 3, 5))))) < 1e-9


def random_spd(n, batch=(), cond=100.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(*batch, n, n, generator=g, dtype=torch.float64))
    w = torch.logspace(0, -float(np.log10(cond)), n, dtype=torch.float64)
    return ((Q * w) @ Q.mT).to(dtype)


@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("method", ["newton", "eigh"])
def test_inverse_root_matches_scipy(p, method):
    A = random_spd(7, batch=(3,), cond=1e3)
    X = inverse_root(A, p, method=method)
    ref = np.stack([np.real(scipy.linalg.fractional_matrix_power(a, -1.0 / p)) for a in A.numpy()])
    err = np.abs(X.numpy() - ref).max() / np.abs(ref).max()
    assert err < 1e-11


def test_inverse_root_float32_newton_and_ridge():
    A = random_spd(16, batch=(2,), cond=1e3)
    eps = 1e-2
    ref = inverse_root(A, 4, method="eigh", eps=eps)
    w, Q = torch.linalg.eigh(A + eps * torch.eye(16, dtype=A.dtype))
    assert torch.allclose(ref, (Q * w.pow(-0.25).unsqueeze(-2)) @ Q.mT, atol=1e-12)
    X = inverse_root(A.float(), 4, method="newton", eps=eps)
    assert X.dtype == torch.float32
    assert ((X.double() - ref).abs().max() / ref.abs().max()).item() < 1e-4


def test_inverse_root_singular_matrix_with_ridge_is_finite():
    v = torch.randn(5, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    A = v @ v.T  # rank one
    for method in ("newton", "eigh"):
        X = inverse_root(A, 2, method=method, eps=1e-3)
        M = X @ X @ (A + 1e-3 * torch.eye(5, dtype=A.dtype))
        assert torch.allclose(M, torch.eye(5, dtype=A.dtype), atol=1e-8)


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(torch.float16, 3e4), (torch.float32, 1e-24), (torch.float32, 1e20), (torch.bfloat16, 1e-24)],
)
@pytest.mark.parametrize("method", ["newton_schulz", "polar_express"])
def test_polar_factor_of_finite_matrices_at_the_edges_of_the_range(dtype, scale, method):
    # ||G||_F of these overflows (or its square underflows) in their dtype; the polar
    # factor does not depend on the scale, so it must match that of the unit-scale matrix.
    G, P = spread_matrix(24, 12, 0.1)
    orthogonalize = newton_schulz if method == "newton_schulz" else polar_express
    small = orthogonalize((scale * G).to(dtype), 8).double()
    unit = orthogonalize(G.to(dtype), 8).double()
    assert torch.isfinite(small).all()
    assert spectral_error(small, unit[None]) <= 4 * torch.finfo(dtype).eps * 12
    if method == "polar_express":
        assert spectral_error(small, P[None]) < 0.05


@pytest.mark.parametrize("scale", [1e-30, 1e25])
def test_inverse_root_float32_far_from_unit_scale(scale):
    # The squared entries leave float32's range; A^{-1/2} scales as scale^{-1/2}.
    A = random_spd(10, cond=10.0)
    ref = inverse_root(A, 2, method="eigh") / scale**0.5
    X = inverse_root((scale * A).float(), 2)
    assert torch.isfinite(X).all()
    assert ((X.double() - ref).abs().max() / ref.abs().max()).item() < 1e-5


@pytest.mark.parametrize("method", ["newton", "eigh"])
def test_inverse_root_half_precision_is_computed_in_float32(method):
    A = random_spd(10, cond=10.0)
    ref = inverse_root(A, 2, method="eigh")
    X = inverse_root(A.bfloat16(), 2, method=method)
    assert X.dtype == torch.bfloat16
    # bfloat16 rounding of A and of the result: a few units of 2^-8
    assert ((X.double() - ref).abs().max() / ref.abs().max()).item() < 3e-2


def test_inverse_root_warns_when_newton_runs_out_of_iterations():
    A = random_spd(10, cond=1e6)
    with pytest.warns(RuntimeWarning, match="max_iter=3"):
        inverse_root(A, 2, max_iter=3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: newton_schulz(torch.ones(3), 5), "G must have shape"),
        (lambda: newton_schulz(torch.ones(3, 3, dtype=torch.int64), 5), "floating"),
        (lambda: newton_schulz(torch.ones(3, 3), 0), "steps"),
        (lambda: newton_schulz(torch.ones(3, 3), 2, "septic"), "coefficients"),
        (lambda: newton_schulz(torch.ones(3, 3), 2, [(1.5, -0.5, 0.0)]), "coefficients"),
        (lambda: polar_express(torch.ones(3, 3), 5, lower=1.5), "lower"),
        (lambda: polar_express(torch.ones(3, 3), 5, safety=0.5), "safety"),
        (lambda: inverse_root(torch.eye(3)[:2], 2), "square"),
        (lambda: inverse_root(torch.eye(3), 0), "p must"),
        (lambda: inverse_root(torch.eye(3), 2, method="qr"), "method"),
        (lambda: inverse_root(torch.eye(3), 2, eps=-1.0), "eps"),
        (lambda: inverse_root(torch.eye(3), 2, tol=0.0), "tol"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
