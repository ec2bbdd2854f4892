"""Root finders: Newton-Raphson, Levenberg-Marquardt and dogleg as root finders, Broyden, Anderson."""

from collections.abc import Callable
from functools import partial

from taylorch.solve.lsq import Dogleg, GaussNewton, LevenbergMarquardt
from taylorch.solve.methods.base import Solver
from taylorch.solve.rootfind.anderson import Anderson
from taylorch.solve.rootfind.base import AsRoot, RootSolver
from taylorch.solve.rootfind.broyden import Broyden


def _as_root(method: type) -> Callable[..., Solver]:
    def build(**options) -> Solver:
        return AsRoot(method(**options))

    return build


ROOT_METHODS: dict[str, Callable[..., Solver]] = {
    "newton": _as_root(GaussNewton),
    "lm": _as_root(LevenbergMarquardt),
    "dogleg": _as_root(Dogleg),
    "broyden1": partial(Broyden, update="good"),
    "broyden2": partial(Broyden, update="bad"),
    "anderson": Anderson,
}

__all__ = ["ROOT_METHODS", "Anderson", "AsRoot", "Broyden", "RootSolver"]
