"""Derivative oracles against torch.autograd.functional on random smooth functions.

Hypothesis draws the function family: ``f(x) = 0.5 ||g(x)||^2 + 0.5 x^T Q x`` with
``g(x) = W2 act(W1 x + b1) + c x^3`` for random matrices, a random activation
and random sizes; the references are dense ``torch.autograd.functional``
Hessians and Jacobians (double backward), computed row by row for batches.
"""

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.autograd.functional import hessian as ref_hessian
from torch.autograd.functional import jacobian as ref_jacobian
from torch.nn import functional as F

from taylorch.derivatives import (
    ggn_vp,
    hessian,
    hvp,
    hvp_operator,
    jacobian,
    jvp,
    module_function,
    value_and_grad,
    vjp,
)

ACTIVATIONS = {
    "tanh": torch.tanh,
    "sin": torch.sin,
    "softplus": F.softplus,
    "sigmoid": torch.sigmoid,
    "cube": lambda t: t**3 / 3,
}
TOL = {torch.float32: 2e-4, torch.float64: 1e-10}


@dataclass
class RandomFunction:
    """A smooth function of ``(..., n)``; ``vector`` gives ``(..., m)``, ``scalar`` ``(...)``."""

    w1: Tensor
    b1: Tensor
    w2: Tensor
    c: Tensor
    q: Tensor
    act: str

    def vector(self, x: Tensor) -> Tensor:
        hidden = ACTIVATIONS[self.act](x @ self.w1.T + self.b1)
        return hidden @ self.w2.T + self.c * (x[..., : self.c.shape[0]] ** 3)

    def scalar(self, x: Tensor) -> Tensor:
        return 0.5 * self.vector(x).pow(2).sum(-1) + 0.5 * ((x @ self.q) * x).sum(-1)


