"""scipy.optimize peers, fed exact torch derivatives (``jac=True``, ``hessp``, ``hess``)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from taylorch.bench.counting import CountedFunction
from taylorch.bench.methods.base import Method, Outcome, Settings, register
from taylorch.bench.methods.oracles import NumpyOracle

__all__ = ["ScipyLeastSquares", "ScipyMinimize"]

Uses = Literal["value", "grad", "hessp", "hess"]


class ScipyMinimize(Method):
    """``scipy.optimize.minimize(method=...)`` with the derivatives it can use.

    Args:
        algorithm: scipy's method name.
        uses: the highest derivative handed over: values only, the gradient,
            Hessian-vector products, or the dense Hessian.
        gtol_option: the option name scipy gives its gradient tolerance (``None``: none).
    """

    library = "scipy"
    modules = ("scipy.optimize",)

    def __init__(self, algorithm: str, uses: Uses, gtol_option: str | None = "gtol"):
        self.algorithm = algorithm.lower()
        self.uses = uses
        self.gtol_option = gtol_option
        self.dense = self.algorithm in ("bfgs", "nelder-mead") or uses == "hess"

    def solve(self, fun: CountedFunction, x0: Tensor, settings: Settings) -> Outcome:
        from scipy.optimize import minimize

        oracle = NumpyOracle(fun, x0)
        kwargs = {}
        if self.uses == "value":
            objective = oracle.value
        else:
            objective, kwargs["jac"] = oracle.value_and_grad, True
        if self.uses == "hessp":
            kwargs["hessp"] = oracle.hessp
        elif self.uses == "hess":
            kwargs["hess"] = oracle.hess
        options = {"maxiter": settings.max_evals}
        if self.algorithm in ("l-bfgs-b", "nelder-mead"):
            options["maxfun" if self.algorithm == "l-bfgs-b" else "maxfev"] = settings.max_evals
        if self.gtol_option:
            options[self.gtol_option] = settings.gtol
        res = minimize(
            objective, oracle.array(x0), method=self.algorithm, options=options, **kwargs
        )
        x = torch.as_tensor(np.asarray(res.x), dtype=x0.dtype, device=x0.device)
        return Outcome(x, bool(res.success), str(res.message))


class ScipyLeastSquares(Method):
    """``scipy.optimize.least_squares(method=...)`` with the exact torch Jacobian (dense)."""

    library = "scipy"
    dense = True
    modules = ("scipy.optimize",)
    kind = "least_squares"

    def __init__(self, algorithm: str):
        self.algorithm = algorithm

    def solve(self, fun: CountedFunction, x0: Tensor, settings: Settings) -> Outcome:
        from scipy.optimize import least_squares

        oracle = NumpyOracle(fun, x0)
        res = least_squares(
            oracle.residual,
            oracle.array(x0),
            jac=oracle.jacobian,
            method=self.algorithm,
            gtol=settings.gtol,
            max_nfev=settings.max_evals,
        )
        x = torch.as_tensor(res.x, dtype=x0.dtype, device=x0.device)
        return Outcome(x, bool(res.success), str(res.message))


for _method in (
    ScipyMinimize("nelder-mead", "value", gtol_option=None),
    ScipyMinimize("cg", "grad"),
    ScipyMinimize("bfgs", "grad"),
    ScipyMinimize("l-bfgs-b", "grad"),
    ScipyMinimize("newton-cg", "hessp", gtol_option=None),
    ScipyMinimize("trust-ncg", "hessp"),
    ScipyMinimize("trust-krylov", "hessp"),
    ScipyMinimize("trust-exact", "hess"),
    ScipyLeastSquares("lm"),
    ScipyLeastSquares("trf"),
    ScipyLeastSquares("dogbox"),
):
    register(_method)
