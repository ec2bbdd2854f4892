"""Least-squares methods and their parts: the residual objective, losses, kernels, solvers."""

from taylorch.solve.lsq.base import LeastSquaresSolver
from taylorch.solve.lsq.gauss_newton import GaussNewton
from taylorch.solve.lsq.loss import LOSSES, Loss
from taylorch.solve.lsq.objective import ResidualObjective
from taylorch.solve.lsq.trust_region import Dogleg, LevenbergMarquardt, TrustRegionLSQ

LSQ_METHODS: dict[str, type[LeastSquaresSolver]] = {
    cls.name: cls for cls in (LevenbergMarquardt, Dogleg, GaussNewton)
}

__all__ = [
    "LOSSES",
    "LSQ_METHODS",
    "Dogleg",
    "GaussNewton",
    "LeastSquaresSolver",
    "LevenbergMarquardt",
    "Loss",
    "ResidualObjective",
    "TrustRegionLSQ",
]
