"""Constants and builders shared by the tests (fixtures are in conftest.py; tests import these from here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Overrides for a tiny random Qwen2-VL (real class) that runs a training step in well under a second.
TINY_MODEL = (
    "model=tiny_scratch",
    "model.build.hidden_size=64",
    "model.build.num_layers=2",
    "model.build.num_heads=2",
    "model.build.vision_depth=1",
    "model.build.vision_embed_dim=32",
)
SLURM_PARTITION = "cpu"
# Tiny sizes of the per-family checkpoints (tests/test_families.py): real classes, ~0.25M params each.
FAMILY_TINY = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "vision_depth": 1, "vision_embed_dim": 32}
REL1000 = {"kind": "rel1000"}


def varied_reward(completions, **columns):
    """A test reward that differs within a group (a random model scores -1 everywhere on the real ones)."""
    return [float(len(c) % 5) for c in completions]


def grounding_task(rewards=None, thinking: bool = False):
    """A grounding task with the given reward terms (default: `varied_reward`), frame rel1000."""
    from pr1.tasks import RewardTerm, RunOptions
    from pr1.tasks.grounding import Grounding

    terms = rewards or [RewardTerm("varied", 1.0, varied_reward)]
    return Grounding(terms, "acc50", RunOptions(thinking=thinking, frame=REL1000))


def make_module(cfg, model, processor, rewards=None):
    """A PR1Module on `grounding_task(rewards)`."""
    from pr1.module import PR1Module

    return PR1Module(cfg, grounding_task(rewards), model, processor)


def render(kind: str, solution, image_size, frame, thinking: bool, label: str | None = None) -> str:
    """The ground-truth answer text of `kind`'s task (`Task.answer`) for a bare solution; `label` is the
    record's question (grounding/counting name their object with it; None: no ref part)."""
    from pr1.tasks import TASKS, RunOptions

    task = TASKS[kind]([], "", RunOptions(thinking, frame))
    return task.answer({"solution": solution, "image_size": image_size, "question": label})


def run_dir_for(results_root, sweep: str, arm: str, seed: int) -> Path:
    """`results_root/<sweep>/<arm>/seed<seed>`, names made safe as pr1's run dirs are (conf/paths)."""
    from pr1.results import safe_name

    return Path(results_root) / safe_name(sweep) / safe_name(arm) / f"seed{int(seed)}"


def run_module(
    root,
    module: str,
    *args: str,
    check: bool = True,
    data_dir=None,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """`python -m <module> args` as a user runs it, results under `root` (PR1_ROOT), offline; with `check`
    a non-zero exit fails with the tail of its output."""
    full_env = {
        **os.environ,
        "PR1_ROOT": str(root),
        "PR1_DATA_DIR": str(data_dir if data_dir is not None else Path(root) / "data"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{module} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc
