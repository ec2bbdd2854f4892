"""Step-length rules along a search direction, batched over independent problems.

Each rule answers: given ``x``, ``f(x)``, ``g(x)`` and a direction ``p`` per
problem, how far to go, and is the step acceptable? Every problem has its own
trial step, bracket and acceptance; one evaluation of the objective per round
serves the whole batch, and a problem that has settled is no longer charged.

Armijo and strong Wolfe are :class:`RoundSearch` es: their whole state lives in
tensors over the batch, one round at a time (``begin``, then ``advance`` with
the values at each trial, then ``conclude``). That lets a descent method run
each problem's search on its own clock: a problem whose search ends starts its
next iteration at the next round instead of waiting for the slowest search of
the batch (see :class:`~taylorch.solve.methods.descent.DescentMethod`).

* :class:`Armijo`: backtracking with safeguarded quadratic interpolation until
  ``f(x + t p) <= f + c1 t g.p`` (Nocedal & Wright, *Numerical Optimization*,
  2nd ed., Alg. 3.1 and Sec. 3.5). One evaluation per trial.
* :class:`StrongWolfe`: bracketing then zoom with cubic interpolation until
  the strong Wolfe conditions hold (Nocedal & Wright Alg. 3.5-3.6; the
  safeguards follow Moré & Thuente, "Line search algorithms with guaranteed
  sufficient decrease", ACM TOMS 1994). One value and gradient per trial.
* :class:`Fixed`: ``t = t0`` always.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import Tensor

from taylorch.linalg.norms import dot, max_abs
from taylorch.solve.objective import Objective

__all__ = ["Armijo", "Fixed", "LineSearch", "RoundSearch", "SearchResult", "StrongWolfe"]


@dataclass
class SearchResult:
    """The accepted step per problem: ``t`` ``(B,)``, the new point and whether it is acceptable.

    Where ``ok`` is false no acceptable step was found: ``t`` is 0 and the
    point is the old one.
    """

    t: Tensor
    x: Tensor
    f: Tensor
    g: Tensor | None
    ok: Tensor


class LineSearch(abc.ABC):
    """A step-length rule. ``needs_gradient`` says whether it evaluates gradients."""

    needs_gradient: bool = True

    @abc.abstractmethod
    def search(
        self, objective: Objective, x: Tensor, f: Tensor, g: Tensor, p: Tensor, t0: Tensor
    ) -> SearchResult:
        """Find a step along ``p`` from ``x`` starting with the trial ``t0`` ``(B,)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def _evaluate(
    objective: Objective, x: Tensor, mask: Tensor, with_gradient: bool
) -> tuple[Tensor, Tensor | None]:
    if with_gradient:
        return objective.value_and_grad(x, mask=mask)
    return objective.value(x, mask=mask), None


Search = dict[str, Tensor]


class RoundSearch(LineSearch):
    """A line search run one evaluation at a time, its state a dict of tensors over the batch.

    :meth:`begin` opens a search on the given rows; the state holds at least
    the direction ``p``, the trial step ``t`` and ``pending``, the rows still
    searching. :meth:`advance` takes the values at ``x + t p`` and sets the
    next trial, clearing ``pending`` where the search has ended (at the latest
    after ``max_trials`` rounds); :meth:`conclude` gives the step found.
    ``x`` and ``f`` are those of the search's starting point throughout.
    :meth:`search` runs the rounds until every row has ended.
    """

    max_trials: int

    @abc.abstractmethod
    def begin(self, x: Tensor, f: Tensor, g: Tensor, p: Tensor, t0: Tensor, rows: Tensor) -> Search:
        """A new search along ``p`` on ``rows``, first trial ``t0``."""

    @abc.abstractmethod
    def advance(
        self, search: Search, x: Tensor, f: Tensor, ft: Tensor, gt: Tensor | None
    ) -> Search:
        """The state after the trial's value ``ft`` (and gradient ``gt``)."""

    @abc.abstractmethod
    def conclude(self, search: Search, x: Tensor, f: Tensor, g: Tensor) -> SearchResult:
        """The step found, per row."""

    @staticmethod
    def trial_point(x: Tensor, search: Search) -> Tensor:
        """``x + t p``, the point :meth:`trial` evaluates (and :meth:`conclude` returns)."""
        return _along(x, search["t"], search["p"])

    def trial(
        self, objective: Objective, x: Tensor, search: Search
    ) -> tuple[Tensor, Tensor | None]:
        """Evaluate the trial points of the rows still searching (one charged call)."""
        xt = self.trial_point(x, search)
        return _evaluate(objective, xt, search["pending"], self.needs_gradient)

    def search(self, objective, x, f, g, p, t0):
        state = self.begin(x, f, g, p, t0, objective.active)
        while bool(state["pending"].any()):
            ft, gt = self.trial(objective, x, state)
            state = self.advance(state, x, f, ft, gt)
        return self.conclude(state, x, f, g)


