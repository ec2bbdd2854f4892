"""Muon: the orthogonalized step checked against the SVD polar factor; routing; batching."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from taylorch.optim import Muon, muon_param_groups, transforms

from .references import svd_polar


def one_step(model, loss_fn, **kw):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = Muon(model.parameters(), **kw)
    loss_fn().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    return before, grads, opt


EXACT = dict(
    momentum=0.0, nesterov=False, orthogonalize="polar_express", ns_steps=16, ns_dtype=None
)


def test_conv_weight_is_orthogonalized_as_out_by_in_k_k_with_its_scale():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, kernel_size=3).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    lr = 0.1
    before, grads, _ = one_step(conv, lambda: conv(x).square().mean(), lr=lr, **EXACT)
    G = grads["weight"].reshape(4, 27)
    expected = before["weight"] - lr * 0.2 * math.sqrt(27) * svd_polar(G).reshape(4, 3, 3, 3)
    assert torch.allclose(conv.weight.detach(), expected, atol=1e-10)
    # its update, seen as a 4 x 27 matrix, has all singular values equal (orthogonal rows)
    step = (before["weight"] - conv.weight.detach()).reshape(4, 27)
    sv = torch.linalg.svdvals(step)
    assert torch.allclose(sv, torch.full_like(sv, lr * 0.2 * math.sqrt(27)), rtol=1e-9)


def test_original_scale_uses_the_reshaped_shape():
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 2, kernel_size=2, bias=False).double()  # matrix [2, 32]: wide
    tall = nn.Linear(3, 12, bias=False).double()  # matrix [12, 3]: tall
    x, z = torch.randn(1, 8, 4, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    for module, inputs, scale in ((conv, x, 1.0), (tall, z, math.sqrt(12 / 3))):
        w = module.weight
        before, grads, _ = one_step(
            module,
            lambda m=module, i=inputs: m(i).square().mean(),
            lr=0.1,
            adjust_lr="original",
            **EXACT,
        )
        G = grads["weight"].reshape(w.shape[0], -1)
        expected = before["weight"] - 0.1 * scale * svd_polar(G).reshape(w.shape)
        assert torch.allclose(w.detach(), expected, atol=1e-10)


def test_non_matrix_parameters_follow_torch_adamw():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 2)).double()
    twin = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 2)).double()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(16, 4, dtype=torch.float64)
    vectors = [p for p in twin.parameters() if p.ndim < 2]
    reference = torch.optim.AdamW(vectors, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.2)
    opt = Muon(model.parameters(), lr=0.01, weight_decay=0.2)
    for _ in range(3):
        for m, o in ((model, opt), (twin, reference)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
        with torch.no_grad():  # the twin's matrices follow Muon's, so both see the same loss
            for p, q in zip(model.parameters(), twin.parameters()):
                if p.ndim >= 2:
                    q.copy_(p)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, rtol=1e-12, atol=1e-14)


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 11)

    def forward(self, tokens):
        return self.head(torch.tanh(self.mix(self.embed(tokens))))


def test_muon_param_groups_send_embeddings_and_head_to_adamw():
    model = TinyLM()
    groups = muon_param_groups(model)
    adamw_ids = {id(p) for p in groups[1]["params"]}
    assert groups[1]["use_muon"] is False
    assert adamw_ids == {id(model.embed.weight), id(model.head.weight), id(model.head.bias)}
    opt = Muon(groups, lr=0.01)
    tokens = torch.randint(0, 11, (4, 6))
    nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    opt.step()
    assert set(opt.state[model.embed.weight]) == {"step", "exp_avg", "exp_avg_sq"}
    assert set(opt.state[model.mix.weight]) == {"momentum_buffer"}
    # one state_dict for both rules
    state = opt.state_dict()["state"]
    assert len(state) == len(list(model.parameters()))


def test_same_shaped_matrices_are_orthogonalized_in_one_batched_call(monkeypatch):
    calls = []
    real = transforms.newton_schulz

    def counting(G, steps):
        calls.append(tuple(G.shape))
        return real(G, steps)

    monkeypatch.setattr(transforms, "newton_schulz", counting)
    model = nn.Sequential(*[nn.Linear(16, 16) for _ in range(4)], nn.Linear(16, 3))
    opt = Muon(model.parameters(), lr=0.01)
    model(torch.randn(8, 16)).square().mean().backward()
    opt.step()
    assert sorted(calls) == [(1, 3, 16), (4, 16, 16)]


@pytest.mark.parametrize("method", ["newton_schulz", "polar_express"])
def test_bfloat16_orthogonalization_is_close_to_the_polar_factor(method):
    torch.manual_seed(3)
    layer = nn.Linear(32, 24, bias=False)
    x = torch.randn(64, 32)
    before, grads, _ = one_step(
        layer,
        lambda: layer(x).square().mean(),
        lr=1.0,
        momentum=0.0,
        nesterov=False,
        orthogonalize=method,
        adjust_lr="original",
    )
    step = before["weight"] - layer.weight.detach()
    exact = svd_polar(grads["weight"].double()).float()
    cos = (step * exact).sum() / (step.norm() * exact.norm())
    assert cos > 0.9  # the same direction, roughly orthogonalized (5 steps, bfloat16)


class HeadFirstTiedLM(nn.Module):
    """The head is registered before the body, and tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 11, bias=False)
        self.embed = nn.Embedding(11, 8)
        self.head.weight = self.embed.weight
        self.body = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))

    def forward(self, tokens):
        return self.head(self.body(self.embed(tokens)))


def test_a_tied_head_is_found_and_stepped_once_by_adamw():
    model = HeadFirstTiedLM()
    groups = muon_param_groups(model)
    assert [id(p) for p in groups[1]["params"]] == [id(model.embed.weight)]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    opt = Muon(groups, lr=0.01)
    tokens = torch.randint(0, 11, (4, 6))
    nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    opt.step()
    assert opt.state[model.embed.weight]["step"] == 1
    # the body's last linear is a hidden layer: Muon
    assert set(opt.state[model.body[2].weight]) == {"momentum_buffer"}


def test_an_explicit_head_overrides_the_guess():
    model = TinyLM()
    groups = muon_param_groups(model, adamw_embeddings=False, head=model.mix)
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.mix.parameters()}


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_empty_and_zero_dim_parameters_are_stepped_without_error():
    empty_rows, empty_cols = nn.Linear(16, 0), nn.Linear(0, 16)
    conv = nn.Parameter(torch.zeros(0, 3, 3, 3))
    scalar = nn.Parameter(torch.tensor(2.0))
    params = [*empty_rows.parameters(), *empty_cols.parameters(), conv]
    opt = Muon([{"params": params}, {"params": [scalar], "use_muon": True}], lr=0.1)
    for p in [*params, scalar]:
        p.grad = torch.ones_like(p)
    opt.step()
    # the 0-d parameter cannot be a matrix: it takes the AdamW rule (first step: -lr sign g)
    assert float(scalar.detach()) == pytest.approx(2.0 - 0.1, rel=1e-6)
