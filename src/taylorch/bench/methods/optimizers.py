"""Training optimizers as benchmark methods, registered by ``"library:algorithm"`` name.

Each entry builds optimizer(s) for a model at a learning rate and lists the
small learning-rate sweep the harness tries (the best final loss is reported).
Every optimizer is stepped with the one closure convention of
:mod:`taylorch.optim.base` (zero_grad, forward, backward only when gradients
are enabled), so zeroth-order and line-search methods need nothing special.
Weight decay is zero throughout: the suite compares optimization, not
regularization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from taylorch.bench.methods.base import library_missing, match

__all__ = ["TRAINING_METHODS", "TrainingMethod", "select_training"]

Factory = Callable[[nn.Module, float], list[torch.optim.Optimizer]]


@dataclass(frozen=True)
class TrainingMethod:
    """An optimizer family: ``make(model, lr)`` and the learning rates to sweep."""

    library: str
    algorithm: str
    make: Factory
    lrs: tuple[float, ...]

    @property
    def name(self) -> str:
        return f"{self.library}:{self.algorithm}"

    def unavailable(self) -> str | None:
        return library_missing(self.library)


def _single(cls_path: str, **kwargs) -> Factory:
    """A factory for one optimizer class given as ``"module:Class"``, imported on use."""

    def make(model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
        module, name = cls_path.split(":")
        cls = getattr(__import__(module, fromlist=[name]), name)
        return [cls(model.parameters(), lr=lr, **kwargs)]

    return make


def _heavyball(name: str) -> Factory:
    """A heavyball optimizer run eagerly: its default ``torch.compile`` (with autotuning)
    would take minutes on a CPU and dominate a short benchmark."""

    def make(model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
        import heavyball
        import heavyball.utils

        heavyball.utils.compile_mode = None
        return [getattr(heavyball, name)(model.parameters(), lr=lr, compile_step=False)]

    return make


def _torch_muon(model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
    """torch.optim.Muon on the matrices, torch.optim.AdamW on everything else."""
    matrices = [p for p in model.parameters() if p.ndim == 2]
    rest = [p for p in model.parameters() if p.ndim != 2]
    opts: list[torch.optim.Optimizer] = [
        torch.optim.Muon(matrices, lr=lr, weight_decay=0.0, adjust_lr_fn="match_rms_adamw")
    ]
    if rest:
        opts.append(torch.optim.AdamW(rest, lr=lr, weight_decay=0.0))
    return opts


def _taylorch_muon(model: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
    from taylorch.optim import Muon, muon_param_groups

    return [Muon(muon_param_groups(model), lr=lr)]


ADAM_LRS = (1e-2, 3e-3, 1e-3)

TRAINING_METHODS: dict[str, TrainingMethod] = {
    m.name: m
    for m in (
        TrainingMethod("torch.optim", "adamw", _single("torch.optim:AdamW", weight_decay=0.0), ADAM_LRS),
        TrainingMethod("torch.optim", "sgd", _single("torch.optim:SGD", momentum=0.9), (0.3, 0.1, 0.03)),
        TrainingMethod("torch.optim", "muon", _torch_muon, ADAM_LRS),
        TrainingMethod("taylorch", "muon", _taylorch_muon, ADAM_LRS),
        TrainingMethod("taylorch", "sps", _single("taylorch.optim:SPS"), (10.0, 1.0, 0.1)),
        TrainingMethod("taylorch", "polyak-momentum", _single("taylorch.optim:PolyakMomentum"), (10.0, 1.0, 0.1)),
        TrainingMethod("taylorch", "sls", _single("taylorch.optim:SLS"), (10.0, 1.0)),
        TrainingMethod("taylorch", "smb", _single("taylorch.optim:SMB"), (0.5, 0.1)),
        TrainingMethod("taylorch", "adabound", _single("taylorch.optim:AdaBound"), ADAM_LRS),
        TrainingMethod("taylorch", "zo-sgd", _single("taylorch.optim:ZOSGD", seed=0), (1e-2, 1e-3, 1e-4)),
        TrainingMethod("taylorch", "zo-adam", _single("taylorch.optim:ZOAdam", seed=0), ADAM_LRS),
        TrainingMethod("taylorch", "zo-adamu", _single("taylorch.optim:ZOAdaMU", seed=0), ADAM_LRS),
        TrainingMethod("heavyball", "soap", _heavyball("SOAP"), ADAM_LRS),
        TrainingMethod("heavyball", "psgd-kron", _heavyball("PSGDKron"), (3e-3, 1e-3, 3e-4)),
        TrainingMethod("pytorch_optimizer", "adabelief", _single("pytorch_optimizer:AdaBelief"), ADAM_LRS),
        TrainingMethod("pytorch_optimizer", "adabound", _single("pytorch_optimizer:AdaBound"), ADAM_LRS),
        TrainingMethod("pytorch_optimizer", "lion", _single("pytorch_optimizer:Lion"), (3e-4, 1e-4, 3e-5)),
    )
}  # fmt: skip


def select_training(patterns: list[str] | str) -> list[TrainingMethod]:
    """Training methods matching names or shell patterns (see :func:`~.base.match`)."""
    return match(patterns, TRAINING_METHODS, "training method")
