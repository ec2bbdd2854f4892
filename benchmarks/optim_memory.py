"""Peak memory of a zeroth-order step vs inference vs a backprop step, each in a fresh process.

Models (float32):

* ``mlp``: 1024-4096-4096-10 (ReLU), 21.0M parameters (80 MiB), batch 64;
* ``transformer``: 4 ``nn.TransformerEncoderLayer`` (d = 512, 8 heads, feed-forward
  2048, no dropout) + a linear head, 12.6M parameters, batch 8 x seq 128.

Rows, each measured in its own subprocess:

* ``inference``: a forward pass under ``torch.no_grad()``;
* ``AdamW step``: forward, backward, ``torch.optim.AdamW.step`` (state allocated);
* ``ZO-SGD step (taylorch)``: :class:`taylorch.optim.ZOSGD` (noise regenerated in chunks);
* ``ZO-SGD step (naive MeZO)``: the straightforward MeZO loop written here: for each
  parameter in turn, one full-size ``randn_like`` from a seeded generator for each of
  perturb, flip, restore and update.

Measurement: the process imports torch and taylorch.optim and creates a throwaway
optimizer (the first one imports ``torch._dynamo``: ~70 MiB of code, the same for every
row), records its RSS, builds the model and the batch, runs one
warm-up step, then records its resident set size (RSS) and resets the kernel's peak
counter (``/proc/self/clear_refs``), runs two more steps and reads the peak
(``VmHWM``). "peak over start" is that peak minus the RSS before the model was built:
parameters, activations, optimizer state and temporaries, without the Python/torch
runtime. Run ``python benchmarks/optim_memory.py --help``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from _common import Table, fmt_ratio, set_threads, write_json
from torch import nn

MODES = ["inference", "adamw", "zo-taylorch", "zo-naive"]
LABELS = {
    "inference": "inference (no_grad forward)",
    "adamw": "AdamW step (backprop)",
    "zo-taylorch": "ZO-SGD step (taylorch, chunked)",
    "zo-naive": "ZO-SGD step (naive MeZO)",
}
MIB = 2**20


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def build(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if name == "mlp":
        model = nn.Sequential(
            nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 10)
        )
        return model, torch.randn(64, 1024), torch.randint(0, 10, (64,))
    layer = nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 4, enable_nested_tensor=False))
    head = nn.Linear(512, 10)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = model, head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x).mean(dim=1))

    return Net(), torch.randn(8, 128, 512), torch.randint(0, 10, (8,))


def naive_mezo_step(model: nn.Module, closure, lr: float, eps: float, seed: int) -> None:
    """MeZO as usually written: one full-size noise tensor per parameter per pass."""

    def perturb(scale: float) -> None:
        gen = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            z = torch.randn(p.shape, generator=gen)
            p.data.add_(z, alpha=scale * eps)

    with torch.no_grad():
        perturb(1.0)
        f_plus = float(closure())
        perturb(-2.0)
        f_minus = float(closure())
        perturb(1.0)
        c = (f_plus - f_minus) / (2 * eps)
        gen = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            z = torch.randn(p.shape, generator=gen)
            p.data.add_(z, alpha=-lr * c)


def child(mode: str, name: str) -> dict:
    set_threads(1)
    # Load the whole runtime first (the first torch.optim optimizer imports torch._dynamo,
    # ~70 MiB of code) so that every row counts data only: weights, activations, state.
    import taylorch.optim

    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    assert taylorch.optim.ZOSGD
    start = rss_kib()
    model, x, y = build(name)
    n_params = sum(p.numel() for p in model.parameters())

    def closure():
        loss = nn.functional.cross_entropy(model(x), y)
        if torch.is_grad_enabled():
            loss.backward()
        return loss

    if mode == "inference":

        def step():
            with torch.no_grad():
                model(x)

    elif mode == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad()
            closure()
            opt.step()

    elif mode == "zo-taylorch":
        from taylorch.optim import ZOSGD

        opt = ZOSGD(model.parameters(), lr=1e-6, eps=1e-3, seed=0)

        def step():
            opt.step(closure)

    else:
        counter = iter(range(10**6))

        def step():
            naive_mezo_step(model, closure, 1e-6, 1e-3, next(counter))

    step()
    before = rss_kib()
    reset_peak()
    step()
    step()
    peak = rss_kib("VmHWM")
    return {
        "mode": mode,
        "model": name,
        "parameters": n_params,
        "weights_mib": n_params * 4 / MIB,
        "rss_start_mib": start / 1024,
        "rss_before_steps_mib": before / 1024,
        "peak_mib": peak / 1024,
        "peak_over_start_mib": (peak - start) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mlp,transformer")
    parser.add_argument("--json", default="bench-out/optim_memory.json")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    results = []
    for name in args.models.split(","):
        rows = {}
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, name],
                capture_output=True,
                text=True,
                check=True,
            )
            rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        inf = rows["inference"]["peak_over_start_mib"]
        adamw = rows["adamw"]["peak_over_start_mib"]
        weights = rows["inference"]["weights_mib"]
        table = Table(
            f"Peak memory of one step, {name} ({rows['inference']['parameters'] / 1e6:.1f}M "
            f"parameters, {weights:.0f} MiB of weights)",
            ["step", "peak over start", "over weights", "vs inference", "AdamW / this"],
        )
        for mode in MODES:
            r = rows[mode]
            total = r["peak_over_start_mib"]
            r["vs_inference"] = total / inf
            r["adamw_over_this"] = adamw / total
            table.add(
                LABELS[mode],
                f"{total:.0f} MiB",
                f"{total - weights:.0f} MiB",
                fmt_ratio(r["vs_inference"]),
                fmt_ratio(r["adamw_over_this"]),
            )
            results.append(r)
        table.print()
        if args.markdown:
            print(table.markdown())
    print(f"wrote {write_json(args.json, {'benchmark': 'optim_memory', 'results': results})}")


if __name__ == "__main__":
    main()
