"""Visual grounding (RefCOCO): one box per referring expression; ground truth `[x1, y1, x2, y2]` pixels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pr1 import metrics
from pr1.answers import native, ref
from pr1.coords import quantise
from pr1.tasks.base import Result, Task, where
from pr1.tasks.prompts import PROMPT_TEMPLATES


class Grounding(Task):
    kind = "grounding"
    template = PROMPT_TEMPLATES["grounding"]

    def render(self, record: Mapping[str, Any]) -> str:
        """`<|object_ref_start|>QUESTION<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>`."""
        box = quantise(record["solution"], record["image_size"], self.frame).astype(int).tolist()
        return ref(record["question"]) + native(box)

    def reasoning(self, record: Mapping[str, Any]) -> str:
        """Where the object is, in words: `the red rectangle is at the top left.`"""
        return f"the {record['question']} is at the {where(record['solution'], record['image_size'])}."

    def truth_items(self, record: Mapping[str, Any]) -> list[list[float]]:
        return [list(record["solution"])]

    def image_values(self, rows: Sequence[Mapping[str, Any]], metric: str) -> list[float] | None:
        """acc50: 1 when the image's IoU is at least 0.5; miou: its IoU."""
        per = {"acc50": lambda r: float(r["iou"] >= 0.5), "miou": lambda r: float(r["iou"])}.get(metric)
        return None if per is None else [per(r) for r in rows]

    def evaluate(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]]) -> Result:
        """Acc@0.5 and mean IoU (`pr1.metrics.grounding`)."""
        return metrics.grounding(list(completions), list(records), frame=self.frame, thinking=self.thinking)
