"""Trust-region machinery: the radius rule and the subproblem solvers, batched.

A trust-region step minimizes the quadratic model of ``f`` at ``x``::

    m(p) = f + g.p + 1/2 p.H p      subject to  |p| <= radius

with one radius per problem, then compares the model's predicted decrease
with the actual one (Nocedal & Wright, *Numerical Optimization*, 2nd ed.,
Ch. 4). This module holds what every such method shares:

* :class:`RadiusRule` with :func:`reduction_ratio`: accept or reject a step
  and resize the region (N&W Alg. 4.1), written once.
* The subproblem solvers, each a :class:`Subproblem`: :class:`CauchyPoint`,
  :class:`DoglegPath` (dense ``H``), :class:`SteihaugCG` (Hessian-vector products
  only) and :class:`MoreSorensen` (Moré & Sorensen, dense ``H``).
* :func:`truncated_cg`, the CG loop behind Steihaug-CG and Newton-CG, and
  :func:`solve_in_eigenbasis`, the secular-equation solve behind the exact
  trust-region subproblem and the cubic-regularization subproblem.
* :func:`confirm_second_order`: the test that turns a saddle point back into
  a running problem, with the direction of negative curvature to leave it by.

Everything acts on tensors over a batch of independent problems: ``g`` is
``(B, n)``, ``H`` ``(B, n, n)`` (or a product ``v -> H v`` on ``(B, n)``),
``radius`` ``(B,)``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from taylorch.linalg import lanczos
from taylorch.linalg.norms import dot
from taylorch.solve.methods.base import State
from taylorch.solve.objective import Objective
from taylorch.solve.result import Status

__all__ = [
    "CauchyPoint",
    "DoglegPath",
    "MoreSorensen",
    "RadiusRule",
    "SteihaugCG",
    "Subproblem",
    "SubproblemStep",
    "accepted_state",
    "cauchy_point",
    "confirm_second_order",
    "escape_memory",
    "escape_step",
    "forcing_term",
    "krylov_model",
    "progress_flag",
    "reduction_ratio",
    "solve_in_eigenbasis",
    "truncated_cg",
]

MatVec = Callable[..., Tensor]


def _norm(u: Tensor) -> Tensor:
    return torch.linalg.vector_norm(u, dim=-1)


def _apply(hessian: Tensor, v: Tensor) -> Tensor:
    return (hessian @ v[..., None])[..., 0]


# ----------------------------------------------------------------------------- radius rule


@dataclass(frozen=True)
class RadiusRule:
    """Accept a step when ``rho > eta``; resize the region by ``rho`` (N&W Alg. 4.1).

    ``rho`` is the actual decrease over the predicted one. ``rho < 1/4``:
    the model was poor, the radius becomes ``1/4`` of ``min(radius, |p|)``;
    ``rho > 3/4`` on a step that reached the boundary: the radius doubles, up
    to ``max_radius``; otherwise it stays.

    Args:
        initial: the first radius.
        max_radius: the largest radius; by default none. (scipy caps it at 1000,
            which puts a minimizer at distance 1e6, Brown's badly scaled one, a
            thousand steps away; doubling reaches it in twenty.)
        eta: acceptance threshold in ``[0, 1/4)``.
    """

    initial: float = 1.0
    max_radius: float = math.inf
    eta: float = 0.15

    def __post_init__(self) -> None:
        if not (isinstance(self.max_radius, int | float) and 0 < self.max_radius <= math.inf):
            raise ValueError(
                f"max_radius must be a number > 0 (math.inf for no bound), got {self.max_radius!r}"
            )
        if not (isinstance(self.initial, int | float) and 0 < self.initial <= self.max_radius):
            raise ValueError(
                f"initial_radius must be in (0, max_radius={self.max_radius}], got {self.initial!r}"
            )
        if not (isinstance(self.eta, int | float) and 0 <= self.eta < 0.25):
            raise ValueError(f"eta must be in [0, 0.25), got {self.eta!r}")

    def accept(self, rho: Tensor) -> Tensor:
        return rho > self.eta

    def update(self, radius: Tensor, rho: Tensor, step_norm: Tensor, boundary: Tensor) -> Tensor:
        shrunk = 0.25 * torch.where(step_norm > 0, torch.minimum(radius, step_norm), radius)
        grown = torch.clamp(2 * radius, max=self.max_radius)
        out = torch.where((rho > 0.75) & boundary, grown, radius)
        return torch.where(rho >= 0.25, out, shrunk)  # NaN rho shrinks


def reduction_ratio(f: Tensor, f_trial: Tensor, predicted: Tensor) -> Tensor:
    """``rho = (f - f_trial) / predicted``, guarded against rounding.

    Both decreases get ``10 eps |f|`` added (Conn, Gould & Toint, *Trust-Region
    Methods*, 2000, Sec. 17.4.2), so that near a solution, where both are at
    the level of rounding, ``rho`` tends to 1 instead of noise. A non-finite
    trial value or a model that predicts no decrease gives ``-inf``.
    """
    guard = 10 * torch.finfo(f.dtype).eps * f.abs()
    rho = (f - f_trial + guard) / (predicted + guard)
    usable = torch.isfinite(f_trial) & (predicted > 0) & torch.isfinite(rho)
    return torch.where(usable, rho, torch.full_like(rho, -torch.inf))


# ----------------------------------------------------------------------------- subproblems


class SubproblemStep(NamedTuple):
    """A step of the model: ``p`` ``(B, n)``, the model decrease ``m(0) - m(p)``
    ``(B,)`` (NaN where the model could not be evaluated), and whether ``p``
    lies on the boundary ``(B,)``."""

    p: Tensor
    predicted: Tensor
    boundary: Tensor


class Subproblem(abc.ABC):
    """A solver of ``min m(p) s.t. |p| <= radius``.

    ``dense`` subproblems take the Hessian as a tensor ``(B, n, n)``; the
    others take a product ``matvec(v, rows=None) -> H v`` on ``(B, n)``
    (``rows``: the problems that still need the product, charged for it).
    """

    dense: ClassVar[bool]

    @abc.abstractmethod
    def solve(self, g: Tensor, hessian: Tensor | MatVec, radius: Tensor) -> SubproblemStep:
        """The step for every problem of the batch."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def _decrease(g: Tensor, p: Tensor, hp: Tensor) -> Tensor:
    return -(dot(g, p) + 0.5 * dot(p, hp))


