"""Classic unconstrained test problems with published minima and standard starts.

All 35 problems of Moré, Garbow & Hillstrom (1981), written as residual
vectors, plus four scalable CUTE problems. Every function is batched: it
maps ``x`` of shape ``(..., n)`` to residuals ``(..., m)`` (or values ``(...)``
for the non-least-squares ones), so a batch of starting points is one call.

Objective convention: ``f(x) = sum_i r_i(x)**2`` (no factor 1/2), as in the
paper, so the published minima ``f*`` apply as printed.

References:
    J. J. Moré, B. S. Garbow, K. E. Hillstrom, "Testing unconstrained
    optimization software", ACM TOMS 7(1):17-41, 1981 (problems numbered
    1-35 as there; problem 11's ``mi`` is read as a minus sign, the known
    misprint).
    I. Bongartz, A. R. Conn, N. Gould, Ph. L. Toint, "CUTE: constrained and
    unconstrained testing environment", ACM TOMS 21(1):123-160, 1995
    (ARWHEAD, TRIDIA, DQDRTIC, QUARTC).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from taylorch.bench.problems.base import Problem

__all__ = ["CLASSIC", "CLASSIC_NAMES", "ClassicSpec", "classic_problem", "classic_problems"]

MGH = "Moré, Garbow & Hillstrom (1981), problem {}"
CUTE = "CUTE (Bongartz, Conn, Gould & Toint 1995): {}"


def _idx(x: Tensor, start: int, stop: int) -> Tensor:
    """The 1-based indices ``start..stop`` as a float tensor on ``x``'s dtype and device."""
    return torch.arange(start, stop + 1, dtype=x.dtype, device=x.device)


def _data(x: Tensor, values: tuple[float, ...]) -> Tensor:
    return torch.tensor(values, dtype=x.dtype, device=x.device)


def _col(x: Tensor, j: int) -> Tensor:
    """Component ``j`` (1-based) with a trailing axis, for broadcasting over observations."""
    return x[..., j - 1 : j]


# ---------------------------------------------------------------- MGH 1-19: fixed size


def extended_rosenbrock(x: Tensor) -> Tensor:
    """MGH 1 (n = 2) and 21: ``r_{2i-1} = 10 (x_{2i} - x_{2i-1}^2)``, ``r_{2i} = 1 - x_{2i-1}``."""
    odd, even = x[..., 0::2], x[..., 1::2]
    return torch.stack([10 * (even - odd**2), 1 - odd], -1).flatten(-2)


def freudenstein_roth(x: Tensor) -> Tensor:
    """MGH 2."""
    x1, x2 = x[..., 0], x[..., 1]
    r1 = -13 + x1 + ((5 - x2) * x2 - 2) * x2
    r2 = -29 + x1 + ((x2 + 1) * x2 - 14) * x2
    return torch.stack([r1, r2], -1)


def powell_badly_scaled(x: Tensor) -> Tensor:
    """MGH 3."""
    x1, x2 = x[..., 0], x[..., 1]
    return torch.stack([1e4 * x1 * x2 - 1, torch.exp(-x1) + torch.exp(-x2) - 1.0001], -1)


def brown_badly_scaled(x: Tensor) -> Tensor:
    """MGH 4."""
    x1, x2 = x[..., 0], x[..., 1]
    return torch.stack([x1 - 1e6, x2 - 2e-6, x1 * x2 - 2], -1)


def beale(x: Tensor) -> Tensor:
    """MGH 5: ``r_i = y_i - x1 (1 - x2^i)``."""
    i = _idx(x, 1, 3)
    return _data(x, (1.5, 2.25, 2.625)) - _col(x, 1) * (1 - _col(x, 2) ** i)


def jennrich_sampson(x: Tensor, m: int = 10) -> Tensor:
    """MGH 6: ``r_i = 2 + 2i - (exp(i x1) + exp(i x2))``."""
    i = _idx(x, 1, m)
    return 2 + 2 * i - (torch.exp(i * _col(x, 1)) + torch.exp(i * _col(x, 2)))


