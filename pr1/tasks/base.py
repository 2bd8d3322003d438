"""The shared base of every task: the chat, run-wide options bound into the rewards once, scoring.

A task kind is one subclass (pr1/tasks/<kind>.py) holding what is particular to it: the prompt template, the
answer rendering, the well-formed rule and parser preference, the metric and the ground-truth items; its
config is conf/task/<name>.yaml with `kind: <kind>`. The engine and the Lightning module only call the
methods here, each on whole batches of (completion, record) pairs, so a task that routes each record to
another task (a mixture) is one more subclass.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from omegaconf import DictConfig, OmegaConf

from pr1 import rewards
from pr1.answers import wrap_answer
from pr1.coords import from_frame
from pr1.parsing import Item, completion_text, parse_items, split_answer
from pr1.rewards.format import well_formed
from pr1.rewards.registry import options_of
from pr1.tasks.prompts import with_thinking

Result = tuple[dict[str, float], list[dict]]  # (aggregate metrics, one row per record)

TASKS: dict[str, type[Task]] = {}  # kind -> class, filled by subclassing


@dataclass(frozen=True)
class RewardTerm:
    """One weighted reward of a task; `needs_step` when its scorer reads the global step."""

    name: str
    weight: float
    fn: Callable[..., list[float]]
    needs_step: bool = False


@dataclass(frozen=True)
class RunOptions:
    """The run-wide options a task passes, once, to the rewards (and metrics) that declare them."""

    thinking: bool
    frame: Mapping[str, Any]
    matcher: str = "hungarian"

    def as_dict(self) -> dict[str, Any]:
        return {"thinking": self.thinking, "frame": dict(self.frame), "matcher": self.matcher}


def bind_reward(name: str, spec: Mapping[str, Any], run: RunOptions) -> RewardTerm:
    """Reward `name` with its yaml options plus the run-wide ones it declares; a contradiction is an error."""
    options = {k: v for k, v in spec.items() if k != "weight"}
    declared = options_of(name)
    for key, value in run.as_dict().items():
        if key not in declared:
            continue
        if key in options and options[key] != value:
            raise ValueError(
                f"reward {name!r}: option {key}={options[key]!r} contradicts the run-wide {key}={value!r}; "
                f"set it once, at the run level ({key}=...)"
            )
        options[key] = value
    return RewardTerm(
        name, float(spec.get("weight", 1.0)), rewards.build(name, **options), "step" in declared
    )


def where(box: Sequence[float], image_size: Sequence[float]) -> str:
    """The box centre's place in a 3x3 grid of the image, in words (`top left`, `centre`, `bottom`)."""
    cx = (box[0] + box[2]) / 2 / float(image_size[0])
    cy = (box[1] + box[3]) / 2 / float(image_size[1])
    row = ("top", "middle", "bottom")[min(int(cy * 3), 2)]
    col = ("left", "centre", "right")[min(int(cx * 3), 2)]
    if row == "middle":
        return "centre" if col == "centre" else col
    return row if col == "centre" else f"{row} {col}"


