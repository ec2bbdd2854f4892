"""Muon: momentum, then orthogonalize each matrix update; AdamW for everything else."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from taylorch.optim.base import (
    Closure,
    NonFinite,
    Optimizer,
    check_betas,
    check_int,
    check_positive,
    check_unit_interval,
    group_by_device_dtype,
)
from taylorch.optim.transforms import (
    adamw_,
    decoupled_decay_,
    ema_,
    make_orthogonalizer,
    orthogonalize_by_shape,
)

__all__ = ["Muon", "muon_param_groups"]

AdjustLR = Literal["match_rms_adamw", "original"]


def matrix_shape(p: Tensor) -> tuple[int, int]:
    """The matrix a parameter is orthogonalized as: ``[out, in * k * ...]`` (conv weights)."""
    return (p.shape[0], p.numel() // p.shape[0])


def lr_scale(shape: tuple[int, int], adjust_lr: AdjustLR) -> float:
    rows, cols = shape
    if adjust_lr == "original":  # Jordan et al.: sqrt(max(1, rows / cols))
        return max(1.0, rows / cols) ** 0.5
    return 0.2 * max(rows, cols) ** 0.5  # Liu et al.: update RMS ~ AdamW's (0.2)


class Muon(Optimizer):
    r"""Muon: orthogonalized momentum for matrices, AdamW for the rest, in one optimizer.

    For every parameter with ``use_muon`` (by default: those with ``ndim >= 2``)::

        B <- mu B + (1 - mu) G                              (momentum, EMA form)
        U <- (1 - mu) G + mu B  if nesterov else B
        O <- polar(U as a [out, in*k*k] matrix)              (Newton-Schulz / Polar Express)
        W <- (1 - lr wd) W - lr * s(out, in*k*k) * O

    with the shape-dependent scale ``s`` of ``adjust_lr``: ``"match_rms_adamw"``
    (``0.2 sqrt(max(A, B))``, Liu et al. 2025: the same ``lr`` and ``weight_decay``
    then suit the AdamW part) or ``"original"`` (``sqrt(max(1, A/B))``, Jordan et al.).
    Every other parameter (biases, norms, and whatever a group marks
    ``use_muon=False``, e.g. embeddings and the output head via
    :func:`muon_param_groups`) gets AdamW with ``lr * adamw_lr_ratio``, ``adamw_betas``,
    ``adamw_eps`` and the group's ``weight_decay``.

    Same-shaped matrices of a group are stacked and orthogonalized in one batched
    call, in ``ns_dtype`` (bfloat16 by default, as the method tolerates).

    Cost per step: one gradient (the backward pass the user runs); per matrix
    ``3 * ns_steps`` matrix multiplies with an inner ``min(A, B)^2`` Gram matrix.
    Memory: one buffer per matrix (momentum); two per AdamW parameter.

    Args:
        params: parameters or groups; group keys: ``lr``, ``momentum``, ``nesterov``,
            ``weight_decay``, ``ns_steps``, ``orthogonalize``, ``ns_lower``, ``adjust_lr``,
            ``adamw_lr_ratio``, ``adamw_betas``, ``adamw_eps``, ``use_muon``
            (None: by dimension).
        lr: learning rate.
        momentum: ``mu`` in [0, 1).
        orthogonalize: ``"newton_schulz"`` (Jordan's tuned quintic) or ``"polar_express"``.
        ns_dtype: dtype of the orthogonalization (None: the parameter's).
        ns_lower: Polar Express's assumed lower bound of ``sigma_min / ||U||_F``; a larger
            one (1e-2) reaches a tight band in fewer steps for the directions that matter.
        nonfinite: ``"raise"`` or ``"skip"`` on a non-finite gradient.

    Example::

        opt = Muon(model.parameters(), lr=2e-3, weight_decay=0.1)
        # or, embeddings and head by AdamW:
        opt = Muon(muon_param_groups(model), lr=2e-3)

    References:
        K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024.
        J. Liu et al., "Muon is Scalable for LLM Training", arXiv:2502.16982, 2025.
        N. Amsel et al., "The Polar Express", arXiv:2505.16932, 2025.
    """

    supports_complex = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        orthogonalize: Literal["newton_schulz", "polar_express"] = "newton_schulz",
        adjust_lr: AdjustLR = "match_rms_adamw",
        adamw_lr_ratio: float = 1.0,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-8,
        ns_dtype: torch.dtype | None = torch.bfloat16,
        ns_lower: float = 1e-3,
        nonfinite: NonFinite = "raise",
    ) -> None:
        check_positive("lr", lr)
        check_unit_interval("momentum", momentum)
        check_positive("weight_decay", weight_decay)
        check_int("ns_steps", ns_steps)
        make_orthogonalizer(orthogonalize, ns_steps, ns_dtype)  # validates the name
        if not isinstance(ns_lower, (int, float)) or not 0.0 < ns_lower < 1.0:
            raise ValueError(f"ns_lower must be in (0, 1), got {ns_lower!r}")
        if adjust_lr not in ("match_rms_adamw", "original"):
            raise ValueError(
                f"adjust_lr must be 'match_rms_adamw' or 'original', got {adjust_lr!r}"
            )
        check_positive("adamw_lr_ratio", adamw_lr_ratio)
        check_betas(adamw_betas, "adamw_betas")
        check_positive("adamw_eps", adamw_eps)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            ns_steps=ns_steps,
            orthogonalize=orthogonalize,
            adjust_lr=adjust_lr,
            adamw_lr_ratio=adamw_lr_ratio,
            adamw_betas=tuple(adamw_betas),
            adamw_eps=adamw_eps,
            ns_lower=ns_lower,
            use_muon=None,
        )
        self.ns_dtype = ns_dtype
        super().__init__(params, defaults, nonfinite)

    @staticmethod
    def _is_muon(group: dict[str, Any], p: Tensor) -> bool:
        use = group["use_muon"]
        return p.ndim >= 2 if use is None else bool(use) and p.ndim >= 1

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
            nonempty = [i for i, p in enumerate(params) if p.numel() > 0]
            muon = [i for i in nonempty if self._is_muon(group, params[i])]
            rest = [i for i in nonempty if not self._is_muon(group, params[i])]
            if muon:
                self._muon_update(group, [params[i] for i in muon], [grads[i] for i in muon])
            if rest:
                self._adamw_update(group, [params[i] for i in rest], [grads[i] for i in rest])
        return loss

    def _muon_update(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]
    ) -> None:
        mu, lr = group["momentum"], group["lr"]
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            bufs.append(state["momentum_buffer"])
        orth = make_orthogonalizer(
            group["orthogonalize"], group["ns_steps"], self.ns_dtype, group["ns_lower"]
        )
        for ps, gs, bs in group_by_device_dtype(params, grads, bufs).values():
            ema_(bs, gs, mu)
            updates = torch._foreach_lerp(gs, bs, mu) if group["nesterov"] else bs
            shapes = [matrix_shape(p) for p in ps]
            ortho = orthogonalize_by_shape(updates, shapes, orth)
            decoupled_decay_(ps, lr * group["weight_decay"])
            scales = [-lr * lr_scale(s, group["adjust_lr"]) for s in shapes]
            torch._foreach_mul_(ortho, scales)
            torch._foreach_add_(ps, ortho)

    def _adamw_update(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]
    ) -> None:
        by_step: dict[tuple, tuple[list[Tensor], ...]] = {}
        for p, g in zip(params, grads):
            state = self.state[p]
            if "exp_avg" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            key = (state["step"], p.device, p.dtype)
            lists = by_step.setdefault(key, ([], [], [], []))
            for dst, item in zip(lists, (p, g, state["exp_avg"], state["exp_avg_sq"])):
                dst.append(item)
        for (step, _, _), (ps, gs, ms, vs) in by_step.items():
            adamw_(
                ps,
                gs,
                ms,
                vs,
                step,
                group["lr"] * group["adamw_lr_ratio"],
                group["adamw_betas"],
                group["adamw_eps"],
                group["weight_decay"],
            )


def muon_param_groups(
    model: nn.Module,
    adamw_embeddings: bool = True,
    adamw_head: bool = True,
    head: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """Param groups for :class:`Muon` with embeddings and the output head on AdamW.

    Embeddings are the parameters of ``nn.Embedding``/``nn.EmbeddingBag`` modules. The
    head is ``head`` if given, else an ``nn.Linear`` whose weight is an embedding's
    (weight tying), else the last ``nn.Linear`` registered (``model.modules()`` order:
    pass ``head`` where the model defines it before its body). A parameter shared by
    several modules is listed once. Everything else keeps the default routing
    (matrices by Muon, vectors by AdamW).
    """
    adamw: dict[int, Tensor] = {}
    embeddings = [m for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    if adamw_embeddings:
        for m in embeddings:
            adamw.update((id(p), p) for p in m.parameters(recurse=False))
    if adamw_head:
        if head is None:
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            tied = {id(m.weight) for m in embeddings}
            head = next((m for m in linears if id(m.weight) in tied), None)
            head = head if head is not None else (linears[-1] if linears else None)
        if head is not None:
            adamw.update((id(p), p) for p in head.parameters(recurse=False))
    rest = [p for p in model.parameters() if id(p) not in adamw]
    groups: list[dict[str, Any]] = [{"params": rest}]
    if adamw:
        groups.append({"params": list(adamw.values()), "use_muon": False})
    return groups
