"""A run killed at seeded points (mid-step, mid-validation, mid-checkpoint, before the first checkpoint,
repeatedly, with grad_accum=2) by SIGKILL, SIGTERM or SIGUSR2 and rerun ends with the records of an
uninterrupted run: history.jsonl, metrics.json's final/best/reward_start/reward_end/steps, best.ckpt and
last.ckpt (weights, optimizer state, step) identical."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from pr1.preemption import PREEMPTED_EXIT_CODE
from tests.helpers import TINY_MODEL, run_module
from tests.records import assert_same_records

pytestmark = pytest.mark.slow

BASE = [
    "experiment=smoke",
    *TINY_MODEL,
    "trainer.max_steps=6",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
]
# Checkpoints fall mid-cycle too (validation every 3 batches, optimizer steps every 2): the resumed run must
# put back the half-built gradient that Lightning zeroes when a fit starts.
ACCUM = ["objective.grad_accum=2", "trainer.val_check_interval=3"]
SEED = 18


def run(root: Path, extra: list[str], faults: list[tuple[str, int, str]] = ()) -> subprocess.CompletedProcess:
    args = [*BASE, *extra]
    for i, (phase, n, sig) in enumerate(faults):
        key = f"+callbacks.fault{i}"
        args += [
            f"{key}._target_=tests.faults.Fault",
            f"{key}.phase={phase}",
            f"{key}.n={n}",
            f"{key}.sig={sig}",
            f"{key}.marker={root}/fault{i}.done",
        ]
    return run_module(
        root, "pr1.run", *args, check=False, data_dir=root.parent / "data", env={"OMP_NUM_THREADS": "1"}
    )


def run_dir(root: Path) -> Path:
    (found,) = (root / "results" / "default").glob("*/seed0")  # the arm: TINY_MODEL (+ grad_accum)
    return found


def scenarios() -> list[tuple[str, list[str], list[tuple[str, int, str]]]]:
    """Seeded kill points: (name, extra overrides, faults in time order, one per process).

    One chain of repeated kills covers every phase (each rerun is killed again, later), so the test stays
    short: before the first checkpoint, mid-validation, mid-checkpoint (while best.ckpt is written), mid-step.
    """
    rng = random.Random(SEED)
    sig = lambda: rng.choice(["SIGKILL", "SIGTERM", "SIGUSR2"])  # noqa: E731
    chain = [
        ("backward", rng.choice([0, 1]), "SIGKILL"),  # before the first checkpoint (step 2)
        ("validation", 2, sig()),
        ("checkpoint", 4, "SIGKILL"),
        ("backward", 5, sig()),
    ]
    accum = [("backward", rng.choice([1, 2]), sig()), ("validation", 3, sig())]
    return [("phases", [], chain), ("grad-accum", ACCUM, accum)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, extra in (("plain", []), ("accum", ACCUM)):
        root = tmp_path_factory.mktemp(f"whole-{name}")
        proc = run(root, extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[name] = run_dir(root)
    return out


@pytest.mark.parametrize("name, extra, faults", scenarios(), ids=[s[0] for s in scenarios()])
def test_killed_run_has_the_records_of_an_uninterrupted_one(tmp_path, uninterrupted, name, extra, faults):
    root = tmp_path / name
    for i, (phase, n, sig) in enumerate(faults):
        proc = run(root, extra, faults)  # each fires once (its marker), in the order listed
        fired = (root / f"fault{i}.done").exists()
        assert fired, f"fault {phase} {n} never fired:\n{proc.stderr[-3000:]}"
        expected = {"SIGKILL": -9, "SIGTERM": PREEMPTED_EXIT_CODE, "SIGUSR2": PREEMPTED_EXIT_CODE}[sig]
        assert proc.returncode == expected, proc.stderr[-3000:]
        metrics = json.loads((run_dir(root) / "metrics.json").read_text())
        assert metrics["status"] == ("running" if sig == "SIGKILL" else "preempted")
    final = run(root, extra, faults)
    assert final.returncode == 0, final.stderr[-3000:]
    whole = uninterrupted["accum" if extra else "plain"]
    assert_same_records(whole, run_dir(root))
    if extra:
        return
    again = run(root, extra)  # rerunning the completed run changes nothing
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_records(whole, run_dir(root))


def test_broken_last_checkpoint_is_moved_aside_and_the_run_falls_back(tmp_path, uninterrupted):
    """A 0-byte last.ckpt (a kill while a non-atomic writer committed it) never blocks the rerun."""
    root = tmp_path / "broken"
    proc = run(root, [], [("validation", 4, "SIGUSR2")])
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
    rd = run_dir(root)
    (rd / "checkpoints" / "last.ckpt").write_bytes(b"")
    rerun = run(root, [])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    out = rerun.stdout + rerun.stderr  # Hydra's job log prints to stdout
    assert "last.ckpt is unreadable" in out and "last.ckpt.corrupt-0" in out
    assert (rd / "checkpoints" / "last.ckpt.corrupt-0").stat().st_size == 0
    assert_same_records(uninterrupted["plain"], rd)
