"""The record every loader yields, the raise-or-count policy for bad input, and the checks loaders share.

A record is a plain dict, the single currency between loaders, the GRPO/SFT step, rewards and eval:
  id: str, task: str, image: str (path), image_size: [w, h], question: str, solution: task-specific ground
  truth in absolute pixels of the original image:
  - grounding: [x1, y1, x2, y2];
  - counting: [[x, y], ...] points, plus `count` (int); solution is None for eval-only sets that publish
    counts without points (PixMo-Count val/test), which the count metric handles and the rewards cannot;
  - ocr: str;
  - detection: [{"label": str, "box": [x1, y1, x2, y2], "area"?: float}], plus `categories` (every class
    name of the dataset, the prompt's list) and `crowd` (iscrowd boxes, ignored regions for COCOeval).
A bad record raises a RecordError naming file, record and field, or is counted and skipped (`on_error=skip`).
Loaders return `Records`: a list of records whose `skip_report` attribute is a plain dict
`{"skipped": total, "by_reason": {reason: count}, "examples": [first few messages]}` (the run writes it into
metrics.json / eval_metrics.json) and whose `format` names the distribution that was read.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

# Published COCO-style boxes are floats derived from polygons: allow this much round-off past the border.
BOX_TOLERANCE = 1.0
FILE = "<file>"  # the `record` of an error that concerns the whole file
LINE = "<line>"  # the `field` of an error that concerns a whole JSONL line


SKIP_EXAMPLES = 5  # messages kept per skip report (the counts per reason are complete)


class RecordError(ValueError):
    """A bad input record; the message names file, record and field. `reason` is the short key skips are
    counted under (default: the field's name)."""

    def __init__(
        self, file: str | Path, record: int | str, field_name: str, problem: str, reason: str | None = None
    ):
        super().__init__(f"{file}: record {record}: field {field_name!r}: {problem}")
        self.file, self.record, self.field, self.problem = str(file), record, field_name, problem
        self.reason = reason or field_name


class Records(list):
    """The records a loader read, with what it skipped (`skip_report`) and the format it read (`format`)."""

    def __init__(self, records: Iterable[dict] = (), skip_report: dict | None = None, format: str = ""):
        super().__init__(records)
        self.skip_report = skip_report if skip_report is not None else empty_report()
        self.format = format


def empty_report() -> dict:
    return {"skipped": 0, "by_reason": {}, "examples": []}


def merge_reports(*reports: dict) -> dict:
    """One skip report summing several (a loader's and the image checks', say)."""
    out = empty_report()
    for rep in reports:
        out["skipped"] += rep["skipped"]
        for reason, count in rep["by_reason"].items():
            out["by_reason"][reason] = out["by_reason"].get(reason, 0) + count
        out["examples"] += rep["examples"][: SKIP_EXAMPLES - len(out["examples"])]
    return out


@dataclass
class ErrorPolicy:
    """`raise` stops at the first bad record; `skip` counts skips per reason and reports them once."""

    mode: str = "raise"
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("raise", "skip"):
            raise ValueError(f"data.on_error must be 'raise' or 'skip', got {self.mode!r}")

    def handle(self, err: RecordError) -> None:
        if self.mode == "raise":
            raise err
        self.skipped.append(str(err))
        self.reasons[err.reason] = self.reasons.get(err.reason, 0) + 1

    def skip_report(self) -> dict:
        return {
            "skipped": len(self.skipped),
            "by_reason": dict(self.reasons),
            "examples": self.skipped[:SKIP_EXAMPLES],
        }

    def report(self, source: str | Path, kept: int) -> None:
        if self.skipped:
            log.warning(
                "%s: skipped %d bad record(s), kept %d; first: %s",
                source,
                len(self.skipped),
                kept,
                self.skipped[0],
            )


def require(path: str | Path, what: str, arg: str, is_dir: bool = False) -> Path:
    """`path` if it exists; else a FileNotFoundError naming the config key that points at it."""
    path = Path(path).expanduser()
    if not (path.is_dir() if is_dir else path.is_file()):
        raise FileNotFoundError(
            f"{what} not found: {path}. Set task.train.{arg} / task.val.{arg} to where it lives "
            "(real-dataset task configs default to paths under $PR1_DATA)."
        )
    return path


def read_json(path: Path) -> Any:
    """A whole JSON file. Bytes that are not UTF-8 survive as lone surrogates, so `check_text` can name the
    record and field that holds them instead of failing on the file."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(path, FILE, LINE, f"invalid JSON at line {e.lineno} ({e.msg})") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict | RecordError]]:
    """(line number, object) per non-blank line; a line that is not a JSON object yields its RecordError."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8", errors="surrogateescape"))
            except json.JSONDecodeError as e:
                yield lineno, RecordError(path, lineno, LINE, f"invalid JSON ({e.msg})")
                continue
            if not isinstance(row, dict):
                yield lineno, RecordError(path, lineno, LINE, "expected a JSON object")
                continue
            yield lineno, row


