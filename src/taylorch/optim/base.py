"""What every taylorch training optimizer shares: validation, closures, non-finite policy.

The closure convention (the same for every optimizer, first or zeroth order)::

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        if torch.is_grad_enabled():
            loss.backward()
        return loss

An optimizer calls it with gradients enabled when it needs a gradient and under
``torch.no_grad()`` when it only needs a value (line-search trials, zeroth-order
queries), so one closure serves every optimizer.

Under ``torch.distributed`` (e.g. a ``DistributedDataParallel`` model), loss values
returned by a closure are averaged over the default process group before any
decision is taken on them, so every rank takes the same step; gradients are already
averaged by DDP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor

NonFinite = Literal["raise", "skip"]
Closure = Callable[[], Tensor]


def check_positive(name: str, value: float, allow_zero: bool = True) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number >= 0 (or > 0)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def check_unit_interval(name: str, value: float, closed_right: bool = False) -> None:
    """Raise ``ValueError`` unless ``0 <= value < 1`` (``<= 1`` if ``closed_right``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0.0 <= value <= 1.0) or (value == 1.0 and not closed_right):
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_betas(betas: Sequence[float], name: str = "betas") -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2), got {betas!r}")
    for i, b in enumerate(betas):
        check_unit_interval(f"{name}[{i}]", b)


def check_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def global_mean(loss: Tensor) -> Tensor:
    """The loss averaged over the default process group (unchanged without one)."""
    loss = loss.detach()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        loss = loss.clone()
        dist.all_reduce(loss, op=dist.ReduceOp.SUM)
        loss /= dist.get_world_size()
    return loss


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """True when no tensor holds NaN or inf: one fused max-norm per tensor, one host sync.

    The max-norm propagates NaN and cannot overflow (a 2-norm would, in float32, for
    finite entries beyond ~1e19).
    """
    tensors = [t for t in tensors if t.numel() > 0]
    if not tensors:
        return True
    norms = torch._foreach_norm(tensors, ord=math.inf)
    return bool(torch.isfinite(torch.stack([n.float().to("cpu") for n in norms])).all())


def group_by_device_dtype(*lists: list[Tensor]) -> dict[tuple, tuple[list[Tensor], ...]]:
    """Split parallel tensor lists into buckets of one device and dtype, for foreach ops."""
    buckets: dict[tuple, tuple[list[Tensor], ...]] = {}
    for items in zip(*lists):
        key = (items[0].device, items[0].dtype)
        bucket = buckets.setdefault(key, tuple([] for _ in lists))
        for dst, item in zip(bucket, items):
            dst.append(item)
    return buckets


class SameRandomness:
    """Common random numbers for the closure calls of one step.

    A step that calls the closure more than once (line-search trials, the two
    perturbed passes of a zeroth-order estimate) compares losses; with dropout or any
    other draw from torch's global generators, each call would see a different
    network, and the difference would measure that noise instead of the step. Made at
    the start of a step, and told before every call, this rewinds the generators (CPU,
    and CUDA on the parameters' devices) so that every call draws the same numbers;
    :meth:`finish` then leaves them as after one call, so the training run's stream
    moves on exactly as with a one-call optimizer. Used as a context manager, the
    step's exit (a return or an exception alike) calls :meth:`finish`.
    """

    def __init__(self, params: Iterable[Tensor]) -> None:
        self._cuda = sorted({p.device for p in params if p.device.type == "cuda"}, key=str)
        self._start = self._state()
        self._after_first: tuple | None = None
        self._calls = 0

    def _state(self) -> tuple:
        return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in self._cuda]

    def _set(self, state: tuple) -> None:
        cpu, cuda = state
        torch.set_rng_state(cpu)
        for device, s in zip(self._cuda, cuda):
            torch.cuda.set_rng_state(s, device)

    def before_call(self) -> None:
        """Before every closure call of the step: from the second on, rewind."""
        if self._calls > 0:
            if self._after_first is None:
                self._after_first = self._state()
            self._set(self._start)
        self._calls += 1

    def finish(self) -> None:
        """After the last call: the generators as the first call left them."""
        if self._after_first is not None:
            self._set(self._after_first)

    def __enter__(self) -> SameRandomness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()


