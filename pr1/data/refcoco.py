"""RefCOCO-style grounding data in the common one-record-per-line JSONL layout.

Each line: {"image": path (relative to the file's folder or absolute), "expression": str,
"bbox": [x1, y1, x2, y2] in pixels, "width": int, "height": int, "id": optional}.
"""

from __future__ import annotations

import json
from pathlib import Path

from pr1.data.records import ErrorPolicy, RecordError, check_box


def load_jsonl(path: str | Path, on_error: str = "raise") -> list[dict]:
    """Read grounding records; bad lines raise (naming file/line/field) or are counted and skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grounding annotations not found: {path}")
    policy = ErrorPolicy(on_error)
    records = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                records.append(_parse_line(raw, path, lineno))
            except RecordError as err:
                policy.handle(err)
    policy.report(path, len(records))
    return records


def _parse_line(raw: bytes, path: Path, lineno: int) -> dict:
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RecordError(path, lineno, "<line>", f"not UTF-8 ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise RecordError(path, lineno, "<line>", f"invalid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise RecordError(path, lineno, "<line>", "expected a JSON object")
    for key in ("image", "expression", "bbox", "width", "height"):
        if key not in row:
            raise RecordError(path, lineno, key, "missing")
    image = Path(row["image"])
    image = image if image.is_absolute() else path.parent / image
    if not image.is_file():
        raise RecordError(path, lineno, "image", f"file not found: {image}")
    size = (int(row["width"]), int(row["height"]))
    if size[0] <= 0 or size[1] <= 0:
        raise RecordError(path, lineno, "width/height", f"non-positive image size {size}")
    expression = row["expression"]
    if not isinstance(expression, str) or not expression.strip():
        raise RecordError(path, lineno, "expression", f"expected a non-empty string, got {expression!r}")
    return {
        "id": str(row.get("id", f"{path.stem}:{lineno}")),
        "task": "grounding",
        "image": str(image),
        "image_size": list(size),
        "question": expression,
        "solution": check_box(row["bbox"], size, path, lineno, "bbox"),
    }
