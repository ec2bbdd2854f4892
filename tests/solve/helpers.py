"""Test problems and instruments shared by the solver tests."""

import torch


def quadratic(x, a, b):
    """``1/2 x^T A x - b^T x``; its minimizer is ``A^{-1} b`` for SPD ``A``."""
    return 0.5 * x @ a @ x - b @ x


def rosenbrock(x):
    """The extended Rosenbrock function, batched over leading dimensions; minimum 0 at ones."""
    return (1 - x[..., :-1]).pow(2).sum(-1) + 100 * (x[..., 1:] - x[..., :-1] ** 2).pow(2).sum(-1)


def spd_quadratic(n: int, seed: int, dtype=torch.float64, cond: float = 10.0):
    """``(A, b, A^{-1} b)`` with the eigenvalues of A spread over [1, cond]."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(1.0, cond, n, dtype=torch.float64)) @ q.T
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    return a.to(dtype), b.to(dtype), torch.linalg.solve(a, b).to(dtype)


def rowwise(funs):
    """A batched function whose row ``i`` is ``funs[i]`` evaluated exactly as when unbatched."""
    return lambda x: torch.stack([f(row) for f, row in zip(funs, x)])


class Counted:
    """Wraps a function and counts its calls (the ground truth for ``nfev``) and how many
    of them returned a non-finite value."""

    def __init__(self, fun):
        self.fun, self.calls, self.nonfinite = fun, 0, 0

    def __call__(self, *args):
        self.calls += 1
        out = self.fun(*args)
        self.nonfinite += int(not bool(torch.isfinite(out).all()))
        return out
