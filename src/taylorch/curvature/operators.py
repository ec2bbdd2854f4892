"""Curvature of a model's loss on a batch, as linear operators over its parameters.

Each constructor takes ``model``, ``loss_fn(outputs, targets) -> scalar``, the
batch ``inputs`` (a tensor or a tuple of tensors) and ``targets`` (a tensor or
``None``, handed to ``loss_fn`` as is), and returns a
:class:`~taylorch.linalg.LinearOperator` of shape ``(P, P)`` over the ``P``
parameters that require grad (or those named in ``params``), flattened in the
order of ``model.named_parameters()`` as :func:`taylorch.derivatives.module_function`
does. The operators are fixed at the parameters' current values; the model is
not modified.

* :func:`hessian_operator`: the Hessian ``H = d^2 L / d theta^2``.
* :func:`ggn_operator`: the generalized Gauss-Newton ``G = J^T H_L J``,
  ``J`` the Jacobian of the outputs, ``H_L`` the Hessian of the loss in
  output space (Schraudolph, 2002; Martens, "New insights and perspectives on
  the natural gradient method", JMLR 2020).
* :func:`empirical_fisher_operator`: ``F = (1/N) sum_i g_i g_i^T`` with ``g_i``
  the gradient of sample ``i``'s loss (Kunstner, Hennig & Balles, "Limitations
  of the empirical Fisher approximation", NeurIPS 2019, on when it is and is
  not a good curvature model).

Block products (``matmat``) are vectorized with ``torch.func.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.func import grad, vmap

from taylorch.derivatives import ggn_vp_operator, hvp, hvp_operator, module_function
from taylorch.linalg.operators import LinearOperator

__all__ = [
    "empirical_fisher_operator",
    "ggn_operator",
    "hessian_operator",
    "per_sample_gradients",
]

LossFn = Callable[[Tensor, Tensor | None], Tensor]
Inputs = Tensor | Sequence[Tensor]


def _operator(matvec: Callable[[Tensor], Tensor], theta: Tensor, **tags: bool) -> LinearOperator:
    """Wrap ``matvec`` with a block product vectorized by ``vmap``.

    Some products cannot be vmapped (for example when ``hvp`` falls back from
    forward mode, which ``F.mse_loss`` lacks in torch 2.x, to a reverse pass
    with ``requires_grad_``); the first such failure switches this operator
    to one product per column for good.
    """
    n = theta.numel()
    vectorized = vmap(matvec, in_dims=1, out_dims=1)
    use_vmap = True

    def matmat(x: Tensor) -> Tensor:
        nonlocal use_vmap
        if use_vmap:
            try:
                return vectorized(x)
            except RuntimeError:
                use_vmap = False
        return torch.stack([matvec(c) for c in x.unbind(1)], dim=1)

    return LinearOperator(
        matvec, (n, n), dtype=theta.dtype, device=theta.device, matmat=matmat, **tags
    )


def _check_loss(loss_fn: LossFn) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")


def hessian_operator(
    model: torch.nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    targets: Tensor | None = None,
    *,
    params: Sequence[str] | None = None,
    mode: Literal["forward", "reverse"] = "reverse",
) -> LinearOperator:
    """The Hessian of ``loss_fn(model(*inputs), targets)`` in the parameters.

    ``mode="reverse"`` builds the gradient's graph once and answers every
    product with one backward pass through it (reverse-over-reverse; fastest
    for many products, holds the graph in memory). ``mode="forward"`` runs a
    forward-over-reverse pass per product (no stored graph); it is tried once at
    construction, so a loss without forward-mode derivatives (``F.mse_loss``,
    ``F.huber_loss`` in torch 2.13) is a ``ValueError`` there. Cost per product:
    about 2-3 gradient evaluations either way. Tagged symmetric.
    """
    _check_loss(loss_fn)
    fun, theta = module_function(model, lambda out: loss_fn(out, targets), inputs, params)
    if mode == "reverse":
        matvec = hvp_operator(fun, theta)
    elif mode == "forward":

        def matvec(v: Tensor) -> Tensor:
            return hvp(fun, theta, v, mode="forward")

        try:  # one product now: an op without forward mode fails here, with a clear error
            matvec(torch.zeros_like(theta))
        except (RuntimeError, NotImplementedError) as exc:
            raise ValueError(
                "mode='forward': an operation of this model or loss has no forward-mode "
                f"derivative in this torch ({type(exc).__name__}: {exc}); use mode='reverse'"
            ) from exc

    else:
        raise ValueError(f"mode must be 'forward' or 'reverse', got {mode!r}")
    return _operator(matvec, theta, symmetric=True)


def ggn_operator(
    model: torch.nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    targets: Tensor | None = None,
    *,
    params: Sequence[str] | None = None,
) -> LinearOperator:
    """The generalized Gauss-Newton matrix ``J^T H_L J`` of ``loss_fn(model(*inputs), targets)``.

    ``J = d outputs / d theta``; ``H_L`` is the Hessian of ``loss_fn`` with
    respect to the outputs. The graphs are built once; each product is then
    three backward passes (:func:`taylorch.derivatives.ggn_vp_operator`), about
    the cost of 2-3 gradients. Tagged PSD, which holds when the loss is convex in
    the outputs (squared error, cross-entropy on logits).
    """
    _check_loss(loss_fn)
    model_fn, theta = module_function(model, lambda out: out, inputs, params)
    matvec = ggn_vp_operator(model_fn, lambda out: loss_fn(out, targets), theta)
    return _operator(matvec, theta, psd=True)


def per_sample_gradients(
    model: torch.nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    targets: Tensor | None = None,
    *,
    params: Sequence[str] | None = None,
) -> Tensor:
    """Gradients of each sample's loss, ``(N, P)``, by ``vmap(grad(.))`` over the batch.

    Sample ``i``'s loss is ``loss_fn(model(x_i[None]), y_i[None])``: the model
    sees a batch of one, so models whose forward mixes samples (batch norm in
    training mode) have no per-sample gradients. Cost: about one batched
    gradient (``N`` gradients of one sample each where ``vmap`` cannot batch the
    model, e.g. recurrent layers); memory ``N P``.
    """
    _check_loss(loss_fn)
    xs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    if not xs or any(not isinstance(x, Tensor) or x.ndim == 0 for x in xs):
        raise ValueError("inputs must be a tensor or tuple of tensors with a batch dimension")
    n = xs[0].shape[0]
    if any(x.shape[0] != n for x in xs) or (targets is not None and targets.shape[0] != n):
        raise ValueError("inputs and targets must share the batch size (first dimension)")
    theta = module_function(model, lambda out: out, xs, params)[1]

    def sample_loss(th: Tensor, x: tuple[Tensor, ...], y: Tensor | None) -> Tensor:
        y1 = None if y is None else y[None]
        fun = module_function(model, lambda out: loss_fn(out, y1), [t[None] for t in x], params)[0]
        return fun(th)

    y_dim = None if targets is None else 0
    sample_grad = grad(sample_loss)
    with torch.enable_grad():
        try:
            g = vmap(sample_grad, in_dims=(None, 0, y_dim))(theta, xs, targets)
        except RuntimeError:
            # Some kernels have no batching rule that vmap can use (torch 2.13: the RNN
            # modules' in-place hidden-state updates); one sample at a time, then.
            g = torch.stack(
                [
                    sample_grad(
                        theta, tuple(t[i] for t in xs), None if targets is None else targets[i]
                    )
                    for i in range(n)
                ]
            )
    return g.detach()


def empirical_fisher_operator(
    model: torch.nn.Module,
    loss_fn: LossFn,
    inputs: Inputs,
    targets: Tensor | None = None,
    *,
    params: Sequence[str] | None = None,
    reduction: Literal["mean", "sum"] = "mean",
) -> LinearOperator:
    """The empirical Fisher ``(1/N) sum_i g_i g_i^T`` (``reduction="sum"``: no ``1/N``).

    The per-sample gradients ``G`` ``(N, P)`` are computed once
    (:func:`per_sample_gradients`); a product is then ``G^T (G v) / N``,
    ``O(N P)``. Memory ``N P``. Tagged PSD.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    g = per_sample_gradients(model, loss_fn, inputs, targets, params=params)
    scale = 1.0 / g.shape[0] if reduction == "mean" else 1.0
    n = g.shape[1]
    return LinearOperator(
        lambda v: scale * (g.mT @ (g @ v)),
        (n, n),
        dtype=g.dtype,
        device=g.device,
        matmat=lambda x: scale * (g.mT @ (g @ x)),
        psd=True,
    )
