"""The terminal side of ``taylorch bench``: a live progress line and the result tables (rich)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from taylorch.bench.records import RunRecord
from taylorch.bench.report import summary_rows, training_rows
from taylorch.bench.runner import Observer
from taylorch.bench.summary import summarize

__all__ = ["RichObserver", "print_tables"]


class RichObserver(Observer):
    """Shows the suite, the problem and method running now, runs done/remaining, elapsed time."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[suite]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[now]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task: TaskID | None = None
        self.t0 = time.perf_counter()

    def start(self, total: int, label: str) -> None:
        if self.task is None:
            self.progress.start()
        else:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("", total=total, suite=escape(label), now="")

    def begin(self, problem: str, method: str) -> None:
        self.progress.update(self.task, now=escape(f"{problem} · {method}"))

    def done(self) -> None:
        self.progress.advance(self.task)

    def finish(self) -> None:
        self.progress.update(self.task, now="done")

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


def _print(console: Console, title: str, header: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title, title_justify="left")
    for h in header:
        left = h in ("method", "status", "note")
        table.add_column(h, justify="left" if left else "right", no_wrap=h != "note")
    for row in rows:
        table.add_row(*(Text(str(c)) for c in row))
    console.print(table)


def print_tables(records: Sequence[RunRecord], console: Console | None = None) -> None:
    """Per suite, a per-method summary (solvers) or one table per task (training)."""
    console = console or Console()
    summaries = summarize(records)
    for suite in dict.fromkeys(r.suite for r in records):
        runs = [r for r in records if r.suite == suite]
        if runs[0].kind == "train":
            for task in dict.fromkeys(r.problem for r in runs):
                mine = [r for r in runs if r.problem == task]
                _print(console, f"{suite}: {task}", *training_rows(mine))
        else:
            _print(console, suite, *summary_rows([s for s in summaries if s.suite == suite]))
