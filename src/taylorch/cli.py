"""The ``taylorch`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import taylorch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taylorch", description="Optimization of every order for PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"taylorch {taylorch.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("bench", help="compare methods and peers side by side")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
