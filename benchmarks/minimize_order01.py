"""Order-0 and order-1 methods of ``taylorch.minimize`` against scipy (and torchmin).

Three tables:

1. **Nelder-Mead**: taylorch's ``nelder-mead`` (standard and Gao-Han adaptive)
   against scipy's on the Moré-Garbow-Hillstrom problems with ``n <= 12``,
   both stopping at simplex diameter 1e-8 and value spread 1e-12 with the
   same budget of ``200 n`` iterations (scipy's default), plus ``zo-gd``.
2. **Gradient methods**: ``cg`` (PR+ and Hager-Zhang) and ``gd`` against
   scipy's CG and torchmin's cg on the same problems, gradient tolerance 1e-6.
3. **Batched Nelder-Mead**: ``B`` independent 2-D Rosenbrock problems from
   random starts solved in one batched call, against a loop of scipy calls and
   a loop of unbatched taylorch calls.

A run is solved when ``f - f* <= 1e-6 max(1, |f*|)`` (or at a local minimum
published by MGH; the same rule as ``minimize_classic.py``). Evaluation ratios
are medians over the problems both solvers solved. Times are CPU seconds of
this process (the machine is shared; CPU time is the steadier measure).

    python benchmarks/minimize_order01.py [--batch 256] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import scipy.optimize as so
import torch
import torchmin
from _common import Table, fmt_ratio, fmt_seconds, measure, set_threads, write_json
from minimize_classic import solved

import taylorch
from taylorch.bench.problems.classic import classic_problems

XTOL, FTOL, GTOL = 1e-8, 1e-12, 1e-6


def problems(max_n: int) -> list:
    seen, out = set(), []
    for p in classic_problems():
        if p.x0.shape[-1] <= max_n and p.name not in seen:
            seen.add(p.name)
            out.append(p)
    return out


def taylorch_run(problem, method: str, **options: Any) -> dict[str, Any]:
    n = problem.x0.shape[-1]
    tols = {"xtol": XTOL, "ftol": FTOL} if method in ("nelder-mead", "zo-gd") else {"gtol": GTOL}
    timing, res = measure(
        lambda: taylorch.minimize(
            problem.fun, problem.x0.double(), method=method, max_iter=200 * n, **tols, **options
        )
    )
    f = float(problem.fun(res.x))
    return {"f": f, "nfev": int(res.nfev), "njev": int(res.njev), "cpu": timing.cpu}


def _numpy(fun):
    return lambda x: float(fun(torch.from_numpy(x)))


def _value_and_grad(fun):
    def fg(x):
        xt = torch.from_numpy(x).requires_grad_(True)
        f = fun(xt)
        (g,) = torch.autograd.grad(f, xt)
        return float(f.detach()), g.numpy()

    return fg


def scipy_nm(problem, adaptive: bool) -> dict[str, Any]:
    n = problem.x0.shape[-1]
    options = {"xatol": XTOL, "fatol": FTOL, "adaptive": adaptive, "maxiter": 200 * n}
    options["maxfev"] = 10**9
    timing, res = measure(
        lambda: so.minimize(
            _numpy(problem.fun), problem.x0.double().numpy(), method="Nelder-Mead", options=options
        )
    )
    return {"f": float(res.fun), "nfev": int(res.nfev), "njev": 0, "cpu": timing.cpu}


def scipy_cg(problem) -> dict[str, Any]:
    n = problem.x0.shape[-1]
    timing, res = measure(
        lambda: so.minimize(
            _value_and_grad(problem.fun),
            problem.x0.double().numpy(),
            jac=True,
            method="CG",
            options={"gtol": GTOL, "maxiter": 200 * n},
        )
    )
    return {"f": float(res.fun), "nfev": int(res.nfev), "njev": int(res.njev), "cpu": timing.cpu}


def torchmin_cg(problem) -> dict[str, Any]:
    n = problem.x0.shape[-1]
    timing, res = measure(
        lambda: torchmin.minimize(
            problem.fun, problem.x0.double(), method="cg", tol=GTOL, max_iter=200 * n
        )
    )
    f = float(problem.fun(res.x.detach()))
    return {"f": f, "nfev": int(res.nfev), "njev": int(res.nfev), "cpu": timing.cpu}


def compare(probs, runs: dict[str, Any], reference: str) -> dict[str, Any]:
    """Run every solver on every problem; summarize against ``reference``."""
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for p in probs:
        for name, run in runs.items():
            try:
                rec = run(p)
                rec["solved"] = solved(p.name, rec["f"], float(p.f_star))
            except Exception as err:  # a crash counts as unsolved, and is recorded
                rec = {"error": repr(err), "solved": False, "nfev": 0, "njev": 0, "cpu": 0.0}
            rec["problem"] = p.name
            records[name].append(rec)
    summary = {}
    for name, recs in records.items():
        ratios = [
            r["nfev"] / ref["nfev"]
            for r, ref in zip(recs, records[reference])
            if r["solved"] and ref["solved"] and ref["nfev"] > 0
        ]
        summary[name] = {
            "solved": sum(r["solved"] for r in recs),
            "problems": len(recs),
            "median_nfev_ratio": statistics.median(ratios) if ratios else None,
            "both_solved": len(ratios),
            "nfev": sum(r["nfev"] for r in recs),
            "cpu": sum(r["cpu"] for r in recs),
        }
    return {"records": records, "summary": summary}


def summary_table(title: str, result: dict, reference: str, note: str) -> Table:
    table = Table(
        title,
        ["solver", "solved", "median nfev ratio", "both solved", "total nfev", "CPU time"],
        note,
    )
    ref_cpu = result["summary"][reference]["cpu"]
    for name, s in result["summary"].items():
        table.add(
            name,
            f"{s['solved']}/{s['problems']}",
            "-" if name == reference else fmt_ratio(s["median_nfev_ratio"]),
            s["both_solved"],
            s["nfev"],
            f"{fmt_seconds(s['cpu'])} ({fmt_ratio(s['cpu'] / ref_cpu)})",
        )
    return table


def batched_rosenbrock(batch: int, seed: int) -> tuple[Table, dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, 2, generator=gen, dtype=torch.float64) * 1.5

    def rosen(x):
        return (1 - x[..., 0]) ** 2 + 100 * (x[..., 1] - x[..., 0] ** 2) ** 2

    tols = {"xtol": XTOL, "ftol": FTOL}
    batched_t, res = measure(
        lambda: taylorch.minimize(rosen, x0, method="nelder-mead", batched=True, **tols)
    )
    loop_t, singles = measure(
        lambda: [taylorch.minimize(rosen, x, method="nelder-mead", **tols) for x in x0]
    )
    np_rosen = _numpy(rosen)
    scipy_t, refs = measure(
        lambda: [
            so.minimize(
                np_rosen, x.numpy(), method="Nelder-Mead", options={"xatol": XTOL, "fatol": FTOL}
            )
            for x in x0
        ]
    )
    at_one = lambda xs: int(sum(float((x - 1).abs().max()) < 1e-6 for x in xs))  # noqa: E731
    rows = {
        "taylorch batched (one call)": (batched_t, at_one(res.x), int(res.nfev.sum())),
        "taylorch loop of single calls": (
            loop_t,
            at_one([s.x for s in singles]),
            sum(s.nfev for s in singles),
        ),
        "scipy loop": (
            scipy_t,
            at_one([torch.from_numpy(r.x) for r in refs]),
            sum(int(r.nfev) for r in refs),
        ),
    }
    table = Table(
        f"Nelder-Mead on {batch} independent 2-D Rosenbrock problems",
        ["solver", "at (1, 1) to 1e-6", "total nfev", "CPU time", "wall time", "CPU vs scipy"],
    )
    for name, (timing, ok, nfev) in rows.items():
        table.add(
            name,
            f"{ok}/{batch}",
            nfev,
            fmt_seconds(timing.cpu),
            fmt_seconds(timing.wall),
            fmt_ratio(timing.cpu / scipy_t.cpu),
        )
    data = {
        k: {"cpu": t.cpu, "wall": t.wall, "solved": ok, "nfev": nf}
        for k, (t, ok, nf) in rows.items()
    }
    return table, data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-n", type=int, default=12, help="largest problem size from the suite")
    p.add_argument("--batch", type=int, default=256, help="problems in the batched table")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench-out/minimize_order01.json")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    probs = problems(args.max_n)

    nm = compare(
        probs,
        {
            "scipy Nelder-Mead": lambda p: scipy_nm(p, adaptive=False),
            "taylorch nelder-mead": lambda p: taylorch_run(p, "nelder-mead"),
            "scipy Nelder-Mead adaptive": lambda p: scipy_nm(p, adaptive=True),
            "taylorch nelder-mead adaptive": lambda p: taylorch_run(
                p, "nelder-mead", adaptive=True
            ),
            "taylorch zo-gd": lambda p: taylorch_run(p, "zo-gd"),
        },
        reference="scipy Nelder-Mead",
    )
    grad = compare(
        probs,
        {
            "scipy CG": scipy_cg,
            "taylorch cg (pr+)": lambda p: taylorch_run(p, "cg"),
            "taylorch cg (hz)": lambda p: taylorch_run(p, "cg", beta="hz"),
            "torchmin cg": torchmin_cg,
            "taylorch gd": lambda p: taylorch_run(p, "gd"),
        },
        reference="scipy CG",
    )
    batch_table, batch_data = batched_rosenbrock(args.batch, seed=0)
    tables = [
        summary_table(
            f"Value-only methods on {len(probs)} MGH problems (n <= {args.max_n})",
            nm,
            "scipy Nelder-Mead",
            "nfev ratio: taylorch / scipy Nelder-Mead, median over problems both solved; "
            "stopping at simplex diameter 1e-8, spread 1e-12 (zo-gd: steps), 200 n iterations",
        ),
        summary_table(
            f"Gradient methods on {len(probs)} MGH problems (n <= {args.max_n})",
            grad,
            "scipy CG",
            "nfev ratio: solver / scipy CG (every evaluation is a value and a gradient), "
            "median over problems both solved; gtol 1e-6, 200 n iterations",
        ),
        batch_table,
    ]
    for table in tables:
        table.print()
        if args.markdown:
            print(table.markdown())
    payload = {"nelder_mead": nm, "gradient": grad, "batched": batch_data}
    print(f"wrote {write_json(args.out, payload)}")
    return payload


if __name__ == "__main__":
    main()
