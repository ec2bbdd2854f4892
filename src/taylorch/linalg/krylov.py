"""Krylov methods for symmetric systems and eigenvalues: CG, MINRES, Lanczos.

All three are written once for a batch. A right-hand side (or start vector)
of shape ``(n,)`` is a batch of one; one of shape ``(B, n)`` holds ``B``
independent problems that run together, each with its own scalars and its own
stopping mask. The operator ``A`` may be

* a :class:`~taylorch.linalg.LinearOperator` of shape ``(n, n)`` (one matrix
  for every row),
* a dense tensor, ``(n, n)`` for every row or ``(B, n, n)`` one per row,
* a callable mapping ``(n,) -> (n,)``, or in batched mode ``(B, n) -> (B, n)``
  (row ``i`` of the output is ``A_i`` times row ``i`` of the input).

Every product is applied to the whole batch at once (finished rows are
carried along unchanged), so the cost per iteration is one batched product
and a few ``O(B n)`` vector operations. The loop stops when every row is done;
deciding that takes one host synchronization per iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from taylorch.linalg.operators import LinearOperator, is_symmetric

__all__ = [
    "CGResult",
    "KrylovResult",
    "LanczosResult",
    "cg",
    "lanczos",
    "minres",
    "tridiagonal_eigh",
]

Operator = LinearOperator | Tensor | Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class KrylovResult:
    """Outcome of a Krylov solve; every field has the batch shape of ``b``.

    Attributes:
        x: the final iterate, shape of ``b``.
        n_iter: products with ``A`` spent on each system (int64).
        converged: the residual test passed.
        residual_norm: the residual norm the method tracks by recurrence
            (``||r||_2`` for CG; ``sqrt(r^T M r)`` for MINRES, which is
            ``||r||_2`` without a preconditioner).
    """

    x: Tensor
    n_iter: Tensor
    converged: Tensor
    residual_norm: Tensor


@dataclass(frozen=True)
class CGResult(KrylovResult):
    """:class:`KrylovResult` plus what a trust-region method needs from CG.

    Attributes:
        negative_curvature: CG met a search direction ``p`` with
            ``p^T A p <= 0`` and stopped that system there (only with
            ``stop_on_negative_curvature=True``).
        direction: that ``p`` (zeros for the other systems). ``x`` is then the
            iterate reached before ``p``, so Steihaug's method continues from
            ``x`` along ``direction`` to the trust-region boundary.
    """

    negative_curvature: Tensor
    direction: Tensor


class LanczosResult(NamedTuple):
    """Lanczos tridiagonalization ``Q^T A Q = T`` and its Ritz pairs.

    With ``k`` steps, for each start vector: ``alphas`` ``(k,)`` is the
    diagonal of ``T``, ``betas`` ``(k-1,)`` its off-diagonal, ``ritz_values``
    ``(k,)`` the eigenvalues of ``T`` in ascending order, ``ritz_vectors``
    ``(n, k)`` the matching approximate eigenvectors ``Q S`` (columns), and
    ``basis`` ``(n, k)`` the Lanczos vectors ``Q`` (columns). A batch of start
    vectors adds a leading batch dimension to each.
    """

    alphas: Tensor
    betas: Tensor
    ritz_values: Tensor
    ritz_vectors: Tensor
    basis: Tensor


# ----------------------------------------------------------------------------- input handling


def _rhs(b: Tensor, name: str) -> tuple[Tensor, bool]:
    """Validate a right-hand side; return it as ``(B, n)`` and whether it was batched."""
    if not isinstance(b, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(b).__name__}")
    if not b.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {b.dtype}")
    if b.ndim not in (1, 2) or b.shape[-1] == 0 or b.numel() == 0:
        raise ValueError(f"{name} must have shape (n,) or (B, n) with n >= 1, got {tuple(b.shape)}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    return (b if b.ndim == 2 else b[None]), b.ndim == 2


def _rowwise(a: Operator, name: str, like: Tensor, batched: bool) -> Callable[[Tensor], Tensor]:
    """Return ``X -> A X`` acting on the rows of a ``(B, n)`` tensor shaped like ``like``.

    A dense ``a`` is checked to be finite and symmetric (every method here
    needs a symmetric operator); a callable's output shape is checked on
    every call (metadata only, no synchronization).
    """
    bsz, n = like.shape
    if isinstance(a, LinearOperator):
        if a.shape != (n, n):
            raise ValueError(f"{name} must have shape ({n}, {n}) to match, got {a.shape}")
        if a.dtype != like.dtype:
            raise ValueError(f"{name} has dtype {a.dtype} but the vectors have {like.dtype}")
        return a.rows
    if isinstance(a, Tensor):
        shapes = [(n, n), (bsz, n, n)] if batched else [(n, n)]
        if tuple(a.shape) not in shapes:
            raise ValueError(
                f"{name} must have shape {' or '.join(map(str, shapes))} to match, "
                f"got {tuple(a.shape)}"
            )
        if a.dtype != like.dtype:
            raise ValueError(f"{name} has dtype {a.dtype} but the vectors have {like.dtype}")
        if not bool(torch.isfinite(a).all()):
            raise ValueError(f"{name} must be finite; it contains NaN or inf")
        if not is_symmetric(a):
            raise ValueError(f"{name} must be symmetric (A == A^T up to rounding)")
        if a.ndim == 2:
            return lambda x: x @ a.mT
        return lambda x: (a @ x[..., None])[..., 0]
    if callable(a):

        def apply(x: Tensor) -> Tensor:
            out = a(x) if batched else a(x[0])
            want = x.shape if batched else x.shape[1:]
            if not isinstance(out, Tensor) or out.shape != want:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(f"{name} must map shape {tuple(want)} to {tuple(want)}, got {got}")
            return out if batched else out[None]

        return apply
    raise TypeError(
        f"{name} must be a LinearOperator, a tensor or a callable, got {type(a).__name__}"
    )


def _start(x0: Tensor | None, b2: Tensor, batched: bool) -> Tensor:
    if x0 is None:
        return torch.zeros_like(b2)
    if not isinstance(x0, Tensor):
        raise TypeError(f"x0 must be a torch.Tensor or None, got {type(x0).__name__}")
    want = b2.shape if batched else b2.shape[1:]
    if x0.shape != want:
        raise ValueError(f"x0 must have the shape of b {tuple(want)}, got {tuple(x0.shape)}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("x0 must be finite; it contains NaN or inf")
    return x0.to(b2.dtype).reshape(b2.shape).clone()


def _iterations(max_iter: int | None, n: int) -> int:
    if max_iter is None:
        return 10 * n
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative int or None, got {max_iter!r}")
    return max_iter


def _threshold(rtol: float, atol: float, scale: Tensor) -> Tensor:
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, int | float) or not tol >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {tol!r}")
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol must not both be 0")
    return torch.clamp(rtol * scale, min=atol)


def _dot(u: Tensor, v: Tensor) -> Tensor:
    return (u * v).sum(dim=-1)


def _unbatch(result_type: type, batched: bool, **fields: Tensor):
    return result_type(**{k: (v if batched else v[0]) for k, v in fields.items()})


def _raise_indices(message: str, mask: Tensor) -> None:
    rows = mask.nonzero().flatten().tolist()
    raise ValueError(f"{message} (system(s) {rows})")


# ----------------------------------------------------------------------------- CG


def cg(
    A: Operator,
    b: Tensor,
    *,
    M: Operator | None = None,
    x0: Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    max_iter: int | None = None,
    stop_on_negative_curvature: bool = False,
) -> CGResult:
    """Solve ``A x = b`` for symmetric positive definite ``A`` by preconditioned CG.

    Algorithm (Hestenes & Stiefel, 1952; preconditioned form as in Nocedal &
    Wright, *Numerical Optimization*, Alg. 5.3), for every system at once::

        r = b - A x;  z = M r;  p = z
        repeat:
            if p^T A p <= 0: stop (negative curvature; return p)
            alpha = r^T z / p^T A p
            x += alpha p;  r -= alpha A p
            if ||r|| <= max(rtol ||b||, atol): stop (converged)
            z = M r;  beta = r_new^T z_new / r^T z;  p = z + beta p

    Cost per iteration: one product with ``A``, one with ``M`` and ``O(B n)``
    work; memory five vectors per system. In exact arithmetic CG converges in
    at most ``n`` iterations.

    Args:
        A: the symmetric operator (see the module docstring for the forms).
        b: right-hand side, ``(n,)`` or ``(B, n)`` for ``B`` independent systems.
        M: symmetric positive definite preconditioner approximating ``A^{-1}``
            (same forms as ``A``); ``None`` for none.
        x0: start, shape of ``b`` (default zeros).
        rtol, atol: stop system ``i`` when ``||r_i|| <= max(rtol ||b_i||, atol)``.
        max_iter: iteration limit (default ``10 n``, as scipy).
        stop_on_negative_curvature: on ``p^T A p <= 0`` stop that system and
            return ``p`` in ``direction`` (for Steihaug's trust-region CG and
            Newton-CG). Without it such an ``A`` raises ``ValueError``.

    Returns:
        :class:`CGResult`; its fields are scalars for an unbatched ``b``.

    Raises:
        ValueError: bad shapes or tolerances, non-finite ``b``/``x0``, a
            non-symmetric dense ``A``, ``p^T A p <= 0`` (``A`` not positive
            definite) without ``stop_on_negative_curvature``, non-finite
            products with ``A``, or ``r^T M r <= 0`` (``M`` not positive definite).
    """
    b2, batched = _rhs(b, "b")
    n = b2.shape[1]
    matvec = _rowwise(A, "A", b2, batched)
    precond = _rowwise(M, "M", b2, batched) if M is not None else None
    max_iter = _iterations(max_iter, n)
    threshold = _threshold(rtol, atol, b2.norm(dim=1))
    x = _start(x0, b2, batched)

    r = b2 - matvec(x) if x0 is not None else b2.clone()
    z = precond(r) if precond is not None else r
    p = z.clone()
    rz = _dot(r, z)
    rnorm = r.norm(dim=1)
    converged = rnorm <= threshold
    active = ~converged
    negative = torch.zeros_like(active)
    direction = torch.zeros_like(b2)
    n_iter = torch.zeros(b2.shape[0], dtype=torch.int64, device=b2.device)
    nonfinite = ~torch.isfinite(r).all(dim=1)
    bad_precond = active & ~(rz > 0)

    for it in range(max_iter + 1):
        go, neg, nan, bad_m = torch.stack(
            [active.any(), negative.any(), nonfinite.any(), bad_precond.any()]
        ).tolist()
        if nan:
            _raise_indices("A returned non-finite values", nonfinite)
        if neg and not stop_on_negative_curvature:
            _raise_indices(
                "A must be positive definite: CG met p^T A p <= 0; use minres for symmetric "
                "indefinite A, or stop_on_negative_curvature=True to get the direction",
                negative,
            )
        if bad_m:
            _raise_indices("M must be positive definite: CG met r^T M r <= 0", bad_precond)
        if not go or it == max_iter:
            break
        ap = matvec(p)
        pap = _dot(p, ap)
        nonfinite = active & ~torch.isfinite(pap)
        curv = active & ~(pap > 0) & ~nonfinite
        negative = negative | curv
        direction = torch.where(curv[:, None], p, direction)
        n_iter = n_iter + active.long()
        step = active & ~curv & ~nonfinite
        alpha = torch.where(step, rz / torch.where(step, pap, 1), 0)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * ap
        rnorm = torch.where(step, r.norm(dim=1), rnorm)
        converged = converged | (step & (rnorm <= threshold))
        active = step & ~converged
        z = precond(r) if precond is not None else r
        rz_new = _dot(r, z)
        bad_precond = active & ~(rz_new > 0)
        beta = torch.where(active, rz_new / torch.where(active, rz, 1), 0)
        p = torch.where(active[:, None], z + beta[:, None] * p, p)
        rz = torch.where(active, rz_new, rz)

    return _unbatch(
        CGResult,
        batched,
        x=x,
        n_iter=n_iter,
        converged=converged,
        residual_norm=rnorm,
        negative_curvature=negative,
        direction=direction,
    )


# ----------------------------------------------------------------------------- MINRES


def minres(
    A: Operator,
    b: Tensor,
    *,
    M: Operator | None = None,
    x0: Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    max_iter: int | None = None,
) -> KrylovResult:
    """Solve ``A x = b`` for symmetric, possibly indefinite ``A`` by MINRES.

    MINRES (Paige & Saunders, "Solution of sparse indefinite systems of linear
    equations", SIAM J. Numer. Anal. 1975) minimizes ``||b - A x||`` over the
    Krylov space: Lanczos builds ``A V_k = V_{k+1} T_k`` with ``T_k``
    tridiagonal, Givens rotations keep a running QR factorization of ``T_k``,
    and ``x`` is updated by a three-term recurrence of search directions, so
    nothing but the last few vectors is stored::

        beta_1 v_1 = M (b - A x0)                  (M-norm Lanczos start)
        repeat:
            Lanczos step:  alpha_k, beta_{k+1}, v_{k+1}
            apply the last two rotations to column k of T_k, make a new one
            (c_k, s_k) that zeroes beta_{k+1}
            w_k = (v_k - eps_k w_{k-2} - delta_k w_{k-1}) / gamma_k
            x += c_k phibar_{k-1} w_k;  phibar_k = s_k phibar_{k-1}
            if phibar_k <= max(rtol ||b||_M, atol): stop

    ``phibar_k`` is the residual norm ``sqrt(r^T M r)`` (``||r||`` without a
    preconditioner), updated by recurrence. On a singular system that ``b`` is
    not consistent with, Lanczos exhausts the Krylov space with a singular
    ``T_k`` (``gamma_k = 0``): MINRES stops there, not converged, with the least
    residual norm reached and ``x`` of the last step. Cost per iteration: one product
    with ``A``, one with ``M``, ``O(B n)`` work; memory eight vectors per system.

    Args:
        A: the symmetric operator (forms as in the module docstring).
        b: right-hand side, ``(n,)`` or ``(B, n)``.
        M: symmetric positive definite preconditioner approximating ``A^{-1}``
            in magnitude; ``None`` for none.
        x0, rtol, atol, max_iter: as in :func:`cg`, with norms in the ``M`` norm.

    Returns:
        :class:`KrylovResult`; scalars per field for an unbatched ``b``.
    """
    b2, batched = _rhs(b, "b")
    n = b2.shape[1]
    matvec = _rowwise(A, "A", b2, batched)
    precond = _rowwise(M, "M", b2, batched) if M is not None else (lambda v: v)
    max_iter = _iterations(max_iter, n)
    x = _start(x0, b2, batched)
    eps = torch.finfo(b2.dtype).eps

    r1 = b2 - matvec(x) if x0 is not None else b2.clone()
    y = precond(r1)
    beta_sq = _dot(r1, y)
    bad_precond = ~(beta_sq >= 0)
    beta1 = beta_sq.clamp_min(0).sqrt()
    scale = beta1 if x0 is None else _dot(b2, precond(b2)).clamp_min(0).sqrt()
    threshold = _threshold(rtol, atol, scale)

    zeros = torch.zeros_like(beta1)
    beta, old_beta, phibar = beta1, zeros, beta1
    dbar, epsln, cs, sn = zeros, zeros, -torch.ones_like(beta1), zeros
    r2 = r1
    w = w2 = torch.zeros_like(b2)
    t_norm = zeros  # running estimate of ||T_k||, the scale of rounding in gamma
    converged = phibar <= threshold
    active = ~converged
    nonfinite = ~torch.isfinite(beta1)
    n_iter = torch.zeros(b2.shape[0], dtype=torch.int64, device=b2.device)

    for it in range(max_iter + 1):
        go, nan, bad_m = torch.stack([active.any(), nonfinite.any(), bad_precond.any()]).tolist()
        if nan:
            _raise_indices("A returned non-finite values", nonfinite)
        if bad_m:
            _raise_indices("M must be positive definite: MINRES met r^T M r < 0", bad_precond)
        if not go or it == max_iter:
            break
        a = active[:, None]
        # Lanczos step (inactive rows compute garbage that is discarded below).
        v = y * torch.where(active, 1 / torch.where(active, beta, 1), 0)[:, None]
        y_new = matvec(v)
        y_new = (
            y_new
            - torch.where(old_beta > 0, beta / torch.where(old_beta > 0, old_beta, 1), 0)[:, None]
            * r1
        )
        alpha = _dot(v, y_new)
        y_new = y_new - torch.where(active, alpha / torch.where(active, beta, 1), 0)[:, None] * r2
        r1, r2 = torch.where(a, r2, r1), torch.where(a, y_new, r2)
        y = torch.where(a, precond(r2), y)
        beta_sq = _dot(r2, y)
        bad_precond = active & ~(beta_sq >= 0)
        nonfinite = active & ~torch.isfinite(alpha)
        beta_new = beta_sq.clamp_min(0).sqrt()
        # Apply the previous rotation, then make the next one.
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        eps_new = sn * beta_new
        dbar_new = -cs * beta_new
        gamma = torch.hypot(gbar, beta_new)
        t_norm = torch.maximum(t_norm, torch.sqrt(alpha * alpha + beta * beta + beta_sq))
        # gamma = 0 (to rounding) needs beta_{k+1} = 0: the Krylov space is exhausted and
        # T_k singular, so b - A x0 has a part that A cannot reach (a singular,
        # inconsistent system). The last residual is then the least one: stop there.
        singular = active & (gamma <= eps * t_norm)
        gamma = torch.where(singular, 1.0, gamma)
        cs_new, sn_new = gbar / gamma, beta_new / gamma
        phi = torch.where(singular, 0.0, cs_new * phibar)
        w_new = (v - epsln[:, None] * w2 - delta[:, None] * w) / gamma[:, None]
        x = torch.where(a, x + phi[:, None] * w_new, x)
        w2, w = torch.where(a, w, w2), torch.where(a, w_new, w)
        old_beta = torch.where(active, beta, old_beta)
        beta = torch.where(active, beta_new, beta)
        epsln = torch.where(active, eps_new, epsln)
        dbar = torch.where(active, dbar_new, dbar)
        cs = torch.where(active, cs_new, cs)
        sn = torch.where(active, sn_new, sn)
        phibar = torch.where(active & ~singular, sn_new * phibar, phibar)
        n_iter = n_iter + active.long()
        converged = converged | (active & (phibar <= threshold))
        active = active & ~converged & ~nonfinite & ~singular

    return _unbatch(
        KrylovResult, batched, x=x, n_iter=n_iter, converged=converged, residual_norm=phibar
    )


# ----------------------------------------------------------------------------- Lanczos


def tridiagonal_eigh(alphas: Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
    """Eigen-decomposition of the symmetric tridiagonal matrix with diagonal
    ``alphas`` ``(..., k)`` and off-diagonal ``betas`` ``(..., k-1)``.

    Returns ``(theta, S)``, ascending eigenvalues and eigenvectors as columns,
    by ``torch.linalg.eigh`` on the dense ``k x k`` matrix (``O(k^3)``).
    """
    t = torch.diag_embed(alphas) + torch.diag_embed(betas, 1) + torch.diag_embed(betas, -1)
    return torch.linalg.eigh(t)


def lanczos(
    A: Operator,
    k: int,
    *,
    v0: Tensor | None = None,
    reorthogonalize: bool = True,
    generator: torch.Generator | None = None,
) -> LanczosResult:
    """Run ``k`` steps of the symmetric Lanczos process and return Ritz pairs.

    Lanczos (1950) builds an orthonormal basis ``Q`` of the Krylov space of
    ``v0`` in which ``A`` is tridiagonal::

        q_1 = v0 / ||v0||;  beta_0 = 0
        for j = 1..k:
            w = A q_j;  alpha_j = q_j^T w
            w -= alpha_j q_j + beta_{j-1} q_{j-1}
            if reorthogonalize: w -= Q_j (Q_j^T w), twice
            beta_j = ||w||;  q_{j+1} = w / beta_j

    Full reorthogonalization ("twice is enough", Parlett) keeps ``Q``
    orthonormal to rounding at ``O(j n)`` per step; without it Ritz values
    converge but may repeat ("ghost" copies). If ``beta_j`` vanishes (the
    Krylov space is invariant) the process restarts with a random vector
    orthogonal to ``Q`` and records ``beta_j = 0``, so ``T`` splits into blocks
    and stays exact. The eigenpairs ``(theta, S)`` of ``T`` give Ritz values
    ``theta`` and Ritz vectors ``Q S``; the extreme ones converge first.

    Cost: ``k`` products with ``A`` plus ``O(k^2 n)`` for reorthogonalization;
    memory ``k n`` per start vector (``Q`` is kept for the Ritz vectors).

    Args:
        A: the symmetric operator (forms as in the module docstring).
        k: number of steps, ``1 <= k <= n``.
        v0: start vector ``(n,)``, or ``(B, n)`` to run ``B`` processes at
            once (for example one per probe in stochastic Lanczos
            quadrature). Default: a standard normal vector from ``generator``;
            required when ``A`` is a callable.
        reorthogonalize: full reorthogonalization against all previous vectors.
        generator: random source for the default ``v0`` and for restarts.

    Returns:
        :class:`LanczosResult`.
    """
    if v0 is None:
        if not isinstance(A, LinearOperator | Tensor) or A.shape[-1] != A.shape[-2]:
            raise ValueError("v0 is required unless A is a square LinearOperator or tensor")
        v0 = torch.randn(A.shape[:-1], generator=generator, dtype=A.dtype, device=A.device)
    q, batched = _rhs(v0, "v0")
    bsz, n = q.shape
    matvec = _rowwise(A, "A", q, batched)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int with 1 <= k <= n = {n}, got {k!r}")
    norm = q.norm(dim=1, keepdim=True)
    if not bool((norm > 0).all()):
        raise ValueError("v0 must be nonzero")
    q = q / norm
    tol = n**0.5 * torch.finfo(q.dtype).eps

    basis = q.new_zeros(bsz, k, n)
    basis[:, 0] = q
    alphas = q.new_zeros(bsz, k)
    betas = q.new_zeros(bsz, k - 1)
    q_prev = torch.zeros_like(q)
    beta = q.new_zeros(bsz)
    a_norm = q.new_zeros(bsz)
    for j in range(k):
        w = matvec(q)
        a_norm = torch.maximum(a_norm, w.norm(dim=1))
        alpha = _dot(q, w)
        alphas[:, j] = alpha
        if j == k - 1:
            break
        w = w - alpha[:, None] * q - beta[:, None] * q_prev
        if reorthogonalize:
            w = _orthogonalize(w, basis[:, : j + 1])
        beta = w.norm(dim=1)
        breakdown = beta <= tol * a_norm
        if bool(breakdown.any()):
            fresh = torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device)
            fresh = _orthogonalize(fresh, basis[:, : j + 1])
            fresh = fresh / fresh.norm(dim=1, keepdim=True)
            beta = torch.where(breakdown, 0, beta)
            w = torch.where(breakdown[:, None], fresh, w)
        q_prev, q = q, w / torch.where(breakdown, 1, beta)[:, None]
        basis[:, j + 1] = q
        betas[:, j] = beta

    theta, s = tridiagonal_eigh(alphas, betas)
    q_cols = basis.mT
    return _unbatch(
        LanczosResult,
        batched,
        alphas=alphas,
        betas=betas,
        ritz_values=theta,
        ritz_vectors=q_cols @ s,
        basis=q_cols,
    )


def _orthogonalize(w: Tensor, basis: Tensor) -> Tensor:
    """Project the rows of ``w`` ``(B, n)`` off ``basis`` ``(B, j, n)``, twice (Gram-Schmidt)."""
    for _ in range(2):
        w = w - ((basis @ w[..., None]).mT @ basis)[:, 0]
    return w
