"""Least squares: the NIST StRD suite from both starts, and 10,000 batched curve fits.

Part 1 (NIST). Every one of the 27 NIST StRD nonlinear regression datasets
from both certified starting points (54 fits), float64. A fit is *solved* when
every parameter agrees with its certified value to at least 6 significant
digits (log relative error >= 6). Peers: ``scipy.optimize.least_squares``
with ``method="trf"`` and ``"lm"``, each with the exact Jacobian (torch
autograd), once with tolerances of 1e-15 (``max_nfev`` unlimited) and once
with scipy's defaults, and ``lmfit.minimize`` with its defaults (``leastsq``,
finite-difference Jacobian) if lmfit is installed. taylorch runs with its
default settings. "Residual evaluations" are calls of the residual function:
scipy's ``nfev`` (its Jacobian calls are ``njev``); for taylorch every call
returns the residual and its Jacobian together (``nfev``; ``njev`` of them
formed a Jacobian) or a second directional derivative (geodesic
acceleration, also one call); lmfit's ``nfev`` includes its finite-difference
calls.

Part 2 (batched). ``B`` independent exponential-decay fits
``y = a exp(-b t) + c`` (3 parameters, ``m`` points each, noisy, random true
parameters): taylorch fits all of them in one batched call (the residual maps
``(B, 3) -> (B, m)``); the peers are Python loops of ``scipy.optimize.
least_squares`` (trf and lm, exact Jacobian) and ``scipy.optimize.curve_fit``,
timed on ``--scipy-subset`` fits and extrapolated to ``B``. Times are CPU
seconds of this process (steadier than wall time on a shared machine; ``--clock
wall`` for wall time); taylorch's is the median of ``--repeat`` calls after a
warm-up call.

Run ``python benchmarks/least_squares.py --help`` for the options.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import scipy.optimize
import torch
from _common import Table, fmt_ratio, fmt_seconds, measure, measure_steady, set_threads, write_json

import taylorch
from taylorch import derivatives
from taylorch.bench.problems.nist import NIST_NAMES, load_nist

TIGHT = 1e-15


# -- part 1: NIST -----------------------------------------------------------------------
def nist_cases():
    for name in NIST_NAMES:
        p = load_nist(name)
        for start, x0 in ((1, p.start1), (2, p.start2)):
            yield f"{name}-{start}", p, x0.clone()


def lre(p, x: torch.Tensor) -> float:
    return float(p.log_relative_error(torch.as_tensor(x, dtype=torch.float64)).min())


def run_taylorch(p, x0: torch.Tensor, options: dict[str, Any]) -> dict[str, Any]:
    timing, res = measure(lambda: taylorch.least_squares(p.residual, x0, **options))
    std = (res.stderr - p.certified_std).abs() / p.certified_std
    return {
        "lre": lre(p, res.x),
        "std_lre": float((-torch.log10(std)).clamp(0, 11).min()),
        "nfev": int(res.nfev),
        "njev": int(res.njev),
        "seconds": timing.cpu,
        "status": res.status.name,
    }


def run_scipy(p, x0: torch.Tensor, method: str, tol: float | None) -> dict[str, Any]:
    def fun(b):
        return p.residual(torch.from_numpy(b)).numpy()

    def jac(b):
        return derivatives.jacobian(p.residual, torch.from_numpy(b)).numpy()

    options = {} if tol is None else {"ftol": tol, "xtol": tol, "gtol": tol, "max_nfev": 10**6}
    timing, res = measure(
        lambda: scipy.optimize.least_squares(fun, x0.numpy(), jac=jac, method=method, **options)
    )
    return {
        "lre": lre(p, res.x),
        "nfev": int(res.nfev),
        "njev": int(res.njev or 0),
        "seconds": timing.cpu,
        "status": int(res.status),
    }


def run_lmfit(p, x0: torch.Tensor) -> dict[str, Any]:
    import lmfit

    params = lmfit.Parameters()
    for i, value in enumerate(x0.tolist()):
        params.add(f"b{i + 1}", value=value)

    calls = []

    def fun(ps):
        calls.append(1)
        b = torch.tensor([ps[f"b{i + 1}"].value for i in range(len(x0))], dtype=torch.float64)
        return p.residual(b).numpy()

    def fit():
        try:
            res = lmfit.minimize(fun, params)
        except ValueError:  # lmfit's default nan_policy="raise": a NaN ends the fit
            return None
        return [res.params[f"b{i + 1}"].value for i in range(len(x0))]

    timing, x = measure(fit)
    digits = 0.0 if x is None else lre(p, torch.tensor(x))
    return {"lre": digits, "nfev": len(calls), "njev": 0, "seconds": timing.cpu}


def nist_part(args) -> tuple[Table, dict[str, Any]]:
    runners = {
        "taylorch lm (defaults)": lambda p, x0: run_taylorch(p, x0, {}),
        "taylorch lm, no geodesic acceleration": lambda p, x0: run_taylorch(
            p, x0, {"geodesic": False}
        ),
        "scipy trf, tol 1e-15": lambda p, x0: run_scipy(p, x0, "trf", TIGHT),
        "scipy lm, tol 1e-15": lambda p, x0: run_scipy(p, x0, "lm", TIGHT),
        "scipy trf, defaults": lambda p, x0: run_scipy(p, x0, "trf", None),
        "scipy lm, defaults": lambda p, x0: run_scipy(p, x0, "lm", None),
    }
    try:
        import lmfit  # noqa: F401

        runners["lmfit leastsq, defaults"] = run_lmfit
    except ImportError:
        pass
    records: dict[str, dict[str, Any]] = {name: {} for name in runners}
    for case, p, x0 in nist_cases():
        for name, run in runners.items():
            records[name][case] = run(p, x0.clone())

    reference = sum(r["nfev"] for r in records["scipy trf, tol 1e-15"].values())
    table = Table(
        "NIST StRD, 27 datasets x 2 starts: fits with every parameter to >= 6 digits",
        [
            "solver",
            "solved",
            "residual evals",
            "evals vs scipy trf 1e-15",
            "Jacobian evals",
            "CPU time",
            "failed fits",
        ],
        note=(
            "Residual evals: calls of the residual (taylorch: each also gives J, or a second "
            "directional derivative; lmfit: includes finite differences). Exact Jacobians for "
            "scipy. 'solved' counts parameters only; taylorch also reproduces every certified "
            "standard deviation to 4 digits except Lanczos1's, which float64 rounding of its "
            "1e-25 residual sum of squares limits to about 3."
        ),
    )
    summary = {}
    for name, rec in records.items():
        solved = [c for c, r in rec.items() if r["lre"] >= 6]
        failed = sorted(set(rec) - set(solved))
        nfev = sum(r["nfev"] for r in rec.values())
        summary[name] = {"solved": len(solved), "nfev": nfev, "failed": failed}
        table.add(
            name,
            f"{len(solved)}/{len(rec)}",
            f"{nfev:,}",
            fmt_ratio(nfev / reference),
            f"{sum(r['njev'] for r in rec.values()):,}",
            fmt_seconds(sum(r["seconds"] for r in rec.values())),
            ", ".join(failed[:6]) + (" ..." if len(failed) > 6 else "") or "-",
        )
    return table, {"records": records, "summary": summary}


# -- part 2: batched fits -----------------------------------------------------------------
def decay_problems(batch: int, points: int, seed: int):
    rng = np.random.default_rng(seed)
    truth = np.stack(
        [rng.uniform(1, 3, batch), rng.uniform(0.5, 2, batch), rng.uniform(-1, 1, batch)], 1
    )
    t = np.linspace(0, 5, points)
    y = (
        truth[:, :1] * np.exp(-truth[:, 1:2] * t)
        + truth[:, 2:]
        + 0.01 * rng.standard_normal((batch, points))
    )
    x0 = np.tile([1.0, 1.0, 0.0], (batch, 1))
    return t, y, x0


def scipy_loop(t, y, x0, count: int, kind: str):
    """Fit the first ``count`` problems one by one; returns (Timing, parameters)."""

    def model(tt, a, b, c):
        return a * np.exp(-b * tt) + c

    def fit_all():
        out = []
        for i in range(count):
            if kind == "curve_fit":
                out.append(scipy.optimize.curve_fit(model, t, y[i], p0=x0[i])[0])
                continue

            def fun(p, i=i):
                return p[0] * np.exp(-p[1] * t) + p[2] - y[i]

            def jac(p):
                e = np.exp(-p[1] * t)
                return np.stack([e, -p[0] * t * e, np.ones_like(t)], 1)

            out.append(scipy.optimize.least_squares(fun, x0[i], jac=jac, method=kind).x)
        return np.array(out)

    return measure(fit_all)


def batched_part(args) -> tuple[Table, dict[str, Any]]:
    t, y, x0 = decay_problems(args.batch, args.points, args.seed)
    tt, yt, xt = (torch.from_numpy(a) for a in (t, y, x0))

    def residual(p):
        return p[:, :1] * torch.exp(-p[:, 1:2] * tt) + p[:, 2:] - yt

    # The reference solution of the timed subset: scipy trf at 1e-15.
    sub = args.scipy_subset
    reference = np.array(
        [
            scipy.optimize.least_squares(
                lambda p, i=i: p[0] * np.exp(-p[1] * t) + p[2] - y[i],
                x0[i],
                ftol=TIGHT,
                xtol=TIGHT,
                gtol=TIGHT,
            ).x
            for i in range(sub)
        ]
    )

    def agree(x: np.ndarray) -> float:
        rel = np.abs(x[:sub] - reference) / np.maximum(np.abs(reference), 1e-12)
        return float((rel.max(axis=1) <= 1e-6).mean())

    rows, record = [], {}
    for name, options in (
        ("taylorch lm, one batched call (defaults)", {}),
        ("taylorch lm, no geodesic acceleration", {"geodesic": False}),
        ("taylorch lm, scipy's tolerances (1e-8)", {"ftol": 1e-8, "xtol": 1e-8, "gtol": 1e-8}),
    ):

        def call(options=options):
            return taylorch.least_squares(residual, xt, batched=True, **options)

        call()  # warm-up
        timing, _, res = measure_steady(call, args.repeat)
        seconds = getattr(timing, args.clock)
        x = res.x.numpy()
        rows.append((name, seconds, agree(x), float(res.success.double().mean()), res))
        record[name] = {
            "seconds": seconds,
            "agree": agree(x),
            "success": float(res.success.double().mean()),
            "mean_nfev": float(res.nfev.double().mean()),
            "max_nit": int(res.nit.max()),
        }
    for kind in ("trf", "lm", "curve_fit"):
        timing, x = scipy_loop(t, y, x0, sub, kind)
        seconds = getattr(timing, args.clock) * args.batch / sub
        name = f"scipy {kind} loop" + (" (exact Jacobian)" if kind != "curve_fit" else "")
        rows.append((name, seconds, agree(x), None, None))
        record[name] = {"seconds": seconds, "agree": agree(x), "timed_fits": sub}

    trf = next(s for n, s, *_ in rows if n.startswith("scipy trf"))
    fastest_scipy = min(s for n, s, *_ in rows if n.startswith("scipy"))
    table = Table(
        f"{args.batch:,} exponential-decay fits (3 parameters, {args.points} points each)",
        ["solver", "time", "scipy trf loop / this", "fastest scipy loop / this", "agree"],
        note=(
            f"scipy loops timed on the first {sub} fits and extrapolated to {args.batch:,}; "
            f"{args.clock} seconds, {args.threads} thread(s). 'agree': parameters within 1e-6 "
            "(relative) of scipy trf at tolerance 1e-15, on those fits."
        ),
    )
    for name, seconds, agreement, _, _ in rows:
        table.add(
            name,
            fmt_seconds(seconds),
            fmt_ratio(trf / seconds),
            fmt_ratio(fastest_scipy / seconds),
            f"{agreement:.1%}",
        )
    return table, record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["all", "nist", "batched"], default="all")
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--points", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="steady-state batched calls (median)")
    p.add_argument("--scipy-subset", type=int, default=500, help="fits timed in each scipy loop")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for every solver")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument("--out", default="bench-out/least_squares.json")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    args = p.parse_args()
    set_threads(args.threads)
    payload: dict[str, Any] = {"args": vars(args)}
    tables = []
    if args.part in ("all", "nist"):
        table, payload["nist"] = nist_part(args)
        tables.append(table)
    if args.part in ("all", "batched"):
        if args.scipy_subset > args.batch:
            raise SystemExit("--scipy-subset must not exceed --batch")
        table, payload["batched"] = batched_part(args)
        tables.append(table)
    for table in tables:
        table.print()
        if args.markdown:
            print(table.markdown())
    print("wrote", write_json(args.out, payload))


if __name__ == "__main__":
    main()