def _on_boundary(p: Tensor, radius: Tensor) -> Tensor:
    return _norm(p) >= radius * (1 - torch.finfo(p.dtype).eps ** 0.5)


def cauchy_point(g: Tensor, hg: Tensor, radius: Tensor) -> Tensor:
    """The minimizer of the model along ``-g`` within the region (N&W eq. 4.11-4.12).

    ``p = -tau radius g / |g|`` with ``tau = 1`` where ``g.H g <= 0`` and
    ``tau = min(|g|^3 / (radius g.H g), 1)`` otherwise; ``p = 0`` where ``g = 0``.
    """
    gnorm = _norm(g)
    ghg = dot(g, hg)
    positive = ghg > 0
    tau = torch.where(
        positive, torch.clamp(gnorm**3 / (radius * torch.where(positive, ghg, 1)), max=1.0), 1.0
    )
    scale = torch.where(gnorm > 0, tau * radius / torch.where(gnorm > 0, gnorm, 1), 0.0)
    return -scale[:, None] * g


class CauchyPoint(Subproblem):
    """The Cauchy point: steepest descent to the model's minimum along ``-g``.

    Cost: one product ``H g``. Globally convergent, but only linearly.
    """

    dense = True

    def solve(self, g, hessian, radius):
        hg = _apply(hessian, g)
        p = cauchy_point(g, hg, radius)
        return SubproblemStep(p, _decrease(g, p, _apply(hessian, p)), _on_boundary(p, radius))


