"""OCR (PageOCR): the text in the image; ground truth a str."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pr1 import metrics
from pr1.tasks.base import Result, Task
from pr1.tasks.prompts import PROMPT_TEMPLATES


class OCR(Task):
    kind = "ocr"
    template = PROMPT_TEMPLATES["ocr"]

    def render(self, record: Mapping[str, Any]) -> str:
        return str(record["solution"])

    def reasoning(self, record: Mapping[str, Any]) -> str:
        """How much text: `the image shows 2 words.`"""
        n = len(str(record["solution"]).split())
        return f"the image shows {n} word{'s' if n != 1 else ''}."

    def predicted_items(self, completion: Any, record: Mapping[str, Any]) -> list[list[float]]:
        return []  # text has no boxes to draw

    def truth_items(self, record: Mapping[str, Any]) -> list[list[float]]:
        return []

    def image_values(self, rows: Sequence[Mapping[str, Any]], metric: str) -> list[float] | None:
        """The page's own value: every OCR metric averages pages."""
        return [float(r[metric]) for r in rows] if rows and metric in rows[0] else None

    def evaluate(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]]) -> Result:
        """Normalised edit distance and word precision/recall/F1 (`pr1.metrics.ocr`)."""
        return metrics.ocr(list(completions), list(records), frame=self.frame, thinking=self.thinking)
