"""The registry of minimization methods: one name, one class."""

from taylorch.solve.methods.base import Solver, State, Tolerances
from taylorch.solve.methods.conjugate_gradient import CG
from taylorch.solve.methods.cubic import ARC, DampedNewton
from taylorch.solve.methods.descent import DescentMethod, Direction
from taylorch.solve.methods.gradient import GD, Polyak
from taylorch.solve.methods.nelder_mead import NelderMead
from taylorch.solve.methods.newton import Newton, NewtonCG
from taylorch.solve.methods.quasi_newton import BFGS, LBFGS
from taylorch.solve.methods.trust_region_methods import Dogleg, TrustExact, TrustNCG
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
        Newton,
        NewtonCG,
        TrustNCG,
        Dogleg,
        TrustExact,
        ARC,
        DampedNewton,
    )
}

__all__ = [
    "ARC",
    "BFGS",
    "CG",
    "GD",
    "LBFGS",
    "METHODS",
    "ZOGD",
    "DampedNewton",
    "DescentMethod",
    "Direction",
    "Dogleg",
    "NelderMead",
    "Newton",
    "NewtonCG",
    "Polyak",
    "Solver",
    "State",
    "Tolerances",
    "TrustExact",
    "TrustNCG",
]
