"""Curvature operators and estimators against dense autograd matrices and closed-form variances."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from taylorch.curvature import (
    empirical_fisher_operator,
    ggn_operator,
    hessian_operator,
    hutchinson_diag,
    hutchinson_trace,
    per_sample_gradients,
    spectral_density,
    top_eigenvalues,
)
from taylorch.derivatives import module_function
from taylorch.linalg import LinearOperator

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def problem():
    """A small float64 classifier (51 parameters) on a batch of 16."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(16, 4, generator=gen(1), dtype=F64)
    y = torch.randint(0, 3, (16,), generator=gen(2))
    return model, F.cross_entropy, x, y


def dense_hessian(model, loss_fn, x, y):
    fun, theta = module_function(model, lambda out: loss_fn(out, y), x)
    return torch.autograd.functional.hessian(fun, theta)


def symmetric(n, seed=0):
    a = torch.randn(n, n, generator=gen(seed), dtype=F64)
    return a + a.T


# ----------------------------------------------------------------------------- operators


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_hessian_operator_equals_dense_hessian(problem, mode):
    op = hessian_operator(*problem, mode=mode)
    h = dense_hessian(*problem)
    assert op.shape == (51, 51) and op.symmetric and op.dtype == F64
    torch.testing.assert_close(op.to_dense(), h, rtol=1e-10, atol=1e-12)
    v = torch.randn(51, generator=gen(3), dtype=F64)
    torch.testing.assert_close(op @ v, h @ v, rtol=1e-10, atol=1e-12)


def test_hessian_operator_of_named_parameters(problem):
    model, loss_fn, x, y = problem
    op = hessian_operator(model, loss_fn, x, y, params=["2.weight", "2.bias"])
    # The last layer's parameters are the final 21 entries of the flat vector.
    torch.testing.assert_close(op.to_dense(), dense_hessian(*problem)[-21:, -21:])


def test_ggn_operator_equals_dense_jt_h_j(problem):
    model, loss_fn, x, y = problem
    model_fn, theta = module_function(model, lambda out: out, x)
    jac = torch.autograd.functional.jacobian(model_fn, theta).reshape(48, 51)
    out = model_fn(theta).reshape(-1)
    h_out = torch.autograd.functional.hessian(lambda z: loss_fn(z.reshape(16, 3), y), out)
    op = ggn_operator(*problem)
    assert op.psd
    torch.testing.assert_close(op.to_dense(), jac.T @ h_out @ jac, rtol=1e-10, atol=1e-12)


