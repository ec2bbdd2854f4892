"""taylorch's own solvers as benchmark methods, found in its registries at run time.

Every name in ``taylorch.solve.METHODS`` becomes ``taylorch:<name>`` (a
minimizer of ``fun``); every name in ``taylorch.solve.lsq.LSQ_METHODS`` becomes
``taylorch:<name>`` with ``kind="least_squares"`` (run by
``taylorch.least_squares`` on the residual). Both run a whole batch in one call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.bench.counting import CountedFunction
from taylorch.bench.methods.base import DENSE_MAX_N, Method, Outcome, Settings, register
from taylorch.bench.problems.base import Problem

__all__ = [
    "TaylorchLeastSquares",
    "TaylorchMinimize",
    "TaylorchPolyak",
    "register_taylorch_methods",
]


def _outcome(res, batched: bool) -> Outcome:
    if not batched:
        return Outcome(res.x, bool(res.success), str(res.message))
    success = torch.as_tensor(res.success)
    messages = res.message if isinstance(res.message, (list, tuple)) else [res.message]
    summary = "; ".join(sorted({str(m) for m in messages}))
    return Outcome(res.x, bool(success.all()), summary)


_DENSE = {"bfgs", "newton", "damped-newton", "trust-exact", "dogleg", "nelder-mead"}


class TaylorchMinimize(Method):
    library = "taylorch"
    batched = True

    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self.dense = algorithm in _DENSE

    def solve(self, fun: CountedFunction, x0: Tensor, settings: Settings) -> Outcome:
        import taylorch

        res = taylorch.minimize(
            fun,
            x0,
            method=self.algorithm,
            batched=x0.ndim == 2,
            gtol=settings.gtol,
            max_fev=settings.max_evals,
            max_time=settings.max_time,
            **self.options(settings),
        )
        return _outcome(res, x0.ndim == 2)

    def options(self, settings: Settings) -> dict:
        """Method options taken from the settings (none for most methods)."""
        return {}


class TaylorchPolyak(TaylorchMinimize):
    """Polyak's step, which needs the optimal value: run on problems that publish ``f_star``."""

    def unsupported(self, problem: Problem) -> str | None:
        if problem.f_star is None:
            return f"{self.name} needs the minimum value f_star, which {problem.name} does not give"
        return super().unsupported(problem)

    def options(self, settings: Settings) -> dict:
        return {"f_star": settings.f_star}


_MATRIX_FREE_LSQ = {"lm"}  # least-squares methods that run on Jacobian products alone


class TaylorchLeastSquares(TaylorchMinimize):
    """``taylorch.least_squares``: a dense Jacobian up to ``DENSE_MAX_N`` unknowns,
    Jacobian products (``jac="matrix-free"``) beyond, as a user would choose; methods
    that need the dense Jacobian are unsupported there."""

    kind = "least_squares"

    def __init__(self, algorithm: str):
        super().__init__(algorithm)
        self.dense = algorithm not in _MATRIX_FREE_LSQ

    def solve(self, fun: CountedFunction, x0: Tensor, settings: Settings) -> Outcome:
        import taylorch

        res = taylorch.least_squares(
            fun,
            x0,
            method=self.algorithm,
            jac="matrix-free" if x0.shape[-1] > DENSE_MAX_N else "auto",
            batched=x0.ndim == 2,
            gtol=settings.gtol,
            max_fev=settings.max_evals,
            max_time=settings.max_time,
        )
        return _outcome(res, x0.ndim == 2)


def _least_squares_names() -> list[str]:
    """The least-squares registry (``taylorch.solve.lsq.LSQ_METHODS``), if this build has it."""
    try:
        from taylorch.solve.lsq import LSQ_METHODS
    except ImportError:
        return []
    return list(LSQ_METHODS)


def register_taylorch_methods() -> None:
    """Register every taylorch method present in this installation.

    A least-squares method whose name a minimizer already has (``dogleg``) is
    registered as ``<name>-lsq``.
    """
    from taylorch.solve import METHODS as SOLVERS

    for name in SOLVERS:
        register(TaylorchPolyak(name) if name == "polyak" else TaylorchMinimize(name))
    for name in _least_squares_names():
        method = TaylorchLeastSquares(name)
        if name in SOLVERS:
            method.label = f"{name}-lsq"
        register(method)
