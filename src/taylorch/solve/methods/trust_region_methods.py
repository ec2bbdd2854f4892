"""Trust-region methods: a quadratic model, a subproblem solver and the radius rule.

One iteration, for every problem of the batch at once::

    p, predicted = subproblem(g, H, radius)        # approx. argmin m(p), |p| <= radius
    rho = (f(x) - f(x + p)) / predicted            # how good the model was
    x+ = x + p  if rho > eta  else x
    radius+ = radius rule(rho, |p|, boundary)      # N&W Alg. 4.1

The methods differ only in the subproblem: ``"trust-ncg"`` (Steihaug-CG on
Hessian-vector products), ``"dogleg"`` (dense Hessian, positive definite)
and ``"trust-exact"`` (dense Hessian, Moré-Sorensen). A problem whose first-
order test passes at a saddle point is sent on along the direction of most
negative curvature (to the boundary) instead of being reported converged.
A problem reports ``NO_PROGRESS`` when its radius shrinks below rounding
(``NONFINITE`` when the last trials were not finite), or when the model
predicts a decrease below the rounding level of ``f`` and ``f`` did not decrease.
"""

from __future__ import annotations

import math

import torch

from taylorch.solve.methods.base import Solver, State
from taylorch.solve.objective import Objective
from taylorch.solve.trust_region import (
    DoglegPath,
    MoreSorensen,
    RadiusRule,
    SteihaugCG,
    Subproblem,
    accepted_state,
    confirm_second_order,
    escape_memory,
    escape_step,
    progress_flag,
    reduction_ratio,
)

__all__ = ["Dogleg", "TrustExact", "TrustNCG", "TrustRegion"]


class TrustRegion(Solver):
    """A trust-region method around any :class:`~taylorch.solve.trust_region.Subproblem`.

    The registered methods below are this class with a fixed subproblem; a
    custom one is passed as an object, e.g.
    ``minimize(f, x0, method=TrustRegion(CauchyPoint(), max_radius=10.0))``.

    Cost per iteration: dense subproblems evaluate ``f``, ``g`` and the dense
    Hessian (``n`` HVPs, vectorized) once, at the trial point; the others
    evaluate ``f`` and ``g`` at the trial point and rebuild the HVP graph at
    ``x`` (a second gradient evaluation), plus the subproblem's products.

    Args:
        subproblem: the solver of the trust-region subproblem.
        initial_radius, max_radius, eta: see :class:`~taylorch.solve.trust_region.RadiusRule`.
        lanczos_steps: Lanczos steps of the saddle-point test of HVP-only methods.
    """

    name = "trust-region"
    order = 2

    def __init__(
        self,
        subproblem: Subproblem,
        *,
        initial_radius: float = 1.0,
        max_radius: float = math.inf,
        eta: float = 0.15,
        lanczos_steps: int = 20,
    ):
        if not isinstance(subproblem, Subproblem):
            raise TypeError(f"subproblem must be a Subproblem, got {type(subproblem).__name__}")
        if (
            isinstance(lanczos_steps, bool)
            or not isinstance(lanczos_steps, int)
            or lanczos_steps < 1
        ):
            raise ValueError(f"lanczos_steps must be a positive int, got {lanczos_steps!r}")
        self.subproblem = subproblem
        self.rule = RadiusRule(initial=initial_radius, max_radius=max_radius, eta=eta)
        self.lanczos_steps = lanczos_steps

    def init(self, objective: Objective, x0: torch.Tensor) -> State:
        objective.expect_curvature()
        memory = escape_memory(x0)
        if self.subproblem.dense:
            f, g, memory["hessian"] = objective.value_grad_hessian(x0)
        else:
            f, g = objective.value_and_grad(x0)
        memory["radius"] = torch.full_like(f, self.rule.initial)
        return State.start(x0, f, g, **memory)

    def step(self, objective: Objective, state: State) -> State:
        memory = state.memory
        radius = memory["radius"]
        if self.subproblem.dense:
            model = memory["hessian"]
        else:
            _, _, model = objective.hvp_at(state.x)
        p, predicted, boundary = self.subproblem.solve(state.g, model, radius)

        # A saddle point found by `confirm`: go to the boundary along negative curvature.
        p, predicted, leaving = escape_step(state, p, predicted, radius)
        boundary = boundary | leaving

        x_trial = state.x + p
        if self.subproblem.dense:
            f_trial, g_trial, h_trial = objective.value_grad_hessian(x_trial)
        else:
            f_trial, g_trial = objective.value_and_grad(x_trial)
        rho = reduction_ratio(state.f, f_trial, predicted)
        accept = self.rule.accept(rho)
        step_norm = torch.linalg.vector_norm(p, dim=-1)
        new_radius = self.rule.update(radius, rho, step_norm, boundary)
        eps = torch.finfo(state.f.dtype).eps
        collapsed = ~accept & (new_radius <= eps * (1 + torch.linalg.vector_norm(state.x, dim=-1)))
        flag = progress_flag(state, f_trial, g_trial, predicted, collapsed)

        keep = accept[:, None]
        new_memory = {
            **escape_memory(state.x),
            "radius": new_radius,
        }
        if self.subproblem.dense:
            new_memory["hessian"] = torch.where(keep[..., None], h_trial, memory["hessian"])
        return accepted_state(
            state,
            accept,
            x_trial,
            f_trial,
            g_trial,
            flag,
            memory=new_memory,
        )

    def confirm(self, objective, state, status):
        if self.subproblem.dense:
            return confirm_second_order(objective, state, status, hessian=state.memory["hessian"])
        return confirm_second_order(objective, state, status, lanczos_steps=self.lanczos_steps)


