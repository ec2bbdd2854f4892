"""Matrix-free estimates of a symmetric operator: diagonal, trace, extreme eigenvalues, spectrum.

Every function takes the operator as a :class:`~taylorch.linalg.LinearOperator`
(for example from :mod:`taylorch.curvature.operators`), a dense tensor, or a
callable ``v -> A v`` together with ``n`` (see
:func:`~taylorch.linalg.aslinearoperator`). Randomness comes from
``generator`` or ``seed`` (not both); with neither, torch's global generator.
Probes are multiplied in blocks through the operator's ``matmat``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from taylorch.linalg.krylov import lanczos, tridiagonal_eigh
from taylorch.linalg.operators import LinearOperator, aslinearoperator, is_symmetric

__all__ = [
    "SpectralDensity",
    "hutchinson_diag",
    "hutchinson_trace",
    "spectral_density",
    "top_eigenvalues",
]

OperatorLike = LinearOperator | Tensor | Callable[[Tensor], Tensor]


class SpectralDensity(NamedTuple):
    """A smoothed eigenvalue density and the quadrature it comes from.

    Attributes:
        grid: points ``t`` ``(num_grid,)``.
        density: ``phi(t)`` on the grid, ``(num_grid,)``; integrates to about 1.
        nodes: Gauss quadrature nodes (Ritz values), ``(num_probes, num_steps)``.
        weights: their weights, same shape, all summing to 1; ``sum(w f(nodes))``
            estimates ``tr f(A) / n``.
        sigma: width of the Gaussian kernel.
    """

    grid: Tensor
    density: Tensor
    nodes: Tensor
    weights: Tensor
    sigma: float


def _generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device
) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if seed is None:
        return generator
    return torch.Generator(device=device).manual_seed(seed)


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def rademacher(
    shape: tuple[int, ...],
    *,
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Independent +-1 entries with equal probability."""
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def hutchinson_diag(
    op: OperatorLike,
    num_probes: int = 100,
    *,
    n: int | None = None,
    block_size: int = 32,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    """Unbiased estimate of ``diag(A)`` from Rademacher probes (Bekas, Kokiopoulou & Saad 2007).

    ::

        for s = 1..S:  z_s ~ Rademacher(n);  d += z_s * (A z_s)
        return d / S

    ``E[z * (A z)]_i = sum_j A_ij E[z_i z_j] = A_ii``; entry ``i`` has
    variance ``sum_{j != i} A_ij^2 / S``, so a diagonal ``A`` is found
    exactly. Cost: ``S`` products, ``block_size`` at a time; memory
    ``block_size * n``.
    """
    a = aslinearoperator(op, n)
    _positive("num_probes", num_probes)
    _positive("block_size", block_size)
    gen = _generator(generator, seed, a.device)
    total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
    for start in range(0, num_probes, block_size):
        rows = min(block_size, num_probes - start)
        z = rademacher((rows, a.shape[0]), dtype=a.dtype, device=a.device, generator=gen)
        total += (z * a.rows(z)).sum(dim=0)
    return total / num_probes


def hutchinson_trace(
    op: OperatorLike,
    num_probes: int = 100,
    *,
    n: int | None = None,
    block_size: int = 32,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    """Hutchinson's unbiased trace estimate ``(1/S) sum_s z_s^T A z_s`` (Hutchinson 1990).

    With Rademacher probes the variance is ``2 (||A||_F^2 - sum_i A_ii^2) / S``,
    the smallest of any i.i.d. probe distribution. It is the sum of
    :func:`hutchinson_diag` over the same probes; same cost.
    """
    return hutchinson_diag(
        op, num_probes, n=n, block_size=block_size, generator=generator, seed=seed
    ).sum()


def _symmetric_operator(op: OperatorLike, n: int | None) -> LinearOperator:
    """``op`` as an operator; a dense matrix must be symmetric (Lanczos assumes it)."""
    a = aslinearoperator(op, n)  # checks the shape first
    if isinstance(op, Tensor) and not is_symmetric(op):
        asymmetry = float((op - op.mT).abs().amax())
        raise ValueError(
            f"the matrix must be symmetric (max |A - A^T| = {asymmetry:.3g}); Lanczos "
            "estimates of a nonsymmetric matrix are meaningless"
        )
    return a


def top_eigenvalues(
    op: OperatorLike,
    k: int = 1,
    *,
    n: int | None = None,
    which: Literal["largest", "smallest", "magnitude"] = "largest",
    num_steps: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` extreme eigenpairs of a symmetric operator by Lanczos with reorthogonalization.

    Runs ``num_steps`` Lanczos steps (default ``min(n, 2k + 40)``) from a
    random start and keeps the ``k`` Ritz pairs that are largest (algebraic),
    smallest, or largest in magnitude. Extreme eigenvalues converge first, at a
    rate set by their gap to the rest (Saad, *Numerical Methods for Large
    Eigenvalue Problems*, ch. 6), much faster than power iteration (as in
    PyHessian, Yao et al. 2020). The pairs are checked by ``k`` more products: a
    relative residual ``|A v - theta v| / max|theta|`` above ``sqrt(eps)`` (a
    clustered spectrum needs more steps) raises a ``RuntimeWarning`` that says so.
    Cost: ``num_steps + k`` products plus ``O(num_steps^2 n)``; memory
    ``num_steps * n``.

    Returns:
        ``(values, vectors)``: ``(k,)`` ordered as ``which`` asks (``"largest"``
        and ``"magnitude"`` descending, ``"smallest"`` ascending) and the unit
        Ritz vectors as columns ``(n, k)``.
    """
    a = _symmetric_operator(op, n)
    dim = a.shape[0]
    _positive("k", k)
    if k > dim:
        raise ValueError(f"k must be at most n = {dim}, got {k}")
    steps = min(dim, 2 * k + 40) if num_steps is None else num_steps
    _positive("num_steps", steps)
    if steps < k or steps > dim:
        raise ValueError(f"num_steps must be between k = {k} and n = {dim}, got {steps}")
    gen = _generator(generator, seed, a.device)
    v0 = torch.randn(dim, generator=gen, dtype=a.dtype, device=a.device)
    res = lanczos(a, steps, v0=v0, generator=gen)
    if which == "largest":
        order = torch.argsort(res.ritz_values, descending=True)
    elif which == "smallest":
        order = torch.argsort(res.ritz_values)
    elif which == "magnitude":
        order = torch.argsort(res.ritz_values.abs(), descending=True)
    else:
        raise ValueError(f"which must be 'largest', 'smallest' or 'magnitude', got {which!r}")
    keep = order[:k]
    values, vectors = res.ritz_values[keep], res.ritz_vectors[:, keep]
    # k more products check the pairs: a clustered spectrum converges slowly, and a
    # Ritz value that has not converged must not pass for an eigenvalue unannounced.
    residual = torch.linalg.vector_norm(a.matmat(vectors) - vectors * values, dim=0)
    scale = float(res.ritz_values.abs().max().clamp_min(torch.finfo(a.dtype).tiny))
    worst = float(residual.max() / scale)
    if worst > torch.finfo(a.dtype).eps ** 0.5:
        warnings.warn(
            f"top_eigenvalues: after {steps} Lanczos steps the Ritz pairs have relative "
            f"residuals |A v - theta v| / |theta|_max up to {worst:.2g}; pass a larger "
            "num_steps for converged eigenvalues",
            RuntimeWarning,
            stacklevel=2,
        )
    return values, vectors


def spectral_density(
    op: OperatorLike,
    *,
    n: int | None = None,
    num_probes: int = 10,
    num_steps: int | None = None,
    num_grid: int = 1000,
    sigma: float | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> SpectralDensity:
    """Eigenvalue density of a symmetric operator by stochastic Lanczos quadrature.

    SLQ (Ubaru, Chen & Saad, "Fast estimation of tr(f(A)) via stochastic
    Lanczos quadrature", SIMAX 2017; used for neural-network Hessians by
    Ghorbani, Krishnan & Xiao, "An investigation into neural net optimization
    via Hessian eigenvalue density", ICML 2019)::

        for each probe z_l ~ Rademacher(n):
            T_l = Lanczos(A, z_l / ||z_l||, m steps)
            theta_lj, s_lj = eigh(T_l);  tau_lj = (first entry of s_lj)^2
        phi(t) = (1/L) sum_l sum_j tau_lj N(t; theta_lj, sigma^2)

    ``sum_j tau_lj f(theta_lj)`` is the ``m``-point Gauss quadrature of
    ``q_l^T f(A) q_l``, exact for polynomials of degree ``< 2m``, whose mean
    over Rademacher probes is ``tr f(A) / n``; a Gaussian kernel smooths the
    point masses into a density.

    Args:
        num_probes: ``L``, independent probes (run as one batched Lanczos).
        num_steps: ``m`` Lanczos steps per probe, at most ``n`` (default ``min(n, 50)``).
        num_grid: points of the returned grid, which spans the nodes
            widened by ``5 sigma`` on each side.
        sigma: kernel width; default 1% of the span of the nodes (a span of at least
            ``max(sqrt(eps), 10 num_grid eps) max(1, |node|)``, for a spectrum of one
            repeated value).

    Cost: ``L m`` products (``L`` at a time) plus ``O(L m^2 n)`` for
    reorthogonalization; memory ``L m n``.

    Returns:
        :class:`SpectralDensity`.
    """
    a = _symmetric_operator(op, n)
    dim = a.shape[0]
    num_steps = min(dim, 50) if num_steps is None else num_steps
    _positive("num_probes", num_probes)
    _positive("num_steps", num_steps)
    _positive("num_grid", num_grid)
    if num_steps > dim:
        raise ValueError(f"num_steps must be at most n = {dim}, got {num_steps}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    gen = _generator(generator, seed, a.device)
    z = rademacher((num_probes, dim), dtype=a.dtype, device=a.device, generator=gen)
    res = lanczos(a, num_steps, v0=z, generator=gen)
    nodes, vectors = tridiagonal_eigh(res.alphas, res.betas)
    weights = vectors[:, 0, :] ** 2 / num_probes

    lo, hi = nodes.min().item(), nodes.max().item()
    if sigma is None:
        # A span at the rounding level (one repeated eigenvalue) would give a kernel,
        # and a grid, narrower than the dtype resolves: at least sqrt(eps) of the scale,
        # and enough for num_grid distinct points.
        eps = torch.finfo(a.dtype).eps
        resolvable = max(eps**0.5, 10 * num_grid * eps) * max(abs(lo), abs(hi), 1.0)
        sigma = 0.01 * max(hi - lo, resolvable)
    grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, num_grid, dtype=a.dtype, device=a.device)
    kernel = torch.exp(-0.5 * ((grid[:, None] - nodes.reshape(1, -1)) / sigma) ** 2)
    density = kernel @ weights.reshape(-1) / (sigma * (2 * torch.pi) ** 0.5)
    return SpectralDensity(grid, density, nodes, weights, float(sigma))
