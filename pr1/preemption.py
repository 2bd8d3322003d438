"""Checkpoint at the step boundary when SLURM announces a preemption or time limit, then requeue.

SLURM (through submitit's `--signal=USR2@<s>`) sends USR2 ahead of a time limit, and SIGTERM then USR2 on a
preemption. submitit's own USR2 handler would requeue the job and exit at once, losing every step since
the last periodic checkpoint, and Lightning's SIGTERM handler would abort training. This callback takes
both signals first, lets the current step finish, saves `last.ckpt` (atomically), and only then hands USR2
to submitit's handler, which requeues the job and exits; the requeued job resumes from that checkpoint.
Outside submitit, USR2 saves and stops training cleanly (rerun the command to resume) and SIGTERM keeps
Lightning's behaviour.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Checkpoint

log = logging.getLogger(__name__)


class PreemptionCheckpoint(Checkpoint):
    """A Checkpoint callback, so Lightning runs it after the others at each step end."""

    def __init__(self, ckpt_path: str | Path):
        self.ckpt_path = str(ckpt_path)
        self.requeue: tuple[int, object] | None = None  # pending USR2 (signum, frame)
        self.save_soon = False  # pending SIGTERM under submitit: a USR2 normally follows
        self.previous: dict[int, object] = {}

    def _on_usr2(self, signum: int, frame) -> None:
        log.warning("received USR2: checkpointing after the current step, then requeueing")
        self.requeue = (signum, frame)

    def _on_sigterm(self, signum: int, frame) -> None:
        log.warning("received SIGTERM: checkpointing after the current step")
        self.save_soon = True

    def on_fit_start(self, trainer, pl_module) -> None:
        self.previous[signal.SIGUSR2] = signal.signal(signal.SIGUSR2, self._on_usr2)
        if callable(self.previous[signal.SIGUSR2]):  # submitit's handler: it requeues on USR2
            self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.requeue is None and not self.save_soon:
            return
        trainer.save_checkpoint(self.ckpt_path)
        log.warning("saved %s at step %d", self.ckpt_path, trainer.global_step)
        self.save_soon = False
        if self.requeue is None:
            return
        signum, frame = self.requeue
        self.requeue = None
        submitit_handler = self.previous.get(signal.SIGUSR2)
        self._restore()
        if callable(submitit_handler):
            submitit_handler(signum, frame)  # requeues this job and exits
        trainer.should_stop = True