def test_ggn_equals_hessian_for_a_linear_model_with_squared_error():
    model = nn.Linear(5, 2).double()
    x = torch.randn(20, 5, generator=gen(4), dtype=F64)
    y = torch.randn(20, 2, generator=gen(5), dtype=F64)
    ggn = ggn_operator(model, F.mse_loss, x, y).to_dense()
    torch.testing.assert_close(ggn, dense_hessian(model, F.mse_loss, x, y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_empirical_fisher_equals_sum_of_outer_products(problem, reduction):
    model, loss_fn, x, y = problem
    grads = []
    for i in range(16):
        model.zero_grad()
        loss_fn(model(x[i : i + 1]), y[i : i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    g = torch.stack(grads)
    want = g.T @ g / (16 if reduction == "mean" else 1)
    op = empirical_fisher_operator(*problem, reduction=reduction)
    assert op.psd
    torch.testing.assert_close(op.to_dense(), want, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(per_sample_gradients(*problem), g, rtol=1e-10, atol=1e-14)
    # The mean of the per-sample gradients is the batch gradient.
    model.zero_grad()
    loss_fn(model(x), y).backward()
    batch = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(g.mean(0), batch)


def test_operators_take_several_inputs_and_no_targets():
    class Bilinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 2).double()
            self.b = nn.Linear(2, 2).double()

        def forward(self, u, w):
            return torch.tanh(self.a(u)) * self.b(w)

    model = Bilinear()
    u = torch.randn(8, 3, generator=gen(6), dtype=F64)
    w = torch.randn(8, 2, generator=gen(7), dtype=F64)

    def loss(out, _):
        return out.pow(2).sum(dim=1).mean()

    fun, theta = module_function(model, lambda out: loss(out, None), (u, w))
    h = torch.autograd.functional.hessian(fun, theta)
    torch.testing.assert_close(hessian_operator(model, loss, (u, w)).to_dense(), h)
    per_sample = per_sample_gradients(model, loss, (u, w))
    assert per_sample.shape == (8, theta.numel())
    torch.testing.assert_close(per_sample.mean(0), torch.func.grad(fun)(theta))


def test_operators_leave_the_model_unchanged(problem):
    model = problem[0]
    before = [p.detach().clone() for p in model.parameters()]
    hessian_operator(*problem).to_dense()
    ggn_operator(*problem).to_dense()
    empirical_fisher_operator(*problem)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q) and p.grad is None


# ----------------------------------------------------------------------------- estimators


def test_top_eigenvalue_of_a_model_hessian_matches_eigvalsh(problem):
    exact = torch.linalg.eigvalsh(dense_hessian(*problem))
    op = hessian_operator(*problem)
    top, vecs = top_eigenvalues(op, 3, seed=0)
    torch.testing.assert_close(top, exact.flip(0)[:3], rtol=1e-6, atol=0)
    torch.testing.assert_close(vecs.T @ vecs, torch.eye(3, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(op @ vecs[:, 0], top[0] * vecs[:, 0], rtol=0, atol=1e-6)
    low = top_eigenvalues(op, 1, which="smallest", seed=0)[0]
    torch.testing.assert_close(low, exact[:1], rtol=1e-6, atol=1e-9)
    big = top_eigenvalues(op, 1, which="magnitude", seed=0)[0]
    torch.testing.assert_close(big.abs(), exact.abs().max()[None], rtol=1e-6, atol=0)


def test_top_eigenvalues_of_a_ggn_match_eigvalsh(problem):
    op = ggn_operator(*problem)
    exact = torch.linalg.eigvalsh(op.to_dense())
    torch.testing.assert_close(
        top_eigenvalues(op, 2, seed=1)[0], exact.flip(0)[:2], rtol=1e-6, atol=0
    )


def test_hutchinson_is_exact_for_a_diagonal_operator():
    d = torch.linspace(-3, 5, 30, dtype=F64)
    torch.testing.assert_close(hutchinson_diag(torch.diag(d), 3, seed=0), d)
    torch.testing.assert_close(hutchinson_trace(torch.diag(d), 1, seed=0), d.sum())


def test_hutchinson_diag_and_trace_are_unbiased_within_their_standard_error():
    a = symmetric(40, seed=3) + 2 * torch.diag(torch.linspace(-5, 5, 40, dtype=F64))
    probes = 4000
    est = hutchinson_diag(a, probes, seed=11)
    off = a - torch.diag(torch.diag(a))
    std = (off.pow(2).sum(1) / probes).sqrt()
    assert ((est - torch.diag(a)).abs() <= 5 * std).all()
    trace = hutchinson_trace(a, probes, seed=12)
    trace_std = (2 * off.pow(2).sum() / probes).sqrt()
    assert (trace - torch.trace(a)).abs() <= 5 * trace_std
    # The error shrinks as it should: well above the 5-sigma band with few probes.
    assert (hutchinson_diag(a, 4, seed=11) - torch.diag(a)).abs().max() > 5 * std.max()


def test_hutchinson_on_a_model_hessian(problem):
    h = dense_hessian(*problem)
    probes = 300
    op = hessian_operator(*problem, mode="forward")
    est = hutchinson_diag(op, probes, block_size=100, seed=5)
    std = ((h - torch.diag(torch.diag(h))).pow(2).sum(1) / probes).sqrt()
    assert ((est - torch.diag(h)).abs() <= 5 * std + 1e-12).all()


def test_seeds_and_generators_make_estimates_reproducible():
    a = symmetric(10)
    one = hutchinson_diag(a, 7, seed=3, block_size=2)
    two = hutchinson_diag(a, 7, generator=gen(3), block_size=2)
    torch.testing.assert_close(one, two, rtol=0, atol=0)
    assert not torch.equal(one, hutchinson_diag(a, 7, seed=4))
    s1, s2 = spectral_density(a, num_steps=5, seed=1), spectral_density(a, num_steps=5, seed=1)
    torch.testing.assert_close(s1.density, s2.density, rtol=0, atol=0)


def test_estimators_accept_a_callable_with_n():
    with torch.device("cpu"):
        a = symmetric(12).to(torch.get_default_dtype())
    values = top_eigenvalues(lambda v: a @ v, 1, n=12, num_steps=12, seed=0)[0]
    torch.testing.assert_close(values, torch.linalg.eigvalsh(a)[-1:], rtol=1e-4, atol=1e-4)
    exact = hutchinson_trace(lambda v: torch.diag(torch.diag(a)) @ v, 2, n=12, seed=0)
    torch.testing.assert_close(exact, torch.trace(a))


def test_slq_density_integrates_to_one_and_matches_moments():
    lam = torch.cat([torch.linspace(-2, -1, 20), torch.linspace(0.5, 4, 60)]).double()
    q, _ = torch.linalg.qr(torch.randn(80, 80, generator=gen(8), dtype=F64))
    a = (q * lam) @ q.T
    a = (a + a.T) / 2
    a2 = a @ a
    n, probes = 80, 100
    sd = spectral_density(LinearOperator.from_dense(a), num_probes=probes, num_steps=30, seed=9)
    assert sd.nodes.shape == (probes, 30) and sd.grid.shape == sd.density.shape == (1000,)
    torch.testing.assert_close(sd.weights.sum(), torch.tensor(1.0, dtype=F64))
    assert spectral_density(a, num_probes=2, seed=0).nodes.shape == (2, 50)
    torch.testing.assert_close(torch.trapezoid(sd.density, sd.grid), torch.tensor(1.0, dtype=F64))
    assert (sd.density >= 0).all()
    # Quadrature moments are unbiased for tr(A^p)/n; the standard errors are
    # Hutchinson's, 2 (||B||_F^2 - sum B_ii^2) / (n^2 L) with B = A^p.
    for p, b in ((1, a), (2, a2)):
        moment = (sd.weights * sd.nodes**p).sum()
        var = 2 * (b.pow(2).sum() - torch.diag(b).pow(2).sum()) / (n**2 * probes)
        assert (moment - torch.trace(b) / n).abs() <= 5 * var.sqrt()
    # The smoothed density carries the same moments (the kernel adds sigma^2 to the second).
    m1 = (sd.weights * sd.nodes).sum()
    m2 = (sd.weights * sd.nodes**2).sum()
    torch.testing.assert_close(torch.trapezoid(sd.grid * sd.density, sd.grid), m1)
    torch.testing.assert_close(torch.trapezoid(sd.grid**2 * sd.density, sd.grid), m2 + sd.sigma**2)
    # No mass in the spectral gap (-1, 0.5), away from the kernel tails.
    gap = (sd.grid > -0.7) & (sd.grid < 0.2)
    assert sd.density[gap].max() < 1e-3 * sd.density.max()
    # The mass below zero is the fraction of negative eigenvalues, 20/80.
    below = torch.trapezoid(sd.density * (sd.grid < -0.25), sd.grid)
    assert abs(below.item() - 0.25) <= 5 * (0.25 * 0.75 / probes) ** 0.5


def test_slq_with_n_steps_has_the_exact_eigenvalues_as_nodes():
    lam = torch.tensor([-1.0, 0.5, 2.0, 3.0], dtype=F64).repeat_interleave(3)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=gen(10), dtype=F64))
    a = (q * lam) @ q.T
    sd = spectral_density((a + a.T) / 2, num_probes=4, seed=0)  # default: min(n, 50) steps
    assert sd.nodes.shape == (4, 12)
    heavy = sd.nodes[sd.weights > 1e-8]
    assert (heavy[:, None] - lam.unique()).abs().min(1).values.max() < 1e-10


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a: hutchinson_diag(a, 0), "num_probes"),
        (lambda a: hutchinson_diag(a, 5, block_size=0), "block_size"),
        (lambda a: hutchinson_diag(a, 5, seed=1, generator=gen(1)), "generator or seed"),
        (lambda a: hutchinson_trace(lambda v: v, 5), "n must"),
        (lambda a: hutchinson_trace("A", 5), "operator"),
        (lambda a: top_eigenvalues(a, 7), "k must"),
        (lambda a: top_eigenvalues(a, 0), "k must"),
        (lambda a: top_eigenvalues(a, 2, num_steps=1), "num_steps"),
        (lambda a: top_eigenvalues(a, 1, which="biggest"), "which"),
        (lambda a: spectral_density(a, num_steps=7), "num_steps"),
        (lambda a: spectral_density(a, num_steps=3, sigma=0.0), "sigma"),
        (lambda a: spectral_density(a, num_probes=0), "num_probes"),
        (lambda a: spectral_density(torch.ones(3, 4, dtype=F64)), "square"),
    ],
)
def test_estimators_reject_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(symmetric(6))


