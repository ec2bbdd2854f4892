"""SLS: stochastic gradient descent with an Armijo line search on each mini-batch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from taylorch.optim.base import (
    Closure,
    NonFinite,
    Optimizer,
    SameRandomness,
    check_int,
    check_positive,
    group_by_device_dtype,
)

__all__ = ["SLS"]


class SLS(Optimizer):
    r"""Stochastic Armijo line search (Vaswani et al. 2019), step capped by ``lr``.

    Each group's step is ``eta = tau * lr`` with ``tau`` in (0, 1] kept between steps::

        f, g = closure()                                   (forward + backward at x)
        tau <- min(1, tau * gamma^(1 / n_batches_per_epoch))     (reset: try a larger step)
        repeat (at most max_backtracks times):
            f_new = closure() under no_grad at x - tau lr g   (forward only)
            if f_new <= f - c * sum_groups tau lr ||g||^2: accept
            tau <- beta * tau
        x <- x - tau lr g

    A trial whose loss is not finite counts as failed. When every trial fails, ``x``
    stays (and ``tau`` keeps its last, smallest value). A trial whose required decrease
    ``c tau lr ||g||^2`` is below the rounding of the loss passes when the loss did not
    go up: Armijo cannot be decided there, and failing would shrink ``tau`` for ever.
    Every trial sees the random numbers (dropout masks) of the first pass (see
    :class:`~taylorch.optim.base.SameRandomness`); forward passes update BatchNorm's
    running statistics at every trial. After the step, ``p.grad`` is the gradient at
    the starting point. LR schedulers scale the cap ``lr``.

    Cost per step: one forward and backward pass plus one forward pass per trial
    (usually one or two). Memory: one copy of the parameters during the step (the
    point the trials start from), no state between steps but ``tau`` (in the group).

    References:
        S. Vaswani, A. Mishkin, I. Laradji, M. Schmidt, G. Gidel, S. Lacoste-Julien,
        "Painless Stochastic Gradient: Interpolation, Line-Search, and Convergence
        Rates", NeurIPS 2019.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        c: float = 0.1,
        beta: float = 0.9,
        gamma: float = 2.0,
        n_batches_per_epoch: int = 500,
        max_backtracks: int = 100,
        nonfinite: NonFinite = "raise",
    ) -> None:
        check_positive("lr", lr)
        check_positive("c", c, allow_zero=False)
        if not isinstance(beta, (int, float)) or not 0.0 < beta < 1.0:
            raise ValueError(f"beta must be in (0, 1), got {beta!r}")
        if not isinstance(gamma, (int, float)) or not gamma >= 1.0:
            raise ValueError(f"gamma must be >= 1, got {gamma!r}")
        check_int("n_batches_per_epoch", n_batches_per_epoch)
        check_int("max_backtracks", max_backtracks)
        defaults = dict(
            lr=lr,
            c=c,
            beta=beta,
            gamma=gamma,
            n_batches_per_epoch=n_batches_per_epoch,
            max_backtracks=max_backtracks,
            tau=1.0,
        )
        super().__init__(params, defaults, nonfinite)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        closure = self._require_closure(closure)
        with SameRandomness(p for group in self.param_groups for p in group["params"]) as rng:
            return self._step(closure, rng)

    def _step(self, closure: Closure, rng: SameRandomness) -> Tensor:
        rng.before_call()
        loss = self._evaluate(closure, grad=True)
        work = [w for w in self._all_params_with_grad() if w[1]]
        if (
            not work
            or not self._loss_ok(loss)
            or not self._grads_ok([g for _, _, gs in work for g in gs])
        ):
            return loss
        grad_sq = [
            float(torch.stack(torch._foreach_norm(gs)).double().square().sum()) for _, _, gs in work
        ]
        starts = [[p.clone() for p in params] for _, params, _ in work]
        for group, _, _ in work:
            group["tau"] = min(
                1.0, group["tau"] * group["gamma"] ** (1 / group["n_batches_per_epoch"])
            )
        f0 = float(loss)
        # A decrease this small cannot be told from rounding of the loss: no evidence
        # against the step, which is then taken if the loss did not go up.
        resolution = torch.finfo(loss.dtype).eps * abs(f0)
        trials = max(g["max_backtracks"] for g, _, _ in work)
        for _, params, _ in work:  # the trials' closures must not zero or overwrite g
            for p in params:
                p.grad = None
        accepted = False
        try:
            for _ in range(trials):
                decrease = 0.0
                for (group, params, grads), x0, gsq in zip(work, starts, grad_sq):
                    eta = group["tau"] * group["lr"]
                    decrease += eta * gsq * group["c"]
                    for ps, xs, gs in group_by_device_dtype(params, x0, grads).values():
                        torch._foreach_copy_(ps, xs)
                        torch._foreach_add_(ps, gs, alpha=-eta)
                rng.before_call()
                trial = float(self._evaluate(closure, grad=False))
                accepted = trial <= f0 - decrease or (decrease <= resolution and trial <= f0)
                if accepted:  # False for NaN
                    break
                for group, _, _ in work:
                    group["tau"] *= group["beta"]
        finally:
            for (_, params, grads), x0 in zip(work, starts):
                if not accepted:
                    torch._foreach_copy_(params, x0)
                for p, g in zip(params, grads):
                    p.grad = g
        return loss
