"""Plain float64 reference implementations of each paper's rule, and the optimizer registry.

A reference works on a list of float64 tensors (one per parameter), gets values and
gradients from ``problem`` and a learning rate per step and parameter from
``lr_table``, and loops over tensors one by one: no foreach, no stacking, no shared
code with the optimizers beyond the seed derivation of the zeroth-order directions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from taylorch import optim
from taylorch.optim.zeroth_order import derive_seed


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(5, 6),
            nn.Tanh(),
            nn.Linear(6, 6),
            nn.Tanh(),
            nn.Linear(6, 6),
            nn.Tanh(),
            nn.Linear(6, 3),
        )
        self.extra = nn.Module()  # a parameter that never gets a gradient, listed last
        self.extra.register_parameter("frozen", nn.Parameter(torch.ones(4), requires_grad=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ToyProblem:
    """A small tanh network with MSE loss; two same-shaped 6x6 matrices and a frozen vector."""

    def __init__(self, dtype: torch.dtype = torch.float64, init_seed: int = 0) -> None:
        g = torch.Generator().manual_seed(0)
        self.X = torch.randn(24, 5, generator=g, dtype=dtype)
        self.Y = torch.randn(24, 3, generator=g, dtype=dtype)
        torch.manual_seed(init_seed)
        self.model = ToyNet().to(dtype)
        self.names = [n for n, _ in self.model.named_parameters()]

    def params(self) -> list[Tensor]:
        return list(self.model.parameters())

    def loss_of(self, xs: list[Tensor], X: Tensor | None = None, Y: Tensor | None = None) -> Tensor:
        out = functional_call(self.model, dict(zip(self.names, xs)), (self.X if X is None else X,))
        return ((out - (self.Y if Y is None else Y)) ** 2).mean()

    def value(self, xs: list[Tensor]) -> float:
        with torch.no_grad():
            return float(self.loss_of(xs))

    def value_and_grad(self, xs: list[Tensor]) -> tuple[float, list[Tensor | None]]:
        xs = [x.detach().requires_grad_(x_req) for x, x_req in zip(xs, self.trainable())]
        loss = self.loss_of(xs)
        wanted = [x for x in xs if x.requires_grad]
        grads = iter(torch.autograd.grad(loss, wanted))
        return float(loss.detach()), [next(grads) if x.requires_grad else None for x in xs]

    def trainable(self) -> list[bool]:
        return [p.requires_grad for p in self.model.parameters()]

    def closure_for(self, opt: torch.optim.Optimizer) -> Callable[[], Tensor]:
        def closure() -> Tensor:
            opt.zero_grad()
            loss = ((self.model(self.X) - self.Y) ** 2).mean()
            if torch.is_grad_enabled():
                loss.backward()
            return loss

        return closure


# --------------------------------------------------------------------- references
# Every reference: (x0, problem, lr_table, **hyper) -> list of tensors after the steps.
# Parameters whose gradient is None (frozen) are left untouched.


def ref_sps(x0, problem, lr_table, c=0.5, f_star=0.0, momentum=0.0, weight_decay=0.0):
    xs = [x.clone() for x in x0]
    d = [torch.zeros_like(x) for x in xs]
    for lrs in lr_table:
        f, gs = problem.value_and_grad(xs)
        live = [i for i, g in enumerate(gs) if g is not None]
        for i in live:
            d[i] = momentum * d[i] + gs[i]
        norm_sq = sum(float((d[i] ** 2).sum()) for i in live)
        polyak = max(f - f_star, 0.0) / (c * norm_sq)
        for i in live:
            gamma = min(lrs[i], polyak)
            xs[i] = xs[i] * (1 - gamma * weight_decay) - gamma * d[i]
    return xs


def ref_sls(
    x0, problem, lr_table, c=0.1, beta=0.9, gamma=2.0, n_batches_per_epoch=500, max_backtracks=100
):
    xs = [x.clone() for x in x0]
    tau = 1.0
    for lrs in lr_table:
        f, gs = problem.value_and_grad(xs)
        live = [i for i, g in enumerate(gs) if g is not None]
        tau = min(1.0, tau * gamma ** (1 / n_batches_per_epoch))
        for attempt in range(max_backtracks):
            trial = list(xs)
            for i in live:
                trial[i] = xs[i] - tau * lrs[i] * gs[i]
            drop = sum(c * tau * lrs[i] * float((gs[i] ** 2).sum()) for i in live)
            if problem.value(trial) <= f - drop or attempt == max_backtracks - 1:
                break
            tau *= beta
        xs = trial
    return xs


def ref_smb(x0, problem, lr_table, c=0.1, eta=0.99):
    xs = [x.clone() for x in x0]
    for lrs in lr_table:
        f, gs = problem.value_and_grad(xs)
        live = [i for i, g in enumerate(gs) if g is not None]
        trial = list(xs)
        for i in live:
            trial[i] = xs[i] - lrs[i] * gs[i]
        drop = sum(c * lrs[i] * float((gs[i] ** 2).sum()) for i in live)
        if problem.value(trial) <= f - drop:
            xs = trial
            continue
        _, gts = problem.value_and_grad(trial)
        for i in live:
            s, g = -lrs[i] * gs[i], gs[i]
            y = gts[i] - g
            ss, yy, gg = (s * s).sum(), (y * y).sum(), (g * g).sum()
            ys, yg, sg = (y * s).sum(), (y * g).sum(), (s * g).sum()
            sigma = 0.5 * (ss.sqrt() * (yy.sqrt() + gg.sqrt() / eta) - ys)
            theta = (ys + 2 * sigma) ** 2 - ss * yy
            cg = -ss / (2 * sigma)
            cs = cg / theta * (-(ys + 2 * sigma) * yg + yy * sg)
            cy = cg / theta * (-(ys + 2 * sigma) * sg + ss * yg)
            xs[i] = xs[i] + cs * s + cg * g + cy * y
    return xs


def ref_adabound(
    x0,
    problem,
    lr_table,
    betas=(0.9, 0.999),
    final_lr=0.1,
    gamma=1e-3,
    eps=1e-8,
    weight_decay=0.0,
    decoupled_weight_decay=False,
):
    xs = [x.clone() for x in x0]
    m = [torch.zeros_like(x) for x in xs]
    v = [torch.zeros_like(x) for x in xs]
    b1, b2 = betas
    for t, lrs in enumerate(lr_table, start=1):
        _, gs = problem.value_and_grad(xs)
        for i, g in enumerate(gs):
            if g is None:
                continue
            lr = lrs[i]
            if not decoupled_weight_decay:
                g = g + weight_decay * xs[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            if decoupled_weight_decay:
                xs[i] = xs[i] * (1 - lr * weight_decay)
            fl = final_lr * lr / lr_table[0][i]
            a = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            step = (a / (v[i].sqrt() + eps)).clamp(
                fl * (1 - 1 / (gamma * t + 1)), fl * (1 + 1 / (gamma * t))
            )
            xs[i] = xs[i] - step * m[i]
    return xs


def svd_polar(G: Tensor) -> Tensor:
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def ref_muon(
    x0,
    problem,
    lr_table,
    momentum=0.95,
    nesterov=True,
    weight_decay=0.0,
    adamw_betas=(0.9, 0.95),
    adamw_eps=1e-8,
    adamw_lr_ratio=1.0,
    **_,
):
    xs = [x.clone() for x in x0]
    buf = [torch.zeros_like(x) for x in xs]
    m = [torch.zeros_like(x) for x in xs]
    v = [torch.zeros_like(x) for x in xs]
    b1, b2 = adamw_betas
    for t, lrs in enumerate(lr_table, start=1):
        _, gs = problem.value_and_grad(xs)
        for i, g in enumerate(gs):
            if g is None:
                continue
            lr = lrs[i]
            if xs[i].ndim >= 2:
                buf[i] = momentum * buf[i] + (1 - momentum) * g
                u = (1 - momentum) * g + momentum * buf[i] if nesterov else buf[i]
                A, B = u.shape[0], u.numel() // u.shape[0]
                polar = svd_polar(u.reshape(A, B)).reshape(u.shape)
                xs[i] = xs[i] * (1 - lr * weight_decay) - lr * 0.2 * math.sqrt(max(A, B)) * polar
            else:
                lr = lr * adamw_lr_ratio
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                mh, vh = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
                xs[i] = xs[i] * (1 - lr * weight_decay) - lr * mh / (vh.sqrt() + adamw_eps)
    return xs


def zo_directions(seed, step, query, index, numel, draws):
    g = torch.Generator().manual_seed(derive_seed(seed, step, query, index, 0))
    return torch.randn((draws, numel), generator=g, dtype=torch.float32).double()


def _zo_loop(x0, problem, lr_table, eps, n_queries, seed, direction, update, draws=1, indices=None):
    """The SPSA loop; ``direction(i, noise, t)`` and ``update(i, x, coeffs, noises, lr, t)``.

    ``t`` is the 0-based step in ``direction`` and the 1-based one in ``update``.
    """
    xs = [x.clone() for x in x0]
    live = [i for i, ok in enumerate(problem.trainable()) if ok]
    indices = list(range(len(xs))) if indices is None else indices
    for t, lrs in enumerate(lr_table):
        noises = {
            i: [
                zo_directions(seed, t, q, indices[i], xs[i].numel(), draws).reshape(
                    draws, *xs[i].shape
                )
                for q in range(n_queries)
            ]
            for i in live
        }
        coeffs = []
        for q in range(n_queries):
            us = {i: direction(i, noises[i][q], t) for i in live}
            plus = [xs[i] + eps * us[i] if i in us else xs[i] for i in range(len(xs))]
            minus = [xs[i] - eps * us[i] if i in us else xs[i] for i in range(len(xs))]
            coeffs.append((problem.value(plus) - problem.value(minus)) / (2 * eps))
        for i in live:
            xs[i] = update(i, xs[i], coeffs, noises[i], lrs[i], t + 1)
    return xs


def _plain(i, z, t):
    return z[0]


def ref_zosgd(x0, problem, lr_table, eps=1e-3, n_queries=1, weight_decay=0.0, seed=0, indices=None):
    def update(i, x, coeffs, noises, lr, t):
        g = sum(c * z[0] for c, z in zip(coeffs, noises)) / len(coeffs)
        return x - lr * (g + weight_decay * x)

    return _zo_loop(x0, problem, lr_table, eps, n_queries, seed, _plain, update, indices=indices)


def ref_zoadam(
    x0,
    problem,
    lr_table,
    eps=1e-3,
    betas=(0.9, 0.999),
    adam_eps=1e-8,
    n_queries=1,
    weight_decay=0.0,
    seed=0,
    indices=None,
):
    m = [torch.zeros_like(x) for x in x0]
    v = [torch.zeros_like(x) for x in x0]
    b1, b2 = betas

    def update(i, x, coeffs, noises, lr, t):
        g = sum(c * z[0] for c, z in zip(coeffs, noises)) / len(coeffs)
        m[i] = b1 * m[i] + (1 - b1) * g
        v[i] = b2 * v[i] + (1 - b2) * g * g
        step = (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + adam_eps)
        return x - lr * step - lr * weight_decay * x

    return _zo_loop(x0, problem, lr_table, eps, n_queries, seed, _plain, update, indices=indices)


def ref_zoadamu(
    x0,
    problem,
    lr_table,
    eps=1e-3,
    total_steps=20000,
    warmup_steps=1024,
    anneal_end=0.8,
    varphi=(1.0, 0.1, 1.5),
    sigma=1e-8,
    n_queries=1,
    weight_decay=0.0,
    seed=0,
    indices=None,
):
    """ZO-AdaMU as the authors' trainer runs it: each annealed weight keeps a period
    ``limit`` (first ``total_steps``) that shrinks in place once per step of the second
    phase; perturbation ``m``, second moment ``v``, step ``c m / sqrt(v + sigma)``, and
    ``sign(c) m`` becomes the centre of the next perturbation."""
    hist = [torch.zeros_like(x) for x in x0]
    end = int(total_steps * anneal_end)
    limits = [float(total_steps)] * 3
    weights_at: dict[int, list[float]] = {}

    def weights(t):  # (alpha, beta1, beta2) at 0-based step t, advanced once per step
        if t not in weights_at:
            out = []
            for j, phi in enumerate(varphi):
                if t < warmup_steps:
                    w = 1.0
                elif t < end:
                    w = 0.5 * (1 + math.cos(math.pi * (t - warmup_steps) / limits[j]))
                    limits[j] -= phi * (total_steps - end) / (end - warmup_steps)
                else:
                    w = 0.5 * (1 + math.cos(math.pi * (end - warmup_steps) / limits[j]))
                out.append(w)
            weights_at[t] = out
        return weights_at[t]

    def parts(i, z, t):
        alpha = weights(t)[0]
        return math.sqrt(alpha) * z[0], hist[i] + math.sqrt(1 - alpha) * z[1]

    def direction(i, z, t):
        beta1 = weights(t)[1]
        zd, zdd = parts(i, z, t)
        return beta1 * zd + (1 - beta1) * zdd

    def update(i, x, coeffs, noises, lr, t):
        beta2 = weights(t - 1)[2]
        us = [direction(i, z, t - 1) for z in noises]
        g = sum(c * u for c, u in zip(coeffs, us)) / len(us)
        pairs = [parts(i, z, t - 1) for z in noises]
        v = sum(beta2 * a * a + (1 - beta2) * b * b for a, b in pairs) / len(pairs)
        hist[i] = sum(math.copysign(1.0, c) * u for c, u in zip(coeffs, us)) / len(us)
        return x - lr * (g / (v + sigma).sqrt() + weight_decay * x)

    return _zo_loop(
        x0, problem, lr_table, eps, n_queries, seed, direction, update, draws=2, indices=indices
    )


# ----------------------------------------------------------------------- registry


@dataclass
class Case:
    """One optimizer under test: constructor, hyperparameters, reference, bad inputs."""

    name: str
    cls: type
    hyper: dict[str, Any]
    reference: Callable[..., list[Tensor]]
    lr: float
    bad: list[dict[str, Any]] = field(default_factory=list)
    zeroth_order: bool = False
    needs_closure: bool = True

    def reference_for(self, opt, problem, x0, lr_table) -> list[Tensor]:
        """Run the reference; zeroth-order ones need each parameter's index in ``opt``."""
        extra = {}
        if self.zeroth_order:
            order = [id(p) for g in opt.param_groups for p in g["params"]]
            extra["indices"] = [order.index(id(p)) for p in problem.params()]
        return self.reference(x0, problem, lr_table, **self.hyper, **extra)

    def make(self, params, **overrides) -> torch.optim.Optimizer:
        return self.cls(params, **{"lr": self.lr, **self.hyper, **overrides})


