"""The functional core of the training optimizers: small update transforms on tensor lists.

Each transform works on parallel lists of same-device, same-dtype tensors with
``torch._foreach_*`` kernels (one kernel launch per list, not per tensor), keeps its
state in tensors it is handed (named by the caller, e.g. ``state["momentum_buffer"]``)
and returns nothing it does not have to. The optimizer classes validate, look up
state and compose these.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from taylorch.linalg.matfun import newton_schulz, polar_express


def heavy_ball_(buffers: list[Tensor], grads: list[Tensor], beta: float) -> None:
    """``d <- beta d + g`` (the sum form of heavy-ball momentum)."""
    if beta != 0.0:
        torch._foreach_mul_(buffers, beta)
    torch._foreach_add_(buffers, grads)


def ema_(buffers: list[Tensor], values: list[Tensor], beta: float) -> None:
    """``m <- beta m + (1 - beta) v`` (exponential moving average)."""
    torch._foreach_lerp_(buffers, values, 1.0 - beta)


def ema_square_(buffers: list[Tensor], values: list[Tensor], beta: float) -> None:
    """``v <- beta v + (1 - beta) x * x``."""
    torch._foreach_mul_(buffers, beta)
    torch._foreach_addcmul_(buffers, values, values, 1.0 - beta)


def decoupled_decay_(params: list[Tensor], factor: float) -> None:
    """``p <- (1 - factor) p`` (decoupled weight decay, factor = lr * weight_decay)."""
    if factor != 0.0:
        torch._foreach_mul_(params, 1.0 - factor)


def adamw_(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> None:
    """One AdamW step (Loshchilov & Hutter 2019) on lists that share the step count.

    ``m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2; p <- (1 - lr wd) p - lr m_hat / (sqrt(v_hat) + eps)``
    with ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``.
    """
    beta1, beta2 = betas
    ema_(exp_avgs, grads, beta1)
    ema_square_(exp_avg_sqs, grads, beta2)
    decoupled_decay_(params, lr * weight_decay)
    bc1 = 1.0 - beta1**step
    bc2_sqrt = (1.0 - beta2**step) ** 0.5
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bc2_sqrt)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, -lr / bc1)


Orthogonalizer = Callable[[Tensor], Tensor]


def make_orthogonalizer(
    method: str, steps: int, dtype: torch.dtype | None, lower: float = 1e-3
) -> Orthogonalizer:
    """``G -> polar(G)`` for stacks ``(k, m, n)``, computed in ``dtype`` (None: G's dtype).

    ``lower`` is Polar Express's assumed ``sigma_min / ||G||_F`` (unused by Newton-Schulz).
    """
    if method not in ("newton_schulz", "polar_express"):
        raise ValueError(
            f"orthogonalize must be 'newton_schulz' or 'polar_express', got {method!r}"
        )

    def orthogonalize(G: Tensor) -> Tensor:
        X = G if dtype is None else G.to(dtype)
        if method == "newton_schulz":
            return newton_schulz(X, steps).to(G.dtype)
        return polar_express(X, steps, lower=lower).to(G.dtype)

    return orthogonalize


def orthogonalize_by_shape(
    updates: Sequence[Tensor], matrix_shapes: Sequence[tuple[int, int]], orth: Orthogonalizer
) -> list[Tensor]:
    """Orthogonalize each update viewed as its matrix shape; same shapes in one batched call."""
    by_key: dict[tuple, list[int]] = defaultdict(list)
    for i, (u, shape) in enumerate(zip(updates, matrix_shapes)):
        by_key[(shape, u.dtype, u.device)].append(i)
    out: list[Tensor | None] = [None] * len(updates)
    for (shape, _, _), idx in by_key.items():
        if len(idx) == 1:
            stack = updates[idx[0]].reshape(1, *shape)
        else:
            stack = torch.stack([updates[i].reshape(shape) for i in idx])
        result = orth(stack)
        for i, r in zip(idx, result.unbind(0)):
            out[i] = r.view(updates[i].shape)
    return out  # type: ignore[return-value]
