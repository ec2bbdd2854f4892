"""The Gauss-Newton model in scaled variables, from one SVD, and the steps it gives.

With the scaling ``D = diag(d)`` and ``u = D p``, the model of the cost at ``x`` is
``m(u) = f + <g, u> + 0.5 |J_s u|^2`` with ``J_s = J D^-1`` and ``g = J_s^T r``.
:class:`GaussNewtonModel` takes the thin SVD ``J_s = U diag(s) V^T`` once per
iteration (``O(m n^2)``); every step below is then a few ``O(n^2)`` products:

* ``u(lambda) = -(J_s^T J_s + lambda I)^-1 g = -V diag(s / (s^2 + lambda)) U^T r``;
* :meth:`~GaussNewtonModel.gauss_newton` -- ``lambda = 0``, minimum norm, singular
  values below ``eps max(m, n) s_max`` treated as zero;
* :meth:`~GaussNewtonModel.levenberg_marquardt` -- the minimizer of the model in
  ``|u| <= Delta``: ``lambda = 0`` if the Gauss-Newton step fits, else the root
  of the secular equation ``1/|u(lambda)| = 1/Delta``, found by safeguarded
  Newton iteration (``|u(lambda)|`` and its derivative are closed-form sums, so
  no trial refactorizes anything)::

      lambda+ = lambda + (Delta - |u|) |u| / (Delta d|u|/dlambda)

  inside a bracket ``[lo, hi]`` that every trial narrows (Moré 1978; Nocedal &
  Wright, *Numerical Optimization*, 2nd ed., Alg. 4.3 and Sec. 4.3);
* :meth:`~GaussNewtonModel.cauchy` and :meth:`~GaussNewtonModel.dogleg` -- Powell's
  dogleg between the Cauchy and Gauss-Newton points (Nocedal & Wright Sec. 4.1).

Working on the SVD of ``J_s`` rather than on ``J^T J`` keeps the accuracy of the
steps at ``eps cond(J_s)`` instead of ``eps cond(J_s)^2``.

Reference: J. J. Moré, "The Levenberg-Marquardt algorithm: implementation and
theory", Numerical Analysis (Dundee 1977), LNM 630, 1978.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["GaussNewtonModel"]


def _norm(v: Tensor) -> Tensor:
    return torch.linalg.vector_norm(v, dim=-1)


class GaussNewtonModel:
    """The model ``m(u) = f + <g, u> + 0.5 |J_s u|^2`` for a batch, from ``J``, ``r`` and ``d``.

    Args:
        jac: ``(B, m, n)``; r: ``(B, m)``; d: scales ``(B, n)``.
        free: ``(B, n)`` mask of the variables that may move (``None``: all); the
            others get a zero column, hence a zero step.
    """

    def __init__(self, jac: Tensor, r: Tensor, d: Tensor, free: Tensor | None = None):
        js = jac / d[:, None, :]
        if free is not None:
            js = js * free[:, None, :]
        # J_s = Q R and R = U_R diag(s) V^T, so U = Q U_R: the SVD of the small R only.
        self._q, rfac = torch.linalg.qr(js)
        self._ur, self.s, self.vh = torch.linalg.svd(rfac, full_matrices=False)
        self.c = self.coordinates(r)  # U^T r
        self.g = self.expand(self.s * self.c)  # J_s^T r
        eps = torch.finfo(jac.dtype).eps
        self.cutoff = eps * max(jac.shape[-2:]) * self.s[..., :1]
        self.tiny = torch.finfo(jac.dtype).tiny

    # -- products ---------------------------------------------------------------------
    def expand(self, coef: Tensor) -> Tensor:
        """``V coef``: from singular-vector coordinates ``(B, k)`` to ``(B, n)``."""
        return (self.vh.mT @ coef[..., None])[..., 0]

    def coordinates(self, w: Tensor) -> Tensor:
        """``U^T w`` for a residual-space vector ``w`` ``(B, m)``."""
        return (self._ur.mT @ (self._q.mT @ w[..., None]))[..., 0]

    def curvature(self, u: Tensor) -> Tensor:
        """``|J_s u|^2`` per problem."""
        return (self.s * (self.vh @ u[..., None])[..., 0]).pow(2).sum(dim=-1)

    def decrease(self, u: Tensor) -> Tensor:
        """``m(0) - m(u) = -(<g, u> + 0.5 |J_s u|^2)``."""
        return -((self.g * u).sum(dim=-1) + 0.5 * self.curvature(u))

    def solve(self, coef: Tensor, lam: Tensor) -> Tensor:
        """``-(J_s^T J_s + lambda I)^+ J_s^T w`` for ``coef = U^T w``; ``lambda`` ``(B,)``."""
        s = self.s
        lam = lam[:, None]
        keep = (s > self.cutoff) | (lam > 0)
        scale = torch.where(keep, s / torch.clamp(s * s + lam, min=self.tiny), 0.0)
        return -self.expand(scale * coef)

    # -- steps ------------------------------------------------------------------------
    def gauss_newton(self) -> Tensor:
        """The minimum-norm Gauss-Newton step."""
        return self.solve(self.c, torch.zeros_like(self.c[..., 0]))

    def levenberg_marquardt(
        self, radius: Tensor, lam0: Tensor, *, sigma: float = 0.1, max_iter: int = 20
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(u, lambda, newton)``: the model minimizer in ``|u| <= Delta`` (within ``sigma Delta``).

        ``newton`` marks the problems whose Gauss-Newton step fits (``lambda = 0``);
        ``lam0`` is a warm start. A step still too long after ``max_iter`` rounds is
        cut back to ``Delta``.
        """
        s2, sc = self.s * self.s, self.s * self.c
        u_gn = self.gauss_newton()
        phi0 = _norm(u_gn)
        newton = phi0 <= (1 + sigma) * radius
        # Bracket: |u(hi)| <= |g| / hi = Delta. From lambda = 0, one Newton step on the
        # concave 1/|u| undershoots the root: a lower bound when J_s has full rank.
        hi = _norm(self.g) / radius
        full = (self.s > self.cutoff).all(dim=-1)
        d0 = torch.where(self.s > self.cutoff, sc, 0.0) ** 2 / torch.clamp(s2, min=self.tiny) ** 3
        dphi0 = -d0.sum(dim=-1) / torch.clamp(phi0, min=self.tiny)
        lo = torch.where(full, (radius - phi0) * phi0 / (radius * dphi0), 0.0)
        lo = torch.minimum(torch.clamp(torch.nan_to_num(lo), min=0.0), hi)
        lam = _inside(lam0, lo, hi)
        pending = ~newton
        for _ in range(max_iter):
            if not bool(pending.any()):
                break
            denom = s2 + lam[:, None]
            terms = (sc / denom) ** 2
            phi = torch.sqrt(terms.sum(dim=-1))
            done = (phi - radius).abs() <= sigma * radius
            pending = pending & ~done
            lo = torch.where(phi > radius, torch.maximum(lo, lam), lo)
            hi = torch.where(phi < radius, torch.minimum(hi, lam), hi)
            dphi = -(terms / denom).sum(dim=-1) / torch.clamp(phi, min=self.tiny)
            step = (radius - phi) * phi / (radius * dphi)
            lam = torch.where(pending, _inside(lam + step, lo, hi), lam)
        lam = torch.where(newton, torch.zeros_like(lam), lam)
        u = self.solve(self.c, lam)
        cut = torch.clamp(radius / torch.clamp(_norm(u), min=self.tiny), max=1.0)
        u = torch.where(newton[:, None], u, u * cut[:, None])
        return u, lam, newton

    def cauchy(self, radius: Tensor) -> Tensor:
        """The model minimizer along ``-g`` within ``|u| <= Delta``."""
        gg = (self.g * self.g).sum(dim=-1)
        gag = self.curvature(self.g)
        t = torch.where(gag > 0, gg / torch.clamp(gag, min=self.tiny), torch.inf)
        t = torch.minimum(t, radius / torch.clamp(torch.sqrt(gg), min=self.tiny))
        return -t[:, None] * self.g

    def dogleg(self, radius: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, newton)``: Powell's dogleg step and whether it is the Gauss-Newton step."""
        u_gn = self.gauss_newton()
        uc = self.cauchy(radius)
        diff = u_gn - uc
        # |uc + tau diff| = Delta for tau in [0, 1]: a quadratic in tau.
        qa = (diff * diff).sum(dim=-1)
        qb = 2 * (uc * diff).sum(dim=-1)
        qc = (uc * uc).sum(dim=-1) - radius * radius
        disc = torch.sqrt(torch.clamp(qb * qb - 4 * qa * qc, min=0.0))
        tau = torch.clamp((-qb + disc) / torch.clamp(2 * qa, min=self.tiny), 0.0, 1.0)
        newton = _norm(u_gn) <= radius
        at_edge = _norm(uc) >= radius * (1 - 1e-12)
        bend = uc + tau[:, None] * diff
        u = torch.where(newton[:, None], u_gn, torch.where(at_edge[:, None], uc, bend))
        return u, newton


def _inside(lam: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """``lam`` where it lies strictly inside ``(lo, hi)``, else ``max(1e-3 hi, sqrt(lo hi))``."""
    ok = (lam > lo) & (lam < hi) & torch.isfinite(lam)
    return torch.where(ok, lam, torch.maximum(1e-3 * hi, torch.sqrt(lo * hi)))
