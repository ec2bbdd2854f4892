"""lmfit, the usual Python choice for curve fitting (MINPACK through ``method="leastsq"``).

lmfit is run the way its users run it: residual only, its own finite-difference
Jacobian (those evaluations are counted like any other).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from taylorch.bench.counting import CountedFunction
from taylorch.bench.methods.base import Method, Outcome, Settings, register
from taylorch.bench.methods.oracles import NumpyOracle

__all__ = ["LmfitLeastSquares"]


class LmfitLeastSquares(Method):
    library = "lmfit"
    dense = True
    modules = ("lmfit",)
    kind = "least_squares"

    def __init__(self, algorithm: str):
        self.algorithm = algorithm

    def solve(self, fun: CountedFunction, x0: Tensor, settings: Settings) -> Outcome:
        import lmfit

        oracle = NumpyOracle(fun, x0)
        params = lmfit.Parameters()
        names = [f"b{i}" for i in range(x0.numel())]
        for name, value in zip(names, oracle.array(x0)):
            params.add(name, value=float(value))

        def residual(p) -> np.ndarray:
            with torch.no_grad():
                return oracle.array(fun(oracle.tensor([p[k].value for k in names])))

        out = lmfit.minimize(residual, params, method=self.algorithm, max_nfev=settings.max_evals)
        x = oracle.tensor([out.params[k].value for k in names])
        return Outcome(x, bool(out.success), str(out.message))


register(LmfitLeastSquares("leastsq"))
