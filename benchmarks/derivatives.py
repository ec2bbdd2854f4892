"""Cost of Hessian-vector products and of orthogonalization, against their natural baselines.

Part ``hvp``: one Hessian-vector product of a model's loss in its flat
parameter vector (:func:`taylorch.derivatives.module_function`) relative to
one gradient of the same loss, for

* an MLP 784-512-512-10 (tanh), cross-entropy, batch 256 (669k parameters);
* a transformer encoder block (``nn.TransformerEncoderLayer``, d = 256,
  4 heads, feed-forward 1024, no dropout), squared error, batch 8 x seq 128
  (790k parameters). PyTorch's CPU flash-attention kernel has no forward-mode
  rule, so the block runs with the math attention backend throughout (all
  rows alike); with the default kernel only the reverse modes work.

Rows: the gradient (``value_and_grad``), forward-over-reverse
(``hvp(mode="forward")``), reverse-over-reverse building a new graph each call
(``hvp(mode="reverse")``), a product through ``hvp_operator`` whose graph is
built once (what Krylov solvers do; the one-off build is its own row), and
PyTorch's ``torch.autograd.functional.hvp`` as the peer. The theoretical floor
of an HVP is about twice a gradient. Two more rows time one generalized
Gauss-Newton product: through graphs kept once (``ggn_vp_operator``, what
``curvature.ggn_operator`` uses) and the textbook forward-mode JVP, loss HVP, VJP.

Part ``ortho``: the polar factor ``U V^T`` of a Gaussian float32 matrix by
``taylorch.linalg.polar_express`` and ``newton_schulz`` against a reduced
``torch.linalg.svd``, for 256 x 256, 1024 x 1024 and 512 x 2048. Reported: time,
time relative to the SVD, orthogonality error ``||Q^T Q - I||_2`` (``Q Q^T``
for wide matrices), relative distance ``||Q - U V^T||_F / ||U V^T||_F`` to
the float64 polar factor, and the range of the singular values of ``Q``.

Timing: one warm-up call of each row, then ``--repeat`` rounds that call every
row of a table once (round-robin, so a busy spell on a shared machine hits all
rows alike); the median per row, wall clock, in one process. Run ``python benchmarks/derivatives.py --help`` for options.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import torch
from _common import Table, fmt_ratio, fmt_seconds, set_threads, time_call, write_json
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from taylorch.derivatives import (
    ggn_vp_operator,
    hvp,
    hvp_operator,
    jvp,
    module_function,
    value_and_grad,
    vjp,
)


def time_interleaved(
    calls: list[Callable[[], Any]], repeat: int
) -> tuple[list[float], list[list[float]], list[Any]]:
    """Median wall time of each call over ``repeat`` rounds, one call of each per round.

    Round-robin order spreads the drifting load of a shared machine over all
    rows alike instead of charging it to whichever row ran during a busy spell.
    Every call runs once first as a warm-up. Returns ``(medians, times, outputs)``.
    """
    outputs = [call() for call in calls]
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(max(1, repeat)):
        for i, call in enumerate(calls):
            seconds, outputs[i] = time_call(call)
            times[i].append(seconds)
    return [statistics.median(t) for t in times], times, outputs


# ----------------------------------------------------------------------------- part (a): HVP


def mlp_problem(gen: torch.Generator) -> tuple[nn.Module, Callable, Tensor]:
    model = nn.Sequential(
        nn.Linear(784, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 10)
    )
    x = torch.randn(256, 784, generator=gen)
    y = torch.randint(0, 10, (256,), generator=gen)
    return model, lambda out: F.cross_entropy(out, y), x


def transformer_problem(gen: torch.Generator) -> tuple[nn.Module, Callable, Tensor]:
    model = nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True)
    x = torch.randn(8, 128, 256, generator=gen)
    y = torch.randn(8, 128, 256, generator=gen)
    # Written out: F.mse_loss has no forward-over-reverse rule in torch 2.x.
    return model, lambda out: (out - y).pow(2).mean(), x


def hvp_rows(name: str, problem, repeat: int, gen: torch.Generator) -> list[dict[str, Any]]:
    model, loss, inputs = problem
    fun, theta = module_function(model, loss, inputs)
    v = torch.randn(theta.shape, generator=gen)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("gradient (value_and_grad)", lambda: value_and_grad(fun, theta)),
        ("hvp forward-over-reverse", lambda: hvp(fun, theta, v, mode="forward")),
        ("hvp reverse-over-reverse", lambda: hvp(fun, theta, v, mode="reverse")),
        ("hvp_operator build (once)", lambda: hvp_operator(fun, theta)),
    ]
    operator = hvp_operator(fun, theta)
    cases.append(("hvp_operator product (reused graph)", lambda: operator(v)))
    cases.append(
        (
            "peer: torch.autograd.functional.hvp",
            lambda: torch.autograd.functional.hvp(fun, theta, v),
        )
    )
    # The Gauss-Newton product J^T H_L J v: through graphs kept once (what ggn_operator
    # does), and the textbook way, a forward-mode JVP, the loss's HVP and a VJP per product.
    model_fn = module_function(model, lambda out: out, inputs)[0]
    ggn = ggn_vp_operator(model_fn, loss, theta)
    cases.append(("ggn_vp_operator product (reused graphs)", lambda: ggn(v)))
    cases.append(
        ("ggn by jvp + hvp + vjp (textbook)", lambda: _ggn_forward_mode(model_fn, loss, theta, v))
    )
    medians, times, _ = time_interleaved([call for _, call in cases], repeat)
    return [
        {
            "model": name,
            "parameters": theta.numel(),
            "method": label,
            "seconds": med,
            "times": ts,
            "ratio_to_gradient": med / medians[0],
        }
        for (label, _), med, ts in zip(cases, medians, times)
    ]


def _ggn_forward_mode(model_fn: Callable, loss: Callable, theta: Tensor, v: Tensor) -> Tensor:
    out, jv = jvp(model_fn, theta, v)
    return vjp(model_fn, theta, hvp(loss, out, jv))[1]


def run_hvp(repeat: int, seed: int) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(seed)
    rows = hvp_rows("MLP 784-512-512-10, batch 256", mlp_problem(gen), repeat, gen)
    with sdpa_kernel(SDPBackend.MATH):
        rows += hvp_rows(
            "transformer block d=256 h=4, 8x128", transformer_problem(gen), repeat, gen
        )
    return rows


# ----------------------------------------------------------------------------- part (b): polar


def polar_svd(g: Tensor) -> Tensor:
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    return u @ vh


def orthogonality_error(q: Tensor) -> float:
    q = q.double()
    gram = q.mT @ q if q.shape[-2] >= q.shape[-1] else q @ q.mT
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
    return torch.linalg.matrix_norm(gram - eye, ord=2).item()


def run_ortho(repeat: int, seed: int) -> list[dict[str, Any]]:
    from taylorch.linalg import newton_schulz, polar_express

    gen = torch.Generator().manual_seed(seed)
    methods: list[tuple[str, Callable[[Tensor], Tensor]]] = [
        ("torch.linalg.svd", polar_svd),
        ("newton_schulz quintic 5", lambda g: newton_schulz(g, 5, "quintic")),
        ("newton_schulz cubic 10", lambda g: newton_schulz(g, 10, "cubic")),
        ("polar_express 5", lambda g: polar_express(g, 5)),
        ("polar_express 8", lambda g: polar_express(g, 8)),
    ]
    rows = []
    for shape in ((256, 256), (1024, 1024), (512, 2048)):
        g = torch.randn(shape, generator=gen)
        exact = polar_svd(g.double())
        calls = [lambda m=method, g=g: m(g) for _, method in methods]
        medians, times, outputs = time_interleaved(calls, repeat)
        for (label, _), med, ts, q in zip(methods, medians, times, outputs):
            sv = torch.linalg.svdvals(q.double())
            rows.append(
                {
                    "shape": list(shape),
                    "method": label,
                    "seconds": med,
                    "times": ts,
                    "ratio_to_svd": med / medians[0],
                    "orthogonality_error": orthogonality_error(q),
                    "singular_value_range": [sv.min().item(), sv.max().item()],
                    "distance_to_polar": (
                        torch.linalg.matrix_norm(q.double() - exact) / exact.norm()
                    ).item(),
                }
            )
    return rows


# ----------------------------------------------------------------------------- report


def hvp_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        "Hessian-vector product cost relative to one gradient (floor about 2x)",
        ["model", "method", "time", "ratio to gradient"],
        note="median wall time per call; hvp_operator product excludes its one-off build",
    )
    for r in rows:
        table.add(
            r["model"], r["method"], fmt_seconds(r["seconds"]), fmt_ratio(r["ratio_to_gradient"])
        )
    return table


def ortho_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        "Polar factor of a Gaussian float32 matrix",
        [
            "shape",
            "method (steps)",
            "time",
            "vs SVD",
            "orth. error",
            "dist. to polar",
            "sigma(Q) range",
        ],
        note="orth. error = ||Q^T Q - I||_2 (Q Q^T if wide); dist. to polar = "
        "||Q - U V^T||_F / ||U V^T||_F against the float64 SVD; a square Gaussian matrix has "
        "singular values near 0, which no few-step polynomial lifts to 1",
    )
    for r in rows:
        table.add(
            "x".join(map(str, r["shape"])),
            r["method"],
            fmt_seconds(r["seconds"]),
            fmt_ratio(r["ratio_to_svd"]),
            f"{r['orthogonality_error']:.2e}",
            f"{r['distance_to_polar']:.2e}",
            "[{:.3g}, {:.3g}]".format(*r["singular_value_range"]),
        )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "hvp", "ortho"], default="all")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per row (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-out/derivatives.json", help="JSON output path")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    args = parser.parse_args(argv)
    set_threads(args.threads)

    payload: dict[str, Any] = {"repeat": args.repeat, "seed": args.seed, "threads": args.threads}
    tables = []
    if args.part in ("all", "hvp"):
        payload["hvp"] = run_hvp(args.repeat, args.seed)
        tables.append(hvp_table(payload["hvp"]))
    if args.part in ("all", "ortho"):
        payload["ortho"] = run_ortho(args.repeat, args.seed)
        tables.append(ortho_table(payload["ortho"]))
    for table in tables:
        table.print()
        if args.markdown:
            print(table.markdown())
    print(f"wrote {write_json(args.out, payload)}")


if __name__ == "__main__":
    main()
