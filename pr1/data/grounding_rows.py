"""Row parsers for the RefCOCO/+/g distributions researchers download, each converted once to pr1's
grounding record (xyxy pixels on the original image, the true image size). Conventions, by source:

- lmms-lab/RefCOCO, RefCOCOplus, RefCOCOg (parquet; card: huggingface.co/datasets/lmms-lab/RefCOCO):
  question_id, image (embedded bytes), question, answer (list of referring expressions), bbox (COCO
  [x, y, w, h]), file_name (the COCO file). One record per expression; the image is the COCO file when
  `images` holds it, else the embedded bytes, written once under `image_cache` (named by content hash).
- jxu124/refcoco, refcocoplus, refcocog (parquet; card: huggingface.co/datasets/jxu124/refcoco): the refer
  toolkit's refs flattened, with raw_anns / raw_image_info (the COCO annotation and image, as JSON text) and
  bbox; no pixels. bbox is COCO [x, y, w, h] (it must equal raw_anns' bbox); one record per sentence.
- VLM-R1 REC JSON / JSONL (rec_jsons_processed; layout shown in github.com/om-ai-lab/VLM-R1/issues/11):
  image, problem, normal_caption (the expression), solution [x1, y1, x2, y2] pixels, normalized_solution
  (int(v / size * 1000)), bbox_list (inclusive corners: x2 = x + w - 1), width, height. `solution` is
  bbox_list with x2+1, y2+1, i.e. COCO's exclusive x + w: read as is. normalized_solution, when present,
  must agree with it (a cheap check that width/height are the image's).
- Qwen-VL / InternVL refcoco_*.jsonl (InternVL's eval reads image, sent, bbox, width, height): bbox
  [x1, y1, x2, y2] pixels.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from pr1.data.records import (
    BOX_TOLERANCE,
    RecordError,
    check_box,
    check_size,
    check_text,
    image_size,
    make_record,
    xywh_to_xyxy,
)


@dataclass
class Context:
    """Where a row's images are: `images` (the image folder), the annotation file's folder, and
    `image_cache` (where embedded image bytes are written)."""

    path: Path
    images: Path | None
    image_cache: Path | None


def find_image(value: object, ctx: Context, rec: int | str, name: str) -> Path:
    """An existing file for a relative or absolute path: under `images`, by base name under `images`, or
    under the annotation file's folder."""
    rel = Path(check_text(value, ctx.path, rec, name))
    bases = [ctx.images] if ctx.images else []
    candidates = [rel] if rel.is_absolute() else [b / rel for b in [*bases, ctx.path.parent]]
    candidates += [b / rel.name for b in bases]
    for cand in candidates:
        if cand.is_file():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise RecordError(ctx.path, rec, name, f"file not found (tried {tried})", reason="image_missing")


def embedded_image(value: object, ctx: Context, rec: int | str, name: str) -> Path:
    """Embedded image bytes ({"bytes", "path"}) written once to the cache, named by their sha256."""
    data = value.get("bytes") if isinstance(value, dict) else None
    if not data:
        raise RecordError(ctx.path, rec, name, "no embedded image bytes", reason="image_missing")
    try:
        with Image.open(io.BytesIO(data)) as im:
            suffix = "." + (im.format or "img").lower()
    except (UnidentifiedImageError, OSError) as e:
        raise RecordError(
            ctx.path, rec, name, f"embedded bytes are not an image ({e})", reason="not_an_image"
        ) from None
    cache = ctx.image_cache or ctx.path.parent / f"{ctx.path.stem}.images"
    target = cache / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target


def _sentences(values: object, ctx: Context, rec: int | str, name: str) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values:
        raise RecordError(ctx.path, rec, name, "expected a non-empty list of expressions")
    return [check_text(v, ctx.path, rec, f"{name}[{j}]").strip() for j, v in enumerate(values)]


