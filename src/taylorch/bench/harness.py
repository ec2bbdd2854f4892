"""``taylorch.bench.run``: the Python API behind ``taylorch bench``.

Pick a suite by name (or pass your own problems), pick methods by name or
pattern, optionally add every installed peer, and get a :class:`BenchResult`
that prints as a table and saves ``results.json``, PNG plots and one
self-contained ``report.html``.

Example:
    >>> import torch
    >>> from taylorch import bench
    >>> quad = bench.Problem("my-quadratic", x0=torch.ones(5, dtype=torch.float64),
    ...                      fun=lambda x: (x**2).sum(-1), f_star=0.0)
    >>> result = bench.run([quad], methods="taylorch:bfgs,scipy:bfgs")
    >>> [r.status for r in result.records]
    ['solved', 'solved']
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from taylorch.bench.methods import LIBRARIES, METHODS, Method, Settings, match
from taylorch.bench.methods.optimizers import TRAINING_METHODS, TrainingMethod
from taylorch.bench.problems.base import Problem
from taylorch.bench.records import RunRecord, save_results
from taylorch.bench.runner import Observer, run_problems
from taylorch.bench.suites import Suite, expand_suite
from taylorch.bench.summary import MethodSummary, summarize
from taylorch.bench.train import run_training

__all__ = ["BenchResult", "as_problem", "run"]

PEER_LIBRARIES = tuple(lib for lib in LIBRARIES if lib != "taylorch")


@dataclass
class BenchResult:
    """Every run record, the run's metadata, and what to do with them."""

    records: list[RunRecord]
    meta: dict[str, Any] = field(default_factory=dict)

    def summaries(self) -> list[MethodSummary]:
        return summarize(self.records)

    def save(self, out: str | Path) -> Path:
        """Write ``results.json``, the PNG plots and ``report.html`` into ``out``; return the report."""
        from taylorch.bench.report import write_report

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_results(out / "results.json", self.records, self.meta)
        return write_report(self.records, self.meta, out)


def as_problem(obj: Any, index: int = 0) -> Problem:
    """A :class:`Problem` from any object with ``fun`` or ``residual``, ``x0`` and optional
    ``f_star``, ``name``, ``batched`` and ``metadata``."""
    if isinstance(obj, Problem):
        return obj
    if not hasattr(obj, "x0"):
        raise TypeError(f"problem {index} has no x0; a problem needs x0 and fun or residual")
    return Problem(
        name=str(getattr(obj, "name", f"problem-{index}")),
        x0=obj.x0,
        fun=getattr(obj, "fun", None),
        residual=getattr(obj, "residual", None),
        f_star=getattr(obj, "f_star", None),
        batched=bool(getattr(obj, "batched", False)),
        tags=dict(getattr(obj, "metadata", {}) or {}),
    )


def _peer_libraries(peers: bool | str | Sequence[str] | None) -> tuple[str, ...]:
    if peers is None or peers is False:
        return ()
    if peers is True or peers == "all":
        return PEER_LIBRARIES
    names = [p.strip() for p in (peers.split(",") if isinstance(peers, str) else peers)]
    aliases = {"pytorch-minimize": "torchmin", "pytorch-optimizer": "pytorch_optimizer"}
    names = [aliases.get(n, n) for n in names if n]
    unknown = [n for n in names if n not in PEER_LIBRARIES]
    if unknown:
        raise ValueError(f"peers: unknown {unknown}; known: {', '.join(PEER_LIBRARIES)}")
    return tuple(names)


def _choose(suite: Suite, methods, peers: tuple[str, ...], registry, quick: bool):
    """The suite's defaults (patterns this installation lacks are skipped) or the user's
    methods (strict), plus the suite's peer methods from the chosen peer libraries."""
    if methods is None:
        chosen = []
        for pattern in suite.method_patterns(quick).split(","):
            try:
                chosen += [m for m in match(pattern, registry) if m not in chosen]
            except ValueError:  # a default taylorch method this installation does not have
                continue
    elif isinstance(methods, str):
        chosen = match(methods, registry)
    else:
        chosen = []
        for m in methods:
            found = [m] if isinstance(m, (Method, TrainingMethod)) else match(m, registry)
            chosen += [x for x in found if x not in chosen]
    if peers and suite.peers:
        for m in match(suite.peers, registry):
            if m.library in peers and m not in chosen:
                chosen.append(m)
    return chosen


