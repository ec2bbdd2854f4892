"""Linear algebra shared by solvers and optimizers: matrix functions, Krylov methods, operators."""

from taylorch.linalg.matfun import inverse_root, newton_schulz, polar_express

__all__ = ["inverse_root", "newton_schulz", "polar_express"]
