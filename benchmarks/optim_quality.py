"""Steps and time to a target training loss on a small real task, per optimizer.

Task: scikit-learn's bundled digits (1797 8x8 images, 10 classes; no download),
standardized, split 80/20 with a fixed seed; an MLP 64-128-128-10 (tanh),
cross-entropy, mini-batches of 64 drawn by a seeded sampler (the same sequence for
every run).

For each optimizer a small learning-rate sweep (``LR_GRID``); every run trains until
the full training loss reaches ``--target`` or ``--max-steps`` mini-batch steps have
been taken (the training loss is evaluated every 10 steps, outside the timed region).
The table reports, for the best learning rate of each optimizer (fewest steps to the
target, else the lowest final loss): steps and wall time to the target, the final
training loss and the test accuracy, and the ratio of steps and time to those of
AdamW at its best learning rate. Forward and backward passes differ between methods
(line searches and zeroth-order methods make extra forward passes), so both steps and
time are shown. ``python benchmarks/optim_quality.py --help``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
from _common import Table, fmt_ratio, fmt_seconds, set_threads, write_json
from torch import nn

from taylorch import optim as tay

Factory = Callable[[Any, float, int], torch.optim.Optimizer]

# name -> (factory(params, lr, max_steps), learning rates to try, steps with a closure?)
# Each sweep is wide enough that its best lr is inside it, not at an end.
OPTIMIZERS: dict[str, tuple[Factory, list[float], bool]] = {
    "AdamW (torch)": (
        lambda p, lr, n: torch.optim.AdamW(p, lr=lr),
        [1e-3, 3e-3, 1e-2, 3e-2],
        False,
    ),
    "Muon": (lambda p, lr, n: tay.Muon(p, lr=lr), [3e-3, 1e-2, 3e-2, 1e-1], False),
    "AdaBound": (lambda p, lr, n: tay.AdaBound(p, lr=lr), [1e-3, 3e-3, 1e-2, 3e-2], False),
    "SPS-max": (lambda p, lr, n: tay.SPS(p, lr=lr), [0.3, 1.0, 3.0, 10.0], True),
    "Polyak+momentum": (lambda p, lr, n: tay.PolyakMomentum(p, lr=lr), [0.3, 1.0, 3.0, 10.0], True),
    "SLS": (lambda p, lr, n: tay.SLS(p, lr=lr, n_batches_per_epoch=23), [1.0, 3.0, 10.0], True),
    "SMB": (lambda p, lr, n: tay.SMB(p, lr=lr), [0.1, 0.3, 1.0, 3.0], True),
    "ZO-SGD": (lambda p, lr, n: tay.ZOSGD(p, lr=lr, seed=0), [1e-3, 3e-3, 1e-2], True),
    "ZO-Adam": (lambda p, lr, n: tay.ZOAdam(p, lr=lr, seed=0), [1e-3, 3e-3, 1e-2], True),
    # the paper's annealing schedule is laid out over the run: total_steps = max_steps
    "ZO-AdaMU": (
        lambda p, lr, n: tay.ZOAdaMU(p, lr=lr, total_steps=n, seed=0),
        [3e-4, 1e-3, 3e-3, 1e-2],
        True,
    ),
}


def digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    data = load_digits()
    X = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.int64)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    X, y = X[perm], y[perm]
    split = int(0.8 * len(X))
    mean, std = X[:split].mean(0), X[:split].std(0).clamp_min(1e-3)
    X = (X - mean) / std
    return X[:split], y[:split], X[split:], y[split:]


def run(name: str, lr: float, data, target: float, max_steps: int) -> dict[str, Any]:
    factory, _, with_closure = OPTIMIZERS[name]
    Xtr, ytr, Xte, yte = data
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(), nn.Linear(128, 10)
    )
    opt = factory(model.parameters(), lr, max_steps)
    sampler = torch.Generator().manual_seed(1)
    batch = {}

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(batch["x"]), batch["y"])
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    def train_loss() -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(Xtr), ytr))

    elapsed, reached, loss = 0.0, None, train_loss()
    for step in range(1, max_steps + 1):
        idx = torch.randint(0, len(Xtr), (64,), generator=sampler)
        batch["x"], batch["y"] = Xtr[idx], ytr[idx]
        start = time.perf_counter()
        if with_closure:
            opt.step(closure)
        else:
            closure()
            opt.step()
        elapsed += time.perf_counter() - start
        if step % 10 == 0:
            loss = train_loss()
            if not loss == loss or loss > 1e3:  # diverged
                break
            if loss <= target:
                reached = (step, elapsed)
                break
    with torch.no_grad():
        acc = float((model(Xte).argmax(1) == yte).float().mean())
    return {
        "optimizer": name,
        "lr": lr,
        "steps_to_target": reached[0] if reached else None,
        "time_to_target_s": reached[1] if reached else None,
        "final_train_loss": loss,
        "test_accuracy": acc,
        "steps_run": step,
        "time_run_s": elapsed,
    }


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    hit = [r for r in runs if r["steps_to_target"] is not None]
    if hit:
        return min(hit, key=lambda r: r["steps_to_target"])
    finite = [r for r in runs if r["final_train_loss"] == r["final_train_loss"]]
    return min(finite or runs, key=lambda r: r["final_train_loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=float, default=0.05, help="training loss to reach")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="bench-out/optim_quality.json")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    set_threads(args.threads)
    data = digits()
    all_runs, chosen = [], {}
    for name, (_, grid, _) in OPTIMIZERS.items():
        runs = [run(name, lr, data, args.target, args.max_steps) for lr in grid]
        all_runs += runs
        chosen[name] = best(runs)
    ref = chosen["AdamW (torch)"]
    table = Table(
        f"Digits MLP: steps and time to training loss {args.target} (best lr of each sweep, "
        f"at most {args.max_steps} steps)",
        [
            "optimizer",
            "best lr",
            "steps",
            "time",
            "steps vs AdamW",
            "time vs AdamW",
            "final loss",
            "test acc",
        ],
    )
    for name, r in chosen.items():
        hit = r["steps_to_target"] is not None
        table.add(
            name,
            f"{r['lr']:g}",
            r["steps_to_target"] if hit else f"not reached ({r['steps_run']})",
            fmt_seconds(r["time_to_target_s"]) if hit else "-",
            fmt_ratio(r["steps_to_target"] / ref["steps_to_target"]) if hit else "-",
            fmt_ratio(r["time_to_target_s"] / ref["time_to_target_s"]) if hit else "-",
            f"{r['final_train_loss']:.3f}",
            f"{r['test_accuracy']:.3f}",
        )
    table.print()
    if args.markdown:
        print(table.markdown())
    payload = {
        "benchmark": "optim_quality",
        "target": args.target,
        "runs": all_runs,
        "best": chosen,
    }
    print(f"wrote {write_json(args.json, payload)}")


if __name__ == "__main__":
    main()
