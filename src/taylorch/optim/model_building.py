"""SMB: stochastic gradient descent bolstered by a model step when Armijo fails."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from taylorch.optim.base import Closure, NonFinite, Optimizer, check_positive

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

    Each parameter tensor (a "group" in the paper's terms: one layer's weight or bias)
    gets its own model, hence its own step length and a direction that mixes ``s``,
    ``g`` and ``y``. With several param groups, the Armijo test sums ``lr ||g||^2`` over
    the groups.

    Cost per step: one forward+backward and one forward pass; when the model is built,
    one more forward+backward (the trial point's gradient). Memory: two copies of the
    gradient during a step (``g`` kept while ``g_t`` is computed), no state between steps.

    References:
        S. I. Birbil, Ö. Martin, G. Onay, F. Öztoprak, "Bolstering Stochastic Gradient
        Descent with Model Building", TOP 32 (2024); arXiv:2111.07058.
    """

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

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        closure = self._require_closure(closure)
        loss = self._evaluate(closure, grad=True)
        work = [w for w in self._all_params_with_grad() if w[1]]
        if not self._loss_ok(loss) or not self._grads_ok([g for _, _, gs in work for g in gs]):
            return loss
        params = [p for _, ps, _ in work for p in ps]
        grads = [g.clone() for _, _, gs in work for g in gs]
        lrs = [group["lr"] for group, ps, _ in work for _ in ps]
        etas = [group["eta"] for group, ps, _ in work for _ in ps]
        steps = torch._foreach_mul(grads, [-lr for lr in lrs])
        torch._foreach_add_(params, steps)
        norms = torch._foreach_norm(grads)
        decrease = sum(
            group["c"]
            * group["lr"]
            * float(torch.stack(norms[i : i + len(ps)]).double().square().sum())
            for i, (group, ps, _) in zip(_offsets(work), work)
        )
        trial = float(self._evaluate(closure, grad=False))
        if trial <= float(loss) - decrease or decrease == 0.0:
            return loss
        self.model_steps += 1
        self._evaluate(closure, grad=True)
        y = torch._foreach_sub([p.grad for p in params], grads)
        dots = torch.stack(
            [
                torch.stack(
                    [(a * b).sum() for a, b in ((s, s), (v, v), (g, g), (v, s), (v, g), (s, g))]
                )
                for s, v, g in zip(steps, y, grads)
            ]
        ).double()
        eta = torch.tensor(etas, dtype=torch.float64, device=dots.device)
        c_s, c_g, c_y = model_step_coefficients(*dots.unbind(1), eta)
        # x = (x0 + s) - s + c_s s + c_g g + c_y y
        torch._foreach_mul_(steps, (c_s - 1.0).tolist())
        torch._foreach_mul_(grads, c_g.tolist())
        torch._foreach_mul_(y, c_y.tolist())
        for update in (steps, grads, y):
            torch._foreach_add_(params, update)
        return loss


def _offsets(work: list) -> list[int]:
    out, i = [], 0
    for _, ps, _ in work:
        out.append(i)
        i += len(ps)
    return out
