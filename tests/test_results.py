"""The results/ writers: atomic JSON, crash-tolerant JSONL, run dir and arm naming."""

from __future__ import annotations

import json
import logging
import math
import os
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pr1 import results
from pr1.results import (
    append_jsonl,
    arm_name,
    dedupe_steps,
    read_jsonl,
    safe_name,
    summarize_history,
    write_json_atomic,
)


def test_write_json_atomic_creates_dirs_and_writes_standard_json(tmp_path):
    path = tmp_path / "a" / "b" / "metrics.json"
    obj = {
        "x": 1.5,
        "nan": math.nan,
        "inf": -math.inf,
        "np": np.float32(0.25),
        "arr": np.array([1, 2]),
        "s": "é",
    }
    write_json_atomic(path, obj)
    text = path.read_text(encoding="utf-8")
    # Standard JSON only: a strict parser that rejects NaN/Infinity must accept it.
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert loaded == {"x": 1.5, "nan": None, "inf": None, "np": 0.25, "arr": [1, 2], "s": "é"}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temp file left


def test_write_json_atomic_replaces_whole_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"status": "running", "pad": "x" * 1000})
    write_json_atomic(path, {"status": "completed"})
    assert json.loads(path.read_text()) == {"status": "completed"}


def test_crash_before_rename_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"status": "running"})
    old = path.read_bytes()

    def crash(*_args):
        raise OSError("killed during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        write_json_atomic(path, {"status": "completed", "final": {"val/acc50": 0.9}})
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_unserialisable_object_leaves_old_file_intact(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"status": "running"})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"status": object()})
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "run" / "history.jsonl"
    rows = [{"step": i, "train/reward": i / 10, "train/kl": math.nan} for i in range(3)]
    for row in rows:
        append_jsonl(path, row)
    assert len(path.read_text().splitlines()) == 3
    assert read_jsonl(path) == [{"step": i, "train/reward": i / 10, "train/kl": None} for i in range(3)]


def test_read_jsonl_tolerates_truncated_last_line(tmp_path, caplog):
    path = tmp_path / "history.jsonl"
    for i in range(3):
        append_jsonl(path, {"step": i, "train/reward": 0.5})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])  # killed while writing the last line
    with caplog.at_level(logging.WARNING, logger="pr1.results"):
        rows = read_jsonl(path)
    assert [r["step"] for r in rows] == [0, 1]
    assert "skipped 1 unreadable line(s) (line 3)" in caplog.text


def test_append_after_truncated_line_keeps_new_rows(tmp_path, caplog):
    """A resumed run appends after a partial line; only the partial line is lost."""
    path = tmp_path / "history.jsonl"
    append_jsonl(path, {"step": 0})
    with open(path, "ab") as f:
        f.write(b'{"step": 1, "train/rew')
    append_jsonl(path, {"step": 1, "train/reward": 1.0})
    with caplog.at_level(logging.WARNING, logger="pr1.results"):
        assert read_jsonl(path) == [{"step": 0}, {"step": 1, "train/reward": 1.0}]
    assert "skipped 1" in caplog.text


def test_dedupe_steps_merges_a_step_and_later_values_win():
    rows = [
        {"step": 2, "train/reward": 2.0},
        {"step": 1, "train/reward": 1.0},
        {"step": 2, "val/acc50": 0.5},  # val logged separately at the same step
        {"step": 2, "train/reward": 20.0},  # re-logged after a resume
        {"train/reward": 9.0},
        {"step": True, "train/reward": 8.0},
    ]
    assert dedupe_steps(rows) == [
        {"step": 1, "train/reward": 1.0},
        {"step": 2, "train/reward": 20.0, "val/acc50": 0.5},
    ]


def test_summarize_history():
    rows = [{"step": s, "train/reward": float(s), "train/kl": 0.1 * s} for s in range(10)]
    rows += [
        {"step": 0, "val/acc50": 0.2, "val/miou": 0.5},
        {"step": 4, "val/acc50": 0.6, "val/miou": 0.3},
        {"step": 9, "val/acc50": 0.4, "val/miou": 0.7},
        {"step": 9, "train/kl": None},
    ]
    s = summarize_history(rows, "val/acc50")
    # final: the last validation; best: the validation at the best task metric (one row, not per-metric max)
    assert s["final"] == {"val/acc50": 0.4, "val/miou": 0.7}
    assert s["best"] == {"val/acc50": 0.6, "val/miou": 0.3}
    assert s["reward_start"] == pytest.approx((0 + 1) / 2)  # the first 20% of 10 logged steps
    assert s["reward_end"] == pytest.approx((8 + 9) / 2)


def test_summarize_history_ties_nan_window_and_empty():
    rows = [{"step": 1, "val/ap": 0.5, "val/ar": 0.1}, {"step": 2, "val/ap": 0.5, "val/ar": None}]
    s = summarize_history(rows, "val/ap")
    assert s["best"] == {"val/ap": 0.5, "val/ar": None}  # the later of equals; a NaN (null) metric stays null
    s = summarize_history([{"step": 0, "train/reward": 1.0}, {"step": 1, "train/reward": 3.0}], "val/ap")
    assert (s["reward_start"], s["reward_end"]) == (1.0, 3.0)
    assert summarize_history([], "val/ap") == {
        "final": {},
        "best": {},
        "reward_start": None,
        "reward_end": None,
    }


def test_window_mean_matches_numpy():
    values = [0.3, 1.2, -0.5, 2.0, 0.0, 0.7, 1.1]
    k = round(len(values) * 0.2)
    assert results.window_mean(values, 0.2, last=False) == pytest.approx(np.mean(values[:k]))
    assert results.window_mean(values, 0.2, last=True) == pytest.approx(np.mean(values[-k:]))
    assert results.window_mean([], 0.2, last=True) is None