def eigen_modified_step(hessian: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """``(-B^{-1} g, g.B g)`` with ``B = Q diag(max(|l|, delta)) Q^T`` for ``H = Q diag(l) Q^T``.

    Negative eigenvalues are flipped and those at the level of rounding raised to
    ``delta = n eps max|l|`` (Nocedal & Wright Sec. 3.4; Paternain, Mokhtari & Ribeiro,
    SIAM J. Optim. 2019), so ``B`` is positive definite and follows directions of
    negative curvature downhill. One batched eigendecomposition, ``O(n^3)``.
    """
    eps = torch.finfo(g.dtype).eps
    eigvals, eigvecs = torch.linalg.eigh(hessian)
    top = eigvals.abs().amax(dim=-1, keepdim=True)
    delta = torch.where(top > 0, g.shape[-1] * eps * top, torch.ones_like(top))
    flipped = torch.maximum(eigvals.abs(), delta)
    c = (eigvecs.mT @ g[..., None])[..., 0]
    step = -(eigvecs @ (c / flipped)[..., None])[..., 0]
    return step, (c * c * flipped).sum(dim=-1)


class DoglegPath(Subproblem):
    """Powell's dogleg path from the Cauchy point to the Newton step (N&W Sec. 4.1).

    Algorithm, per problem, with ``B = H`` where ``H`` is positive definite (its
    Cholesky factorization succeeds) and ``B`` the eigenvalue-flipped modification
    of :func:`eigen_modified_step` elsewhere::

        pB = -B^{-1} g                                      # (modified) Newton step
        if |pB| <= radius: p = pB
        else: pU = -(g.g / g.B g) g                         # unconstrained Cauchy step
              if |pU| >= radius: p = -radius g / |g|
              else: p = pU + tau (pB - pU), tau in [0, 1] with |p| = radius
        where H is not positive definite: the better of p and the Cauchy point of H
        (by the decrease of the model of H)

    The dogleg needs ``B > 0``; taking only the Cauchy point where ``H`` is
    indefinite made the method steepest descent on nonconvex problems (FLETCHCR,
    n = 100: 4,092 evaluations to the time limit, trust-exact 23). Cost: one Cholesky
    factorization (``n^3 / 3`` flops), one eigendecomposition where it fails, and a
    few products with ``H``.
    """

    dense = True

    def solve(self, g, hessian, radius):
        factor, info = torch.linalg.cholesky_ex(hessian)
        definite = info == 0
        newton = -torch.cholesky_solve(g[..., None], factor)[..., 0]
        hg = _apply(hessian, g)
        gg, gbg = dot(g, g), dot(g, hg)
        if not bool(definite.all()):
            # The eigendecomposition only where Cholesky failed (LAPACK runs per matrix).
            rows = (~definite).nonzero()[:, 0]
            modified, curvature = eigen_modified_step(hessian[rows], g[rows])
            newton = newton.index_copy(0, rows, modified)
            gbg = gbg.index_copy(0, rows, curvature)
        unconstrained = -(gg / torch.where(gbg > 0, gbg, 1))[:, None] * g
        n_newton, n_unc = _norm(newton), _norm(unconstrained)
        d = newton - unconstrained
        a, b = dot(d, d), 2 * dot(unconstrained, d)
        c = n_unc**2 - radius**2
        tau = (-b + torch.sqrt(torch.clamp(b * b - 4 * a * c, min=0))) / (2 * a)
        dogleg = unconstrained + tau[:, None] * d
        to_edge = -(radius / torch.where(gg > 0, gg.sqrt(), 1))[:, None] * g
        p = torch.where(
            (n_newton <= radius)[:, None],
            newton,
            torch.where((n_unc >= radius)[:, None], to_edge, dogleg),
        )
        decrease = _decrease(g, p, _apply(hessian, p))
        if not bool(definite.all()):
            cauchy = cauchy_point(g, hg, radius)
            decrease_c = _decrease(g, cauchy, _apply(hessian, cauchy))
            use_c = ~definite & ~(decrease >= decrease_c)  # NaN too
            p = torch.where(use_c[:, None], cauchy, p)
            decrease = torch.where(use_c, decrease_c, decrease)
        return SubproblemStep(p, decrease, _on_boundary(p, radius))


#: Default CG iterations per variable of a truncated-CG step (Newton-CG, Steihaug), as
#: scipy's Newton-CG. ``n`` suffice in exact arithmetic; with rounding an ill-conditioned
#: Hessian needs more: on a 50-d quadratic of condition 1e8, ``2 n`` cut every solve short
#: and newton-cg took 172 iterations (9,438 HVPs), ``20 n`` 25 (2,362).
CG_ITERATIONS_PER_VARIABLE = 20


class SteihaugCG(Subproblem):
    """Steihaug's truncated conjugate gradients (Steihaug 1983; N&W Alg. 7.2).

    CG on ``H p = -g`` from ``p = 0``, stopped at the boundary (a step that
    leaves the region, or a direction of non-positive curvature, is followed
    to the boundary) or when ``|H p + g| <= min(1/2, sqrt|g|) |g|``. Needs only
    Hessian-vector products. Cost: one HVP per CG iteration, at most
    ``max_iter`` (default ``20 n``) per step; memory a few vectors.

    Reference: T. Steihaug, "The conjugate gradient method and trust regions in
    large scale optimization", SIAM J. Numer. Anal. 20(3), 1983.
    """

    dense = False

    def __init__(self, max_iter: int | None = None):
        if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, int)):
            raise ValueError(f"cg_max_iter must be a positive int or None, got {max_iter!r}")
        if max_iter is not None and max_iter < 1:
            raise ValueError(f"cg_max_iter must be a positive int or None, got {max_iter!r}")
        self.max_iter = max_iter

    def solve(self, g, hessian, radius):
        out = truncated_cg(
            hessian,
            g,
            radius=radius,
            rtol=forcing_term(g),
            max_iter=self.max_iter or CG_ITERATIONS_PER_VARIABLE * g.shape[-1],
        )
        return SubproblemStep(out.p, out.predicted, out.boundary)


def forcing_term(g: Tensor) -> Tensor:
    """``eta = min(1/2, sqrt|g|)``: CG stops at ``|r| <= eta |g|`` (N&W eq. 7.3), which
    gives superlinear convergence near a minimizer."""
    return torch.clamp(_norm(g).sqrt(), max=0.5)


