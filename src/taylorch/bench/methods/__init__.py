"""The methods the harness can run, registered by ``"library:algorithm"`` name.

Importing this package registers taylorch's solvers (whatever this
installation has) and the adapters for scipy, pytorch-minimize,
torch.optim, lmfit and optimistix. Peer libraries are imported only when a
method of theirs runs.
"""

from taylorch.bench.methods import (  # noqa: F401  (importing registers)
    lmfit_methods,
    optimistix_methods,
    scipy_methods,
    torch_methods,
)
from taylorch.bench.methods.base import (
    LIBRARIES,
    METHODS,
    Method,
    Outcome,
    Settings,
    library_missing,
    match,
    register,
    select,
)
from taylorch.bench.methods.taylorch_methods import register_taylorch_methods

register_taylorch_methods()

__all__ = [
    "LIBRARIES",
    "METHODS",
    "Method",
    "Outcome",
    "Settings",
    "library_missing",
    "match",
    "register",
    "select",
]
