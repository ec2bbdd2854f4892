"""``taylorch bench``: compare optimization methods and their peers side by side.

The Python API behind the command::

    from taylorch import bench
    result = bench.run("nist", methods="taylorch:lm,scipy:lm", peers=True, out="out/")
    result.summaries()            # per-method solved / median cost / ratio to the best

A problem of your own is a :class:`Problem` (or any object with ``x0``,
``fun`` or ``residual``, and optionally ``f_star``, ``name``, ``metadata``)::

    bench.run([bench.Problem("mine", x0=x0, fun=f, f_star=0.0)], methods="taylorch:*")
"""

from taylorch.bench.harness import BenchResult, as_problem, run
from taylorch.bench.methods import METHODS, Method, Outcome, Settings, register
from taylorch.bench.problems.base import Problem
from taylorch.bench.records import RunRecord, load_results
from taylorch.bench.suites import COMPOSITES, SUITES, Suite

__all__ = [
    "COMPOSITES",
    "METHODS",
    "SUITES",
    "BenchResult",
    "Method",
    "Outcome",
    "Problem",
    "RunRecord",
    "Settings",
    "Suite",
    "as_problem",
    "load_results",
    "register",
    "run",
]
