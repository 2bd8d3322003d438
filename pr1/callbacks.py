"""Run bookkeeping: per-step history, console lines, metrics.json (atomic) and the end-of-run summary.

metrics.json's final/best/reward fields are `pr1.results.summarize_history` of history.jsonl, so a resumed
run (whose history is trimmed to its checkpoint) and any reader of the history agree.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only

from pr1.preemption import Preempted
from pr1.results import (
    HISTORY_FILE,
    METRICS_FILE,
    append_jsonl,
    read_jsonl,
    summarize_history,
    write_json_atomic,
)
from pr1.resume import RECORDS_KEY

PREEMPTIONS = ("UncompletedJobError", "SIGTERMException")


def git_commit(where: Path | None = None) -> str | None:
    """HEAD of pr1's checkout (or of `where`), with "+dirty" when tracked files outside results/ differ from
    it: a run made from uncommitted code must not claim a commit that does not hold that code, while a
    committed sweep rerun in place (its records are tracked) is not dirty. None outside a checkout."""
    git = {"capture_output": True, "text": True, "timeout": 10, "cwd": where or Path(__file__).parent}
    changed = ["status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results"]
    try:
        head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], **git)
        status = subprocess.run(["git", "--no-optional-locks", *changed], **git)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode or status.returncode or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


class RunRecorder(L.Callback):
    """Writes history.jsonl every step and metrics.json at start/validation/end: a killed run keeps both."""

    def __init__(
        self,
        run_dir: str | Path,
        sweep: str,
        arm: str,
        seed: int,
        task_metric: str,
        print_every: int = 10,
        overrides: list[str] | None = None,
    ):
        """`overrides` (the arm's command line) default to Hydra's task overrides when Hydra runs."""
        if overrides is None:
            overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        self.run_dir = Path(run_dir)
        self.meta = {
            "sweep": sweep,
            "arm": arm,
            "seed": int(seed),
            "overrides": list(overrides),
            "task_metric": f"val/{task_metric}",
            "git_commit": git_commit(),
        }
        self.print_every = max(int(print_every), 1)
        self.t0 = time.time()
        self.extra: dict = {}  # run-level results beside the history's summary (data skips, improvement)
        self.frozen: dict | None = None  # a completed run's record that a rerun must not touch (keep())

    def keep(self, record: dict) -> None:
        """Rerunning a completed run: its metrics.json stays exactly as it is, whatever this process does."""
        self.frozen = dict(record)

    @property
    def history_path(self) -> Path:
        return self.run_dir / HISTORY_FILE

    def write(self, trainer: L.Trainer, status: str, error: str | None = None) -> dict:
        if self.frozen is not None:
            return self.frozen
        rows = read_jsonl(self.history_path) if self.history_path.exists() else []
        data = {
            **self.meta,
            "status": status,
            "error": error,
            "steps": int(trainer.global_step),
            "wall_time_s": time.time() - self.t0,
            **summarize_history(rows, self.meta["task_metric"]),
            **self.extra,
        }
        write_json_atomic(self.run_dir / METRICS_FILE, data)
        return data

    @rank_zero_only
    def on_fit_start(self, trainer, pl_module) -> None:
        self.write(trainer, "running")

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "time/"))}
        step = int(trainer.global_step)
        append_jsonl(self.history_path, {"step": step, **row})
        if step % self.print_every == 0 or step == trainer.max_steps:
            keys = [
                k for k in ("train/reward", "train/kl", "train/loss", "train/completion_length") if k in row
            ]
            msg = "  ".join(f"{k.split('/')[-1]}={row[k]:.4f}" for k in keys)
            trainer.progress_bar_callback.print(
                f"step {step:5d}  {msg}"
            ) if trainer.progress_bar_callback else print(f"step {step:5d}  {msg}", flush=True)

    @rank_zero_only
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        vals = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if not vals:
            return
        append_jsonl(self.history_path, {"step": int(trainer.global_step), **vals})
        if trainer.state.fn == "fit":
            self.write(trainer, "running")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """The number of history rows this checkpoint's state has written: a resume keeps exactly those."""
        rows = len(read_jsonl(self.history_path)) if self.history_path.exists() else 0
        checkpoint[RECORDS_KEY] = {"history_rows": rows}

    @rank_zero_only
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # Preempted: a SIGTERM/SIGUSR2 stop after its checkpoint; SystemExit and UncompletedJobError: submitit
        # requeueing the job after that checkpoint; SIGTERMException: Lightning's own SIGTERM stop.
        preempted = isinstance(exception, (Preempted, SystemExit)) or type(exception).__name__ in PREEMPTIONS
        status = "preempted" if preempted else "failed"
        self.write(trainer, status, error=f"{type(exception).__name__}: {exception}")
