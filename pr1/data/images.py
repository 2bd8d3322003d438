"""Image checks when records load, so a bad file is reported at load time, naming its record, instead of
crashing training at the first batch that samples it.

Checked by the default `header` mode (PIL `open`, no pixel decode: about a millisecond and a few KiB read per
image): the file exists and is an image PIL can identify; its size matches the record's declared
`image_size` (a mismatch would train on mis-scaled boxes); its pixel count is within `max_pixels` (an
`ImageTooLarge` error, PIL's decompression-bomb guard made a named, configurable limit); its aspect ratio is
at most 200 (`aspect_ratio`: the Qwen2-VL-family processors refuse longer images).

A truncated file passes the header read (the header is intact) and fails only when its pixels are decoded.
The `full` mode also decodes every image (`Image.open(...).load()`), catching it as `image_truncated`: that
reads every byte and decodes every pixel, tens of milliseconds per COCO-sized JPEG, so minutes for COCO
train2017 (118k images) on one core. Use it once on a new download, or when a run died decoding an image.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pr1.data.records import ErrorPolicy, RecordError, Records, merge_reports

# PIL's own default: above it PIL warns (and refuses at twice this) as a possible decompression bomb.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# Qwen2-VL's smart_resize (and Qwen2.5-VL's, Qwen3-VL's) raises for max(w, h) / min(w, h) above this.
MAX_ASPECT_RATIO = 200
IMAGE_CHECKS = ("header", "full")


class ImageTooLarge(RecordError):
    """An image over the configured pixel limit (`task.<split>.max_image_pixels`)."""


def _decode(im: Image.Image, path: Path, rec_id: str) -> None:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as e:  # PIL reports broken pixel data with any of these
        raise RecordError(
            path,
            rec_id,
            "image",
            f"pixel data cannot be decoded, truncated or corrupt ({e})",
            "image_truncated",
        ) from None


def header_size(path: Path, rec_id: str, max_pixels: int, full: bool = False) -> tuple[int, int]:
    """(width, height) from the header; a non-image, empty or over-limit file raises RecordError. With
    `full`, the pixels are decoded too (a truncated file raises, reason `image_truncated`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size = im.size
                if full and size[0] * size[1] <= max_pixels:
                    _decode(im, path, rec_id)
    except RecordError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(path, rec_id, "image", f"{e}", reason="image_too_large") from None
    except FileNotFoundError:
        raise RecordError(path, rec_id, "image", "file not found", reason="image_missing") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise RecordError(
            path, rec_id, "image", f"not a readable image ({e})", reason="not_an_image"
        ) from None
    if size[0] * size[1] > max_pixels:
        raise ImageTooLarge(
            path,
            rec_id,
            "image",
            f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels is over the limit of {max_pixels} "
            "(raise task.<split>.max_image_pixels if the image is genuine)",
            reason="image_too_large",
        )
    return size


def _aspect(size: tuple[int, int], rec: dict) -> None:
    ratio = max(size) / max(min(size), 1)
    if ratio > MAX_ASPECT_RATIO:
        raise RecordError(
            rec["image"],
            rec["id"],
            "image",
            f"{size[0]}x{size[1]} has aspect ratio {ratio:.1f}, over {MAX_ASPECT_RATIO}: the Qwen2-VL-family "
            "processors refuse it (crop or pad the image, or drop the record)",
            reason="aspect_ratio",
        )


def verify_images(
    records: Iterable[dict],
    on_error: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    n: int | None = None,
    source_report: dict | None = None,
    format: str = "",
    check: str = "header",
) -> Records:
    """The records whose image passes the checks (`check`: "header" or "full", see the module docstring), at
    most `n` of them (checked in order, so a limit reads only as many images as it keeps, plus the skipped
    ones)."""
    if check not in IMAGE_CHECKS:
        raise ValueError(f"check_images must be one of {IMAGE_CHECKS}, got {check!r}")
    policy = ErrorPolicy(on_error)
    kept: list[dict] = []
    for rec in records:
        if n is not None and len(kept) >= n:
            break
        try:
            size = header_size(Path(rec["image"]), rec["id"], max_pixels, full=check == "full")
            if list(size) != list(rec["image_size"]):
                raise RecordError(
                    rec["image"],
                    rec["id"],
                    "image_size",
                    f"declared {rec['image_size'][0]}x{rec['image_size'][1]} but the file is "
                    f"{size[0]}x{size[1]}",
                    reason="image_size_mismatch",
                )
            _aspect(size, rec)
        except RecordError as err:
            policy.handle(err)
            continue
        kept.append(rec)
    report = merge_reports(
        source_report or {"skipped": 0, "by_reason": {}, "examples": []}, policy.skip_report()
    )
    return Records(kept, report, format)
