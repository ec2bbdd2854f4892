"""Large-scale minimization: L2-regularized logistic regression with 1e5-1e6 features.

The objective (scikit-learn's form, ``C = 1 / lam``)::

    f(w) = sum_i log(1 + exp(-y_i <x_i, w>)) + lam / 2 |w|^2

on synthetic text-like data: ``m`` samples, each with ``k`` features drawn
from a Zipf law over ``n`` features (a few words common, most rare), binary
presence, rows scaled to unit norm (as tf-idf pipelines do), labels from a
planted Gaussian ``w`` plus 10% label noise. ``X`` is a float64 sparse CSR
matrix (kept with its transpose, so both products are row-parallel); the
product ``X w`` is a small autograd function whose backward is the product
with ``X^T``, itself differentiable, so Hessian-vector products work.

Every solver minimizes the same torch function and gets its gradient from
the same autograd graph, and stops on its own test ``max_i |g_i| <= gtol``
(taylorch ``gtol``, scipy L-BFGS-B ``gtol`` with ``ftol = 0``,
``torch.optim.LBFGS`` ``tolerance_grad`` with ``tolerance_change = 0``); the
gradient at the returned point is then recomputed to check it.

Run ``python benchmarks/minimize_large.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np
import torch
from _common import (
    NOT_AVAILABLE,
    Table,
    fmt_ratio,
    fmt_seconds,
    measure,
    resolve_methods,
    set_threads,
    split_names,
    time_call,
    write_json,
)

MAX_ITER = 20_000


class _SparseMatVec(torch.autograd.Function):
    """``A w`` for a fixed sparse CSR ``A``; the backward is ``A^T u`` (differentiable)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, a: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
        ctx.pair = (a, a_t)
        return a @ w

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, a_t = ctx.pair
        return _SparseMatVec.apply(grad, a_t, a), None, None


def _csr(matrix) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR tensor (shares no memory)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float64)),
            size=matrix.shape,
            check_invariants=False,
        )


class Logistic:
    """``f(w) = sum_i softplus(-y_i <x_i, w>) + lam/2 |w|^2`` on synthetic sparse data."""

    def __init__(self, samples: int, features: int, per_row: int, lam: float, seed: int):
        import scipy.sparse as sp

        rng = np.random.default_rng(seed)
        zipf = 1.0 / np.arange(1, features + 1)
        cols = rng.choice(features, size=(samples, per_row), p=zipf / zipf.sum())
        rows = np.repeat(np.arange(samples), per_row)
        x = sp.csr_matrix((np.ones(cols.size), (rows, cols.ravel())), shape=(samples, features))
        x.sum_duplicates()
        x.data[:] = 1.0  # presence
        x = sp.diags(1 / np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())) @ x
        w_true = rng.standard_normal(features)
        y = np.sign(x @ w_true + 1e-12)
        y[rng.random(samples) < 0.1] *= -1
        self.x, self.x_t = _csr(x.tocsr()), _csr(x.T.tocsr())
        self.y = torch.from_numpy(y)
        self.lam = lam
        self.n = features
        self.nnz = int(x.nnz)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        z = _SparseMatVec.apply(w, self.x, self.x_t)
        return torch.nn.functional.softplus(-self.y * z).sum() + 0.5 * self.lam * (w * w).sum()


