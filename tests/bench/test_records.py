"""results.json: strict JSON with a fixed schema, and a lossless round trip."""

import json
import math

import pytest
import torch

from taylorch.bench import Problem, Settings, load_results, run
from taylorch.bench.records import SCHEMA_VERSION, STATUSES, RunRecord, save_results

REQUIRED = {
    "problem": str, "method": str, "library": str, "suite": str, "status": str, "kind": str,
    "message": str, "nfev": (int, float), "ngev": (int, float), "calls": int,
    "time": (int, float), "n": int, "batch_size": int, "settings": dict, "tags": dict,
    "trace": dict,
}  # fmt: skip


def _no_constants(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_results_json_schema_and_round_trip(tmp_path):
    problems = [
        Problem("quad", x0=torch.ones(2, dtype=torch.float64), fun=lambda x: (x**2).sum(-1),
                f_star=0.0),
        Problem("line", x0=torch.ones(2, dtype=torch.float64), fun=lambda x: x.sum(-1)),
    ]  # fmt: skip
    settings = Settings(max_evals=200, max_time=5.0)
    result = run(problems, methods="taylorch:bfgs,scipy:nelder-mead,scipy:lm", settings=settings)
    path = save_results(tmp_path / "results.json", result.records, result.meta)
    doc = json.loads(path.read_text(), parse_constant=_no_constants)
    assert doc["schema"] == SCHEMA_VERSION and set(doc) == {"schema", "meta", "runs"}
    assert len(doc["runs"]) == 6
    assert sum(r["status"] == "unsupported" for r in doc["runs"]) == 2  # scipy:lm needs residuals
    for run_ in doc["runs"]:
        for key, types in REQUIRED.items():
            assert isinstance(run_[key], types), key
        assert run_["status"] in STATUSES
        if run_["status"] != "unsupported":
            assert set(run_["trace"]) == {"evals", "time", "f"}
            assert len(run_["trace"]["evals"]) == len(run_["trace"]["f"]) >= 1
    # the unbounded problem drives f to -inf or huge values; non-finite floats become strings
    records, meta = load_results(path)
    assert meta["suites"] == ["custom"]
    for a, b in zip(records, result.records):
        assert a.to_dict() == b.to_dict()


def test_non_finite_values_round_trip(tmp_path):
    rec = RunRecord(problem="p", method="m", library="x", suite="s", status="failed",
                    f=math.nan, f0=math.inf, trace={"evals": [1.0], "time": [0.1], "f": [-math.inf]})  # fmt: skip
    path = save_results(tmp_path / "r.json", [rec], {})
    assert '"nan"' in path.read_text() and '"-inf"' in path.read_text()
    (back,), _ = load_results(path)
    assert math.isnan(back.f) and back.f0 == math.inf and back.trace["f"] == [-math.inf]


def test_bad_status_and_schema(tmp_path):
    with pytest.raises(ValueError, match="status must be one of"):
        RunRecord(problem="p", method="m", library="x", suite="s", status="great")
    (tmp_path / "old.json").write_text(json.dumps({"schema": 0, "meta": {}, "runs": []}))
    with pytest.raises(ValueError, match="schema"):
        load_results(tmp_path / "old.json")
