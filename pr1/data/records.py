"""The record every loader yields, and the raise-or-count policy for bad input.

A record is a plain dict, the single currency between loaders, the GRPO/SFT step, rewards and eval:
  id: str, task: str, image: str (path), image_size: [w, h], question: str, solution: task-specific ground
  truth in absolute pixels of the original image (grounding [x1,y1,x2,y2]; counting [[x,y],...];
  ocr str; detection [{"label", "box"}]).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class RecordError(ValueError):
    """A bad input record; the message names file, record and field."""

    def __init__(self, file: str | Path, record: int | str, field_name: str, problem: str):
        super().__init__(f"{file}: record {record}: field {field_name!r}: {problem}")
        self.file, self.record, self.field, self.problem = str(file), record, field_name, problem


@dataclass
class ErrorPolicy:
    """`raise` stops at the first bad record; `skip` counts skips per reason and reports them once."""

    mode: str = "raise"
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in ("raise", "skip"):
            raise ValueError(f"data.on_error must be 'raise' or 'skip', got {self.mode!r}")

    def handle(self, err: RecordError) -> None:
        if self.mode == "raise":
            raise err
        self.skipped.append(str(err))

    def report(self, source: str | Path, kept: int) -> None:
        if self.skipped:
            log.warning(
                "%s: skipped %d bad record(s), kept %d; first: %s",
                source,
                len(self.skipped),
                kept,
                self.skipped[0],
            )


def check_box(
    box: object, size: tuple[int, int], file: str | Path, record: int | str, name: str
) -> list[float]:
    """Validate an [x1,y1,x2,y2] box against the image size (a bad one raises RecordError)."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise RecordError(file, record, name, f"expected [x1, y1, x2, y2], got {box!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise RecordError(file, record, name, f"non-numeric coordinate in {box!r}") from None
    w, h = size
    if not (x2 > x1 and y2 > y1):
        raise RecordError(file, record, name, f"box {box!r} has non-positive width or height")
    if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
        raise RecordError(file, record, name, f"box {box!r} lies outside the {w}x{h} image")
    return [x1, y1, x2, y2]
