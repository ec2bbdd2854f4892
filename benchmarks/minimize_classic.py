"""Efficiency on classic test problems: success rate and evaluations per method vs scipy.

The suite is ``taylorch.bench.problems.classic``: the 35 Moré-Garbow-Hillstrom
problems and four CUTE problems at their standard sizes and starts (add
``--sizes 100`` for the extended families at n = 100). Every method, taylorch's
and scipy's, runs unbatched from the standard start in float64 with
``max_iter = max(1000, 200 n)`` and gradient tolerance 1e-6 where it has one.

Evaluations are counted by wrapping the function each solver sees, never
read from its result:

- taylorch: a wrapper around ``fun`` counts its calls (function values) and,
  of those, the ones differentiated (gradients); a hook on its input counts
  every reverse pass, and those beyond the gradients are Hessian-vector
  products; dense Hessians are counted by wrapping the Hessian oracle
  (each gives f, g and H from one call). The counts are cross-checked with
  taylorch's own and any mismatch is stored in the JSON.
- scipy: ``fun`` returns ``(f, g)`` (``jac=True``) by torch autograd, and the
  ``hessp`` / ``hess`` callables are counted the same way.

A run is solved when the objective recomputed at the returned point obeys
``f - f* <= 1e-6 max(1, |f*|)``, or matches a local minimum published by MGH
for that problem within one unit of its last printed digit.

Run ``python benchmarks/minimize_classic.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from _common import (
    NOT_AVAILABLE,
    Table,
    fmt_seconds,
    resolve_methods,
    set_threads,
    split_names,
    write_json,
)

from taylorch import derivatives
from taylorch.bench.problems.classic import classic_problems

GTOL = 1e-6
RTOL = 1e-6

# Local minima that Moré, Garbow & Hillstrom (1981) list besides the global one,
# as printed there (value, one unit of the last printed digit: the paper truncates,
# e.g. Freudenstein-Roth's 48.98425... is printed 48.9842).
ALTERNATE_MINIMA: dict[str, list[tuple[float, float]]] = {
    "freudenstein-roth": [(48.9842, 1e-4)],
    "bard": [(17.4286, 1e-4)],
    "kowalik-osborne": [(1.02734e-3, 1e-8)],
    "biggs-exp6": [(5.65565e-3, 1e-8)],
    "trigonometric": [(2.79506e-5, 1e-10)],
    "brown-almost-linear": [(1.0, 1e-6)],
}

# scipy's method that plays the same role as a taylorch method (newton and arc have
# none in scipy; they are held to trust-exact, the other method with a dense Hessian).
COUNTERPART = {
    "bfgs": "BFGS",
    "l-bfgs": "L-BFGS-B",
    "cg": "CG",
    "newton-cg": "Newton-CG",
    "trust-exact": "trust-exact",
    "trust-ncg": "trust-ncg",
    "dogleg": "dogleg",
    "newton": "trust-exact",
    "arc": "trust-exact",
}
# A scipy method run with other options than its defaults: L-BFGS-B also stops when a step
# lowers f by less than ``ftol`` (relative, default 2.2e-9), before the gradient test that
# every other run here stops on; with ``ftol=0`` the gradient test alone decides.
SCIPY_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "L-BFGS-B(ftol=0)": ("L-BFGS-B", {"ftol": 0.0}),
}

SCIPY_ORACLE = {
    "Newton-CG": "hessp",
    "trust-ncg": "hessp",
    "trust-krylov": "hessp",
    "trust-exact": "hess",
    "dogleg": "hess",
}


def max_iter(n: int) -> int:
    return max(1000, 200 * n)


def solved(name: str, f: float, f_star: float) -> bool:
    if not np.isfinite(f):
        return False
    if f - f_star <= RTOL * max(1.0, abs(f_star)):
        return True
    return any(abs(f - value) <= tol for value, tol in ALTERNATE_MINIMA.get(name, []))


# ------------------------------------------------------------------ counting


class Counts:
    """What a solver asked of the objective, counted at the function itself."""

    def __init__(self) -> None:
        self.fev = 0  # calls of the function (each gives f)
        self.gev = 0  # of those, calls whose gradient was taken
        self.reverse = 0  # reverse passes reaching x (gradients + Hessian-vector products)
        self.hvp = 0  # Hessian-vector products (scipy: hessp calls)
        self.hess = 0  # dense Hessians
        self.repeat = 0  # of the calls, those at a point already evaluated
        self.in_hessian = False
        self._points: set[bytes] = set()

    def visit(self, x: torch.Tensor | np.ndarray) -> None:
        """Note a call of the function at ``x``, and whether ``x`` was seen before."""
        key = (x.detach().numpy() if isinstance(x, torch.Tensor) else x).tobytes()
        self.repeat += key in self._points
        self._points.add(key)

    def as_dict(self) -> dict[str, int]:
        return {"nfev": self.fev, "njev": self.gev, "nhvp": self.hvp, "nhess": self.hess,
                "nrepeat": self.repeat}  # fmt: skip


class CountedFunction:
    """``fun`` as taylorch sees it, counting calls, gradients and reverse passes."""

    def __init__(self, fun: Callable[[torch.Tensor], torch.Tensor], counts: Counts):
        self.fun = fun
        self.counts = counts

    def _on_reverse(self, grad: torch.Tensor) -> None:
        self.counts.reverse += 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c = self.counts
        c.fev += 1
        if c.in_hessian:  # one call gives f, g and H (counted by the oracle wrapper)
            c.gev += 1
            return self.fun(x)
        c.visit(x)
        if torch.is_grad_enabled() and x.requires_grad:
            c.gev += 1
            x.register_hook(self._on_reverse)
        return self.fun(x)


@contextlib.contextmanager
def counting_hessians(counts: Counts) -> Iterator[None]:
    """Count taylorch's dense-Hessian oracle calls (its Objective looks it up at call time)."""
    original = derivatives.value_grad_hessian

    def counted(fun, x, *args: Any, **kwargs: Any):
        counts.hess += 1
        counts.visit(x)
        counts.in_hessian = True
        try:
            return original(fun, x, *args, **kwargs)
        finally:
            counts.in_hessian = False

    derivatives.value_grad_hessian = counted
    try:
        yield
    finally:
        derivatives.value_grad_hessian = original


