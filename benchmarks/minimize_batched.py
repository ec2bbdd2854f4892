"""Batched minimization: B independent Rosenbrock problems from random starts.

taylorch solves all ``B`` problems in one batched call (each problem stops on
its own); the peers are a Python loop of ``scipy.optimize.minimize(...,
jac=True)`` fed by torch autograd gradients, a loop of torchmin (it cannot
batch: a ``(B, n)`` start is flattened into one problem of size ``B n``), and
optimistix's BFGS under ``jax.vmap`` + ``jax.jit`` in float64.

Every solver gets the same starts (uniform in ``[-2, 2]^n``, numpy seed),
float64, and a gradient tolerance of ``max_i |g_i| <= 1e-6`` where the method
has one (optimistix stops on its Cauchy test, ``rtol = atol = 1e-8``). A
problem counts as solved when ``f < 1e-8`` or ``f`` is the known local minimum
(about 3.98658 for n = 10, recomputed here with scipy's own Rosenbrock).

First calls run in a fresh subprocess each (imports excluded, every one-time
cost of the first solve included: torch kernel warm-up, JAX tracing and
compilation); steady state is the median of ``--repeat`` further calls.

Run ``python benchmarks/minimize_batched.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    NOT_AVAILABLE,
    Table,
    Timing,
    fmt_ratio,
    fmt_seconds,
    measure,
    measure_steady,
    resolve_methods,
    set_threads,
    split_names,
    write_json,
)

GTOL = 1e-6
OPTX_TOL = 1e-8
SOLVED_F = 1e-8


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """``sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` over the last axis."""
    return (100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2).sum(-1)


def starts(batch: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2.0, 2.0, size=(batch, dim))


def local_minimum(dim: int) -> float:
    """The Rosenbrock local minimum near ``(-1, 1, ..., 1)``, by scipy's own function."""
    import scipy.optimize as so

    x0 = np.ones(dim)
    x0[0] = -1.0
    res = so.minimize(
        so.rosen,
        x0,
        jac=so.rosen_der,
        hess=so.rosen_hess,
        method="trust-exact",
        options={"gtol": 1e-10},
    )
    return float(res.fun)


def solved(f: np.ndarray, f_local: float) -> np.ndarray:
    return (f < SOLVED_F) | (np.abs(f - f_local) <= 1e-6 * abs(f_local))


# ------------------------------------------------------------------ the solvers


def taylorch_solve(method: str, x0: np.ndarray) -> dict[str, Any]:
    import taylorch

    x = torch.from_numpy(x0)
    res = taylorch.minimize(rosenbrock, x, method=method, batched=True, gtol=GTOL)
    return {
        "f": res.fun.numpy(),
        "nfev_mean": float(res.nfev.double().mean()),
        "njev_mean": float(res.njev.double().mean()),
        "n_hvp_mean": float(res.n_hvp.double().mean()),
        "nit_max": int(res.nit.max()),
    }


class _Counted:
    """``x (numpy) -> (f, g)`` by torch autograd, counting calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.calls += 1
        xt = torch.from_numpy(x).requires_grad_(True)
        f = rosenbrock(xt)
        (g,) = torch.autograd.grad(f, xt)
        return float(f.detach()), g.numpy()


def scipy_loop(method: str, x0: np.ndarray) -> dict[str, Any]:
    import scipy.optimize as so

    fun = _Counted()
    f = np.empty(len(x0))
    for i, start in enumerate(x0):
        f[i] = so.minimize(fun, start, jac=True, method=method, options={"gtol": GTOL}).fun
    return {"f": f, "nfev_mean": fun.calls / len(x0)}


def torchmin_loop(method: str, x0: np.ndarray) -> dict[str, Any]:
    import torchmin

    calls = 0

    def fun(x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return rosenbrock(x)

    f = np.empty(len(x0))
    for i, start in enumerate(x0):
        # torchmin's ``tol`` is gtol for bfgs / trust-ncg and xtol for newton-exact.
        res = torchmin.minimize(fun, torch.from_numpy(start), method=method, tol=GTOL)
        f[i] = float(res.fun)
    return {"f": f, "nfev_mean": calls / len(x0)}


def optimistix_run(x0: np.ndarray, repeat: int) -> dict[str, Any]:
    """First call (trace + compile + solve) and steady state of vmapped, jitted BFGS."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optimistix as optx

    def rosen(y, args):
        return jnp.sum(100 * (y[1:] - y[:-1] ** 2) ** 2 + (1 - y[:-1]) ** 2)

    solver = optx.BFGS(rtol=OPTX_TOL, atol=OPTX_TOL)

    @jax.jit
    def solve(y0):
        sol = jax.vmap(lambda y: optx.minimise(rosen, solver, y, max_steps=2000, throw=False))(y0)
        return sol.value, sol.stats["num_steps"]

    y0 = jnp.asarray(x0)
    first, _ = measure(lambda: jax.block_until_ready(solve(y0)))
    steady, times, (y, steps) = measure_steady(lambda: jax.block_until_ready(solve(y0)), repeat)
    f = np.asarray(jax.vmap(rosen, in_axes=(0, None))(y, None))
    return {
        **_times("first", first),
        **_times("steady", steady),
        "steady_all_s": [t.wall for t in times],
        "f": f,
        "nit_max": int(np.asarray(steps).max()),
    }


def _times(name: str, timing: Timing, scale: float = 1.0) -> dict[str, float]:
    return {f"{name}_s": timing.wall * scale, f"{name}_cpu_s": timing.cpu * scale}


# ------------------------------------------------------------------ first calls in a fresh process


def first_call_in_subprocess(args: argparse.Namespace, solver: str) -> dict[str, Any]:
    """Run ``--child solver`` in a fresh interpreter and read its JSON line."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        solver,
        "--batch",
        str(args.batch),
        "--dim",
        str(args.dim),
        "--seed",
        str(args.seed),
        "--repeat",
        str(args.repeat),
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    x0 = starts(args.batch, args.dim, args.seed)
    if args.child == "optimistix":
        out = optimistix_run(x0, args.repeat)
        out["f"] = out["f"].tolist()
    else:
        timing, _ = measure(lambda: taylorch_solve(args.child, x0))
        out = _times("first", timing)
    print(json.dumps(out))


# ------------------------------------------------------------------ the benchmark


def run(args: argparse.Namespace) -> dict[str, Any]:
    x0 = starts(args.batch, args.dim, args.seed)
    f_local = local_minimum(args.dim)
    records: list[dict[str, Any]] = []

    def record(name: str, peer: str, **fields: Any) -> dict[str, Any]:
        f = fields.pop("f", None)
        rec = {"solver": name, "peer": peer, **fields}
        if f is not None:
            f = np.asarray(f)
            rec["solved"] = int(solved(f, f_local).sum())
            rec["problems"] = len(f)
            rec["f_max"] = float(f.max())
        records.append(rec)
        return rec

    methods, missing = resolve_methods(args.methods)
    for method in methods:
        first = first_call_in_subprocess(args, method)
        taylorch_solve(method, x0)  # warm this process
        steady, times, out = measure_steady(lambda m=method: taylorch_solve(m, x0), args.repeat)
        record(
            f"taylorch {method}",
            "taylorch",
            **first,
            **_times("steady", steady),
            steady_all_s=[t.wall for t in times],
            **out,
        )
    for method in missing:
        record(f"taylorch {method}", "taylorch", status=NOT_AVAILABLE)

    for method in args.scipy_methods:
        sub = x0[: args.scipy_subset]
        seconds, out = measure(lambda m=method, s=sub: scipy_loop(m, s))
        record(f"scipy {method} loop", "scipy", **_scaled(seconds, len(sub), args.batch), **out)

    for method in args.torchmin_methods:
        try:
            import torchmin  # noqa: F401
        except ImportError:
            record(f"torchmin {method} loop", "torchmin", status=NOT_AVAILABLE)
            continue
        sub = x0[: args.torchmin_subset]
        seconds, out = measure(lambda m=method, s=sub: torchmin_loop(m, s))
        record(
            f"torchmin {method} loop", "torchmin", **_scaled(seconds, len(sub), args.batch), **out
        )

    if not args.no_optimistix:
        out = first_call_in_subprocess(args, "optimistix")
        if "error" in out:
            record("optimistix bfgs vmap+jit", "optimistix", status=NOT_AVAILABLE, **out)
        else:
            record("optimistix bfgs vmap+jit", "optimistix", **out)

    return {
        "benchmark": "minimize_batched",
        "batch": args.batch,
        "dim": args.dim,
        "seed": args.seed,
        "f_local": f_local,
        "gtol": GTOL,
        "optimistix_tol": OPTX_TOL,
        "repeat": args.repeat,
        "threads": args.threads,
        "clock": args.clock,
        "records": records,
    }


def _scaled(timing: Timing, timed: int, batch: int) -> dict[str, Any]:
    """A loop's time, extrapolated linearly to ``batch`` problems when a subset was timed.

    A loop has no separate first call: the same time stands for both.
    """
    return {
        **_times("first", timing, batch / timed),
        **_times("steady", timing, batch / timed),
        "timed_problems": timed,
        "timed_s": timing.wall,
        "extrapolated": timed < batch,
    }


def tables(result: dict[str, Any]) -> list[Table]:
    records = result["records"]
    batch = result["batch"]
    main = Table(
        f"minimize, batched: {batch} x {result['dim']}-d Rosenbrock, float64",
        ["solver", "first call", "first (CPU)", "steady", "steady (CPU)", "solved",
         "evals/problem", "note"],
        note="Wall-clock and CPU seconds. Loops over a subset are extrapolated linearly to all "
        "problems (marked *). evals/problem: mean function evaluations per problem.",
    )  # fmt: skip
    for r in records:
        if r.get("status") == NOT_AVAILABLE:
            main.add(r["solver"], *["-"] * 6, NOT_AVAILABLE)
            continue
        star = "*" if r.get("extrapolated") else ""
        note = f"{r['timed_problems']} timed{star}" if "timed_problems" in r else ""
        evals = f"{r['nfev_mean']:.0f}" if "nfev_mean" in r else "-"
        main.add(
            r["solver"],
            fmt_seconds(r.get("first_s")) + star,
            fmt_seconds(r.get("first_cpu_s")) + star,
            fmt_seconds(r.get("steady_s")) + star,
            fmt_seconds(r.get("steady_cpu_s")) + star,
            f"{r['solved']}/{r['problems']}",
            evals,
            note,
        )

    peers = {r["solver"]: r for r in records if r["peer"] != "taylorch" and "steady_s" in r}
    scipy = next((r for n, r in peers.items() if n.startswith("scipy") and "BFGS" in n), None)
    tmin = next((r for n, r in peers.items() if n.startswith("torchmin bfgs")), None)
    optx = peers.get("optimistix bfgs vmap+jit")
    clock = "_cpu_s" if result["clock"] == "cpu" else "_s"
    ratios = Table(
        f"taylorch vs peers, {result['clock']} time (speed-up = peer time / taylorch time; "
        "> 1 means taylorch is faster)",
        [
            "taylorch",
            "vs scipy BFGS loop",
            "vs torchmin BFGS loop",
            "vs optimistix 1st call",
            "vs optimistix steady",
            "targets",
        ],
        note="scipy/torchmin: steady states compared. optimistix 1st call: taylorch first call "
        "(fresh process) vs optimistix first call (trace + compile). Targets: >= 100x scipy, "
        "> 1x optimistix 1st call, >= 0.5x optimistix steady, every problem solved.",
    )
    for r in records:
        if r["peer"] != "taylorch" or "steady_s" not in r:
            continue
        up = {
            "scipy": _speedup(scipy, r, "steady" + clock),
            "torchmin": _speedup(tmin, r, "steady" + clock),
            "first": _speedup(optx, r, "first" + clock),
            "steady": _speedup(optx, r, "steady" + clock),
        }
        met = [
            up["scipy"] is not None and up["scipy"] >= 100,
            up["first"] is not None and up["first"] > 1,
            up["steady"] is not None and up["steady"] >= 0.5,
            r["solved"] == r["problems"],
        ]
        r["speedups"] = up
        r["targets_met"] = met
        ratios.add(
            r["solver"],
            fmt_ratio(up["scipy"]),
            fmt_ratio(up["torchmin"]),
            fmt_ratio(up["first"]),
            fmt_ratio(up["steady"]),
            f"{sum(met)}/4 " + "".join("✓" if m else "✗" for m in met),
        )
    return [main, ratios]


def _speedup(peer: dict | None, mine: dict, key: str) -> float | None:
    if peer is None or peer.get(key) is None or mine.get(key) is None:
        return None
    return peer[key] / mine[key]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--methods",
        type=split_names,
        default=split_names("bfgs,l-bfgs,newton,trust-ncg,trust-exact"),
        help="taylorch methods (comma-separated)",
    )
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="steady-state calls (median)")
    p.add_argument("--scipy-methods", type=split_names, default=["BFGS"])
    p.add_argument("--scipy-subset", type=int, default=1024, help="problems timed in the loop")
    p.add_argument(
        "--torchmin-methods", type=split_names, default=split_names("bfgs,newton-exact,trust-ncg")
    )
    p.add_argument("--torchmin-subset", type=int, default=32)
    p.add_argument("--no-optimistix", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for every peer")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="time for the ratios")
    p.add_argument("--out", default="bench-out/minimize_batched.json")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.scipy_subset = min(args.scipy_subset, args.batch)
    args.torchmin_subset = min(args.torchmin_subset, args.batch)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    if args.child:
        child(args)
        return {}
    result = run(args)
    for table in tables(result):
        table.print()
        if args.markdown:
            print(table.markdown())
    path = write_json(args.out, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
