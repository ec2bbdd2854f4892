"""Cubic regularization: adaptive cubic regularization (ARC), lazy Hessians, damped Newton.

Instead of a radius, these methods bound the step by a cubic term: the model

    m(p) = f + g.p + 1/2 p.H p + sigma/3 |p|^3

is an upper bound of ``f`` once ``sigma`` exceeds half the Hessian's Lipschitz
constant, so its minimizer decreases ``f``. ``sigma`` is adapted like a trust
radius, from the ratio of actual to predicted decrease. :class:`DampedNewton`
uses the same idea in the Hessian's own norm, where the model's minimizer is
a Newton step with an explicit step size.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from taylorch.linalg.norms import dot
from taylorch.solve.methods.base import Solver, State
from taylorch.solve.methods.newton import Modification, modified_newton_step
from taylorch.solve.objective import Objective
from taylorch.solve.result import Status
from taylorch.solve.trust_region import (
    accepted_state,
    confirm_second_order,
    escape_memory,
    escape_step,
    krylov_model,
    progress_flag,
    reduction_ratio,
    solve_in_eigenbasis,
)

__all__ = ["ARC", "DampedNewton"]


def _norm(u: Tensor) -> Tensor:
    return torch.linalg.vector_norm(u, dim=-1)


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < torch.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _stalled(state: State, p: Tensor, accept: Tensor) -> Tensor:
    """A rejected step shorter than rounding: the regularization can only grow further."""
    eps = torch.finfo(state.f.dtype).eps
    return ~accept & (_norm(p) <= eps * (1 + _norm(state.x)))


class ARC(Solver):
    """Adaptive regularization with cubics (Cartis, Gould & Toint 2011).

    Algorithm (ARC, Part I, Alg. 2.1 with the updates of its Sec. 7), per problem::

        p = global argmin  g.p + 1/2 p.B p + sigma/3 |p|^3       # B: the model Hessian
        rho = (f(x) - f(x + p)) / (m(0) - m(p))
        x+ = x + p                          if rho >= eta1 (successful)
        sigma+ = max(sigma / gamma, eps)    if rho > eta2 (very successful)
                 sigma                      if eta1 <= rho <= eta2
                 clip(sigma_fit, gamma sigma, gamma_max sigma)   otherwise

    where ``sigma_fit = sigma + 3 (f(x + p) - m(p)) / |p|^3`` is the weight
    whose model matches ``f`` at the rejected trial point (the interpolation
    update of Gould, Porcelli & Toint 2012). A fixed factor ``gamma`` needs
    many rejections where ``sigma0`` is far below the curvature's scale
    (osborne1's starting ``sigma`` is short by ~2e5: 19 rejections in a row,
    then a drift to a poor basin); the fitted weight gets there in one or two.
    (Part I's Sec. 7 uses ``max(min(sigma, |g|), eps)`` on very successful
    steps; any value in ``(0, sigma]`` keeps its theory, and dividing by
    ``gamma`` does not collapse ``sigma`` at a point where ``g = 0``.)
    The subproblem is solved in an eigenbasis by the secular equation
    ``(B + lam I) p = -g``, ``lam = sigma |p|``, hard case included (see
    :func:`~taylorch.solve.trust_region.solve_in_eigenbasis`):

    * ``subproblem="eigen"``: ``B`` is the dense Hessian, eigendecomposed;
      the global minimizer, so ARC leaves saddle points by itself.
    * ``subproblem="lanczos"``: Hessian-vector products only; the model is
      minimized over the Krylov space of ``g`` of dimension
      ``min(n, krylov_dim)`` built by Lanczos (the "ARC with Lanczos" variant
      of Part I, Sec. 6.2). ``"auto"`` picks ``"eigen"`` for ``n <= 100``.

    ``hessian_reuse=m`` (``"eigen"`` only): the Hessian and its
    eigendecomposition are kept for ``m`` accepted steps, the gradient is
    fresh at every step (Doikov, Chayti & Jaggi, "Second-order optimization
    with lazy Hessians", ICML 2023); a reused Hessian costs nothing.

    Cost per iteration: ``"eigen"``, ``m = 1``: one evaluation of ``f``, ``g``
    and ``H`` at the trial point (``n`` HVPs, vectorized) and one
    eigendecomposition (``O(n^3)``); ``m > 1``: one ``f`` and ``g``, plus one
    Hessian and eigendecomposition every ``m`` accepted steps; ``"lanczos"``:
    one gradient evaluation (it keeps its graph for the HVPs) and ``min(n, krylov_dim)``
    HVPs plus ``O(k^2 n)`` of reorthogonalization.

    Args:
        subproblem: ``"auto"``, ``"eigen"`` or ``"lanczos"``.
        hessian_reuse: accepted steps per Hessian (``m``).
        sigma0: the first regularization weight.
        eta1, eta2: success thresholds, ``0 < eta1 <= eta2 < 1``.
        gamma: least growth of ``sigma`` after an unsuccessful step, ``> 1``.
        gamma_max: most growth of ``sigma`` after an unsuccessful step, ``>= gamma``
            (``gamma_max = gamma`` is the plain fixed-factor rule).
        krylov_dim: Lanczos dimension of the ``"lanczos"`` subproblem and of the
            saddle-point test.

    References:
        C. Cartis, N. I. M. Gould and Ph. L. Toint, "Adaptive cubic
        regularisation methods for unconstrained optimization. Part I:
        motivation, convergence and numerical results", Math. Program. 127, 2011.
        N. I. M. Gould, M. Porcelli and Ph. L. Toint, "Updating the
        regularization parameter in the adaptive cubic regularization
        algorithm", Comput. Optim. Appl. 53, 2012.
        N. Doikov, E. M. Chayti and M. Jaggi, "Second-order optimization with
        lazy Hessians", ICML 2023.
    """

    name = "arc"
    order = 2

    def __init__(
        self,
        *,
        subproblem: Literal["auto", "eigen", "lanczos"] = "auto",
        hessian_reuse: int = 1,
        sigma0: float = 1.0,
        eta1: float = 0.1,
        eta2: float = 0.9,
        gamma: float = 2.0,
        gamma_max: float = 100.0,
        krylov_dim: int = 20,
    ):
        if subproblem not in ("auto", "eigen", "lanczos"):
            raise ValueError(f"subproblem must be 'auto', 'eigen' or 'lanczos', got {subproblem!r}")
        self.hessian_reuse = _positive_int("hessian_reuse", hessian_reuse)
        if subproblem == "lanczos" and hessian_reuse > 1:
            raise ValueError("hessian_reuse > 1 needs the dense Hessian: use subproblem='eigen'")
        self.subproblem = subproblem
        self.sigma0 = _positive("sigma0", sigma0)
        if not (isinstance(eta1, int | float) and isinstance(eta2, int | float)) or not (
            0 < eta1 <= eta2 < 1
        ):
            raise ValueError(f"need 0 < eta1 <= eta2 < 1, got eta1={eta1!r}, eta2={eta2!r}")
        self.eta1, self.eta2 = float(eta1), float(eta2)
        self.gamma = _positive("gamma", gamma)
        if self.gamma <= 1:
            raise ValueError(f"gamma must be > 1, got {gamma!r}")
        self.gamma_max = _positive("gamma_max", gamma_max)
        if self.gamma_max < self.gamma:
            raise ValueError(f"gamma_max must be >= gamma, got {gamma_max!r} < {gamma!r}")
        self.krylov_dim = _positive_int("krylov_dim", krylov_dim)

    def _dense(self, n: int) -> bool:
        if self.subproblem == "auto":
            return n <= 100 or self.hessian_reuse > 1
        return self.subproblem == "eigen"

    def init(self, objective: Objective, x0: Tensor) -> State:
        objective.expect_curvature()
        memory = escape_memory(x0)
        if self._dense(x0.shape[-1]):
            f, g, hessian = objective.value_grad_hessian(x0)
            memory.update(
                hessian=hessian,
                eigvals=torch.zeros_like(x0),
                eigvecs=torch.zeros_like(hessian),
                decomposed=torch.zeros_like(f, dtype=torch.bool),
                age=torch.zeros_like(f, dtype=torch.long),
            )
        else:
            f, g = objective.value_and_grad(x0)
        memory["sigma"] = torch.full_like(f, self.sigma0)
        return State.start(x0, f, g, **memory)

    def _dense_model(self, objective: Objective, state: State, memory: dict) -> tuple:
        """``(eigvals, eigvecs, finite)`` of the model Hessian, refreshing it when due."""
        if self.hessian_reuse > 1:
            due = (memory["age"] >= self.hessian_reuse) & objective.active
            if bool(due.any()):
                _, _, fresh = objective.value_grad_hessian(state.x, mask=due)
                memory["hessian"] = torch.where(due[:, None, None], fresh, memory["hessian"])
                memory["age"] = torch.where(due, 0, memory["age"])
                memory["decomposed"] = memory["decomposed"] & ~due
        stale = ~memory["decomposed"]
        if bool(stale.any()):
            eigvals, eigvecs = torch.linalg.eigh(memory["hessian"])
            memory["eigvals"] = torch.where(stale[:, None], eigvals, memory["eigvals"])
            memory["eigvecs"] = torch.where(stale[:, None, None], eigvecs, memory["eigvecs"])
            memory["decomposed"] = torch.ones_like(stale)
        return memory["eigvals"], memory["eigvecs"], torch.ones_like(stale)

    def step(self, objective: Objective, state: State) -> State:
        memory = dict(state.memory)
        sigma = memory["sigma"]
        dense = self._dense(state.x.shape[-1])
        if dense:
            eigvals, basis, finite = self._dense_model(objective, state, memory)
        else:
            _, _, matvec = objective.hvp_at(state.x)
            eigvals, basis, finite = krylov_model(matvec, state.g, self.krylov_dim)
        c = (basis.mT @ state.g[..., None])[..., 0]
        y, _ = solve_in_eigenbasis(eigvals, c, sigma=sigma)
        p = (basis @ y[..., None])[..., 0]
        predicted = -(dot(c, y) + 0.5 * dot(eigvals, y * y) + sigma / 3 * _norm(y) ** 3)
        predicted = torch.where(finite, predicted, torch.full_like(predicted, torch.nan))
        # A saddle point found by `confirm`: the model's minimizer along the eigenvector.
        length = memory["escape_curv"].abs() / sigma
        p, predicted, _ = escape_step(state, p, predicted, length, cubic=sigma / 3)

        x_trial = state.x + p
        fresh_hessian = dense and self.hessian_reuse == 1
        if fresh_hessian:
            f_trial, g_trial, h_trial = objective.value_grad_hessian(x_trial)
        else:
            f_trial, g_trial = objective.value_and_grad(x_trial)
        rho = reduction_ratio(state.f, f_trial, predicted)
        accept = rho >= self.eta1
        floor = torch.finfo(sigma.dtype).eps
        relaxed = torch.clamp(sigma / self.gamma, min=floor)
        grown = self._grown(sigma, p, predicted, state.f - f_trial)
        memory["sigma"] = torch.where(rho > self.eta2, relaxed, torch.where(accept, sigma, grown))
        flag = progress_flag(state, f_trial, g_trial, predicted, _stalled(state, p, accept))

        if fresh_hessian:
            memory["hessian"] = torch.where(accept[:, None, None], h_trial, memory["hessian"])
            memory["decomposed"] = memory["decomposed"] & ~accept
        elif dense:
            memory["age"] = memory["age"] + accept.long()
        memory.update(escape_memory(state.x))
        return accepted_state(
            state,
            accept,
            x_trial,
            f_trial,
            g_trial,
            flag,
            memory=memory,
        )

    def _grown(self, sigma: Tensor, p: Tensor, predicted: Tensor, actual: Tensor) -> Tensor:
        """``sigma`` after a rejected step: the fitted weight, clipped to
        ``[gamma sigma, gamma_max sigma]`` (``gamma_max sigma`` where it is not finite)."""
        fitted = sigma + 3 * (predicted - actual) / _norm(p) ** 3
        most = self.gamma_max * sigma
        fitted = torch.where(torch.isfinite(fitted), fitted, most)
        return torch.minimum(torch.maximum(fitted, self.gamma * sigma), most)

    def confirm(self, objective, state, status):
        if not self._dense(state.x.shape[-1]):
            return confirm_second_order(objective, state, status, lanczos_steps=self.krylov_dim)
        # The model Hessian is current where it was taken at this x (age 0); else a fresh one.
        stale = (state.memory["age"] > 0) & (status == Status.CONVERGED)
        current = None if bool(stale.any()) else state.memory["hessian"]
        return confirm_second_order(objective, state, status, hessian=current)


class DampedNewton(Solver):
    """Newton's method with the step size of affine-invariant cubic Newton (AICN).

    Hanzely, Kamzolov, Pasechnyuk, Gasnikov, Richtárik & Takáč (2022) take
    ``x+ = x - alpha H^{-1} g`` with ``alpha`` the minimizer of the cubic model
    in the Hessian's local norm, ``-alpha G^2 + alpha^2 G^2 / 2 + L alpha^3 G^3 / 6``,
    ``G = sqrt(g.H^{-1} g)`` (the Newton decrement)::

        alpha = (-1 + sqrt(1 + 2 L G)) / (L G) = 2 / (1 + sqrt(1 + 2 L G))

    For convex ``f`` with semi-strongly self-concordant constant ``L`` this
    converges globally at ``O(1/k^2)`` and locally quadratically, with no
    subproblem to solve. Here ``L`` is estimated per problem by backtracking
    (in the spirit of the line-search variants of Hanzely, Abdukhakimov & Takáč
    2024): a step is accepted when ``f(x+)`` is below the model value
    ``f - alpha G^2 + alpha^2 G^2 / 2 + L alpha^3 G^3 / 6``, after which ``L``
    halves; otherwise ``L`` doubles and ``x`` stays. Where ``H`` is not positive
    definite the modified Hessian of :func:`~taylorch.solve.methods.newton.modified_newton_step`
    stands in (outside the theory), and at a saddle point the step follows
    the direction of most negative curvature.

    Cost per iteration: one evaluation of ``f``, ``g`` and ``H`` at the trial
    point (``n`` HVPs, vectorized) and one eigendecomposition or Cholesky
    factorization (``O(n^3)``).

    Args:
        lipschitz: the first estimate of ``L``.
        modification: ``"eigen"`` or ``"cholesky"``, for indefinite Hessians.

    References:
        S. Hanzely, D. Kamzolov, D. Pasechnyuk, A. Gasnikov, P. Richtárik and
        M. Takáč, "A damped Newton method achieves global O(1/k^2) and local
        quadratic convergence rate", NeurIPS 2022.
        S. Hanzely, F. Abdukhakimov and M. Takáč, "Damped Newton method with
        near-optimal global O(k^-3) convergence rate" (arXiv:2405.18926), 2024.
    """

    name = "damped-newton"
    order = 2

    def __init__(self, *, lipschitz: float = 1.0, modification: Modification = "eigen"):
        self.lipschitz = _positive("lipschitz", lipschitz)
        if modification not in ("eigen", "cholesky"):
            raise ValueError(f"modification must be 'eigen' or 'cholesky', got {modification!r}")
        self.modification = modification

    def init(self, objective: Objective, x0: Tensor) -> State:
        f, g, hessian = objective.value_grad_hessian(x0)
        lipschitz = torch.full_like(f, self.lipschitz)
        return State.start(x0, f, g, **escape_memory(x0), hessian=hessian, lipschitz=lipschitz)

    def step(self, objective: Objective, state: State) -> State:
        memory = state.memory
        lip = memory["lipschitz"]
        newton = modified_newton_step(memory["hessian"], state.g, self.modification)
        decrement = torch.sqrt(torch.clamp(-dot(state.g, newton), min=0))
        alpha = 2 / (1 + torch.sqrt(1 + 2 * lip * decrement))
        ag = alpha * decrement
        predicted = ag * decrement - 0.5 * ag**2 - lip / 6 * ag**3
        p = alpha[:, None] * newton
        length = 2 * memory["escape_curv"].abs() / lip
        p, predicted, _ = escape_step(state, p, predicted, length, cubic=lip / 6)

        x_trial = state.x + p
        f_trial, g_trial, h_trial = objective.value_grad_hessian(x_trial)
        guard = 10 * torch.finfo(state.f.dtype).eps * state.f.abs()
        accept = torch.isfinite(f_trial) & (f_trial <= state.f - predicted + guard)
        floor = torch.finfo(lip.dtype).eps
        new_lip = torch.where(accept, torch.clamp(lip / 2, min=floor), 2 * lip)
        flag = progress_flag(state, f_trial, g_trial, predicted, _stalled(state, p, accept))
        keep = accept[:, None]
        return accepted_state(
            state,
            accept,
            x_trial,
            f_trial,
            g_trial,
            flag,
            memory={
                **escape_memory(state.x),
                "hessian": torch.where(keep[..., None], h_trial, memory["hessian"]),
                "lipschitz": new_lip,
            },
        )

    def confirm(self, objective, state, status):
        return confirm_second_order(objective, state, status, hessian=state.memory["hessian"])