NEG_LR = {"lr": -1.0}
CASES = [
    Case(
        "SPS",
        optim.SPS,
        dict(c=0.5, weight_decay=0.3),
        ref_sps,
        0.3,
        [NEG_LR, {"c": 0.0}, {"momentum": 1.0}, {"weight_decay": -1.0}],
    ),
    Case(
        "PolyakMomentum",
        optim.PolyakMomentum,
        dict(c=1.0, momentum=0.9, weight_decay=0.3),
        ref_sps,
        0.3,
        [NEG_LR, {"momentum": -0.1}],
    ),
    Case(
        "SLS",
        optim.SLS,
        dict(c=0.1, beta=0.7, gamma=2.0, n_batches_per_epoch=3),
        ref_sls,
        3.0,
        [NEG_LR, {"beta": 1.0}, {"gamma": 0.5}, {"n_batches_per_epoch": 0}],
    ),
    Case("SMB", optim.SMB, dict(c=0.1, eta=0.99), ref_smb, 2.0, [NEG_LR, {"eta": 0.0}]),
    Case(
        "AdaBound",
        optim.AdaBound,
        dict(final_lr=0.05, gamma=0.1, weight_decay=0.3),
        ref_adabound,
        0.02,
        [NEG_LR, {"betas": (1.0, 0.9)}, {"final_lr": 0.0}],
        needs_closure=False,
    ),
    Case(
        "AdaBoundW",
        optim.AdaBound,
        dict(final_lr=0.05, gamma=0.1, weight_decay=0.3, decoupled_weight_decay=True),
        ref_adabound,
        0.02,
        [{"eps": -1.0}],
        needs_closure=False,
    ),
    Case(
        "Muon",
        optim.Muon,
        dict(
            momentum=0.9,
            weight_decay=0.3,
            orthogonalize="polar_express",
            ns_steps=16,
            ns_dtype=None,
        ),
        ref_muon,
        0.05,
        [
            NEG_LR,
            {"momentum": 1.0},
            {"ns_steps": 0},
            {"orthogonalize": "qr"},
            {"adamw_betas": (0.9, 1.5)},
            {"adjust_lr": "none"},
            {"ns_lower": 0.0},
        ],
        needs_closure=False,
    ),
    Case(
        "ZOSGD",
        optim.ZOSGD,
        dict(eps=1e-3, n_queries=2, weight_decay=0.3, seed=7),
        ref_zosgd,
        0.05,
        [NEG_LR, {"eps": 0.0}, {"n_queries": 0}, {"seed": -1}],
        zeroth_order=True,
    ),
    Case(
        "ZOAdam",
        optim.ZOAdam,
        dict(eps=1e-3, n_queries=2, weight_decay=0.3, seed=7),
        ref_zoadam,
        0.01,
        [NEG_LR, {"betas": (0.9, 1.0)}],
        zeroth_order=True,
    ),
    Case(
        "ZOAdaMU",
        optim.ZOAdaMU,
        # 4 steps cover the three phases: warm-up (t = 0), cosine (t = 1), held (t = 2, 3)
        dict(
            eps=1e-3,
            total_steps=4,
            warmup_steps=1,
            anneal_end=0.6,
            n_queries=2,
            weight_decay=0.3,
            seed=7,
        ),
        ref_zoadamu,
        0.01,
        [
            NEG_LR,
            {"warmup_steps": 2},
            {"varphi": (1.0, 0.1, 2.0)},
            {"sigma": 0.0},
            {"anneal_end": 1.5},
            {"total_steps": 0},
        ],
        zeroth_order=True,
    ),
]
CASE_IDS = [c.name for c in CASES]
