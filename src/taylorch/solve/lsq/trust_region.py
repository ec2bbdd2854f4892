"""Trust-region least squares: Levenberg-Marquardt (Moré) and Powell's dogleg.

One iteration, for every problem of the batch (Moré 1978; MINPACK ``lmder``)::

    model  = Gauss-Newton model in scaled variables u = D p
             (D = running max of the column norms of J)
    u      = subproblem(model, Delta)            # LM: argmin model in |u| <= Delta
    (first iteration: Delta = min(Delta, |u|))
    x+     = P(x + D^-1 u)                       # P: projection onto the box, if any
    rho    = (f(x) - f(x+)) / (model decrease)
    Delta  = Delta * t, t in [0.1, 0.5]          if rho <= 1/4 (t from a quadratic fit)
           = 2 |D s|                             if rho >= 3/4 or the Gauss-Newton step was taken
    accept x+ if rho >= 1e-4;  D = max(D, column norms of J(x+))

The residual and its Jacobian come from one call at each trial point, so a
step costs one evaluation (plus one linearization in matrix-free mode; the
geodesic acceleration's second derivative runs backward passes through the graph
kept from the evaluation at ``x``, no new call). The subproblem costs ``O(m n^2)`` for a QR
factorization of ``[J | r]`` and ``O(n^3)`` for an SVD of its triangle
(:class:`~taylorch.solve.lsq.model.GaussNewtonModel`), or CG iterations of two
Jacobian products each (:class:`~taylorch.solve.lsq.operator_model.OperatorModel`).

With ``geodesic=True`` a step ``v`` that the radius holds back (``lambda > 0``)
gets Transtrum & Sethna's second-order correction
``a = -(J_s^T J_s + lambda I)^-1 J_s^T r_vv`` (``r_vv`` the second directional
derivative of the residual along ``v``, exact by backward passes through the
residual's graph kept from the Jacobian at ``x``: no new call of the residual),
kept when ``2 |a| <= alpha |v|``; the step is ``v + a / 2``, judged against the
decrease the model predicts for ``v``. In a long curved valley this lets the
radius grow along the valley instead of collapsing onto its curvature.

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
    Linearization,
    initial_scales,
    linearize,
    put_rows,
    take_rows,
)
from taylorch.solve.lsq.bounds import (
    bounded_cauchy_point,
    free_variables,
    project,
    truncated_point,
)
from taylorch.solve.lsq.model import GaussNewtonModel
from taylorch.solve.lsq.objective import ResidualObjective
from taylorch.solve.lsq.operator_model import OperatorModel, operator_optimality
from taylorch.solve.methods.base import State, where_rows
from taylorch.solve.objective import BudgetExhausted
from taylorch.solve.result import Status

__all__ = ["Dogleg", "LevenbergMarquardt", "TrustRegionLSQ"]


class TrustRegionLSQ(LeastSquaresSolver):
    """The trust-region loop shared by :class:`LevenbergMarquardt` and :class:`Dogleg`.

    Args:
        initial_radius: the first radius is ``initial_radius * |D x0|`` (or
            ``initial_radius`` itself when ``D x0 = 0``); MINPACK's ``factor``.
        scaling: Moré's column scaling ``D``; ``False`` for ``D = I``.
    """

    supports_bounds = True

    def __init__(self, *, initial_radius: float = 100.0, scaling: bool = True):
        if not initial_radius > 0:
            raise ValueError(f"initial_radius must be > 0, got {initial_radius}")
        self.initial_radius = float(initial_radius)
        self.scaling = bool(scaling)

    def subproblem(
        self, model: GaussNewtonModel | OperatorModel, radius: Tensor, memory: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(u, lambda, newton)``: the step in scaled variables, the LM shift (0 if none),
        and whether the step is the Gauss-Newton step."""
        raise NotImplementedError

    def refine(
        self,
        objective: ResidualObjective,
        state: State,
        model: GaussNewtonModel | OperatorModel,
        u: Tensor,
        lam: Tensor,
    ) -> Tensor:
        """A correction of the step ``u`` before it is tried (none by default)."""
        return u

    def needs_jacobian(self, objective: ResidualObjective) -> bool:
        """Whether the model must keep ``J`` itself, not only its QR triangle."""
        return False

    # -- evaluation ---------------------------------------------------------------------
    def _evaluate(self, objective: ResidualObjective, x: Tensor, mask: Tensor | None):
        """``(linearization, g)`` at ``x`` from one call; matrix-free: no Gram matrix."""
        if objective.jac != "matrix-free":
            lin = linearize(objective, x, mask, keep_jacobian=self.needs_jacobian(objective))
            return lin, lin.g
        f, r, matvec, rmatvec = objective.linearize(x, mask=mask)
        free = free_variables(x, rmatvec(r), objective.lower, objective.upper)
        model = OperatorModel(r, matvec, rmatvec, free)
        opt = operator_optimality(model.g, r, model.jvp(model.g))
        opt = torch.where(torch.isfinite(f), opt, torch.full_like(opt, torch.inf))
        lin = Linearization(f, model.g, None, None, r.abs().amax(dim=-1), opt)
        return lin, model.g

    def _model(self, objective: ResidualObjective, state: State, free: Tensor | None):
        mem = state.memory
        if objective.jac != "matrix-free":
            return GaussNewtonModel(mem["rfac"], mem["qtr"], mem["d"], free, mem.get("J"))
        # Products need the graph at x: linearize again (one more evaluation).
        _, r, matvec, rmatvec = objective.linearize(state.x, mask=objective.active)
        return OperatorModel(r, matvec, rmatvec, free)

    # -- the loop -----------------------------------------------------------------------
    def init(self, objective: ResidualObjective, x0: Tensor) -> State:
        lin, g = self._evaluate(objective, x0, None)
        if lin.rfac is None or not self.scaling:
            d = torch.ones_like(x0)
        else:
            d = initial_scales(lin.column_norms())
        xnorm = torch.linalg.vector_norm(d * x0, dim=-1)
        radius = torch.where(xnorm > 0, self.initial_radius * xnorm, self.initial_radius)
        return State.start(
            x0,
            lin.f,
            g,
            d=d,
            xnorm=xnorm,
            radius=radius,
            lam=torch.zeros_like(lin.f),
            first=torch.ones_like(lin.f, dtype=torch.bool),
            **lin.memory(),
        )

    def step(self, objective: ResidualObjective, state: State) -> State:
        """One iteration of the problems still running; the others' rows are left as they are.

        The residual is one function of the whole batch, so every evaluation still
        covers all rows, but the factorizations and subproblems are solved for the
        running problems only (:meth:`ResidualObjective.restrict`).
        """
        active = objective.active
        if bool(active.all()):
            return self._step(objective, state)
        rows = active.nonzero()[:, 0]
        sub = objective.restrict(rows, state.x)
        try:
            new = self._step(sub, take_rows(state, rows))
        except BudgetExhausted as exhausted:
            over = torch.zeros_like(active).index_copy(0, rows, exhausted.rows)
            raise BudgetExhausted(over) from None
        finally:
            objective.absorb(sub, rows)
        return put_rows(state, rows, new)

    def _step(self, objective: ResidualObjective, state: State) -> State:
        mem = state.memory
        x, f, radius, d = state.x, state.f, mem["radius"], mem["d"]
        lower, upper = objective.lower, objective.upper
        free = free_variables(x, state.g, lower, upper, d)
        model = self._model(objective, state, free)
        u, lam, newton = self.subproblem(model, radius, mem)
        radius = torch.where(
            mem["first"], torch.minimum(radius, torch.linalg.vector_norm(u, dim=-1)), radius
        )
        # The model predicts the decrease of u itself; a refined step is judged against it.
        pred = model.decrease(d * (project(x + u / d, lower, upper) - x))
        step = self.refine(objective, state, model, u, lam)
        x_try = project(x + step / d, lower, upper)
        s = d * (x_try - x)
        # The radius follows the method's step, not what the box left of it: a step cut
        # short by a bound says nothing about the model's accuracy at the step's length.
        # (Without bounds the two agree up to the rounding of x + step / d, and the step
        # taken is MINPACK's choice.)
        pnorm = torch.linalg.vector_norm(step if objective.bounded else s, dim=-1)
        if objective.bounded:
            for x_c in (
                truncated_point(x, u, d, lower, upper),
                bounded_cauchy_point(model, radius, x, d, lower, upper),
            ):
                s_c = d * (x_c - x)
                pred_c = model.decrease(s_c)
                use_c = pred_c > pred
                x_try = torch.where(use_c[:, None], x_c, x_try)
                s = torch.where(use_c[:, None], s_c, s)
                pred = torch.maximum(pred, pred_c)

        lin, g_new = self._evaluate(objective, x_try, objective.active)
        f_new = lin.f
        actred = f - f_new
        ratio = torch.where(pred > 0, actred / torch.where(pred > 0, pred, 1.0), -torch.inf)
        radius, lam = _update_radius(
            radius, lam, newton, ratio, actred, f, f_new, model.g, s, pnorm
        )
        accept = ratio >= 1e-4

        rows = accept[:, None]
        memory = {k: where_rows(accept, v, mem[k]) for k, v in lin.memory().items()}
        if lin.rfac is not None and self.scaling:
            d = torch.where(rows, torch.maximum(d, lin.column_norms()), d)
        x_out = torch.where(rows, x_try, x)
        xnorm = torch.linalg.vector_norm(d * x_out, dim=-1)
        eps = torch.finfo(x.dtype).eps
        stuck = ~(radius > eps * xnorm)  # also catches a radius of 0 or NaN
        flag = torch.where(stuck, torch.full_like(state.flag, Status.NO_PROGRESS), state.flag)
        memory.update(
            d=d,
            xnorm=xnorm,
            radius=radius,
            lam=lam,
            first=torch.zeros_like(mem["first"]),
            actred=actred,
            prered=pred,
            bound=radius,
            limited=~newton & (ratio >= 0.75),
        )
        return State(
            x=x_out,
            f=torch.where(accept, f_new, f),
            g=torch.where(rows, g_new, state.g),
            flag=flag,
            memory=memory,
        )


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
    pnorm: Tensor,
) -> tuple[Tensor, Tensor]:
    """MINPACK's radius rule; also scales the LM shift kept as the next warm start.

    ``s`` is the step taken, ``pnorm`` the length of the model's step (MINPACK's
    ``pnorm``: the two differ where a bound cut the step).
    """
    slope = (g * s).sum(dim=-1)
    # Poor step: shrink by the minimizer of the quadratic through f, the slope and f(x+)
    # (0.5 when the cost did not rise), never below a tenth.
    t = torch.where(actred >= 0, 0.5, 0.5 * slope / (slope + actred))
    t = torch.where((f_new >= 100 * f) | ~(t >= 0.1), 0.1, torch.clamp(t, max=0.5))
    shrink = ~(ratio > 0.25)
    grow = ~shrink & (newton | (ratio >= 0.75))
    new_radius = torch.where(
        shrink, t * torch.minimum(radius, 10 * pnorm), torch.where(grow, 2 * pnorm, radius)
    )
    new_lam = torch.where(shrink, lam / t, torch.where(grow, 0.5 * lam, lam))
    return new_radius, new_lam


