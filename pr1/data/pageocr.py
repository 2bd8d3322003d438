"""Page-level OCR data: an image and its ground-truth text.

Two layouts are read:
- JSONL, one page per line: {"image": path, "text": str, "id": optional};
- a JSON list in the conversation layout of GOT/Fox page-OCR benchmarks:
  [{"image": path, "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": text}]}]
  (the ground truth is the first "gpt" turn), or a JSON list of {"image", "text"} objects.
Image paths are relative to `images` when given, else to the annotation file's folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pr1.data.records import (
    FILE,
    RecordError,
    check_size,
    check_text,
    image_size,
    make_record,
    parse_rows,
    read_json,
    read_jsonl,
    require,
    resolve_image,
)


def load_pageocr(
    path: str | Path, images: str | Path | None = None, on_error: str = "raise", limit: int | None = None
) -> list[dict]:
    """OCR records (solution = the text); bad pages raise (naming file/record/field) or are counted."""
    path = require(path, "OCR annotations", "path")
    image_dir = require(images, "OCR image folder", "images", is_dir=True) if images else path.parent
    rows: Iterable[tuple[int, dict | RecordError]]
    if path.suffix == ".jsonl":
        rows = read_jsonl(path)
    else:
        data = read_json(path)
        if not isinstance(data, list):
            raise RecordError(path, FILE, "<root>", "expected a JSON list of pages")
        rows = (
            (i, r if isinstance(r, dict) else RecordError(path, i, "<page>", "expected an object"))
            for i, r in enumerate(data)
        )
    return parse_rows(rows, lambda row, i: parse_row(row, path, i, image_dir), path, on_error, limit)


def _text(row: dict, path: Path, index: int) -> str:
    if "text" in row:
        return check_text(row["text"], path, index, "text")
    turns = row.get("conversations")
    if not isinstance(turns, list):
        raise RecordError(path, index, "text", "missing (and no conversations)")
    for j, turn in enumerate(turns):
        if isinstance(turn, dict) and turn.get("from") == "gpt":
            return check_text(turn.get("value"), path, index, f"conversations[{j}].value")
    raise RecordError(path, index, "conversations", "no 'gpt' turn holding the text")


def parse_row(row: dict, path: Path, index: int, image_dir: Path) -> dict:
    """One page (JSONL line or JSON list entry) as an OCR record."""
    if "image" not in row:
        raise RecordError(path, index, "image", "missing")
    image = resolve_image(row["image"], image_dir, path, index, "image")
    text = _text(row, path, index)
    if "width" in row and "height" in row:
        size = check_size(row["width"], row["height"], path, index)
    else:
        size = image_size(image, path, index, "image")
    return make_record(str(row.get("id", f"{path.stem}:{index}")), "ocr", image, size, "", text)
