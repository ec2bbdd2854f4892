"""SMB: stochastic gradient descent bolstered by a model step when Armijo fails."""

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
    all_finite,
    check_positive,
)

__all__ = ["SMB"]


def model_step_coefficients(
    ss: Tensor, yy: Tensor, gg: Tensor, ys: Tensor, yg: Tensor, sg: Tensor, eta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Coefficients ``(c_s, c_g, c_y)`` of SMB's model step ``c_s s + c_g g + c_y y``.

    The minimizer of the model built from the trial step ``s``, the gradients ``g``
    (at x) and ``g_t`` (at x + s), ``y = g_t - g``, with the cubic regularization
    weight ``sigma`` chosen so that the step is a descent step (Birbil et al., eq. for
    ``sigma``, ``theta``). Works elementwise on tensors of per-parameter inner products.
    """
    sigma = 0.5 * (ss.sqrt() * (yy.sqrt() + gg.sqrt() / eta) - ys)
    shifted = ys + 2.0 * sigma
    theta = shifted.square() - ss * yy
    c_g = -ss / (2.0 * sigma)
    c_s = c_g / theta * (-shifted * yg + yy * sg)
    c_y = c_g / theta * (-shifted * sg + ss * yg)
    # A tensor whose gradient or trial step is zero (lr = 0): keep s (0/0 otherwise).
    flat = (gg == 0) | (ss == 0)
    return (
        torch.where(flat, 1.0, c_s),
        torch.where(flat, 0.0, c_g),
        torch.where(flat, 0.0, c_y),
    )


class SMB(Optimizer):
    r"""Stochastic model building (Birbil, Martin, Onay, Öztoprak), per parameter tensor.

    ::

        f, g = closure()                                    (forward + backward at x)
        s = -lr g;  f_t = closure() at x + s (no_grad)      (SGD trial step)
        if f_t <= f - c lr ||g||^2:  x <- x + s             (Armijo holds: keep it)
        else:                                                (build a model per tensor)
            g_t = gradient at x + s;  y = g_t - g
            x <- x + c_s s + c_g g + c_y y   with (c_s, c_g, c_y) from
                 <s,s>, <y,y>, <g,g>, <y,s>, <y,g>, <s,g> of that tensor
                 (in float64; a tensor whose model is degenerate in floating point,
                 with non-finite coefficients, stays at x, counted in
                 ``optimizer.degenerate_models``)

    Each parameter tensor (a "group" in the paper's terms: one layer's weight or bias)
    gets its own model, hence its own step length and a direction that mixes ``s``,
    ``g`` and ``y``. With several param groups, the Armijo test sums ``lr ||g||^2`` over
    the groups.

    Cost per step: one forward+backward and one forward pass; when the model is built,
    one more forward+backward (the trial point's gradient). Memory during a step: a copy
    of the parameters (the start, restored exactly when the policy for a non-finite
    trial gradient or model step applies) and of the gradient (``g`` kept while ``g_t``
    is computed); no state between steps. The trial passes see the random numbers
    (dropout masks) of the first (:class:`~taylorch.optim.base.SameRandomness`), and
    update BatchNorm's running statistics like any forward pass.

    References:
        S. I. Birbil, Ö. Martin, G. Onay, F. Öztoprak, "Bolstering Stochastic Gradient
        Descent with Model Building", TOP 32 (2024); arXiv:2111.07058.
    """

    supports_complex = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.5,
        c: float = 0.1,
        eta: float = 0.99,
        nonfinite: NonFinite = "raise",
    ) -> None:
        check_positive("lr", lr)
        check_positive("c", c, allow_zero=False)
        if not isinstance(eta, (int, float)) or not 0.0 < eta <= 1.0:
            raise ValueError(f"eta must be in (0, 1], got {eta!r}")
        super().__init__(params, dict(lr=lr, c=c, eta=eta), nonfinite)
        self.model_steps = 0
        self.degenerate_models = 0  # parameter tensors left in place by a degenerate model

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
        params = [p for _, ps, _ in work for p in ps]
        grads = [g.clone() for _, _, gs in work for g in gs]
        lrs = [group["lr"] for group, ps, _ in work for _ in ps]
        etas = [group["eta"] for group, ps, _ in work for _ in ps]
        starts = [p.clone() for p in params]
        for p, g, lr in zip(params, grads, lrs):  # the SGD trial x + s, s = -lr g
            p.add_(g, alpha=-lr)
        norms = torch._foreach_norm(grads)
        decrease = sum(
            group["c"]
            * group["lr"]
            * float(torch.stack(norms[i : i + len(ps)]).double().square().sum())
            for i, (group, ps, _) in zip(_offsets(work), work)
        )
        try:  # a closure that raises leaves the parameters where the step found them
            rng.before_call()
            trial = float(self._evaluate(closure, grad=False))
            if trial <= float(loss) - decrease or decrease == 0.0:
                return loss
            for p in params:  # g is kept in grads; a closure that does not zero them adds
                p.grad = None
            rng.before_call()
            self._evaluate(closure, grad=True)
        except BaseException:
            torch._foreach_copy_(params, starts)
            raise
        trial_grads = [p.grad for p in params]
        if any(g is None for g in trial_grads) or not all_finite(trial_grads):
            torch._foreach_copy_(params, starts)
            self._reject("gradient at the trial point")
            return loss
        y = torch._foreach_sub(trial_grads, grads)
        # Inner products in float64: in float32 they overflow long before the vectors do.
        dots = torch.stack(
            [
                torch.stack([_dot(a, b) for a, b in ((g, g), (v, v), (v, g))])
                for v, g in zip(y, grads)
            ]
        )
        gg, yy, yg = dots.unbind(1)
        lr = torch.tensor(lrs, dtype=torch.float64, device=dots.device)
        eta = torch.tensor(etas, dtype=torch.float64, device=dots.device)
        # s = -lr g: <s,s> = lr^2 <g,g>, <y,s> = -lr <y,g>, <s,g> = -lr <g,g>
        c_s, c_g, c_y = model_step_coefficients(lr * lr * gg, yy, gg, -lr * yg, yg, -lr * gg, eta)
        along_g = c_g - lr * c_s  # x = x0 + c_s s + c_g g + c_y y
        # A model degenerate in floating point (theta = 0): that tensor stays at x0.
        usable = torch.isfinite(along_g) & torch.isfinite(c_y)
        self.degenerate_models += int((~usable).sum())
        along_g = torch.where(usable, along_g, 0.0)
        c_y = torch.where(usable, c_y, 0.0)
        torch._foreach_copy_(params, starts)
        torch._foreach_mul_(grads, along_g.tolist())
        torch._foreach_mul_(y, c_y.tolist())
        torch._foreach_add_(params, grads)
        torch._foreach_add_(params, y)
        self.model_steps += 1
        return loss


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.dot(a.reshape(-1).double(), b.reshape(-1).double())


def _offsets(work: list) -> list[int]:
    out, i = [], 0
    for _, ps, _ in work:
        out.append(i)
        i += len(ps)
    return out