def helical_valley(x: Tensor) -> Tensor:
    """MGH 7; ``theta = atan(x2/x1) / 2pi``, plus 1/2 where ``x1 < 0``."""
    x1, x2, x3 = x[..., 0], x[..., 1], x[..., 2]
    theta = torch.atan(x2 / x1) / (2 * math.pi) + 0.5 * (x1 < 0).to(x.dtype)
    r1 = 10 * (x3 - 10 * theta)
    r2 = 10 * (torch.sqrt(x1**2 + x2**2) - 1)
    return torch.stack([r1, r2, x3], -1)


_BARD_Y = (0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39)


def bard(x: Tensor) -> Tensor:
    """MGH 8: ``r_i = y_i - (x1 + u_i / (v_i x2 + w_i x3))``, ``u = i, v = 16 - i, w = min(u, v)``."""
    u = _idx(x, 1, 15)
    v = 16 - u
    w = torch.minimum(u, v)
    return _data(x, _BARD_Y) - (_col(x, 1) + u / (v * _col(x, 2) + w * _col(x, 3)))


_GAUSSIAN_Y = (0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989)


def gaussian(x: Tensor) -> Tensor:
    """MGH 9: ``r_i = x1 exp(-x2 (t_i - x3)^2 / 2) - y_i``, ``t_i = (8 - i) / 2``."""
    t = (8 - _idx(x, 1, 15)) / 2
    y = _data(x, _GAUSSIAN_Y + _GAUSSIAN_Y[-2::-1])  # symmetric about t = 0
    return _col(x, 1) * torch.exp(-_col(x, 2) * (t - _col(x, 3)) ** 2 / 2) - y


_MEYER_Y = (
    34780.0, 28610.0, 23650.0, 19630.0, 16370.0, 13720.0, 11540.0, 9744.0,
    8261.0, 7030.0, 6005.0, 5147.0, 4427.0, 3820.0, 3307.0, 2872.0,
)  # fmt: skip


def meyer(x: Tensor) -> Tensor:
    """MGH 10: ``r_i = x1 exp(x2 / (t_i + x3)) - y_i``, ``t_i = 45 + 5i``."""
    t = 45 + 5 * _idx(x, 1, 16)
    return _col(x, 1) * torch.exp(_col(x, 2) / (t + _col(x, 3))) - _data(x, _MEYER_Y)


def gulf(x: Tensor, m: int = 99) -> Tensor:
    """MGH 11: ``r_i = exp(-|y_i - x2|^x3 / x1) - t_i``, ``t_i = i/100``, ``y_i = 25 + (-50 ln t_i)^(2/3)``."""
    t = _idx(x, 1, m) / 100
    y = 25 + (-50 * torch.log(t)) ** (2 / 3)
    return torch.exp(-((y - _col(x, 2)).abs() ** _col(x, 3)) / _col(x, 1)) - t


def box_3d(x: Tensor, m: int = 10) -> Tensor:
    """MGH 12: ``r_i = exp(-t_i x1) - exp(-t_i x2) - x3 (exp(-t_i) - exp(-10 t_i))``, ``t_i = i/10``."""
    t = _idx(x, 1, m) / 10
    decay = torch.exp(-t) - torch.exp(-10 * t)
    return torch.exp(-t * _col(x, 1)) - torch.exp(-t * _col(x, 2)) - _col(x, 3) * decay


def extended_powell_singular(x: Tensor) -> Tensor:
    """MGH 13 (n = 4) and 22, in blocks of four."""
    a, b, c, d = (x[..., k::4] for k in range(4))
    r = [a + 10 * b, math.sqrt(5) * (c - d), (b - 2 * c) ** 2, math.sqrt(10) * (a - d) ** 2]
    return torch.stack(r, -1).flatten(-2)


def wood(x: Tensor) -> Tensor:
    """MGH 14."""
    x1, x2, x3, x4 = x.unbind(-1)
    r = [
        10 * (x2 - x1**2),
        1 - x1,
        math.sqrt(90) * (x4 - x3**2),
        1 - x3,
        math.sqrt(10) * (x2 + x4 - 2),
        (x2 - x4) / math.sqrt(10),
    ]
    return torch.stack(r, -1)


