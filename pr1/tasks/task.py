"""A task binds prompts, the answer format, the rewards and the eval metric for one perception problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from pr1 import answers, metrics, rewards
from pr1.tasks.prompts import build_prompt


@dataclass
class RewardTerm:
    name: str
    weight: float
    fn: Callable[..., list[float]]


@dataclass
class Task:
    """Everything the GRPO/SFT step and eval need to know about a task, and nothing about the model."""

    kind: str
    thinking: bool
    frame: dict
    rewards: list[RewardTerm]
    metric: str

    @classmethod
    def from_config(cls, cfg: DictConfig, thinking: bool, frame: dict) -> Task:
        terms = []
        for name, spec in cfg.rewards.items():
            options = {k: v for k, v in OmegaConf.to_container(spec, resolve=True).items() if k != "weight"}
            terms.append(RewardTerm(name, float(spec.weight), rewards.build(name, **options)))
        if not terms:
            raise ValueError(f"task {cfg.name!r} has no rewards")
        if cfg.kind not in metrics.METRICS:
            raise ValueError(f"task.kind {cfg.kind!r} has no metric; valid: {sorted(metrics.METRICS)}")
        return cls(kind=cfg.kind, thinking=thinking, frame=dict(frame), rewards=terms, metric=cfg.metric)

    def messages(self, record: dict) -> list[dict]:
        """The chat for one record: one image and the task prompt, Qwen-VL message style."""
        text = build_prompt(self.kind, record["question"], self.thinking)
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]

    def answer(self, record: dict) -> str:
        """The ground-truth answer in the model's frame and format (the SFT target).

        Grounding and counting answers name their object (Qwen2-VL's `<|object_ref_start|>` part) with the
        question, the expression or class asked about; detection labels come with each object.
        """
        label = record["question"] if self.kind in ("grounding", "counting") else None
        return answers.render(
            self.kind, record["solution"], record["image_size"], self.frame, self.thinking, label=label
        )

    def score(self, completions: list[str], records: list[dict]) -> dict[str, list[float]]:
        """Each reward term's scores (unweighted) for completions aligned with their records."""
        columns = {
            "solution": [r["solution"] for r in records],
            "image_size": [r["image_size"] for r in records],
        }
        return {t.name: [float(x) for x in t.fn(completions, **columns)] for t in self.rewards}

    def evaluate(self, completions: list[str], records: list[dict]) -> tuple[dict[str, float], list[dict]]:
        """Task metrics over a set (e.g. acc50, miou for grounding) and per-sample details."""
        return metrics.METRICS[self.kind](completions, records, frame=self.frame, thinking=self.thinking)
