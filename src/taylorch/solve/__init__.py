"""Deterministic solvers: ``minimize`` and the methods it runs."""

from taylorch.solve.api import minimize
from taylorch.solve.methods import METHODS, Solver
from taylorch.solve.methods.cubic import ARC, DampedNewton
from taylorch.solve.methods.newton import Newton, NewtonCG
from taylorch.solve.methods.quasi_newton import BFGS, LBFGS
from taylorch.solve.methods.trust_region_methods import Dogleg, TrustExact, TrustNCG, TrustRegion
from taylorch.solve.result import Result, Status

__all__ = [
    "ARC",
    "BFGS",
    "LBFGS",
    "METHODS",
    "DampedNewton",
    "Dogleg",
    "Newton",
    "NewtonCG",
    "Result",
    "Solver",
    "Status",
    "TrustExact",
    "TrustNCG",
    "TrustRegion",
    "minimize",
]
