"""PixMo-Count counting data (allenai/pixmo-count: its parquet as published, a JSONL export, or Molmo's
`save_to_disk` copy), images downloaded locally.

A row is {"label": str, "count": int, "points": {"x": [...], "y": [...]} (also accepted as [{"x", "y"}, ...]
or [[x, y], ...]), "image_sha256": str, "image_url": str}. The dataset card (huggingface.co/datasets/
allenai/pixmo-count) gives the points in pixels, and Molmo's PixMoCount loader passes them on without a
`point_scale` (pixel coordinates); `point_units: percent` reads 0-100 coordinates instead (PixMo-Points).
The image is found, in order, by the row's "image" (a path relative to `images`, or absolute: Molmo's saved
copy), by the sha256 of its URL in `images` (the file name Molmo's downloader writes), or by its
image_sha256 (with or without extension). The val/test splits publish counts without points (missing, or
empty lists): with require_points=False their records carry `count` and solution None (eval only).
"""

from __future__ import annotations

import hashlib
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
POINT_UNITS = ("pixels", "percent")


def load_pixmo(
    path: str | Path,
    images: str | Path | None = None,
    on_error: str = "raise",
    require_points: bool = True,
    limit: int | None = None,
    point_units: str = "pixels",
) -> list[dict]:
    """Counting records (solution = the points; `count` always set); bad lines raise or are counted."""
    path = require(path, "PixMo-Count JSONL", "path")
    image_dir = require(images, "PixMo-Count image folder", "images", is_dir=True) if images else path.parent
    return parse_rows(
        read_jsonl(path),
        lambda row, i: parse_row(row, path, i, image_dir, require_points, point_units),
        path,
        on_error,
        limit,
    )


def url_file_name(url: str) -> str:
    """The name Molmo's downloader gives an image: the sha256 of its URL (UTF-8), no extension."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _find_image(row: dict, path: Path, lineno: int, image_dir: Path) -> Path:
    if row.get("image") is not None:
        return resolve_image(row["image"], image_dir, path, lineno, "image")
    names = []
    if row.get("image_url") is not None:
        names.append(url_file_name(check_text(row["image_url"], path, lineno, "image_url").strip()))
    if row.get("image_sha256") is not None:
        names.append(check_text(row["image_sha256"], path, lineno, "image_sha256").strip())
    if not names:
        raise RecordError(path, lineno, "image", "missing (and no image_url or image_sha256 to find it by)")
    for name in names:
        for suffix in IMAGE_SUFFIXES:
            if (image_dir / f"{name}{suffix}").is_file():
                return image_dir / f"{name}{suffix}"
    raise RecordError(
        path,
        lineno,
        "image_url" if row.get("image_url") is not None else "image_sha256",
        f"no file named sha256(image_url) or image_sha256 ({', '.join(names)}) in {image_dir}",
        reason="image_missing",
    )


def _percent(point: object, size: tuple[int, int], path: Path, lineno: int, i: int) -> list[float]:
    if not isinstance(point, (list, tuple)) or len(point) != 2:
        raise RecordError(path, lineno, f"points[{i}]", f"expected [x, y], got {point!r:.100}")
    try:
        return [float(point[0]) * size[0] / 100.0, float(point[1]) * size[1] / 100.0]
    except (TypeError, ValueError):
        raise RecordError(path, lineno, f"points[{i}]", f"non-numeric coordinate in {point!r:.100}") from None


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


def parse_row(
    row: dict, path: Path, lineno: int, image_dir: Path, require_points: bool, point_units: str = "pixels"
) -> dict:
    """One PixMo-Count row as a counting record."""
    if point_units not in POINT_UNITS:
        raise ValueError(f"point_units must be one of {POINT_UNITS}, got {point_units!r}")
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
    raw = _points(row["points"], path, lineno) if row.get("points") is not None else []
    if raw or (row.get("points") is not None and count == 0):
        if point_units == "percent":
            raw = [_percent(p, size, path, lineno, i) for i, p in enumerate(raw)]
        solution = [check_point(p, size, path, lineno, f"points[{i}]") for i, p in enumerate(raw)]
        if count is not None and count != len(solution):
            raise RecordError(path, lineno, "count", f"count {count} but {len(solution)} points")
        count = len(solution)
    elif require_points:
        raise RecordError(
            path,
            lineno,
            "points",
            "missing or empty (eval-only splits publish counts: set require_points: false)",
        )
    elif count is None:
        raise RecordError(path, lineno, "count", "missing, and no points to count")
    rid = str(row.get("id", f"{path.stem}:{lineno}"))
    return make_record(rid, "counting", image, size, label, solution, count=count)