class Optimizer(torch.optim.Optimizer):
    """Base class: ``torch.optim.Optimizer`` plus the non-finite policy and closure helpers.

    Args:
        params: parameters or param groups, as for any ``torch.optim`` optimizer.
        defaults: default hyperparameters of a group.
        nonfinite: what a step does when a gradient or a loss it needs is NaN or inf:
            ``"raise"`` raises ``FloatingPointError`` before anything is changed;
            ``"skip"`` leaves parameters and state untouched, returns the loss and
            counts the skip in ``optimizer.skipped_steps``.
    """

    def __init__(
        self, params: Iterable[Any], defaults: dict[str, Any], nonfinite: NonFinite = "raise"
    ) -> None:
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        self.nonfinite = nonfinite
        self.skipped_steps = 0
        super().__init__(params, defaults)

    #: whether the update rule is defined for complex parameters
    supports_complex = True

    def __getstate__(self) -> dict[str, Any]:
        """torch's state plus every attribute a taylorch optimizer sets itself.

        ``torch.optim.Optimizer.__getstate__`` keeps ``defaults``, ``state`` and
        ``param_groups`` only, so a deep copy or an unpickled optimizer would lack the
        non-finite policy, the zeroth-order noise generators, etc. Hooks stay out, as
        in torch (they may be unpicklable closures); ``__setstate__`` recreates them.
        """
        state = super().__getstate__()
        for key, value in self.__dict__.items():
            if key not in state and not key.startswith("_optimizer_"):
                state[key] = value
        return state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group.get("params")
        if isinstance(params, Tensor):
            params = [params]
        elif params is not None and not isinstance(params, set):  # torch refuses sets itself
            params = list(params)  # a generator is read once: here
            for p in params:  # checked before the group is added: a refused one leaves no trace
                self.check_param(p)
        if "params" in param_group:
            param_group = {**param_group, "params": params}
        super().add_param_group(param_group)

    def check_param(self, p: Tensor) -> None:
        """Raise ``ValueError`` for a parameter this optimizer cannot train."""
        if not self.supports_complex and isinstance(p, Tensor) and p.is_complex():
            raise ValueError(
                f"{type(self).__name__} does not support complex parameters (got one "
                f"of shape {tuple(p.shape)}); optimize torch.view_as_real of it instead"
            )

    def state_dtype(self, p: Tensor) -> torch.dtype:
        """The dtype of ``p``'s floating state (its own unless a subclass keeps it wider)."""
        return p.dtype

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.load_state_dict``, with floating state in :meth:`state_dtype`.

        torch casts floating state to its parameter's dtype. State that an optimizer
        keeps wider (the float32 moments of bfloat16 weights in the zeroth-order
        optimizers) would be rounded, and a resumed run would no longer match one that
        was never interrupted. Such tensors are set aside, the rest is loaded by torch,
        and they are cast once, from the saved values, and put on the parameter's device.
        """
        kept: dict[tuple[int, int, str], Tensor] = {}
        state = {}
        for gi, group in enumerate(state_dict["param_groups"]):
            for pi, pid in enumerate(group["params"]):
                if pid not in state_dict["state"]:
                    continue
                entries = dict(state_dict["state"][pid])
                for key, value in list(entries.items()):
                    if key != "step" and isinstance(value, Tensor) and value.is_floating_point():
                        kept[gi, pi, key] = entries.pop(key)
                state[pid] = entries
        _check_state_shapes(self.param_groups, state_dict["param_groups"], kept)
        super().load_state_dict({**state_dict, "state": state})
        for (gi, pi, key), value in kept.items():
            p = self.param_groups[gi]["params"][pi]
            self.state[p][key] = value.to(device=p.device, dtype=self.state_dtype(p), copy=True)

    def _params_with_grad(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        params, grads = [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            params.append(p)
            grads.append(p.grad)
        return params, grads

    def _all_params_with_grad(self) -> list[tuple[dict[str, Any], list[Tensor], list[Tensor]]]:
        return [(g, *self._params_with_grad(g)) for g in self.param_groups]

    def _reject(self, what: str) -> bool:
        """Apply the non-finite policy; returns True when the step must be skipped."""
        if self.nonfinite == "raise":
            raise FloatingPointError(
                f"{type(self).__name__}: non-finite {what}; nothing was changed "
                "(pass nonfinite='skip' to skip such steps instead)"
            )
        self.skipped_steps += 1
        return True

    def _grads_ok(self, grads: Sequence[Tensor]) -> bool:
        return all_finite(grads) or not self._reject("gradient")

    def _loss_ok(self, loss: Tensor) -> bool:
        return bool(torch.isfinite(loss)) or not self._reject("loss")

    @staticmethod
    def _evaluate(closure: Closure, grad: bool) -> Tensor:
        """Run ``closure`` with or without autograd; return its loss, globally averaged.

        Inside an autocast region torch caches the low-precision copy of each leaf
        weight until the region ends: a step whose calls see moved weights (trials,
        perturbations) would reuse the copies of the first call. The cache is
        cleared before every call (on any device; outside autocast it is empty).
        """
        torch.clear_autocast_cache()
        with torch.set_grad_enabled(grad):
            loss = closure()
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise TypeError("closure must return the loss as a tensor with one element")
        return global_mean(loss.reshape(()))

    def _require_closure(self, closure: Closure | None) -> Closure:
        if closure is None or not callable(closure):
            raise TypeError(
                f"{type(self).__name__}.step needs a closure that returns the loss "
                "(and calls backward when torch.is_grad_enabled())"
            )
        return closure


def _check_state_shapes(
    groups: list[dict[str, Any]], saved_groups: list[dict[str, Any]], kept: dict
) -> None:
    """Raise ``ValueError`` where saved floating state does not fit its parameter.

    torch maps saved state to parameters by position; a checkpoint of other
    parameters (or of groups given in another order) would otherwise load a
    bias's moments into a matrix's slot, where an update rule that creates missing
    state could silently start afresh. Every floating per-parameter state of a
    taylorch optimizer has its parameter's shape (or is a scalar).
    """
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in saved_groups]:
        return  # torch's own load_state_dict names this mismatch
    for (gi, pi, key), value in kept.items():
        p = groups[gi]["params"][pi]
        if value.ndim > 0 and value.shape != p.shape:
            raise ValueError(
                f"state {key!r} of shape {tuple(value.shape)} (group {gi}, parameter {pi}) "
                f"does not fit that parameter, of shape {tuple(p.shape)}: the checkpoint's "
                "param groups do not match this optimizer's (another order or other parameters)"
            )