_KOWALIK_Y = (
    0.1957,
    0.1947,
    0.1735,
    0.1600,
    0.0844,
    0.0627,
    0.0456,
    0.0342,
    0.0323,
    0.0235,
    0.0246,
)
_KOWALIK_U = (4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625)


def kowalik_osborne(x: Tensor) -> Tensor:
    """MGH 15: ``r_i = y_i - x1 (u_i^2 + u_i x2) / (u_i^2 + u_i x3 + x4)``."""
    u = _data(x, _KOWALIK_U)
    x1, x2, x3, x4 = (_col(x, j) for j in range(1, 5))
    return _data(x, _KOWALIK_Y) - x1 * (u**2 + u * x2) / (u**2 + u * x3 + x4)


def brown_dennis(x: Tensor, m: int = 20) -> Tensor:
    """MGH 16: ``r_i = (x1 + t_i x2 - e^{t_i})^2 + (x3 + x4 sin t_i - cos t_i)^2``, ``t_i = i/5``."""
    t = _idx(x, 1, m) / 5
    x1, x2, x3, x4 = (_col(x, j) for j in range(1, 5))
    return (x1 + t * x2 - torch.exp(t)) ** 2 + (x3 + x4 * torch.sin(t) - torch.cos(t)) ** 2


_OSBORNE1_Y = (
    0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751,
    0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490,
    0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406,
)  # fmt: skip


def osborne1(x: Tensor) -> Tensor:
    """MGH 17: ``r_i = y_i - (x1 + x2 exp(-t_i x4) + x3 exp(-t_i x5))``, ``t_i = 10 (i - 1)``."""
    t = 10 * _idx(x, 0, 32)
    x1, x2, x3, x4, x5 = (_col(x, j) for j in range(1, 6))
    return _data(x, _OSBORNE1_Y) - (x1 + x2 * torch.exp(-t * x4) + x3 * torch.exp(-t * x5))


def biggs_exp6(x: Tensor, m: int = 13) -> Tensor:
    """MGH 18: ``r_i = x3 e^{-t_i x1} - x4 e^{-t_i x2} + x6 e^{-t_i x5} - y_i``, ``t_i = i/10``."""
    t = _idx(x, 1, m) / 10
    y = torch.exp(-t) - 5 * torch.exp(-10 * t) + 3 * torch.exp(-4 * t)
    x1, x2, x3, x4, x5, x6 = (_col(x, j) for j in range(1, 7))
    return x3 * torch.exp(-t * x1) - x4 * torch.exp(-t * x2) + x6 * torch.exp(-t * x5) - y


_OSBORNE2_Y = (
    1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746, 0.679, 0.608,
    0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649, 0.694, 0.644, 0.624, 0.661,
    0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395, 0.375, 0.372, 0.391, 0.396, 0.405, 0.428,
    0.429, 0.523, 0.562, 0.607, 0.653, 0.672, 0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559,
    0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581, 0.428, 0.292, 0.162, 0.098, 0.054,
)  # fmt: skip


def osborne2(x: Tensor) -> Tensor:
    """MGH 19: one exponential and three Gaussian bumps, ``t_i = (i - 1) / 10``."""
    t = _idx(x, 0, 64) / 10
    c = [_col(x, j) for j in range(1, 12)]
    model = c[0] * torch.exp(-t * c[4])
    for amp, width, centre in zip(c[1:4], c[5:8], c[8:11]):
        model = model + amp * torch.exp(-((t - centre) ** 2) * width)
    return _data(x, _OSBORNE2_Y) - model


# ---------------------------------------------------------------- MGH 20-35: variable size


def watson(x: Tensor) -> Tensor:
    """MGH 20 (2 <= n <= 31, m = 31)."""
    n = x.shape[-1]
    t = (_idx(x, 1, 29) / 29).unsqueeze(-1)  # (29, 1)
    j = _idx(x, 1, n)
    powers = t ** (j - 1)  # (29, n): t^{j-1}
    deriv = (j[1:] - 1) * t ** (j[1:] - 2)  # (29, n-1): (j-1) t^{j-2}
    s1 = (x[..., None, 1:] * deriv).sum(-1)
    s2 = (x[..., None, :] * powers).sum(-1)
    x1, x2 = x[..., :1], x[..., 1:2]
    return torch.cat([s1 - s2**2 - 1, x1, x2 - x1**2 - 1], -1)


