"""NIST StRD nonlinear least-squares reference problems.

The 27 datasets of the NIST Statistical Reference Datasets (nonlinear
regression) ship as the original ``.dat`` files in ``taylorch/data/nist_strd``.
Each file gives the model formula, two starting points ("Start 1" far,
"Start 2" closer), certified parameter values and standard deviations to
11 significant digits, the certified residual sum of squares, and the data.

The models below are written from those headers, batched over parameters:
``model(x, b)`` takes data ``x`` of shape ``(N,)`` (``(N, 2)`` for Nelson) and
parameters ``b`` of shape ``(..., p)`` and returns predictions ``(..., N)``.
For Nelson the model predicts ``log(y)``, so :attr:`NistProblem.y` holds the
log of the observed response there.

Reference: NIST Information Technology Laboratory, Statistical Reference
Datasets, Nonlinear Regression, https://www.itl.nist.gov/div898/strd/nls/nls_main.shtml
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import torch
from torch import Tensor

from taylorch.bench.problems.base import Problem

__all__ = ["NIST_NAMES", "NistProblem", "load_nist", "nist_problems"]

Model = Callable[[Tensor, Tensor], Tensor]


def _params(b: Tensor) -> list[Tensor]:
    """Split ``(..., p)`` parameters into ``p`` tensors of shape ``(..., 1)`` that broadcast over data."""
    return [bi.unsqueeze(-1) for bi in b.unbind(-1)]


def _exp_saturation(x: Tensor, b: Tensor) -> Tensor:  # BoxBOD, Misra1a
    b1, b2 = _params(b)
    return b1 * (1 - torch.exp(-b2 * x))


def _bennett5(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3 = _params(b)
    return b1 * (b2 + x) ** (-1 / b3)


def _chwirut(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3 = _params(b)
    return torch.exp(-b1 * x) / (b2 + b3 * x)


def _danwood(x: Tensor, b: Tensor) -> Tensor:
    b1, b2 = _params(b)
    return b1 * x**b2


def _enso(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3, b4, b5, b6, b7, b8, b9 = _params(b)
    w = 2 * math.pi * x
    return (
        b1
        + b2 * torch.cos(w / 12)
        + b3 * torch.sin(w / 12)
        + b5 * torch.cos(w / b4)
        + b6 * torch.sin(w / b4)
        + b8 * torch.cos(w / b7)
        + b9 * torch.sin(w / b7)
    )


def _eckerle4(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3 = _params(b)
    return (b1 / b2) * torch.exp(-0.5 * ((x - b3) / b2) ** 2)


def _gauss(x: Tensor, b: Tensor) -> Tensor:  # Gauss1-3
    b1, b2, b3, b4, b5, b6, b7, b8 = _params(b)
    return (
        b1 * torch.exp(-b2 * x)
        + b3 * torch.exp(-((x - b4) ** 2) / b5**2)
        + b6 * torch.exp(-((x - b7) ** 2) / b8**2)
    )


def _rational(num: int) -> Model:
    """Polynomial of degree ``num - 1`` over ``1 +`` polynomial (Hahn1, Kirby2, Thurber)."""

    def model(x: Tensor, b: Tensor) -> Tensor:
        c = _params(b)
        top = sum(ci * x**k for k, ci in enumerate(c[:num]))
        bottom = 1 + sum(ci * x ** (k + 1) for k, ci in enumerate(c[num:]))
        return top / bottom

    return model


def _lanczos(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3, b4, b5, b6 = _params(b)
    return b1 * torch.exp(-b2 * x) + b3 * torch.exp(-b4 * x) + b5 * torch.exp(-b6 * x)


def _mgh09(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3, b4 = _params(b)
    return b1 * (x**2 + x * b2) / (x**2 + x * b3 + b4)


def _mgh10(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3 = _params(b)
    return b1 * torch.exp(b2 / (x + b3))


def _mgh17(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3, b4, b5 = _params(b)
    return b1 + b2 * torch.exp(-x * b4) + b3 * torch.exp(-x * b5)


def _misra1b(x: Tensor, b: Tensor) -> Tensor:
    b1, b2 = _params(b)
    return b1 * (1 - (1 + b2 * x / 2) ** (-2))


def _misra1c(x: Tensor, b: Tensor) -> Tensor:
    b1, b2 = _params(b)
    return b1 * (1 - (1 + 2 * b2 * x) ** (-0.5))


def _misra1d(x: Tensor, b: Tensor) -> Tensor:
    b1, b2 = _params(b)
    return b1 * b2 * x / (1 + b2 * x)


def _nelson(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3 = _params(b)
    return b1 - b2 * x[:, 0] * torch.exp(-b3 * x[:, 1])


def _rat42(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3 = _params(b)
    return b1 / (1 + torch.exp(b2 - b3 * x))


def _rat43(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3, b4 = _params(b)
    return b1 / (1 + torch.exp(b2 - b3 * x)) ** (1 / b4)


def _roszman1(x: Tensor, b: Tensor) -> Tensor:
    b1, b2, b3, b4 = _params(b)
    return b1 - b2 * x - torch.atan(b3 / (x - b4)) / math.pi


_MODELS: dict[str, Model] = {
    "Bennett5": _bennett5,
    "BoxBOD": _exp_saturation,
    "Chwirut1": _chwirut,
    "Chwirut2": _chwirut,
    "DanWood": _danwood,
    "ENSO": _enso,
    "Eckerle4": _eckerle4,
    "Gauss1": _gauss,
    "Gauss2": _gauss,
    "Gauss3": _gauss,
    "Hahn1": _rational(4),
    "Kirby2": _rational(3),
    "Lanczos1": _lanczos,
    "Lanczos2": _lanczos,
    "Lanczos3": _lanczos,
    "MGH09": _mgh09,
    "MGH10": _mgh10,
    "MGH17": _mgh17,
    "Misra1a": _exp_saturation,
    "Misra1b": _misra1b,
    "Misra1c": _misra1c,
    "Misra1d": _misra1d,
    "Nelson": _nelson,
    "Rat42": _rat42,
    "Rat43": _rat43,
    "Roszman1": _roszman1,
    "Thurber": _rational(4),
}

NIST_NAMES: tuple[str, ...] = tuple(sorted(_MODELS, key=str.lower))
"""The 27 dataset names, alphabetical."""


@dataclass(frozen=True)
class NistProblem:
    """One NIST StRD nonlinear regression dataset with its certified results (float64)."""

    name: str
    model: Model
    x: Tensor
    y: Tensor
    start1: Tensor
    start2: Tensor
    certified_params: Tensor
    certified_std: Tensor
    certified_rss: float
    certified_residual_sd: float
    dof: int  # observations - parameters (Rat43.dat misprints 9 for 11)
    difficulty: str

    @property
    def n_params(self) -> int:
        return int(self.certified_params.numel())

    def residual(self, params: Tensor) -> Tensor:
        """``y - model(x, params)`` for ``params`` of shape ``(..., p)``, in their dtype/device."""
        x, y = _data_on(self.name, params.dtype, params.device)
        return y - self.model(x, params)

    def rss(self, params: Tensor) -> Tensor:
        """Residual sum of squares at ``params`` (shape ``(...)``)."""
        r = self.residual(params)
        return (r * r).sum(-1)

    def min_log_relative_error(self, params: Tensor) -> float:
        """The fewest correct digits over the parameters (NIST's score of a fit)."""
        return float(self.log_relative_error(params.detach().cpu().double()).min())

    def log_relative_error(self, params: Tensor) -> Tensor:
        """NIST's LRE per parameter: ``-log10(|b - b_cert| / |b_cert|)``, capped at 11 digits."""
        cert = self.certified_params.to(params)
        rel = (params - cert).abs() / cert.abs()
        return (-torch.log10(rel)).nan_to_num(nan=0.0).clamp(0.0, 11.0)

    def as_problem(self, start: int = 1) -> Problem:
        """The problem ``min_b sum (y - model(x, b))**2`` from "Start 1" or "Start 2"."""
        if start not in (1, 2):
            raise ValueError(f"start must be 1 or 2, got {start!r}")
        return Problem(
            name=f"{self.name}-s{start}",
            x0=(self.start1 if start == 1 else self.start2).clone(),
            residual=self.residual,
            f_star=self.certified_rss,
            x_star=self.certified_params.clone(),
            source="NIST StRD nonlinear regression",
            tags={
                "suite": "nist",
                "dataset": self.name,
                "start": start,
                "difficulty": self.difficulty,
            },
            accuracy=self.min_log_relative_error,
        )


_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PARAM_LINE = re.compile(rf"^\s*b(\d+)\s*=\s*({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*$")


def _header_value(text: str, label: str) -> str:
    match = re.search(rf"^{label}:\s+(\S+)\s*$", text, flags=re.MULTILINE)
    if match is None:
        raise ValueError(f"NIST file lacks the line {label!r}")
    return match.group(1)


@cache
def load_nist(name: str) -> NistProblem:
    """Parse the shipped NIST StRD file ``name`` (one of :data:`NIST_NAMES`)."""
    if name not in _MODELS:
        raise ValueError(f"name must be one of {', '.join(NIST_NAMES)}; got {name!r}")
    text = (files("taylorch") / "data" / "nist_strd" / f"{name}.dat").read_text()
    lines = text.splitlines()
    params = [m.groups() for m in map(_PARAM_LINE.match, lines) if m]
    if [int(p[0]) for p in params] != list(range(1, len(params) + 1)):
        raise ValueError(f"{name}.dat: parameter lines are not b1..bp in order")
    cols = [torch.tensor([float(p[k]) for p in params], dtype=torch.float64) for k in range(1, 5)]
    start = next(i for i, ln in enumerate(lines) if re.match(r"^Data:\s+y\s", ln))
    rows = [[float(v) for v in ln.split()] for ln in lines[start + 1 :] if ln.strip()]
    data = torch.tensor(rows, dtype=torch.float64)
    n_obs = int(_header_value(text, "Number of Observations"))
    if data.shape[0] != n_obs:
        raise ValueError(f"{name}.dat: expected {n_obs} observations, read {data.shape[0]}")
    y, x = data[:, 0], data[:, 1:]
    x = x[:, 0] if x.shape[1] == 1 else x
    if name == "Nelson":  # the model is for log(y)
        y = torch.log(y)
    difficulty = re.search(r"(Lower|Average|Higher) Level of Difficulty", text)
    return NistProblem(
        name=name,
        model=_MODELS[name],
        x=x,
        y=y,
        start1=cols[0],
        start2=cols[1],
        certified_params=cols[2],
        certified_std=cols[3],
        certified_rss=float(_header_value(text, "Residual Sum of Squares")),
        certified_residual_sd=float(_header_value(text, "Residual Standard Deviation")),
        dof=n_obs - len(params),
        difficulty=difficulty.group(1).lower() if difficulty else "unknown",
    )


@functools.lru_cache(maxsize=128)
def _data_on(name: str, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """A dataset's ``x`` and ``y`` cast once per dtype and device, not on every evaluation."""
    p = load_nist(name)
    return p.x.to(dtype=dtype, device=device), p.y.to(dtype=dtype, device=device)


def nist_problems(starts: tuple[int, ...] = (1, 2)) -> list[Problem]:
    """Every NIST dataset as a :class:`Problem`, from each of ``starts``."""
    return [load_nist(n).as_problem(s) for n in NIST_NAMES for s in starts]
