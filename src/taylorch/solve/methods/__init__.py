"""The registry of minimization methods: one name, one class."""

from taylorch.solve.methods.base import Solver, State, Tolerances
from taylorch.solve.methods.conjugate_gradient import CG
from taylorch.solve.methods.descent import DescentMethod, Direction
from taylorch.solve.methods.gradient import GD, Polyak
from taylorch.solve.methods.nelder_mead import NelderMead
from taylorch.solve.methods.quasi_newton import BFGS, LBFGS
from taylorch.solve.methods.zeroth_order import ZOGD

METHODS: dict[str, type[Solver]] = {
    cls.name: cls
    for cls in (
        BFGS,
        LBFGS,
        NelderMead,
        ZOGD,
        GD,
        Polyak,
        CG,
    )
}

__all__ = [
    "BFGS",
    "CG",
    "GD",
    "LBFGS",
    "METHODS",
    "ZOGD",
    "DescentMethod",
    "Direction",
    "NelderMead",
    "Polyak",
    "Solver",
    "State",
    "Tolerances",
]
