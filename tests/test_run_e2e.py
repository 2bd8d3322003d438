"""`python -m pr1.run` end to end on the embedded tiny model, as a user runs it (subprocess, real Hydra)."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from pr1.data.synthetic import dataset_dir
from tests.helpers import run_module

SHORT = ["experiment=smoke"]


def run_pr1(tmp_path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_module(tmp_path, "pr1.run", *args, check=check)


@pytest.mark.slow
def test_default_run_trains_and_summarises(tmp_path):
    proc = run_pr1(tmp_path, *SHORT)
    run_dir = tmp_path / "results" / "default" / "default" / "seed0"
    assert "pr1 run finished: 4 steps" in proc.stdout
    assert f"run dir: {run_dir}" in proc.stdout
    assert "reward=" in proc.stdout and "kl=" in proc.stdout and "loss=" in proc.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 4
    # The default is the four-task mixture: best.ckpt follows val/score, and each task's step-0 and final
    # validations are paired by image (start/end equal the logged metric at those steps; 2 images per task,
    # 8 for detection).
    assert metrics["task_metric"] == "val/score" and "val/score" in metrics["final"]
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    primary = ["grounding/acc50", "counting/count_acc", "ocr/f1", "detection/ap"]
    assert list(metrics["improvement"]) == primary
    for key in primary:
        change = metrics["improvement"][key]
        vals = [r[f"val/{key}"] for r in history if f"val/{key}" in r]
        assert (change["start"], change["end"]) == pytest.approx((vals[0], vals[-1]))
        assert change["diff"] == pytest.approx(vals[-1] - vals[0])
        assert change["n"] == (8 if key.startswith("detection") else 2)
        assert f"val/{key}  start" in proc.stdout
    assert metrics["skipped"]["train"]["skipped"] == 0
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["objective"]["name"] == "rl" and cfg["model"]["name"] == "tiny"
    # From the shipped stage-3 warm start, on the shifted target domain (domain=zoom): the grounding images
    # it trains and validates on hold boxes of 0.6-0.85 of the side, not the warm start's 0.15-0.6.
    assert cfg["domain"]["name"] == "zoom"
    assert cfg["model"]["path"].endswith("pr1/assets/tiny-perception-ocr8-sft")
    for split in ("train", "val"):
        part = cfg["task"][split]["parts"]["grounding"]
        folder = dataset_dir(tmp_path / "data", "grounding", part["n"], part["seed"], part["knobs"])
        rows = [json.loads(line) for line in (folder / "annotations.jsonl").read_text().splitlines()]
        assert rows and all(int(112 * 0.6) <= r["bbox"][2] - r["bbox"][0] <= 112 * 0.85 for r in rows)
    assert [r["step"] for r in history if "train/reward" in r] == [1, 2, 3, 4]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    # Rerunning the same command with more steps resumes from the last checkpoint instead of restarting.
    proc = run_pr1(tmp_path, *SHORT, "trainer.max_steps=6")
    assert "Restored all states" in proc.stdout + proc.stderr
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history if "train/reward" in r] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_the_last_step_is_validated_whatever_the_interval(tmp_path):
    """num_iterations=2 makes 2 optimizer steps per batch, so Lightning's batch-counted validation interval
    (3) never comes within 4 steps: the run still validates its final policy, and its start-vs-end change
    pairs step 0 with step 4 (it once paired step 0 with itself and reported a change of exactly 0)."""
    run_pr1(tmp_path, *SHORT, "objective.num_iterations=2", "trainer.val_check_interval=3")
    run_dir = next((tmp_path / "results" / "default").glob("*/seed0"))
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history if "val/score" in r] == [0, 4]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    end = [r for r in history if "val/score" in r][-1]
    assert metrics["improvement"]["ocr/f1"]["end"] == pytest.approx(end["val/ocr/f1"])
    assert metrics["final"]["val/score"] == pytest.approx(end["val/score"])


@pytest.mark.slow
def test_headline_multirun_four_arms(tmp_path):
    proc = run_pr1(
        tmp_path,
        "-m",
        "matcher=hungarian,naive",
        "thinking=true,false",
        "sweep=ablation",
        *SHORT,
        "trainer.max_steps=2",
    )
    arms = sorted(p.name for p in (tmp_path / "results" / "ablation").iterdir() if p.is_dir())
    assert arms == [
        "matcher=hungarian,thinking=false",
        "matcher=hungarian,thinking=true",
        "matcher=naive,thinking=false",
        "matcher=naive,thinking=true",
    ], proc.stdout
    for arm in arms:
        run_dir = tmp_path / "results" / "ablation" / arm / "seed0"
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["matcher"]["name"] == arm.split(",")[0].split("=")[1]
        assert cfg["thinking"] is (arm.endswith("true"))
        # Run-wide options live once, at the top; the task binds them into the rewards (no copies).
        for task in cfg["task"]["tasks"].values():
            assert not {"thinking", "matcher", "frame"} & set(task["rewards"]["format"])


@pytest.mark.slow
def test_sft_objective_exports_a_loadable_checkpoint(tmp_path):
    export = tmp_path / "export"
    run_pr1(
        tmp_path,
        "objective=sft",
        "model=tiny_scratch",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "task.train.n=32",
        "task.val.n=4",
        "objective.prompts_per_step=4",
        f"export_dir={export}",
    )
    from transformers import AutoModelForImageTextToText, AutoProcessor

    assert AutoModelForImageTextToText.from_pretrained(export).config.model_type == "qwen2_vl"
    assert AutoProcessor.from_pretrained(export).tokenizer.convert_tokens_to_ids("<|image_pad|>") is not None


def test_unknown_option_fails_at_compose_time(tmp_path):
    proc = run_pr1(tmp_path, "matcher=hungarain", check=False)
    assert proc.returncode != 0
    assert "Available options" in proc.stderr and "naive" in proc.stderr


@pytest.mark.slow
def test_failed_arm_does_not_stop_the_sweep(tmp_path):
    proc = run_pr1(
        tmp_path, "-m", "objective.loss_type=grpo,bogus", "sweep=failing", *SHORT, "trainer.max_steps=1"
    )
    sweep_dir = tmp_path / "results" / "failing"
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["completed"] == 1 and summary["not_completed"] == 1, summary
    failed = next(r for r in summary["runs"] if r["status"] == "failed")
    assert failed["arm"] == "objective.loss_type=bogus" and "loss_type" in failed["error"]
    assert "1 completed, 1 not completed" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_data_skips_are_part_of_the_run_and_eval_records(tmp_path):
    """data.on_error=skip: what the loaders skipped is in metrics.json, eval_metrics.json and the summary."""
    from tests.data_samples import REF_FILE, image, vlm_r1_row
    from tests.helpers import TINY_MODEL

    image(tmp_path / "train2014" / REF_FILE)
    rows = [vlm_r1_row(), vlm_r1_row(), {**vlm_r1_row(), "image": "train2014/missing.jpg"}]
    path = tmp_path / "refcoco_val.json"
    path.write_text(json.dumps(rows))
    data = [
        "task=refcoco",
        f"task.train.path={path}",
        f"task.train.images={tmp_path}",
        "data.on_error=skip",
    ]
    proc = run_pr1(tmp_path, *SHORT, *TINY_MODEL, *data, "trainer.max_steps=2", "sweep=skips")
    run_dir = next((tmp_path / "results" / "skips").glob("*/seed0"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("train", "val"):
        assert metrics["skipped"][split]["skipped"] == 1
        assert metrics["skipped"][split]["by_reason"] == {"image_missing": 1}
        assert "missing.jpg" in metrics["skipped"][split]["examples"][0]
    assert "train data: skipped 1 records (image_missing: 1)" in proc.stdout

    out = tmp_path / "eval"
    run_module(tmp_path, "pr1.eval", *TINY_MODEL, *data, f"paths.run_dir={out}")
    summary = json.loads((out / "eval_metrics.json").read_text())
    assert summary["skipped"]["by_reason"] == {"image_missing": 1} and summary["n_records"] == 2
