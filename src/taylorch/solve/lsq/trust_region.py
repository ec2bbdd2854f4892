"""Trust-region least squares: Levenberg-Marquardt (Moré) and Powell's dogleg.

One iteration, for every problem of the batch (Moré 1978; MINPACK ``lmder``)::

    A, g_s = scaled Gram matrix and gradient (D = running max of column norms of J)
    u      = subproblem(A, g_s, Delta)          # LM: argmin model in |u| <= Delta
    (first iteration: Delta = min(Delta, |u|))
    x+     = P(x + D^-1 u)                       # P: projection onto the box, if any
    rho    = (f(x) - f(x+)) / (model decrease)
    Delta  = Delta * t, t in [0.1, 0.5]          if rho <= 1/4 (t from a quadratic fit)
           = 2 |D s|                             if rho >= 3/4 or the Gauss-Newton step was taken
    accept x+ if rho >= 1e-4;  D = max(D, column norms of J(x+))

The residual and its Jacobian come from one call at each trial point, so a
step costs one evaluation (plus one for the geodesic acceleration). The
subproblem costs ``O(m n^2)`` to form ``A`` and ``O(n^3)`` per Cholesky
factorization (a few per step for LM, one for dogleg).

With ``geodesic=True`` the LM step ``v`` gets Transtrum & Sethna's second-order
correction ``a = -(A + lambda I)^-1 D^-1 J^T r_vv`` (``r_vv`` the second
directional derivative of the residual along ``v``, exact by forward-over-
forward mode), kept when ``2 |a| <= alpha |v|``; the step is ``v + a / 2``.

References:
    J. J. Moré, "The Levenberg-Marquardt algorithm: implementation and theory", 1978.
    M. J. D. Powell, "A hybrid method for nonlinear equations", 1970 (dogleg).
    M. K. Transtrum, J. P. Sethna, "Improvements to the Levenberg-Marquardt
    algorithm for nonlinear least-squares minimization", arXiv:1201.5885, 2012.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.solve.lsq.base import (
    LeastSquaresSolver,
    column_norms,
    initial_scales,
    lsq_memory,
)
from taylorch.solve.lsq.bounds import bounded_cauchy_step, free_variables, project
from taylorch.solve.lsq.model import GaussNewtonModel
from taylorch.solve.lsq.objective import ResidualObjective
from taylorch.solve.methods.base import State
from taylorch.solve.result import Status

__all__ = ["Dogleg", "LevenbergMarquardt", "TrustRegionLSQ"]


class TrustRegionLSQ(LeastSquaresSolver):
    """The trust-region loop shared by :class:`LevenbergMarquardt` and :class:`Dogleg`.

    Args:
        initial_radius: the first radius is ``initial_radius * |D x0|`` (or
            ``initial_radius`` itself when ``D x0 = 0``); MINPACK's ``factor``.
    """

    supports_bounds = True

    def __init__(self, *, initial_radius: float = 100.0, scaling: bool = True):
        if not initial_radius > 0:
            raise ValueError(f"initial_radius must be > 0, got {initial_radius}")
        self.initial_radius = float(initial_radius)
        self.scaling = scaling

    def subproblem(
        self, model: GaussNewtonModel, radius: Tensor, memory: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(u, lambda, newton)``: the step in scaled variables, the LM shift (0 if none),
        and whether the step is the Gauss-Newton step."""
        raise NotImplementedError

    def refine(
        self,
        objective: ResidualObjective,
        state: State,
        model: GaussNewtonModel,
        u: Tensor,
        lam: Tensor,
    ) -> Tensor:
        """A correction of the step ``u`` before it is tried (none by default)."""
        return u

    def init(self, objective: ResidualObjective, x0: Tensor) -> State:
        f, r, jac = objective.residual_and_jacobian(x0)
        d = initial_scales(jac) if self.scaling else torch.ones_like(x0)
        g, memory = lsq_memory(objective, x0, f, r, jac, d)
        xnorm = memory["xnorm"]
        radius = torch.where(xnorm > 0, self.initial_radius * xnorm, self.initial_radius)
        return State.start(
            x0,
            f,
            g,
            radius=radius,
            lam=torch.zeros_like(f),
            first=torch.ones_like(f, dtype=torch.bool),
            **memory,
        )

    def step(self, objective: ResidualObjective, state: State) -> State:
        mem = state.memory
        x, f, radius, d = state.x, state.f, mem["radius"], mem["d"]
        lower, upper = objective.lower, objective.upper
        free = free_variables(x, state.g, lower, upper)
        model = GaussNewtonModel(mem["J"], mem["r"], d, free)
        u, lam, newton = self.subproblem(model, radius, mem)
        radius = torch.where(
            mem["first"], torch.minimum(radius, torch.linalg.vector_norm(u, dim=-1)), radius
        )
        # The model predicts the decrease of u itself; a refined step is judged against it.
        pred = model.decrease(d * (project(x + u / d, lower, upper) - x))
        x_try = project(x + self.refine(objective, state, model, u, lam) / d, lower, upper)
        s = d * (x_try - x)
        if objective.bounded:
            uc = bounded_cauchy_step(model, radius, x, d, lower, upper)
            x_c = project(x + uc / d, lower, upper)
            s_c = d * (x_c - x)
            pred_c = model.decrease(s_c)
            use_c = (pred_c > pred)[:, None]
            x_try, s = torch.where(use_c, x_c, x_try), torch.where(use_c, s_c, s)
            pred = torch.maximum(pred, pred_c)

        f_new, r_new, j_new = objective.residual_and_jacobian(x_try, mask=objective.active)
        actred = f - f_new
        ratio = torch.where(pred > 0, actred / torch.where(pred > 0, pred, 1.0), -torch.inf)
        radius, lam = _update_radius(radius, lam, newton, ratio, actred, f, f_new, model.g, s)
        accept = ratio >= 1e-4

        d_new = torch.where(
            accept[:, None] & self.scaling, torch.maximum(d, column_norms(j_new)), d
        )
        rows, cols = accept[:, None], accept[:, None, None]
        x_out = torch.where(rows, x_try, x)
        f_out = torch.where(accept, f_new, f)
        r_out = torch.where(rows, r_new, mem["r"])
        j_out = torch.where(cols, j_new, mem["J"])
        g_out, memory = lsq_memory(objective, x_out, f_out, r_out, j_out, d_new)
        eps = torch.finfo(x.dtype).eps
        stuck = ~(radius > eps * memory["xnorm"])  # also catches a radius of 0 or NaN
        flag = torch.where(stuck, torch.full_like(state.flag, Status.NO_PROGRESS), state.flag)
        memory.update(
            radius=radius,
            lam=lam,
            first=torch.zeros_like(mem["first"]),
            actred=actred,
            prered=pred,
            bound=radius,
        )
        return State(x=x_out, f=f_out, g=g_out, flag=flag, memory=memory)


