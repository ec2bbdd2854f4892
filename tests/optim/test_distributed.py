"""Every optimizer under DistributedDataParallel (gloo, 2 CPU processes, one spawn).

Each rank holds half of the batch; after k steps the parameters must equal those of a
single process that sees the whole batch.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from .references import CASES, ToyProblem

WORLD = 2
STEPS = 3


def local_closure(problem, model, opt, rows):
    def closure():
        opt.zero_grad()
        loss = ((model(problem.X[rows]) - problem.Y[rows]) ** 2).mean()
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    return closure


def train(case, problem, model, rows):
    opt = case.make(problem.params())
    closure = local_closure(problem, model, opt, rows)
    for _ in range(STEPS):
        if case.zeroth_order or case.needs_closure:
            opt.step(closure)
        else:
            closure()
            opt.step()
    return [p.detach().clone() for p in problem.params()]


def worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        half = 24 // WORLD
        rows = slice(rank * half, (rank + 1) * half)
        results = {}
        for case in CASES:
            problem = ToyProblem(torch.float64)
            model = DistributedDataParallel(problem.model)
            results[case.name] = train(case, problem, model, rows)
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
def test_ddp_two_processes_match_one_process_on_the_global_batch(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for case in CASES:
        problem = ToyProblem(torch.float64)
        single = train(case, problem, problem.model, slice(0, 24))
        for r in range(WORLD):
            for a, b in zip(single, ranks[r][case.name]):
                assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), (case.name, r)
        assert not torch.equal(single[0], ToyProblem(torch.float64).params()[0]), case.name