def test_operators_reject_bad_input(problem):
    model, loss_fn, x, y = problem
    with pytest.raises(ValueError, match="mode"):
        hessian_operator(model, loss_fn, x, y, mode="sideways")
    with pytest.raises(TypeError, match="loss_fn"):
        ggn_operator(model, "ce", x, y)
    with pytest.raises(ValueError, match="reduction"):
        empirical_fisher_operator(model, loss_fn, x, y, reduction="max")
    with pytest.raises(ValueError, match="batch size"):
        empirical_fisher_operator(model, loss_fn, x, y[:5])
    with pytest.raises(ValueError, match="params"):
        hessian_operator(model, loss_fn, x, y, params=["nope"])


# -- found by probing with models and inputs the suite did not use ---------------------


@pytest.mark.parametrize("layer", [nn.BatchNorm1d(8), nn.Dropout(0.2)])
def test_train_mode_models_are_refused_and_left_unchanged(layer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), layer, nn.Tanh(), nn.Linear(8, 2)).double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for build in (hessian_operator, ggn_operator):
        with pytest.raises(ValueError, match=r"model\.1 .* training mode.*model\.eval\(\)"):
            build(model, F.mse_loss, x, y)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running statistics untouched
    model.eval()
    dense = hessian_operator(model, F.mse_loss, x, y).to_dense()
    fun, theta = module_function(model, lambda out: F.mse_loss(out, y), x)
    torch.testing.assert_close(dense, torch.autograd.functional.hessian(fun, theta))