def _update_radius(
    radius: Tensor,
    lam: Tensor,
    newton: Tensor,
    ratio: Tensor,
    actred: Tensor,
    f: Tensor,
    f_new: Tensor,
    g: Tensor,
    s: Tensor,
) -> tuple[Tensor, Tensor]:
    """MINPACK's radius rule; also scales the LM shift kept as the next warm start."""
    snorm = torch.linalg.vector_norm(s, dim=-1)
    slope = (g * s).sum(dim=-1)
    # Poor step: shrink by the minimizer of the quadratic through f, the slope and f(x+)
    # (0.5 when the cost did not rise), never below a tenth.
    t = torch.where(actred >= 0, 0.5, 0.5 * slope / (slope + actred))
    t = torch.where((f_new >= 100 * f) | ~(t >= 0.1), 0.1, torch.clamp(t, max=0.5))
    shrink = ~(ratio > 0.25)
    grow = ~shrink & (newton | (ratio >= 0.75))
    new_radius = torch.where(
        shrink, t * torch.minimum(radius, 10 * snorm), torch.where(grow, 2 * snorm, radius)
    )
    new_lam = torch.where(shrink, lam / t, torch.where(grow, 0.5 * lam, lam))
    return new_radius, new_lam


class LevenbergMarquardt(TrustRegionLSQ):
    """Levenberg-Marquardt as Moré's scaled trust-region method (MINPACK ``lmder``).

    The step is the exact minimizer of the Gauss-Newton model in the scaled
    region ``|D p| <= Delta`` (see :func:`~taylorch.solve.lsq.normal.lm_step`).

    Args:
        initial_radius: see :class:`TrustRegionLSQ`.
        geodesic: add Transtrum & Sethna's geodesic acceleration (one more
            residual evaluation per step, forward-over-forward mode).
        alpha: acceleration is kept only when ``2 |a| <= alpha |v|``.

    Example:
        >>> import torch, taylorch
        >>> t = torch.linspace(0, 1, 20, dtype=torch.float64)
        >>> y = 2 * torch.exp(-3 * t)
        >>> res = taylorch.least_squares(lambda p: p[0] * torch.exp(-p[1] * t) - y,
        ...                              torch.ones(2, dtype=torch.float64), method="lm")
        >>> [round(v, 8) for v in res.x.tolist()]
        [2.0, 3.0]
    """

    name = "lm"

    def __init__(
        self,
        *,
        initial_radius: float = 100.0,
        geodesic: bool = False,
        alpha: float = 0.75,
        scaling: bool = True,
    ):
        super().__init__(initial_radius=initial_radius, scaling=scaling)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.geodesic = bool(geodesic)
        self.alpha = float(alpha)

    def init(self, objective: ResidualObjective, x0: Tensor) -> State:
        if self.geodesic and not objective.loss.is_linear:
            raise ValueError("geodesic acceleration needs loss='linear'")
        return super().init(objective, x0)

    def subproblem(self, model, radius, memory):
        return model.levenberg_marquardt(radius, memory["lam"])

    def refine(self, objective, state, model, u, lam):
        # Only steps that the radius holds back (lambda > 0) are accelerated: a full
        # Gauss-Newton step needs no correction to be trusted.
        bound = objective.active & (lam > 0)
        if not self.geodesic or not bool(bound.any()):
            return u
        rvv = objective.second_directional(state.x, u / state.memory["d"], mask=bound)
        acc = model.solve(model.coordinates(rvv), lam)
        unorm = torch.linalg.vector_norm(u, dim=-1)
        small = bound & (2 * torch.linalg.vector_norm(acc, dim=-1) <= self.alpha * unorm)
        return torch.where(small[:, None], u + 0.5 * acc, u)


class Dogleg(TrustRegionLSQ):
    """Powell's dogleg in Moré's scaled variables: one factorization per step.

    The step follows the path from the Cauchy point to the Gauss-Newton point
    to where it leaves the region ``|D p| <= Delta``.
    """

    name = "dogleg"

    def subproblem(self, model, radius, memory):
        u, newton = model.dogleg(radius)
        return u, torch.zeros_like(radius), newton