# ------------------------------------------------------------------ the solvers


def taylorch_run(problem, method: str) -> dict[str, Any]:
    import taylorch

    counts = Counts()
    fun = CountedFunction(problem.fun, counts)
    with counting_hessians(counts):
        res = taylorch.minimize(
            fun, problem.x0, method=method, gtol=GTOL, max_iter=max_iter(problem.n)
        )
    # Each reverse pass beyond a function's first (its gradient) is an HVP.
    counts.hvp = counts.reverse - (counts.gev - counts.hess)
    own = {"nfev": int(res.nfev), "njev": int(res.njev), "n_hvp": int(res.n_hvp)}
    return {"x": res.x, "counts": counts, "own": own, "message": res.message, "nit": int(res.nit)}


def scipy_run(problem, method: str) -> dict[str, Any]:
    import scipy.optimize as so

    counts = Counts()

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        counts.fev += 1
        counts.gev += 1
        counts.visit(x)
        xt = torch.from_numpy(x).requires_grad_(True)
        f = problem.fun(xt)
        (g,) = torch.autograd.grad(f, xt)
        return float(f.detach()), g.numpy()

    def hessp(x: np.ndarray, p: np.ndarray) -> np.ndarray:
        counts.hvp += 1
        return derivatives.hvp(problem.fun, torch.from_numpy(x), torch.from_numpy(p)).numpy()

    def hess(x: np.ndarray) -> np.ndarray:
        counts.hess += 1
        return derivatives.hessian(problem.fun, torch.from_numpy(x)).numpy()

    method, variant = SCIPY_VARIANTS.get(method, (method, {}))
    iters = max_iter(problem.n)
    options: dict[str, Any] = {"maxiter": iters, **variant}
    if method != "Newton-CG":  # Newton-CG has no gradient test, only its xtol (default 1e-5)
        options["gtol"] = GTOL
    if method == "L-BFGS-B":
        options["maxfun"] = 10 * iters
    oracle = SCIPY_ORACLE.get(method)
    extra = {} if oracle is None else {oracle: hessp if oracle == "hessp" else hess}
    res = so.minimize(fg, problem.x0.numpy(), jac=True, method=method, options=options, **extra)
    return {
        "x": torch.from_numpy(np.asarray(res.x)),
        "counts": counts,
        "message": str(res.message),
        "nit": int(getattr(res, "nit", -1)),
    }


