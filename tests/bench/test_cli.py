"""``taylorch bench``: the quick run end to end, the listing, and argument errors."""

import json
import os
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import torch

from taylorch.cli import main


def test_bench_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    assert main(["bench", "--quick", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # --threads applies to the run only
    printed = capsys.readouterr().out
    for title in ("small", "batched-default", "nist-default", "training-default: digits-mlp"):
        assert title in printed
    doc = json.loads((out / "results.json").read_text())
    suites = {r["suite"] for r in doc["runs"]}
    assert suites == {"small", "batched-default", "nist-default", "training-default"}
    assert doc["meta"]["quick"] is True and doc["meta"]["torch_threads"] == 1
    ran = [r for r in doc["runs"] if r["status"] not in ("unavailable", "unsupported")]
    assert ran and sum(r["status"] == "solved" for r in ran) >= len(ran) // 2
    assert any(r["library"] == "scipy" for r in ran) and any(
        r["library"] == "taylorch" for r in ran
    )
    html = (out / "report.html").read_text()
    HTMLParser().feed(html)
    assert html.count("data:image/png;base64,") == len(list(out.glob("*.png"))) >= 4


def test_bench_list(capsys):
    assert main(["bench", "--list"]) == 0
    printed = capsys.readouterr().out
    for word in ("default", "classic", "nist", "batched", "training", "scipy", "lmfit"):
        assert word in printed


def test_bench_bad_arguments(capsys, tmp_path):
    assert main(["bench", "--suite", "nosuch", "--out", str(tmp_path)]) == 2
    assert "suite must be one of" in capsys.readouterr().out
    assert main(["bench", "--methods", "nosuch", "--quick", "--out", str(tmp_path)]) == 2
    assert "matches no" in capsys.readouterr().out
    assert main(["bench", "--threads", "0", "--out", str(tmp_path)]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "--dtype", "float16"])
    assert main(["bench", "--device", "nosuch", "--out", str(tmp_path)]) == 2
    assert "device 'nosuch' is not usable" in " ".join(capsys.readouterr().out.split())
    existing = tmp_path / "a-file"
    existing.write_text("keep me")
    assert main(["bench", "--quick", "--out", str(existing)]) == 2  # before any run
    assert "exists and is not a directory" in " ".join(capsys.readouterr().out.split())
    assert existing.read_text() == "keep me"
    blocked = tmp_path / "read-only"
    blocked.mkdir()
    blocked.chmod(0o500)
    if not os.access(blocked, os.W_OK):  # (root may write anyway)
        # The whole run used to go first, and its results were lost at the end.
        assert main(["bench", "--quick", "--out", str(blocked / "out")]) == 2
        assert "--out" in capsys.readouterr().out
    assert main(["bench", "--quick", "--out", "/proc/taylorch-out"]) == 2
    assert "/proc/taylorch-out" in " ".join(capsys.readouterr().out.split())


def test_a_peer_that_fails_to_import_is_unavailable_not_fatal(tmp_path):
    # An installed but broken optional peer used to end the whole run with its traceback.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "torchmin.py").write_text('raise ImportError("simulated broken torchmin")\n')
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), *sys.path])}
    command = [sys.executable, "-m", "taylorch.cli", "bench", "--suite", "small"]
    command += ["--methods", "taylorch:bfgs,torchmin:bfgs", "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    broken = [r for r in runs if r["library"] == "torchmin"]
    assert broken and all(r["status"] == "unavailable" for r in broken)
    assert "simulated broken torchmin" in broken[0]["message"]
    assert any(r["library"] == "taylorch" and r["status"] == "solved" for r in runs)