class TrustNCG(TrustRegion):
    """Newton-CG trust-region method: Steihaug's truncated CG as the subproblem.

    Needs only Hessian-vector products, never the Hessian: suited to large
    ``n``. Cost per iteration: one gradient evaluation at the trial point (it
    keeps its graph, so the HVPs there need no second one) and up to ``cg_max_iter`` HVPs (stopped at the boundary, on
    negative curvature, or at ``|r| <= min(1/2, sqrt|g|) |g|``). Leaving a saddle
    point costs ``min(n, lanczos_steps)`` HVPs of Lanczos.

    Args:
        initial_radius, max_radius, eta: the radius rule (N&W Alg. 4.1).
        cg_max_iter: CG iterations per step (default ``20 n``, see
            :data:`~taylorch.solve.trust_region.CG_ITERATIONS_PER_VARIABLE`).
        lanczos_steps: Lanczos steps of the saddle-point test.

    Reference: T. Steihaug, "The conjugate gradient method and trust regions in
    large scale optimization", SIAM J. Numer. Anal. 20(3), 1983; Nocedal & Wright
    Alg. 7.2.
    """

    name = "trust-ncg"

    def __init__(
        self,
        *,
        initial_radius: float = 1.0,
        max_radius: float = math.inf,
        eta: float = 0.15,
        cg_max_iter: int | None = None,
        lanczos_steps: int = 20,
    ):
        super().__init__(
            SteihaugCG(cg_max_iter),
            initial_radius=initial_radius,
            max_radius=max_radius,
            eta=eta,
            lanczos_steps=lanczos_steps,
        )


class Dogleg(TrustRegion):
    """Powell's dogleg trust-region method on the dense Hessian.

    The step follows the path from the Cauchy point to the Newton step; where
    the Hessian is not positive definite the path of its eigenvalue-flipped
    modification is taken, or the Cauchy point where that predicts more (see
    :class:`~taylorch.solve.trust_region.DoglegPath`), and at a saddle point the
    direction of most negative curvature. Cost per iteration: one evaluation of
    ``f``, ``g``, ``H`` (``n`` HVPs, vectorized), one Cholesky factorization and,
    where it fails, one eigendecomposition.

    Args:
        initial_radius, max_radius, eta: the radius rule (N&W Alg. 4.1).

    Reference: M. J. D. Powell, "A hybrid method for nonlinear equations", 1970;
    Nocedal & Wright Sec. 4.1.
    """

    name = "dogleg"

    def __init__(
        self, *, initial_radius: float = 1.0, max_radius: float = math.inf, eta: float = 0.15
    ):
        super().__init__(
            DoglegPath(), initial_radius=initial_radius, max_radius=max_radius, eta=eta
        )


class TrustExact(TrustRegion):
    """Trust-region method with the subproblem solved nearly exactly (Moré-Sorensen).

    Every step is the global minimizer of the quadratic model in the region,
    hard case included, from an eigendecomposition of the dense Hessian, so
    the method leaves saddle points and converges to points where the Hessian
    is positive semidefinite. Cost per iteration: one evaluation of ``f``,
    ``g``, ``H`` (``n`` HVPs, vectorized) and one symmetric eigendecomposition
    (``O(n^3)``).

    Args:
        initial_radius, max_radius, eta: the radius rule (N&W Alg. 4.1).

    Reference: J. J. Moré and D. C. Sorensen, "Computing a trust region step",
    SIAM J. Sci. Stat. Comput. 4(3), 1983; Nocedal & Wright Sec. 4.3.
    """

    name = "trust-exact"

    def __init__(
        self, *, initial_radius: float = 1.0, max_radius: float = math.inf, eta: float = 0.15
    ):
        super().__init__(
            MoreSorensen(), initial_radius=initial_radius, max_radius=max_radius, eta=eta
        )
