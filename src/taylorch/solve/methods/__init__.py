"""The registry of minimization methods: one name, one class."""

from taylorch.solve.methods.base import Solver, State, Tolerances
from taylorch.solve.methods.descent import DescentMethod, Direction
from taylorch.solve.methods.quasi_newton import BFGS, LBFGS

METHODS: dict[str, type[Solver]] = {
    cls.name: cls
    for cls in (
        BFGS,
        LBFGS,
    )
}

__all__ = [
    "BFGS",
    "LBFGS",
    "METHODS",
    "DescentMethod",
    "Direction",
    "Solver",
    "State",
    "Tolerances",
]