def run_one(problem, solver: str, method: str) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        out = (taylorch_run if solver == "taylorch" else scipy_run)(problem, method)
    except Exception as err:  # a crash is a failed run, reported with its message
        return {
            "problem": problem.name,
            "solver": solver,
            "method": method,
            "solved": False,
            "error": f"{type(err).__name__}: {err}",
            "seconds": time.perf_counter() - start,
        }
    seconds = time.perf_counter() - start
    with torch.no_grad():
        f = float(problem.fun(out["x"]))
    family = problem.tags.get("family", problem.name)
    rec = {
        "problem": problem.name,
        "n": problem.n,
        "solver": solver,
        "method": method,
        "f": f,
        "f_star": problem.f_star,
        "solved": solved(family, f, problem.f_star),
        "seconds": seconds,
        "message": out["message"],
        "nit": out["nit"],
        **out["counts"].as_dict(),
    }
    if "own" in out:
        own = out["own"]
        mine = {
            "nfev": rec["nfev"],
            "njev": rec["njev"],
            "n_hvp": rec["nhvp"] + rec["nhess"] * problem.n,
        }
        if own != mine:
            rec["count_mismatch"] = {"taylorch": own, "wrapper": mine}
    return rec


# ------------------------------------------------------------------ the benchmark


def run(args: argparse.Namespace) -> dict[str, Any]:
    problems = classic_problems(extended_sizes=tuple(args.sizes))
    if args.problems:
        problems = [p for p in problems if p.name in args.problems]
    methods, missing = resolve_methods(args.methods)
    runs = [("taylorch", m) for m in methods] + [("scipy", m) for m in args.scipy]
    records = []
    for solver, method in runs:
        start = time.perf_counter()
        for problem in problems:
            records.append(run_one(problem, solver, method))
        done = [r for r in records if r["solver"] == solver and r["method"] == method]
        print(
            f"{solver} {method}: {sum(r['solved'] for r in done)}/{len(done)} solved "
            f"in {time.perf_counter() - start:.1f} s"
        )
    return {
        "benchmark": "minimize_classic",
        "problems": [p.name for p in problems],
        "gtol": GTOL,
        "rtol": RTOL,
        "threads": args.threads,
        "missing": missing,
        "records": records,
    }


