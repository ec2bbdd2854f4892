"""The Gauss-Newton model in scaled variables, from one small eigendecomposition.

With the scaling ``D = diag(d)`` and ``u = D p``, the model of the cost at ``x`` is
``m(u) = f + <g, u> + 0.5 |J_s u|^2`` with ``J_s = J D^-1`` and ``g = J_s^T r``.
:class:`GaussNewtonModel` scales the ``n x n`` Gram matrix ``J^T J`` (kept by
the method instead of ``J``) and takes its eigendecomposition
``J_s^T J_s = V diag(e) V^T`` once per iteration (``O(n^3)``); every step below
is then a few ``O(n^2)`` products:

* ``u(lambda) = -(J_s^T J_s + lambda I)^-1 g = -V diag(1 / (e + lambda)) V^T g``;
* :meth:`~GaussNewtonModel.gauss_newton` -- ``lambda = 0``, minimum norm, eigenvalues
  below ``n eps e_max`` (the Gram matrix's rounding level) treated as zero;
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

The Gram matrix squares the condition number, so a step is accurate to about
``eps cond(J_s)^2``; the column scaling keeps that small where it matters (on
the NIST problems ``cond(J_s) < 1e5`` at the solutions). The iteration still
converges to ``J^T r = 0`` as computed from ``J`` and ``r`` themselves, so the
attainable accuracy is unchanged; far from a solution a numerically singular
``J_s`` only makes the Gauss-Newton step a minimum-norm one. In exchange, one
``n x n`` ``eigh`` per problem batches far better than a QR and an SVD of the
tall ``J_s`` (a large batch of small problems is bound by LAPACK calls), and
the method's memory does not grow with ``m``.

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
    """The model ``m(u) = f + <g, u> + 0.5 |J_s u|^2`` for a batch, from a QR of ``[J | r]``.

    Args:
        rfac: ``R`` ``(B, k, n)`` and qtr: ``Q^T r`` ``(B, k)`` of ``[J | r] = Q [R | Q^T r]``.
        d: scales ``(B, n)``.
        free: ``(B, n)`` mask of the variables that may move (``None``: all); the
            others get a zero column, hence a zero step.
        jac: ``J`` ``(B, m, n)``, needed only by :meth:`pullback`.
    """

    def __init__(
        self,
        rfac: Tensor,
        qtr: Tensor,
        d: Tensor,
        free: Tensor | None = None,
        jac: Tensor | None = None,
    ):
        inv = 1 / d if free is None else free / d
        self._inv, self._jac = inv, jac
        # J_s = Q R_s with R_s = R D^-1 = U diag(s) V^T: the SVD of the small R_s only.
        u, sv, vh = torch.linalg.svd(rfac * inv[:, None, :], full_matrices=False)
        self._v = vh.mT  # (B, n, q)
        self.e = sv * sv  # eigenvalues of J_s^T J_s, descending
        self.c = sv * (u.mT @ qtr[..., None])[..., 0]  # V^T g
        self.g = self.expand(self.c)  # J_s^T r
        eps = torch.finfo(rfac.dtype).eps
        # Singular values below eps max(m, n) s_max are rounding noise.
        size = max(rfac.shape[-1], jac.shape[-2] if jac is not None else rfac.shape[-2])
        self.cutoff = (eps * size) ** 2 * self.e[..., :1]
        self.tiny = torch.finfo(rfac.dtype).tiny

    # -- products ---------------------------------------------------------------------
    def expand(self, coef: Tensor) -> Tensor:
        """``V coef``: from singular-vector coordinates to ``(B, n)``."""
        return (self._v @ coef[..., None])[..., 0]

    def coordinates(self, v: Tensor) -> Tensor:
        """``V^T v`` for ``v`` ``(B, n)`` (the part of ``v`` in the row space of ``J_s``)."""
        return (self._v.mT @ v[..., None])[..., 0]

    def pullback(self, w: Tensor) -> Tensor:
        """``J_s^T w`` for a residual-space vector ``w`` ``(B, m)`` (needs ``jac``)."""
        if self._jac is None:
            raise ValueError("GaussNewtonModel.pullback needs the Jacobian (jac=...)")
        return (self._jac.mT @ w[..., None])[..., 0] * self._inv

    def curvature(self, u: Tensor) -> Tensor:
        """``|J_s u|^2`` per problem."""
        return (self.e * self.coordinates(u) ** 2).sum(dim=-1)

    def decrease(self, u: Tensor) -> Tensor:
        """``m(0) - m(u) = -(<g, u> + 0.5 |J_s u|^2)``."""
        return -((self.g * u).sum(dim=-1) + 0.5 * self.curvature(u))

    def solve(self, coef: Tensor, lam: Tensor) -> Tensor:
        """``-(J_s^T J_s + lambda I)^+ b`` for ``coef = V^T b``; ``lambda`` ``(B,)``."""
        lam = lam[:, None]
        keep = (self.e > self.cutoff) | (lam > 0)
        scale = torch.where(keep, 1 / torch.clamp(self.e + lam, min=self.tiny), 0.0)
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
        e, c2 = self.e, self.c * self.c
        u_gn = self.gauss_newton()
        phi0 = _norm(u_gn)
        newton = phi0 <= (1 + sigma) * radius
        # Bracket: |u(hi)| <= |g| / hi = Delta. From lambda = 0, one Newton step on the
        # concave 1/|u| undershoots the root: a lower bound when J_s has full rank.
        hi = _norm(self.g) / radius
        ranked = e > self.cutoff
        full = ranked.all(dim=-1) & (e.shape[-1] == self.g.shape[-1])
        d0 = torch.where(ranked, c2 / torch.clamp(e, min=self.tiny) ** 3, 0.0)
        dphi0 = -d0.sum(dim=-1) / torch.clamp(phi0, min=self.tiny)
        lo = torch.where(full, (radius - phi0) * phi0 / (radius * dphi0), 0.0)
        lo = torch.minimum(torch.clamp(torch.nan_to_num(lo), min=0.0), hi)
        lam = _inside(lam0, lo, hi)
        pending = ~newton
        for _ in range(max_iter):
            if not bool(pending.any()):
                break
            denom = e + lam[:, None]
            terms = c2 / denom**2
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
