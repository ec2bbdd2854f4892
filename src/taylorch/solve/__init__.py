"""Deterministic solvers: ``minimize`` and the methods it runs."""

from taylorch.solve.api import minimize
from taylorch.solve.methods import METHODS, Solver
from taylorch.solve.methods.quasi_newton import BFGS, LBFGS
from taylorch.solve.result import Result, Status

__all__ = ["BFGS", "LBFGS", "METHODS", "Result", "Solver", "Status", "minimize"]
