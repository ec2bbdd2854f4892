"""Second-order methods of ``taylorch.minimize`` against scipy and torchmin.

Three tables:

1. **MGH problems** (``n <= --max-n``): each of ``newton``, ``newton-cg``,
   ``trust-ncg``, ``dogleg``, ``trust-exact`` against scipy's and torchmin's
   method of the same name (torchmin's ``newton-exact`` for ``newton``; scipy
   has no line-search Newton on the dense Hessian), plus ``arc`` and
   ``damped-newton`` (no peer). Gradient tolerance 1e-6, at most 500
   iterations. A run is solved when ``f - f* <= 1e-6 max(1, |f*|)`` (or at a
   published local minimum; the rule of ``minimize_classic.py``). Iteration
   ratios are medians over the problems both solved.
2. **Batched**: ``B`` independent 2-D Rosenbrock problems from random starts,
   one batched taylorch call against loops of scipy and torchmin calls.
3. **Large, HVP only**: extended Rosenbrock with ``n = --large-n`` from the
   standard start: ``newton-cg``, ``trust-ncg`` and ``arc`` (Lanczos
   subproblem) against scipy (``hessp`` by autograd) and torchmin.

scipy gets ``f``, ``g``, ``H`` (or ``H v``) from torch autograd in float64, as
a torch user would feed it. torchmin's ``tol`` is its gradient tolerance for
the trust-region methods and a step tolerance for the Newton methods. Times
are CPU seconds of this process (the machine is shared; CPU time is the
steadier measure there), one torch thread for everyone.

    python benchmarks/minimize_order2.py [--max-n 12] [--batch 64] [--large-n 1000] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np
import scipy.optimize as so
import torch
import torchmin
from _common import Table, fmt_ratio, fmt_seconds, measure, set_threads, write_json
from minimize_classic import solved

import taylorch
from taylorch.bench.problems.classic import classic_problem, classic_problems

GTOL = 1e-6
MAX_ITER = 500
# taylorch name -> (scipy name, torchmin name); None where the peer has no such method.
PEERS = {
    "newton": (None, "newton-exact"),
    "newton-cg": ("newton-cg", "newton-cg"),
    "trust-ncg": ("trust-ncg", "trust-ncg"),
    "dogleg": ("dogleg", "dogleg"),
    "trust-exact": ("trust-exact", "trust-exact"),
    "arc": (None, None),
    "damped-newton": (None, None),
}


def problems(max_n: int) -> list:
    seen, out = set(), []
    for p in classic_problems(extended_sizes=()):
        if p.x0.shape[-1] <= max_n and p.name not in seen:
            seen.add(p.name)
            out.append(p)
    return out


# ------------------------------------------------------------------ the solvers


def taylorch_run(fun, x0: torch.Tensor, method: str, **options: Any) -> dict[str, Any]:
    timing, res = measure(
        lambda: taylorch.minimize(fun, x0, method=method, gtol=GTOL, max_iter=MAX_ITER, **options)
    )
    return {"f": float(fun(res.x)), "nit": int(res.nit), "nfev": int(res.nfev), "cpu": timing.cpu}


def _scipy_oracles(fun):
    def fg(x):
        xt = torch.from_numpy(x).requires_grad_(True)
        f = fun(xt)
        (g,) = torch.autograd.grad(f, xt)
        return float(f.detach()), g.numpy()

    def hess(x):
        return torch.autograd.functional.hessian(fun, torch.from_numpy(x)).numpy()

    def hessp(x, v):
        xt = torch.from_numpy(x).requires_grad_(True)
        (g,) = torch.autograd.grad(fun(xt), xt, create_graph=True)
        (hv,) = torch.autograd.grad(g, xt, torch.from_numpy(np.asarray(v, dtype=np.float64)))
        return hv.numpy()

    return fg, hess, hessp


def scipy_run(fun, x0: torch.Tensor, method: str, hvp_only: bool = False) -> dict[str, Any]:
    fg, hess, hessp = _scipy_oracles(fun)
    options = {"maxiter": MAX_ITER}
    options.update({"xtol": 1e-10} if method == "newton-cg" else {"gtol": GTOL})
    second = (
        {"hessp": hessp} if hvp_only or method in ("newton-cg", "trust-ncg") else {"hess": hess}
    )
    timing, res = measure(
        lambda: so.minimize(fg, x0.numpy(), jac=True, method=method, options=options, **second)
    )
    return {"f": float(res.fun), "nit": int(res.nit), "nfev": int(res.nfev), "cpu": timing.cpu}


def torchmin_run(fun, x0: torch.Tensor, method: str) -> dict[str, Any]:
    timing, res = measure(
        lambda: torchmin.minimize(fun, x0, method=method, tol=GTOL, max_iter=MAX_ITER)
    )
    f = float(fun(res.x.detach()))
    return {"f": f, "nit": int(res.nit), "nfev": int(res.nfev), "cpu": timing.cpu}


def _guarded(run, *args, **kwargs) -> dict[str, Any]:
    try:
        return run(*args, **kwargs)
    except Exception as err:  # a crash counts as unsolved, and is recorded
        return {"error": repr(err), "f": float("nan"), "nit": 0, "nfev": 0, "cpu": 0.0}


# ------------------------------------------------------------------ table 1


def suite(max_n: int) -> tuple[Table, dict[str, Any]]:
    probs = problems(max_n)
    table = Table(
        f"Second-order methods on {len(probs)} MGH problems (n <= {max_n}), gtol {GTOL}",
        [
            "method",
            "solver",
            "solved",
            "median nit vs taylorch",
            "both solved",
            "CPU time",
            "CPU vs taylorch",
        ],
        "nit ratio > 1: the peer needed more iterations. CPU ratio > 1: the peer was slower.",
    )
    data: dict[str, Any] = {}
    for method, (scipy_name, torchmin_name) in PEERS.items():
        runs = {"taylorch": lambda p, m=method: taylorch_run(p.fun, p.x0.double(), m)}
        if scipy_name:
            runs["scipy"] = lambda p, m=scipy_name: scipy_run(p.fun, p.x0.double(), m)
        if torchmin_name:
            runs["torchmin"] = lambda p, m=torchmin_name: torchmin_run(p.fun, p.x0.double(), m)
        records = {solver: [] for solver in runs}
        for p in probs:
            for solver, run in runs.items():
                rec = _guarded(run, p)
                rec["solved"] = solved(p.name, rec["f"], float(p.f_star))
                rec["problem"] = p.name
                records[solver].append(rec)
        mine = records["taylorch"]
        for solver, recs in records.items():
            pairs = [
                (r["nit"], t["nit"])
                for r, t in zip(recs, mine)
                if r["solved"] and t["solved"] and t["nit"] > 0
            ]
            ratio = statistics.median(a / b for a, b in pairs) if pairs else None
            cpu = sum(r["cpu"] for r in recs)
            ref_cpu = sum(r["cpu"] for r in mine)
            table.add(
                method,
                solver,
                f"{sum(r['solved'] for r in recs)}/{len(recs)}",
                "-" if solver == "taylorch" else fmt_ratio(ratio),
                len(pairs),
                fmt_seconds(cpu),
                "-" if solver == "taylorch" else fmt_ratio(cpu / ref_cpu),
            )
        data[method] = records
    return table, data


# ------------------------------------------------------------------ table 2


def batched(batch: int, seed: int) -> tuple[Table, dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(batch, 2, generator=gen, dtype=torch.float64) * 4 - 2

    def rosen(x):
        return (1 - x[..., 0]) ** 2 + 100 * (x[..., 1] - x[..., 0] ** 2) ** 2

    def at_one(xs) -> int:
        return int(sum(float((torch.as_tensor(x) - 1).abs().max()) < 1e-5 for x in xs))

    table = Table(
        f"{batch} independent 2-D Rosenbrock problems (random starts in [-2, 2]^2)",
        ["method", "solver", "at (1, 1) to 1e-5", "total nit", "CPU time", "CPU vs taylorch"],
    )
    data: dict[str, Any] = {}
    for method in ("newton", "trust-ncg", "trust-exact", "arc"):
        rows = {}
        timing, res = measure(
            lambda m=method: taylorch.minimize(rosen, x0, method=m, batched=True, gtol=GTOL)
        )
        rows["taylorch (one batched call)"] = (timing, at_one(res.x), int(res.nit.sum()))
        scipy_name, torchmin_name = PEERS[method]
        if scipy_name:
            timing, refs = measure(lambda m=scipy_name: [scipy_run(rosen, x, m) for x in x0])
            rows["scipy loop"] = (
                timing,
                sum(r["f"] < 1e-10 for r in refs),
                sum(r["nit"] for r in refs),
            )
        if torchmin_name:
            timing, refs = measure(lambda m=torchmin_name: [torchmin_run(rosen, x, m) for x in x0])
            rows["torchmin loop"] = (
                timing,
                sum(r["f"] < 1e-10 for r in refs),
                sum(r["nit"] for r in refs),
            )
        ref_cpu = rows["taylorch (one batched call)"][0].cpu
        for solver, (timing, ok, nit) in rows.items():
            table.add(
                method,
                solver,
                f"{ok}/{batch}",
                nit,
                fmt_seconds(timing.cpu),
                fmt_ratio(timing.cpu / ref_cpu),
            )
        data[method] = {
            k: {"cpu": t.cpu, "wall": t.wall, "solved": ok, "nit": nit}
            for k, (t, ok, nit) in rows.items()
        }
    return table, data


# ------------------------------------------------------------------ table 3


def large(n: int) -> tuple[Table, dict[str, Any]]:
    problem = classic_problem("extended-rosenbrock", n)
    x0 = problem.x0.double()
    table = Table(
        f"Extended Rosenbrock, n = {n}, Hessian-vector products only",
        ["method", "solver", "f", "nit", "nfev", "CPU time", "CPU vs taylorch"],
    )
    data: dict[str, Any] = {}
    for method, peer in (("newton-cg", "newton-cg"), ("trust-ncg", "trust-ncg"), ("arc", None)):
        options = {"subproblem": "lanczos"} if method == "arc" else {}
        rows = {"taylorch": _guarded(taylorch_run, problem.fun, x0, method, **options)}
        if peer:
            rows["scipy"] = _guarded(scipy_run, problem.fun, x0, peer, True)
            rows["torchmin"] = _guarded(torchmin_run, problem.fun, x0, peer)
        for solver, rec in rows.items():
            table.add(
                method if method != "arc" else "arc (lanczos)",
                solver,
                f"{rec['f']:.2e}",
                rec["nit"],
                rec["nfev"],
                fmt_seconds(rec["cpu"]),
                fmt_ratio(rec["cpu"] / rows["taylorch"]["cpu"]) if rows["taylorch"]["cpu"] else "-",
            )
        data[method] = rows
    return table, data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-n", type=int, default=12, help="largest MGH problem size")
    p.add_argument("--batch", type=int, default=64, help="problems in the batched table")
    p.add_argument("--large-n", type=int, default=1000, help="size of the HVP-only problem")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench-out/minimize_order2.json")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    # Warm up every code path once (torch.func compiles its transforms on first use).
    warm = classic_problem("rosenbrock")
    for method in PEERS:
        taylorch.minimize(warm.fun, warm.x0.double(), method=method, max_iter=2)
    payload: dict[str, Any] = {"args": vars(args)}
    tables = []
    for key, (table, data) in (
        ("suite", suite(args.max_n)),
        ("batched", batched(args.batch, args.seed)),
        ("large", large(args.large_n)),
    ):
        table.print()
        tables.append(table)
        payload[key] = data
    if args.markdown:
        for table in tables:
            print(table.markdown())
    path = write_json(args.out, payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
