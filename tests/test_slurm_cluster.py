"""The local SLURM cluster of slurm/local-cluster.sh: submission through submitit, accounting, preemption.

Bring the cluster up first (as root): `bash slurm/local-cluster.sh up`. Without a cluster these tests skip,
unless PR1_REQUIRE_SLURM=1 (as in CI), where they fail.
"""

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest
import submitit

from tests.helpers import SLURM_PARTITION as PARTITION

pytestmark = pytest.mark.slurm

# Generous: a job usually starts and finishes within a few seconds; these bound a hung cluster.
JOB_TIMEOUT_S = 120
SACCT_TIMEOUT_S = 60

# Jobs unpickle the functions and classes below on the node, where this test module is not importable.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def _wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, details: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}\n{details()}")
        time.sleep(0.2)


def _job_details(job: submitit.Job) -> str:
    squeue = _run("squeue", "-h", "-j", job.job_id, "-o", "%T %r").stdout.strip()
    return (
        f"job {job.job_id} squeue state: {squeue or '(gone)'}\n"
        f"--- stdout ---\n{job.stdout() or ''}\n--- stderr ---\n{job.stderr() or ''}"
    )


def _sacct_states(job_id: str) -> list[str]:
    """States of every run of the job's allocation, oldest first (-D lists runs that were requeued)."""
    proc = _run("sacct", "-n", "-P", "-X", "-D", "-j", job_id, "-o", "State")
    assert proc.returncode == 0, f"sacct failed: {proc.stderr}"
    return proc.stdout.split()


def _wait_for_result(job: submitit.Job):
    _wait_until(job.done, JOB_TIMEOUT_S, f"job {job.job_id} to finish", lambda: _job_details(job))
    return job.result()


def _wait_for_sacct_completed(job_id: str) -> list[str]:
    # slurmctld sends the final state to slurmdbd asynchronously, so sacct can lag the job by a moment.
    _wait_until(
        lambda: _sacct_states(job_id)[-1:] == ["COMPLETED"],
        SACCT_TIMEOUT_S,
        f"sacct to report job {job_id} COMPLETED",
        lambda: f"sacct states: {_sacct_states(job_id)}",
    )
    return _sacct_states(job_id)


def _executor(folder: Path) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    # submitit counts any USR2 within 10 minutes of the time limit as a timeout, not a preemption.
    executor.update_parameters(slurm_partition=PARTITION, timeout_min=30, cpus_per_task=1, mem_gb=1)
    return executor


def test_cluster_is_up(slurm_cluster):
    node_states = _run("sinfo", "-h", "-N", "-p", PARTITION, "-o", "%t").stdout.split()
    assert node_states, f"partition {PARTITION!r} has no nodes"
    assert all(s.rstrip("*~#") in {"idle", "mix", "alloc"} for s in node_states), node_states
    proc = _run("sacct", "-n", "-X", "-S", "now")
    assert proc.returncode == 0, f"sacct (accounting through slurmdbd) failed: {proc.stderr}"


def _hostname_and_sum(a: int, b: int) -> tuple[str, int]:
    import socket

    return socket.gethostname(), a + b


def test_submitit_job_completes(slurm_cluster, tmp_path):
    job = _executor(tmp_path).submit(_hostname_and_sum, 2, 3)
    host, total = _wait_for_result(job)
    assert total == 5
    assert host
    assert _wait_for_sacct_completed(job.job_id) == ["COMPLETED"]


class _Steps(submitit.helpers.Checkpointable):
    """Does `n_steps` steps of work; its state (what is done) travels in the pickled object on requeue.

    On its first run it stops after half the steps and waits to be preempted, so the test can interrupt it
    mid-run without racing it. `progress_file` lets the test see how far it got.
    """

    def __init__(self, n_steps: int, progress_file: Path) -> None:
        self.n_steps = n_steps
        self.progress_file = progress_file
        self.done: list[int] = []  # one entry per finished step; one append is atomic w.r.t. signals
        self.runs = 0

    def __call__(self) -> tuple[list[int], int]:
        self.runs += 1
        for step in range(len(self.done), self.n_steps):
            while self.runs == 1 and step == self.n_steps // 2:
                time.sleep(0.05)  # USR2 lands here: submitit checkpoints self, requeues and exits
            self.done.append(step)
            self.progress_file.write_text(str(len(self.done)))
        return self.done, self.runs


def test_preempted_checkpointable_job_resumes(slurm_cluster, tmp_path):
    n_steps = 6
    progress = tmp_path / "progress"
    job = _executor(tmp_path).submit(_Steps(n_steps, progress))

    _wait_until(
        lambda: progress.exists() and progress.read_text() == str(n_steps // 2),
        JOB_TIMEOUT_S,
        f"job {job.job_id} to reach step {n_steps // 2}",
        lambda: _job_details(job),
    )
    job._interrupt()  # what SLURM does before preempting: SIGTERM, then USR2 (submitit's checkpoint signal)

    done, runs = _wait_for_result(job)
    assert runs == 2, "the job should have been requeued once and run again"
    assert done == list(range(n_steps)), "every step should be done exactly once, in order"
    states = _wait_for_sacct_completed(job.job_id)
    assert states == ["REQUEUED", "COMPLETED"], states
