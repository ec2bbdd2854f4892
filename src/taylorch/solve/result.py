"""The outcome of a solve: one enum of statuses with their messages, and ``Result``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

__all__ = ["Result", "Status"]


class Status(enum.IntEnum):
    """Why a problem stopped. Values ``<= 1`` are successes."""

    RUNNING = -1
    CONVERGED = 0
    SMALL_STEP = 1
    MAX_ITER = 2
    MAX_FEV = 3
    MAX_TIME = 4
    NO_PROGRESS = 5
    NONFINITE = 6
    CALLBACK = 7
    UNBOUNDED = 8

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def success(self) -> bool:
        return self in (Status.CONVERGED, Status.SMALL_STEP)


_MESSAGES = {
    Status.RUNNING: "Still running.",
    Status.CONVERGED: "Converged: the first-order optimality measure is within gtol.",
    Status.SMALL_STEP: "Converged: the change in x and in f is within xtol and ftol.",
    Status.MAX_ITER: "Stopped: the maximum number of iterations was reached.",
    Status.MAX_FEV: "Stopped: the maximum number of function evaluations was reached.",
    Status.MAX_TIME: "Stopped: the time limit was reached.",
    Status.NO_PROGRESS: (
        "Stopped: no step decreases the objective further at this precision; "
        "the tolerance may be too tight for the dtype."
    ),
    Status.NONFINITE: "Failed: the objective or its derivatives are not finite near the iterate.",
    Status.CALLBACK: "Stopped by the callback.",
    Status.UNBOUNDED: (
        "Stopped: the objective appears unbounded below (it fell below -1e20 max(1, |f(x0)|))."
    ),
}


@dataclass
class Result:
    """What a solver returns, with scipy's ``OptimizeResult`` field names.

    Unbatched solves give plain numbers (``fun``, ``nit``, ``success`` ...) and
    tensors of shape ``(n,)``; batched solves give tensors over the batch
    (``fun`` of shape ``(B,)``, ``x`` of ``(B, n)``, ``status`` of ``(B,)``) and a
    list of messages. ``x`` is the best iterate seen, not merely the last.
    """

    x: Tensor
    fun: Any
    jac: Tensor | None
    nit: Any
    nfev: Any
    njev: Any
    n_hvp: Any
    status: Any
    success: Any
    message: Any
    method: str
    wall_time: float
    history: dict[str, Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # Problem-specific fields (residuals, covariance ...) live in ``extra``.
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(name)

    def __getitem__(self, name: str) -> Any:  # scipy-style res["x"]
        return getattr(self, name)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "extra"] + list(self.extra)

    def __repr__(self) -> str:
        lines = []
        for key in self.keys():
            value = getattr(self, key)
            if isinstance(value, Tensor) and value.numel() > 8:
                value = f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
            elif isinstance(value, Status):  # an IntEnum formats as its bare number
                value = f"{int(value)} ({value.name})"
            lines.append(f"{key:>10}: {value}")
        return "Result(\n" + "\n".join(lines) + "\n)"


def status_fields(status: Tensor, batched: bool) -> tuple[Any, Any, Any]:
    """Return ``(status, success, message)`` in the Result's shape for a status tensor."""
    codes = [Status(int(s)) for s in status.tolist()]
    if batched:
        success = torch.tensor([c.success for c in codes], device=status.device)
        return status.clone(), success, [c.message for c in codes]
    return codes[0], codes[0].success, codes[0].message
