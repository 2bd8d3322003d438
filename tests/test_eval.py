"""`pr1.eval`: greedy decoding of the val set on the tiny model; eval_metrics.json and predictions.jsonl."""

from __future__ import annotations

import json
import math
import sys

import pytest

from pr1 import eval as pr1_eval
from tests.helpers import TINY_MODEL

TINY = (
    *TINY_MODEL,
    "task.val.n=4",
    "task.val_max_new_tokens=6",
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.mark.parametrize("task", ["grounding", "counting", "ocr", "detection"])
def test_evaluate_writes_metrics_and_predictions(compose, tmp_path, data_dir, capsys, task):
    run_dir = tmp_path / "run"
    cfg = compose(
        f"task={task}",
        "mode=eval",
        *TINY,
        f"paths.data_dir={data_dir}",
        f"paths.run_dir={run_dir}",
        "+data.val_batch_size=3",
    )
    metrics = pr1_eval.evaluate(cfg)

    assert cfg.task.metric in metrics and all(isinstance(v, float) for v in metrics.values())
    summary = json.loads((run_dir / "eval_metrics.json").read_text())
    assert summary["task"] == task and summary["n_records"] == 4 and summary["metric"] == cfg.task.metric
    assert summary["metrics"] == {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and len({r["id"] for r in rows}) == 4
    assert all({"id", "image", "question", "solution", "completion"} <= set(r) for r in rows)
    assert all(isinstance(r["completion"], str) for r in rows)
    out = capsys.readouterr().out
    assert f"pr1 eval: task {task}" in out and f"{cfg.task.metric}" in out and "<- task metric" in out


def test_eval_without_val_set_fails_clearly(compose, tmp_path):
    cfg = compose(*TINY, f"paths.run_dir={tmp_path}", "task.val=null")
    with pytest.raises(ValueError, match="no val set"):
        pr1_eval.evaluate(cfg)


def test_module_entry_point_runs_eval(monkeypatch, tmp_path, data_dir):
    """`python -m pr1.eval ...` is `python -m pr1.run ... mode=eval`, through Hydra (in-process here)."""
    run_dir = tmp_path / "run"
    argv = ["pr1/eval.py", *TINY, f"paths.data_dir={data_dir}", f"paths.run_dir={run_dir}", "mode=train"]
    monkeypatch.setattr(sys, "argv", argv)
    pr1_eval.main()
    assert (run_dir / "eval_metrics.json").is_file() and (run_dir / "predictions.jsonl").is_file()
    assert not (run_dir / "metrics.json").exists()  # mode=eval wins over a mode= on the command line
