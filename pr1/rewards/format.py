"""Format reward: is the completion a well-formed answer for its task (a correct, anchored check)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pr1.parsing import Answer, Parsed, parse_items
from pr1.rewards.registry import register


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


PREFER: dict[str, Literal["box", "point"]] = {"grounding": "box", "detection": "box", "counting": "point"}


def well_formed(task: str, answer: Answer, parsed: Parsed | None = None) -> bool:
    """The structure rule shared by every reward's "format" component.

    Thinking tags as required (see `pr1.parsing.split_answer`), a non-empty answer, and for box/point tasks
    an answer made only of items with finite coordinates and separators: grounding exactly one box; counting
    one or more points or boxes; detection one or more boxes, each with a label. OCR: any non-empty text.
    """
    if not answer.tags_ok or not answer.text:
        return False
    if task == "ocr":
        return True
    parsed = parsed if parsed is not None else parse_items(answer.text, PREFER[task])
    if not parsed.clean:
        return False
    if task == "grounding":
        return len(parsed.items) == 1 and len(parsed.items[0].coords) == 4
    if task == "detection":
        return all(len(it.coords) == 4 and it.label for it in parsed.items)
    return True


@register("format")
def format_reward(
    answer: Answer,
    solution: Any,
    image_size: tuple[float, float],
    *,
    low: float = -1.0,
    task: Literal["auto", "grounding", "counting", "ocr", "detection"] = "auto",
) -> dict[str, float]:
    """1 for a well-formed completion (`well_formed`), else `low`.

    low=-1 is the paper's rule (+1/-1); low=0 gives the released code's 1/0. task="auto" reads the task from
    the ground truth's shape (`task_of`), so one config serves every task.
    """
    ok = well_formed(task_of(solution) if task == "auto" else task, answer)
    return {"format": float(ok), "total": 1.0 if ok else float(low)}
