"""Plots (PNG, matplotlib Agg) and one self-contained ``report.html`` embedding them.

For every solver suite: Dolan-Moré performance profiles (time and
evaluations) and convergence plots, ``f - f_ref`` against evaluations and
against time, for up to nine of its problems. For every training suite: the
evaluation loss against steps and against time, one row per task. The HTML
embeds each PNG as base64, so the report is one file; every name and
message in it passes through ``html.escape``, and through ``_tex_safe`` in
the plots (a ``$`` in a user's problem name would otherwise start mathtext).

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never
pyplot, so writing a report does not change the user's matplotlib backend.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from taylorch.bench.profiles import performance_profile
from taylorch.bench.records import STATUSES, RunRecord
from taylorch.bench.summary import MethodSummary, summarize

__all__ = ["plot_convergence", "plot_profiles", "plot_training", "write_report"]

MAX_CONVERGENCE_PANELS = 9
_STYLES = {"taylorch": "-"}


def _tex_safe(text: str) -> str:
    return text.replace("$", r"\$")


def _colors(methods: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if len(methods) > 10 else "tab10"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def _style(method: str) -> str:
    return _STYLES.get(method.split(":")[0], "--")


def _save(fig: Figure, path: Path) -> Path:
    """Write a PNG. Margins are set by each plot (a tight bounding box would draw twice)."""
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=90)
    return path


def plot_profiles(records: Sequence[RunRecord], path: Path, title: str) -> Path | None:
    """Performance profiles by time and by evaluations, side by side."""
    if not any(r.ran for r in records):
        return None
    fig = Figure(figsize=(11, 4.2))
    for ax, cost in zip(fig.subplots(1, 2), ("time", "evals")):
        prof = performance_profile(records, cost)
        colors = _colors(prof.methods)
        finite = prof.ratios[np.isfinite(prof.ratios)]
        right = max(2.0, float(finite.max()) * 1.5) if finite.size else 2.0
        for m in prof.methods:
            taus, rho = prof.curve(m)
            ax.step(np.append(taus, right), np.append(rho, rho[-1]), where="post",
                    color=colors[m], linestyle=_style(m), label=_tex_safe(m))  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlim(1, right)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"tau (ratio to the best {cost})")
        ax.set_ylabel("fraction of problems solved within tau")
        ax.set_title(f"{_tex_safe(title)}: performance profile ({cost})")
        ax.grid(alpha=0.3)
    fig.axes[-1].legend(fontsize=7, loc="lower right")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    return _save(fig, path)


def _gap(values: Sequence[float], f_ref: float | None, floor: float) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    ref = f_ref if f_ref is not None else float(np.nanmin(v)) if v.size else 0.0
    return np.maximum(v - ref, floor)


def plot_convergence(
    records: Sequence[RunRecord], path: Path, axis: str, title: str
) -> Path | None:
    """``f - f_ref`` against ``axis`` ("evals" or "time") for up to nine problems."""
    runs = [r for r in records if r.ran and r.trace.get("f")]
    problems = list(dict.fromkeys(r.problem for r in runs))[:MAX_CONVERGENCE_PANELS]
    if not problems:
        return None
    cols = min(3, len(problems))
    rows = math.ceil(len(problems) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    colors = _colors(list(dict.fromkeys(r.method for r in runs)))
    for ax, problem in zip(axes, problems):
        mine = [r for r in runs if r.problem == problem]
        refs = [r.f_ref for r in mine if r.f_ref is not None]
        best = min(min(r.trace["f"]) for r in mine)
        f_ref = refs[0] if refs else best
        for r in mine:
            x = np.maximum(np.asarray(r.trace[axis], dtype=float), 1e-6 if axis == "time" else 1)
            ax.step(x, _gap(r.trace["f"], f_ref, 1e-16), where="post", color=colors[r.method],
                    linestyle=_style(r.method), label=_tex_safe(r.method))  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(_tex_safe(problem), fontsize=9)
        ax.set_xlabel("evaluations" if axis == "evals" else "seconds", fontsize=8)
        ax.set_ylabel("f - f_ref", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(problems) :]:
        ax.set_visible(False)
    height = 3.2 * rows + 0.9
    fig.set_figheight(height)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(_tex_safe(f"{title}: best f - f_ref against {axis}"), y=1 - 0.1 / height)
    fig.legend(handles, labels, loc="upper center", ncol=min(6, len(labels)), fontsize=7,
               bbox_to_anchor=(0.5, 1 - 0.35 / height))  # fmt: skip
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.5 / height, top=1 - 0.95 / height,
                        hspace=0.55, wspace=0.3)  # fmt: skip
    return _save(fig, path)


def plot_training(records: Sequence[RunRecord], path: Path, title: str) -> Path | None:
    """Evaluation loss against steps and against seconds, one row per task."""
    runs = [r for r in records if r.ran and r.trace.get("f")]
    tasks = list(dict.fromkeys(r.problem for r in runs))
    if not tasks:
        return None
    fig = Figure(figsize=(11, 3.4 * len(tasks)))
    axes = np.atleast_2d(fig.subplots(len(tasks), 2))
    colors = _colors(list(dict.fromkeys(r.method for r in runs)))
    for row, task in zip(axes, tasks):
        for r in (r for r in runs if r.problem == task):
            label = _tex_safe(f"{r.method} (lr {r.tags.get('lr', '?'):g})")
            for ax, axis in zip(row, ("steps", "time")):
                ax.plot(r.trace[axis], r.trace["f"], color=colors[r.method],
                        linestyle=_style(r.method), label=label)  # fmt: skip
        for ax, axis in zip(row, ("steps", "seconds")):
            ax.set_yscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel("evaluation loss")
            ax.set_title(_tex_safe(f"{title}: {task}"), fontsize=9)
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=7)
    height = 3.4 * len(tasks)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.55 / height, top=1 - 0.35 / height,
                        hspace=0.45, wspace=0.2)  # fmt: skip
    return _save(fig, path)


# ------------------------------------------------------------------------ HTML


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.{digits}g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_rows(summaries: Sequence[MethodSummary]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-method table (shared by the terminal and the HTML)."""
    nist = any(s.median_digits is not None for s in summaries)
    notes = any(s.note for s in summaries)
    header = ["method", "solved", "evals", "time s", "×best t", "×best ev"]
    header += (["digits"] if nist else []) + (["note"] if notes else [])
    rows = []
    for s in summaries:
        row = [s.method, f"{s.solved}/{s.problems}", _fmt(s.median_evals), _fmt(s.median_time),
               _fmt(s.ratio_time), _fmt(s.ratio_evals)]  # fmt: skip
        row += ([_fmt(s.median_digits)] if nist else []) + ([s.note] if notes else [])
        rows.append(row)
    return header, rows