def penalty1(x: Tensor) -> Tensor:
    """MGH 23 (m = n + 1): ``r_i = sqrt(1e-5) (x_i - 1)``, ``r_{n+1} = sum x_j^2 - 1/4``."""
    tail = (x**2).sum(-1, keepdim=True) - 0.25
    return torch.cat([math.sqrt(1e-5) * (x - 1), tail], -1)


def penalty2(x: Tensor) -> Tensor:
    """MGH 24 (m = 2n)."""
    n = x.shape[-1]
    a = math.sqrt(1e-5)
    i = _idx(x, 2, n)
    y = torch.exp(i / 10) + torch.exp((i - 1) / 10)
    e = torch.exp(x / 10)
    head = x[..., :1] - 0.2
    pairs = a * (e[..., 1:] + e[..., :-1] - y)
    singles = a * (e[..., 1:] - math.exp(-0.1))
    weights = _idx(x, 1, n).flip(0)  # n - j + 1
    tail = (weights * x**2).sum(-1, keepdim=True) - 1
    return torch.cat([head, pairs, singles, tail], -1)


def variably_dimensioned(x: Tensor) -> Tensor:
    """MGH 25 (m = n + 2)."""
    s = ((x - 1) * _idx(x, 1, x.shape[-1])).sum(-1, keepdim=True)
    return torch.cat([x - 1, s, s**2], -1)


def trigonometric(x: Tensor) -> Tensor:
    """MGH 26: ``r_i = n - sum_j cos x_j + i (1 - cos x_i) - sin x_i``."""
    n = x.shape[-1]
    c = torch.cos(x)
    return n - c.sum(-1, keepdim=True) + _idx(x, 1, n) * (1 - c) - torch.sin(x)


def brown_almost_linear(x: Tensor) -> Tensor:
    """MGH 27: ``r_i = x_i + sum_j x_j - (n + 1)`` for ``i < n``, ``r_n = prod_j x_j - 1``."""
    n = x.shape[-1]
    lin = x[..., :-1] + x.sum(-1, keepdim=True) - (n + 1)
    return torch.cat([lin, x.prod(-1, keepdim=True) - 1], -1)


def _grid(x: Tensor) -> tuple[float, Tensor]:
    """Mesh width ``h = 1/(n+1)`` and nodes ``t_i = i h`` of MGH 28-29."""
    n = x.shape[-1]
    h = 1 / (n + 1)
    return h, _idx(x, 1, n) * h


def discrete_boundary_value(x: Tensor) -> Tensor:
    """MGH 28: ``r_i = 2 x_i - x_{i-1} - x_{i+1} + h^2 (x_i + t_i + 1)^3 / 2``, ``x_0 = x_{n+1} = 0``."""
    h, t = _grid(x)
    padded = torch.nn.functional.pad(x, (1, 1))
    return 2 * x - padded[..., :-2] - padded[..., 2:] + h**2 * (x + t + 1) ** 3 / 2


def discrete_integral_equation(x: Tensor) -> Tensor:
    """MGH 29 (O(n) per evaluation by prefix sums)."""
    h, t = _grid(x)
    cube = (x + t + 1) ** 3
    left = torch.cumsum(t * cube, -1)  # sum_{j <= i} t_j (x_j + t_j + 1)^3
    right_all = ((1 - t) * cube).flip(-1).cumsum(-1).flip(-1)  # sum_{j >= i}
    right = torch.nn.functional.pad(right_all[..., 1:], (0, 1))  # sum_{j > i}
    return x + h * ((1 - t) * left + t * right) / 2


def broyden_tridiagonal(x: Tensor) -> Tensor:
    """MGH 30: ``r_i = (3 - 2 x_i) x_i - x_{i-1} - 2 x_{i+1} + 1``, ``x_0 = x_{n+1} = 0``."""
    padded = torch.nn.functional.pad(x, (1, 1))
    return (3 - 2 * x) * x - padded[..., :-2] - 2 * padded[..., 2:] + 1