@st.composite
def problems(draw, batched=False):
    n = draw(st.integers(1, 5))
    h = draw(st.integers(1, 6))
    m = draw(st.integers(1, min(4, n)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    act = draw(st.sampled_from(sorted(ACTIVATIONS)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    q = rand(n, n, scale=0.5)
    fn = RandomFunction(
        rand(h, n, scale=n**-0.5),
        rand(h),
        rand(m, h, scale=h**-0.5),
        rand(m, scale=0.3),
        q + q.T,
        act,
    )
    bsz = draw(st.integers(1, 4))
    x = rand(bsz, n) if batched else rand(n)
    v = rand(*x.shape)
    return fn, x, v


def close(actual, expected, dtype):
    tol = TOL[dtype]
    scale = 1 + expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale)


HYP = settings(max_examples=15, deadline=None)


# ----------------------------------------------------------------------------- unbatched


@HYP
@given(problems())
def test_value_and_grad(case):
    fn, x, _ = case
    value, grad = value_and_grad(fn.scalar, x)
    close(value, fn.scalar(x), x.dtype)
    close(grad, ref_jacobian(fn.scalar, x), x.dtype)


@HYP
@given(problems())
def test_hessian(case):
    fn, x, _ = case
    h = hessian(fn.scalar, x)
    assert h.shape == (x.shape[0], x.shape[0]) and h.dtype == x.dtype
    close(h, ref_hessian(fn.scalar, x), x.dtype)


@HYP
@given(problems(), st.sampled_from(["auto", "forward", "reverse"]))
def test_hvp_every_mode(case, mode):
    fn, x, v = case
    close(hvp(fn.scalar, x, v, mode=mode), ref_hessian(fn.scalar, x) @ v, x.dtype)


@HYP
@given(problems())
def test_hvp_operator_reuses_one_graph(case):
    fn, x, v = case
    h = ref_hessian(fn.scalar, x)
    matvec = hvp_operator(fn.scalar, x)
    close(matvec(v), h @ v, x.dtype)
    close(matvec(2 * v + 1), h @ (2 * v + 1), x.dtype)


@HYP
@given(problems(), st.sampled_from(["auto", "forward", "reverse"]))
def test_jacobian_every_mode(case, mode):
    fn, x, _ = case
    close(jacobian(fn.vector, x, mode=mode), ref_jacobian(fn.vector, x), x.dtype)


@HYP
@given(problems())
def test_jvp_and_vjp(case):
    fn, x, v = case
    jac = ref_jacobian(fn.vector, x)
    out, jv = jvp(fn.vector, x, v)
    close(out, fn.vector(x), x.dtype)
    close(jv, jac @ v, x.dtype)
    u = torch.linspace(-1, 1, jac.shape[0], dtype=x.dtype)
    out, ju = vjp(fn.vector, x, u)
    close(ju, jac.T @ u, x.dtype)


@HYP
@given(problems())
def test_ggn_vp_is_jt_h_j(case):
    fn, x, v = case
    jac = ref_jacobian(fn.vector, x)
    z = fn.vector(x)

    def loss(out):
        return torch.logsumexp(out, -1) + 0.1 * out.pow(4).sum()

    h_out = ref_hessian(loss, z)
    close(ggn_vp(fn.vector, loss, x, v), jac.T @ h_out @ jac @ v, x.dtype)


def test_extra_args_are_passed_through():
    a = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    x = torch.tensor([0.3, -0.7], dtype=torch.float64)

    def f(z, mat, shift):
        return 0.5 * (z - shift) @ mat @ (z - shift)

    assert torch.allclose(value_and_grad(f, x, a, 1.0)[1], a @ (x - 1.0))
    assert torch.allclose(hessian(f, x, a, 1.0), a)
    assert torch.allclose(hvp(f, x, torch.ones(2, dtype=torch.float64), a, 1.0), a.sum(1))


# ----------------------------------------------------------------------------- batched


@HYP
@given(problems(batched=True))
def test_batched_oracles_equal_a_loop_over_rows(case):
    fn, x, v = case
    value, grad = value_and_grad(fn.scalar, x, batched=True)
    assert value.shape == x.shape[:1] and grad.shape == x.shape
    hess = hessian(fn.scalar, x, batched=True)
    jac = jacobian(fn.vector, x, batched=True)
    hv_f = hvp(fn.scalar, x, v, batched=True, mode="forward")
    hv_r = hvp(fn.scalar, x, v, batched=True, mode="reverse")
    hv_op = hvp_operator(fn.scalar, x, batched=True)(v)
    for i in range(x.shape[0]):
        h_i = ref_hessian(fn.scalar, x[i])
        close(grad[i], ref_jacobian(fn.scalar, x[i]), x.dtype)
        close(hess[i], h_i, x.dtype)
        close(jac[i], ref_jacobian(fn.vector, x[i]), x.dtype)
        for hv in (hv_f, hv_r, hv_op):
            close(hv[i], h_i @ v[i], x.dtype)


@HYP
@given(problems(batched=True), st.sampled_from(["forward", "reverse"]))
def test_batched_jacobian_modes_agree(case, mode):
    fn, x, _ = case
    close(
        jacobian(fn.vector, x, batched=True, mode=mode),
        jacobian(fn.vector, x, batched=True),
        x.dtype,
    )


# ----------------------------------------------------------------------------- no_grad, modules


def test_every_oracle_works_under_no_grad():
    fn, x, v = _fixed_case()
    want_h = ref_hessian(fn.scalar, x)
    want_j = ref_jacobian(fn.vector, x)
    with torch.no_grad():
        results = {
            "grad": value_and_grad(fn.scalar, x)[1],
            "hessian": hessian(fn.scalar, x),
            "hvp_f": hvp(fn.scalar, x, v, mode="forward"),
            "hvp_r": hvp(fn.scalar, x, v, mode="reverse"),
            "hvp_op": hvp_operator(fn.scalar, x)(v),
            "jacobian": jacobian(fn.vector, x),
            "jvp": jvp(fn.vector, x, v)[1],
            "vjp": vjp(fn.vector, x, torch.ones(want_j.shape[0], dtype=x.dtype))[1],
        }
    close(results["grad"], ref_jacobian(fn.scalar, x), x.dtype)
    close(results["hessian"], want_h, x.dtype)
    for key in ("hvp_f", "hvp_r", "hvp_op"):
        close(results[key], want_h @ v, x.dtype)
    close(results["jacobian"], want_j, x.dtype)
    close(results["jvp"], want_j @ v, x.dtype)
    close(results["vjp"], want_j.sum(0), x.dtype)
    assert not any(r.requires_grad for r in results.values())


def _fixed_case():
    g = torch.Generator().manual_seed(0)
    n, h, m = 4, 5, 3

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q = rand(n, n)
    fn = RandomFunction(rand(h, n), rand(h), rand(m, h), rand(m), q + q.T, "tanh")
    return fn, rand(n), rand(n)


def _model_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (10,))
    return model, x, y


def test_module_function_matches_the_models_own_loss_and_gradient():
    model, x, y = _model_problem()
    fun, theta = module_function(model, lambda out: F.cross_entropy(out, y), x)
    assert theta.shape == (sum(p.numel() for p in model.parameters()),)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    own = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    value, grad = value_and_grad(fun, theta)
    torch.testing.assert_close(value, loss.detach())
    torch.testing.assert_close(grad, own)
    # Another parameter vector gives the loss of a model holding those parameters.
    theta2 = theta + 0.1
    other = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    nn.utils.vector_to_parameters(theta2, other.parameters())
    torch.testing.assert_close(fun(theta2), F.cross_entropy(other(x), y))
    # The model itself is untouched.
    torch.testing.assert_close(nn.utils.parameters_to_vector(model.parameters()), theta)


def test_module_function_over_named_parameters_and_its_hessian():
    model, x, y = _model_problem()
    fun, theta = module_function(
        model, lambda out: F.cross_entropy(out, y), x, params=["2.bias", "0.weight"]
    )
    named = dict(model.named_parameters())
    torch.testing.assert_close(theta, torch.cat([named["2.bias"], named["0.weight"].reshape(-1)]))
    full_fun, full_theta = module_function(model, lambda out: F.cross_entropy(out, y), x)
    full_h = ref_hessian(full_fun, full_theta)
    # Flat layout: 0.weight [0, 12), 0.bias [12, 16), 2.weight [16, 24), 2.bias [24, 26).
    idx = torch.cat([torch.arange(24, 26), torch.arange(0, 12)])
    torch.testing.assert_close(hessian(fun, theta), full_h[idx][:, idx])


# ----------------------------------------------------------------------------- bad input


def _vec(x):
    return torch.stack([x.sum(-1), x.pow(2).sum(-1)], -1)


def _quad(x):
    return x.pow(2).sum(-1)


X = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: hessian(_quad, torch.tensor([1.0, float("nan")])), "x must be finite"),
        (lambda: hessian(_quad, torch.tensor([1.0, float("inf")])), "x must be finite"),
        (lambda: hessian(_quad, X[None]), r"x must have shape \(n,\)"),
        (lambda: hessian(_quad, X, batched=True), r"x must have shape \(B, n\)"),
        (lambda: hessian(_quad, torch.tensor([1, 2])), "x must have a floating dtype"),
        (lambda: hessian(_quad, [1.0, 2.0]), "x must be a torch.Tensor"),
        (lambda: hessian(_vec, X), "fun must return a scalar"),
        (lambda: value_and_grad(_vec, X), "fun must return a scalar"),
        (lambda: value_and_grad(_quad, X[None], batched=False), "fun must return a scalar"),
        (lambda: hvp(_vec, X, X, mode="reverse"), "fun must return a scalar"),
        (lambda: hvp(_vec, X, X, mode="forward"), "fun must return a scalar"),
        (lambda: hvp(_vec, X, X), "fun must return a scalar"),
        (lambda: hvp(_quad, X, X[:2]), "v must have the shape of x"),
        (lambda: hvp(_quad, X, X.to(torch.complex128)), "v must have the dtype of x"),
        (lambda: hvp(_quad, X, X.float()), "v must have the dtype of x"),
        (lambda: hvp(_quad, X, X, mode="sideways"), "mode must be"),
        (lambda: hvp_operator(_vec, X), "fun must return a scalar"),
        (lambda: jacobian(_quad, X), r"fun must return shape \(m,\)"),
        (lambda: jacobian(_vec, X, mode="sideways"), "mode must be"),
        (lambda: jvp(_vec, X, X[:2]), "v must have the shape of x"),
        (lambda: vjp(_vec, X, X), "u must have the shape of f"),
        (lambda: module_function(nn.Linear(2, 2), lambda o: o.sum(), X, params=["w"]), "params"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_module_without_trainable_parameters_is_rejected():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="params"):
        module_function(model, lambda o: o.sum(), torch.ones(1, 2))
