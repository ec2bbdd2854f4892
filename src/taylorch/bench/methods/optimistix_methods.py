"""optimistix (JAX) peers, run on torch problems through a callback bridge.

The torch function is exposed to JAX as ``jax.pure_callback`` with a
``custom_jvp`` whose tangent is ``g . dx`` (``J dx`` for residuals), ``g``/``J``
computed by torch autograd in the same callback. JAX can transpose that
tangent, so optimistix's gradient-based and Gauss-Newton solvers run
unchanged; every evaluation goes through the counted torch function.
Costs to know: the solve is jit-compiled per problem (included in the time),
and each callback crosses the JAX/NumPy/torch boundary. JAX runs in float64
(``jax_enable_x64`` is switched on when this adapter first runs).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from taylorch.bench.counting import CountedFunction
from taylorch.bench.methods.base import Method, Outcome, Settings, register
from taylorch.bench.methods.oracles import NumpyOracle

__all__ = ["OptimistixMethod"]

_SOLVERS = {
    "bfgs": ("BFGS", "minimize"),
    "nonlinear-cg": ("NonlinearCG", "minimize"),
    "lm": ("LevenbergMarquardt", "least_squares"),
    "gauss-newton": ("GaussNewton", "least_squares"),
    "dogleg": ("Dogleg", "least_squares"),
}


def _bridge(oracle: NumpyOracle, n: int, m: int | None):
    """A JAX function of ``y`` that calls the torch oracle (value+grad, or residual+Jacobian)."""
    import jax
    import jax.numpy as jnp

    if m is None:
        shapes = (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct((n,), jnp.float64))

        def host(y):
            f, g = oracle.value_and_grad(y)
            return np.asarray(f, dtype=np.float64), g
    else:
        shapes = (
            jax.ShapeDtypeStruct((m,), jnp.float64),
            jax.ShapeDtypeStruct((m, n), jnp.float64),
        )

        def host(y):
            return oracle.residual(y), oracle.jacobian(y)

    @jax.custom_jvp
    def fn(y):
        return jax.pure_callback(host, shapes, y)[0]

    @fn.defjvp
    def fn_jvp(primals, tangents):
        value, deriv = jax.pure_callback(host, shapes, primals[0])
        return value, deriv @ tangents[0]

    return fn


class OptimistixMethod(Method):
    library = "optimistix"
    modules = ("jax", "optimistix")

    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self.solver_class, self.kind = _SOLVERS[algorithm]
        self.dense = True  # BFGS's n x n model; the bridge hands over a dense Jacobian

    def solve(self, fun: CountedFunction, x0: Tensor, settings: Settings) -> Outcome:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        import optimistix as optx

        oracle = NumpyOracle(fun, x0)
        m = None
        if self.kind == "least_squares":
            with torch.no_grad():
                m = int(fun.fun(x0).shape[-1])
        fn = _bridge(oracle, x0.numel(), m)
        solver = getattr(optx, self.solver_class)(rtol=settings.gtol, atol=settings.gtol)
        entry = optx.minimise if self.kind == "minimize" else optx.least_squares
        sol = entry(lambda y, args: fn(y), solver, jnp.asarray(oracle.array(x0)),
                    max_steps=settings.max_evals, throw=False)  # fmt: skip
        x = oracle.tensor(np.asarray(sol.value))
        ok = sol.result == optx.RESULTS.successful
        return Outcome(x, bool(ok), "successful" if ok else str(sol.result))


for _name in _SOLVERS:
    register(OptimistixMethod(_name))