class Task(ABC):
    """Everything the GRPO/SFT step and eval need to know about a task, and nothing about the model."""

    kind: ClassVar[str]
    template: ClassVar[str]  # the user prompt; `{question}` is the record's question
    prefer: ClassVar[Literal["box", "point"]] = "box"  # how a bare coordinate pair is read

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls) and "kind" in cls.__dict__:
            TASKS[cls.kind] = cls

    def __init__(self, rewards: Sequence[RewardTerm], metric: str, run: RunOptions):
        self.rewards = list(rewards)
        self.metric = metric
        self.run = run

    @property
    def thinking(self) -> bool:
        return self.run.thinking

    @property
    def frame(self) -> dict:
        return dict(self.run.frame)

    # ------------------------------------------------------------------------------------- run-wide options
    def components(self) -> dict[str, frozenset[str]]:
        """Each component of the task -> the run-wide options (RunOptions fields) it reads.

        Components: `prompt` (the thinking instruction), `answer` (the rendering in the model's frame, wrapped
        for thinking), `reward <name>` (the options it declares, as `bind_reward` passes them) and
        `metric <metric>` (evaluate passes frame and thinking). A sweep over an option nothing reads runs
        identical arms; `pr1.sweep_summary` flags it. A task made of other tasks (a mixture) overrides this
        with the union of its tasks' components, and `readers` follows.
        """
        run_wide = frozenset(RunOptions.__dataclass_fields__)
        return {
            "prompt": frozenset({"thinking"}),
            "answer": frozenset({"thinking", "frame"}),
            **{f"reward {t.name}": frozenset(options_of(t.name)) & run_wide for t in self.rewards},
            f"metric {self.metric}": frozenset({"thinking", "frame"}),
        }

    def readers(self, option: str) -> list[str]:
        """The components that read run-wide `option` (thinking | frame | matcher), e.g. ["reward count"]
        for matcher on counting, [] on grounding."""
        if option not in RunOptions.__dataclass_fields__:
            raise ValueError(
                f"{option!r} is not a run-wide option; valid: {sorted(RunOptions.__dataclass_fields__)}"
            )
        return [name for name, options in self.components().items() if option in options]

    @classmethod
    def from_config(cls, cfg: DictConfig, run: RunOptions) -> Task:
        """The task of `cfg.kind` (its class's `build`)."""
        if cfg.kind not in TASKS:
            raise ValueError(f"task.kind {cfg.kind!r} is not a task; valid: {sorted(TASKS)}")
        return TASKS[cfg.kind].build(cfg, run)

    @classmethod
    def build(cls, cfg: DictConfig, run: RunOptions) -> Task:
        """This kind with rewards from `cfg.rewards` (name -> options) and metric `cfg.metric`."""
        specs = OmegaConf.to_container(cfg.rewards, resolve=True) if cfg.get("rewards") else {}
        terms = [bind_reward(name, spec, run) for name, spec in specs.items()]
        if not terms:
            raise ValueError(f"task {cfg.get('name', cfg.kind)!r} has no rewards")
        return cls(terms, cfg.metric, run)

    # --------------------------------------------------------------------------------------------- prompt
    def prompt(self, record: Mapping[str, Any]) -> str:
        """The user text for one record, with the thinking instruction when thinking is on."""
        return with_thinking(self.template.format(question=record["question"]), self.thinking)

    def messages(self, record: Mapping[str, Any]) -> list[dict]:
        """The chat for one record: one image and the task prompt, Qwen-VL message style."""
        return [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt(record)}]}
        ]

    # --------------------------------------------------------------------------------------------- answer
    @abstractmethod
    def render(self, record: Mapping[str, Any]) -> str:
        """The bare correct answer of a record in the model's frame (no thinking tags)."""

    def reasoning(self, record: Mapping[str, Any]) -> str:
        """A short reasoning text for the thinking style's SFT target, written from the record's ground truth
        (what is where, how many): the warm start learns the `<think>` form, not a chain of thought."""
        return ""

    def answer(self, record: Mapping[str, Any]) -> str:
        """The ground-truth answer in the model's frame and format (the SFT target), wrapped for thinking."""
        return wrap_answer(self.render(record), self.thinking, self.reasoning(record))

    def answer_text(self, completion: Any) -> str | None:
        """The answer part of a completion, as the rewards read it (tags per `thinking`)."""
        return split_answer(completion_text(completion), self.thinking).text

    def items(self, completion: Any) -> list[Item]:
        """The parsed boxes/points of a completion's answer, exactly as the rewards read them."""
        return parse_items(self.answer_text(completion), self.prefer).items

    def well_formed(self, completion: Any) -> bool:
        """The format reward's structure rule for this task."""
        return well_formed(self.kind, split_answer(completion_text(completion), self.thinking))

    def predicted_items(self, completion: Any, record: Mapping[str, Any]) -> list[list[float]]:
        """The boxes/points of a completion in original-image pixels (for drawing)."""
        return [
            from_frame(it.coords, record["image_size"], self.frame).tolist() for it in self.items(completion)
        ]

    @abstractmethod
    def truth_items(self, record: Mapping[str, Any]) -> list[list[float]]:
        """The ground-truth boxes/points of a record in pixels (for drawing)."""

    # ---------------------------------------------------------------------------------------- scoring
    def score(
        self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]], step: int | None = None
    ) -> dict[str, list[float]]:
        """Each reward term's scores (unweighted) for completions aligned with their records; `step` (the
        global optimizer step) reaches the rewards that declare a `step` option."""
        columns = {
            "solution": [r["solution"] for r in records],
            "image_size": [r["image_size"] for r in records],
        }
        out = {}
        for t in self.rewards:
            extra = {"step": step} if t.needs_step and step is not None else {}
            out[t.name] = [float(x) for x in t.fn(completions, **columns, **extra)]
        return out

    def total(self, per_term: Mapping[str, Sequence[float]]) -> list[float]:
        """The weighted sum of the terms per row; a NaN term does not apply to that row and adds nothing."""
        n = len(next(iter(per_term.values()))) if per_term else 0
        return [
            sum(t.weight * per_term[t.name][i] for t in self.rewards if not math.isnan(per_term[t.name][i]))
            for i in range(n)
        ]

    def image_values(self, rows: Sequence[Mapping[str, Any]], metric: str) -> list[float] | None:
        """Per-image values (of `evaluate`'s rows) whose mean is `metric`, for tests paired by image; None
        when that metric is not a mean over images (COCO AP)."""
        return None

    def groups(self, records: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
        """Rows per sub-task, for per-task logging (a mixture's); a single task has no sub-tasks."""
        return {}

    @abstractmethod
    def evaluate(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]]) -> Result:
        """Task metrics over a set (e.g. acc50, miou for grounding) and per-sample details."""
