"""Built-in benchmark problems: classic test functions, NIST StRD, batched, training."""

from taylorch.bench.problems.base import Problem, sum_of_squares

__all__ = ["Problem", "sum_of_squares"]
