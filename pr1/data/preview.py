"""What `python -m pr1.data show` prints: the detected format, the record count, the skips per reason and the
first record as pr1 holds it; and, with `--out`, the ground truth drawn over the first few images."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

KIND_OF_TASK = {"refcoco": "grounding", "pixmo_count": "counting", "pageocr": "ocr", "coco": "detection"}
PREVIEW_IMAGES = 4
PREVIEW_HEIGHT = 256


def summary(records) -> dict:
    """The stable JSON object of `show --json`: format, n_records, skipped, first."""
    first = None
    if records:
        rec = records[0]
        first = {k: rec[k] for k in ("id", "image", "image_size", "question", "solution") if k in rec}
        first.update({k: rec[k] for k in ("count", "crowd") if k in rec})
    return {
        "format": records.format,
        "n_records": len(records),
        "skipped": records.skip_report,
        "first": first,
    }


def _draw(rec: dict) -> Image.Image:
    with Image.open(rec["image"]) as im:
        image = im.convert("RGB")
    draw = ImageDraw.Draw(image)
    sol, width = rec["solution"], max(1, round(max(image.size) / 200))
    if rec["task"] == "grounding":
        draw.rectangle(sol, outline=(255, 0, 0), width=width)
    elif rec["task"] == "counting":
        for x, y in sol or []:
            r = 2 * width
            draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 0, 0), width=width)
    elif rec["task"] == "detection":
        for obj in sol:
            draw.rectangle(obj["box"], outline=(255, 0, 0), width=width)
            draw.text((obj["box"][0] + 2, obj["box"][1] + 2), obj["label"], fill=(255, 0, 0))
    scale = PREVIEW_HEIGHT / image.height
    return image.resize((max(1, round(image.width * scale)), PREVIEW_HEIGHT))


def draw_preview(records, out: str | Path, n: int = PREVIEW_IMAGES) -> Path:
    """The ground truth of the first `n` records drawn on their images, side by side, saved to `out`."""
    tiles = [_draw(r) for r in list(records)[:n]]
    if not tiles:
        raise ValueError("no records to draw")
    sheet = Image.new("RGB", (sum(t.width for t in tiles), PREVIEW_HEIGHT), "white")
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width
    out = Path(out)
    sheet.save(out)
    return out