class Fixed(LineSearch):
    """Take ``t0`` as it is (a fixed learning rate); accept any finite value."""

    def __init__(self, *, with_gradient: bool = True):
        self.needs_gradient = with_gradient

    def search(self, objective, x, f, g, p, t0):
        xt = x + t0[:, None] * p
        ft, gt = _evaluate(objective, xt, objective.active, self.needs_gradient)
        ok = torch.isfinite(ft)
        keep = ok[:, None]
        return SearchResult(
            t=torch.where(ok, t0, torch.zeros_like(t0)),
            x=torch.where(keep, xt, x),
            f=torch.where(ok, ft, f),
            g=None if gt is None else torch.where(keep, gt, g),
            ok=ok,
        )


#: Relative noise of ``f`` below which its changes are not trusted (Hager & Zhang's 1e-6).
_NOISE = 1e-6


def _noise_level(f: Tensor, relative: float) -> Tensor:
    """The change of ``f`` below which its values are not trusted: ``relative |f|``, and at
    least 100 eps of it (rounding alone)."""
    return max(relative, 100 * torch.finfo(f.dtype).eps) * f.abs()


class Armijo(RoundSearch):
    """Backtracking to sufficient decrease ``f(x + t p) <= f + c1 t <g, p>`` (and ``< f``).

    Each rejected trial is replaced by the minimizer of the quadratic through
    ``f``, ``<g, p>`` and the rejected value, kept within ``[0.1 t, 0.5 t]``
    (a non-finite value cuts the step to a tenth). With ``with_gradient``
    the gradient is evaluated with each value, so the accepted point needs no
    extra call, and where ``f`` moved by less than its noise (``1e-6 |f|``) a
    decrease is judged by the derivative instead, ``g(x + t p).p <= (2 c1 - 1) g.p``
    (the approximate Armijo condition of Hager & Zhang, SIAM J. Optim. 2005): below
    that level values cannot show the decrease a gradient method still makes.
    Without ``with_gradient`` only values are used (zeroth-order methods).

    Args:
        c1: sufficient-decrease constant in (0, 1).
        max_trials: trials before the problem reports no progress.
        with_gradient: evaluate gradients at trial points.
    """

    def __init__(self, *, c1: float = 1e-4, max_trials: int = 40, with_gradient: bool = True):
        if not 0 < c1 < 1:
            raise ValueError(f"c1 must be in (0, 1), got {c1}")
        if max_trials < 1:
            raise ValueError(f"max_trials must be >= 1, got {max_trials}")
        self.c1 = c1
        self.max_trials = max_trials
        self.needs_gradient = with_gradient

    def begin(self, x, f, g, p, t0, rows):
        slope = dot(g, p)
        search = {
            "p": p,
            "t": t0,
            "armijo_rate": self.c1 * slope,
            "slope": slope,
            "pending": rows,
            "rounds": torch.zeros_like(rows, dtype=torch.long),
            "ok": torch.zeros_like(rows),
            "ft": f,
        }
        if self.needs_gradient:
            search["gt"] = g
            search["noise"] = _noise_level(f, _NOISE)
            search["approx_slope"] = (2 * self.c1 - 1) * slope
        return search

    def advance(self, search, x, f, ft, gt):
        t, pending = search["t"], search["pending"]
        # A trial too short to change x is no step, and shorter ones will not be either.
        # Nor is one that leaves f where it was: at the noise floor the sufficient-decrease
        # bound rounds to f itself, and such steps let a solver idle until max_iter.
        moved = (_along(x, t, search["p"]) != x).any(dim=-1)
        armijo = ft <= torch.addcmul(f, t, search["armijo_rate"])
        decrease = armijo & (ft < f)
        if gt is not None:
            # Below the noise of f its values cannot show a decrease; the derivative can
            # (Hager & Zhang's approximate Armijo condition): f(x + t p) within the noise
            # of f and the slope there still at most (2 c1 - 1) <g, p>.
            dt = dot(gt, search["p"])
            flat = (ft - f).abs() <= search["noise"]
            decrease = decrease | (flat & (dt <= search["approx_slope"]))
        accept = pending & moved & decrease
        rounds = search["rounds"] + 1
        pending = pending & ~accept & moved & (rounds < self.max_trials)
        out = {
            **search,
            "t": torch.where(pending, _backtrack(t, f, search["slope"], ft), t),
            "pending": pending,
            "rounds": rounds,
            "ok": search["ok"] | accept,
            "ft": torch.where(accept, ft, search["ft"]),
        }
        if gt is not None:
            out["gt"] = torch.where(accept[:, None], gt, search["gt"])
        return out

    def conclude(self, search, x, f, g):
        ok = search["ok"]
        return SearchResult(
            t=torch.where(ok, search["t"], torch.zeros_like(search["t"])),
            x=torch.where(ok[:, None], _along(x, search["t"], search["p"]), x),
            f=torch.where(ok, search["ft"], f),
            g=search.get("gt", g),
            ok=ok,
        )


