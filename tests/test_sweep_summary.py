"""The sweep summary: swept axes from the runs' overrides, and the swept run-wide options nothing reads."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from pr1 import sweep_summary as ss
from pr1.resolvers import run_options
from pr1.results import write_json_atomic
from pr1.tasks import Task
from tests.helpers import run_dir_for

GROUNDING_COMPONENTS = "prompt, answer, reward format, reward iou, metric acc50"


@pytest.mark.parametrize(
    ("task", "option", "readers"),
    [
        ("grounding", "matcher", []),
        ("counting", "matcher", ["reward count"]),
        ("detection", "matcher", ["reward detection"]),
        ("ocr", "matcher", []),
        ("grounding", "thinking", ["prompt", "answer", "reward format", "reward iou", "metric acc50"]),
        ("counting", "frame", ["answer", "reward count", "metric count_acc"]),
    ],
)
def test_task_readers(compose, task, option, readers):
    cfg = compose(f"task={task}")
    assert Task.from_config(cfg.task, run_options(cfg)).readers(option) == readers


def test_readers_refuses_an_unknown_option(compose):
    cfg = compose()
    with pytest.raises(ValueError, match="'lr' is not a run-wide option"):
        Task.from_config(cfg.task, run_options(cfg)).readers("lr")


def test_arm_axes_and_swept_axes():
    exclude = ["seed", "trainer.*"]
    a = ss.arm_axes(["matcher=naive", "thinking=True", "seed=1", "trainer.max_steps=3", "+x=1"], exclude)
    assert a == {"matcher": "naive", "thinking": "true", "x": "1"}
    b = ss.arm_axes(["matcher=hungarian", "thinking=true", "x=1"], exclude)
    c = ss.arm_axes(["thinking=false"], exclude)
    assert ss.swept_axes([a, b, c]) == {
        "matcher": [ss.DEFAULT_VALUE, "hungarian", "naive"],
        "thinking": ["false", "true"],
        "x": [ss.DEFAULT_VALUE, "1"],
    }
    assert ss.swept_axes([a, a]) == {}


def test_run_wide_option():
    assert [ss.run_wide_option(k) for k in ("thinking", "matcher", "matcher.name", "model.frame.kind")] == [
        "thinking",
        "matcher",
        "matcher",
        "frame",
    ]
    assert ss.run_wide_option("objective.lr") is None


def _sweep(tmp_path, save_run_config, task: str, arms: list[list[str]], with_config: bool = True):
    for overrides in arms:
        arm = ",".join(overrides)
        d = run_dir_for(tmp_path, "s", arm, 0)
        meta = {"sweep": "s", "arm": arm, "seed": 0, "status": "completed", "error": None, "steps": 2}
        meta |= {"overrides": [*overrides, "seed=0"], "wall_time_s": 1.0, "git_commit": None}
        meta |= {"task_metric": "val/acc50", "final": {"val/acc50": 0.5}, "best": {}}
        write_json_atomic(d / "metrics.json", {**meta, "reward_start": 0.0, "reward_end": 1.0})
        if with_config:
            save_run_config(d, f"task={task}", *overrides)
    return tmp_path / "s"


def test_unread_matcher_on_grounding_is_flagged(tmp_path, save_run_config):
    arms = [[f"matcher={m}", f"thinking={t}"] for m in ("hungarian", "naive") for t in ("true", "false")]
    summary = ss.summarize(_sweep(tmp_path, save_run_config, "grounding", arms))
    assert summary["completed"] == 4
    assert summary["swept"] == {"matcher": ["hungarian", "naive"], "thinking": ["false", "true"]}
    (unread,) = summary["unread_overrides"]  # thinking is read: it is not flagged
    assert (
        unread["message"]
        == f"matcher: read by nothing in task grounding (components: {GROUNDING_COMPONENTS})"
    )
    assert (unread["option"], unread["task"]) == ("matcher", "grounding")
    assert summary["readers_unknown"] == []


def test_matcher_on_counting_is_read(tmp_path, save_run_config):
    arms = [["matcher=hungarian"], ["matcher=naive"]]
    summary = ss.summarize(_sweep(tmp_path, save_run_config, "counting", arms))
    assert summary["swept"] == {"matcher": ["hungarian", "naive"]}
    assert summary["unread_overrides"] == []


def test_a_swept_domain_is_flagged_where_no_loader_reads_it(tmp_path, save_run_config):
    """A domain sets the synthetic data's knobs: real-data tasks read none of them, so sweeping it there runs
    the same arms twice; synthetic tasks, alone or as a mixture's parts, read it."""
    refcoco = ss.summarize(
        _sweep(tmp_path / "r", save_run_config, "refcoco", [["domain=source"], ["domain=zoom"]])
    )
    assert refcoco["swept"] == {"domain": ["source", "zoom"]}
    (unread,) = refcoco["unread_overrides"]
    assert (unread["override"], unread["option"], unread["task"]) == ("domain", "domain", "refcoco")
    assert unread["components"] == [
        "train refcoco: pr1.data.formats.load",
        "val refcoco: pr1.data.formats.load",
    ]
    assert unread["message"].startswith("domain: read by nothing in task refcoco (components: train refcoco")
    grounding = ss.summarize(
        _sweep(tmp_path / "g", save_run_config, "grounding", [["domain=source"], ["domain=zoom"]])
    )
    assert grounding["swept"] == {"domain": ["source", "zoom"]} and grounding["unread_overrides"] == []
    knob = [[f"domain.detection.min_frac={v}"] for v in (0.3, 0.4)]
    mixture = ss.summarize(_sweep(tmp_path / "m", save_run_config, "perception", knob))
    assert (
        mixture["swept"] == {"domain.detection.min_frac": ["0.3", "0.4"]}
        and mixture["unread_overrides"] == []
    )


def test_runs_without_config_are_listed_not_flagged(tmp_path, save_run_config):
    arms = [["matcher=hungarian"], ["matcher=naive"]]
    summary = ss.summarize(_sweep(tmp_path, save_run_config, "grounding", arms, with_config=False))
    assert summary["unread_overrides"] == []
    assert len(summary["readers_unknown"]) == 2
    assert summary["readers_unknown"][0]["error"] == "no config.yaml"


def test_callback_writes_the_summary_json(tmp_path, save_run_config, caplog):
    sweep = _sweep(tmp_path, save_run_config, "grounding", [["matcher=hungarian"], ["matcher=naive"]])
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    ss.SweepSummary().on_multirun_end(config)
    data = json.loads((sweep / "sweep_summary.json").read_text())
    assert data["unread_overrides"][0]["components"] == GROUNDING_COMPONENTS.split(", ")
    assert "swept override has no effect: matcher: read by nothing in task grounding" in caplog.text