def lmms_lab(row: dict, i: int, ctx: Context) -> list[dict]:
    rec = f"{i} (question_id {row.get('question_id')})"
    image = None
    if ctx.images and isinstance(row.get("file_name"), str) and (ctx.images / row["file_name"]).is_file():
        image = ctx.images / row["file_name"]
    image = image or embedded_image(row.get("image"), ctx, rec, "image")
    size = image_size(image, ctx.path, rec, "image")
    box = xywh_to_xyxy(row.get("bbox"), size, ctx.path, rec, "bbox", BOX_TOLERANCE)
    return [
        make_record(f"{row.get('question_id', i)}:{j}", "grounding", image, size, sent, box)
        for j, sent in enumerate(_sentences(row.get("answer"), ctx, rec, "answer"))
    ]


def _json_field(value: object, ctx: Context, rec: int | str, name: str) -> dict:
    try:
        out = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as e:
        raise RecordError(ctx.path, rec, name, f"invalid JSON text ({e.msg})") from None
    if not isinstance(out, dict):
        raise RecordError(ctx.path, rec, name, "expected a JSON object")
    return out


def jxu124(row: dict, i: int, ctx: Context) -> list[dict]:
    rec = f"{i} (ref_id {row.get('ref_id')})"
    info = _json_field(row.get("raw_image_info"), ctx, rec, "raw_image_info")
    size = check_size(info.get("width"), info.get("height"), ctx.path, rec)
    name = row.get("image_path") or row.get("file_name") or info.get("file_name")
    image = find_image(name, ctx, rec, "image_path")
    bbox = row.get("bbox")
    if row.get("raw_anns") is not None:
        ann_box = _json_field(row["raw_anns"], ctx, rec, "raw_anns").get("bbox")
        if bbox is not None and [float(v) for v in bbox] != [float(v) for v in ann_box or []]:
            raise RecordError(ctx.path, rec, "bbox", f"{bbox} disagrees with raw_anns' COCO bbox {ann_box}")
        bbox = ann_box
    box = xywh_to_xyxy(bbox, size, ctx.path, rec, "bbox", BOX_TOLERANCE)
    sentences = row.get("sentences")
    if not isinstance(sentences, list) or not sentences:
        raise RecordError(ctx.path, rec, "sentences", "expected a non-empty list")
    out = []
    for j, s in enumerate(sentences):
        text = s.get("sent", s.get("raw")) if isinstance(s, dict) else s
        sent = check_text(text, ctx.path, rec, f"sentences[{j}].sent").strip()
        sid = s.get("sent_id", j) if isinstance(s, dict) else j
        out.append(make_record(f"{row.get('ref_id', i)}:{sid}", "grounding", image, size, sent, box))
    return out


def vlm_r1(row: dict, i: int, ctx: Context) -> list[dict]:
    image = find_image(row.get("image"), ctx, i, "image")
    if row.get("width") is not None and row.get("height") is not None:
        size = check_size(row["width"], row["height"], ctx.path, i)
    else:
        size = image_size(image, ctx.path, i, "image")
    box = check_box(row.get("solution"), size, ctx.path, i, "solution", BOX_TOLERANCE)
    norm = row.get("normalized_solution")
    if norm is not None:
        expected = [int(v / size[k % 2] * 1000) for k, v in enumerate(box)]
        if not isinstance(norm, list) or any(
            abs(float(a) - b) > 1 for a, b in zip(norm, expected, strict=False)
        ):
            raise RecordError(
                ctx.path,
                i,
                "normalized_solution",
                f"{norm} disagrees with solution on a {size[0]}x{size[1]} image",
            )
    sent = check_text(row.get("normal_caption"), ctx.path, i, "normal_caption").strip()
    return [make_record(str(row.get("id", f"{ctx.path.stem}:{i}")), "grounding", image, size, sent, box)]


def internvl(row: dict, i: int, ctx: Context) -> list[dict]:
    image = find_image(row.get("image"), ctx, i, "image")
    size = check_size(row.get("width"), row.get("height"), ctx.path, i)
    box = check_box(row.get("bbox"), size, ctx.path, i, "bbox", BOX_TOLERANCE)
    sent = check_text(row.get("sent"), ctx.path, i, "sent").strip()
    return [make_record(str(row.get("id", f"{ctx.path.stem}:{i}")), "grounding", image, size, sent, box)]
