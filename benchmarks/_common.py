"""Shared helpers for the scripts in ``benchmarks/``: timing, method lookup, tables, JSON.

Every script runs taylorch and its peers back to back in one process, prints
a rich table (with ratios), optionally the same table as Markdown for
``docs/benchmarks.md``, and writes every number to a JSON file.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "Table",
    "Timing",
    "environment",
    "fmt_ratio",
    "fmt_seconds",
    "measure",
    "measure_steady",
    "resolve_methods",
    "set_threads",
    "split_names",
    "time_call",
    "write_json",
]

NOT_AVAILABLE = "not available"


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in torch here and in JAX subprocesses started later.

    On a shared, loaded machine two OpenMP threads stall on each other: batched
    small-matrix ops run 10-40x slower than on one thread, so the scripts
    default to one thread for every peer alike.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if threads == 1:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()


def split_names(text: str) -> list[str]:
    """``"bfgs, l-bfgs"`` -> ``["bfgs", "l-bfgs"]`` (for ``--methods``-style options)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def resolve_methods(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split requested taylorch method names into ``(registered, not registered yet)``.

    A method that is not registered is reported by the caller as "not available"
    in its table and JSON, never dropped silently.
    """
    from taylorch.solve import METHODS

    names = list(names)
    return [n for n in names if n in METHODS], [n for n in names if n not in METHODS]


def time_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, fn())`` for one call, wall clock."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@dataclass(frozen=True)
class Timing:
    """Wall-clock and CPU seconds (this process, all threads) of one piece of work.

    On a shared, loaded machine the wall time of single-threaded work includes
    the time other processes held the core; its CPU time does not, so ratios
    of CPU times are the steadier comparison there.
    """

    wall: float
    cpu: float


def measure(fn: Callable[[], Any]) -> tuple[Timing, Any]:
    """``(Timing, fn())`` for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), out


def measure_steady(fn: Callable[[], Any], repeat: int) -> tuple[Timing, list[Timing], Any]:
    """Median wall and median CPU time of ``repeat`` further calls of ``fn`` (warmed up).

    Returns ``(medians, every timing, last output)``.
    """
    timings, out = [], None
    for _ in range(max(1, repeat)):
        timing, out = measure(fn)
        timings.append(timing)
    median = Timing(
        statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings)
    )
    return median, timings, out


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms" if seconds < 0.1 else f"{seconds:.3f} s"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.2f}x"


def environment() -> dict[str, Any]:
    """Machine and versions, stored next to the numbers."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("numpy", "scipy", "torchmin", "jax", "optimistix"):
        try:
            versions[module] = getattr(__import__(module), "__version__", "?")
        except ImportError:
            versions[module] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": versions,
        "git_commit": commit,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (with :func:`environment` under ``"environment"``) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"environment": environment(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return str(value)


class Table:
    """A titled table printed with rich, and the same rows as Markdown."""

    def __init__(self, title: str, columns: Sequence[str], note: str = ""):
        self.title = title
        self.columns = list(columns)
        self.note = note
        self.rows: list[list[str]] = []

    def add(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} cells, got {len(cells)}")
        self.rows.append([str(c) for c in cells])

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table as RichTable

        table = RichTable(title=self.title, caption=self.note or None)
        for i, name in enumerate(self.columns):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        Console(width=max(120, len(self.columns) * 14)).print(table)

    def markdown(self) -> str:
        lines = [f"**{self.title}**", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append(
            "|" + "|".join(":--" if i == 0 else "--:" for i in range(len(self.columns))) + "|"
        )
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"