class MoreSorensen(Subproblem):
    """The trust-region subproblem solved to high accuracy (Moré & Sorensen 1983).

    ``p`` solves it globally if and only if ``(H + lam I) p = -g``,
    ``H + lam I`` is positive semidefinite, ``lam >= 0`` and
    ``lam (radius - |p|) = 0`` (N&W Thm. 4.1). With the eigendecomposition
    ``H = Q diag(l) Q^T`` and ``c = Q^T g`` (see :func:`solve_in_eigenbasis`)::

        if l_1 > 0 and |H^{-1} g| <= radius: p = -H^{-1} g          (interior)
        elif c vanishes on l_1's eigenspace and |p(-l_1)| <= radius:  (hard case)
            p = p(-l_1) + tau q_1 with |p| = radius
        else: find lam > max(0, -l_1) with |p(lam)| = radius     (secular equation)

    where ``p(lam) = -sum_i c_i / (l_i + lam) q_i``. Cost: one batched symmetric
    eigendecomposition (``O(n^3)``) per step; the secular equation then costs
    ``O(n)`` per Newton iteration. For small and medium ``n``.

    Reference: J. J. Moré and D. C. Sorensen, "Computing a trust region step",
    SIAM J. Sci. Stat. Comput. 4(3), 1983.
    """

    dense = True

    def solve(self, g, hessian, radius):
        eigvals, eigvecs = torch.linalg.eigh(hessian)
        c = (eigvecs.mT @ g[..., None])[..., 0]
        y, _ = solve_in_eigenbasis(eigvals, c, radius=radius)
        p = (eigvecs @ y[..., None])[..., 0]
        predicted = -(dot(c, y) + 0.5 * dot(eigvals, y * y))
        return SubproblemStep(p, predicted, _on_boundary(p, radius))


# ----------------------------------------------------------------------------- truncated CG


@dataclass(frozen=True)
class TruncatedCG:
    """The outcome of :func:`truncated_cg`, per problem.

    ``p``: the step; ``predicted``: ``m(0) - m(p)``; ``boundary``: ``p`` was
    taken to the boundary; ``negative_curvature``: CG met ``d.H d <= 0``;
    ``iterations``: products spent; ``finite``: every product was finite
    (where not, ``p`` is the last good iterate and ``predicted`` is NaN).
    """

    p: Tensor
    predicted: Tensor
    boundary: Tensor
    negative_curvature: Tensor
    iterations: Tensor
    finite: Tensor