def test_read_run_metrics_and_mark_failed(tmp_path):
    with pytest.raises(results.RunRecordError, match="no metrics.json") as e:
        results.read_run_metrics(tmp_path)
    assert e.value.status == "missing"
    (tmp_path / "metrics.json").write_text("{")
    with pytest.raises(results.RunRecordError) as e:
        results.read_run_metrics(tmp_path)
    assert e.value.status == "corrupt"
    (tmp_path / "metrics.json").unlink()
    results.mark_failed(tmp_path, {"sweep": "s", "arm": "a", "seed": 0}, "ValueError: boom")
    m = results.read_run_metrics(tmp_path)  # a setup failure still writes a schema-complete record
    assert (m["status"], m["error"], m["steps"], m["final"]) == ("failed", "ValueError: boom", 0, {})
    (tmp_path / "metrics.json").write_text('{"arm": "a"}')
    with pytest.raises(results.RunRecordError, match="lacks") as e:
        results.read_run_metrics(tmp_path)
    assert e.value.status == "invalid"
    results.mark_failed(tmp_path, {"sweep": "s", "arm": "a", "seed": 0}, "ValueError: boom")
    results.mark_failed(tmp_path, {}, "second error")
    assert json.loads((tmp_path / "metrics.json").read_text())["error"] == "ValueError: boom"


def test_arm_name_excludes_non_ablation_keys_and_sorts():
    overrides = [
        "thinking=true",
        "seed=3",
        "hydra/launcher=submitit_slurm",
        "trainer.max_steps=10",
        "paths.results=/tmp/r",
        "logger=wandb",
        "logger.project=x",
        "sweep=matcher_x_thinking",
        "+matcher=naive",
    ]
    exclude = ["seed", "sweep", "hydra*", "trainer.*", "paths.*", "logger*"]
    assert arm_name(overrides, exclude) == "+matcher=naive,thinking=true"
    assert arm_name(["seed=1"], exclude) == "default"
    assert arm_name(["seed=1", "b=2"], exclude=()) == "b=2,seed=1"


@pytest.mark.parametrize("name", ["", ".", "..", "data.tasks=[a,b]", "model.path=/x/y", "a b:c", "x" * 300])
def test_safe_name_rewrites_unsafe_names_with_hash(name):
    safe = safe_name(name)
    assert re.fullmatch(r"[A-Za-z0-9._,=+\-]+-[0-9a-f]{8}", safe)
    assert len(safe) <= 255 and safe.strip(".")


@given(st.text(max_size=40), st.text(max_size=40))
def test_safe_name_is_portable_and_injective(a, b):
    sa = safe_name(a)
    assert re.fullmatch(r"[A-Za-z0-9._,=+\-]+", sa) and sa not in (".", "..")
    if a != b:
        assert sa != safe_name(b)


def test_metrics_schema_lists_contract_keys():
    assert results.RunMetrics.__required_keys__ == {
        "sweep",
        "arm",
        "seed",
        "status",
        "error",
        "overrides",
        "steps",
        "wall_time_s",
        "git_commit",
        "task_metric",
        "final",
        "best",
        "reward_start",
        "reward_end",
    }


def test_git_commit_flags_a_run_made_from_uncommitted_code(tmp_path, monkeypatch):
    """metrics.json's git_commit is HEAD, with +dirty when a tracked file outside results/ differs from it
    (untracked files and the tracked records of a rerun sweep do not count); None outside a checkout or
    before the first commit."""
    import subprocess

    from pr1.callbacks import git_commit

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never the checkout around tmp_path
    repo = tmp_path / "repo"
    (repo / "results" / "s").mkdir(parents=True)
    assert git_commit(repo) is None
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    assert git_commit(repo) is None  # no commit yet
    (repo / "a.yaml").write_text("lr: 1\n")
    (repo / "results" / "s" / "metrics.json").write_text("{}")
    subprocess.run([*git, "add", "a.yaml", "results"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (repo / "untracked.json").write_text("{}")
    (repo / "results" / "s" / "metrics.json").write_text('{"rerun": 1}')
    assert git_commit(repo) == head
    assert git_commit(repo / "results" / "s") == head  # from a subfolder, the whole checkout counts
    (repo / "a.yaml").write_text("lr: 2\n")
    assert git_commit(repo / "results") == f"{head}+dirty"


def test_run_summary_prints_an_interval_metrics_json_stored_as_null(tmp_path, capsys):
    """A task validated on one image has no interval (NaN, null in metrics.json): the summary says n/a."""
    from pr1.run import print_summary

    one = {"start": 0.0, "end": 1.0, "diff": 1.0, "lo": None, "hi": None, "n": 1, "method": "paired t"}
    two = {"start": 0.5, "end": 1.0, "diff": 0.5, "lo": -5.853, "hi": 6.853, "n": 2, "method": "paired t"}
    result = {
        "task_metric": "val/score",
        "steps": 4,
        "wall_time_s": 3.0,
        "reward_start": None,
        "reward_end": 1.5,
        "final": {"val/score": 0.25},
        "best": {"val/score": 0.25},
        "improvement": {"ocr/f1": one, "grounding/acc50": two},
    }
    print_summary(result, tmp_path)
    out = capsys.readouterr().out
    assert "val/ocr/f1  start 0.0000 -> end 1.0000: change +1.0000 (95% CI [n/a, n/a], 1 images" in out
    assert "change +0.5000 (95% CI [-5.8530, +6.8530], 2 images" in out
    assert "first 20% of steps: n/a   last 20%: 1.5000" in out
