"""Object detection (COCO): labelled boxes; ground truth a list of `{"label": str, "box": [x1,y1,x2,y2]}`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pr1 import metrics
from pr1.coords import quantise
from pr1.tasks.base import Result, Task
from pr1.tasks.prompts import PROMPT_TEMPLATES


class Detection(Task):
    kind = "detection"
    template = PROMPT_TEMPLATES["detection"]

    def render(self, record: Mapping[str, Any]) -> str:
        """A JSON list `[{"bbox_2d": [x1,y1,x2,y2], "label": "cat"}, ...]`."""
        size = record["image_size"]
        entries = [
            {"bbox_2d": quantise(o["box"], size, self.frame).astype(int).tolist(), "label": o["label"]}
            for o in record["solution"]
        ]
        return json.dumps(entries, ensure_ascii=False)

    def reasoning(self, record: Mapping[str, Any]) -> str:
        """What is there: `I see 3 objects: 1 ellipse, 2 rectangle.`"""
        labels = Counter(o["label"] for o in record["solution"])
        parts = ", ".join(f"{n} {label}" for label, n in sorted(labels.items()))
        return f"I see {len(record['solution'])} objects: {parts}."

    def truth_items(self, record: Mapping[str, Any]) -> list[list[float]]:
        return [list(o["box"]) for o in record["solution"]]

    def evaluate(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]]) -> Result:
        """COCO AP/AR by pycocotools (`pr1.metrics.detection`)."""
        return metrics.detection(list(completions), list(records), frame=self.frame, thinking=self.thinking)
