"""Image checks when records load: a header read (PIL `open`, no pixel decode) per record, so a bad file is
reported at load time, naming its record, instead of crashing training at the first batch that samples it.

Checked: the file exists and is an image PIL can identify; its size matches the record's declared
`image_size` (a mismatch would train on mis-scaled boxes); its pixel count is within `max_pixels` (an
`ImageTooLarge` error, PIL's decompression-bomb guard made a named, configurable limit).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pr1.data.records import ErrorPolicy, RecordError, Records, merge_reports

# PIL's own default: above it PIL warns (and refuses at twice this) as a possible decompression bomb.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class ImageTooLarge(RecordError):
    """An image over the configured pixel limit (`task.<split>.max_image_pixels`)."""


def header_size(path: Path, rec_id: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header; a non-image, empty or over-limit file raises RecordError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size = im.size
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


def check_images(
    records: Iterable[dict],
    on_error: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    n: int | None = None,
    source_report: dict | None = None,
    format: str = "",
) -> Records:
    """The records whose image passes the header checks, at most `n` of them (checked in order, so a limit
    reads only as many headers as it keeps, plus the skipped ones)."""
    policy = ErrorPolicy(on_error)
    kept: list[dict] = []
    for rec in records:
        if n is not None and len(kept) >= n:
            break
        try:
            size = header_size(Path(rec["image"]), rec["id"], max_pixels)
            if list(size) != list(rec["image_size"]):
                raise RecordError(
                    rec["image"],
                    rec["id"],
                    "image_size",
                    f"declared {rec['image_size'][0]}x{rec['image_size'][1]} but the file is "
                    f"{size[0]}x{size[1]}",
                    reason="image_size_mismatch",
                )
        except RecordError as err:
            policy.handle(err)
            continue
        kept.append(rec)
    report = merge_reports(
        source_report or {"skipped": 0, "by_reason": {}, "examples": []}, policy.skip_report()
    )
    return Records(kept, report, format)
