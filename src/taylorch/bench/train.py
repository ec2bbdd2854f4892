"""Run training optimizers on the training tasks, each with a small learning-rate sweep.

For each (task, optimizer) and each learning rate of its sweep::

    setup = task.build(seed)            # same weights, same batches for everyone
    repeat steps times:
        loss = optimizer.step(closure)  # closure: zero_grad, forward, backward if grad enabled
        every few steps: evaluation loss (clock paused) -> trace (step, seconds, loss)

The run with the lowest final evaluation loss is kept (its learning rate and
the whole sweep go into the record's tags). A learning rate whose run crashes
or diverges to a non-finite loss is a failed point of the sweep; if every
point fails, the record is "failed" with the messages. Forward passes and
backward passes are counted in the closure, so zeroth-order methods (forward
only) and line searches (extra forwards) show their real cost.

Scoring: the reference is the lowest final loss over optimizers; a run is
"solved" when it achieves 90% of the best decrease from the initial loss
(``tau = 0.1``), and its cost is the first step (and time) at which it did.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from taylorch.bench.methods.optimizers import TrainingMethod
from taylorch.bench.problems.training import TrainingTask
from taylorch.bench.records import RunRecord
from taylorch.bench.runner import Observer, warning_summary

__all__ = ["TRAINING_TAU", "run_training", "train_once"]

TRAINING_TAU = 0.1


@dataclass
class TrainRun:
    """One learning rate's run: final loss, counts and trace, or the error that stopped it."""

    lr: float
    loss: float = math.nan
    loss0: float = math.nan
    nfev: int = 0
    ngev: int = 0
    time: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    trace: dict[str, list[float]] = field(default_factory=dict)


def train_once(
    task: TrainingTask,
    method: TrainingMethod,
    lr: float,
    *,
    steps: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    max_time: float = math.inf,
) -> TrainRun:
    """Train ``task``'s model with ``method`` at ``lr`` for ``steps`` steps."""
    setup = task.build(seed, dtype, torch.device(device))
    run = TrainRun(lr=lr, loss0=setup.eval_loss())
    every = max(1, steps // 20)
    trace = {"steps": [0.0], "time": [0.0], "f": [run.loss0]}
    counts = {"forward": 0, "backward": 0}
    batch: tuple = ()

    def closure():
        for opt in optimizers:
            opt.zero_grad()
        loss = setup.loss(setup.model, batch)
        counts["forward"] += 1
        if torch.is_grad_enabled():
            loss.backward()
            counts["backward"] += 1
        return loss

    def loop() -> None:
        nonlocal batch, optimizers
        torch.manual_seed(seed)
        optimizers = method.make(setup.model, lr)
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            batch = setup.next_batch()
            if len(optimizers) == 1:
                loss = optimizers[0].step(closure)
            else:  # one gradient shared by optimizers that split the parameters
                loss = closure()
                for opt in optimizers:
                    opt.step()
            run.time += time.perf_counter() - t0
            if loss is not None and not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"non-finite training loss at step {step}")
            if step % every == 0 or step == steps:
                trace["steps"].append(float(step))
                trace["time"].append(run.time)
                trace["f"].append(setup.eval_loss())
            if run.time > max_time:
                break
        if not math.isfinite(trace["f"][-1]):
            raise FloatingPointError("non-finite evaluation loss")

    optimizers: list[torch.optim.Optimizer] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loop()
            run.loss = trace["f"][-1]
        except Exception as exc:  # a crash or divergence is one failed point of the sweep
            run.error = f"{type(exc).__name__}: {exc}"
    run.warnings = warning_summary(caught)
    run.nfev, run.ngev, run.trace = counts["forward"], counts["backward"], trace
    return run


