"""Everything a resumed run needs, in one place: checkpoint discovery, history trim, RNG state, W&B run id.

Rerunning the same command continues from `<run_dir>/checkpoints/last.ckpt`: same step (Lightning), same data
position (`samples_done`, saved by the module), same RNG state (`rng_state`), the history rows after the
checkpoint dropped (they are redone) and the same W&B run.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import string
from pathlib import Path

import numpy as np
import torch

from pr1.results import HISTORY_FILE, read_jsonl

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
RUN_ID_FILE = "pr1_run_id"  # under <save_dir>/wandb/: the W&B run id a resumed pr1 run keeps logging to


def resume_checkpoint(run_dir: str | os.PathLike[str], resume: bool) -> Path | None:
    """The checkpoint a run resumes from: its last.ckpt when resuming is on and one exists, else None."""
    last = Path(run_dir) / LAST_CHECKPOINT
    return last if resume and last.exists() else None


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The optimizer step a Lightning checkpoint was saved at."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def trim_history(run_dir: str | os.PathLike[str], step: int) -> None:
    """Drop history rows written after the checkpoint we resume from (they will be redone)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return
    rows = read_jsonl(path)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows if r.get("step", 0) <= step))
    os.replace(tmp, path)


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