def parse_rows(
    rows: Iterable[tuple[int, dict | RecordError]],
    parse: Callable[[dict, int], dict],
    source: Path,
    on_error: str,
    limit: int | None = None,
) -> Records:
    """Records from (index, row-or-error) pairs: each bad row raises, or is counted and reported once."""
    policy = ErrorPolicy(on_error)
    records: list[dict] = []
    for index, row in rows:
        if limit is not None and len(records) >= limit:
            break
        try:
            if isinstance(row, RecordError):
                raise row
            records.append(parse(row, index))
        except RecordError as err:
            policy.handle(err)
    policy.report(source, len(records))
    return Records(records, policy.skip_report())


def check_text(
    value: object, file: str | Path, record: int | str, name: str, allow_empty: bool = False
) -> str:
    """A string field that was valid UTF-8 on disk (see `read_json`) and, unless allowed, not blank."""
    if not isinstance(value, str):
        raise RecordError(file, record, name, f"expected a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError(file, record, name, "not UTF-8 (undecodable bytes in the text)") from None
    if not allow_empty and not value.strip():
        raise RecordError(file, record, name, "empty")
    return value


def check_size(width: object, height: object, file: str | Path, record: int | str) -> tuple[int, int]:
    """A positive integer (width, height)."""
    try:
        w, h = int(width), int(height)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise RecordError(file, record, "width/height", f"not integers: {width!r}, {height!r}") from None
    if w <= 0 or h <= 0:
        raise RecordError(file, record, "width/height", f"non-positive image size {(w, h)}")
    return w, h


def _numbers(values: object, n: int, file: str | Path, record: int | str, name: str) -> list[float]:
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise RecordError(file, record, name, f"expected {n} numbers, got {values!r:.200}")
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise RecordError(file, record, name, f"non-numeric coordinate in {values!r:.200}") from None
    if not all(math.isfinite(v) for v in out) or any(isinstance(v, bool) for v in values):
        raise RecordError(file, record, name, f"non-finite or boolean coordinate in {values!r:.200}")
    return out


def check_box(
    box: object,
    size: tuple[int, int],
    file: str | Path,
    record: int | str,
    name: str,
    tolerance: float = 0.0,
) -> list[float]:
    """Validate an [x1,y1,x2,y2] box against the image size (a bad one raises RecordError).

    Coordinates at most `tolerance` pixels outside the image are clipped to it: published annotations (COCO)
    carry float round-off at the border. Anything further out is an error, never silently repaired.
    """
    x1, y1, x2, y2 = _numbers(box, 4, file, record, name)
    w, h = size
    if not (x2 > x1 and y2 > y1):
        raise RecordError(file, record, name, f"box {box!r} has non-positive width or height")
    if x1 < -tolerance or y1 < -tolerance or x2 > w + tolerance or y2 > h + tolerance:
        raise RecordError(file, record, name, f"box {box!r} lies outside the {w}x{h} image")
    return [max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))]


def xywh_to_xyxy(
    bbox: object, size: tuple[int, int], file: str | Path, record: int | str, name: str, tolerance: float
) -> list[float]:
    """A COCO [x, y, width, height] box as a checked [x1, y1, x2, y2] box."""
    x, y, w, h = _numbers(bbox, 4, file, record, name)
    if w <= 0 or h <= 0:
        raise RecordError(file, record, name, f"box {bbox!r} has non-positive width or height")
    return check_box([x, y, x + w, y + h], size, file, record, name, tolerance)


def check_point(
    point: object, size: tuple[int, int], file: str | Path, record: int | str, name: str
) -> list[float]:
    """An [x, y] point inside the image (the border included)."""
    x, y = _numbers(point, 2, file, record, name)
    w, h = size
    if not (0 <= x <= w and 0 <= y <= h):
        raise RecordError(file, record, name, f"point {point!r} lies outside the {w}x{h} image")
    return [x, y]


def resolve_image(value: object, base: Path, file: str | Path, record: int | str, name: str) -> Path:
    """An existing image file named by `value`, relative to `base` unless absolute."""
    rel = Path(check_text(value, file, record, name))
    image = rel if rel.is_absolute() else base / rel
    if not image.is_file():
        raise RecordError(file, record, name, f"file not found: {image}", reason="image_missing")
    return image


def image_size(image: Path, file: str | Path, record: int | str, name: str) -> tuple[int, int]:
    """(width, height) read from the image header (formats that do not store the size)."""
    try:
        with Image.open(image) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise RecordError(file, record, name, f"unreadable image {image}: {e}") from None


def make_record(
    record_id: str, task: str, image: Path, size: tuple[int, int], question: str, solution: Any, **extra: Any
) -> dict:
    """A record with the schema's keys in one place (extra task-specific keys appended)."""
    return {
        "id": record_id,
        "task": task,
        "image": str(image),
        "image_size": [int(size[0]), int(size[1])],
        "question": question,
        "solution": solution,
        **extra,
    }
