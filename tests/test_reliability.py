"""What keeps records right across kills: resume-point choice, history trim, atomic writes, signals."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from pr1.checkpointing import remove_stale_temps
from pr1.preemption import Preempted, PreemptionSignals
from pr1.results import mark_failed, write_json_atomic, write_text_atomic
from pr1.resume import RECORDS_KEY, ResumePoint, completed_record, resume_checkpoint, trim_history


def save_ckpt(path, step: int, rows: int) -> None:
    """A checkpoint with what a resume reads (Lightning's keys, pr1's state, the history row count)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"global_step": step, "pr1": {"samples_done": 2 * step}, "optimizer_states": [{"state": {}}]}
    torch.save({**ckpt, RECORDS_KEY: {"history_rows": rows}}, path)


@pytest.mark.parametrize("broken", [b"", b"PK\x03\x04 truncated", b"not a checkpoint"])
def test_broken_last_is_moved_aside_and_the_previous_one_used(tmp_path, broken, caplog):
    ckpts = tmp_path / "checkpoints"
    save_ckpt(ckpts / "last.prev.ckpt", 4, 9)
    ckpts.joinpath("last.ckpt").write_bytes(broken)
    point = resume_checkpoint(tmp_path, resume=True)
    assert point == ResumePoint(ckpts / "last.prev.ckpt", 4, 9)
    assert not (ckpts / "last.ckpt").exists() and (ckpts / "last.ckpt.corrupt-0").read_bytes() == broken
    assert "last.ckpt.corrupt-0" in caplog.text and "last.ckpt is unreadable" in caplog.text


def test_resume_falls_back_to_best_and_skips_weights_only_files(tmp_path):
    ckpts = tmp_path / "checkpoints"
    save_ckpt(ckpts / "best.ckpt", 2, 5)
    torch.save({"global_step": 0, "pr1": {}, "optimizer_states": []}, ckpts / "last.ckpt")  # validate-time
    assert resume_checkpoint(tmp_path, resume=True) == ResumePoint(ckpts / "best.ckpt", 2, 5)
    assert resume_checkpoint(tmp_path, resume=False) is None


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert resume_checkpoint(tmp_path, resume=True) is None


def record(status: str, steps: int) -> dict:
    """A schema-complete metrics.json (pr1.results.RunMetrics)."""
    return {
        "sweep": "s",
        "arm": "a",
        "seed": 0,
        "status": status,
        "error": None,
        "overrides": [],
        "steps": steps,
        "wall_time_s": 12.5,
        "git_commit": "abc",
        "task_metric": "val/score",
        "final": {},
        "best": {},
        "reward_start": None,
        "reward_end": None,
    }


@pytest.mark.parametrize(
    "status, steps, point_step, max_steps, kept",
    [
        ("completed", 8, 8, 8, True),  # a rerun of the finished run: its record is kept
        ("completed", 8, 8, 12, False),  # max_steps raised: it trains on
        ("running", 8, 8, 8, False),  # killed after the last checkpoint, before the record said completed
        ("completed", 6, 8, 8, False),  # record and checkpoint disagree: redo the end, rewrite the record
    ],
)
def test_completed_record_only_for_a_run_finished_at_max_steps(
    tmp_path, status, steps, point_step, max_steps, kept
):
    write_json_atomic(tmp_path / "metrics.json", record(status, steps))
    point = ResumePoint(tmp_path / "checkpoints" / "last.ckpt", point_step, 9)
    got = completed_record(tmp_path, point, max_steps)
    assert (got == record(status, steps)) if kept else got is None
    assert completed_record(tmp_path, None, max_steps) is None
    (tmp_path / "metrics.json").write_text("{")  # unreadable: not a completed record
    assert completed_record(tmp_path, point, max_steps) is None


def test_a_failed_later_command_does_not_undo_a_completed_run(tmp_path):
    write_json_atomic(tmp_path / "metrics.json", record("completed", 8))
    mark_failed(tmp_path, {"arm": "a"}, "ValueError: a bad rerun")
    assert json.loads((tmp_path / "metrics.json").read_text()) == record("completed", 8)
    write_json_atomic(tmp_path / "metrics.json", record("running", 4))
    mark_failed(tmp_path, {"arm": "a"}, "ValueError: crashed mid-run")
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


def rows(n: int) -> list[dict]:
    return [{"step": i // 2, "train/reward": float(i)} for i in range(n)]


def write_history(run_dir, n: int, partial: bool = False) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows(n)) + ('{"step": 9, "tra' if partial else "")
    (run_dir / "history.jsonl").write_text(text)


def test_trim_keeps_exactly_the_rows_the_checkpoint_had(tmp_path):
    """Rows are counted, not compared by step: with grad_accum > 1 several rows share a step."""
    write_history(tmp_path, 7, partial=True)
    trim_history(tmp_path, ResumePoint(tmp_path / "x.ckpt", 1, 3))
    got = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert got == rows(3)


def test_trim_on_a_fresh_start_drops_the_dead_runs_rows(tmp_path):
    write_history(tmp_path, 5)
    trim_history(tmp_path, None)
    assert (tmp_path / "history.jsonl").read_text() == ""


def test_trim_of_a_checkpoint_without_a_row_count_uses_its_step(tmp_path):
    write_history(tmp_path, 6)
    trim_history(tmp_path, ResumePoint(tmp_path / "x.ckpt", 1, None))
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 4


def test_atomic_text_write_and_stale_temp_cleanup(tmp_path):
    write_text_atomic(tmp_path / "config.yaml", "a: 1\n")
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    stale = tmp_path / ".metrics.json.123.abcd.tmp"
    stale.write_text("{")
    assert remove_stale_temps(tmp_path) == [stale] and not stale.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR2])
def test_a_signal_is_recorded_then_stops_as_preempted(signum):
    signals = PreemptionSignals()
    signals.install()
    try:
        os.kill(os.getpid(), signum)
        assert signals.pending
        with pytest.raises(Preempted, match=signal.Signals(signum).name):
            signals.stop()
        assert signal.getsignal(signal.SIGUSR2) is not signals._on_signal  # handlers given back
    finally:
        signals.restore()


def test_under_a_requeueing_handler_usr2_requeues_and_sigterm_waits_for_it():
    """submitit's USR2 handler requeues and exits; its SIGTERM is followed by USR2, so training goes on."""
    calls = []

    def requeue(signum, frame):
        calls.append(signum)
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, requeue)
    signals = PreemptionSignals()
    signals.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        signals.stop()  # checkpoint written; no requeue yet
        assert not signals.pending and calls == []
        os.kill(os.getpid(), signal.SIGUSR2)
        with pytest.raises(SystemExit):
            signals.stop()
        assert calls == [signal.SIGUSR2]
    finally:
        signals.restore()
        signal.signal(signal.SIGUSR2, previous)
