"""The minimize benchmarks: ``batched``, ``large`` and ``classic``, or ``all`` in turn.

    python benchmarks/minimize.py batched [options]   # B Rosenbrock problems at once
    python benchmarks/minimize.py large [options]     # logistic regression, 1e5-1e6 features
    python benchmarks/minimize.py classic [options]   # MGH/CUTE suite: success and evaluations
    python benchmarks/minimize.py all                 # the three with their defaults

Options after the part's name go to that part's script (``--help`` lists them);
each writes its JSON to ``bench-out/minimize_<part>.json`` unless ``--out`` says
otherwise.
"""

from __future__ import annotations

import sys

import minimize_batched
import minimize_classic
import minimize_large

PARTS = {"batched": minimize_batched, "large": minimize_large, "classic": minimize_classic}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in (*PARTS, "all"):
        print(__doc__)
        raise SystemExit(2)
    part, rest = argv[0], argv[1:]
    if part == "all":
        if rest:
            raise SystemExit("'all' runs each part with its defaults; give options to one part")
        for module in PARTS.values():
            module.main([])
        return
    PARTS[part].main(rest)


if __name__ == "__main__":
    main()
