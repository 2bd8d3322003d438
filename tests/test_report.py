"""The ablation report on a synthetic results tree: t-intervals and paired differences against scipy, unread
overrides, tolerance of broken runs, files, plots, byte-identical regeneration."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sps

from pr1 import report
from pr1.results import append_jsonl, write_json_atomic
from tests.helpers import ROOT, run_dir_for

SWEEP = "matcher_thinking"
ARM_A = "matcher=hungarian,thinking=true"
ARM_B = "matcher=naive,thinking=true"
METRIC = "val/acc50"
# Known per-seed values (seeds 0, 1, 2) of the finished runs.
VALUES = {
    ARM_A: {"final": [0.50, 0.56, 0.47], "best": [0.55, 0.58, 0.50], "start": [0.10, 0.12, 0.08],
            "end": [0.60, 0.70, 0.65], "steps": [20, 20, 20], "wall": [31.0, 29.5, 33.2]},
    ARM_B: {"final": [0.30, 0.41, 0.35], "best": [0.33, 0.41, 0.40], "start": [0.11, 0.09, 0.10],
            "end": [0.40, 0.35, 0.52], "steps": [20, 20, 18], "wall": [25.0, 26.0, 24.1]},
}  # fmt: skip
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _metrics(arm: str, seed: int, status: str = "completed", error: str | None = None) -> dict:
    v = {k: vals[seed] for k, vals in VALUES[arm].items()} if status == "completed" else None
    return {
        "sweep": SWEEP,
        "arm": arm,
        "seed": seed,
        "status": status,
        "error": error,
        "overrides": arm.split(",") + [f"seed={seed}"],
        "steps": v["steps"] if v else 7,
        "wall_time_s": v["wall"] if v else 3.0,
        "git_commit": "abc123",
        "task_metric": METRIC,
        "final": {METRIC: v["final"], "train/reward": v["end"]} if v else {},
        "best": {METRIC: v["best"]} if v else {},
        "reward_start": v["start"] if v else math.nan,
        "reward_end": v["end"] if v else math.nan,
    }


def _history(run_dir: Path, arm: str, seed: int, steps: range) -> None:
    v = {k: vals[seed] for k, vals in VALUES[arm].items()}
    for s in steps:
        frac = s / (steps[-1] or 1)
        append_jsonl(
            run_dir / "history.jsonl",
            {"step": s, "train/reward": v["start"] + frac * (v["end"] - v["start"])},
        )
        if s % 5 == 0:
            append_jsonl(run_dir / "history.jsonl", {"step": s, METRIC: frac * v["final"]})


@pytest.fixture
def sweep_dir(tmp_path: Path, save_run_config) -> Path:
    """Two grounding arms (matcher swept) x 3 finished seeds with their config.yaml, plus a failed, a corrupt,
    a running and a missing-metrics run."""
    root = tmp_path / "results"
    for arm in (ARM_A, ARM_B):
        for seed in range(3):
            d = run_dir_for(root, SWEEP, arm, seed)
            write_json_atomic(d / "metrics.json", _metrics(arm, seed))
            _history(d, arm, seed, range(VALUES[arm]["steps"][seed] + 1))
            save_run_config(d, "task=grounding", *arm.split(","), f"seed={seed}")
    failed = run_dir_for(root, SWEEP, ARM_A, 3)
    tb = "Traceback (most recent call last):\n  File x\ntorch.OutOfMemoryError: CUDA out of memory\n"
    write_json_atomic(failed / "metrics.json", _metrics(ARM_A, 3, "failed", tb))
    corrupt = run_dir_for(root, SWEEP, ARM_B, 3)
    corrupt.mkdir(parents=True)
    (corrupt / "metrics.json").write_text('{"sweep": "matcher_thinking", "arm": "matcher=na')
    running = run_dir_for(root, SWEEP, ARM_B, 4)
    write_json_atomic(running / "metrics.json", _metrics(ARM_B, 4, "running"))
    missing = run_dir_for(root, SWEEP, ARM_A, 5)
    append_jsonl(missing / "history.jsonl", {"step": 0, "train/reward": 0.0})
    return root / SWEEP


def _t_interval(values) -> tuple[float, float]:
    """The reference 95% t-interval, straight from scipy."""
    v = np.asarray(values, dtype=float)
    return sps.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=np.std(v, ddof=1) / np.sqrt(len(v)))


def test_table_means_cis_and_stds_match_scipy(sweep_dir):
    runs = report.load_sweep(sweep_dir)
    table = {row.arm: row for row in report.ablation_table(runs, report.columns([METRIC], METRIC))}
    assert set(table) == {ARM_A, ARM_B}
    assert (table[ARM_A].n_finished, table[ARM_A].n_total) == (3, 5)
    assert (table[ARM_B].n_finished, table[ARM_B].n_total) == (3, 5)
    for arm, v in VALUES.items():
        expected = {
            f"{METRIC}_final": v["final"],
            f"{METRIC}_best": v["best"],
            "reward_end": v["end"],
            "reward_gain": np.subtract(v["end"], v["start"]),
            "steps": v["steps"],
            "wall_time_s": v["wall"],
        }
        for col, vals in expected.items():
            ci = table[arm].ci[col]
            assert (ci.mean, ci.n) == (pytest.approx(np.mean(vals)), 3), (arm, col)
            assert table[arm].std[col] == pytest.approx(np.std(vals, ddof=1)), (arm, col)
            if np.std(vals) > 0:
                assert (ci.lo, ci.hi) == pytest.approx(_t_interval(vals)), (arm, col)
    # Hand-worked: finals 0.50, 0.56, 0.47 -> mean 0.51, s = 0.045826, t_{0.975,2} = 4.302653, half 0.113838
    ci = table[ARM_A].ci[f"{METRIC}_final"]
    assert (ci.lo, ci.hi) == pytest.approx((0.51 - 0.113838, 0.51 + 0.113838), abs=1e-6)


def test_report_files(sweep_dir, capsys):
    assert report.main([str(sweep_dir)]) == 0
    assert "6/10 finished" in capsys.readouterr().out
    md = (sweep_dir / "report.md").read_text()
    assert "95% confidence interval" in md and "Student's t-interval" in md
    a = VALUES[ARM_A]["final"]
    lo, hi = _t_interval(a)
    assert f"| {ARM_A} | 3/5 | {np.mean(a):.3f} [{lo:.3f}, {hi:.3f}] |" in md
    assert "| arm | seeds finished | val/acc50 |" in md
    assert "| arm | val/acc50 best | reward end | reward gain | steps | wall time (s) |" in md
    not_finished = md.split("## Not finished (4)")[1]
    assert f"| {ARM_A} | 3 | failed: torch.OutOfMemoryError: CUDA out of memory |" in not_finished
    assert f"| {ARM_B} | 3 | corrupt: unreadable metrics.json" in not_finished
    assert f"| {ARM_B} | 4 | status still running" in not_finished
    assert f"| {ARM_A} | 5 | missing: no metrics.json" in not_finished

    with open(sweep_dir / "report.csv", newline="") as f:
        rows = {r["arm"]: r for r in csv.DictReader(f)}
    assert list(next(iter(rows.values())))[:8] == [
        "arm", "seeds_finished", "seeds_total", "val/acc50_final_mean", "val/acc50_final_std",
        "val/acc50_final_lo", "val/acc50_final_hi", "val/acc50_final_n",
    ]  # fmt: skip
    b = VALUES[ARM_B]
    assert (rows[ARM_B]["seeds_finished"], rows[ARM_B]["seeds_total"]) == ("3", "5")
    assert float(rows[ARM_B]["val/acc50_best_mean"]) == pytest.approx(np.mean(b["best"]))
    lo, hi = _t_interval(b["final"])
    assert (float(rows[ARM_B]["val/acc50_final_lo"]), float(rows[ARM_B]["val/acc50_final_hi"])) == (
        pytest.approx(lo),
        pytest.approx(hi),
    )
    assert float(rows[ARM_B]["reward_gain_std"]) == pytest.approx(
        np.std(np.subtract(b["end"], b["start"]), ddof=1)
    )


def test_paired_difference_over_seeds_matches_scipy(sweep_dir):
    assert report.main([str(sweep_dir)]) == 0
    diff = np.subtract(VALUES[ARM_A]["final"], VALUES[ARM_B]["final"])  # hungarian - naive: .20, .15, .12
    ref = sps.ttest_rel(VALUES[ARM_A]["final"], VALUES[ARM_B]["final"]).confidence_interval(0.95)
    with open(sweep_dir / "report_paired.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["axis"], row["a"], row["b"], row["other_axes"], row["metric"], row["n"]) == (
        "matcher", "hungarian", "naive", "—", METRIC, "3",
    )  # fmt: skip
    assert float(row["mean"]) == pytest.approx(diff.mean())
    assert (float(row["lo"]), float(row["hi"])) == (pytest.approx(ref.low), pytest.approx(ref.high))
    # Hand-worked: mean 0.156667, s = 0.040415, half-width 4.302653 * s / sqrt(3) = 0.100398
    assert float(row["lo"]) == pytest.approx(0.156667 - 0.100398, abs=1e-5)
    md = (sweep_dir / "report.md").read_text()
    assert f"| matcher | hungarian − naive | — | {METRIC} | {diff.mean():.3f} [" in md
    assert "] * | 3 |" in md  # the interval excludes zero


def test_unread_matcher_is_flagged_in_the_report(sweep_dir):
    assert report.main([str(sweep_dir)]) == 0
    md = (sweep_dir / "report.md").read_text()
    assert "## Swept overrides that nothing reads (1)" in md
    assert (
        "- matcher: read by nothing in task grounding "
        "(components: prompt, answer, reward format, reward iou, metric acc50)"
    ) in md


def _write_mixture_run(root: Path, axes: dict[str, str], seed: int, finals: dict[str, float]) -> None:
    arm = ",".join(f"{k}={v}" for k, v in sorted(axes.items()))
    m = _metrics(ARM_A, 0) | {"arm": arm, "seed": seed, "overrides": [*arm.split(","), f"seed={seed}"]}
    m |= {"task_metric": "val/score", "final": finals, "best": {"val/score": finals["val/score"]}}
    write_json_atomic(run_dir_for(root, "mix", arm, seed) / "metrics.json", m)


def test_mixture_metrics_and_two_axis_pairs(tmp_path):
    """arms x per-task metrics (Table 5), and each axis paired within each value of the other axis."""
    rng = np.random.default_rng(0)
    values = {}
    for matcher in ("hungarian", "naive"):
        for lr in ("0.1", "0.2"):
            for seed in range(3):
                g, c = rng.uniform(size=2).round(3).tolist()
                finals = {"val/score": (g + c) / 2, "val/grounding/acc50": g, "val/counting/count_acc": c}
                finals["val/grounding/iou/hist"] = 0.0  # val/<a>/<b>/<c> is no task metric
                _write_mixture_run(tmp_path, {"matcher": matcher, "objective.lr": lr}, seed, finals)
                values[(matcher, lr, seed)] = finals
    assert report.main([str(tmp_path / "mix")]) == 0
    md = (tmp_path / "mix" / "report.md").read_text()
    assert "| arm | seeds finished | val/score | val/counting/count_acc | val/grounding/acc50 |" in md
    with open(tmp_path / "mix" / "report_paired.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 3  # 2 axes x 2 contexts x 3 metrics
    row = next(r for r in rows if r["axis"] == "objective.lr" and r["other_axes"] == "matcher=naive")
    assert (row["a"], row["b"], row["metric"]) == ("0.1", "0.2", "val/score")
    a = [values[("naive", "0.1", s)]["val/score"] for s in range(3)]
    b = [values[("naive", "0.2", s)]["val/score"] for s in range(3)]
    ref = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert (float(row["lo"]), float(row["hi"])) == (pytest.approx(ref.low), pytest.approx(ref.high))
    # No saved configs: the matcher's readers are unknown, which the report says instead of guessing.
    assert "cannot tell which components read the swept overrides: no config.yaml" in md
    assert "## Swept overrides that nothing reads" not in md


def test_report_is_byte_identical_when_regenerated(sweep_dir, tmp_path):
    """Same bytes from the same records, in-process and from a fresh interpreter with another hash seed."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert report.main([str(sweep_dir), "--out", str(first)]) == 0
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pr1.report", str(sweep_dir), "--out", str(second)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in first.iterdir())
    assert names == ["curves.png", "final_bar.png", "report.csv", "report.md", "report_paired.csv"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_plots_are_valid_pngs(sweep_dir, tmp_path):
    out = tmp_path / "out"
    assert report.main([str(sweep_dir), "--out", str(out)]) == 0
    assert not (sweep_dir / "report.md").exists()
    sizes = {"curves.png": (1200, 450), "final_bar.png": (800, 250)}
    for name, size in sizes.items():
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
        with Image.open(out / name) as im:
            im.verify()
        with Image.open(out / name) as im:
            assert im.size == size, name


def test_single_seed_has_no_std(tmp_path):
    d = run_dir_for(tmp_path, SWEEP, ARM_A, 0)
    write_json_atomic(d / "metrics.json", _metrics(ARM_A, 0))
    assert report.main([str(tmp_path / SWEEP)]) == 0
    md = (tmp_path / SWEEP / "report.md").read_text()
    assert f"| {ARM_A} | 1/1 | 0.500 |" in md and f"| {ARM_A} | 0.550 | 0.600 | 0.500 | 20 | 31 |" in md
    assert "no history rows, left out of the curves" in md
    with open(tmp_path / SWEEP / "report.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["val/acc50_final_mean"] == "0.5" and row["val/acc50_final_std"] == ""
    assert (row["val/acc50_final_lo"], row["val/acc50_final_hi"], row["val/acc50_final_n"]) == ("", "", "1")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[1, 2]", "invalid: metrics.json holds a list, not an object"),
        ('{"arm": "x"}', "invalid: metrics.json lacks best, error, final"),
        ("", "corrupt: unreadable metrics.json: Expecting value"),
    ],
)
def test_unusable_metrics_json_is_listed_with_reason(tmp_path, content, reason):
    d = run_dir_for(tmp_path, SWEEP, ARM_A, 0)
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(content)
    (run,) = report.load_sweep(tmp_path / SWEEP)
    assert (run.arm, run.seed, run.finished) == (ARM_A, 0, False)
    assert report._reason(run).startswith(reason)


