"""Derivative oracles: values, gradients, Hessian- and Jacobian-vector products.

Every oracle takes a function of a flat tensor. Two shapes are understood:

* unbatched: ``x`` of shape ``(n,)``; a scalar function returns shape ``()``,
  a vector function shape ``(m,)``;
* batched (``batched=True``): ``x`` of shape ``(B, n)`` holds ``B`` independent
  problems; a scalar function returns ``(B,)``, a vector function ``(B, m)``.

Because the problems of a batch are independent, the gradient of
``f(x).sum()`` holds every problem's gradient, so one backward pass serves the
whole batch; the same holds for Hessian-vector products.

To differentiate a loss with respect to an ``nn.Module``'s parameters, turn it
into a function of one flat vector with :func:`module_function` and use the
same oracles.

Cost, in units of one evaluation of ``f``: a gradient ~2-3, an HVP ~4-6
(forward-over-reverse or reverse-over-reverse), a JVP/VJP ~2-3, a dense
Hessian or Jacobian ``n`` (or ``m``) of those, vectorized with ``torch.func.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.func import functional_call, vmap
from torch.func import jvp as _func_jvp
from torch.func import vjp as _func_vjp
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = [
    "ggn_vp",
    "ggn_vp_operator",
    "hessian",
    "hvp",
    "hvp_operator",
    "jacobian",
    "jacobian_columns",
    "jvp",
    "linearization",
    "module_function",
    "value_and_grad",
    "value_grad_hessian",
    "vjp",
]

HVPMode = Literal["auto", "forward", "reverse"]


def check_point(x: Tensor, batched: bool, name: str = "x") -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``x`` is a finite float vector (or batch)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {x.dtype}")
    want = 2 if batched else 1
    if x.ndim != want:
        shape = "(B, n)" if batched else "(n,)"
        raise ValueError(
            f"{name} must have shape {shape} (batched={batched}), got {tuple(x.shape)}"
        )
    if x.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one variable, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")


def check_scalar_output(fx: Tensor, x: Tensor, batched: bool, name: str = "fun") -> None:
    """Raise unless ``fx`` is what a scalar function of ``x`` must return."""
    if not isinstance(fx, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(fx).__name__}")
    want = (x.shape[0],) if batched else ()
    if fx.shape != torch.Size(want):
        what = "shape (B,) in batched mode" if batched else "a scalar (shape ())"
        raise ValueError(
            f"{name} must return {what} for x of shape {tuple(x.shape)}, got {tuple(fx.shape)}"
        )
    if fx.dtype != x.dtype:
        raise ValueError(f"{name} must return the dtype of x ({x.dtype}), got {fx.dtype}")


def check_vector_output(fx: Tensor, x: Tensor, batched: bool, name: str = "fun") -> None:
    """Raise unless ``fx`` is what a vector function of ``x`` must return."""
    if not isinstance(fx, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(fx).__name__}")
    ok = fx.ndim == 2 and fx.shape[0] == x.shape[0] if batched else fx.ndim == 1
    if not ok:
        what = "shape (B, m) in batched mode" if batched else "shape (m,)"
        raise ValueError(
            f"{name} must return {what} for x of shape {tuple(x.shape)}, got {tuple(fx.shape)}"
        )


def check_differentiable(fx: Tensor, name: str = "fun") -> None:
    """Raise unless ``fx``, computed from an ``x`` that requires grad, has a graph to it.

    Without one every derivative would read as zero, and a solver would report a
    stationary point wherever it started.
    """
    if fx.requires_grad:
        return
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"cannot differentiate {name} inside torch.inference_mode(); call outside it "
            "(torch.no_grad() around the call is fine)"
        )
    raise ValueError(
        f"{name}'s output has no autograd graph to x: it was computed outside torch "
        "(numpy, .item(), .detach()) or does not depend on x. Derivative-based methods "
        "need a differentiable torch function; order-0 methods (nelder-mead, zo-gd) "
        "need only values"
    )


def _summed(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    return lambda x: f(x).sum()


def value_and_grad(
    f: Callable[..., Tensor], x: Tensor, *args, batched: bool = False
) -> tuple[Tensor, Tensor]:
    """Return ``(f(x), grad f(x))`` by one reverse pass.

    In batched mode ``f(x)`` has shape ``(B,)`` and the gradient ``(B, n)``.
    Works inside ``torch.no_grad()``: gradient tracking is enabled locally.
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        fx = f(xr, *args)
        check_scalar_output(fx, x, batched)
        check_differentiable(fx)
        (g,) = torch.autograd.grad(fx.sum(), xr)
    return fx.detach(), g


