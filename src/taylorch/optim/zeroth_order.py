"""Zeroth-order optimizers in the MeZO way: two forward passes, no backward, no stored noise.

A step estimates the gradient along random directions ``u`` from loss differences::

    for q in 1..n_queries:
        x <- x + eps u_q;   f+ = closure()       (under torch.no_grad())
        x <- x - eps u_q;   f- = closure()       (x - eps u_q, from the exact x)
        x <- x  (restored bit for bit);  c_q = (f+ - f-) / (2 eps)
    g_hat = (1 / n_queries) sum_q c_q u_q    ->   the optimizer's update rule

``u`` is never stored: it is regenerated, chunk by chunk, from a seed derived from
``(seed, step, query, parameter, chunk)``, into work buffers of ``chunk_size``
elements that are reused for every chunk, so the extra memory is a few such buffers
and the correction logs below, not a copy of the parameters.

Exact restore. ``x + eps u`` is rounded to the parameter's dtype, so ``(x + eps u) - eps u``
is not ``x`` in general (in float32 and, far more often, in bfloat16/float16). Each
move is therefore computed in float32 (float64 for float64 parameters) from the exact
``x``, rounded once, and the few elements where rounding back would not give ``x``
bit for bit (typically where ``|eps u|`` is not small against ``|x|``: about 4% of
float32 elements for ``eps u ~ 0.1 |x|``) are logged while the parameters are
perturbed: an int16 index and the int8 difference of bit patterns (3 bytes), in two
logs reserved at 1/16 of the parameter count each. Restoring recomputes ``x`` from the
perturbed value and the regenerated ``u``, and patches those elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from taylorch.optim.base import (
    Closure,
    NonFinite,
    Optimizer,
    check_betas,
    check_int,
    check_positive,
    check_unit_interval,
)

__all__ = ["ZOSGD", "ZOAdaMU", "ZOAdam"]

_BITS = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
_MASK64 = (1 << 64) - 1


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 mixing), the same in every process."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (part & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


Chunk = tuple[int, Tensor, Tensor, int]  # parameter index, parameter, flat chunk view, start


class _FixLog:
    """The elements of a perturbed state that rounding back would not restore, compactly.

    Per chunk: local indices (int16, wrapping) and the difference of bit patterns
    ``bits(x) - bits(back)`` (int8; wrapping integer arithmetic, so exact), kept in two
    arenas that are reused from step to step, with work buffers from ``buffer``: no
    allocation per chunk, so the heap does not grow over a step. A difference beyond
    int8 (an element tiny against ``eps u``) keeps the exact value (rare).
    """

    def __init__(self, buffer: Callable[..., Tensor], reserve: int) -> None:
        self.buffer = buffer
        self.reserve = reserve  # first capacity: one allocation, not a doubling series
        self.index = torch.empty(0, dtype=torch.int16)
        self.delta = torch.empty(0, dtype=torch.int8)
        self.spans: dict[tuple[int, int], tuple[int, int]] = {}
        self.exact: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self.size = 0

    def clear(self) -> None:
        self.spans.clear()
        self.exact.clear()
        self.size = 0

    def record(self, key: tuple[int, int], x: Tensor, back: Tensor, diff: Tensor) -> None:
        dev = diff.device
        where = self.buffer("where", 0, torch.int64, dev, whole=True).resize_(0)
        torch.nonzero(diff, out=where)
        k = where.shape[0]
        if k == 0:
            return
        where = where.view(-1)
        d = torch.index_select(diff, 0, where, out=self.buffer("d", k, diff.dtype, dev))
        small = torch.ge(d, -128, out=self.buffer("small", k, torch.bool, dev))
        small.logical_and_(torch.le(d, 127, out=self.buffer("small2", k, torch.bool, dev)))
        if not bool(small.all()):
            big = where[~small]
            self.exact[key] = (big, x[big])
            where, d = where[small], d[small]
            k = where.numel()
        if self.size + k > self.index.numel():
            grow = max(2 * self.index.numel(), self.size + k, self.reserve)
            index = torch.empty(grow, dtype=torch.int16, device=dev)
            delta = torch.empty(grow, dtype=torch.int8, device=dev)
            index[: self.size] = self.index[: self.size]
            delta[: self.size] = self.delta[: self.size]
            self.index, self.delta = index, delta
        self.index[self.size : self.size + k].copy_(where)  # wraps to int16
        self.delta[self.size : self.size + k].copy_(d)
        self.spans[key] = (self.size, k)
        self.size += k

    def apply(self, key: tuple[int, int], x: Tensor) -> None:
        """Correct the rounded-back chunk ``x`` in place (bit for bit)."""
        span = self.spans.get(key)
        if span is not None:
            start, k = span
            bits = x.view(_BITS[x.dtype])
            where = self.buffer("where_apply", k, torch.int64, x.device)
            where.copy_(self.index[start : start + k]).bitwise_and_(0xFFFF)
            delta = self.buffer("delta_apply", k, bits.dtype, x.device)
            bits.index_add_(0, where, delta.copy_(self.delta[start : start + k]))
        exact = self.exact.get(key)
        if exact is not None:
            x[exact[0]] = exact[1]


class _ZerothOrder(Optimizer):
    """Shared machinery: seeded chunked directions, exact perturb/restore, the query loop.

    Subclasses define :meth:`_direction` (the chunk of ``u`` for a query) and
    :meth:`_update` (the new chunk of ``x`` from the estimate).
    """

    #: number of standard normal draws per element a direction consumes
    draws = 1

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        seed: int | None,
        chunk_size: int,
        nonfinite: NonFinite,
    ) -> None:
        check_positive("lr", defaults["lr"])
        check_positive("eps", defaults["eps"], allow_zero=False)
        check_int("n_queries", defaults["n_queries"])
        check_positive("weight_decay", defaults["weight_decay"])
        check_int("chunk_size", chunk_size)
        if chunk_size > 1 << 16:
            raise ValueError(f"chunk_size must be <= 65536 (int16 indices), got {chunk_size}")
        if seed is None:  # from torch's default generator: torch.manual_seed fixes it
            seed = int(torch.randint(0, 2**62, (1,)).item())
        check_int("seed", seed, minimum=0)
        self.chunk_size = chunk_size
        self._workspace: dict[tuple, Tensor] = {}
        super().__init__(params, {**defaults, "seed": seed, "step": 0}, nonfinite)
        self.last_projected_grads: list[float] = []
        # ~4% of float32 elements (~7% of bfloat16) need a fix for eps ~ 1e-3 |x|: reserve 1/16
        reserve = max(1 << 12, sum(p.numel() for g in self.param_groups for p in g["params"]) // 16)
        self._logs = (_FixLog(self._buffer, reserve), _FixLog(self._buffer, reserve))

    # ------------------------------------------------------------------ hooks
    def _direction(
        self, group: dict[str, Any], p: Tensor, start: int, noise: Tensor, out: Tensor
    ) -> Tensor:
        """Write the chunk of ``u`` (from ``noise``, shape ``(draws, n)``) into ``out``."""
        raise NotImplementedError

    def _update(
        self,
        group: dict[str, Any],
        p: Tensor,
        start: int,
        x: Tensor,
        queries: Iterator[tuple[float, Tensor]],
    ) -> None:
        """Update the chunk ``x`` in place from ``(c_q, noise_q)`` pairs.

        ``queries`` reuses one noise buffer: consume each pair before the next.
        """
        raise NotImplementedError

    # -------------------------------------------------------------- machinery
    def _buffer(
        self,
        name: str,
        n: int,
        dtype: torch.dtype,
        device: torch.device,
        rows: int = 0,
        whole: bool = False,
    ) -> Tensor:
        """A reusable work buffer: no allocation per chunk, so no heap growth over a step.

        ``whole=True`` returns the buffer itself (for ``out=`` ops that resize it).
        """
        key = (name, dtype, device, rows)
        buf = self._workspace.get(key)
        if buf is None:
            size = max(rows, 1) * self.chunk_size
            buf = self._workspace[key] = torch.empty(size, dtype=dtype, device=device)
        if whole:
            return buf
        return buf[: rows * n].view(rows, n) if rows else buf[:n]

    def _chunks(self) -> Iterator[tuple[dict[str, Any], int, Tensor, Tensor, int]]:
        """(group, parameter index over all groups, parameter, flat chunk view, start)."""
        index = -1
        for group in self.param_groups:
            for p in group["params"]:
                index += 1
                if not p.requires_grad:
                    continue
                if not p.is_contiguous():
                    raise ValueError(f"{type(self).__name__} needs contiguous parameters")
                flat = p.detach().view(-1)
                for start in range(0, flat.numel(), self.chunk_size):
                    yield group, index, p, flat[start : start + self.chunk_size], start

    def _noise(
        self, group: dict[str, Any], query: int, index: int, start: int, chunk: Tensor
    ) -> Tensor:
        gen = torch.Generator(device=chunk.device)
        gen.manual_seed(derive_seed(group["seed"], group["step"], query, index, start))
        out = self._buffer("noise", chunk.numel(), torch.float32, chunk.device, rows=self.draws)
        return torch.randn(out.shape, generator=gen, out=out)

    def _move(
        self, scale_from: float, scale_to: float, query: int, read: _FixLog, write: _FixLog
    ) -> None:
        """Move every chunk from ``x + scale_from eps u_q`` to ``x + scale_to eps u_q``, exactly.

        ``read`` holds the corrections of the state moved from; the corrections of the new
        state are recorded in ``write``.
        """
        write.clear()
        for group, index, p, chunk, start in self._chunks():
            n, dev, dtype = chunk.numel(), chunk.device, chunk.dtype
            cdt = _compute_dtype(dtype)
            noise = self._noise(group, query, index, start, chunk)
            step = self._direction(group, p, start, noise, self._buffer("step", n, cdt, dev))
            step.mul_(group["eps"])
            work = self._buffer("work", n, cdt, dev)
            x = self._buffer("x", n, dtype, dev)  # the exact parameters
            key = (index, start)
            if scale_from == 0.0:
                x.copy_(chunk)
            else:
                x.copy_(work.copy_(chunk).sub_(step, alpha=scale_from))  # rounds once
                read.apply(key, x)
            if scale_to == 0.0:
                chunk.copy_(x)
                continue
            moved = self._buffer("moved", n, dtype, dev)
            back = self._buffer("back", n, dtype, dev)
            moved.copy_(work.copy_(x).add_(step, alpha=scale_to))
            back.copy_(work.copy_(moved).sub_(step, alpha=scale_to))
            diff = self._buffer("diff", n, _BITS[dtype], dev)
            write.record(
                key, x, back, torch.sub(x.view(diff.dtype), back.view(diff.dtype), out=diff)
            )
            chunk.copy_(moved)

    def _query_losses(self, closures: Sequence[Closure], query: int) -> tuple[float, float]:
        plus, minus = self._logs
        self._move(0.0, 1.0, query, minus, plus)
        f_plus = sum(float(self._evaluate(c, grad=False)) for c in closures) / len(closures)
        self._move(1.0, -1.0, query, plus, minus)
        f_minus = sum(float(self._evaluate(c, grad=False)) for c in closures) / len(closures)
        self._move(-1.0, 0.0, query, minus, plus)
        return f_plus, f_minus

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Closure | Sequence[Closure] | None = None
    ) -> Tensor:
        """One step. ``closure`` may be a list of closures (micro-batches): their losses
        are averaged at each perturbed point (gradient accumulation). Returns the mean
        of the losses at ``x + eps u`` and ``x - eps u`` of the first query."""
        closures = list(closure) if isinstance(closure, (list, tuple)) else [closure]
        if not closures or any(c is None or not callable(c) for c in closures):
            self._require_closure(None)
        eps, n = self.param_groups[0]["eps"], self.param_groups[0]["n_queries"]
        if any(g["eps"] != eps or g["n_queries"] != n for g in self.param_groups):
            raise ValueError("eps and n_queries must be the same in every param group")
        coeffs, first = [], None
        for q in range(n):
            f_plus, f_minus = self._query_losses(closures, q)
            if first is None:
                first = (f_plus + f_minus) / 2
            if not (math.isfinite(f_plus) and math.isfinite(f_minus)):
                self._reject("loss")
                return torch.tensor(float("nan"))
            coeffs.append((f_plus - f_minus) / (2 * eps))
        self.last_projected_grads = coeffs
        for group, index, p, chunk, start in self._chunks():
            x = self._buffer("work", chunk.numel(), _compute_dtype(chunk.dtype), chunk.device)
            x.copy_(chunk)
            queries = (
                (c, self._noise(group, q, index, start, chunk)) for q, c in enumerate(coeffs)
            )
            self._update(group, p, start, x, queries)
            chunk.copy_(x)
        for group in self.param_groups:
            group["step"] += 1
        return torch.tensor(first)

    def _state_chunk(self, p: Tensor, name: str, start: int, size: int) -> Tensor:
        state = self.state[p]
        if name not in state:
            state[name] = torch.zeros_like(p, dtype=_compute_dtype(p.dtype))
        return state[name].view(-1)[start : start + size]

    def _estimate(self, x: Tensor, p: Tensor, start: int, group, queries) -> Tensor:
        """``g_hat = (1/n) sum_q c_q u_q`` for this chunk, in a work buffer."""
        g = self._buffer("estimate", x.numel(), x.dtype, x.device).zero_()
        u = self._buffer("u", x.numel(), x.dtype, x.device)
        count = 0
        for c, noise in queries:
            g.add_(self._direction(group, p, start, noise, u), alpha=c)
            count += 1
        return g.div_(count)


def _zo_defaults(lr: float, eps: float, n_queries: int, weight_decay: float) -> dict[str, Any]:
    return dict(lr=lr, eps=eps, n_queries=n_queries, weight_decay=weight_decay)


class ZOSGD(_ZerothOrder):
    r"""Zeroth-order SGD (MeZO): ``x <- x - lr (g_hat + wd x)`` with Gaussian directions.

    ``g_hat = (1/n) sum_q (f(x + eps z_q) - f(x - eps z_q)) / (2 eps) z_q``,
    ``z_q ~ N(0, I)`` regenerated from the seed (see the module docstring).

    Cost per step: ``2 n_queries`` forward passes per closure, no backward; about
    ``4 n_queries + 1`` elementwise passes over the parameters. Memory: that of
    inference plus ~12 chunk buffers and two correction logs (~0.4 bytes per
    parameter together); no state per parameter.

    Args:
        params: parameters or groups (group keys ``lr``, ``weight_decay``).
        lr: learning rate. eps: perturbation scale. n_queries: directions averaged per step.
        seed: seed of the directions (None: drawn from torch's default generator).
        chunk_size: elements per generated chunk of noise.
        nonfinite: ``"raise"`` or ``"skip"`` when a loss is NaN or inf (the parameters
            are restored exactly either way).

    The closure must return the loss; it is called under ``torch.no_grad()``.

    References:
        S. Malladi, T. Gao, E. Nichani, A. Damian, J. D. Lee, D. Chen, S. Arora,
        "Fine-Tuning Language Models with Just Forward Passes", NeurIPS 2023.
        J. C. Spall, "Multivariate stochastic approximation using a simultaneous
        perturbation gradient approximation", IEEE TAC 1992.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        eps: float = 1e-3,
        n_queries: int = 1,
        weight_decay: float = 0.0,
        seed: int | None = None,
        chunk_size: int = 1 << 16,
        nonfinite: NonFinite = "raise",
    ) -> None:
        defaults = _zo_defaults(lr, eps, n_queries, weight_decay)
        super().__init__(params, defaults, seed, chunk_size, nonfinite)

    def _direction(self, group, p, start, noise, out):  # type: ignore[override]
        return out.copy_(noise[0])

    def _update(self, group, p, start, x, queries):  # type: ignore[override]
        g = self._estimate(x, p, start, group, queries)
        if group["weight_decay"]:
            g.add_(x, alpha=group["weight_decay"])
        x.sub_(g, alpha=group["lr"])