def test_to_dense_in_blocks_equals_one_block(problem):
    model, loss_fn, x, y = problem
    op = hessian_operator(model, loss_fn, x, y)
    whole = op.matmat(torch.eye(op.shape[1], dtype=op.dtype))
    for block in (1, 7, op.shape[1]):
        torch.testing.assert_close(op.to_dense(block_size=block), whole)
    with pytest.raises(ValueError, match="block_size"):
        op.to_dense(block_size=0)


def test_forward_mode_without_support_is_a_clear_error_at_construction(problem):
    model, _, x, _ = problem
    target = torch.randn(x.shape[0], 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"mode='forward'.*use mode='reverse'"):
        hessian_operator(model.eval(), F.mse_loss, x, target, mode="forward")


def test_params_given_as_a_string_or_twice_are_errors(problem):
    model, loss_fn, x, y = problem
    name = next(iter(dict(model.named_parameters())))
    with pytest.raises(TypeError, match="sequence of parameter names"):
        hessian_operator(model, loss_fn, x, y, params=name)
    with pytest.raises(ValueError, match="more than once"):
        hessian_operator(model, loss_fn, x, y, params=[name, name])


def test_lanczos_estimators_refuse_a_nonsymmetric_matrix():
    a = torch.triu(torch.ones(4, 4, dtype=torch.float64)) * torch.arange(1.0, 5.0)
    with pytest.raises(ValueError, match="must be symmetric"):
        top_eigenvalues(a, 1)
    with pytest.raises(ValueError, match="must be symmetric"):
        spectral_density(a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spectral_density_of_one_repeated_eigenvalue_integrates_to_one(dtype):
    sd = spectral_density(3.0 * torch.eye(50, dtype=dtype), seed=0)
    assert len(torch.unique(sd.grid)) == sd.grid.numel()
    mass = torch.trapezoid(sd.density.double(), sd.grid.double())
    assert float(mass) == pytest.approx(1.0, abs=1e-3)
    peak = sd.grid[sd.density.argmax()]
    assert float(peak) == pytest.approx(3.0, rel=1e-5)


def test_top_eigenvalues_warns_when_its_ritz_pairs_have_not_converged():
    # 1.002 and 1.001 sit on a continuum ending at 1: 46 steps do not separate them.
    spectrum = torch.cat([torch.tensor([5.0, 1.002, 1.001]), torch.linspace(0, 1, 1997)])
    a = torch.diag(spectrum.double())
    with pytest.warns(RuntimeWarning, match="larger num_steps"):
        top_eigenvalues(a, 3, seed=0)
    values, _ = top_eigenvalues(a, 3, seed=0, num_steps=400)  # enough: no warning
    torch.testing.assert_close(values, spectrum[:3].double(), atol=1e-8, rtol=0)


class _Attention(nn.Module):
    """Self-attention and a linear head: eval mode runs torch's fused fast path."""

    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.attention(x, x, x)[0].mean(1))