def broyden_banded(x: Tensor, lower: int = 5, upper: int = 1) -> Tensor:
    """MGH 31: ``r_i = x_i (2 + 5 x_i^2) + 1 - sum_{j in J_i} x_j (1 + x_j)``, band ``i-5..i+1``."""
    g = x * (1 + x)
    padded = torch.nn.functional.pad(g, (lower, upper))
    n = x.shape[-1]
    band = sum(padded[..., k : k + n] for k in range(lower + upper + 1)) - g
    return x * (2 + 5 * x**2) + 1 - band


def linear_full_rank(x: Tensor, m: int = 10) -> Tensor:
    """MGH 32: ``r_i = x_i - (2/m) sum x_j - 1`` (``i <= n``), ``-(2/m) sum x_j - 1`` after."""
    s = 2 / m * x.sum(-1, keepdim=True)
    pad = torch.nn.functional.pad(x, (0, m - x.shape[-1]))
    return pad - s - 1


def linear_rank1(x: Tensor, m: int = 10) -> Tensor:
    """MGH 33: ``r_i = i sum_j j x_j - 1``."""
    s = (x * _idx(x, 1, x.shape[-1])).sum(-1, keepdim=True)
    return _idx(x, 1, m) * s - 1


def linear_rank1_zero(x: Tensor, m: int = 10) -> Tensor:
    """MGH 34: ``r_1 = r_m = -1``, ``r_i = (i - 1) sum_{j=2}^{n-1} j x_j - 1`` in between."""
    j = _idx(x, 2, x.shape[-1] - 1)
    s = (x[..., 1:-1] * j).sum(-1, keepdim=True)
    mid = (_idx(x, 2, m - 1) - 1) * s - 1
    ends = -torch.ones_like(s)
    return torch.cat([ends, mid, ends], -1)


def chebyquad(x: Tensor) -> Tensor:
    """MGH 35 (m = n): mean of shifted Chebyshev ``T_i(x_j)`` minus ``int_0^1 T_i``."""
    n = x.shape[-1]
    z = 2 * x - 1
    prev, cur = torch.ones_like(z), z
    means = []
    for _ in range(n):
        means.append(cur.mean(-1))
        prev, cur = cur, 2 * z * cur - prev
    i = _idx(x, 1, n)
    integral = torch.where(i % 2 == 0, -1 / (i**2 - 1), torch.zeros_like(i))
    return torch.stack(means, -1) - integral


# ---------------------------------------------------------------- CUTE, scalable, not least squares


def arwhead(x: Tensor) -> Tensor:
    """ARWHEAD: ``sum_{i<n} (x_i^2 + x_n^2)^2 - 4 x_i + 3``; f* = 0 at ``(1, ..., 1, 0)``."""
    head, last = x[..., :-1], x[..., -1:]
    return ((head**2 + last**2) ** 2 - 4 * head + 3).sum(-1)


def tridia(x: Tensor) -> Tensor:
    """TRIDIA: ``(x_1 - 1)^2 + sum_{i>=2} i (2 x_i - x_{i-1})^2``; f* = 0."""
    i = _idx(x, 2, x.shape[-1])
    return (x[..., 0] - 1) ** 2 + (i * (2 * x[..., 1:] - x[..., :-1]) ** 2).sum(-1)


def dqdrtic(x: Tensor) -> Tensor:
    """DQDRTIC: ``sum_{i<=n-2} x_i^2 + 100 x_{i+1}^2 + 100 x_{i+2}^2``; f* = 0 at 0."""
    return (x[..., :-2] ** 2 + 100 * x[..., 1:-1] ** 2 + 100 * x[..., 2:] ** 2).sum(-1)


def quartc(x: Tensor) -> Tensor:
    """QUARTC: ``sum_i (x_i - i)^4``; f* = 0, a singular (quartic) minimum."""
    return ((x - _idx(x, 1, x.shape[-1])) ** 4).sum(-1)


# ---------------------------------------------------------------- the registry


def _const(*values: float) -> Callable[[int], list[float]]:
    return lambda n: list(values)


