"""Parameter covariance and standard errors of a least-squares fit.

The usual linearized estimate (Bates & Watts, *Nonlinear Regression Analysis
and Its Applications*, 1988, Sec. 2.3; NIST StRD certifies the same)::

    s^2  = 2 cost / (m - n)          (the residual variance; RSS / (m - n))
    pcov = s^2 (J^T J)^-1            computed as  s^2 V diag(1 / sigma_i^2) V^T
    stderr = sqrt(diag(pcov))

from the SVD ``R = U diag(sigma) V^T`` of the triangle of a QR factorization
``J D^-1 = Q R``, ``D`` the column norms of ``J`` (``(J^T J)^-1 = D^-1 V diag(1 /
sigma^2) V^T D^-1``), which avoids forming ``J^T J``; the QR reduces each tall ``J``
to ``min(m, n)`` rows first, so the SVD costs ``O(n^3)`` whatever ``m``. Where the
column-scaled ``J`` is numerically rank-deficient (``sigma_min <= eps max(m, n)
sigma_max``) some parameter combination is not determined by the data and the whole
covariance is ``inf``; so it is when ``m <= n``. The scaling makes that test
independent of the parameters' units (a rate in 1/s or in 1/Gs). Cost ``O(m n^2)``
per problem.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["covariance"]


def covariance(jac: Tensor, cost: Tensor, *, absolute: bool = False) -> tuple[Tensor, Tensor]:
    """``(pcov, stderr)`` for Jacobians ``(B, m, n)`` and costs ``(B,)``.

    With ``absolute=True`` the residuals are taken as already divided by their
    known standard deviations and ``s^2 = 1`` (scipy's ``absolute_sigma``).
    """
    m, n = jac.shape[-2:]
    norms = torch.linalg.vector_norm(jac, dim=-2)
    d = torch.where(norms > 0, norms, torch.ones_like(norms))  # a zero column stays zero
    tri = torch.geqrf(jac / d[..., None, :])[0][..., : min(m, n), :].triu()
    _, sv, vh = torch.linalg.svd(tri, full_matrices=False)
    eps = torch.finfo(jac.dtype).eps
    rank_ok = sv[..., -1] > eps * max(m, n) * sv[..., 0]
    inv = 1 / torch.where(sv > 0, sv, 1.0) ** 2
    pcov = (vh.mT * inv[..., None, :]) @ vh / (d[..., :, None] * d[..., None, :])
    if absolute:
        s2 = torch.ones_like(cost)
    else:
        s2 = 2 * cost / (m - n) if m > n else torch.full_like(cost, torch.inf)
    pcov = pcov * s2[:, None, None]
    good = rank_ok & (m > n or absolute) & torch.isfinite(cost)
    pcov = torch.where(good[:, None, None], pcov, torch.full_like(pcov, torch.inf))
    stderr = torch.sqrt(pcov.diagonal(dim1=-2, dim2=-1))
    return pcov, stderr
