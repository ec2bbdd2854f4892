"""report.html: parses, embeds every plot as a PNG that decodes, escapes user-given names."""

import base64
import io
from html.parser import HTMLParser

import matplotlib.image
import torch

from taylorch.bench import Problem, Settings, run
from taylorch.bench.methods.optimizers import select_training
from taylorch.bench.problems.training import TRAINING_TASKS
from taylorch.bench.report import write_report
from taylorch.bench.train import run_training

EVIL = '<script>alert("x")</script> $\\alpha$ & co'


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _records():
    problems = [
        Problem(EVIL, x0=torch.tensor([-1.2, 1.0], dtype=torch.float64),
                fun=lambda x: (1 - x[..., 0]) ** 2 + 100 * (x[..., 1] - x[..., 0] ** 2) ** 2,
                f_star=0.0),
        Problem("shifted sphere", x0=torch.ones(3, dtype=torch.float64),
                fun=lambda x: ((x - 2) ** 2).sum(-1), f_star=0.0),
    ]  # fmt: skip
    solved = run(problems, methods="taylorch:bfgs,scipy:bfgs,scipy:lm",
                 settings=Settings(max_evals=300, max_time=5.0)).records  # fmt: skip
    trained = run_training([TRAINING_TASKS["digits-logreg"]], select_training("adamw,sgd"),
                           steps=5, sweep=1)  # fmt: skip
    return solved + trained


def test_report_contains_every_plot_and_escapes_names(tmp_path):
    records = _records()
    path = write_report(records, {"command": EVIL}, tmp_path)
    text = path.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(text)
    parser.close()
    pngs = sorted(tmp_path.glob("*.png"))
    names = {p.name for p in pngs}
    assert names == {"custom_profile.png", "custom_convergence_evals.png",
                     "custom_convergence_time.png", "training_training.png"}  # fmt: skip
    assert len(parser.images) == len(pngs)
    embedded = set()
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        embedded.add(raw)
        image = matplotlib.image.imread(io.BytesIO(raw), format="png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert embedded == {p.read_bytes() for p in pngs}
    assert "<script>" not in text and "script" not in parser.tags
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert EVIL in "".join(parser.text)  # shown to the reader as written
    for header in ("custom", "training", "digits-logreg", "taylorch:bfgs", "torch.optim:sgd"):
        assert header in text
