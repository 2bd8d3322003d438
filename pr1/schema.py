"""The typed config schema: every key pr1 reads from objective, model, trainer and the run, range-checked.

`validate(cfg)` runs on the composed config before any data or model is built; each violation is a
ValueError naming the key, the rule and the value, so a typo'd sweep arm fails at once, not mid-training.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import SchedulerType

from pr1.grpo import LOSS_TYPES, SCALE_REWARDS
from pr1.model import ASSETS, rebuild_command

# transformers' per-step schedules (the plateau and greedy ones need a metric)
LR_SCHEDULES = tuple(t.value for t in SchedulerType if t.value not in ("reduce_lr_on_plateau", "greedy"))

DTYPES = ("float32", "bfloat16", "float16")
MODES = ("train", "eval")


@dataclass(frozen=True)
class Rule:
    """One key's check: `ok(value)` must hold; `need` says what it needs in the error."""

    key: str
    ok: Callable[[Any], bool]
    need: str


def _int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def int_at_least(key: str, low: int) -> Rule:
    return Rule(key, lambda v: _int(v) and v >= low, f"an integer >= {low}")


def number(key: str, check: Callable[[float], bool], need: str) -> Rule:
    return Rule(key, lambda v: _num(v) and check(v), need)


def one_of(key: str, values: tuple) -> Rule:
    return Rule(key, lambda v: v in values, f"one of {list(values)}")


def boolean(key: str) -> Rule:
    return Rule(key, lambda v: isinstance(v, bool), "true or false")


COMMON_OBJECTIVE = (
    number("objective.lr", lambda v: v > 0, "a number > 0"),
    number("objective.weight_decay", lambda v: v >= 0, "a number >= 0"),
    int_at_least("objective.warmup_steps", 0),
    one_of("objective.lr_schedule", LR_SCHEDULES),
    number("objective.grad_clip", lambda v: v >= 0, "a number >= 0 (0: no clipping)"),
    int_at_least("objective.prompts_per_step", 1),
    int_at_least("objective.micro_batch_size", 0),
    int_at_least("objective.grad_accum", 1),
)
RL_OBJECTIVE = (
    int_at_least("objective.num_generations", 2),
    number("objective.temperature", lambda v: v > 0, "a number > 0"),
    number("objective.top_p", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    int_at_least("objective.top_k", 0),
    int_at_least("objective.max_new_tokens", 1),
    int_at_least("objective.num_iterations", 1),
    number("objective.epsilon", lambda v: v > 0, "a number > 0"),
    number("objective.epsilon_high", lambda v: v > 0, "a number > 0"),
    number("objective.beta", lambda v: v >= 0, "a number >= 0"),
    number("objective.adv_eps", lambda v: v > 0, "a number > 0"),
    one_of("objective.scale_rewards", SCALE_REWARDS),
    one_of("objective.loss_type", LOSS_TYPES),
)
RUN = (
    boolean("thinking"),
    boolean("resume"),
    one_of("mode", MODES),
    int_at_least("seed", 0),
    int_at_least("print_every", 1),
    one_of("model.dtype", DTYPES),
    boolean("model.gradient_checkpointing"),
    boolean("model.lora.enabled"),
    int_at_least("trainer.val_check_interval", 1),
    int_at_least("task.val_max_new_tokens", 1),
)
MISSING = object()
# A hub id is `org/name` (or a bare `name`); anything else is read as a local folder.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def model_path_problem(path: Any) -> str | None:
    """Why model.path can name neither a local checkpoint folder nor a hub id, or None.

    A path that exists, or that looks like one (absolute, `./`, `~`, more than one `/`), must be a folder with
    a config.json; otherwise transformers reports a missing folder as a malformed hub id.
    """
    if path is None:
        return None
    text = str(path)
    local = Path(text).expanduser()
    if local.exists() or not HUB_ID.match(text) or text.startswith(("~", ".")):
        if not local.is_dir() and local.parent == ASSETS:
            rebuild = rebuild_command(local)
            return f"model.path={text!r}: embedded checkpoint missing; rebuild it with {rebuild}"
        if not local.is_dir():
            return f"model.path={text!r}: no such folder (and not a hub id of the form org/name)"
        if not (local / "config.json").is_file():
            return f"model.path={text!r}: the folder has no config.json (not a saved checkpoint)"
    return None


def _check(cfg: DictConfig, rules: tuple[Rule, ...]) -> None:
    for rule in rules:
        value = OmegaConf.select(cfg, rule.key, default=MISSING)
        if value is MISSING:
            raise ValueError(f"config key {rule.key} is missing (it must be {rule.need})")
        if not rule.ok(value):
            raise ValueError(f"{rule.key} must be {rule.need}, got {value!r}")


def check_metric(metric: str, names: set[str], kind: str) -> None:
    """task.metric must be one of the metrics the task reports (`names`, from the task's own evaluation)."""
    if metric not in names:
        raise ValueError(
            f"task.metric must be one of {sorted(names)} (the metrics of task kind {kind}), got {metric!r}"
        )


def validate(cfg: DictConfig) -> None:
    """Refuse a config pr1 cannot run, naming the key; called before anything is built."""
    _check(cfg, RUN)
    objective = OmegaConf.select(cfg, "objective.name")
    if objective not in ("rl", "sft"):
        raise ValueError(f"objective.name must be one of ['rl', 'sft'], got {objective!r}")
    _check(cfg, COMMON_OBJECTIVE + (RL_OBJECTIVE if objective == "rl" else ()))
    if objective == "rl" and cfg.objective.grad_accum > 1 and cfg.objective.num_iterations > 1:
        raise ValueError(
            "objective.grad_accum > 1 needs objective.num_iterations == 1, got "
            f"grad_accum={cfg.objective.grad_accum}, num_iterations={cfg.objective.num_iterations}"
        )
    if problem := model_path_problem(OmegaConf.select(cfg, "model.path", default=None)):
        raise ValueError(problem)
    if OmegaConf.select(cfg, "objective.optimizer._target_") is None:
        raise ValueError("objective.optimizer must be a partial optimizer config (_target_, _partial_: true)")