def training_rows(records: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for one task's training runs."""
    header = ["method", "status", "lr", "loss", "time s", "fwd/bwd", "to target s"]
    rows = [
        [r.method, r.status, _fmt(r.tags.get("lr")), _fmt(r.f, 4), _fmt(r.time),
         f"{r.nfev:g}/{r.ngev:g}", _fmt(r.time_to_solve)]
        for r in records
    ]  # fmt: skip
    return header, rows


TABLE_NOTES = (
    "solved: runs that reached the reference value (the published or certified minimum, "
    "else the best any method found) within the tolerance; evals / time s: medians over "
    "solved runs of function + gradient evaluations and seconds, counted by the harness; "
    "×best t / ×best ev: median over problems of the ratio to the best method on each "
    "problem, by time and by evaluations (∞: solved fewer than half); digits: median NIST "
    "log relative error of the parameters (correct significant digits)."
)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(path.stem, quote=True)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"></figure>'


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:90%}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f2f2f2} img{max-width:100%} figure{margin:1em 0}
.meta td{border:none;padding:1px 8px} code{background:#f5f5f5}
"""


def write_report(records: Sequence[RunRecord], meta: dict[str, Any], out: str | Path) -> Path:
    """Draw every plot into ``out`` and write ``out/report.html`` embedding them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>taylorch bench</title>"
             f"<style>{_CSS}</style></head><body><h1>taylorch bench</h1>"]  # fmt: skip
    parts.append(
        _table(["", ""], [[k, v] for k, v in meta.items()]).replace(
            "<table>", "<table class='meta'>", 1
        )
    )
    summaries = summarize(records)
    for suite in dict.fromkeys(r.suite for r in records):
        runs = [r for r in records if r.suite == suite]
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in suite) or "suite"
        parts.append(f"<h2>{html.escape(suite)}</h2>")
        if runs[0].kind == "train":
            for task in dict.fromkeys(r.problem for r in runs):
                parts.append(f"<h3>{html.escape(task)}</h3>")
                parts.append(_table(*training_rows([r for r in runs if r.problem == task])))
            plots = [plot_training(runs, out / f"{slug}_training.png", suite)]
        else:
            parts.append(_table(*summary_rows([s for s in summaries if s.suite == suite])))
            parts.append(f"<p>{html.escape(TABLE_NOTES)}</p>")
            plots = [
                plot_profiles(runs, out / f"{slug}_profile.png", suite),
                plot_convergence(runs, out / f"{slug}_convergence_evals.png", "evals", suite),
                plot_convergence(runs, out / f"{slug}_convergence_time.png", "time", suite),
            ]
        parts += [_img(p) for p in plots if p is not None]
        bad = [r for r in runs if r.status in ("failed", "unavailable", "unsupported")]
        if bad:
            parts.append("<details><summary>runs that failed or did not run</summary>")
            parts.append(_table(["problem", "method", "status", "message"],
                                [[r.problem, r.method, r.status, r.message] for r in bad]))  # fmt: skip
            parts.append("</details>")
    legend = [[k, v] for k, v in STATUSES.items()]
    parts.append("<h2>statuses</h2>" + _table(["status", "meaning"], legend))
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