def _custom_suite(problems: Sequence[Any]) -> Suite:
    built = [as_problem(p, i) for i, p in enumerate(problems)]
    return Suite(
        "custom",
        "problems given by the user",
        problems=lambda quick, seed: built,
        methods="taylorch:*,scipy:bfgs,scipy:lm",
        peers="scipy:*,torchmin:*,torch.optim:lbfgs,lmfit:*,optimistix:*",
    )


def run(
    suite: str | Suite | Sequence[Any] = "default",
    methods: str | Sequence[str | Method] | None = None,
    *,
    peers: bool | str | Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    quick: bool = False,
    settings: Settings | None = None,
    out: str | Path | None = None,
    observer: Observer | None = None,
) -> BenchResult:
    """Run a benchmark and return its records (and save them when ``out`` is given).

    Args:
        suite: a suite name (see ``taylorch bench --list``), a :class:`Suite`, or a
            list of problems (``Problem`` objects or anything with ``x0`` and
            ``fun``/``residual``, optional ``f_star``, ``name``, ``metadata``).
        methods: comma-separated names or patterns (``"taylorch:*,scipy:bfgs"``)
            or method objects; default: the suite's own choice.
        peers: add every installed peer (``True``/``"all"``) or the named ones;
            a peer that is not installed is recorded as "unavailable".
        device, dtype: where and in what precision to run (default dtype:
            float64 for solvers, float32 for training).
        seed: seeds batched starts, training initialization and stochastic methods.
        quick: the reduced version of each suite (about 20-30 s in all).
        settings: override the suite's tolerance and budget.
        out: directory for ``results.json``, plots and ``report.html``.
        observer: live-progress hooks (the CLI passes a rich display).
    """
    started = time.time()
    device = _check_device(device)
    if isinstance(suite, Suite):
        suites = [suite]
    elif isinstance(suite, str):
        suites = expand_suite(suite)
    else:
        suites = [_custom_suite(list(suite))]
    peer_libs = _peer_libraries(peers)
    records: list[RunRecord] = []
    for s in suites:
        if s.kind == "train":
            chosen = _choose(s, methods, peer_libs, TRAINING_METHODS, quick)
            records += run_training(
                s.tasks(quick), chosen, steps=s.steps(quick), sweep=1 if quick else s.sweep, seed=seed,
                dtype=dtype or torch.float32, device=device, suite=s.name, observer=observer,
            )  # fmt: skip
        else:
            chosen = _choose(s, methods, peer_libs, METHODS, quick)
            records += run_problems(
                s.problems(quick, seed), chosen, settings=settings or s.settings(quick),
                suite=s.name, dtype=dtype or torch.float64, device=device, seed=seed,
                observer=observer,
            )  # fmt: skip
    result = BenchResult(records, _meta(suites, peer_libs, quick, seed, device, dtype, started))
    if out is not None:
        result.save(out)
    return result


def _check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` that can hold a tensor, else a ``ValueError``."""
    try:
        device = torch.device(device)
        torch.zeros(1, device=device)
    except (RuntimeError, AssertionError, TypeError) as exc:  # torch's own errors
        raise ValueError(f"device {str(device)!r} is not usable here: {exc}") from None
    return device


def _meta(suites, peers, quick, seed, device, dtype, started) -> dict[str, Any]:
    import taylorch

    return {
        "suites": [s.name for s in suites],
        "peers": list(peers),
        "quick": quick,
        "seed": seed,
        "device": str(device),
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
        "command": " ".join(sys.argv),
        "taylorch": taylorch.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 2),
    }
