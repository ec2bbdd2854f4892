"""What every least-squares method shares: its state and its stopping tests.

A least-squares method is a :class:`~taylorch.solve.methods.base.Solver` over
a :class:`~taylorch.solve.lsq.objective.ResidualObjective`; ``State.f`` is the
cost, ``State.g = J^T r`` its gradient, and ``State.memory`` carries the
triangular factor of ``[J | r]`` (see :class:`Linearization`) and the scales
``d`` ``(B, n)`` (Moré's ``D``: the largest column norms of ``J`` seen so far),
plus what the stopping tests read. The tests are scale-invariant, as in
MINPACK (Moré, Garbow & Hillstrom, "User guide for MINPACK-1", 1980):

* ``gtol``: the largest cosine between ``r`` and a column of ``J``,
  ``max_j |J_j^T r| / (|J_j| |r|) <= gtol`` (over the free variables when there
  are bounds) -- first-order optimality, ``CONVERGED``;
* ``ftol``: the last step's actual and predicted relative reductions of the cost
  are both at most ``ftol`` (and the actual at most twice the predicted), for a
  step that the trust region did not hold short while the model was right --
  ``SMALL_STEP``;
* ``xtol``: the step bound (trust-region radius, or the step taken) is at most
  ``xtol (xtol + |D x|)`` -- ``SMALL_STEP``;
* rounding (the linear loss, where ``|r| <= sqrt(eps) |t|``, i.e. the residual is zero to
  half the working precision): the last step's actual and predicted reductions
  are both within the rounding error of the cost itself, ``eps sum_i |r_i| t_i``
  with ``t_i = |r_i| + sum_j |J_ij x_j|`` (to first order, the size of the terms
  that make up ``r_i``) -- ``SMALL_STEP``. The relative ``ftol`` test misses this
  floor where the cost goes to zero with ``x`` (a zero-residual problem singular
  at ``x* = 0``: extended Powell took 1,273 evaluations, the last 1,200 of them
  moving ``f = 1e-55`` by rounding). A nonzero residual never meets the first
  condition: there the gradient test goes on to full accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from taylorch.solve.lsq.bounds import free_variables
from taylorch.solve.lsq.objective import ResidualObjective
from taylorch.solve.methods.base import Solver, State, Tolerances
from taylorch.solve.result import Status

__all__ = [
    "LeastSquaresSolver",
    "Linearization",
    "gradient_scale",
    "initial_scales",
    "linearize",
    "put_rows",
    "take_rows",
]


@dataclass
class Linearization:
    """What a dense method keeps of one evaluation at ``x``: everything its model needs.

    ``f`` the cost ``(B,)``; ``g = J^T r`` ``(B, n)``; ``rfac`` and ``qtr``, the
    triangle ``R`` ``(B, k, n)`` and ``Q^T r`` ``(B, k)`` of a QR factorization of
    ``[J | r]`` (``k = min(m, n + 1)``), which hold all of ``J^T J = R^T R`` and
    ``J^T r = R^T Q^T r`` without squaring the condition number; ``rmax = max |r_i|``;
    ``optimality`` (see :func:`optimality`); ``jac`` the Jacobian itself only when
    asked for. A method's memory and per-problem updates so do not grow with ``m``.
    """

    f: Tensor
    g: Tensor
    rfac: Tensor | None
    qtr: Tensor | None
    rmax: Tensor
    optimality: Tensor
    noise: Tensor | None = None
    jac: Tensor | None = None

    def column_norms(self) -> Tensor:
        """``|J_j|``, from ``R`` (orthogonal transformations keep column norms)."""
        return torch.linalg.vector_norm(self.rfac, dim=-2)

    def memory(self) -> dict[str, Tensor]:
        out = {"rmax": self.rmax, "optimality": self.optimality}
        if self.noise is not None:
            out["noise"] = self.noise
        if self.rfac is not None:
            out.update(rfac=self.rfac, qtr=self.qtr)
        if self.jac is not None:
            out["J"] = self.jac
        return out


def linearize(
    objective: ResidualObjective, x: Tensor, mask: Tensor | None, *, keep_jacobian: bool = False
) -> Linearization:
    """Evaluate ``r`` and ``J`` at ``x`` (one call) and reduce them to a :class:`Linearization`.

    Cost: the evaluation plus one Householder QR of the ``m x (n + 1)`` matrix ``[J | r]``.
    With a robust loss ``r`` and ``J`` are the rescaled ones; the optimality cosine then
    reads the gradient ``J^T (rho' r)`` against ``|J_j| |rho' r|`` of the raw ``J``: the
    rescaled vectors carry a weight clamped at ``eps`` for outliers (Huber's zero
    curvature, Cauchy's negative one), which would shrink the cosine by up to
    ``1 / sqrt(eps)`` and let a user's ``gtol`` pass far from a minimum.
    """
    f, raw_r, raw_jac = objective.residual_and_jacobian(x, mask=mask, raw=True)
    r, jac, root_w = objective.loss.rescale(raw_r, raw_jac)
    noise = None
    if objective.loss.is_linear:
        # The rounding error of f = |r|^2 / 2: each |r_i| times the bound of r_i's
        # terms. Only where r is zero to half the working precision (a zero-residual
        # problem at its floor); elsewhere the gradient test reaches further.
        eps = torch.finfo(r.dtype).eps
        terms = (jac.abs() @ x.abs()[..., None])[..., 0] + r.abs()
        noise = eps * (r.abs() * terms).sum(dim=-1)
        zero = torch.linalg.vector_norm(r, dim=-1) <= eps**0.5 * torch.linalg.vector_norm(
            terms, dim=-1
        )
        noise = torch.where(zero, noise, -torch.inf)
    m, n = jac.shape[-2:]
    # [J | r] laid out column-major, as LAPACK takes it: no transposing copy on the way in.
    cols = torch.cat([jac.mT, r[:, None, :]], dim=1)  # (B, n + 1, m)
    tri = torch.geqrf(cols.mT)[0][..., : min(m, n + 1), :].triu()
    rfac, qtr = tri[..., :n], tri[..., n]
    g = (rfac.mT @ qtr[..., None])[..., 0]
    norms = torch.linalg.vector_norm(rfac, dim=-2)
    scale = gradient_scale(r, root_w, raw_jac, norms)
    return Linearization(
        f=f,
        g=g,
        rfac=rfac,
        qtr=qtr,
        rmax=r.abs().amax(dim=-1),
        optimality=optimality(x, f, g, scale, objective, norms),
        noise=noise,
        jac=jac if keep_jacobian else None,
    )


def gradient_scale(r: Tensor, root_w: Tensor | None, raw_jac: Tensor, norms: Tensor) -> Tensor:
    """``|J_j| |rho' r|`` per column: the scale of the optimality cosine (see :func:`linearize`).

    ``r`` is the rescaled residual, ``root_w`` the loss's rescaling (``None``: linear),
    ``norms`` the column norms of the rescaled Jacobian (used for the linear loss).
    """
    if root_w is None:
        return norms * torch.linalg.vector_norm(r, dim=-1)[:, None]
    pulled = torch.linalg.vector_norm(root_w * r, dim=-1)  # root_w r_eff = rho' r
    return torch.linalg.vector_norm(raw_jac, dim=-2) * pulled[:, None]


def take_rows(state: State, rows: Tensor) -> State:
    """The problems ``rows`` (indices) of ``state`` as a state of their own."""
    return State(
        x=state.x[rows],
        f=state.f[rows],
        g=None if state.g is None else state.g[rows],
        flag=state.flag[rows],
        memory={k: v[rows] for k, v in state.memory.items()},
    )


def put_rows(state: State, rows: Tensor, sub: State) -> State:
    """``state`` with rows ``rows`` replaced by ``sub`` (a key new in ``sub`` is zero elsewhere)."""

    def put(old: Tensor | None, new: Tensor) -> Tensor:
        if old is None:
            old = new.new_zeros((state.x.shape[0], *new.shape[1:]))
        return old.index_copy(0, rows, new)

    return State(
        x=put(state.x, sub.x),
        f=put(state.f, sub.f),
        g=None if sub.g is None else put(state.g, sub.g),
        flag=put(state.flag, sub.flag),
        memory={k: put(state.memory.get(k), v) for k, v in sub.memory.items()},
    )


def initial_scales(norms: Tensor) -> Tensor:
    """Moré's initial ``D``: the column norms of ``J``, with 1 for zero columns."""
    return torch.where(norms > 0, norms, torch.ones_like(norms))


def optimality(
    x: Tensor,
    f: Tensor,
    g: Tensor,
    scale: Tensor,
    objective: ResidualObjective,
    column_norms: Tensor,
) -> Tensor:
    """``max_j |g_j| / scale_j`` over the free variables (``inf`` where ``f`` is not finite).

    With ``scale_j = |J_j| |r|`` this is the largest cosine between ``r`` and a
    column of ``J``; ``column_norms`` (``|J_j|``) scale the test of which variables
    are on a bound (see :func:`~taylorch.solve.lsq.bounds.free_variables`).
    """
    cosine = torch.where(scale > 0, g.abs() / torch.where(scale > 0, scale, 1.0), 0.0)
    free = free_variables(x, g, objective.lower, objective.upper, initial_scales(column_norms))
    if free is not None:
        cosine = torch.where(free, cosine, 0.0)
    value = cosine.amax(dim=-1)
    return torch.where(torch.isfinite(f), value, torch.full_like(value, torch.inf))


class LeastSquaresSolver(Solver):
    """Base of the least-squares methods: MINPACK's scale-invariant stopping tests.

    Every step must leave in ``memory``: ``actred`` and ``prered`` (actual and
    predicted decrease of the cost for the step tried), ``bound`` (the step
    bound for the ``xtol`` test), ``xnorm`` (``|D x|``) and ``optimality``.
    """

    order = 2
    supports_bounds = False  # whether the method honours lower <= x <= upper

    def default_tolerances(self, dtype: torch.dtype) -> Tolerances:
        """Tight enough for full accuracy: a few units of rounding in the tested quantities."""
        eps = torch.finfo(dtype).eps
        return Tolerances(gtol=eps, xtol=16 * eps, ftol=16 * eps)

    def stationary(self, state: State, tol: Tolerances) -> Tensor:
        return state.memory["optimality"] <= tol.gtol

    def converged(self, old: State, new: State, tol: Tolerances) -> Tensor:
        mem = new.memory
        status = torch.full_like(new.flag, Status.RUNNING)
        status = torch.where(
            self.stationary(new, tol), torch.full_like(status, Status.CONVERGED), status
        )
        actred, prered, ref = mem["actred"], mem["prered"], old.f
        small_f = (
            (actred.abs() <= tol.ftol * ref) & (prered <= tol.ftol * ref) & (actred <= 2 * prered)
        )
        if "limited" in mem:
            # ...unless the radius held the step short and the model was right about
            # it: the step predicted little because it was short, however far the
            # solution (from x0 = (1, 1), Brown's badly scaled problem, solved at
            # x1 = 1e6, stopped after one such step in float32).
            small_f = small_f & ~mem["limited"]
        if "noise" in mem:  # dense Jacobians only
            noise = mem["noise"]
            small_f = small_f | ((actred.abs() <= noise) & (prered <= noise))
        small_x = mem["bound"] <= tol.xtol * (tol.xtol + mem["xnorm"])
        return torch.where(
            (small_f | small_x) & (status == Status.RUNNING),
            torch.full_like(status, Status.SMALL_STEP),
            status,
        )
