"""Zeroth-order optimizers in the MeZO way: two forward passes, no backward, no stored noise.

A step estimates the gradient along random directions ``u`` from loss differences::

    for q in 1..n_queries:                     (closures run under torch.no_grad())
        x <- x + eps u_q;   f+ = closure();   x <- x   (restored bit for bit)
        x <- x - eps u_q;   f- = closure();   x <- x   (restored bit for bit)
        c_q = (f+ - f-) / (2 eps)
    g_hat = (1 / n_queries) sum_q c_q u_q    ->   the optimizer's update rule

Every forward pass of a step draws the same numbers from torch's global generators
(dropout masks: see :class:`~taylorch.optim.base.SameRandomness`), so ``f+ - f-``
compares one network at two points. What a forward pass updates in place is updated
at every pass, ``2 n_queries`` times per step: BatchNorm's running statistics (call
``.eval()`` on such modules, or accept statistics of perturbed weights). Losses of
several closures (micro-batches) are averaged with equal weights. Parameters that
do not affect the loss still move, by the random part of the estimate: freeze them
(``requires_grad=False``).

``u`` is never stored: it is regenerated, chunk by chunk, from a seed derived from
``(seed, step, query, parameter, chunk)``, into work buffers of ``chunk_size``
elements. The buffers are allocated once, at construction, before any forward pass:
they sit below the forward's temporaries on the heap instead of between them, so they
do not fragment it. The extra memory of a step is those buffers and the correction
log below, not a copy of the parameters.

Exact restore. ``x + eps u`` is rounded to the parameter's dtype, so ``(x + eps u) - eps u``
is not ``x`` in general (in float32 and, far more often, in bfloat16/float16). Each
perturbation is computed in float32 (float64 for float64 parameters) from the exact
``x`` and rounded once, and the few elements where rounding back would not give ``x``
bit for bit (where ``|eps u|`` is not small against ``|x|``: about 11% of the float32
weights of a 4096-wide MLP at ``eps = 1e-3``) are logged while the parameters are
perturbed, in about a byte each (see :class:`_FixLog`). Restoring recomputes ``x``
from the perturbed value and the regenerated ``u`` and patches those elements. Every
perturbation starts from the exact ``x`` and returns to it before the next (four moves
per query, where going from ``x + eps u`` to ``x - eps u`` directly would need the
corrections of both states at once), so a single log serves them all; it is reserved
at construction for a quarter of a byte per parameter (~0.13 is used at ``eps = 1e-3``
once training has filled the weights' mantissas; it grows if ever needed). On a CPU
only the part written becomes resident memory; on a GPU the whole reserve is allocated.
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
    SameRandomness,
    check_betas,
    check_int,
    check_positive,
    check_unit_interval,
)

__all__ = ["ZOSGD", "ZOAdaMU", "ZOAdam", "adamu_schedule"]

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


Buffer = Callable[..., Tensor]


class _FixLog:
    """The elements of a perturbed state that rounding back would not restore, a byte each.

    ``diff = bits(x) - bits(back)`` (wrapping integer arithmetic, so exact) is nonzero at
    a few elements of a chunk. Each is one byte of a stream: its distance from the
    previous logged element (1..16, high nibble) and ``diff + 8`` (low nibble); a longer
    distance first emits filler bytes (distance 16, ``diff`` 0: a no-op). A ``diff``
    outside -7..7 (an element small against ``eps u``, ~1.5% of those logged) is a no-op
    in the stream and its bit pattern goes, with its int16 index, to a second, wide log.
    Both logs are arenas reserved up front and reused for every perturbation, and the
    work buffers come from ``buffer``: nothing is allocated per chunk except where a
    chunk has wide entries. An arena doubles if it ever fills.
    """

    def __init__(self, buffer: Buffer, capacity: int, device: torch.device) -> None:
        self.buffer = buffer
        self.stream = torch.empty(capacity, dtype=torch.uint8, device=device)
        self.wide_index = torch.empty(capacity // 32, dtype=torch.int16, device=device)
        self.wide_bits = torch.empty(capacity // 32, dtype=torch.int64, device=device)
        self.spans: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        self.size = self.wide_size = 0

    def clear(self) -> None:
        self.spans.clear()
        self.size = self.wide_size = 0

    @staticmethod
    def _room(arena: Tensor, used: int, need: int) -> Tensor:
        if need <= arena.numel():
            return arena
        grown = torch.empty(max(2 * arena.numel(), need), dtype=arena.dtype, device=arena.device)
        grown[:used] = arena[:used]
        return grown

    def record(self, key: tuple[int, int], x: Tensor, diff: Tensor) -> None:
        """Log the nonzero entries of ``diff = bits(x) - bits(back)`` for chunk ``key``."""
        dev, buf = diff.device, self.buffer
        where = buf("where", 0, torch.int64, dev, whole=True).resize_(0)
        torch.nonzero(diff, out=where)
        k = where.shape[0]
        if k == 0:
            return
        where = where.view(-1)
        d = torch.index_select(diff, 0, where, out=buf("d", k, diff.dtype, dev))
        wide = torch.gt(d, 7, out=buf("wide", k, torch.bool, dev))  # no abs: it overflows
        wide.logical_or_(torch.lt(d, -7, out=buf("wide2", k, torch.bool, dev)))
        w0, w = self.wide_size, int(wide.sum())
        if w:
            picked = where[wide]
            self.wide_index = self._room(self.wide_index, w0, w0 + w)
            self.wide_bits = self._room(self.wide_bits, w0, w0 + w)
            self.wide_index[w0 : w0 + w] = picked  # wraps to int16
            self.wide_bits[w0 : w0 + w] = x.view(diff.dtype)[picked]
            d.masked_fill_(wide, 0)
            self.wide_size += w
        gap = buf("gap", k, torch.int64, dev)  # distance from the previous logged element
        gap[:1] = where[:1] + 1
        torch.sub(where[1:], where[:-1], out=gap[1:])
        fill = torch.sub(gap, 1, out=buf("fill", k, torch.int64, dev)).div_(
            16, rounding_mode="floor"
        )
        # stream position of each entry: the entries and fillers before it
        at = torch.cumsum(fill.add_(1), 0, out=where).sub_(1)  # where is spent
        m = int(at[-1]) + 1
        fill.sub_(1)
        code = gap.sub_(fill.mul_(16)).sub_(1).mul_(16).add_(d).add_(8)  # (gap-1) << 4 | d+8
        start = self.size
        self.stream = self._room(self.stream, start, start + m)
        out = self.stream[start : start + m].fill_(0xF8)  # fillers: gap 16, diff 0
        out.index_copy_(0, at, buf("code", k, torch.uint8, dev).copy_(code))
        self.spans[key] = (start, m, w0, w)
        self.size += m

    def apply(self, key: tuple[int, int], x: Tensor) -> None:
        """Correct the rounded-back chunk ``x`` in place (bit for bit)."""
        span = self.spans.get(key)
        if span is None:
            return
        start, m, w0, w = span
        bits, dev, buf = x.view(_BITS[x.dtype]), x.device, self.buffer
        codes = self.stream[start : start + m]
        where = buf("where", 0, torch.int64, dev, whole=True).resize_(m).copy_(codes)
        where.div_(16, rounding_mode="floor").add_(1).cumsum_(0).sub_(1)
        delta = buf("d", m, bits.dtype, dev).copy_(codes).bitwise_and_(15).sub_(8)
        bits.index_add_(0, where, delta)
        if w:
            where = where[:w].copy_(self.wide_index[w0 : w0 + w]).bitwise_and_(0xFFFF)
            raw = buf("d", w, bits.dtype, dev).copy_(self.wide_bits[w0 : w0 + w])
            bits.index_copy_(0, where, raw)


class _ZerothOrder(Optimizer):
    """Shared machinery: seeded chunked directions, exact perturb/restore, the query loop.

    Subclasses define :meth:`_direction` (the chunk of ``u`` for a query) and
    :meth:`_update` (the new chunk of ``x`` from the estimate), and list the extra
    compute-dtype work buffers their update uses in ``update_buffers``.
    """

    supports_complex = False
    #: number of standard normal draws per element a direction consumes
    draws = 1
    #: compute-dtype work buffers the update uses, allocated with the others up front
    update_buffers: tuple[str, ...] = ("estimate", "u")

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
        self._generators: dict[torch.device, torch.Generator] = {}
        self._logs: dict[torch.device, _FixLog] = {}
        self._reserved = False
        super().__init__(params, {**defaults, "seed": seed, "step": 0}, nonfinite)
        self.last_projected_grads: list[float] = []
        for p in self._trainable():  # now that the parameter count of each device is known
            self._reserve(p)
        self._reserved = True

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
    def _trainable(self) -> Iterator[Tensor]:
        return (p for g in self.param_groups for p in g["params"] if p.requires_grad)

    def _reserve(self, p: Tensor) -> None:
        """Allocate every work buffer and the correction log for ``p``'s device and dtype."""
        dev, dtype = p.device, p.dtype
        cdt, bits = _compute_dtype(dtype), _BITS[dtype]
        for name in ("step", "work", *self.update_buffers):
            self._buffer(name, 0, cdt, dev)
        self._buffer("noise", 0, torch.float32, dev, rows=self.draws)
        for name, dt in [
            *[("moved", dtype), ("back", dtype), ("diff", bits), ("d", bits)],  # perturbing
            *[("where", torch.int64), ("gap", torch.int64), ("fill", torch.int64)],  # the log
            *[("wide", torch.bool), ("wide2", torch.bool), ("code", torch.uint8)],
        ]:
            self._buffer(name, 0, dt, dev)
        self._log(dev)

    def _log(self, device: torch.device) -> _FixLog:
        log = self._logs.get(device)
        if log is None:
            count = sum(p.numel() for p in self._trainable() if p.device == device)
            log = self._logs[device] = _FixLog(self._buffer, max(1 << 12, count // 4), device)
        return log

    def _buffer(
        self,
        name: str,
        n: int,
        dtype: torch.dtype,
        device: torch.device,
        rows: int = 0,
        whole: bool = False,
    ) -> Tensor:
        """A reusable work buffer of ``chunk_size`` elements (times ``rows``).

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
                flat = p.detach().view(-1)
                for start in range(0, flat.numel(), self.chunk_size):
                    yield group, index, p, flat[start : start + self.chunk_size], start

    def _noise(
        self, group: dict[str, Any], query: int, index: int, start: int, chunk: Tensor
    ) -> Tensor:
        gen = self._generators.get(chunk.device)
        if gen is None:
            gen = self._generators[chunk.device] = torch.Generator(device=chunk.device)
        gen.manual_seed(derive_seed(group["seed"], group["step"], query, index, start))
        out = self._buffer("noise", chunk.numel(), torch.float32, chunk.device, rows=self.draws)
        return torch.randn(out.shape, generator=gen, out=out)

    def _displacement(
        self, group: dict[str, Any], index: int, p: Tensor, chunk: Tensor, start: int, query: int
    ) -> Tensor:
        """``eps u_q`` for this chunk, in the compute dtype (a work buffer)."""
        n, dev = chunk.numel(), chunk.device
        noise = self._noise(group, query, index, start, chunk)
        out = self._buffer("step", n, _compute_dtype(chunk.dtype), dev)
        return self._direction(group, p, start, noise, out).mul_(group["eps"])

    def _perturb(self, sign: float, query: int) -> None:
        """``x <- x + sign eps u_q`` from the exact ``x``; log what rounding back would lose."""
        for log in self._logs.values():
            log.clear()
        for group, index, p, chunk, start in self._chunks():
            n, dev, dtype = chunk.numel(), chunk.device, chunk.dtype
            step = self._displacement(group, index, p, chunk, start, query)
            work = self._buffer("work", n, step.dtype, dev)
            moved = self._buffer("moved", n, dtype, dev)
            back = self._buffer("back", n, dtype, dev)
            moved.copy_(work.copy_(chunk).add_(step, alpha=sign))  # rounds once
            back.copy_(work.copy_(moved).sub_(step, alpha=sign))  # what _restore computes
            diff = self._buffer("diff", n, _BITS[dtype], dev)
            torch.sub(chunk.view(diff.dtype), back.view(diff.dtype), out=diff)
            self._log(dev).record((index, start), chunk, diff)
            chunk.copy_(moved)

    def _restore(self, sign: float, query: int) -> None:
        """Undo :meth:`_perturb` bit for bit."""
        for group, index, p, chunk, start in self._chunks():
            step = self._displacement(group, index, p, chunk, start, query)
            work = self._buffer("work", chunk.numel(), step.dtype, chunk.device)
            chunk.copy_(work.copy_(chunk).sub_(step, alpha=sign))
            self._log(chunk.device).apply((index, start), chunk)

    def _loss_at(
        self, closures: Sequence[Closure], sign: float, query: int, rng: SameRandomness
    ) -> float:
        """The mean closure loss at ``x + sign eps u_q``; the parameters end exact."""
        self._perturb(sign, query)
        try:
            rng.before_call()
            return sum(float(self._evaluate(c, grad=False)) for c in closures) / len(closures)
        finally:
            self._restore(sign, query)

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
        for p in self._trainable():  # before anything moves (a layout may change after __init__)
            self.check_param(p)
        coeffs, first = [], None
        with SameRandomness(self._trainable()) as rng:
            for q in range(n):
                f_plus = self._loss_at(closures, 1.0, q, rng)
                f_minus = self._loss_at(closures, -1.0, q, rng)
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

    def check_param(self, p: Tensor) -> None:
        super().check_param(p)
        if p.requires_grad and not p.is_contiguous():
            raise ValueError(
                f"{type(self).__name__} needs contiguous parameters (got one of shape "
                f"{tuple(p.shape)} and strides {p.stride()}, e.g. from channels_last): it "
                "perturbs each parameter through a flat view (convert the model back with "
                "model.to(memory_format=torch.contiguous_format))"
            )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if getattr(self, "_reserved", False):  # a group added after construction
            for p in self.param_groups[-1]["params"]:
                if p.requires_grad:
                    self._reserve(p)

    def state_dtype(self, p: Tensor) -> torch.dtype:
        return _compute_dtype(p.dtype)

    def _state_chunk(self, p: Tensor, name: str, start: int, size: int) -> Tensor:
        state = self.state[p]
        if name not in state:
            state[name] = torch.zeros_like(p, dtype=self.state_dtype(p))
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

    Cost per step: ``2 n_queries`` forward passes per closure, no backward;
    ``4 n_queries + 1`` regenerations of ``z`` (perturb and restore, twice per query,
    and the update) and a few elementwise passes over the parameters for each. Memory:
    that of inference plus 15 chunk buffers (~2 MiB at the default ``chunk_size``, for
    float32 parameters) and one correction log (~0.13 byte per float32 parameter at
    ``eps = 1e-3``); no state per parameter.

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
        chunk_size: int = 1 << 15,
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
        chunk_size: int = 1 << 15,
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


def adamu_schedule(
    step: int, total_steps: int, warmup_steps: int, anneal_end: float, varphi: float
) -> float:
    """ZO-AdaMU's three-phase annealed weight at ``step`` (0-based).

    With ``T = total_steps``, ``T1 = warmup_steps``, ``T2 = int(anneal_end T)``::

        w(t) = 1                                        t < T1
             = (1 + cos(pi (t - T1) / L(t))) / 2        T1 <= t < T2
             = (1 + cos(pi (T2 - T1) / L(T2))) / 2      t >= T2
        L(t) = T - varphi (t - T1) (T - T2) / (T2 - T1)

    a cosine decay whose period ``L`` shrinks by ``varphi (T - T2) / (T2 - T1)`` a step
    (a larger ``varphi`` anneals faster), held at its last value in the third phase.
    This is the closed form of the authors' released trainer, which shrinks ``L`` in
    place once per call.
    """
    if step < warmup_steps:
        return 1.0
    end = int(anneal_end * total_steps)
    t = min(step, end)
    limit = total_steps - varphi * (t - warmup_steps) * (total_steps - end) / (end - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * (t - warmup_steps) / limit))


class ZOAdaMU(_ZerothOrder):
    r"""ZO-AdaMU: the perturbation itself carries momentum and uncertainty.

    At step ``t`` the weights ``alpha, beta1, beta2`` come from :func:`adamu_schedule`
    (one ``varphi`` each: 1.0, 0.1, 1.5 by default): all three are 1 for the first
    ``warmup_steps`` steps (plain MeZO perturbations), then anneal towards the
    momentum over a cosine until ``anneal_end * total_steps``, then stay. Each query
    draws ``xi1, xi2 ~ N(0, I)`` and perturbs along::

        z_dot  = sqrt(alpha) xi1                    (zero-centred, variance alpha)
        z_ddot = m + sqrt(1 - alpha) xi2            (centred on the momentum m)
        u      = beta1 z_dot + (1 - beta1) z_ddot

    then, with ``c_q`` the loss difference quotient along ``u_q``::

        g_hat = (1/n) sum_q c_q u_q
        v     = (1/n) sum_q beta2 z_dot_q^2 + (1 - beta2) z_ddot_q^2
        x    <- x - lr (g_hat / sqrt(v + sigma) + wd x)
        m    <- (1/n) sum_q sign(c_q) u_q

    For ``n_queries = 1`` this is the paper's rule as its authors' released trainer
    computes the update (``m`` is the last perturbation signed by its projected
    gradient, so successive centres point along the estimated gradient instead of
    flipping with the sign of the draw); several queries average it. Where sources
    disagree, chosen here:

    - denominator: the paper's equation, as reproduced by secondary sources (its body
      could not be consulted for this implementation), reads ``sqrt(v^2 + sigma)``;
      the authors' code computes ``sqrt(v + sigma)``, used here: ``v`` is already a
      second moment of ``u``, so ``c u / sqrt(v)`` is scale-free in ``u``, where
      ``v^2`` would make the step grow like ``1 / |u|``;
    - annealing: the code shrinks one period shared by the three weights, once per
      call, i.e. three times per parameter tensor per step, so its schedule depends
      on how many tensors the model has; here each weight has its own period, shrunk
      once per step (:func:`adamu_schedule`);
    - perturbation: the released code perturbs with fixed 0.9/0.1 weights (its
      ``zo_perturb_parameters`` calls the schedule without ``varphi`` and cannot run
      as published); here the same ``u`` perturbs and updates, as in the paper;
    - ``n_queries > 1``: not in the paper; averaged as above.

    Defaults are the authors': ``total_steps = 20000`` (their runs), ``warmup_steps =
    1024``, ``anneal_end = 0.8``, ``varphi = (1.0, 0.1, 1.5)``, ``sigma = 1e-8``, ``lr =
    1e-4`` (their script's default; its ``eps`` of 1e-2 is for LoRA, and ``eps`` here
    defaults to 1e-3 like the other classes); set ``total_steps`` to the length of
    your run.

    Cost per step: as :class:`ZOSGD`, with two normal draws per element and query.
    Memory: one float32 buffer per parameter (``momentum``).

    References:
        S. Jiang, Q. Chen, Y. Pan, Y. Xiang, Y. Lin, X. Wu, C. Liu, X. Song, "ZO-AdaMU
        Optimizer: Adapting Perturbation by the Momentum and Uncertainty in Zeroth-order
        Optimization", AAAI 2024; arXiv:2312.15184 (and the authors' code,
        github.com/MathIsAll/ZO-AdaMU, ``trainer.py``).
    """

    draws = 2
    update_buffers = ("estimate", "u", "z_dot", "z_ddot", "second", "mean_u")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        eps: float = 1e-3,
        total_steps: int = 20000,
        warmup_steps: int = 1024,
        anneal_end: float = 0.8,
        varphi: tuple[float, float, float] = (1.0, 0.1, 1.5),
        sigma: float = 1e-8,
        n_queries: int = 1,
        weight_decay: float = 0.0,
        seed: int | None = None,
        chunk_size: int = 1 << 15,
        nonfinite: NonFinite = "raise",
    ) -> None:
        check_int("total_steps", total_steps)
        check_int("warmup_steps", warmup_steps, minimum=0)
        check_unit_interval("anneal_end", anneal_end, closed_right=True)
        end = int(anneal_end * total_steps)
        if end <= warmup_steps:
            raise ValueError(
                f"warmup_steps must be < int(anneal_end * total_steps) = {end}, got {warmup_steps}"
            )
        if not isinstance(varphi, (tuple, list)) or len(varphi) != 3:
            raise ValueError(f"varphi must be three numbers (alpha, beta1, beta2), got {varphi!r}")
        for phi in varphi:  # the shrinking period L must stay positive
            check_positive("varphi", phi)
            if total_steps - phi * (total_steps - end) <= 0:
                raise ValueError(
                    f"varphi must be < total_steps / (total_steps - int(anneal_end * "
                    f"total_steps)) = {total_steps / (total_steps - end):g}, got {phi!r}"
                )
        check_positive("sigma", sigma, allow_zero=False)
        defaults = {
            **_zo_defaults(lr, eps, n_queries, weight_decay),
            "total_steps": total_steps,
            "warmup_steps": warmup_steps,
            "anneal_end": anneal_end,
            "varphi": tuple(varphi),
            "sigma": sigma,
        }
        super().__init__(params, defaults, seed, chunk_size, nonfinite)

    @staticmethod
    def weights(group: dict[str, Any]) -> tuple[float, float, float]:
        """``(alpha, beta1, beta2)`` of ``group`` at its current step."""
        args = (group["step"], group["total_steps"], group["warmup_steps"], group["anneal_end"])
        alpha, beta1, beta2 = (adamu_schedule(*args, phi) for phi in group["varphi"])
        return alpha, beta1, beta2

    def _parts(self, group, p, start, noise, dtype, alpha) -> tuple[Tensor, Tensor]:
        """``z_dot = sqrt(alpha) xi1`` and ``z_ddot = m + sqrt(1 - alpha) xi2`` in work buffers."""
        n, dev = noise.shape[1], noise.device
        m = self._state_chunk(p, "momentum", start, n)
        z_dot = self._buffer("z_dot", n, dtype, dev).copy_(noise[0]).mul_(math.sqrt(alpha))
        z_ddot = self._buffer("z_ddot", n, dtype, dev).copy_(noise[1])
        z_ddot.mul_(math.sqrt(1 - alpha)).add_(m)
        return z_dot, z_ddot

    def _direction(self, group, p, start, noise, out):  # type: ignore[override]
        alpha, beta1, _ = self.weights(group)
        z_dot, z_ddot = self._parts(group, p, start, noise, out.dtype, alpha)
        return torch.mul(z_dot, beta1, out=out).add_(z_ddot, alpha=1 - beta1)

    def _update(self, group, p, start, x, queries):  # type: ignore[override]
        alpha, beta1, beta2 = self.weights(group)
        n, dev = x.numel(), x.device
        g = self._buffer("estimate", n, x.dtype, dev).zero_()
        second = self._buffer("second", n, x.dtype, dev).zero_()
        mean_u = self._buffer("mean_u", n, x.dtype, dev).zero_()
        u = self._buffer("u", n, x.dtype, dev)
        count = 0
        for c, noise in queries:
            z_dot, z_ddot = self._parts(group, p, start, noise, x.dtype, alpha)
            second.addcmul_(z_dot, z_dot, value=beta2).addcmul_(z_ddot, z_ddot, value=1 - beta2)
            torch.mul(z_dot, beta1, out=u).add_(z_ddot, alpha=1 - beta1)
            g.add_(u, alpha=c)
            mean_u.add_(u, alpha=math.copysign(1.0, c))
            count += 1
        g.div_(count)
        denom = second.div_(count).add_(group["sigma"]).sqrt_()
        if group["weight_decay"]:
            x.mul_(1 - group["lr"] * group["weight_decay"])
        x.addcdiv_(g, denom, value=-group["lr"])
        self._state_chunk(p, "momentum", start, n).copy_(mean_u.div_(count))