class _Encoder(nn.Module):
    """A transformer encoder layer (scaled-dot-product attention) and a linear head."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.layer(x).mean(1))


class _Recurrent(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.rnn = getattr(nn, kind)(3, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("attention", F64), ("encoder", F64), ("LSTM", torch.float32), ("GRU", F64)],
)
def test_ggn_and_hessian_of_attention_and_recurrent_models_match_dense(name, dtype):
    # Forward-mode products failed on these (no forward derivative for the fused
    # attention fast path or oneDNN's LSTM), reverse-over-reverse ones on the fused
    # scaled-dot-product attention kernel (no second derivative).
    torch.manual_seed(0)
    model = {"attention": _Attention, "encoder": _Encoder}.get(name, lambda: _Recurrent(name))()
    model = model.to(dtype).eval()
    shape = {"attention": (6, 5, 8), "encoder": (6, 5, 4)}.get(name, (6, 4, 3))
    x = torch.randn(*shape, generator=gen(7), dtype=dtype)
    y = torch.randint(0, 3, (6,), generator=gen(8))
    model_fn, theta = module_function(model, lambda out: out, x)
    jac = torch.autograd.functional.jacobian(model_fn, theta).reshape(18, -1).double()
    out = model_fn(theta).detach().double().reshape(-1)
    h_out = torch.autograd.functional.hessian(lambda z: F.cross_entropy(z.reshape(6, 3), y), out)
    v = torch.randn(theta.numel(), generator=gen(9), dtype=dtype)
    tol = {"rtol": 1e-9, "atol": 1e-11} if dtype == F64 else {"rtol": 1e-4, "atol": 1e-5}
    ggn = ggn_operator(model, F.cross_entropy, x, y)
    torch.testing.assert_close((ggn @ v).double(), jac.T @ h_out @ jac @ v.double(), **tol)
    hessian = hessian_operator(model, F.cross_entropy, x, y)
    fun, theta = module_function(model, lambda out: F.cross_entropy(out, y), x)
    dense = torch.autograd.functional.hessian(fun, theta)
    torch.testing.assert_close(hessian @ v, dense @ v, **tol)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_per_sample_gradients_of_recurrent_models(kind):
    # vmap has no batching rule for the recurrent kernels: one sample at a time.
    torch.manual_seed(0)
    model = _Recurrent(kind).double().eval()
    x = torch.randn(6, 4, 3, generator=gen(10), dtype=F64)
    y = torch.randint(0, 3, (6,), generator=gen(11))
    grads = []
    for i in range(6):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(
        per_sample_gradients(model, F.cross_entropy, x, y),
        torch.stack(grads),
        rtol=1e-10,
        atol=1e-13,
    )


@pytest.mark.parametrize(
    ("model", "culprit"),
    [
        (
            lambda: nn.Sequential(nn.Linear(3, 8), nn.RReLU(), nn.Linear(8, 3)),
            r"model\.1 \(RReLU\)",
        ),
        (lambda: nn.LSTM(3, 3, num_layers=2, dropout=0.5), r"model\.<root> \(LSTM\)"),
        (lambda: _Attention(), r"model\.attention \(MultiheadAttention\)"),
    ],
)
def test_models_that_draw_random_numbers_in_training_mode_are_refused(model, culprit):
    module = model()
    if isinstance(module, _Attention):
        module.attention.dropout = 0.5
    x = torch.randn(4, 5, 8) if isinstance(module, _Attention) else torch.randn(4, 5, 3)
    with pytest.raises(ValueError, match=culprit + ".*training mode"):
        ggn_operator(module.train(), lambda out, y: out[0].pow(2).sum(), x)


def test_dropout_of_probability_zero_in_training_mode_is_the_identity():
    # A transformer layer built with dropout=0.0 holds Dropout(p=0) modules: deterministic.
    torch.manual_seed(0)
    model = _Encoder().double()
    x = torch.randn(6, 5, 4, generator=gen(12), dtype=F64)
    y = torch.randint(0, 3, (6,), generator=gen(13))
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=gen(14), dtype=F64)
    trained = ggn_operator(model.train(), F.cross_entropy, x, y) @ v
    torch.testing.assert_close(trained, ggn_operator(model.eval(), F.cross_entropy, x, y) @ v)