def run_training(
    tasks: Sequence[TrainingTask],
    methods: Sequence[TrainingMethod],
    *,
    steps: int | None = None,
    sweep: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    max_time: float = math.inf,
    suite: str = "training",
    observer: Observer | None = None,
) -> list[RunRecord]:
    """Every method on every task (best of its learning-rate sweep), scored per task.

    ``steps`` overrides each task's step count; ``sweep`` is how many of each
    method's learning rates to try, in its order (``None``: all).
    """
    observer = observer or Observer()
    for method in methods:
        if not method.unavailable():
            _warm_up(method, dtype, device)
    observer.start(len(tasks) * len(methods), suite)
    records: list[RunRecord] = []
    for task in tasks:
        task_records = []
        for method in methods:
            observer.begin(task.name, method.name)
            base = {"problem": task.name, "method": method.name, "library": method.library,
                    "suite": suite, "kind": "train", "tags": {"description": task.description}}  # fmt: skip
            reason = task.unavailable() or method.unavailable()
            if reason:
                status = "unsupported" if task.unavailable() else "unavailable"
                task_records.append(RunRecord(status=status, message=reason, **base))
                observer.done()
                continue
            n_steps = steps or task.steps
            lrs = method.lrs[:sweep]
            runs = [
                train_once(task, method, lr, steps=n_steps, seed=seed, dtype=dtype,
                           device=device, max_time=max_time)
                for lr in lrs
            ]  # fmt: skip
            task_records.append(_record(runs, base, n_steps, seed, dtype, device))
            observer.done()
        _score_training(task_records)
        observer.scored(task_records)
        records += task_records
    observer.finish()
    return records


def _warm_up(method: TrainingMethod, dtype: torch.dtype, device) -> None:
    """One untimed step on a tiny model, so lazy imports and first-call setup of the
    optimizer's library (torch.optim's own, for instance) are not charged to a run."""
    model = torch.nn.Linear(2, 2).to(dtype=dtype, device=device)
    x = torch.ones(1, 2, dtype=dtype, device=device)
    try:
        optimizers = method.make(model, method.lrs[0])

        def closure():
            for opt in optimizers:
                opt.zero_grad()
            loss = model(x).square().mean()
            if torch.is_grad_enabled():
                loss.backward()
            return loss

        if len(optimizers) == 1:
            optimizers[0].step(closure)
        else:
            closure()
            for opt in optimizers:
                opt.step()
    except Exception:  # the timed runs record whatever goes wrong
        pass


def _record(runs: list[TrainRun], base: dict, steps: int, seed, dtype, device) -> RunRecord:
    ok = [r for r in runs if r.error is None]
    best = min(ok, key=lambda r: r.loss) if ok else runs[0]
    sweep = {f"{r.lr:g}": (r.loss if r.error is None else r.error) for r in runs}
    base["tags"] = {**base["tags"], "lr": best.lr, "sweep": sweep}
    settings = {"steps": steps, "seed": seed, "device": str(device),
                "dtype": str(dtype).removeprefix("torch.")}  # fmt: skip
    return RunRecord(
        status="failed" if not ok else "unsolved",
        message="; ".join(
            [f"lr={r.lr:g}: {r.error}" for r in runs if r.error]
            + [f"warning: {w}" for w in dict.fromkeys(w for r in runs for w in r.warnings)]
        ),
        f=best.loss,
        f0=best.loss0,
        nfev=best.nfev,
        ngev=best.ngev,
        calls=best.nfev,
        time=best.time,
        n=0,
        settings=settings,
        trace=best.trace,
        **base,
    )


def _score_training(records: list[RunRecord]) -> None:
    finals = [r.f for r in records if r.status == "unsolved" and math.isfinite(r.f)]
    if not finals:
        return
    f_ref = min(finals)
    for r in records:
        if r.status != "unsolved":
            continue
        r.f_ref = f_ref
        target = f_ref + TRAINING_TAU * max(r.f0 - f_ref, 0.0)
        if r.f <= target:
            r.status = "solved"
            k = next(i for i, f in enumerate(r.trace["f"]) if f <= target)
            per_step = r.evals / max(r.trace["steps"][-1], 1.0)
            r.time_to_solve = r.trace["time"][k]
            r.evals_to_solve = r.trace["steps"][k] * per_step