class LevenbergMarquardt(TrustRegionLSQ):
    """Levenberg-Marquardt as Moré's scaled trust-region method (MINPACK ``lmder``).

    The step is the exact minimizer of the Gauss-Newton model in the scaled
    region ``|D p| <= Delta`` (see
    :meth:`~taylorch.solve.lsq.model.GaussNewtonModel.levenberg_marquardt`);
    with ``jac="matrix-free"`` it is found by CG instead
    (:class:`~taylorch.solve.lsq.operator_model.OperatorModel`).

    The defaults differ from MINPACK's in two ways, both for robustness from
    poor starting points: the first radius is ``0.2 |D x0|`` (MINPACK: 100 times
    that), so the first steps change the scaled parameters by at most a fifth
    instead of jumping onto a plateau of the model; and geodesic acceleration
    is on, so the radius can follow a long curved valley. With these, every
    NIST StRD problem is solved from both starts (``tests/solve/test_nist.py``),
    and so are all of 66 perturbed hard starts that the alternatives
    (``initial_radius`` 0.1, 0.3, 1, 100; no acceleration) partly fail.

    Args:
        initial_radius: see :class:`TrustRegionLSQ`.
        geodesic: Transtrum & Sethna's geodesic acceleration of the steps the
            radius holds back (backward passes through the kept graph); ``None``
            (default) applies it where it is defined -- the linear loss with a
            dense Jacobian -- and ``True`` insists (an error elsewhere).
        alpha: acceleration is kept only when ``2 |a| <= alpha |v|``.
        scaling: see :class:`TrustRegionLSQ`.

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
        initial_radius: float = 0.2,
        geodesic: bool | None = None,
        alpha: float = 0.75,
        scaling: bool = True,
    ):
        super().__init__(initial_radius=initial_radius, scaling=scaling)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if geodesic not in (None, True, False):
            raise ValueError(f"geodesic must be None, True or False, got {geodesic!r}")
        self.geodesic = geodesic
        self.alpha = float(alpha)

    def accelerates(self, objective: ResidualObjective) -> bool:
        """Whether geodesic acceleration applies to this problem."""
        applies = objective.loss.is_linear and objective.jac != "matrix-free"
        return applies if self.geodesic is None else self.geodesic

    def needs_jacobian(self, objective: ResidualObjective) -> bool:
        return self.accelerates(objective)

    def init(self, objective: ResidualObjective, x0: Tensor) -> State:
        if self.geodesic and not objective.loss.is_linear:
            raise ValueError("geodesic acceleration needs loss='linear'")
        if self.geodesic and objective.jac == "matrix-free":
            raise ValueError("geodesic acceleration needs a dense Jacobian, not jac='matrix-free'")
        objective.keep_graphs = self.accelerates(objective)
        return super().init(objective, x0)

    def subproblem(self, model, radius, memory):
        return model.levenberg_marquardt(radius, memory["lam"])

    def refine(self, objective, state, model, u, lam):
        # Only steps that the radius holds back (lambda > 0) are accelerated: a full
        # Gauss-Newton step needs no correction to be trusted.
        bound = objective.active & (lam > 0)
        if not self.accelerates(objective) or not bool(bound.any()):
            return u
        rvv = objective.second_directional(state.x, u / state.memory["d"], mask=bound)
        acc = model.solve(model.coordinates(model.pullback(rvv)), lam)
        unorm = torch.linalg.vector_norm(u, dim=-1)
        small = bound & (2 * torch.linalg.vector_norm(acc, dim=-1) <= self.alpha * unorm)
        return torch.where(small[:, None], u + 0.5 * acc, u)


class Dogleg(TrustRegionLSQ):
    """Powell's dogleg in Moré's scaled variables: one factorization per step.

    The step follows the path from the Cauchy point to the Gauss-Newton point
    to where it leaves the region ``|D p| <= Delta``.
    """

    name = "dogleg"

    def init(self, objective: ResidualObjective, x0: Tensor) -> State:
        if objective.jac == "matrix-free":
            raise ValueError(
                "dogleg needs a dense Jacobian; use method='lm' with jac='matrix-free'"
            )
        return super().init(objective, x0)

    def subproblem(self, model, radius, memory):
        u, newton = model.dogleg(radius)
        return u, torch.zeros_like(radius), newton
