"""Stochastic Polyak step sizes: SPS-max and its generalization to momentum."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from taylorch.optim.base import (
    Closure,
    NonFinite,
    Optimizer,
    check_positive,
    check_unit_interval,
    group_by_device_dtype,
)
from taylorch.optim.transforms import decoupled_decay_, heavy_ball_

__all__ = ["SPS", "PolyakMomentum"]


class SPS(Optimizer):
    r"""Stochastic Polyak step size, with heavy-ball momentum as an option.

    ::

        f, g = closure()                                   (loss and gradient of the batch)
        d <- beta d + g                                    (d = g when momentum = 0)
        gamma = min(lr, (f - f_star)_+ / (c ||d||^2))      (||d|| over the groups with lr > 0)
        p <- (1 - gamma wd) p - gamma d                    (gamma capped by each group's lr)

    ``momentum=0`` is SPS-max (Loizou et al. 2021; ``c = 1/2``, ``lr`` is the cap
    ``gamma_b``). ``momentum > 0`` is the Polyak step for the moving-average
    (heavy-ball) direction, ALR-SMAG of Wang, Johansson & Zhang (2023), where
    ``c = 1`` is the usual choice (see :class:`PolyakMomentum`). ``f_star`` is a lower
    bound of the batch loss (0 for non-negative losses that can interpolate); a loss
    below it gives a zero step, and a warning the first time.

    Cost per step: one forward and one backward pass (the closure), ~4 elementwise
    passes and one host sync (the step size). Memory: one buffer per parameter when
    ``momentum > 0``, none otherwise.

    References:
        N. Loizou, S. Vaswani, I. Laradji, S. Lacoste-Julien, "Stochastic Polyak
        Step-size for SGD: An Adaptive Learning Rate for Fast Convergence", AISTATS 2021.
        X. Wang, M. Johansson, T. Zhang, "Generalized Polyak Step Size for First Order
        Optimization with Momentum", ICML 2023.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        c: float = 0.5,
        f_star: float = 0.0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nonfinite: NonFinite = "raise",
    ) -> None:
        check_positive("lr", lr)
        check_positive("c", c, allow_zero=False)
        if not isinstance(f_star, (int, float)) or f_star != f_star:
            raise ValueError(f"f_star must be a number, got {f_star!r}")
        check_unit_interval("momentum", momentum)
        check_positive("weight_decay", weight_decay)
        defaults = dict(lr=lr, c=c, f_star=f_star, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, defaults, nonfinite)
        self.last_step_size: list[float] = []
        self._warned_below_f_star = False

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor | None:  # type: ignore[override]
        loss = self._evaluate(self._require_closure(closure), grad=True)
        work = self._all_params_with_grad()
        if not self._loss_ok(loss) or not self._grads_ok([g for _, _, gs in work for g in gs]):
            return loss
        directions = []
        for group, params, grads in work:
            if group["momentum"] == 0.0:
                directions.append(grads)
                continue
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            for bs, gs in group_by_device_dtype(bufs, grads).values():
                heavy_ball_(bs, gs, group["momentum"])
            directions.append(bufs)
        # A group with lr = 0 (a frozen backbone) does not move: its direction is not
        # part of the step whose length the Polyak rule sets.
        moving = [ds for (group, _, _), ds in zip(work, directions) if ds and group["lr"] > 0]
        sq = [torch._foreach_norm(ds) for ds in moving]
        norm_sq = sum(float(torch.stack(n).double().square().sum()) for n in sq)
        self.last_step_size = []
        for (group, params, _), ds in zip(work, directions):
            if not params:
                continue
            gap = float(loss) - group["f_star"]
            if gap < 0.0 and not self._warned_below_f_star:
                self._warned_below_f_star = True
                warnings.warn(
                    f"{type(self).__name__}: the loss {float(loss):.6g} is below f_star = "
                    f"{group['f_star']:.6g}, so the Polyak step is 0; f_star must be a lower "
                    "bound of every batch loss",
                    stacklevel=2,
                )
            gap = max(gap, 0.0)
            polyak = gap / (group["c"] * norm_sq) if norm_sq > 0.0 else 0.0
            gamma = min(group["lr"], polyak)
            self.last_step_size.append(gamma)
            for ps, dd in group_by_device_dtype(params, ds).values():
                decoupled_decay_(ps, gamma * group["weight_decay"])
                torch._foreach_add_(ps, dd, alpha=-gamma)
        return loss


class PolyakMomentum(SPS):
    """:class:`SPS` with heavy-ball momentum by default (``momentum=0.9``, ``c=1``): ALR-SMAG."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        c: float = 1.0,
        f_star: float = 0.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nonfinite: NonFinite = "raise",
    ) -> None:
        super().__init__(params, lr, c, f_star, momentum, weight_decay, nonfinite)
