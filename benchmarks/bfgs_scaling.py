"""BFGS on rotated quadratics whose eigenvalues sit at different scales, vs scipy's BFGS.

``f(x) = x^T A x / 2`` with ``A = Q diag(lambda) Q^T`` (``Q`` a random rotation) and
``lambda`` log-spaced over ``[10^lo, 10^lo * cond]``, from ``x0 = 1``. Only the scale
``10^lo`` changes between rows of one condition number: a scale-invariant method
takes the same steps at every scale, up to rounding.

taylorch's BFGS scales its first inverse-Hessian model by ``<s, y> / <y, y>`` after
the first step (Nocedal & Wright eq. 6.20); scipy's keeps ``H0 = I`` and picks each
first trial step from the last decrease of ``f`` (Fletcher). ``H0 = I`` is
scale-dependent: it suits eigenvalues >= 1 (every step too long, so each line search
interpolates to nearly the exact minimizer along the line, and BFGS with exact
searches ends in ``n`` steps on a quadratic), and is poor below.

Both stop at ``|g| <= 1e-6 |g(x0)|`` (a relative test, so that the scale does not
move the target); counts are function-and-gradient evaluations.

    python benchmarks/bfgs_scaling.py --markdown
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.optimize
import torch
from _common import Table, set_threads, write_json

import taylorch


def quadratic(n: int, lo: float, cond: float, seed: int) -> torch.Tensor:
    lam = torch.logspace(lo, lo + np.log10(cond), n, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))[0]
    return q @ torch.diag(lam) @ q.T


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10,50")
    p.add_argument("--conds", default="1e2,1e8")
    p.add_argument("--scales", default="-8,-4,0,4", help="log10 of the smallest eigenvalue")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--out", default="bench-out/bfgs_scaling.json")
    args = p.parse_args(argv)
    set_threads(args.threads)

    table = Table(
        "BFGS on rotated quadratics: evaluations to |g| <= 1e-6 |g0|",
        ["n", "cond", "smallest eigenvalue", "taylorch bfgs", "scipy BFGS", "scipy / taylorch"],
        note="'!' marks a run that did not reach the tolerance.",
    )
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        for cond in (float(v) for v in args.conds.split(",")):
            for lo in (float(v) for v in args.scales.split(",")):
                a = quadratic(n, lo, cond, args.seed)
                x0 = torch.ones(n, dtype=torch.float64)
                gtol = 1e-6 * float(torch.linalg.vector_norm(a @ x0))

                def fun(x, a=a):
                    return 0.5 * x @ (a @ x)

                ours = taylorch.minimize(fun, x0, method="bfgs", gtol=gtol)

                def value_and_grad(x, a=a):
                    xt = torch.from_numpy(x)
                    return float(0.5 * xt @ (a @ xt)), (a @ xt).numpy()

                theirs = scipy.optimize.minimize(
                    value_and_grad, x0.numpy(), jac=True, method="BFGS", options={"gtol": gtol}
                )
                row = {
                    "n": n,
                    "cond": cond,
                    "lambda_min": 10**lo,
                    "taylorch": int(ours.nfev),
                    "taylorch_ok": bool(ours.success),
                    "scipy": int(theirs.nfev),
                    "scipy_ok": bool(theirs.success),
                }
                rows.append(row)
                table.add(
                    n,
                    f"{cond:.0e}",
                    f"1e{int(lo)}",
                    f"{row['taylorch']}{'' if row['taylorch_ok'] else '!'}",
                    f"{row['scipy']}{'' if row['scipy_ok'] else '!'}",
                    f"{row['scipy'] / row['taylorch']:.2f}x",
                )
    table.print()
    if args.markdown:
        print(table.markdown())
    write_json(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
