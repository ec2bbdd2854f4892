"""AdaBound: Adam whose per-coordinate step is clipped into bounds that close on SGD's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from taylorch.optim.base import (
    Closure,
    NonFinite,
    Optimizer,
    check_betas,
    check_positive,
    group_by_device_dtype,
)
from taylorch.optim.transforms import decoupled_decay_, ema_, ema_square_

__all__ = ["AdaBound"]


class AdaBound(Optimizer):
    r"""AdaBound (Luo, Xiong, Liu, Sun 2019), as released by its authors.

    ::

        g <- g + wd * p                                   (L2; decoupled_weight_decay=False)
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        a  = lr * sqrt(1 - b2^t) / (1 - b1^t)              (Adam's bias-corrected step)
        f  = final_lr * lr / base_lr                      (the SGD rate it tends to)
        eta = clip(a / (sqrt(v) + eps), f (1 - 1/(gamma t + 1)), f (1 + 1/(gamma t)))
        p <- p - eta * m

    The paper's algorithm also divides ``eta`` by ``sqrt(t)``; the authors' release
    (and this class, and the common peers) does not. ``decoupled_weight_decay=True``
    gives AdaBoundW: ``p <- (1 - lr wd) p`` instead of the L2 term. ``final_lr`` follows
    LR schedulers through ``lr / base_lr``, where ``base_lr`` (kept in the param group)
    is the group's lr at construction, as in the authors' code; schedulers that rewrite
    ``initial_lr`` (OneCycleLR, CyclicLR) do not move it. A group built with ``lr=0`` (a
    frozen backbone) takes as ``base_lr`` the first nonzero lr it trains with.

    Cost per step: one gradient, ~12 elementwise passes. Memory: two buffers per
    parameter (``exp_avg``, ``exp_avg_sq``).

    References:
        L. Luo, Y. Xiong, Y. Liu, X. Sun, "Adaptive Gradient Methods with Dynamic Bound
        of Learning Rate", ICLR 2019.
    """

    supports_complex = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        final_lr: float = 0.1,
        gamma: float = 1e-3,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        nonfinite: NonFinite = "raise",
    ) -> None:
        check_positive("lr", lr)
        check_betas(betas)
        check_positive("final_lr", final_lr, allow_zero=False)
        check_positive("gamma", gamma, allow_zero=False)
        check_positive("eps", eps)
        check_positive("weight_decay", weight_decay)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            final_lr=final_lr,
            gamma=gamma,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults, nonfinite)
        for group in self.param_groups:
            group.setdefault("base_lr", group["lr"])

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = self._all_params_with_grad()
        if not self._grads_ok([g for _, _, grads in work for g in grads]):
            return loss
        for group, params, grads in work:
            if params:
                self._update(group, params, grads)
        return loss

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        if not group.get("base_lr"):  # a group added later, or built with lr = 0
            group["base_lr"] = lr
        final_lr = group["final_lr"] * lr / group["base_lr"] if lr > 0 else 0.0
        ms, vs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if "exp_avg" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            ms.append(state["exp_avg"])
            vs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        for ps, gs, ms_, vs_, ts in group_by_device_dtype(params, grads, ms, vs, steps).values():
            if wd != 0.0 and not group["decoupled_weight_decay"]:
                gs = torch._foreach_add(gs, ps, alpha=wd)
            ema_(ms_, gs, beta1)
            ema_square_(vs_, gs, beta2)
            if group["decoupled_weight_decay"]:
                decoupled_decay_(ps, lr * wd)
            step_sizes = [lr * (1 - beta2**t) ** 0.5 / (1 - beta1**t) for t in ts]
            lower = [final_lr * (1 - 1 / (group["gamma"] * t + 1)) for t in ts]
            upper = [final_lr * (1 + 1 / (group["gamma"] * t)) for t in ts]
            eta = torch._foreach_sqrt(vs_)
            torch._foreach_add_(eta, group["eps"])
            torch._foreach_reciprocal_(eta)
            torch._foreach_mul_(eta, step_sizes)
            torch._foreach_clamp_min_(eta, lower)
            torch._foreach_clamp_max_(eta, upper)
            torch._foreach_mul_(eta, ms_)
            torch._foreach_sub_(ps, eta)