def _fill(value: float) -> Callable[[int], list[float]]:
    return lambda n: [value] * n


def _mesh_start(n: int) -> list[float]:
    t = [(i + 1) / (n + 1) for i in range(n)]
    return [ti * (ti - 1) for ti in t]


def _brown_almost_linear_star(n: int) -> list[float]:
    """``(a, ..., a, a^{1-n})`` with ``n a^n - (n+1) a^{n-1} + 1 = 0``, ``a != 1`` (Newton from 0.5)."""
    a = 0.5
    for _ in range(100):
        p = n * a**n - (n + 1) * a ** (n - 1) + 1
        dp = n * n * a ** (n - 1) - (n + 1) * (n - 1) * a ** (n - 2)
        a -= p / dp
    return [a] * (n - 1) + [a ** (1 - n)]


@dataclass(frozen=True)
class ClassicSpec:
    """A problem family: its formula, standard start, and published minimum.

    ``f_star`` maps ``n`` to the published minimum for that size (``None`` when
    the paper gives none); ``x_star`` maps ``n`` to a closed-form minimizer
    where one is known. ``sizes`` lists the n the paper allows (``None``: any
    n with ``n % step == 0`` and ``n >= min_n``).
    """

    name: str
    n: int
    x0: Callable[[int], list[float]]
    residual: Callable[[Tensor], Tensor] | None = None
    fun: Callable[[Tensor], Tensor] | None = None
    f_star: Callable[[int], float | None] = lambda n: 0.0
    x_star: Callable[[int], list[float]] | None = None
    source: str = ""
    scalable: bool = False
    min_n: int = 1
    step: int = 1
    note: str = ""
    sizes: tuple[int, ...] | None = field(default=None)

    def check_n(self, n: int) -> None:
        if self.sizes is not None:
            ok = n in self.sizes
        elif self.scalable:
            ok = n >= self.min_n and n % self.step == 0
        else:
            ok = n == self.n
        if not ok:
            allowed = self.sizes or (
                f"n >= {self.min_n}, multiple of {self.step}" if self.scalable else self.n
            )
            raise ValueError(f"n={n} is not valid for {self.name} (allowed: {allowed})")


def _table(values: dict[int, float]) -> Callable[[int], float | None]:
    return values.get