def summarize(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per method: success rate, medians of each count, total time."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in result["records"]:
        groups.setdefault((r["solver"], r["method"]), []).append(r)
    summary = {}
    for key, recs in groups.items():
        ok = [r for r in recs if "error" not in r]
        summary[key] = {
            "solved": sum(r["solved"] for r in recs),
            "problems": len(recs),
            "errors": len(recs) - len(ok),
            "seconds": sum(r["seconds"] for r in recs),
            **{
                f"median_{c}": statistics.median(r[c] for r in ok) if ok else None
                for c in ("nfev", "njev", "nhvp", "nhess", "nrepeat")
            },
        }
    return summary


def tables(result: dict[str, Any]) -> list[Table]:
    summary = summarize(result)
    result["summary"] = {f"{s} {m}": v for (s, m), v in summary.items()}
    scipy = {m: v for (s, m), v in summary.items() if s == "scipy"}
    best = max((v["solved"] for v in scipy.values()), default=None)
    main = Table(
        f"minimize, classic suite: {len(result['problems'])} problems (MGH + CUTE), float64",
        [
            "method",
            "solved",
            "median f",
            "median g",
            "median Hv",
            "median H",
            "median repeat",
            "time",
            "scipy counterpart (solved, f, g)",
            "f / counterpart f (both solved)",
            "targets",
        ],
        note="Medians over all problems of the evaluations counted at the function: f = calls "
        "of the function, g = of those, calls differentiated, Hv = Hessian-vector products, "
        "H = dense Hessians (taylorch: one call gives f, g and H), repeat = calls at a point "
        "already evaluated (included in f). f / counterpart f: median over the problems both "
        "solve of the per-problem ratio. Targets: solved >= scipy's best, median f and g <= the "
        "counterpart's.",
    )
    for (solver, method), v in summary.items():
        twin = scipy.get(COUNTERPART.get(method, "")) if solver == "taylorch" else None
        targets = ""
        if solver == "taylorch":
            met = [best is not None and v["solved"] >= best]
            if twin is not None:
                met += [
                    v["median_nfev"] <= twin["median_nfev"],
                    v["median_njev"] <= twin["median_njev"],
                ]
            v["targets_met"] = met
            targets = f"{sum(met)}/{len(met)} " + "".join("✓" if m else "✗" for m in met)
        twin_text = (
            f"{COUNTERPART[method]}: {twin['solved']}, {_num(twin['median_nfev'])}, "
            f"{_num(twin['median_njev'])}"
            if twin is not None
            else ""
        )
        paired = _paired_ratio(result["records"], method, COUNTERPART.get(method)) if twin else None
        v["paired_nfev_ratio"] = paired
        name = f"{solver} {method}" + (f" ({v['errors']} errors)" if v["errors"] else "")
        main.add(
            name,
            f"{v['solved']}/{v['problems']}",
            _num(v["median_nfev"]),
            _num(v["median_njev"]),
            _num(v["median_nhvp"]),
            _num(v["median_nhess"]),
            _num(v["median_nrepeat"]),
            fmt_seconds(v["seconds"]),
            twin_text,
            "" if paired is None else f"{paired:.2f}",
            targets,
        )
    for method in result["missing"]:
        main.add(f"taylorch {method}", NOT_AVAILABLE, *["-"] * 9)
    return [main]


def _paired_ratio(records: list[dict], method: str, twin: str | None) -> float | None:
    """Median over problems both runs solve of taylorch's function calls / scipy's."""
    mine = {r["problem"]: r for r in records if r["solver"] == "taylorch" and r["method"] == method}
    ratios = [
        mine[r["problem"]]["nfev"] / r["nfev"]
        for r in records
        if r["solver"] == "scipy" and r["method"] == twin and r["solved"]
        and r["problem"] in mine and mine[r["problem"]]["solved"] and r["nfev"] > 0
    ]  # fmt: skip
    return statistics.median(ratios) if ratios else None


def per_problem_table(result: dict[str, Any]) -> Table:
    """Function values per run (``f/g``, ``✗`` when not solved)."""
    keys = list(dict.fromkeys((r["solver"], r["method"]) for r in result["records"]))
    table = Table(
        "per problem: f / g evaluations (✗ not solved, E error)",
        ["problem"] + [m if s == "taylorch" else f"scipy {m}" for s, m in keys],
    )
    cells = {(r["problem"], r["solver"], r["method"]): r for r in result["records"]}
    for name in result["problems"]:
        row = []
        for s, m in keys:
            r = cells[(name, s, m)]
            text = "E" if "error" in r else f"{r['nfev']}/{r['njev']}"
            row.append(text + ("" if r["solved"] else " ✗"))
        table.add(name, *row)
    return table


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--methods",
        type=split_names,
        default=split_names("bfgs,l-bfgs,newton-cg,trust-ncg,trust-exact"),
        help="taylorch methods (comma-separated)",
    )
    p.add_argument(
        "--scipy",
        type=split_names,
        default=split_names("BFGS,L-BFGS-B,L-BFGS-B(ftol=0),Newton-CG,trust-exact"),
        help="scipy methods (comma-separated); " + ", ".join(SCIPY_VARIANTS) + " too",
    )
    p.add_argument(
        "--sizes",
        type=lambda s: [int(v) for v in split_names(s)],
        default=[],
        help="extra sizes for the extended families, e.g. 100",
    )
    p.add_argument("--problems", type=split_names, default=[], help="only these problems")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for every solver")
    p.add_argument("--per-problem", action="store_true", help="print the per-problem table")
    p.add_argument("--out", default="bench-out/minimize_classic.json")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    result = run(args)
    shown = tables(result) + ([per_problem_table(result)] if args.per_problem else [])
    for table in shown:
        table.print()
        if args.markdown:
            print(table.markdown())
    print(f"wrote {write_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