def test_aligned_curve_interpolates_without_extrapolating():
    r1 = report.Run("a", 0, "x", "completed", history=[{"step": 0, "m": 0.0}, {"step": 10, "m": 1.0}])
    r2 = report.Run("a", 1, "y", "completed", history=[{"step": 5, "m": 3.0}, {"step": 15, "m": 3.0}])
    steps, mean, std, n = report.aligned_curve([r1, r2], "m")
    assert n == 2 and steps.tolist() == [0, 5, 10, 15]
    np.testing.assert_allclose(mean, [0.0, (0.5 + 3) / 2, 2.0, 3.0])
    np.testing.assert_allclose(std, [np.nan, np.std([0.5, 3], ddof=1), np.std([1, 3], ddof=1), np.nan])


def test_no_finished_run_is_an_error_with_a_report(tmp_path, capsys):
    d = run_dir_for(tmp_path, SWEEP, ARM_A, 0)
    write_json_atomic(d / "metrics.json", _metrics(ARM_A, 0, "failed", "ValueError: bad config"))
    assert report.main([str(tmp_path / SWEEP)]) == 1
    assert "no run of matcher_thinking completed" in capsys.readouterr().err
    assert "failed: ValueError: bad config" in (tmp_path / SWEEP / "report.md").read_text()


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir()])
def test_missing_or_empty_sweep_dir_is_a_clear_error(tmp_path, capsys, make):
    make(tmp_path / "nope")
    assert report.main([str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.startswith("pr1.report: ")


def test_wandb_offline_fails_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    args = ["--wandb-group", SWEEP, "--wandb-project", "pr1", "--out", str(tmp_path)]
    assert report.main(args) == 1
    err = capsys.readouterr().err
    assert "WANDB_MODE=offline" in err and "wandb login" in err
    assert not list(tmp_path.iterdir())


def test_wandb_without_api_key_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(report.ReportError, match="cannot read W&B runs of group 'g'"):
        report.load_wandb("g", "pr1", "someone")


def test_wandb_run_conversion():
    """The W&B path's mapping, on a stand-in for wandb.apis.public.Run (no network here)."""
    rows = [
        {"_step": i, "trainer/global_step": i, "train/reward": float(i), METRIC: 0.1 * i} for i in range(4)
    ]
    fake = SimpleNamespace(
        scan_history=lambda: rows + [{"_step": 9, "trainer/global_step": 3, "train/reward": 7.0}],
        state="finished",
        config={"arm": ARM_A, "seed": 2},
        summary={"_runtime": 12.5},
        name="run-name",
        path=["ent", "proj", "abc"],
    )
    run = report._wandb_run(fake)
    assert (run.arm, run.seed, run.status, run.source) == (ARM_A, 2, "completed", "ent/proj/abc")
    # Step 3 was re-logged (a resume): its reward is replaced, its val metric kept.
    assert run.metrics["final"][METRIC] == run.metrics["best"][METRIC] == pytest.approx(0.3)
    assert run.metrics["reward_end"] == 7.0  # summarized as metrics.json is: the last 20% of 4 steps
    assert run.metrics["reward_start"] == 0.0
    assert (run.metrics["steps"], run.metrics["wall_time_s"]) == (3, 12.5)
    crashed = report._wandb_run(SimpleNamespace(**{**vars(fake), "state": "crashed"}))
    assert crashed.status == "failed" and crashed.error == "W&B state crashed"


def test_cli_module_entry_point(sweep_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "pr1.report", str(sweep_dir), "--metric", "train/reward"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| arm | seeds finished | train/reward |" in (sweep_dir / "report.md").read_text()


COMMITTED_SWEEPS = sorted(p.parent for p in (ROOT / "results").glob("*/report.md"))


@pytest.mark.parametrize("sweep", COMMITTED_SWEEPS, ids=[p.name for p in COMMITTED_SWEEPS])
def test_committed_reports_regenerate_exactly_from_their_records(sweep, tmp_path):
    """The README's ablation tables come from these files: pr1.report must rebuild them byte for byte."""
    from pr1.report import main

    assert main([str(sweep), "--out", str(tmp_path)]) == 0
    for name in ("report.md", "report.csv", "report_paired.csv"):
        assert (tmp_path / name).read_bytes() == (sweep / name).read_bytes(), name
