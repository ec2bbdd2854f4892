"""The ``taylorch`` command."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence

import taylorch

_DTYPES = ("float32", "float64")


def _add_bench(sub) -> None:
    bench = sub.add_parser(
        "bench",
        help="compare methods and peers side by side",
        description=(
            "Run a benchmark suite: a table in the terminal, and results.json, PNG plots "
            "and a self-contained report.html in --out. With no arguments: the default "
            "suite (a small deterministic set, a batched solve, the NIST set and a short "
            "training comparison), about two minutes on two CPU cores."
        ),
    )
    bench.add_argument("--suite", default="default", help="suite to run (see --list)")
    bench.add_argument("--list", action="store_true", help="list suites, methods and peers")
    bench.add_argument(
        "--methods",
        help="comma-separated methods or patterns, e.g. 'taylorch:*,scipy:bfgs' or 'bfgs'",
    )
    bench.add_argument(
        "--peers",
        nargs="?",
        const="all",
        help="add every installed peer (or the comma-separated ones named); "
        "peers that are not installed are reported as such",
    )
    bench.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    bench.add_argument(
        "--dtype", choices=_DTYPES, help="default: float64 for solvers, float32 for training"
    )
    bench.add_argument("--seed", type=int, default=0, help="seed for starts, data and methods")
    bench.add_argument(
        "--out", default="taylorch-bench", help="output directory (default: ./taylorch-bench)"
    )
    bench.add_argument("--quick", action="store_true", help="a reduced run (~20-30 s)")
    bench.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the built-in problems are small, and "
        "threads that wait on each other cost more than they give on a busy machine)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taylorch", description="Optimization of every order for PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"taylorch {taylorch.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_bench(sub)
    return parser


def _list(console) -> int:
    from rich.table import Table

    from taylorch.bench.methods import LIBRARIES, METHODS, library_missing
    from taylorch.bench.methods.optimizers import TRAINING_METHODS
    from taylorch.bench.suites import COMPOSITES, SUITES

    suites = Table(title="suites", title_justify="left")
    suites.add_column("name")
    suites.add_column("what")
    for name, parts in COMPOSITES.items():
        suites.add_row(name, "runs " + ", ".join(parts))
    for s in SUITES.values():
        suites.add_row(s.name, s.description)
    console.print(suites)
    libraries = Table(title="libraries", title_justify="left")
    libraries.add_column("library")
    libraries.add_column("status")
    libraries.add_column("solver methods")
    libraries.add_column("training methods")
    for lib in LIBRARIES:
        solvers = [m.name.split(":", 1)[1] for m in METHODS.values() if m.library == lib]
        trainers = [m.algorithm for m in TRAINING_METHODS.values() if m.library == lib]
        libraries.add_row(
            lib, library_missing(lib) or "installed", ", ".join(solvers), ", ".join(trainers)
        )
    console.print(libraries)
    return 0


def _unwritable(out: str) -> str | None:
    """Why the results cannot be written to the directory ``out``, or ``None``."""
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _bench(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 120)
    if args.list:
        return _list(console)
    if args.threads < 1:
        console.print(f"taylorch bench: --threads must be >= 1, got {args.threads}")
        return 2
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        console.print(f"taylorch bench: --out {args.out} exists and is not a directory")
        return 2
    unwritable = _unwritable(args.out)
    if unwritable:  # found before the run, not after it
        console.print(f"taylorch bench: --out {args.out}: {unwritable}")
        return 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run_bench(args, console)
    finally:
        torch.set_num_threads(threads)


def _run_bench(args: argparse.Namespace, console) -> int:
    import torch

    from taylorch.bench import run
    from taylorch.bench.console import RichObserver, print_tables

    observer = RichObserver()
    try:
        result = run(
            args.suite,
            args.methods,
            peers=args.peers,
            device=args.device,
            dtype=None if args.dtype is None else getattr(torch, args.dtype),
            seed=args.seed,
            quick=args.quick,
            observer=observer,
        )
    except ValueError as exc:
        console.print(f"[red]taylorch bench:[/] {exc}", markup=True, highlight=False)
        return 2
    finally:
        observer.close()
    print_tables(result.records, console)
    report = result.save(args.out)
    console.print(f"results: {args.out}/results.json; report: {report}", highlight=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "bench":
        return _bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
