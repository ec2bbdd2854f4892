"""Matrix functions by matrix multiplications: polar factors and inverse p-th roots.

Orthogonalization (the polar factor ``U V^T`` of ``G = U S V^T``) applies an odd
polynomial to the singular values again and again until they are all close to one:

    X_0 = G / ||G||_F                       (singular values now in (0, 1])
    for t in 1..T:  X <- a_t X + b_t (X X^T) X + c_t (X X^T)^2 X

* :func:`newton_schulz` uses fixed coefficients: the classic cubic
  (``a, b, c = 3/2, -1/2, 0``, quadratic convergence once close) or the quintic
  tuned for Muon (which trades exactness for a fast start: singular values end
  up in roughly [0.7, 1.2]).
* :func:`polar_express` uses, at each step, the odd quintic that is optimal in
  the worst case over the interval the singular values are known to lie in
  (Amsel, Persson, Musco, Gower 2025): fast at the start and exact at the end.

Cost per step: 3 matrix multiplies (2 for the cubic) on the short side:
``X X^T`` is ``m x m`` with ``m = min(rows, cols)`` (wide matrices are used as
they are, tall ones transposed). Everything is batched over leading dimensions
``(..., m, n)`` and runs in the input's dtype (float32, bfloat16, float16, float64).

Inverse p-th roots ``A^{-1/p}`` of symmetric positive definite matrices (the
preconditioners of Shampoo-like methods) by :func:`inverse_root`, with a coupled
Newton iteration (multiplies only) or an eigendecomposition.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = ["inverse_root", "newton_schulz", "polar_express", "polar_express_coefficients"]

Coefficients = tuple[float, float, float]

#: Named coefficient sets of :func:`newton_schulz`.
NEWTON_SCHULZ_COEFFICIENTS: dict[str, Coefficients] = {
    # x -> 1.5 x - 0.5 x^3: the Newton-Schulz iteration for the polar factor.
    "cubic": (1.5, -0.5, 0.0),
    # The quintic tuned by K. Jordan for Muon (2024): large slope at zero, no
    # convergence to exactly one.
    "quintic": (3.4445, -4.7750, 2.0315),
}


def _check_matrix_batch(G: Tensor, name: str) -> None:
    if not isinstance(G, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(G).__name__}")
    if G.ndim < 2:
        raise ValueError(f"{name} must have shape (..., m, n), got {tuple(G.shape)}")
    if not G.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {G.dtype}")


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def _odd_polynomial_iteration(G: Tensor, coefficients: Sequence[Coefficients]) -> Tensor:
    """Normalize ``G`` and apply ``X <- a X + (b A + c A^2) X`` with ``A = X X^T`` per step."""
    shape = G.shape
    transpose = shape[-2] > shape[-1]
    X = G.mT if transpose else G
    X = X.reshape(-1, X.shape[-2], X.shape[-1])
    peak, norm = _scaled_frobenius_norm(X)
    X = X / peak / norm
    # one matrix: 2-D kernels (cheaper than batched ones of batch size 1 on CPU)
    single = X.shape[0] == 1
    if single:
        X = X[0]
    mm, addmm = (torch.mm, torch.addmm) if single else (torch.bmm, torch.baddbmm)
    for a, b, c in coefficients:
        A = mm(X, X.mT)
        B = addmm(A, A, A, beta=b, alpha=c) if c != 0.0 else A * b
        X = addmm(X, B, X, beta=a)
    X = X.reshape(*shape[:-2], *X.shape[-2:])
    return X.mT if transpose else X


def _scaled_frobenius_norm(X: Tensor) -> tuple[Tensor, Tensor]:
    """``(peak, norm)`` per matrix ``(..., 1, 1)`` with ``||X||_F = peak * norm``, neither of
    which overflows or underflows (``peak`` is 1 for a zero matrix).

    ``peak = max |X_ij|``; the entries are divided by it before they are squared: the
    squares of a float16 matrix with entries of 300, or of a float32 one with entries
    of 1e-24, leave the range of the dtype (the normalized matrix came out all zeros,
    or NaN), and so can ``||X||_F`` itself. ``norm`` lies in ``[1, sqrt(m n)]``.
    """
    peak = X.abs().amax(dim=(-2, -1), keepdim=True)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return peak, torch.linalg.vector_norm(X / peak, dim=(-2, -1), keepdim=True)


def newton_schulz(
    G: Tensor,
    steps: int = 5,
    coefficients: Literal["cubic", "quintic"] | Coefficients | Sequence[Coefficients] = "quintic",
) -> Tensor:
    """Approximate the polar factor ``U V^T`` of each matrix in ``G`` by Newton-Schulz steps.

    Algorithm::

        X = G / ||G||_F                      (transposed first if rows > cols)
        repeat steps times:
            A = X X^T
            X = a X + (b A + c A A) X

    Args:
        G: matrices of shape ``(..., m, n)``, any floating dtype.
        steps: number of iterations.
        coefficients: ``"quintic"`` (Muon's tuned ``(3.4445, -4.7750, 2.0315)``:
            a rough orthogonalization in few steps), ``"cubic"`` (``(1.5, -0.5, 0)``:
            converges to the exact polar factor, slowly for small singular values),
            one ``(a, b, c)`` for every step, or a sequence of ``steps`` triples.

    Returns:
        A tensor shaped and typed like ``G``.

    Cost: ``3 * steps`` batched matrix multiplies (``2 * steps`` when ``c == 0``)
    with an inner ``min(m, n) x min(m, n)`` Gram matrix.

    References:
        N. Higham, *Functions of Matrices*, SIAM 2008, ch. 8 (Newton-Schulz);
        K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024.
    """
    _check_matrix_batch(G, "G")
    _check_steps(steps)
    if isinstance(coefficients, str):
        if coefficients not in NEWTON_SCHULZ_COEFFICIENTS:
            known = ", ".join(sorted(NEWTON_SCHULZ_COEFFICIENTS))
            raise ValueError(
                f"coefficients must be one of {known} or numbers, got {coefficients!r}"
            )
        per_step = [NEWTON_SCHULZ_COEFFICIENTS[coefficients]] * steps
    elif len(coefficients) == 3 and all(isinstance(v, (int, float)) for v in coefficients):
        per_step = [tuple(float(v) for v in coefficients)] * steps
    else:
        per_step = [tuple(float(v) for v in triple) for triple in coefficients]
        if len(per_step) != steps or any(len(t) != 3 for t in per_step):
            raise ValueError(
                f"coefficients must be {steps} triples (a, b, c) for steps={steps}, "
                f"got {coefficients!r}"
            )
    return _odd_polynomial_iteration(G, per_step)


# ---------------------------------------------------------------- Polar Express


def _remez_odd_quintic(lo: float, hi: float) -> tuple[Coefficients, float]:
    """Best odd quintic ``p(x) = a x + b x^3 + c x^5`` to 1 on ``[lo, hi]`` in the max norm.

    Remez exchange: the optimum equioscillates at four points ``lo < x1 < x2 < hi``
    (``x1, x2`` the critical points of ``p``) with ``p = 1 - E, 1 + E, 1 - E, 1 + E``.
    Solve the 4x4 linear system for ``(a, b, c, E)`` on the current points, move the
    interior points to the new critical points, repeat. Runs in float64.
    """
    points = (lo + hi) / 2 - (hi - lo) / 2 * np.cos(np.pi * np.arange(4) / 3)
    signs = np.array([1.0, -1.0, 1.0, -1.0])
    for _ in range(100):
        system = np.stack([points, points**3, points**5, signs], axis=1)
        a, b, c, err = np.linalg.solve(system, np.ones(4))
        # p'(x) = a + 3 b x^2 + 5 c x^4 = 0, a quadratic in y = x^2.
        y = np.sort(np.roots([5 * c, 3 * b, a]).real)
        moved = np.array([lo, math.sqrt(max(y[0], 0.0)), math.sqrt(max(y[1], 0.0)), hi])
        done = np.max(np.abs(moved - points)) <= 1e-15 * hi
        points = moved
        if done:
            break
    return (float(a), float(b), float(c)), float(abs(err))


def _image(coef: Coefficients, lo: float, hi: float) -> tuple[float, float]:
    """Range of ``p`` over ``[lo, hi]`` (endpoints and interior critical points)."""
    a, b, c = coef
    candidates = [lo, hi]
    for y in np.roots([5 * c, 3 * b, a]) if c != 0.0 else np.roots([3 * b, a]):
        if abs(y.imag) == 0.0 and y.real > 0.0 and lo < math.sqrt(y.real) < hi:
            candidates.append(math.sqrt(y.real))
    xs = np.array(candidates)
    values = a * xs + b * xs**3 + c * xs**5
    return float(values.min()), float(values.max())


@lru_cache(maxsize=64)
def polar_express_coefficients(
    steps: int, lower: float = 1e-3, safety: float = 1.01
) -> tuple[Coefficients, ...]:
    """Per-step coefficients of Polar Express, computed in float64 (cached).

    Greedy construction: the singular values of ``G / ||G||_F`` lie in
    ``[lo, hi] = [lower, 1]``. At each step take the odd quintic ``p`` that
    minimizes ``max |1 - p(x)|`` over ``[lo, hi]`` (Remez), then set
    ``[lo, hi]`` to the image of ``[lo, hi]`` under the polynomial actually applied.
    Composing these greedy choices is optimal over all compositions (Amsel et al.
    2025, Thm 4.1). For low precision every step but the last is applied as
    ``p(x / safety)``, so that a singular value pushed slightly above ``hi`` by
    round-off is not amplified further. Once the interval has shrunk to round-off
    size the limit polynomial ``(15/8, -5/4, 3/8)`` is used (the optimum as
    ``lo, hi -> 1``).
    """
    _check_steps(steps)
    if not 0.0 < lower < 1.0:
        raise ValueError(f"lower must be in (0, 1), got {lower!r}")
    if safety < 1.0:
        raise ValueError(f"safety must be >= 1, got {safety!r}")
    lo, hi = lower, 1.0
    out = []
    for t in range(steps):
        if hi - lo > 1e-7 * hi:
            coef, _ = _remez_odd_quintic(lo, hi)
        else:
            coef = (15 / 8, -5 / 4, 3 / 8)
        s = safety if t < steps - 1 else 1.0
        coef = (coef[0] / s, coef[1] / s**3, coef[2] / s**5)
        lo, hi = _image(coef, lo, hi)
        out.append(coef)
    return tuple(out)


def polar_express(G: Tensor, steps: int = 5, lower: float = 1e-3, safety: float = 1.01) -> Tensor:
    """Approximate the polar factor ``U V^T`` of each matrix in ``G`` by Polar Express.

    Algorithm::

        X = G / ||G||_F                      (transposed first if rows > cols)
        [lo, hi] = [lower, 1]
        for t in 1..steps:
            p_t = argmin over odd quintics p of max_{x in [lo, hi]} |1 - p(x)|
            X = p_t(X)                       (= a X + (b A + c A A) X, A = X X^T)
            [lo, hi] = p_t([lo, hi])

    The coefficients depend only on ``(steps, lower, safety)`` and are computed once
    in float64 by :func:`polar_express_coefficients`. Singular values of the
    normalized ``G`` below ``lower`` converge too, only more slowly.

    Args:
        G: matrices of shape ``(..., m, n)``, any floating dtype.
        steps: number of iterations (5-8 reaches float32/bfloat16 accuracy for
            ``lower=1e-3``).
        lower: assumed lower bound on ``sigma_min(G) / ||G||_F``.
        safety: slack factor for round-off (every step but the last uses
            ``p(x / safety)``); 1 disables it.

    Returns:
        A tensor shaped and typed like ``G``.

    Cost: ``3 * steps`` batched matrix multiplies, like quintic Newton-Schulz.

    References:
        N. Amsel, D. Persson, C. Musco, R. M. Gower, "The Polar Express: Optimal
        Matrix Sign Methods and Their Application to the Muon Algorithm", 2025,
        arXiv:2505.16932.
    """
    _check_matrix_batch(G, "G")
    return _odd_polynomial_iteration(G, polar_express_coefficients(steps, lower, safety))


# ------------------------------------------------------------ inverse p-th roots


def inverse_root(
    A: Tensor,
    p: int,
    method: Literal["newton", "eigh"] = "newton",
    eps: float = 0.0,
    max_iter: int = 100,
    tol: float | None = None,
) -> Tensor:
    """Inverse p-th root ``(A + eps I)^{-1/p}`` of each symmetric positive definite matrix.

    ``method="eigh"``: ``A + eps I = Q diag(w) Q^T``, return ``Q diag(w^{-1/p}) Q^T``
    (eigenvalues clamped below at the smallest positive normal number). One
    eigendecomposition, ``O(n^3)`` but sequential on most hardware.

    ``method="newton"``: the coupled Newton iteration (Guo & Higham 2006), with
    the scaling used by Shampoo (Anil et al. 2020) so that the spectrum of ``M_0``
    lies in ``(0, (p + 1) / 2]``::

        z = (p + 1) / (2 ||A||_F)
        X = z^{1/p} I,  M = z A
        repeat until max |M - I| <= tol:
            T = ((p + 1) I - M) / p
            X = X T,  M = T^p M

    ``X`` converges to ``A^{-1/p}`` and ``M = X^p A`` to ``I`` (quadratically once
    close; about ``log(cond(A)) / (p + 1)`` slow steps before that). Each step costs
    ``p + 1`` matrix multiplies (``T^p`` by repeated squaring); matrices of the batch
    that have converged are frozen, the loop stops when all have.

    Args:
        A: symmetric positive (semi)definite matrices ``(..., n, n)``; symmetry is
            assumed, not checked.
        p: the root, an integer >= 1.
        method: ``"newton"`` or ``"eigh"``.
        eps: ridge added to the diagonal first (>= 0); use it for singular ``A``.
        max_iter: Newton iterations at most.
        tol: Newton stopping threshold on ``max |M - I|``; default ``100 * eps`` of the
            working dtype (float64: ~2e-14, float32: ~1e-5). Half-precision ``A``
            (bfloat16, float16) is worked on in float32 and the root returned in its
            dtype. A batch that has not converged after ``max_iter`` steps warns
            (``RuntimeWarning``).

    Returns:
        ``(A + eps I)^{-1/p}``, shaped and typed like ``A``.

    References:
        C.-H. Guo, N. J. Higham, "A Schur-Newton method for the matrix p-th root and
        its inverse", SIAM J. Matrix Anal. Appl. 28(3), 2006.
        R. Anil et al., "Scalable Second Order Optimization for Deep Learning", 2020.
    """
    _check_matrix_batch(A, "A")
    if A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A must be square (..., n, n), got {tuple(A.shape)}")
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ValueError(f"p must be an integer >= 1, got {p!r}")
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if method not in ("newton", "eigh"):
        raise ValueError(f"method must be 'newton' or 'eigh', got {method!r}")
    if tol is not None and not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    dtype = A.dtype
    if torch.finfo(dtype).bits < 32:
        # Half precision cannot carry the iteration: 100 eps(bfloat16) = 0.78 would stop
        # Newton at once, and LAPACK has no half-precision eigh.
        A = A.float()
    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    A = A + eps * eye if eps > 0.0 else A
    if method == "eigh":
        w, Q = torch.linalg.eigh(A)
        w = w.clamp_min(torch.finfo(A.dtype).tiny).pow(-1.0 / p)
        return ((Q * w.unsqueeze(-2)) @ Q.mT).to(dtype)
    if tol is None:
        tol = 100 * torch.finfo(A.dtype).eps
    # z = (p + 1) / (2 ||A||_F) in two factors, z = w / peak, none of them out of range
    peak, norm = _scaled_frobenius_norm(A)
    w = (p + 1) / (2 * norm)
    X = (w.pow(1.0 / p) * peak.pow(-1.0 / p)) * eye.expand_as(A)
    M = w * (A / peak)
    for _ in range(max_iter):
        active = (M - eye).abs().amax(dim=(-2, -1), keepdim=True) > tol
        if not bool(active.any()):
            break
        T = ((p + 1) * eye - M) / p
        X = torch.where(active, X @ T, X)
        M = torch.where(active, torch.linalg.matrix_power(T, p) @ M, M)
    else:  # no break: the last step may still have converged every matrix
        if bool(((M - eye).abs().amax(dim=(-2, -1)) > tol).any()):
            warnings.warn(
                f"inverse_root: Newton did not reach max |M - I| <= {tol:.1e} in max_iter="
                f"{max_iter} iterations (A singular or very badly conditioned? add eps, or "
                "use method='eigh')",
                RuntimeWarning,
                stacklevel=2,
            )
    return X.to(dtype)
