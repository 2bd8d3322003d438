"""Everything a resumed run needs, in one place: checkpoint discovery, history trim, RNG state, W&B run id.

Rerunning the same command continues from `<run_dir>/checkpoints/last.ckpt` (or, if that file is broken, the
previous good one): same step (Lightning), same data position (`samples_done`), accumulation state and RNG
state (`rng_state`, saved by the module), the history rows after the checkpoint dropped (they are redone)
and the same W&B run.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pr1.results import (
    HISTORY_FILE,
    RunMetrics,
    RunRecordError,
    read_jsonl,
    read_run_metrics,
    write_text_atomic,
)

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = Path(CHECKPOINT_DIR) / "last.ckpt"
# Tried in this order; the first readable one with training state is resumed from (see pr1.checkpointing).
RESUME_CANDIDATES = ("last.ckpt", "last.prev.ckpt", "best.ckpt")
RECORDS_KEY = "pr1_records"  # what a checkpoint says about the records: {"history_rows": int}
RUN_ID_FILE = "pr1_run_id"  # under <save_dir>/wandb/: the W&B run id a resumed pr1 run keeps logging to

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run resumes from, its optimizer step and how many history rows it had written."""

    path: Path
    step: int
    history_rows: int | None  # None: a checkpoint from before pr1 counted rows (trim by step instead)


def read_resume_point(path: Path) -> ResumePoint:
    """Load what a resume needs from a checkpoint; any unreadable or incomplete file raises ValueError."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, pickle/zip errors for a broken file
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict) or "global_step" not in ckpt or "pr1" not in ckpt:
        raise ValueError("not a pr1 training checkpoint (no global_step or pr1 state)")
    if not ckpt.get("optimizer_states"):
        raise ValueError("no optimizer state (a weights-only or validation-time checkpoint)")
    rows = ckpt.get(RECORDS_KEY, {}).get("history_rows")
    return ResumePoint(path, int(ckpt["global_step"]), None if rows is None else int(rows))


def resume_checkpoint(run_dir: str | os.PathLike[str], resume: bool) -> ResumePoint | None:
    """The checkpoint a run resumes from (None: start afresh).

    last.ckpt, else last.prev.ckpt, else best.ckpt: a file that cannot be read (0 bytes, truncated, not a
    training checkpoint) is moved aside to `<name>.corrupt-<n>`, logged, and the next one is tried, so a
    broken file never blocks a run. With resume off the run starts afresh whatever is there.
    """
    if not resume:
        return None
    directory = Path(run_dir) / CHECKPOINT_DIR
    for name in RESUME_CANDIDATES:
        path = directory / name
        if not path.exists():
            continue
        try:
            return read_resume_point(path)
        except ValueError as exc:
            aside = _aside_name(path)
            os.replace(path, aside)
            log.warning(
                "%s is unreadable (%s): moved it to %s and trying the previous checkpoint", path, exc, aside
            )
    return None


def _aside_name(path: Path) -> Path:
    n = 0
    while (aside := path.with_name(f"{path.name}.corrupt-{n}")).exists():
        n += 1
    return aside


def completed_record(
    run_dir: str | os.PathLike[str], point: ResumePoint | None, max_steps: int
) -> RunMetrics | None:
    """The run's metrics.json when rerunning it would add nothing: its checkpoint is at `max_steps` and its
    record says it completed there. Such a rerun must leave the records as they are (status, steps, git
    commit, the start-vs-end CI), also when it is itself killed, so the caller writes none of them."""
    if point is None or point.step < max_steps:
        return None
    try:
        record = read_run_metrics(run_dir)
    except RunRecordError:
        return None
    return record if record["status"] == "completed" and record.get("steps") == point.step else None


def trim_history(run_dir: str | os.PathLike[str], point: ResumePoint | None) -> None:
    """Keep the history rows the resumed checkpoint had written (all later rows are redone); none for a fresh
    start, so a run killed before its first checkpoint does not log its rows twice."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return
    rows = read_jsonl(path) if point is not None else []
    if point is not None and point.history_rows is not None:
        rows = rows[: point.history_rows]
    elif point is not None:
        rows = [r for r in rows if r.get("step", 0) <= point.step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def _numpy_rng_state() -> dict:
    """NumPy's global RNG state as tensors and ints, loadable by `torch.load(weights_only=True)`."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def rng_state() -> dict:
    """The torch, NumPy and Python global RNG states, as a checkpoint stores them."""
    return {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    random.setstate(state["python"])


def wandb_run_id(save_dir: str | os.PathLike[str], resume: bool, checkpoint: str | None) -> str:
    """The W&B run id: the previous one when pr1 resumes from `checkpoint`, else a new one (saved)."""
    path = Path(save_dir) / "wandb" / RUN_ID_FILE
    if resume and checkpoint and Path(checkpoint).exists() and path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    path.write_text(run_id)
    return run_id
