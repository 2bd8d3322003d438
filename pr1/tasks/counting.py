"""Counting (PixMo-Count) as point detection: one point per object; ground truth a list of `[x, y]` pixels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pr1 import metrics
from pr1.answers import native, ref
from pr1.coords import quantise
from pr1.tasks.base import Result, Task
from pr1.tasks.prompts import PROMPT_TEMPLATES


class Counting(Task):
    kind = "counting"
    template = PROMPT_TEMPLATES["counting"]
    prefer = "point"

    def render(self, record: Mapping[str, Any]) -> str:
        """The ref once, then `<|box_start|>(x,y)<|box_end|>` per instance: points, not invented boxes (the
        ground truth has no extent; the count reward accepts points and boxes)."""
        size = record["image_size"]
        points = [quantise(p, size, self.frame).astype(int).tolist() for p in record["solution"]]
        return ref(record["question"]) + "".join(native(p) for p in points)

    def reasoning(self, record: Mapping[str, Any]) -> str:
        """How many: `I see 3 red ellipses.`"""
        return f"I see {len(record['solution'])} {record['question']}."

    def truth_items(self, record: Mapping[str, Any]) -> list[list[float]]:
        return [list(p) for p in record["solution"]]

    def image_values(self, rows: Sequence[Mapping[str, Any]], metric: str) -> list[float] | None:
        """count_acc: 1 for an exact count; count_mae: the absolute count error."""
        errors = [abs(r["pred_count"] - r["gt_count"]) for r in rows]
        per = {"count_acc": lambda e: float(e == 0), "count_mae": float}.get(metric)
        return None if per is None else [per(e) for e in errors]

    def evaluate(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]]) -> Result:
        """Exact-count accuracy and mean absolute count error (`pr1.metrics.counting`)."""
        return metrics.counting(list(completions), list(records), frame=self.frame, thinking=self.thinking)
