"""pr1 sweeps on the real localhost SLURM cluster (slurm/local-cluster.sh): every arm a job, preemption-safe.

Needs the cluster up; under PR1_REQUIRE_SLURM=1 (CI) a missing cluster fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.records import assert_same_records

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SHORT = ["experiment=smoke", "trainer.max_steps=3", "trainer.val_check_interval=3"]


def sweep(root: Path, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PR1_ROOT": str(root),
        "PR1_DATA_DIR": str(root / "data"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pr1.run", "-m", "hydra/launcher=slurm_local", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 900) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"sweep failed ({proc.returncode}):\n{out[-3000:]}\n{err[-5000:]}"
    return out + err


def job_ids(sweep_dir: Path) -> list[str]:
    return sorted({p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir() if p.name[0].isdigit()})


def sacct_states(job_id: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-D", "-j", job_id, "-o", "JobID,State"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [line.split("|")[1] for line in out.split()]


def test_two_by_two_sweep_completes_on_slurm(slurm_cluster, tmp_path):
    proc = sweep(tmp_path, "sweep=grid", "matcher=hungarian,naive", "thinking=true,false", *SHORT)
    finish(proc)
    sweep_dir = tmp_path / "results" / "grid"
    arms = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert arms == [
        "matcher=hungarian,thinking=false",
        "matcher=hungarian,thinking=true",
        "matcher=naive,thinking=false",
        "matcher=naive,thinking=true",
    ]
    for arm in arms:
        metrics = json.loads((sweep_dir / arm / "seed0" / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["steps"] == 3
    ids = job_ids(sweep_dir)
    assert ids
    deadline = time.monotonic() + 60  # accounting lands shortly after the jobs end
    while True:
        states = [s for jid in ids for s in sacct_states(jid)]
        if len(states) == 4 and set(states) == {"COMPLETED"} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert states == ["COMPLETED"] * 4, states
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["completed"] == 4 and summary["not_completed"] == 0


def test_preempted_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    """SIGTERM then USR2 mid-run: pr1 checkpoints, submitit requeues, and the requeued job ends with every
    record file (history, metrics.json, best.ckpt, last.ckpt) equal to an uninterrupted job's."""
    steps = ["experiment=smoke", "trainer.max_steps=10", "trainer.val_check_interval=4"]
    whole = sweep(tmp_path / "whole", "sweep=pre", *steps)
    broken = sweep(tmp_path / "broken", "sweep=pre", *steps)
    sweep_dir = tmp_path / "broken" / "results" / "pre"
    history = sweep_dir / "default" / "seed0" / "history.jsonl"
    deadline = time.monotonic() + 600
    while not (
        history.exists() and sum("train/reward" in line for line in history.read_text().splitlines()) >= 5
    ):
        assert broken.poll() is None and time.monotonic() < deadline, "job ended or stalled before step 5"
        time.sleep(0.2)
    (job_id,) = job_ids(sweep_dir)
    # What SLURM + submitit do on preemption: SIGTERM, then USR2 (submitit's Job._interrupt does the same).
    subprocess.run(["scancel", job_id, "--signal", "SIGTERM"], check=True, timeout=60)
    subprocess.run(["scancel", job_id, "--signal", "USR2"], check=True, timeout=60)
    finish(broken)
    finish(whole)

    log = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*_log.*"))
    assert "saved" in log and "resuming from" in log, log[-4000:]
    assert "REQUEUED" in sacct_states(job_id)
    train = [r for r in map(json.loads, history.read_text().splitlines()) if "train/reward" in r]
    assert [r["step"] for r in train] == list(range(1, 11))  # no step lost, none done twice
    assert_same_records(
        tmp_path / "whole" / "results" / "pre" / "default" / "seed0", sweep_dir / "default" / "seed0"
    )
    assert json.loads((sweep_dir / "default" / "seed0" / "metrics.json").read_text())["status"] == "completed"


def test_two_task_ddp_job_takes_its_ranks_from_slurm(slurm_cluster, tmp_path):
    """One arm as a 2-task SLURM job: Lightning's SLURM environment gives DDP its ranks (gloo on CPU)."""
    proc = sweep(
        tmp_path,
        "sweep=ddp",
        "seed=0",
        *SHORT,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "hydra.launcher.tasks_per_node=2",
    )
    out = finish(proc)
    run_dir = tmp_path / "results" / "ddp" / "default" / "seed0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 3, out[-3000:]
    log = "".join(p.read_text() for p in (tmp_path / "results" / "ddp" / ".submitit").rglob("*_log.*"))
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-3000:]
