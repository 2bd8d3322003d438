"""Killed runs resume exactly: same steps, data order and RNG, hence the same history as an unbroken run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

ARGS = ["experiment=smoke", "trainer.max_steps=8", "trainer.val_check_interval=3"]


def env_for(root: Path) -> dict:
    return {
        **os.environ,
        "PR1_ROOT": str(root),
        "PR1_DATA_DIR": str(root / "data"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


def train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [r for r in rows if "train/reward" in r]


def wait_for_steps(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "history.jsonl").exists() and len(train_rows(run_dir)) >= n:
            return
        assert proc.poll() is None, f"run ended early:\n{proc.communicate()[1][-3000:]}"
        time.sleep(0.2)
    pytest.fail(f"no {n} steps within {timeout}s")


def test_kill_and_rerun_continues_exactly(tmp_path):
    cmd = [sys.executable, "-m", "pr1.run", *ARGS]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(cmd, cwd=ROOT, env=env_for(whole), check=True, capture_output=True, timeout=900)

    run_dir = broken / "results" / "default" / "default" / "seed0"
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env_for(broken), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for_steps(run_dir, 5, proc)  # past the checkpoint at step 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "running"  # killed, not finished

    rerun = subprocess.run(cmd, cwd=ROOT, env=env_for(broken), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from" in rerun.stderr + rerun.stdout

    expected = train_rows(whole / "results" / "default" / "default" / "seed0")
    got = train_rows(run_dir)
    assert [r["step"] for r in got] == list(range(1, 9))
    for a, b in zip(expected, got, strict=True):
        assert a["train/reward"] == pytest.approx(b["train/reward"], abs=1e-6), a["step"]
        assert a["train/loss"] == pytest.approx(b["train/loss"], abs=1e-6), a["step"]
    final = json.loads((run_dir / "metrics.json").read_text())
    assert final["status"] == "completed" and final["steps"] == 8


def test_rerunning_a_completed_run_leaves_its_records_as_they_are(tmp_path):
    """Not its status, steps, git commit, start-vs-end CI or config.yaml; also when the rerun fails."""
    cmd = [sys.executable, "-m", "pr1.run", *ARGS]
    env = env_for(tmp_path)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=900)
    run_dir = tmp_path / "results" / "default" / "default" / "seed0"
    files = ("metrics.json", "config.yaml", "history.jsonl")
    before = {name: (run_dir / name).read_bytes() for name in files}
    assert json.loads(before["metrics.json"])["status"] == "completed"

    changed = subprocess.run(  # another config in the same run dir (trainer.* is not part of the arm id)
        [*cmd, "trainer.log_every_n_steps=2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert changed.returncode == 0, changed.stderr[-3000:]
    out = changed.stdout + changed.stderr
    assert "nothing to train or export" in out and "completed with another composed config" in out
    assert "pr1 run finished: 8 steps" in changed.stdout  # the record's own summary, printed again
    assert {name: (run_dir / name).read_bytes() for name in files} == before

    export = tmp_path / "export"  # with export_dir the rerun loads the model and restores its weights
    exported = subprocess.run(
        [*cmd, f"export_dir={export}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "records unchanged" in exported.stdout + exported.stderr and (export / "config.json").exists()
    assert {name: (run_dir / name).read_bytes() for name in files} == before

    failed = subprocess.run(  # a rerun that fails before training does not mark the finished run failed
        [*cmd, f"export_dir={export}", "trainer.accelerator=nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert failed.returncode != 0
    assert {name: (run_dir / name).read_bytes() for name in files} == before
