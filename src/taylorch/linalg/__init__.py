"""Linear algebra shared by solvers and optimizers: matrix functions, Krylov methods, operators."""

from taylorch.linalg.krylov import (
    CGResult,
    KrylovResult,
    LanczosResult,
    cg,
    lanczos,
    minres,
    tridiagonal_eigh,
)
from taylorch.linalg.matfun import inverse_root, newton_schulz, polar_express
from taylorch.linalg.operators import LinearOperator, aslinearoperator

__all__ = [
    "CGResult",
    "KrylovResult",
    "LanczosResult",
    "LinearOperator",
    "aslinearoperator",
    "cg",
    "inverse_root",
    "lanczos",
    "minres",
    "newton_schulz",
    "polar_express",
    "tridiagonal_eigh",
]
