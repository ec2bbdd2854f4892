"""One record per (problem, method) run, and the ``results.json`` it is saved in."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "STATUSES", "RunRecord", "load_results", "save_results"]

SCHEMA_VERSION = 1

STATUSES = {
    "solved": "reached the reference value (or NIST accuracy) within the problem's tolerance",
    "unsolved": "stopped by its own test without reaching the reference",
    "budget": "ran out of evaluations or time without reaching the reference",
    "failed": "crashed or returned a non-finite value; the message says why",
    "unsupported": "the method cannot take this kind of problem",
    "unavailable": "the peer library is not installed",
}
"""Every status a run can end with, and what it means."""


@dataclass
class RunRecord:
    """What one method did on one problem (or one batch of problems).

    ``nfev`` and ``ngev`` are counted by the harness (evaluations of the
    function and derivative passes through it, per problem); ``time`` is wall
    seconds; ``f`` is the objective at the returned point (for a batch, the mean
    over problems); ``trace`` is the best-so-far history (``evals``, ``time``,
    ``f``; training traces have ``steps`` instead of ``evals``). A solved run's
    cost is ``time_to_solve`` / ``evals_to_solve``: the whole run for a solver,
    the first point of the trace that reached the target for training.
    """

    problem: str
    method: str
    library: str
    suite: str
    status: str
    kind: str = "solve"  # "solve" (a solver on a problem) or "train" (an optimizer on a task)
    message: str = ""
    f: float = math.nan
    f_ref: float | None = None
    f0: float = math.nan
    nfev: float = 0.0
    ngev: float = 0.0
    calls: int = 0
    time: float = 0.0
    n: int = 0
    batch_size: int = 1
    time_to_solve: float | None = None
    evals_to_solve: float | None = None
    solved_fraction: float | None = None
    accuracy: float | None = None
    method_success: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}, got {self.status!r}")

    @property
    def solved(self) -> bool:
        return self.status == "solved"

    @property
    def evals(self) -> float:
        """Evaluations and gradients together, the cost in the tables and profiles."""
        return self.nfev + self.ngev

    @property
    def ran(self) -> bool:
        return self.status not in ("unsupported", "unavailable")

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: _from_json(v) for k, v in data.items() if k in known})


def _json_safe(value: Any) -> Any:
    """Non-finite floats as strings ("inf", "nan"), so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _from_json(value: Any) -> Any:
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def save_results(path: str | Path, records: list[RunRecord], meta: dict[str, Any]) -> Path:
    """Write ``{"schema": 1, "meta": ..., "runs": [...]}`` as strict JSON."""
    path = Path(path)
    doc = {
        "schema": SCHEMA_VERSION,
        "meta": _json_safe(meta),
        "runs": [r.to_dict() for r in records],
    }
    path.write_text(json.dumps(doc, indent=1, allow_nan=False))
    return path


def load_results(path: str | Path) -> tuple[list[RunRecord], dict[str, Any]]:
    """Read a ``results.json`` written by :func:`save_results`."""
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema {doc.get('schema')!r}, expected {SCHEMA_VERSION}")
    return [RunRecord.from_dict(r) for r in doc["runs"]], doc["meta"]
