"""The built-in suites: which problems, which methods, what budget.

Each suite lists its problems (or training tasks) in two sizes, full and
``quick``, the methods run by default (taylorch's and a scipy baseline) and
the peer methods ``--peers`` adds. ``default`` is a composite: a small
deterministic set, a batched solve, the NIST set and a short training
comparison, sized to finish in about two minutes on two CPU cores.
Everything is built in: no network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from taylorch.bench.methods.base import Settings
from taylorch.bench.problems.base import Problem
from taylorch.bench.problems.batched import batched_problem, batched_problems
from taylorch.bench.problems.classic import CLASSIC_NAMES, classic_problem, classic_problems
from taylorch.bench.problems.nist import NIST_NAMES, load_nist
from taylorch.bench.problems.training import TRAINING_TASKS, TrainingTask

__all__ = ["COMPOSITES", "SUITES", "Suite", "expand_suite"]

# Method lists; a taylorch name this installation lacks is skipped in defaults.
_SMALL_METHODS = ",".join(
    ["taylorch:nelder-mead", "taylorch:bfgs", "taylorch:l-bfgs", "taylorch:newton-cg",
     "taylorch:trust-exact", "taylorch:lm", "scipy:bfgs", "scipy:lm"]
)  # fmt: skip
_QUICK_METHODS = "taylorch:bfgs,taylorch:newton-cg,taylorch:lm,scipy:bfgs,scipy:lm"
_PEERS_MIN = "scipy:*,torchmin:*,torch.optim:lbfgs,optimistix:bfgs,optimistix:nonlinear-cg"
_PEERS_LSQ = ",".join(
    ["scipy:lm", "scipy:trf", "scipy:dogbox", "lmfit:*", "optimistix:lm",
     "optimistix:gauss-newton", "optimistix:dogleg"]
)  # fmt: skip


@dataclass(frozen=True)
class Suite:
    """A named set of problems (``kind="solve"``) or training tasks (``kind="train"``).

    ``problems(quick, seed)`` builds the problems; ``methods`` and ``peers``
    are comma-separated method patterns (``quick_methods`` replaces
    ``methods`` in quick mode); ``settings(quick)`` the budget. Training
    suites give ``tasks(quick)``, ``steps(quick)`` (``None``: each task's own)
    and ``sweep``, how many of each optimizer's learning rates to try (``None``:
    all; quick mode tries one).
    """

    name: str
    description: str
    kind: Literal["solve", "train"] = "solve"
    problems: Callable[[bool, int], list[Problem]] | None = None
    tasks: Callable[[bool], list[TrainingTask]] | None = None
    methods: str = ""
    quick_methods: str | None = None
    peers: str = ""
    settings: Callable[[bool], Settings] = lambda quick: Settings()
    steps: Callable[[bool], int | None] = lambda quick: None
    sweep: int | None = None

    def method_patterns(self, quick: bool) -> str:
        return self.quick_methods if quick and self.quick_methods else self.methods


def _budget(max_evals: int, max_time: float, quick_evals: int, quick_time: float):
    return lambda quick: Settings(
        max_evals=quick_evals if quick else max_evals, max_time=quick_time if quick else max_time
    )


_SMALL = ("rosenbrock", "freudenstein-roth", "beale", "helical-valley", "box-3d", "wood",
          "kowalik-osborne", "osborne1")  # fmt: skip
_QUICK = ("rosenbrock", "beale", "helical-valley")


def _small(quick: bool, seed: int) -> list[Problem]:
    return [classic_problem(n) for n in (_QUICK if quick else _SMALL)]


def _classic(quick: bool, seed: int) -> list[Problem]:
    if quick:
        return [classic_problem(n) for n in CLASSIC_NAMES[:12]]
    return classic_problems((100, 1000, 10000))


def _nist(quick: bool, seed: int) -> list[Problem]:
    if quick:
        return [load_nist(n).as_problem(2) for n in ("Misra1a", "DanWood", "MGH09")]
    return [load_nist(n).as_problem(s) for n in NIST_NAMES for s in (1, 2)]


def _batched(quick: bool, seed: int) -> list[Problem]:
    if quick:
        return [batched_problem("extended-rosenbrock", 16, 10, seed=seed)]
    return batched_problems(256, seed=seed)


def _batched_default(quick: bool, seed: int) -> list[Problem]:
    size = 8 if quick else 32
    return [batched_problem("extended-rosenbrock", size, 10, seed=seed)]


def _tasks(quick: bool) -> list[TrainingTask]:
    return [TRAINING_TASKS["digits-mlp"]] if quick else list(TRAINING_TASKS.values())


_TRAIN_DEFAULT = ",".join(
    ["torch.optim:adamw", "torch.optim:sgd", "torch.optim:muon", "taylorch:muon", "taylorch:sps",
     "taylorch:sls", "taylorch:adabound", "taylorch:zo-sgd"]
)  # fmt: skip
_TRAIN_QUICK = "torch.optim:adamw,torch.optim:sgd,taylorch:muon,taylorch:sps,taylorch:zo-sgd"
_TRAIN_PEERS = "torch.optim:*,heavyball:*,pytorch_optimizer:*"

SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("small", "8 classic problems at their standard size and start",
              problems=_small, methods=_SMALL_METHODS, quick_methods=_QUICK_METHODS,
              peers=f"{_PEERS_MIN},{_PEERS_LSQ}", settings=_budget(3000, 5.0, 1000, 2.0)),
        Suite("classic", "Moré-Garbow-Hillstrom + CUTE, standard starts, extended n = 100..10000",
              problems=_classic, methods="taylorch:*,scipy:bfgs,scipy:l-bfgs-b,scipy:lm",
              quick_methods=_QUICK_METHODS, peers=f"{_PEERS_MIN},{_PEERS_LSQ}",
              settings=_budget(5000, 10.0, 1000, 2.0)),
        Suite("nist", "27 NIST StRD nonlinear regressions from both starts, scored in digits",
              problems=_nist, methods="taylorch:lm,taylorch:dogleg-lsq,taylorch:bfgs,scipy:lm,scipy:trf",
              quick_methods="taylorch:lm,scipy:lm", peers=f"{_PEERS_LSQ},scipy:bfgs,torchmin:bfgs",
              settings=_budget(3000, 10.0, 500, 2.0)),
        Suite("nist-default", "the NIST suite with a smaller budget per fit",
              problems=_nist, methods="taylorch:lm,taylorch:dogleg-lsq,taylorch:bfgs,scipy:lm,scipy:trf",
              quick_methods="taylorch:lm,scipy:lm", peers=f"{_PEERS_LSQ},scipy:bfgs,torchmin:bfgs",
              settings=_budget(1000, 3.0, 500, 2.0)),
        Suite("batched", "256 independent problems per family, one call for taylorch",
              problems=_batched,
              methods="taylorch:bfgs,taylorch:l-bfgs,taylorch:newton-cg,taylorch:lm,scipy:bfgs,scipy:lm",
              quick_methods="taylorch:bfgs,scipy:bfgs", peers="torchmin:bfgs,torch.optim:lbfgs",
              settings=_budget(3000, 60.0, 1000, 10.0)),
        Suite("batched-default", "32 independent 10-d Rosenbrock problems",
              problems=_batched_default, methods="taylorch:bfgs,taylorch:lm,scipy:bfgs,scipy:lm",
              quick_methods="taylorch:bfgs,scipy:bfgs", peers="torchmin:bfgs",
              settings=_budget(3000, 30.0, 1000, 10.0)),
        Suite("training", "logistic regression and MLP on sklearn digits; char transformer",
              kind="train", tasks=_tasks, methods=_TRAIN_DEFAULT + ",taylorch:*",
              quick_methods=_TRAIN_QUICK, peers=_TRAIN_PEERS, steps=lambda quick: 20 if quick else None),
        Suite("training-default", "the training suite, shorter, two learning rates each",
              kind="train", tasks=_tasks, methods=_TRAIN_DEFAULT, quick_methods=_TRAIN_QUICK,
              peers=_TRAIN_PEERS, steps=lambda quick: 20 if quick else 100, sweep=2),
    )
}  # fmt: skip

COMPOSITES: dict[str, tuple[str, ...]] = {
    "default": ("small", "batched-default", "nist-default", "training-default"),
}
"""Suites that run several suites in turn."""


def expand_suite(name: str) -> list[Suite]:
    """The suites a name stands for (a composite expands to its parts)."""
    if name in COMPOSITES:
        return [SUITES[n] for n in COMPOSITES[name]]
    if name in SUITES:
        return [SUITES[name]]
    known = ", ".join([*COMPOSITES, *SUITES])
    raise ValueError(f"suite must be one of {known}; got {name!r}")