def _check_direction(v: Tensor, x: Tensor) -> None:
    """``v`` must be a direction at ``x``: its shape and dtype (a complex ``v`` would lose its
    imaginary part silently, a float64 ``v`` at a float32 ``x`` its precision)."""
    if not isinstance(v, Tensor):
        raise TypeError(f"v must be a torch.Tensor, got {type(v).__name__}")
    if v.shape != x.shape:
        raise ValueError(f"v must have the shape of x {tuple(x.shape)}, got {tuple(v.shape)}")
    if v.dtype != x.dtype:
        raise ValueError(f"v must have the dtype of x ({x.dtype}), got {v.dtype}")


def hvp(
    f: Callable[..., Tensor],
    x: Tensor,
    v: Tensor,
    *args,
    batched: bool = False,
    mode: HVPMode = "auto",
) -> Tensor:
    """Hessian-vector product ``H(x) v`` of a scalar (or batched scalar) function.

    ``mode="reverse"`` differentiates ``<grad f, v>`` by a second reverse pass
    (works for every op with a double-backward); ``"forward"`` differentiates
    the gradient in direction ``v`` by forward mode (forward-over-reverse);
    ``"auto"`` takes reverse and falls back to forward for ops that lack a
    double-backward. Reverse is the default because it was faster on every
    problem measured on CPU (torch 2.13 runs forward-mode elementwise products
    through Python decompositions): 0.29 ms against 1.42 ms on a 10-d
    Rosenbrock function, 2.9 ms against 5.2 ms at n = 1e5, and 2.6x against
    3.1x a gradient on an MLP with 670k parameters (``docs/benchmarks.md``).
    """
    _check_direction(v, x)
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse', got {mode!r}")

    def fx(z):
        out = f(z, *args)
        check_scalar_output(out, z, batched)  # forward mode would sum a vector silently
        return out

    if mode == "forward":
        return _forward_over_reverse(fx, x, v)
    try:
        return hvp_operator(fx, x, batched=batched)(v)
    except (RuntimeError, NotImplementedError):
        if mode == "reverse":
            raise
    return _forward_over_reverse(fx, x, v)


