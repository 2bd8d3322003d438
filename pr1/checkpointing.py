"""The one writer of a run's checkpoints: last.ckpt, last.prev.ckpt and best.ckpt, each committed atomically.

A checkpoint is written only at the end of a step *after* that step's validation (if it has one), so a
checkpoint always holds a state whose records (history rows, best-so-far) are complete, and a resume never
skips or repeats a validation:

- `last.ckpt` every `every_n_steps` training batches (the validation schedule), at the last step, and when
  a SIGTERM/SIGUSR2 asked for one (`pr1.preemption`); the file it replaces is kept as `last.prev.ckpt`, the
  fallback when `last.ckpt` is found unreadable (`pr1.resume.resume_checkpoint`);
- `best.ckpt` whenever a validation's `monitor` value is >= the best so far (the later one on a tie, as
  metrics.json's `best`); the best-so-far travels in every checkpoint, so it holds across resumes.

Each file is written as a temp file in the same directory, fsynced and `os.replace`d over its name
(Lightning's own writer may stage it in `$TMPDIR` and copy it across file systems without fsync): a kill
leaves the old file or the new one, never a partial one. Stale temp files of a killed writer are removed at
the next start.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from pr1.preemption import PreemptionSignals
from pr1.results import fsync_dir

log = logging.getLogger(__name__)

LAST = "last.ckpt"
PREVIOUS = "last.prev.ckpt"
BEST = "best.ckpt"


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the hidden `.<name>.<pid>.tmp` files a killed writer left in `directory`; returns them."""
    stale = sorted(Path(directory).glob(".*.tmp")) if Path(directory).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def commit(tmp: Path, path: Path) -> None:
    """fsync `tmp` and rename it over `path` (same directory, so the rename is atomic)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def copy_atomic(src: Path, dest: Path) -> None:
    tmp = temp_path(dest)
    shutil.copyfile(src, tmp)
    commit(tmp, dest)


class RunCheckpoints(Checkpoint):
    """Writes last/best checkpoints at the safe points above, and acts on preemption signals after saving.

    A `Checkpoint` subclass, so Lightning calls it after every other callback at each hook: the recorder has
    written the step's history row and validation row before a checkpoint counts them.
    """

    def __init__(self, dirpath: str | os.PathLike[str], monitor: str | None, every_n_steps: int):
        self.dirpath = Path(dirpath)
        self.monitor = monitor
        self.every_n_steps = int(every_n_steps)
        self.best_score: float | None = None
        self.best_step: int | None = None
        self.signals = PreemptionSignals()

    # -------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_step": self.best_step,
            "every_n_steps": self.every_n_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("every_n_steps", self.every_n_steps) != self.every_n_steps:
            raise ValueError(
                f"the checkpoint was written with trainer.val_check_interval={state_dict['every_n_steps']}, "
                f"this run has {self.every_n_steps}: an exact resume needs the same validation schedule "
                "(rerun with the old value, or resume=false to start over)"
            )
        self.best_score, self.best_step = state_dict["best_score"], state_dict["best_step"]

    # -------------------------------------------------------------------------------------- hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning's SIGTERM handler is in place (it would abort at the next step, checkpoint or not).
        self.signals.install()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signals.restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.signals.restore()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._validates_now(trainer):
            self._step_end(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        improved = self._track_best(trainer)
        if trainer.state.fn == "fit":
            self._step_end(trainer, improved)
        elif improved:  # the starting point (validation before training) can be the best
            self._save(trainer, BEST)

    # -------------------------------------------------------------------------------------- logic
    @staticmethod
    def _validates_now(trainer: L.Trainer) -> bool:
        """Whether Lightning runs a validation right after this training batch (its own decision)."""
        loop = trainer.fit_loop.epoch_loop
        return not loop.val_loop.skip and loop._should_check_val_fx(trainer.fit_loop._data_fetcher)

    def _track_best(self, trainer: L.Trainer) -> bool:
        value = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        if value is None or not math.isfinite(float(value)):
            return False
        if self.best_score is not None and float(value) < self.best_score:
            return False
        self.best_score, self.best_step = float(value), int(trainer.global_step)
        return True

    def _step_end(self, trainer: L.Trainer, improved: bool = False) -> None:
        batches = trainer.fit_loop.epoch_loop.total_batch_idx + 1
        periodic = batches % self.every_n_steps == 0
        last_step = trainer.global_step >= trainer.max_steps > 0
        if improved:
            self._save(trainer, BEST)
        if periodic or last_step or self.signals.pending:
            self._save_last(trainer, copy_of=BEST if improved else None)
        self.signals.stop()

    def _save(self, trainer: L.Trainer, name: str) -> None:
        path = self.dirpath / name
        tmp = temp_path(path)
        trainer.save_checkpoint(tmp)  # every rank takes part; rank 0 writes
        if trainer.is_global_zero:
            commit(tmp, path)
        trainer.strategy.barrier()

    def _save_last(self, trainer: L.Trainer, copy_of: str | None) -> None:
        last, previous = self.dirpath / LAST, self.dirpath / PREVIOUS
        if trainer.is_global_zero and last.exists():
            os.replace(last, previous)  # a kill right here leaves last.prev.ckpt, which resume falls back to
        if copy_of is None:
            self._save(trainer, LAST)
        elif trainer.is_global_zero:
            copy_atomic(self.dirpath / copy_of, last)
        trainer.strategy.barrier()
        log.info("saved %s at step %d", last, trainer.global_step)
