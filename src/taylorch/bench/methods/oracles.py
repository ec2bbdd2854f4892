"""Torch derivatives of a counted function, served to libraries that speak NumPy.

scipy, lmfit and the JAX bridge for optimistix hand us float64 arrays; these
oracles evaluate the (counted) torch function at them, in the problem's
dtype and device, and return float64 arrays. Derivatives are exact (autograd),
so a peer is compared on its algorithm, not on finite differences.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from taylorch import derivatives

__all__ = ["NumpyOracle"]


class NumpyOracle:
    """Value, gradient, HVP, Hessian, residual and Jacobian of ``fun`` at NumPy points.

    Args:
        fun: the counted function (scalar or residual-valued) of ``x`` of shape ``(n,)``.
        like: a tensor whose dtype and device the points are cast to.
    """

    def __init__(self, fun: Callable[[Tensor], Tensor], like: Tensor):
        self.fun = fun
        self.dtype, self.device = like.dtype, like.device
        self._graph: tuple[np.ndarray, Tensor, Tensor] | None = None

    def tensor(self, z) -> Tensor:
        return torch.tensor(np.asarray(z, dtype=np.float64), dtype=self.dtype, device=self.device)

    @staticmethod
    def array(t: Tensor) -> np.ndarray:
        return t.detach().cpu().double().numpy()

    # -- scalar objectives ---------------------------------------------------------------
    def value(self, z) -> float:
        with torch.no_grad():
            return float(self.fun(self.tensor(z)))

    def value_and_grad(self, z) -> tuple[float, np.ndarray]:
        f, g = derivatives.value_and_grad(self.fun, self.tensor(z))
        return float(f), self.array(g)

    def hessp(self, z, p) -> np.ndarray:
        return self.array(derivatives.hvp(self.fun, self.tensor(z), self.tensor(p)))

    def hess(self, z) -> np.ndarray:
        return self.array(derivatives.hessian(self.fun, self.tensor(z)))

    # -- residuals: keep the graph of the last evaluation for its Jacobian ---------------
    def residual(self, z) -> np.ndarray:
        z = np.array(z, dtype=np.float64)
        with torch.enable_grad():
            x = self.tensor(z).requires_grad_(True)
            r = self.fun(x)
        self._graph = (z, x, r)
        return self.array(r)

    def jacobian(self, z) -> np.ndarray:
        """The Jacobian by one batched backward pass through the last residual graph at ``z``."""
        z = np.asarray(z, dtype=np.float64)
        if self._graph is None or not np.array_equal(self._graph[0], z):
            self.residual(z)
        _, x, r = self._graph
        eye = torch.eye(r.shape[-1], dtype=r.dtype, device=r.device)
        (jac,) = torch.autograd.grad(r, x, eye, is_grads_batched=True, retain_graph=True)
        return self.array(jac)