CLASSIC: dict[str, ClassicSpec] = {
    s.name: s
    for s in [
        ClassicSpec("rosenbrock", 2, _const(-1.2, 1), extended_rosenbrock,
                    x_star=_fill(1.0), source=MGH.format(1)),
        ClassicSpec("freudenstein-roth", 2, _const(0.5, -2), freudenstein_roth,
                    x_star=_const(5, 4), source=MGH.format(2),
                    note="local minimum f = 48.9842 at (11.41, -0.8968)"),
        ClassicSpec("powell-badly-scaled", 2, _const(0, 1), powell_badly_scaled,
                    source=MGH.format(3)),
        ClassicSpec("brown-badly-scaled", 2, _const(1, 1), brown_badly_scaled,
                    x_star=_const(1e6, 2e-6), source=MGH.format(4)),
        ClassicSpec("beale", 2, _const(1, 1), beale, x_star=_const(3, 0.5), source=MGH.format(5)),
        ClassicSpec("jennrich-sampson", 2, _const(0.3, 0.4), jennrich_sampson,
                    f_star=_table({2: 124.362182355}), source=MGH.format(6) + ", m = 10"),
        ClassicSpec("helical-valley", 3, _const(-1, 0, 0), helical_valley,
                    x_star=_const(1, 0, 0), source=MGH.format(7)),
        ClassicSpec("bard", 3, _fill(1.0), bard, f_star=_table({3: 8.21487730657e-3}),
                    source=MGH.format(8), note="also f = 17.4286 at (0.8406, -inf, -inf)"),
        ClassicSpec("gaussian", 3, _const(0.4, 1, 0), gaussian,
                    f_star=_table({3: 1.12793276961e-8}), source=MGH.format(9)),
        ClassicSpec("meyer", 3, _const(0.02, 4000, 250), meyer,
                    f_star=_table({3: 87.9458551718}), source=MGH.format(10)),
        ClassicSpec("gulf", 3, _const(5, 2.5, 0.15), gulf, x_star=_const(50, 25, 1.5),
                    source=MGH.format(11) + ", m = 99"),
        ClassicSpec("box-3d", 3, _const(0, 10, 20), box_3d, x_star=_const(1, 10, 1),
                    source=MGH.format(12) + ", m = 10"),
        ClassicSpec("powell-singular", 4, _const(3, -1, 0, 1), extended_powell_singular,
                    x_star=_fill(0.0), source=MGH.format(13)),
        ClassicSpec("wood", 4, _const(-3, -1, -3, -1), wood, x_star=_fill(1.0),
                    source=MGH.format(14)),
        ClassicSpec("kowalik-osborne", 4, _const(0.25, 0.39, 0.415, 0.39), kowalik_osborne,
                    f_star=_table({4: 3.07505603849e-4}), source=MGH.format(15)),
        ClassicSpec("brown-dennis", 4, _const(25, 5, -5, -1), brown_dennis,
                    f_star=_table({4: 85822.2016263}), source=MGH.format(16) + ", m = 20"),
        ClassicSpec("osborne1", 5, _const(0.5, 1.5, -1, 0.01, 0.02), osborne1,
                    f_star=_table({5: 5.46489469748e-5}), source=MGH.format(17)),
        ClassicSpec("biggs-exp6", 6, _const(1, 2, 1, 1, 1, 1), biggs_exp6,
                    x_star=_const(1, 10, 1, 5, 4, 3), source=MGH.format(18) + ", m = 13",
                    note="local minimum f = 5.65565e-3"),
        ClassicSpec("osborne2", 11, _const(1.3, 0.65, 0.65, 0.7, 0.6, 3, 5, 7, 2, 4.5, 5.5),
                    osborne2, f_star=_table({11: 4.01377362935e-2}), source=MGH.format(19)),
        ClassicSpec("watson", 6, _fill(0.0), watson, sizes=(6, 9, 12),
                    f_star=_table({6: 2.28767005355e-3, 9: 1.39976155e-6, 12: 4.72238e-10}),
                    source=MGH.format(20)),
        ClassicSpec("extended-rosenbrock", 10, lambda n: [-1.2, 1.0] * (n // 2),
                    extended_rosenbrock, x_star=_fill(1.0), scalable=True, min_n=2, step=2,
                    source=MGH.format(21)),
        ClassicSpec("extended-powell", 12, lambda n: [3.0, -1.0, 0.0, 1.0] * (n // 4),
                    extended_powell_singular, x_star=_fill(0.0), scalable=True, min_n=4,
                    step=4, source=MGH.format(22)),
        ClassicSpec("penalty1", 4, lambda n: [float(j) for j in range(1, n + 1)], penalty1,
                    sizes=(4, 10), f_star=_table({4: 2.24997750e-5, 10: 7.08765146e-5}),
                    source=MGH.format(23)),
        ClassicSpec("penalty2", 4, _fill(0.5), penalty2, sizes=(4, 10),
                    f_star=_table({4: 9.37629301e-6, 10: 2.93660498e-4}), source=MGH.format(24)),
        ClassicSpec("variably-dimensioned", 10, lambda n: [1 - j / n for j in range(1, n + 1)],
                    variably_dimensioned, x_star=_fill(1.0), scalable=True, source=MGH.format(25)),
        ClassicSpec("trigonometric", 10, lambda n: [1 / n] * n, trigonometric, scalable=True,
                    source=MGH.format(26), note="local minima, e.g. f = 2.79506e-5 at n = 10"),
        ClassicSpec("brown-almost-linear", 10, _fill(0.5), brown_almost_linear,
                    x_star=_brown_almost_linear_star, scalable=True, min_n=2,
                    source=MGH.format(27), note="local minimum f = 1 at (0, ..., 0, n + 1)"),
        ClassicSpec("discrete-boundary-value", 10, _mesh_start, discrete_boundary_value,
                    scalable=True, source=MGH.format(28)),
        ClassicSpec("discrete-integral-equation", 10, _mesh_start, discrete_integral_equation,
                    scalable=True, source=MGH.format(29)),
        ClassicSpec("broyden-tridiagonal", 10, _fill(-1.0), broyden_tridiagonal, scalable=True,
                    source=MGH.format(30)),
        ClassicSpec("broyden-banded", 10, _fill(-1.0), broyden_banded, scalable=True,
                    min_n=2, source=MGH.format(31)),
        ClassicSpec("linear-full-rank", 5, _fill(1.0), linear_full_rank, f_star=lambda n: 10.0 - n,
                    x_star=_fill(-1.0), source=MGH.format(32) + ", m = 10",
                    sizes=tuple(range(1, 11))),
        ClassicSpec("linear-rank1", 5, _fill(1.0), linear_rank1, f_star=lambda n: 90 / 42,
                    source=MGH.format(33) + ", m = 10", sizes=tuple(range(1, 11))),
        ClassicSpec("linear-rank1-zero", 5, _fill(1.0), linear_rank1_zero,
                    f_star=lambda n: 124 / 34, source=MGH.format(34) + ", m = 10",
                    sizes=tuple(range(3, 11))),
        ClassicSpec("chebyquad", 8, lambda n: [j / (n + 1) for j in range(1, n + 1)], chebyquad,
                    sizes=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
                    f_star=lambda n: {8: 3.51687372568e-3, 10: 6.50395208e-3}.get(n, 0.0),
                    source=MGH.format(35)),
        ClassicSpec("arwhead", 100, _fill(1.0), fun=arwhead,
                    x_star=lambda n: [1.0] * (n - 1) + [0.0], scalable=True, min_n=2,
                    source=CUTE.format("ARWHEAD")),
        ClassicSpec("tridia", 100, _fill(1.0), fun=tridia,
                    x_star=lambda n: [2.0 ** -k for k in range(n)], scalable=True, min_n=2,
                    source=CUTE.format("TRIDIA")),
        ClassicSpec("dqdrtic", 100, _fill(3.0), fun=dqdrtic, x_star=_fill(0.0), scalable=True,
                    min_n=3, source=CUTE.format("DQDRTIC")),
        ClassicSpec("quartc", 100, _fill(2.0), fun=quartc,
                    x_star=lambda n: [float(j) for j in range(1, n + 1)], scalable=True,
                    source=CUTE.format("QUARTC")),
    ]
}  # fmt: skip

CLASSIC_NAMES: tuple[str, ...] = tuple(CLASSIC)


def classic_problem(
    name: str, n: int | None = None, *, dtype: torch.dtype = torch.float64, device=None
) -> Problem:
    """The classic problem ``name`` at size ``n`` (default: the paper's standard size)."""
    if name not in CLASSIC:
        raise ValueError(f"name must be one of {', '.join(CLASSIC_NAMES)}; got {name!r}")
    spec = CLASSIC[name]
    n = spec.n if n is None else n
    spec.check_n(n)
    x0 = torch.tensor(spec.x0(n), dtype=dtype, device=device)
    x_star = None if spec.x_star is None else torch.tensor(spec.x_star(n), dtype=dtype)
    label = name if n == spec.n else f"{name}-{n}"
    return Problem(
        name=label,
        x0=x0,
        fun=spec.fun,
        residual=spec.residual,
        f_star=spec.f_star(n),
        x_star=None if x_star is None else x_star.to(device),
        source=spec.source,
        tags={"suite": "classic", "family": name, "n": n, "note": spec.note},
    )


def classic_problems(
    extended_sizes: tuple[int, ...] = (100, 1000, 10000), *, dtype: torch.dtype = torch.float64
) -> list[Problem]:
    """Every family at its standard size, plus the extended families at each of ``extended_sizes``."""
    problems = [classic_problem(name, dtype=dtype) for name in CLASSIC_NAMES]
    extended = ("extended-rosenbrock", "extended-powell", "broyden-tridiagonal", "arwhead",
                "tridia", "dqdrtic")  # fmt: skip
    for n in extended_sizes:
        problems += [classic_problem(name, n, dtype=dtype) for name in extended]
    return problems
