"""Deterministic solvers: ``minimize``, ``least_squares``, ``root`` and the methods they run."""

from taylorch.solve.api import minimize
from taylorch.solve.curve_fit import curve_fit
from taylorch.solve.least_squares import least_squares
from taylorch.solve.methods import METHODS, Solver
from taylorch.solve.methods.conjugate_gradient import CG
from taylorch.solve.methods.cubic import ARC, DampedNewton
from taylorch.solve.methods.gradient import GD, Polyak
from taylorch.solve.methods.nelder_mead import NelderMead
from taylorch.solve.methods.newton import Newton, NewtonCG
from taylorch.solve.methods.quasi_newton import BFGS, LBFGS
from taylorch.solve.methods.trust_region_methods import Dogleg, TrustExact, TrustNCG, TrustRegion
from taylorch.solve.methods.zeroth_order import ZOGD
from taylorch.solve.result import Result, Status
from taylorch.solve.root import fixed_point, root

__all__ = [
    "ARC",
    "BFGS",
    "CG",
    "GD",
    "LBFGS",
    "METHODS",
    "ZOGD",
    "DampedNewton",
    "Dogleg",
    "NelderMead",
    "Newton",
    "NewtonCG",
    "Polyak",
    "Result",
    "Solver",
    "Status",
    "TrustExact",
    "TrustNCG",
    "TrustRegion",
    "curve_fit",
    "fixed_point",
    "least_squares",
    "minimize",
    "root",
]