def _backtrack(t: Tensor, f: Tensor, slope: Tensor, ft: Tensor) -> Tensor:
    """Minimizer of the quadratic interpolant, safeguarded to ``[0.1 t, 0.5 t]``."""
    curvature = 2 * (ft - f - slope * t)
    quad = -slope * t * t / curvature
    quad = torch.where(torch.isfinite(quad) & (curvature > 0), quad, 0.1 * t)
    return torch.clamp(quad, min=0.1 * t, max=0.5 * t)


class StrongWolfe(RoundSearch):
    """Bracketing and zoom to the strong Wolfe conditions.

    Accepts ``t`` when ``f(x + t p) <= f + c1 t g.p`` and
    ``|g(x + t p).p| <= c2 |g.p|``. Close to a solution the change in ``f``
    drowns in rounding error before the gradient does; there sufficient
    decrease is judged by the derivative instead, as in the approximate Wolfe
    conditions of Hager & Zhang (SIAM J. Optim. 2005): ``f(x + t p) <= f +
    noise`` and ``g(x + t p).p <= (2 c1 - 1) g.p``, with ``noise = noise * |f|``
    (Hager-Zhang's default 1e-6; at least 100 eps of the dtype). The noise of
    ``f`` scales with the size of the terms that cancel in it, not with ``|f|``,
    hence the generous default; the derivative conditions guard what it admits.
    Within that noise of ``f`` the plain Armijo test is not used at all: a
    "decrease" there may be rounding at a point far past the line's minimizer.
    Every problem keeps a bracket ``[lo, hi]``
    where ``lo`` is the best point with sufficient decrease so far; ``hi`` is
    ``+inf`` while the step is still being expanded. Trials come from the
    minimizer of the cubic through both ends (bisection when it is not
    defined), kept away from the ends by ``0.1`` of the bracket width. A
    problem whose rounds run out returns ``lo`` (sufficient decrease only) if
    ``f`` fell there by more than its assumed noise. A bracket whose ends agree to the last bit of every
    coordinate of ``x`` ends the search at once and counts as a failure: at
    that precision no step meets the conditions, and what ``lo`` gained is
    rounding noise (near a badly scaled minimum this saves the whole budget of
    rounds, over and over).

    Args:
        c1: sufficient-decrease constant, ``0 < c1 < c2``.
        c2: curvature constant, ``c2 < 1`` (0.9 for quasi-Newton, 0.1 for CG).
        max_trials: rounds per search.
        expand: factor by which an accepted but too short trial is extended (for five
            rounds; then by ``expand^(rounds - 4)``, so that a direction along which
            ``f`` keeps falling, a linear or unbounded objective, is followed far).
        noise: relative error of ``f`` below which changes are not trusted.
    """

    def __init__(
        self,
        *,
        c1: float = 1e-4,
        c2: float = 0.9,
        max_trials: int = 25,
        expand: float = 4.0,
        noise: float = _NOISE,
    ):
        if not 0 < c1 < c2 < 1:
            raise ValueError(f"need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
        if max_trials < 1:
            raise ValueError(f"max_trials must be >= 1, got {max_trials}")
        if expand <= 1:
            raise ValueError(f"expand must be > 1, got {expand}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.c1, self.c2, self.max_trials, self.expand = c1, c2, max_trials, expand
        self.noise = noise

    def begin(self, x, f, g, p, t0, rows):
        # Every threshold that does not change during the search is computed once: each
        # round is a few dozen small tensor operations for the whole batch.
        slope = dot(g, p)
        eps = torch.finfo(x.dtype).eps
        noise = _noise_level(f, self.noise)
        inf = torch.full_like(f, torch.inf)
        no = torch.zeros_like(rows)
        return {
            "p": p,
            "t": t0,
            "pending": rows,
            "rounds": torch.zeros_like(rows, dtype=torch.long),
            "noise": noise,
            "rounding": 100 * eps * f.abs(),  # below it, differences of f carry no information
            "armijo_rate": self.c1 * slope,
            "f_noisy": f + noise,
            "approx_slope": (2 * self.c1 - 1) * slope,
            # A direction of zero slope (a second-order method's escape from a saddle,
            # where g = 0) has no curvature condition to meet: any decrease will do.
            "curvature_bound": torch.where(slope < 0, -self.c2 * slope, torch.inf),
            # The bracket [lo, lo + w] is one float point in every coordinate when
            # w |p_i| <= eps |x_i + lo p_i| for all i. At the largest |p_i| that needs
            # w <= eps (reach + lo) with reach = |x|_inf / |p|_inf: a cheap test that spares
            # most rounds the full one (n-sized work, costly for large n).
            "reach": max_abs(x) / max_abs(p),
            # lo: the best point with sufficient decrease so far; hi: the other end of the
            # bracket (t = +inf while the step is still being expanded).
            "lo_t": torch.zeros_like(t0),
            "lo_f": f,
            "lo_d": slope,
            "lo_g": g,
            "hi_t": inf,
            "hi_f": inf,
            "hi_d": inf,
            # Whether lo passed the plain Armijo test, whether a trial met both Wolfe
            # conditions, and whether the bracket closed to a single float point first.
            "lo_armijo": no,
            "met": no,
            "collapsed": no,
        }

    def advance(self, search, x, f, ft, gt):
        s = search
        p, t, pending = s["p"], s["t"], s["pending"]
        lo_t, lo_f, hi_t = s["lo_t"], s["lo_f"], s["hi_t"]
        eps = torch.finfo(x.dtype).eps
        dt = dot(gt, p)
        # A non-finite trial has ft = +inf (see Objective): it fails every test below.
        # Where f moved by less than its noise, the plain Armijo test reads that noise: a
        # trial far past the line's minimizer "decreased" f by 1e-13, became lo, and the
        # bracket closed around the wrong side. There the approximate test alone decides,
        # by the derivative (Hager & Zhang's rule in that regime).
        armijo = ft <= torch.addcmul(f, t, s["armijo_rate"])
        flat = (ft - f).abs() <= s["noise"]
        decrease = (armijo & ~flat) | ((ft <= s["f_noisy"]) & (dt <= s["approx_slope"]))
        good = pending & decrease & (ft <= lo_f + s["noise"])
        curvature = dt.abs() <= s["curvature_bound"]
        done = good & curvature
        # Too high: the trial closes the bracket from above. Good value but slope of the
        # wrong sign: the old lo becomes hi.
        new_hi = pending & ~good
        flip = good & ~curvature & (dt * (hi_t - lo_t) >= 0)
        hi_t = torch.where(new_hi, t, torch.where(flip, lo_t, hi_t))
        hi_f = torch.where(new_hi, ft, torch.where(flip, lo_f, s["hi_f"]))
        hi_d = torch.where(new_hi, dt, torch.where(flip, s["lo_d"], s["hi_d"]))
        lo_t = torch.where(good, t, lo_t)
        lo_f = torch.where(good, ft, lo_f)
        lo_d = torch.where(good, dt, s["lo_d"])
        # A bracket whose ends are the same point to the last bit of every coordinate
        # cannot be narrowed further: the Wolfe conditions are out of reach at this
        # precision, and what lo gained over f is rounding noise.
        width = (hi_t - lo_t).abs()  # +inf until bracketed
        # ``width <= eps lo`` (the step itself cannot resolve the bracket) implies this
        # cheaper bound too, so the full test runs only where the bound holds.
        narrow = pending & (width <= eps * (s["reach"] + lo_t))
        rounds = s["rounds"] + 1
        left = pending & ~done & (rounds < self.max_trials)
        collapsed = s["collapsed"]
        if bool(narrow.any()):
            one_point = width[:, None] * p.abs() <= eps * _along(x, lo_t, p).abs()
            closed = narrow & ((width <= eps * lo_t) | one_point.all(dim=-1))
            left &= ~closed
            collapsed = collapsed | (closed & ~done)
        if bool(left.any()):
            # Expansion by `expand` for five rounds, then by growing powers of it: a
            # direction along which f keeps falling at the same rate (a linear or
            # unbounded objective) is followed to its end in a few rounds, not 25.
            power = torch.clamp(rounds - 4, min=1).to(lo_t.dtype)
            expanded = torch.clamp(lo_t * self.expand**power, max=torch.finfo(lo_t.dtype).max)
            t_next = torch.where(
                hi_t < torch.inf,
                _cubic_trial(lo_t, lo_f, lo_d, hi_t, hi_f, hi_d, s["rounding"]),
                expanded,
            )
            t = torch.where(left, t_next, t)
        return {
            **s,
            "t": t,
            "pending": left,
            "rounds": rounds,
            "lo_t": lo_t,
            "lo_f": lo_f,
            "lo_d": lo_d,
            "lo_g": torch.where(good[:, None], gt, s["lo_g"]),
            "hi_t": hi_t,
            "hi_f": hi_f,
            "hi_d": hi_d,
            "lo_armijo": torch.where(good, armijo, s["lo_armijo"]),
            "met": s["met"] | done,
            "collapsed": collapsed,
        }

    def conclude(self, search, x, f, g):
        s = search
        lo_t, lo_f = s["lo_t"], s["lo_f"]
        # A search that ran out of rounds keeps lo only if f really went down there: in the
        # rounding-noise regime a tiny step "decreases" f without moving x at all.
        ok = (lo_t > 0) & (s["met"] | (s["lo_armijo"] & (lo_f < f - s["noise"]) & ~s["collapsed"]))
        x_new, g_new = _along(x, lo_t, s["p"]), s["lo_g"]
        if bool(ok.all()):  # the usual case for one problem: no n-sized selections
            return SearchResult(t=lo_t, x=x_new, f=lo_f, g=g_new, ok=ok)
        return SearchResult(
            t=torch.where(ok, lo_t, 0.0),
            x=torch.where(ok[:, None], x_new, x),
            f=torch.where(ok, lo_f, f),
            g=torch.where(ok[:, None], g_new, g),
            ok=ok,
        )


def _cubic_trial(
    a: Tensor, fa: Tensor, da: Tensor, b: Tensor, fb: Tensor, db: Tensor, noise: Tensor
) -> Tensor:
    """Minimizer of the cubic interpolating both ends, kept inside the middle 80%.

    Where the values differ by no more than their rounding ``noise`` the difference is
    taken from the derivatives (trapezoidal rule), which makes the cubic the
    secant step on the derivative (as Hager & Zhang's search does at the noise
    floor): a cubic fitted to rounding noise sends the trial anywhere. Where
    the cubic has no minimizer (or ``fb`` is infinite, which makes it NaN) the
    trial is the midpoint.
    """
    fab = fa - fb
    fab = torch.where(fab.abs() <= noise, 0.5 * (a - b) * (da + db), fab)
    d1 = da + db - 3 * fab / (a - b)
    disc = d1 * d1 - da * db
    d2 = torch.sign(b - a) * torch.sqrt(torch.clamp(disc, min=0))
    t = b - (b - a) * (db + d2 - d1) / (db - da + 2 * d2)
    t = torch.where((disc >= 0) & (t.abs() < torch.inf), t, 0.5 * (a + b))  # NaN fails too
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    margin = 0.1 * (high - low)
    return torch.clamp(t, low + margin, high - margin)


def _along(x: Tensor, t: Tensor, p: Tensor) -> Tensor:
    """``x + t p`` per problem; the one expression for a trial point and the point returned,
    so that they agree to the last bit."""
    return torch.addcmul(x, t[:, None], p)
