"""Training tasks: small models that show how optimizers compare on real losses.

* ``digits-logreg``: multinomial logistic regression on scikit-learn's bundled
  8x8 digits (1797 images, 64 features, 10 classes); a convex problem.
* ``digits-mlp``: a 64-64-10 tanh MLP on the same data.
* ``char-transformer``: a one-layer causal transformer predicting the next
  character of a public-domain text shipped with taylorch (Shakespeare's
  sonnets and the Gettysburg Address, ``taylorch/data/text/sonnets.txt``).

Each task is built from a seed: the same seed gives the same initial weights
and the same sequence of mini-batches, so optimizers see identical data.
The loss reported is the mean loss over a fixed evaluation set (the whole
training set for the digits, 64 fixed windows for the text).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import torch
from torch import Tensor, nn

__all__ = ["TRAINING_TASKS", "TrainingSetup", "TrainingTask", "load_text"]


@dataclass
class TrainingSetup:
    """A built task: the model, a seeded batch sampler and the two losses."""

    model: nn.Module
    next_batch: Callable[[], tuple[Tensor, Tensor]]
    loss: Callable[[nn.Module, tuple[Tensor, Tensor]], Tensor]
    eval_batch: tuple[Tensor, Tensor]

    def eval_loss(self) -> float:
        with torch.no_grad():
            return float(self.loss(self.model, self.eval_batch))


@dataclass(frozen=True)
class TrainingTask:
    """A named training problem: ``build(seed, dtype, device) -> TrainingSetup``."""

    name: str
    description: str
    build: Callable[[int, torch.dtype, torch.device], TrainingSetup]
    steps: int
    requires: str | None = None  # a module the task needs ("sklearn")

    def unavailable(self) -> str | None:
        if self.requires and importlib.util.find_spec(self.requires) is None:
            package = {"sklearn": "scikit-learn"}.get(self.requires, self.requires)
            return f"{self.name} needs {package}, which is not installed (pip install {package})"
        return None


def _cross_entropy(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    inputs, targets = batch
    logits = model(inputs)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _sampler(n: int, batch_size: int, gen: torch.Generator, data: tuple[Tensor, Tensor]):
    def next_batch() -> tuple[Tensor, Tensor]:
        idx = torch.randint(n, (batch_size,), generator=gen)
        return data[0][idx], data[1][idx]

    return next_batch


@cache
def _digits() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    return x, torch.tensor(y, dtype=torch.long)


def _digits_task(hidden: int | None) -> Callable[[int, torch.dtype, torch.device], TrainingSetup]:
    def build(seed: int, dtype: torch.dtype, device: torch.device) -> TrainingSetup:
        x, y = _digits()
        x, y = x.to(dtype=dtype, device=device), y.to(device)
        torch.manual_seed(seed)
        if hidden is None:
            model = nn.Linear(64, 10)
        else:
            model = nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 10))
        model = model.to(dtype=dtype, device=device)
        gen = torch.Generator().manual_seed(seed)
        return TrainingSetup(model, _sampler(len(y), 128, gen, (x, y)), _cross_entropy, (x, y))

    return build


@cache
def load_text() -> str:
    """The public-domain training text shipped with taylorch."""
    return (files("taylorch") / "data" / "text" / "sonnets.txt").read_text(encoding="utf-8")


class CharTransformer(nn.Module):
    """Token + position embedding, one pre-norm causal self-attention block, linear head."""

    def __init__(self, vocab: int, context: int, width: int = 32, heads: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(0.02 * torch.randn(context, width))
        self.block = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        mask = nn.Transformer.generate_square_subsequent_mask(context)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        t = tokens.shape[-1]
        h = self.embed(tokens) + self.position[:t]
        h = self.block(h, src_mask=self.mask[:t, :t].to(h.dtype), is_causal=True)
        return self.head(self.norm(h))


def _char_task(context: int = 32) -> Callable[[int, torch.dtype, torch.device], TrainingSetup]:
    def build(seed: int, dtype: torch.dtype, device: torch.device) -> TrainingSetup:
        text = load_text()
        vocab = sorted(set(text))
        ids = torch.tensor([vocab.index(c) for c in text], dtype=torch.long, device=device)
        windows = ids.unfold(0, context + 1, 1)  # (N, context + 1)
        data = (windows[:, :-1], windows[:, 1:])
        torch.manual_seed(seed)
        model = CharTransformer(len(vocab), context).to(dtype=dtype, device=device)
        gen = torch.Generator().manual_seed(seed)
        eval_idx = torch.randperm(len(windows), generator=torch.Generator().manual_seed(12345))
        eval_batch = (data[0][eval_idx[:64]], data[1][eval_idx[:64]])
        return TrainingSetup(
            model, _sampler(len(windows), 16, gen, data), _cross_entropy, eval_batch
        )

    return build


TRAINING_TASKS: dict[str, TrainingTask] = {
    t.name: t
    for t in (
        TrainingTask("digits-logreg", "logistic regression, sklearn digits (64 -> 10)",
                     _digits_task(None), steps=150, requires="sklearn"),
        TrainingTask("digits-mlp", "MLP 64-64-10 (tanh), sklearn digits",
                     _digits_task(64), steps=200, requires="sklearn"),
        TrainingTask("char-transformer", "1-layer causal transformer (width 32), next character, 6 KB text",
                     _char_task(), steps=150),
    )
}  # fmt: skip
