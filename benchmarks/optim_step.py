"""Cost of one training step (forward + backward + optimizer step) per optimizer.

Models:

* ``mlp``: 256-512-512-10 (ReLU), cross-entropy, batch 512 (399k parameters);
* ``transformer``: one ``nn.TransformerEncoderLayer`` (d = 128, 4 heads, feed-forward
  512, pre-norm, no dropout) on batch 16 x seq 64, mean-pooled into a linear head of
  10 classes, cross-entropy (207k parameters).

Rows: ``torch.optim.AdamW`` (the baseline every ratio is against), each taylorch
optimizer, and the same algorithm from ``torch.optim`` (``Muon`` for matrices with
``AdamW`` for the rest), heavyball (``MuonAdamW``) and pytorch-optimizer (``Muon`` with
``use_muon`` groups, ``AdaBound``) where they have it. Optimizers that need the loss
(Polyak, line search, model building, zeroth order) are stepped with a closure; their
step includes the extra forward (and backward) passes their rule costs.

Timing: the first step of every row on a fresh model (compile or warm-up cost
included), then ``--warmup`` unrecorded rounds and ``--rounds`` rounds that step every
row once (round-robin, so a busy spell of a shared machine hits all rows alike); the
median per row, wall clock, one process. ``python benchmarks/optim_step.py --help``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from _common import Table, fmt_ratio, fmt_seconds, set_threads, write_json
from torch import nn

from taylorch import optim as tay


@dataclass
class Row:
    algorithm: str
    implementation: str
    make: Callable[[nn.Module], list[torch.optim.Optimizer]]
    closure: bool = False  # stepped as opt.step(closure)


def split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    mats = [p for p in model.parameters() if p.ndim >= 2]
    return mats, [p for p in model.parameters() if p.ndim < 2]


def rows(peers: bool) -> list[Row]:
    out = [
        Row("AdamW", "torch", lambda m: [torch.optim.AdamW(m.parameters(), lr=1e-3)]),
        Row("Muon", "taylorch", lambda m: [tay.Muon(m.parameters(), lr=1e-3)]),
        Row(
            "Muon",
            "taylorch (Polar Express, 3 steps)",
            lambda m: [
                tay.Muon(
                    m.parameters(),
                    lr=1e-3,
                    orthogonalize="polar_express",
                    ns_steps=3,
                    ns_lower=1e-2,
                )
            ],
        ),
        Row(
            "Muon",
            "torch (+AdamW)",
            lambda m: [
                torch.optim.Muon(split(m)[0], lr=1e-3),
                torch.optim.AdamW(split(m)[1], lr=1e-3),
            ],
        ),
        Row("AdaBound", "taylorch", lambda m: [tay.AdaBound(m.parameters(), lr=1e-3)]),
        Row("SPS-max", "taylorch", lambda m: [tay.SPS(m.parameters(), lr=1.0)], True),
        Row("Polyak+momentum", "taylorch", lambda m: [tay.PolyakMomentum(m.parameters())], True),
        Row("SLS (Armijo)", "taylorch", lambda m: [tay.SLS(m.parameters())], True),
        Row("SMB", "taylorch", lambda m: [tay.SMB(m.parameters())], True),
        Row("ZO-SGD", "taylorch", lambda m: [tay.ZOSGD(m.parameters(), seed=0)], True),
        Row("ZO-Adam", "taylorch", lambda m: [tay.ZOAdam(m.parameters(), seed=0)], True),
        Row("ZO-AdaMU", "taylorch", lambda m: [tay.ZOAdaMU(m.parameters(), seed=0)], True),
    ]
    if peers:
        import heavyball
        import pytorch_optimizer as po

        out += [
            Row(
                "Muon",
                "heavyball (MuonAdamW)",
                lambda m: [heavyball.MuonAdamW(m.parameters(), lr=1e-3)],
            ),
            Row(
                "Muon",
                "pytorch-optimizer",
                lambda m: [
                    po.Muon(
                        [
                            {"params": split(m)[0], "use_muon": True},
                            {"params": split(m)[1], "use_muon": False},
                        ],
                        lr=1e-3,
                    )
                ],
            ),
            Row("AdaBound", "pytorch-optimizer", lambda m: [po.AdaBound(m.parameters(), lr=1e-3)]),
        ]
    return out


class Pooled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.TransformerEncoderLayer(
            128, 4, 512, dropout=0.0, batch_first=True, norm_first=True
        )
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x).mean(dim=1))


def problem(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if name == "mlp":
        model = nn.Sequential(
            nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
        )
        return model, torch.randn(512, 256), torch.randint(0, 10, (512,))
    return Pooled(), torch.randn(16, 64, 128), torch.randint(0, 10, (16,))


class Stepper:
    """One model copy with its optimizers; ``step()`` is one full training step."""

    def __init__(self, row: Row, base: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model = copy.deepcopy(base)
        self.opts = row.make(self.model)
        self.row, self.x, self.y = row, x, y

    def closure(self) -> torch.Tensor:
        for o in self.opts:
            o.zero_grad()
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    def step(self) -> None:
        if self.row.closure:
            self.opts[0].step(self.closure)
            return
        self.closure()
        for o in self.opts:
            o.step()


def measure(model_name: str, all_rows: list[Row], rounds: int, warmup: int) -> list[dict[str, Any]]:
    base, x, y = problem(model_name)
    steppers, first = [], []
    for row in all_rows:
        s = Stepper(row, base, x, y)
        start = time.perf_counter()
        s.step()
        first.append(time.perf_counter() - start)
        steppers.append(s)
    for _ in range(warmup):
        for s in steppers:
            s.step()
    times: list[list[float]] = [[] for _ in steppers]
    for _ in range(rounds):
        for s, ts in zip(steppers, times):
            start = time.perf_counter()
            s.step()
            ts.append(time.perf_counter() - start)
    results = []
    for row, f, ts in zip(all_rows, first, times):
        results.append(
            {
                "model": model_name,
                "algorithm": row.algorithm,
                "implementation": row.implementation,
                "first_step_s": f,
                "median_step_s": statistics.median(ts),
                "times_s": ts,
            }
        )
    adamw = results[0]["median_step_s"]
    for r in results:
        r["vs_adamw"] = r["median_step_s"] / adamw
        peers = [
            q["median_step_s"]
            for q in results
            if q["algorithm"] == r["algorithm"] and not q["implementation"].startswith("taylorch")
        ]
        fastest = min(peers) if peers else None
        is_ours = r["implementation"].startswith("taylorch")
        r["vs_fastest_peer"] = r["median_step_s"] / fastest if (fastest and is_ours) else None
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mlp,transformer")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-peers", action="store_true", help="skip heavyball/pytorch-optimizer")
    parser.add_argument("--json", default="bench-out/optim_step.json")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    args = parser.parse_args()
    set_threads(args.threads)
    all_rows = rows(peers=not args.no_peers)
    results = []
    for name in args.models.split(","):
        res = measure(name.strip(), all_rows, args.rounds, args.warmup)
        results += res
        table = Table(
            f"One training step, {name} ({args.threads} thread(s), median of {args.rounds})",
            [
                "algorithm",
                "implementation",
                "first step",
                "median step",
                "vs AdamW",
                "vs fastest peer",
            ],
        )
        for r in res:
            table.add(
                r["algorithm"],
                r["implementation"],
                fmt_seconds(r["first_step_s"]),
                fmt_seconds(r["median_step_s"]),
                fmt_ratio(r["vs_adamw"]),
                fmt_ratio(r["vs_fastest_peer"]),
            )
        table.print()
        if args.markdown:
            print(table.markdown())
    path = write_json(args.json, {"benchmark": "optim_step", "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
