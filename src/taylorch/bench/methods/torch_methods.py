"""Peers written in PyTorch: pytorch-minimize (``torchmin``) and ``torch.optim.LBFGS``.

Both differentiate the counted function themselves, with autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

from taylorch.bench.counting import CountedFunction
from taylorch.bench.methods.base import Method, Outcome, Settings, register

__all__ = ["TorchLBFGS", "TorchminMinimize"]


class TorchminMinimize(Method):
    """``torchmin.minimize(fun, x0, method=...)`` (pytorch-minimize)."""

    library = "torchmin"
    modules = ("torchmin",)

    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self.dense = algorithm in ("bfgs", "newton-exact", "trust-exact", "dogleg")

    def solve(self, fun: CountedFunction, x0: Tensor, settings: Settings) -> Outcome:
        from torchmin import minimize

        res = minimize(fun, x0.clone(), method=self.algorithm, max_iter=settings.max_evals,
                       tol=settings.gtol)  # fmt: skip
        return Outcome(res.x.detach(), bool(res.success), str(res.message))


class TorchLBFGS(Method):
    """``torch.optim.LBFGS`` with the strong-Wolfe line search, run as a deterministic solver.

    One ``step`` runs up to ``max_evals`` iterations; success means the
    gradient's max-norm fell below ``gtol`` (its own first test).
    """

    library = "torch.optim"
    algorithm = "lbfgs"

    def solve(self, fun: CountedFunction, x0: Tensor, settings: Settings) -> Outcome:
        x = x0.clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [x],
            lr=1.0,
            max_iter=settings.max_evals,
            max_eval=settings.max_evals,
            tolerance_grad=settings.gtol,
            tolerance_change=1e-14,
            history_size=10,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            opt.zero_grad()
            f = fun(x)
            f.backward()
            return f

        opt.step(closure)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(fun.fun(x), x)
        converged = bool(g.abs().max() <= settings.gtol)
        message = "gradient within gtol" if converged else "stopped (step or change too small)"
        return Outcome(x.detach(), converged, message)


for _name in ("bfgs", "l-bfgs", "cg", "newton-cg", "newton-exact", "trust-ncg", "trust-krylov",
              "trust-exact", "dogleg"):  # fmt: skip
    register(TorchminMinimize(_name))
register(TorchLBFGS())
