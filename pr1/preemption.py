"""SIGTERM and SIGUSR2: checkpoint at the next safe point, then stop as "preempted" (or let submitit requeue).

SLURM (through submitit's `--signal=USR2@<s>`) sends USR2 ahead of a time limit, and SIGTERM then USR2 on a
preemption; `kill` and container runtimes send SIGTERM. Neither may abort a step or lose the steps since the
last periodic checkpoint. `PreemptionSignals` only records the signal; the checkpoint writer
(`pr1.checkpointing.RunCheckpoints`) saves `last.ckpt` at the end of the current step (after that step's
validation, if it has one) and then calls `stop()`:

- under submitit, USR2 goes to submitit's handler, which requeues the job and exits; a SIGTERM there is
  followed by USR2, so it only brings the checkpoint forward and training goes on until the USR2;
- otherwise either signal raises `Preempted`; `python -m pr1.run` exits with `PREEMPTED_EXIT_CODE` and
  metrics.json says "preempted". Rerunning the command resumes.
"""

from __future__ import annotations

import logging
import signal

log = logging.getLogger(__name__)

# EX_TEMPFAIL (sysexits.h): "a temporary failure; the user is invited to retry" - rerunning resumes the run.
PREEMPTED_EXIT_CODE = 75


class Preempted(Exception):  # noqa: N818  (a state, not an error: the run stopped where it can resume)
    """Raised after the checkpoint that a SIGTERM/SIGUSR2 asked for is on disk."""


class PreemptionSignals:
    """Records SIGTERM/SIGUSR2 between `install()` and `restore()`; `pending` says a checkpoint is due."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.frame: object = None
        self.previous: dict[int, object] = {}

    @property
    def pending(self) -> bool:
        return self.received is not None

    @property
    def under_submitit(self) -> bool:
        return callable(self.previous.get(signal.SIGUSR2))

    def _on_signal(self, signum: int, frame) -> None:
        log.warning("received %s: checkpointing at the end of the current step", signal.Signals(signum).name)
        if self.received != signal.SIGUSR2:  # USR2 (requeue) wins over a SIGTERM that came first
            self.received, self.frame = signum, frame

    def install(self) -> None:
        for signum in (signal.SIGUSR2, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def stop(self) -> None:
        """Act on the recorded signal once its checkpoint is saved: requeue (submitit) or raise Preempted."""
        signum, frame = self.received, self.frame
        if signum is None:
            return
        if self.under_submitit and signum == signal.SIGTERM:
            self.received = None  # submitit's USR2 follows; the checkpoint is already on disk
            return
        submitit_handler = self.previous.get(signal.SIGUSR2) if signum == signal.SIGUSR2 else None
        self.restore()
        if callable(submitit_handler):
            submitit_handler(signum, frame)  # requeues this job and exits (SystemExit)
        raise Preempted(f"stopped by {signal.Signals(signum).name} after checkpointing; rerun to resume")
