"""A Lightning callback that signals its own process at a chosen point of a run: the kill tests' fault.

Added from the command line like any callback (`+callbacks.fault._target_=tests.faults.Fault ...`); it fires
once (a marker file records that it did), so the rerun of the same command trains on undisturbed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L

PHASES = ("backward", "validation", "checkpoint")


class Fault(L.Callback):
    """Send `sig` to this process at `phase` of the `n`-th optimizer step (0: the first step's)."""

    def __init__(self, phase: str, n: int, sig: str, marker: str):
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        self.phase, self.n, self.sig, self.marker = phase, int(n), getattr(signal, sig), Path(marker)

    def _fire(self, trainer: L.Trainer, phase: str) -> None:
        if phase != self.phase or trainer.global_step != self.n or self.marker.exists():
            return
        self.marker.write_text(f"{self.phase} {self.n} {signal.Signals(self.sig).name}\n")
        os.kill(os.getpid(), self.sig)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._fire(trainer, "backward")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.state.fn == "fit":
            self._fire(trainer, "validation")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._fire(trainer, "checkpoint")