def value_and_grad(fun, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fun(w), grad fun(w))`` by one reverse pass."""
    w = w.detach().requires_grad_(True)
    f = fun(w)
    (g,) = torch.autograd.grad(f, w)
    return f.detach(), g


class _Counter:
    """``fun`` with a count of its calls (the evaluations a solver really made)."""

    def __init__(self, fun):
        self.fun = fun
        self.calls = 0

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fun(w)


# ------------------------------------------------------------------ the solvers


def taylorch_solve(problem: Logistic, method: str, gtol: float) -> dict[str, Any]:
    import taylorch

    fun = _Counter(problem)
    w0 = torch.zeros(problem.n, dtype=torch.float64)
    res = taylorch.minimize(fun, w0, method=method, gtol=gtol, max_iter=MAX_ITER)
    return {
        "w": res.x,
        "nit": int(res.nit),
        "calls": fun.calls,
        "n_hvp": int(res.n_hvp),
        "message": res.message,
    }


def scipy_lbfgsb(problem: Logistic, gtol: float) -> dict[str, Any]:
    import scipy.optimize as so

    fun = _Counter(problem)

    def fg(w: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = value_and_grad(fun, torch.from_numpy(w))
        return float(f), g.numpy()

    res = so.minimize(
        fg,
        np.zeros(problem.n),
        jac=True,
        method="L-BFGS-B",
        options={
            "gtol": gtol,
            "ftol": 0.0,
            "maxcor": 10,
            "maxiter": MAX_ITER,
            "maxfun": 2 * MAX_ITER,
        },
    )
    return {
        "w": torch.from_numpy(res.x),
        "nit": int(res.nit),
        "calls": fun.calls,
        "message": str(res.message),
    }


def torch_lbfgs(problem: Logistic, gtol: float) -> dict[str, Any]:
    fun = _Counter(problem)
    w = torch.zeros(problem.n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w],
        lr=1,
        max_iter=MAX_ITER,
        max_eval=2 * MAX_ITER,
        tolerance_grad=gtol,
        tolerance_change=0.0,
        history_size=10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = fun(w)
        f.backward()
        return f

    opt.step(closure)
    return {"w": w.detach(), "nit": int(opt.state[w]["n_iter"]), "calls": fun.calls, "message": ""}


# ------------------------------------------------------------------ the benchmark


def run(args: argparse.Namespace) -> dict[str, Any]:
    methods, missing = resolve_methods(args.methods)
    records: list[dict[str, Any]] = []
    for n in args.features:
        seconds, problem = time_call(
            lambda n=n: Logistic(args.samples, n, args.per_row, args.lam, args.seed)
        )
        print(f"n = {n:,}: {problem.nnz:,} nonzeros, data built in {seconds:.1f} s")
        solvers = _solvers(problem, methods, args)
        for name in missing:
            records.append(
                {"n": n, "solver": f"taylorch {name}", "peer": "taylorch", "status": NOT_AVAILABLE}
            )
        for name, peer, solve in solvers:
            timing, out = measure(solve)
            f, g = value_and_grad(problem, out.pop("w"))
            records.append(
                {
                    "n": n,
                    "samples": args.samples,
                    "nnz": problem.nnz,
                    "solver": name,
                    "peer": peer,
                    "seconds": timing.wall,
                    "cpu_seconds": timing.cpu,
                    "f": float(f),
                    "gnorm_inf": float(g.abs().max()),
                    "gnorm_2": float(g.norm()),
                    "reached": bool(g.abs().max() <= args.gtol),
                    **out,
                }
            )
            print(
                f"  {name}: {timing.wall:.2f} s ({timing.cpu:.2f} s CPU), "
                f"|g|_inf = {records[-1]['gnorm_inf']:.1e}"
            )
    return {
        "benchmark": "minimize_large",
        "samples": args.samples,
        "per_row": args.per_row,
        "lam": args.lam,
        "gtol": args.gtol,
        "seed": args.seed,
        "threads": args.threads,
        "clock": args.clock,
        "records": records,
    }


def _solvers(problem: Logistic, methods: list[str], args: argparse.Namespace) -> list[tuple]:
    """``(name, peer, solve)`` for every solver run on ``problem``."""
    solvers = [
        (f"taylorch {m}", "taylorch", lambda m=m: taylorch_solve(problem, m, args.gtol))
        for m in methods
    ]
    if "scipy" in args.peers:
        solvers.append(("scipy L-BFGS-B", "scipy", lambda: scipy_lbfgsb(problem, args.gtol)))
    if "torch" in args.peers:
        solvers.append(("torch.optim.LBFGS", "torch", lambda: torch_lbfgs(problem, args.gtol)))
    return solvers


def tables(result: dict[str, Any]) -> list[Table]:
    records = result["records"]
    main = Table(
        f"minimize, large: L2 logistic regression, {result['samples']} samples, float64 sparse",
        [
            "n",
            "solver",
            "time",
            "CPU",
            "|g|_inf",
            "reached",
            "f",
            "iterations",
            "f+g calls",
            "vs scipy L-BFGS-B",
            "vs torch LBFGS",
        ],
        note=f"Wall and CPU time to max|g_i| <= {result['gtol']:g} from w = 0. vs peer: "
        f"speed-up = peer {result['clock']} time / taylorch {result['clock']} time "
        "(> 1: taylorch faster), only where both reached the tolerance.",
    )
    for r in records:
        if r.get("status") == NOT_AVAILABLE:
            main.add(f"{r['n']:,}", r["solver"], NOT_AVAILABLE, *["-"] * 8)
            continue
        peers = {p["peer"]: p for p in records if p["n"] == r["n"] and "seconds" in p}
        key = "cpu_seconds" if result["clock"] == "cpu" else "seconds"
        up = {k: _speedup(peers.get(k), r, key) for k in ("scipy", "torch")}
        if r["peer"] == "taylorch":
            r["speedups"] = up
        main.add(
            f"{r['n']:,}",
            r["solver"],
            fmt_seconds(r["seconds"]),
            fmt_seconds(r["cpu_seconds"]),
            f"{r['gnorm_inf']:.1e}",
            "yes" if r["reached"] else "NO",
            f"{r['f']:.6g}",
            r["nit"],
            r["calls"],
            fmt_ratio(up["scipy"]) if r["peer"] == "taylorch" else "",
            fmt_ratio(up["torch"]) if r["peer"] == "taylorch" else "",
        )
    return [main]


def _speedup(peer: dict | None, mine: dict, key: str) -> float | None:
    if peer is None or not (peer["reached"] and mine["reached"]):
        return None
    return peer[key] / mine[key]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--methods",
        type=split_names,
        default=split_names("l-bfgs,newton-cg"),
        help="taylorch methods (comma-separated)",
    )
    p.add_argument("--peers", type=split_names, default=["scipy", "torch"])
    p.add_argument(
        "--features",
        type=lambda s: [int(float(v)) for v in split_names(s)],
        default=[100_000, 1_000_000],
        help="sizes n, e.g. 1e5,1e6",
    )
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--per-row", type=int, default=200, help="features drawn per sample")
    p.add_argument("--lam", type=float, default=1e-2, help="L2 weight")
    p.add_argument("--gtol", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for every peer")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="time for the ratios")
    p.add_argument("--out", default="bench-out/minimize_large.json")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    result = run(args)
    for table in tables(result):
        table.print()
        if args.markdown:
            print(table.markdown())
    print(f"wrote {write_json(args.out, result)}")
    return result


if __name__ == "__main__":
    main()
