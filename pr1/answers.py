"""The canonical correct answer text for a ground truth (SFT target, round-trip tests) and its task.

Ground truth is in original-image pixels: grounding `[x1,y1,x2,y2]`; counting a list of `[x, y]` points;
OCR a str; detection a list of `{"label": str, "box": [x1,y1,x2,y2]}`. Rendered coordinates are the integers
of the model's frame (`pr1.coords.quantise`), so a rendered answer scores exactly 1 with the matching reward.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from pr1.coords import quantise
from pr1.tasks.prompts import wrap_answer

TASKS = ("grounding", "counting", "ocr", "detection")


def task_of(solution: Any) -> str:
    """The task a ground truth belongs to, from its shape (lets the format reward need no task option).

    str -> ocr; four numbers -> grounding; a list of dicts -> detection; a list of points (or boxes, or
    nothing) -> counting.
    """
    if isinstance(solution, str):
        return "ocr"
    if (
        isinstance(solution, Sequence)
        and len(solution) == 4
        and all(isinstance(v, numbers.Real) for v in solution)
    ):
        return "grounding"
    if isinstance(solution, Sequence) and solution and all(isinstance(v, Mapping) for v in solution):
        return "detection"
    if isinstance(solution, Sequence) and all(isinstance(v, Sequence) and len(v) in (2, 4) for v in solution):
        return "counting"
    raise ValueError(f"cannot tell the task of ground truth {solution!r:.200}")


def _ref(label: str | None) -> str:
    return "" if label is None else f"<|object_ref_start|>{label}<|object_ref_end|>"


def _native(xy: Sequence[int]) -> str:
    pairs = ",".join(f"({xy[i]},{xy[i + 1]})" for i in range(0, len(xy), 2))
    return f"<|box_start|>{pairs}<|box_end|>"


def render(
    kind: str,
    solution: Any,
    image_size: Sequence[float],
    frame: Mapping[str, Any],
    thinking: bool,
    label: str | None = None,
) -> str:
    """The correct answer for `solution` in the model's frame, wrapped for thinking like `wrap_answer`.

    grounding: `<|object_ref_start|>LABEL<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>` (no ref
    part when label is None). counting: the ref once, then one point per instance,
    `<|box_start|>(x,y)<|box_end|>` (points, not invented boxes: the ground truth has no extent; the count
    reward accepts points and boxes).
    detection: a JSON list `[{"bbox_2d": [x1,y1,x2,y2], "label": "cat"}, ...]`. ocr: the text.
    """
    if kind == "ocr":
        answer = str(solution)
    elif kind == "grounding":
        answer = _ref(label) + _native(quantise(solution, image_size, frame).astype(int).tolist())
    elif kind == "counting":
        points = [quantise(p, image_size, frame).astype(int).tolist() for p in solution]
        answer = _ref(label) + "".join(_native(p) for p in points)
    elif kind == "detection":
        entries = [
            {"bbox_2d": quantise(o["box"], image_size, frame).astype(int).tolist(), "label": o["label"]}
            for o in solution
        ]
        answer = json.dumps(entries, ensure_ascii=False)
    else:
        raise ValueError(f"unknown task {kind!r}; valid: {TASKS}")
    return wrap_answer(answer, thinking)