class ZOAdam(_ZerothOrder):
    r"""Zeroth-order Adam: Adam's moments of the MeZO estimate ``g_hat``.

    ::

        m <- b1 m + (1 - b1) g_hat;   v <- b2 v + (1 - b2) g_hat^2
        x <- x - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + adam_eps) - lr wd x

    Cost per step: as :class:`ZOSGD`. Memory: two float32 buffers per parameter
    (``exp_avg``, ``exp_avg_sq``), so no longer that of inference.

    References:
        Malladi et al. 2023 (MeZO, its Adam variant); Kingma & Ba, "Adam", ICLR 2015.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        eps: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        n_queries: int = 1,
        weight_decay: float = 0.0,
        seed: int | None = None,
        chunk_size: int = 1 << 16,
        nonfinite: NonFinite = "raise",
    ) -> None:
        check_betas(betas)
        check_positive("adam_eps", adam_eps)
        defaults = {
            **_zo_defaults(lr, eps, n_queries, weight_decay),
            "betas": tuple(betas),
            "adam_eps": adam_eps,
        }
        super().__init__(params, defaults, seed, chunk_size, nonfinite)

    def _direction(self, group, p, start, noise, out):  # type: ignore[override]
        return out.copy_(noise[0])

    def _update(self, group, p, start, x, queries):  # type: ignore[override]
        b1, b2 = group["betas"]
        t = group["step"] + 1
        g = self._estimate(x, p, start, group, queries)
        m = self._state_chunk(p, "exp_avg", start, x.numel())
        v = self._state_chunk(p, "exp_avg_sq", start, x.numel())
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = torch.div(v, 1 - b2**t, out=g).sqrt_().add_(group["adam_eps"])
        if group["weight_decay"]:
            x.mul_(1 - group["lr"] * group["weight_decay"])
        x.addcdiv_(m, denom, value=-group["lr"] / (1 - b1**t))


class ZOAdaMU(_ZerothOrder):
    r"""ZO-AdaMU: the perturbation itself carries momentum and uncertainty.

    Each query draws ``xi1, xi2 ~ N(0, I)`` and perturbs along::

        z_dot  = sqrt(alpha) xi1                    (exploration)
        z_ddot = m + sqrt(1 - alpha) xi2            (around the momentum m)
        u      = beta1 z_dot + (1 - beta1) z_ddot

    then, with ``c_q`` the loss differences along ``u_q``::

        g_hat = (1/n) sum_q c_q u_q
        v     = (1/n) sum_q beta2 z_dot_q^2 + (1 - beta2) z_ddot_q^2
        x    <- x - lr g_hat / (sqrt(v) + adam_eps) - lr wd x
        m    <- (1/n) sum_q u_q

    ``alpha``, ``beta1``, ``beta2`` are group hyperparameters; the paper anneals them
    over three phases of training, which a user can do by changing them in
    ``param_groups`` (as a scheduler does with ``lr``). The paper writes the denominator
    as ``sqrt(v^2 + sigma)``; this class uses Adam's ``sqrt(v) + adam_eps``, which keeps
    the step scale-free in ``u``.

    Cost per step: as :class:`ZOSGD` (two normal draws per element and query).
    Memory: one float32 buffer per parameter (``m``).

    References:
        S. Jiang, Q. Chen, Y. Pan, Y. Xiang, Y. Lin, X. Wu, C. Liu, X. Song, "ZO-AdaMU
        Optimizer: Adapting Perturbation by the Momentum and Uncertainty in Zeroth-order
        Optimization", AAAI 2024; arXiv:2312.15184.
    """

    draws = 2

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        eps: float = 1e-3,
        alpha: float = 0.5,
        beta1: float = 0.9,
        beta2: float = 0.5,
        adam_eps: float = 1e-8,
        n_queries: int = 1,
        weight_decay: float = 0.0,
        seed: int | None = None,
        chunk_size: int = 1 << 16,
        nonfinite: NonFinite = "raise",
    ) -> None:
        check_unit_interval("alpha", alpha, closed_right=True)
        check_unit_interval("beta1", beta1, closed_right=True)
        check_unit_interval("beta2", beta2, closed_right=True)
        check_positive("adam_eps", adam_eps)
        defaults = {
            **_zo_defaults(lr, eps, n_queries, weight_decay),
            "alpha": alpha,
            "beta1": beta1,
            "beta2": beta2,
            "adam_eps": adam_eps,
        }
        super().__init__(params, defaults, seed, chunk_size, nonfinite)

    def _parts(self, group, p, start, noise, dtype, tag="") -> tuple[Tensor, Tensor]:
        """``z_dot = sqrt(alpha) xi1`` and ``z_ddot = m + sqrt(1 - alpha) xi2`` in work buffers."""
        n, dev = noise.shape[1], noise.device
        m = self._state_chunk(p, "momentum", start, n)
        z_dot = self._buffer("z_dot" + tag, n, dtype, dev).copy_(noise[0])
        z_dot.mul_(math.sqrt(group["alpha"]))
        z_ddot = self._buffer("z_ddot" + tag, n, dtype, dev).copy_(noise[1])
        z_ddot.mul_(math.sqrt(1 - group["alpha"])).add_(m)
        return z_dot, z_ddot

    def _direction(self, group, p, start, noise, out):  # type: ignore[override]
        z_dot, z_ddot = self._parts(group, p, start, noise, out.dtype)
        return torch.mul(z_dot, group["beta1"], out=out).add_(z_ddot, alpha=1 - group["beta1"])

    def _update(self, group, p, start, x, queries):  # type: ignore[override]
        b1, b2 = group["beta1"], group["beta2"]
        n, dev = x.numel(), x.device
        g = self._buffer("estimate", n, x.dtype, dev).zero_()
        second = self._buffer("second", n, x.dtype, dev).zero_()
        mean_u = self._buffer("mean_u", n, x.dtype, dev).zero_()
        u = self._buffer("u", n, x.dtype, dev)
        count = 0
        for c, noise in queries:
            z_dot, z_ddot = self._parts(group, p, start, noise, x.dtype)
            second.addcmul_(z_dot, z_dot, value=b2).addcmul_(z_ddot, z_ddot, value=1 - b2)
            torch.mul(z_dot, b1, out=u).add_(z_ddot, alpha=1 - b1)
            g.add_(u, alpha=c)
            mean_u.add_(u)
            count += 1
        g.div_(count)
        denom = second.div_(count).sqrt_().add_(group["adam_eps"])
        if group["weight_decay"]:
            x.mul_(1 - group["lr"] * group["weight_decay"])
        x.addcdiv_(g, denom, value=-group["lr"])
        self._state_chunk(p, "momentum", start, n).copy_(mean_u.div_(count))