def _forward_over_reverse(f: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    grad_f = torch.func.grad(_summed(f))
    with torch.enable_grad():
        return _func_jvp(grad_f, (x.detach(),), (v.detach(),))[1]


def hvp_operator(
    f: Callable[[Tensor], Tensor], x: Tensor, *, batched: bool = False
) -> Callable[[Tensor], Tensor]:
    """Return ``v -> H(x) v`` that reuses one graph of the gradient.

    The gradient is built once with ``create_graph=True``; each product then
    costs one backward pass through that graph (reverse-over-reverse). This is
    what Krylov solvers want: many products at one point.
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        fx = f(xr)
        check_scalar_output(fx, x, batched)
        check_differentiable(fx)
        (g,) = torch.autograd.grad(fx.sum(), xr, create_graph=True)

    def matvec(v: Tensor) -> Tensor:
        if not g.requires_grad:  # f is at most linear in x
            return torch.zeros_like(v)
        with torch.enable_grad():
            (hv,) = torch.autograd.grad(g, xr, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if hv is None else hv

    return matvec


def jvp(f: Callable[..., Tensor], x: Tensor, v: Tensor, *args) -> tuple[Tensor, Tensor]:
    """Return ``(f(x), J(x) v)`` by forward mode. Batched functions need no change."""
    _check_direction(v, x)
    with torch.enable_grad():
        out, tangent = _func_jvp(lambda z: f(z, *args), (x.detach(),), (v.detach(),))
    return out.detach(), tangent.detach()


def vjp(f: Callable[..., Tensor], x: Tensor, u: Tensor, *args) -> tuple[Tensor, Tensor]:
    """Return ``(f(x), J(x)^T u)`` by one reverse pass."""
    with torch.enable_grad():
        out, pullback = _func_vjp(lambda z: f(z, *args), x.detach())
        if u.shape != out.shape:
            raise ValueError(
                f"u must have the shape of f(x) {tuple(out.shape)}, got {tuple(u.shape)}"
            )
        (ct,) = pullback(u.detach())
    return out.detach(), ct.detach()


def ggn_vp(
    model_fn: Callable[[Tensor], Tensor],
    loss_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    v: Tensor,
) -> Tensor:
    """Generalized Gauss-Newton product ``J^T H_L J v`` for ``loss_fn(model_fn(x))``.

    ``J`` is the Jacobian of ``model_fn`` at ``x`` and ``H_L`` the Hessian of
    ``loss_fn`` at the model output (Schraudolph, "Fast curvature matrix-vector
    products for second-order gradient descent", 2002). The GGN is PSD
    whenever the loss is convex in the output. One product of
    :func:`ggn_vp_operator`; for several at one point, build that once.
    """
    _check_direction(v, x)
    return ggn_vp_operator(model_fn, loss_fn, x)(v)


def ggn_vp_operator(
    model_fn: Callable[[Tensor], Tensor], loss_fn: Callable[[Tensor], Tensor], x: Tensor
) -> Callable[[Tensor], Tensor]:
    """Return ``v -> J^T H_L J v`` at ``x`` (see :func:`ggn_vp`), reusing one set of graphs.

    Built once: the output ``z = model_fn(x)`` with the graph of ``J^T s`` for a free
    seed ``s`` (:func:`linearization`), and the loss's gradient in ``z`` with its
    graph. Each product is then three backward passes through kept graphs: ``J v``
    by the double-vjp trick, ``H_L (J v)`` through the loss's gradient, ``J^T``
    of that through the model. No forward mode: torch's forward-mode derivatives
    are missing for fused kernels that a model in eval mode runs (multi-head
    attention's fast path, oneDNN's LSTM), and slow on CPU.
    """
    with torch.enable_grad():
        xr, out, seed, pulled = linearization(model_fn, x)
        z = out.detach().requires_grad_(True)
        loss = loss_fn(z)
        if loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        (grad_z,) = torch.autograd.grad(loss, z, create_graph=True)

    def matvec(v: Tensor) -> Tensor:
        with torch.enable_grad():
            (jv,) = torch.autograd.grad(pulled, seed, v, retain_graph=True, allow_unused=True)
            if jv is None or not grad_z.requires_grad:  # model or loss without curvature
                return torch.zeros_like(v)
            (hjv,) = torch.autograd.grad(grad_z, z, jv, retain_graph=True, allow_unused=True)
            if hjv is None:
                return torch.zeros_like(v)
            (g,) = torch.autograd.grad(out, xr, hjv, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if g is None else g.detach()

    return matvec


def hessian(f: Callable[..., Tensor], x: Tensor, *args, batched: bool = False) -> Tensor:
    """Dense Hessian, ``(n, n)`` or ``(B, n, n)`` in batched mode; for small ``n``."""
    return value_grad_hessian(f, x, *args, batched=batched)[2]


def value_grad_hessian(
    f: Callable[..., Tensor], x: Tensor, *args, batched: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(f(x), grad f(x), hessian f(x))`` from one call of ``f``.

    The gradient is built with its graph; the Hessian's rows are then ``n``
    backward passes through it with the unit vectors, run as one batched
    backward (``is_grads_batched``). Cost: one gradient and about ``n`` HVPs.
    """
    check_point(x, batched)
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        out = f(xr, *args)
        check_scalar_output(out, x, batched)
        check_differentiable(out)
        (g,) = torch.autograd.grad(out.sum(), xr, create_graph=True)
    return out.detach(), g.detach(), hessian_from_gradient(g, xr)


def hessian_from_gradient(g: Tensor, x: Tensor) -> Tensor:
    """The dense Hessian from a gradient ``g`` built with ``create_graph=True`` at leaf ``x``.

    ``x`` and ``g`` have shape ``(n,)`` or ``(B, n)``; the result ``(n, n)`` or
    ``(B, n, n)``, symmetrized. The graph is kept for further products.
    """
    n = x.shape[-1]
    if not g.requires_grad:  # f is at most linear in x
        return torch.zeros(*x.shape, n, dtype=x.dtype, device=x.device)
    basis = _unit_batch(n, x)
    with torch.enable_grad():
        try:
            (rows,) = torch.autograd.grad(
                g, x, basis, retain_graph=True, is_grads_batched=True, allow_unused=True
            )
        except RuntimeError:  # an op without a batching rule: one backward per row
            rows = torch.stack(
                [torch.autograd.grad(g, x, e, retain_graph=True, allow_unused=True)[0]
                 for e in basis]
            )  # fmt: skip
    # rows[i] = e_i^T dg/dx, row i of the Hessian.
    hess = rows.movedim(0, -2).detach()
    return 0.5 * (hess + hess.transpose(-1, -2))


def jacobian(
    f: Callable[..., Tensor],
    x: Tensor,
    *args,
    batched: bool = False,
    mode: Literal["auto", "forward", "reverse"] = "auto",
) -> Tensor:
    """Dense Jacobian, ``(m, n)`` or ``(B, m, n)`` in batched mode.

    ``mode="forward"`` forms the ``n`` columns ``J e_i`` (cheap when ``m >= n``; by
    the double-vjp trick, see :func:`jacobian_columns`), ``"reverse"`` pulls
    back the ``m`` unit cotangents (cheap when ``n > m``); ``"auto"`` picks the
    cheaper. Either way one call of ``f`` and vectorized backward passes.
    """
    check_point(x, batched)
    fx = (lambda z: f(z, *args)) if args else f
    x = x.detach()
    with torch.enable_grad():
        out, pullback = _func_vjp(fx, x)
    check_vector_output(out, x, batched)
    n, m = x.shape[-1], out.shape[-1]
    if mode == "auto":
        mode = "forward" if m >= n else "reverse"
    if mode == "forward":
        with torch.enable_grad():
            return jacobian_columns(*linearization(fx, x)).detach()
    if mode == "reverse":
        basis = _unit_batch(m, out)
        with torch.enable_grad():
            rows = vmap(lambda u: pullback(u)[0])(basis)  # (m, [B,] n)
        return rows.movedim(0, -2).detach()
    raise ValueError(f"mode must be 'auto', 'forward' or 'reverse', got {mode!r}")


def linearization(
    f: Callable[[Tensor], Tensor], x: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x, f(x), s, J^T s)`` from one call of a vector function: its output and one
    backward pass with a free seed ``s`` (zeros), built to be differentiated in ``s``
    and in ``x`` (see :func:`check_differentiable` for an output without a graph).

    ``J^T s`` is linear in ``s``, so its derivative along ``w`` is ``J w``: the
    double-vjp trick, which gives Jacobian-vector products from autograd's
    compiled backward kernels. Call with gradients enabled.
    """
    xr = x.detach().requires_grad_(True)
    out = f(xr)
    check_differentiable(out, "the function")
    seed = torch.zeros_like(out, requires_grad=True)
    (pulled,) = torch.autograd.grad(out, xr, seed, create_graph=True)
    return xr, out, seed, pulled


def jacobian_columns(x: Tensor, out: Tensor, seed: Tensor, pulled: Tensor) -> Tensor:
    """The Jacobian ``(..., m, n)`` from a :func:`linearization`, column by column.

    Each column ``J e_i`` is one backward pass through ``J^T s``; the ``n`` of them
    run as one batched pass. torch 2.13's forward mode (``jvp`` under ``vmap``), the
    textbook way, runs elementwise products through Python decompositions on
    CPU: 0.79 ms against 0.30 ms for a 33 x 5 Jacobian, 15 ms against 15 ms for
    10,000 stacked 50 x 3 ones. Call with gradients enabled.
    """
    n = x.shape[-1]

    def column(e: Tensor) -> Tensor:
        return torch.autograd.grad(pulled, seed, e, retain_graph=True)[0]

    return vmap(column)(_unit_batch(n, x)).movedim(0, -1)


def _unit_batch(k: int, like: Tensor) -> Tensor:
    eye = torch.eye(k, dtype=like.dtype, device=like.device)
    if like.ndim == 1:
        return eye
    return eye[:, None, :].expand(k, like.shape[0], k)


_DropoutNd = torch.nn.modules.dropout._DropoutNd


def _check_mode_free(model: torch.nn.Module) -> None:
    """Raise unless the model's forward is a fixed function of its parameters.

    In training mode, dropout draws new random numbers at every call and batch norm
    normalizes by the batch and updates its running statistics: derivatives of such a
    forward are not one function's, and the model would change under them. Caught:
    dropout and RReLU modules, any module with a ``dropout`` probability above zero
    (``nn.MultiheadAttention``, ``nn.LSTM``/``GRU``/``RNN``), batch and instance norm
    with running statistics. A functional call in ``forward`` (``F.dropout(...,
    training=self.training)``) cannot be seen from outside: call ``model.eval()``.
    """
    for name, module in model.named_modules():
        if not module.training:
            continue
        # Dropout of probability 0 (a transformer layer built with dropout=0.0) is the
        # identity; attention's and stacked RNNs' built-in dropout is a `dropout` float.
        rate = getattr(module, "p" if isinstance(module, _DropoutNd) else "dropout", None)
        random = isinstance(module, torch.nn.RReLU) or (
            isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0
        )
        stats = isinstance(module, torch.nn.modules.batchnorm._NormBase) and (
            module.track_running_stats or isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        )
        if random or stats:
            what = "draws random numbers" if random else "updates running statistics"
            raise ValueError(
                f"model.{name or '<root>'} ({type(module).__name__}) is in training mode: its "
                f"forward {what}, so the model is not one fixed function of its parameters; "
                "call model.eval() first"
            )


def module_function(
    model: torch.nn.Module,
    loss_fn: Callable[[Tensor], Tensor],
    inputs: Tensor | Sequence[Tensor],
    params: Sequence[str] | None = None,
) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """Turn ``loss_fn(model(*inputs))`` into a function of one flat parameter vector.

    Returns ``(fun, theta0)``: ``fun(theta)`` evaluates the loss with the
    model's parameters replaced by ``theta`` (via ``torch.func.functional_call``),
    and ``theta0`` is the current parameters, flattened and detached. Buffers
    are taken as they are. ``params`` names the parameters to vary (default:
    all that require grad), so every flat-vector oracle above applies to a model.
    A model with dropout or batch norm in training mode is refused (its forward is
    not a fixed function of the parameters): call ``model.eval()``. Attention
    (``scaled_dot_product_attention``) runs on PyTorch's math kernel, the one whose
    graph has second derivatives.
    """
    _check_mode_free(model)
    named = dict(model.named_parameters())
    if isinstance(params, str):
        raise TypeError(f"params must be a sequence of parameter names, got the string {params!r}")
    names = [k for k, p in named.items() if p.requires_grad] if params is None else list(params)
    unknown = [k for k in names if k not in named]
    if unknown:
        raise ValueError(f"params names unknown parameters: {unknown}")
    if len(set(names)) < len(names):
        raise ValueError(f"params names a parameter more than once: {names}")
    if not names:
        raise ValueError("params: the model has no parameters to differentiate")
    shapes = [named[k].shape for k in names]
    sizes = [named[k].numel() for k in names]
    theta0 = torch.cat([named[k].detach().reshape(-1) for k in names])
    args = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)

    def fun(theta: Tensor) -> Tensor:
        pieces = torch.split(theta, sizes)
        override = {k: p.view(s) for k, p, s in zip(names, pieces, shapes)}
        # The fused attention kernels (flash, memory-efficient) have no second derivative;
        # the math kernel computes the same attention from differentiable ops.
        with sdpa_kernel(SDPBackend.MATH):
            return loss_fn(functional_call(model, override, args))

    return fun, theta0
