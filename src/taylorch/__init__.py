"""taylorch: optimization of every order for PyTorch."""

from importlib.metadata import PackageNotFoundError, version

from taylorch.solve import (
    Result,
    Status,
    curve_fit,
    fixed_point,
    least_squares,
    minimize,
    root,
)

try:
    __version__ = version("taylorch")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Result",
    "Status",
    "__version__",
    "curve_fit",
    "fixed_point",
    "least_squares",
    "minimize",
    "root",
]
