"""pr1's config folder, its resolvers (`${pr1.arm:...}`, `${pr1.asset:...}`) and a config's run-wide options.

Imported by every entry point (pr1.run, pr1.eval) before Hydra composes, so the resolvers exist.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pr1.data.mixture import shares
from pr1.model import asset_path
from pr1.results import arm_name, safe_name
from pr1.tasks import RunOptions

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: found from any cwd or entry point
# The ablation grids (config group `ablation`) live in the top-level sweeps/ beside conf/; absolute, so
# a run finds them from any working directory. PR1_SWEEPS points Hydra at another folder of grids instead.
SWEEPS_DIR = str(Path(__file__).resolve().parents[1] / "sweeps")


def sweeps_dir() -> str:
    """The folder holding `ablation/<grid>.yaml` (Hydra's searchpath entry for the `ablation` group)."""
    return os.environ.get("PR1_SWEEPS", SWEEPS_DIR)


def arm_id(exclude: list[str]) -> str:
    """The arm of this run from its Hydra overrides (`matcher=naive,thinking=true`), file-system safe.

    Hydra renders swept booleans as True/False; they are written as typed on the command line (true/false).
    """
    overrides = [
        re.sub(r"=(True|False)$", lambda m: "=" + m.group(1).lower(), o)
        for o in HydraConfig.get().overrides.task
    ]
    return safe_name(arm_name(overrides, list(exclude)))


def share(n: int, task: str, weights: DictConfig) -> int:
    """Task `task`'s share of a mixture's `n` records (`pr1.data.mixture.shares`), so each task's loader
    makes just the records the mixture takes from it."""
    return shares(int(n), OmegaConf.to_container(weights, resolve=True))[task]


def run_options(cfg: DictConfig) -> RunOptions:
    """The run-wide options every reward that declares them receives: thinking, the model's frame, matcher."""
    return RunOptions(
        thinking=bool(cfg.thinking),
        frame=OmegaConf.to_container(cfg.model.frame, resolve=True),
        matcher=str(cfg.matcher.name),
    )


OmegaConf.register_new_resolver("pr1.asset", asset_path, replace=True)
OmegaConf.register_new_resolver("pr1.arm", arm_id, replace=True)
OmegaConf.register_new_resolver("pr1.sweeps", sweeps_dir, replace=True)
OmegaConf.register_new_resolver("pr1.share", share, replace=True)