def _to_boundary(z: Tensor, d: Tensor, radius: Tensor) -> tuple[Tensor, Tensor]:
    """Both roots ``tau`` of ``|z + tau d| = radius`` (``|z| <= radius``): ``(negative, positive)``."""
    a, b = dot(d, d), 2 * dot(z, d)
    c = dot(z, z) - radius**2
    root = torch.sqrt(torch.clamp(b * b - 4 * a * c, min=0))
    a = torch.where(a > 0, a, 1)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def _rows(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``a`` on the rows where ``mask`` holds, ``b`` elsewhere; no n-sized copy when the
    mask is all true (for one large problem, always)."""
    if bool(mask.all()):
        return a
    return torch.where(mask[:, None], a, b)


def truncated_cg(
    matvec: MatVec,
    g: Tensor,
    *,
    radius: Tensor | None,
    rtol: Tensor,
    max_iter: int,
) -> TruncatedCG:
    """Conjugate gradients on ``H p = -g`` from ``p = 0``, stopped early, for a batch.

    With a ``radius`` (Steihaug): an iterate that leaves the region, or a
    direction ``d`` with ``d.H d <= 0``, ends the solve on the boundary along
    ``d`` (on negative curvature, at whichever root of ``|z + tau d| = radius``
    has the lower model value). Without (``radius=None``, Newton-CG, N&W
    Alg. 7.1): a direction ``d`` of negative curvature ends the solve at
    ``z + tau d`` with ``tau |d| = |r| / |lambda|``, ``r = H z + g`` the
    residual and ``lambda = d.H d / |d|^2`` the curvature along ``d``: at the
    first iteration (``z = 0``, ``d = -g``) N&W's steepest-descent step
    ``-(|g|^2 / |g.H g|) g``; later, instead of N&W's last iterate ``z``, the
    same rule continued along ``d`` (``tau = 1`` where ``d.H d = 0``). The
    last iterate alone lies in the positive-curvature subspace CG has
    explored and is short near a saddle region: on 1,024 10-d Rosenbrock
    problems the slowest then needed 807 Newton-CG iterations, now 86 (using
    the negative-curvature direction as in Royer, O'Neill & Wright, "A
    Newton-CG algorithm with complexity guarantees for smooth unconstrained
    optimization", Math. Program. 2020). Each problem stops when
    ``|H p + g| <= rtol |g|``; a problem is charged only for its own products.

    Args:
        matvec: ``matvec(v, rows) -> H v`` on ``(B, n)``.
        g: the gradients ``(B, n)``.
        radius: ``(B,)`` or ``None``.
        rtol: relative residual tolerance ``(B,)``.
        max_iter: products per problem at most.
    """
    batch = g.shape[0]
    z = torch.zeros_like(g)
    hz = torch.zeros_like(g)
    r = g.clone()
    d = -g
    rr = dot(r, r)
    tol = rtol * _norm(g)
    iterations = torch.zeros(batch, dtype=torch.long, device=g.device)
    active = _norm(g) > tol
    out_p, out_hp = z.clone(), hz.clone()
    boundary = torch.zeros_like(active)
    negative = torch.zeros_like(active)
    finite = torch.ones_like(active)
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        hd = matvec(d, active)
        iterations += active.long()
        total = hd.sum(dim=-1)
        bad = active & ~((total - total) == 0)  # a non-finite product
        if bool(bad.any()):
            hd = torch.where(bad[:, None], 0.0, hd)
        dhd = dot(d, hd)
        curved = active & ~bad & ~(dhd > 0)
        alpha = rr / torch.where(dhd > 0, dhd, 1)
        z_next = torch.addcmul(z, alpha[:, None], d)
        if radius is None:
            leaves = torch.zeros_like(active)
        else:
            leaves = active & ~bad & ~curved & (_norm(z_next) >= radius)
        ends_on_edge = curved | leaves
        if bool(ends_on_edge.any()):
            if radius is None:
                # From z along d, by |r| / |lambda| with lambda = d.H d / |d|^2 its curvature:
                # at the first iteration (z = 0, d = -g) the steepest-descent step above.
                reach = rr.sqrt() * _norm(d)
                tau = torch.where(dhd < 0, reach / torch.where(dhd < 0, -dhd, 1), 1.0)
                p_curved = torch.addcmul(z, tau[:, None], d)
                hp_curved = torch.addcmul(hz, tau[:, None], hd)
            else:
                t_neg, t_pos = _to_boundary(z, d, radius)
                rd = dot(r, d)  # the model along d: m(z + t d) - m(z) = t r.d + t^2 d.H d / 2
                lower = t_neg * rd + 0.5 * t_neg**2 * dhd < t_pos * rd + 0.5 * t_pos**2 * dhd
                tau = torch.where(curved & lower, t_neg, t_pos)
                p_curved = torch.addcmul(z, tau[:, None], d)
                hp_curved = torch.addcmul(hz, tau[:, None], hd)
                boundary = boundary | curved | leaves
            out_p = _rows(ends_on_edge, p_curved, out_p)
            out_hp = _rows(ends_on_edge, hp_curved, out_hp)
        negative = negative | curved
        finite = finite & ~bad
        moving = active & ~bad & ~ends_on_edge
        z = _rows(moving, z_next, z)
        hz = _rows(moving, torch.addcmul(hz, alpha[:, None], hd), hz)
        r = _rows(moving, torch.addcmul(r, alpha[:, None], hd), r)
        rr_next = dot(r, r)
        done = moving & (rr_next.sqrt() <= tol)
        active = moving & ~done
        beta = rr_next / torch.where(rr > 0, rr, 1)
        d = _rows(active, torch.addcmul(-r, beta[:, None], d), d)
        rr = torch.where(active, rr_next, rr)
    settled = ~(boundary | negative)  # converged, out of iterations or bad: the last iterate
    out_p = _rows(settled, z, out_p)
    out_hp = _rows(settled, hz, out_hp)
    predicted = _decrease(g, out_p, out_hp)
    predicted = torch.where(finite, predicted, torch.full_like(predicted, torch.nan))
    return TruncatedCG(out_p, predicted, boundary, negative, iterations, finite)


# ----------------------------------------------------------------------------- secular equation


def solve_in_eigenbasis(
    eigvals: Tensor,
    c: Tensor,
    *,
    radius: Tensor | None = None,
    sigma: Tensor | None = None,
    max_iter: int = 100,
) -> tuple[Tensor, Tensor]:
    """Minimize a quadratic model with a trust region or a cubic term, in the eigenbasis.

    With ``H = Q diag(l) Q^T`` (``eigvals`` ascending, ``(B, k)``) and
    ``c = Q^T g``, find coordinates ``y`` (``p = Q y``) of the global minimizer of

    * ``c.y + 1/2 y.diag(l) y`` over ``|y| <= radius`` (trust region), or
    * ``c.y + 1/2 y.diag(l) y + sigma/3 |y|^3`` (cubic regularization;
      Cartis, Gould & Toint 2011, Thm. 3.1).

    Both are ``y(lam) = -c / (l + lam)`` with ``lam >= max(0, -l_1)`` and
    ``|y(lam)| = target(lam)``, ``target = radius`` or ``lam / sigma``. The
    root of ``1/|y(lam)| - 1/target(lam)`` (increasing and concave) is found by
    Newton's method, safeguarded by bisection on a bracket; the trust-region
    interior case (``lam = 0``) and the hard case (``c = 0`` on ``l_1``'s
    eigenspace: then ``lam = -l_1`` and a multiple of ``q_1`` fills the rest of
    the target length) are handled in closed form.

    Returns:
        ``(y, lam)``: ``(B, k)`` and the multipliers ``(B,)``.
    """
    if (radius is None) == (sigma is None):
        raise ValueError("give exactly one of radius and sigma")
    eps = torch.finfo(eigvals.dtype).eps
    tiny = torch.finfo(eigvals.dtype).tiny
    cubic = sigma is not None
    l1 = eigvals[:, 0]
    scale = eigvals.abs().amax(dim=-1)
    cnorm = _norm(c)
    low = torch.clamp(-l1, min=0)

    def target(lam: Tensor) -> Tensor:
        return lam / sigma if cubic else radius

    def coords(lam: Tensor, keep: Tensor | None = None) -> Tensor:
        den = eigvals + lam[:, None]
        y = -c / torch.where(den > 0, den, tiny)
        return y if keep is None else torch.where(keep, y, torch.zeros_like(y))

    # Hard case: c (numerically) vanishes on l_1's eigenspace and what remains is short.
    near = eigvals - l1[:, None] <= 10 * eigvals.shape[-1] * eps * scale[:, None]
    c_near = _norm(torch.where(near, c, torch.zeros_like(c)))
    y_rest = coords(low, ~near)
    gap = torch.clamp(target(low) ** 2 - dot(y_rest, y_rest), min=0)
    shift = c_near / torch.where(gap > 0, gap.sqrt(), tiny)  # where the root would sit past -l_1
    hard = (l1 <= 0) & (gap > 0) & (shift <= eps**0.5 * torch.clamp(scale, min=tiny))
    y_hard = y_rest.clone()
    sign = torch.where(c[:, 0] > 0, -1.0, 1.0).to(c.dtype)
    y_hard[:, 0] = torch.where(l1 < 0, sign * gap.sqrt(), 0.0)

    # Trust-region interior: H > 0 and the Newton step fits; cubic with g = 0 and H >= 0: y = 0.
    if cubic:
        settled = (l1 >= 0) & (cnorm == 0)
        y_settled = torch.zeros_like(c)
    else:
        y_newton = coords(torch.zeros_like(l1))
        settled = (l1 > 0) & (_norm(y_newton) <= radius)
        y_settled = y_newton

    # Secular equation on the bracket (low, high); h(high) >= 0 by |y(lam)| <= |c| / (lam - low).
    high = low + (torch.sqrt(sigma * cnorm) if cubic else cnorm / radius) + tiny
    pending = ~hard & ~settled
    a, b = low.clone(), high.clone()
    lam = high.clone()
    for _ in range(max_iter):
        if not bool(pending.any()):
            break
        den = eigvals + lam[:, None]
        den = torch.where(den > 0, den, tiny)
        w = c / den
        ynorm = _norm(w)
        h = 1 / ynorm - 1 / target(lam)
        dh = dot(w, w / den) / ynorm**3 + (sigma / lam**2 if cubic else 0)
        close = (ynorm - target(lam)).abs() <= 10 * eps**0.75 * target(lam)
        pending = pending & ~close & (b - a > 2 * eps * b)
        a = torch.where(pending & (h < 0), lam, a)
        b = torch.where(pending & (h > 0), lam, b)
        newton = lam - h / dh
        inside = torch.isfinite(newton) & (newton > a) & (newton < b)
        lam = torch.where(pending, torch.where(inside, newton, 0.5 * (a + b)), lam)
    y = coords(lam)
    y = torch.where(hard[:, None], y_hard, torch.where(settled[:, None], y_settled, y))
    lam = torch.where(hard, low, torch.where(settled, torch.zeros_like(lam), lam))
    return y, lam


# ----------------------------------------------------------------------------- saddle points


def escape_step(
    state: State, p: Tensor, predicted: Tensor, length: Tensor, cubic: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Where ``memory["escape"]`` is set, step ``length`` along it instead of ``p``.

    The model decrease of that step ``t v`` is ``-(t g.v + l_1 t^2 / 2 + cubic t^3)``
    (``cubic``: the coefficient of the method's cubic term, 0 for trust regions).
    Returns ``(p, predicted, leaving)``, ``leaving`` the rows that escape.
    """
    escape = state.memory["escape"]
    leaving = (escape != 0).any(dim=-1)
    t = length
    decrease = -(t * dot(state.g, escape) + 0.5 * state.memory["escape_curv"] * t * t)
    if cubic is not None:
        decrease = decrease - cubic * t**3
    p = torch.where(leaving[:, None], t[:, None] * escape, p)
    return p, torch.where(leaving, decrease, predicted), leaving


def progress_flag(
    state: State, f_trial: Tensor, g_trial: Tensor, predicted: Tensor, stalled: Tensor
) -> Tensor:
    """``state.flag`` raised where a step-control method can make no progress.

    That is where ``stalled`` (the radius or step has shrunk below rounding),
    or where nothing measurable improves: the model predicts a decrease below
    the rounding level of ``f`` (``10 eps |f|``), ``f`` did not decrease and
    neither did ``|g|``. The flag is ``NONFINITE`` if the trial value was not
    finite, ``NO_PROGRESS`` otherwise.
    """
    eps = torch.finfo(state.f.dtype).eps
    flat = (
        (predicted <= 10 * eps * state.f.abs())
        & ~(f_trial < state.f)
        & ~(_norm(g_trial) < _norm(state.g))
    )
    failed = torch.where(
        torch.isfinite(f_trial),
        torch.full_like(state.flag, Status.NO_PROGRESS),
        torch.full_like(state.flag, Status.NONFINITE),
    )
    return torch.where(stalled | flat, failed, state.flag)


def accepted_state(
    state: State,
    accept: Tensor,
    x_trial: Tensor,
    f_trial: Tensor,
    g_trial: Tensor,
    flag: Tensor,
    memory: dict[str, Tensor],
) -> State:
    """The next state of a step-control method: the trial point where ``accept``, else ``state``."""
    keep = accept[:, None]
    return State(
        x=torch.where(keep, x_trial, state.x),
        f=torch.where(accept, f_trial, state.f),
        g=torch.where(keep, g_trial, state.g),
        flag=flag,
        memory=memory,
    )


def escape_memory(x: Tensor) -> dict[str, Tensor]:
    """The memory entries every second-order method keeps for :func:`confirm_second_order`."""
    return {"escape": torch.zeros_like(x), "escape_curv": torch.zeros_like(x[:, 0])}


def _smallest_eigenpair(hessian: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(l_1, v_1, max |l|)`` of the Hessians on ``rows`` (0, 0 and 1 elsewhere): on CPU
    LAPACK is called once per matrix, so the problems not asked about are skipped."""
    index = rows.nonzero()[:, 0]
    eigvals, eigvecs = torch.linalg.eigh(hessian[index])
    lam = torch.zeros_like(hessian[:, 0, 0]).index_copy(0, index, eigvals[:, 0])
    v = torch.zeros_like(hessian[:, 0]).index_copy(0, index, eigvecs[:, :, 0])
    scale = torch.ones_like(lam).index_copy(0, index, eigvals.abs().amax(dim=-1))
    return lam, v, scale


def krylov_model(
    matvec: MatVec, start: Tensor, steps: int, *, reorthogonalize: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """The Hessian projected on the Krylov space of ``start`` ``(B, n)``, by Lanczos.

    ``k = min(n, steps)`` Lanczos steps with full reorthogonalization give
    ``Q^T H Q = T``; returns ``(theta, V, finite)``: the eigenvalues of ``T``
    ``(B, k)`` ascending, the Ritz vectors ``V = Q S`` ``(B, n, k)`` (orthonormal
    columns) and whether every product was finite ``(B,)`` (non-finite
    products are replaced by zeros). A zero row of ``start`` starts from a
    fixed pseudo-random vector instead. Cost: ``k`` HVPs and ``O(k^2 n)``
    (``O(k n)`` without reorthogonalization: the extreme Ritz values still
    converge, but ``V`` is only nearly orthonormal).
    """
    batch, n = start.shape
    seed = torch.Generator(device=start.device).manual_seed(0)
    fallback = torch.randn(n, generator=seed, dtype=start.dtype, device=start.device)
    start = torch.where((start != 0).any(dim=-1, keepdim=True), start, fallback)
    finite = torch.ones(batch, dtype=torch.bool, device=start.device)

    def product(v: Tensor) -> Tensor:
        nonlocal finite
        hv = matvec(v)
        ok = torch.isfinite(hv).all(dim=-1)
        finite = finite & ok
        return torch.where(ok[:, None], hv, torch.zeros_like(hv))

    out = lanczos(
        product,
        min(n, steps),
        v0=start.contiguous(),
        generator=seed,
        reorthogonalize=reorthogonalize,
    )
    return out.ritz_values, out.ritz_vectors, finite


def confirm_second_order(
    objective: Objective,
    state: State,
    status: Tensor,
    *,
    hessian: Tensor | None = None,
    lanczos_steps: int | None = None,
) -> tuple[Tensor, State]:
    """Keep ``CONVERGED`` only where the Hessian is positive semidefinite.

    For the running rows that the first-order test marked ``CONVERGED``, the
    smallest eigenvalue ``l_1`` of the Hessian at ``x`` is computed: from
    ``hessian`` (the dense Hessian at ``x``, already known), else from a new
    dense Hessian (``lanczos_steps=None``, charged as ``n`` HVPs), else by
    ``min(n, lanczos_steps)`` Lanczos steps on Hessian-vector products (an
    estimate from above: negative curvature outside that Krylov space is
    missed; no reorthogonalization, which the smallest Ritz value does not need).
    Where ``l_1 < -sqrt(eps) max(1, |H|)`` the point is a saddle: the
    row goes back to ``RUNNING`` and ``memory["escape"]`` holds the unit
    eigenvector, signed so that ``g.v <= 0``, with ``memory["escape_curv"] = l_1``;
    the method's next step moves along it.
    """
    rows = (status == Status.CONVERGED) & objective.active
    if not bool(rows.any()):
        return status, state
    if hessian is None and lanczos_steps is None:
        _, _, hessian = objective.value_grad_hessian(state.x, mask=rows)
    if hessian is not None:
        lam, v, scale = _smallest_eigenpair(hessian, rows)
    else:
        lam, v, scale = _smallest_ritz_pair(objective, state.x, rows, lanczos_steps)
    tol = _saddle_tolerance(scale)
    saddle = rows & (lam < -tol)
    sign = torch.where(dot(state.g, v) > 0, -1.0, 1.0).to(v.dtype)
    memory = dict(state.memory)
    memory["escape"] = torch.where(saddle[:, None], sign[:, None] * v, memory["escape"])
    memory["escape_curv"] = torch.where(saddle, lam, memory["escape_curv"])
    status = torch.where(saddle, torch.full_like(status, Status.RUNNING), status)
    return status, replace(state, memory=memory)


def _smallest_ritz_pair(
    objective: Objective, x: Tensor, rows: Tensor, steps: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(l_1, v_1, max |theta|)`` by ``min(n, steps)`` Lanczos steps on the Hessians at
    ``x`` on ``rows`` (0, 0 and 1 elsewhere).

    The Lanczos vectors live on ``rows`` only; each product still differentiates the
    whole batch's gradient once (one graph), with zeros on the other rows. There is no
    O(k^2 n) reorthogonalization (at n = 1e6 it was a quarter of a Newton-CG solve):
    without it a Ritz value may stray below the spectrum, so a suspected saddle is
    confirmed by the curvature ``v.Hv`` along its unit Ritz vector (one more HVP).
    """
    index = rows.nonzero()[:, 0]
    whole = index.shape[0] == rows.shape[0]  # no embedding needed (one problem: always)
    _, _, matvec = objective.hvp_at(x, mask=rows)

    def product(v: Tensor, sub: Tensor | None = None) -> Tensor:
        if whole:
            return matvec(v, sub)
        picked = rows if sub is None else torch.zeros_like(rows).index_copy(0, index, sub)
        return matvec(torch.zeros_like(x).index_copy(0, index, v), picked)[index]

    start = torch.zeros_like(x[index])  # the fixed pseudo-random vector
    theta, vectors, finite = krylov_model(product, start, steps, reorthogonalize=False)
    lam = torch.where(finite, theta[:, 0], 0.0)
    v, scale = vectors[:, :, 0], theta.abs().amax(dim=-1)
    v = v / torch.clamp(_norm(v), min=torch.finfo(v.dtype).tiny)[:, None]
    suspect = lam < -_saddle_tolerance(scale)
    if bool(suspect.any()):
        curvature = dot(v, product(v, suspect))
        lam = torch.where(suspect & torch.isfinite(curvature), curvature, lam)
    if whole:
        return lam, v, scale
    return (
        torch.zeros_like(x[:, 0]).index_copy(0, index, lam),
        torch.zeros_like(x).index_copy(0, index, v),
        torch.ones_like(x[:, 0]).index_copy(0, index, scale),
    )


def _saddle_tolerance(scale: Tensor) -> Tensor:
    """Curvature below ``-sqrt(eps) max(1, |H|)`` is negative beyond rounding."""
    return torch.finfo(scale.dtype).eps ** 0.5 * torch.clamp(scale, min=1)
