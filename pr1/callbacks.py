"""Run bookkeeping: per-step history, console lines, metrics.json (atomic) and the end-of-run summary."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from pr1.results import append_jsonl, read_jsonl, write_json_atomic


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def window_mean(values: list[float], frac: float, last: bool) -> float:
    """Mean of the first or last `frac` of a series (at least one point); NaN if empty."""
    if not values:
        return float("nan")
    k = max(1, int(round(len(values) * frac)))
    return float(np.mean(values[-k:] if last else values[:k]))


class RunRecorder(L.Callback):
    """Writes history.jsonl every step and metrics.json at start/validation/end: a killed run keeps both."""

    def __init__(
        self,
        run_dir: str | Path,
        sweep: str,
        arm: str,
        seed: int,
        overrides: list[str],
        task_metric: str,
        print_every: int = 10,
    ):
        self.run_dir = Path(run_dir)
        self.meta = {
            "sweep": sweep,
            "arm": arm,
            "seed": seed,
            "overrides": list(overrides),
            "task_metric": f"val/{task_metric}",
            "git_commit": git_commit(),
        }
        self.print_every = max(int(print_every), 1)
        self.t0 = time.time()
        self.best: dict[str, float] = {}
        self.final: dict[str, float] = {}

    @property
    def history_path(self) -> Path:
        return self.run_dir / "history.jsonl"

    def rewards(self) -> list[float]:
        rows = read_jsonl(self.history_path) if self.history_path.exists() else []
        return [r["train/reward"] for r in rows if "train/reward" in r]

    def write(self, trainer: L.Trainer, status: str, error: str | None = None) -> dict:
        rewards = self.rewards()
        data = {
            **self.meta,
            "status": status,
            "error": error,
            "steps": int(trainer.global_step),
            "wall_time_s": time.time() - self.t0,
            "final": self.final,
            "best": self.best,
            "reward_start": window_mean(rewards, 0.2, last=False),
            "reward_end": window_mean(rewards, 0.2, last=True),
        }
        write_json_atomic(self.run_dir / "metrics.json", data)
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
        self.final = vals
        key = self.meta["task_metric"]
        if key in vals and vals[key] >= self.best.get(key, float("-inf")):
            self.best = dict(vals)
        if trainer.state.fn == "fit":
            self.write(trainer, "running")

    @rank_zero_only
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # SystemExit here is submitit requeueing a preempted job after pr1 checkpointed it.
        status = "preempted" if isinstance(exception, SystemExit) else "failed"
        self.write(trainer, status, error=f"{type(exception).__name__}: {exception}")

    def state_dict(self) -> dict:
        return {"best": self.best, "final": self.final}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.final = state.get("best", {}), state.get("final", {})
