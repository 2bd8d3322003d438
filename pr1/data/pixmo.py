"""PixMo-Count counting data (allenai/pixmo-count exported to JSONL, images downloaded locally).

A line is a row of the published dataset: {"label": str, "count": int, "points": {"x": [...], "y": [...]}
(pixels; also accepted as [{"x", "y"}, ...] or [[x, y], ...]), "image_sha256": str, "image_url": str}, plus
where the image lives locally: "image" (a path relative to `images`, or to the file's folder) or, failing
that, a file named by its sha256 (with or without extension) in `images`. Export with
`datasets.load_dataset("allenai/pixmo-count", split=...).to_json(path)`. The val/test splits publish counts
without points: with require_points=False their records carry `count` and solution None (eval only).
"""

from __future__ import annotations

from pathlib import Path

from pr1.data.records import (
    RecordError,
    check_point,
    check_size,
    check_text,
    image_size,
    make_record,
    parse_rows,
    read_jsonl,
    require,
    resolve_image,
)

IMAGE_SUFFIXES = ("", ".jpg", ".jpeg", ".png", ".webp", ".gif")


def load_pixmo(
    path: str | Path,
    images: str | Path | None = None,
    on_error: str = "raise",
    require_points: bool = True,
    limit: int | None = None,
) -> list[dict]:
    """Counting records (solution = the points; `count` always set); bad lines raise or are counted."""
    path = require(path, "PixMo-Count JSONL", "path")
    image_dir = require(images, "PixMo-Count image folder", "images", is_dir=True) if images else path.parent
    return parse_rows(
        read_jsonl(path),
        lambda row, i: _parse_row(row, path, i, image_dir, require_points),
        path,
        on_error,
        limit,
    )


def _find_image(row: dict, path: Path, lineno: int, image_dir: Path) -> Path:
    if row.get("image") is not None:
        return resolve_image(row["image"], image_dir, path, lineno, "image")
    if row.get("image_sha256") is None:
        raise RecordError(path, lineno, "image", "missing (and no image_sha256 to find the file by)")
    sha = check_text(row["image_sha256"], path, lineno, "image_sha256").strip()
    for suffix in IMAGE_SUFFIXES:
        if (image_dir / f"{sha}{suffix}").is_file():
            return image_dir / f"{sha}{suffix}"
    raise RecordError(
        path, lineno, "image_sha256", f"no file {sha}[{'|'.join(IMAGE_SUFFIXES)}] in {image_dir}"
    )


def _points(value: object, path: Path, lineno: int) -> list:
    """The points as [[x, y], ...] from any of the accepted layouts (unchecked numbers)."""
    if isinstance(value, dict):
        xs, ys = value.get("x"), value.get("y")
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
            raise RecordError(path, lineno, "points", "expected {'x': [...], 'y': [...]} of equal length")
        return [[x, y] for x, y in zip(xs, ys, strict=True)]
    if isinstance(value, list):
        return [[p.get("x"), p.get("y")] if isinstance(p, dict) else p for p in value]
    raise RecordError(path, lineno, "points", f"expected points, got {type(value).__name__}")


def _parse_row(row: dict, path: Path, lineno: int, image_dir: Path, require_points: bool) -> dict:
    image = _find_image(row, path, lineno, image_dir)
    if "width" in row and "height" in row:
        size = check_size(row["width"], row["height"], path, lineno)
    else:
        size = image_size(image, path, lineno, "image")
    label = check_text(row.get("label"), path, lineno, "label").strip()
    count = row.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise RecordError(path, lineno, "count", f"expected a non-negative integer, got {count!r}")
    solution = None
    if row.get("points") is not None:
        raw = _points(row["points"], path, lineno)
        solution = [check_point(p, size, path, lineno, f"points[{i}]") for i, p in enumerate(raw)]
        if count is not None and count != len(solution):
            raise RecordError(path, lineno, "count", f"count {count} but {len(solution)} points")
        count = len(solution)
    elif require_points:
        raise RecordError(
            path, lineno, "points", "missing (eval-only splits publish counts: set require_points: false)"
        )
    elif count is None:
        raise RecordError(path, lineno, "count", "missing, and no points to count")
    rid = str(row.get("id", f"{path.stem}:{lineno}"))
    return make_record(rid, "counting", image, size, label, solution, count=count)
