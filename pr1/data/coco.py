"""COCO-format detection data (COCO 2017 and the synthetic detection sets), read through pycocotools.

One record per image: `solution` is its objects as {"label": category name, "box": [x1, y1, x2, y2] pixels,
"area": the annotation's area} (COCO stores [x, y, width, height]; `area` is the mask area COCOeval's
small/medium/large ranges use). `categories` lists every category name in id order (the detection prompt
names them all), and `question` joins them.

iscrowd: crowd annotations (one box around a group of objects) are not objects to detect, so they never enter
`solution` (the training target and reward); they are kept in `crowd`, and the COCOeval metric passes them on
as iscrowd regions, where detections are ignored rather than counted as false positives, as COCO's own eval.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from pycocotools.coco import COCO

from pr1.data.records import (
    BOX_TOLERANCE,
    FILE,
    ErrorPolicy,
    RecordError,
    Records,
    check_size,
    check_text,
    make_record,
    read_json,
    require,
    resolve_image,
    xywh_to_xyxy,
)

log = logging.getLogger(__name__)


def load_coco(
    annotations: str | Path,
    images: str | Path,
    on_error: str = "raise",
    keep_empty: bool = False,
    limit: int | None = None,
) -> list[dict]:
    """Detection records from an instances JSON and its image folder.

    keep_empty keeps images without any (non-crowd) object: evaluation needs them (a detection there is a
    false positive), training on them teaches the empty answer. A bad annotation (unknown category or image,
    box outside the image, non-positive size, non-UTF-8 name) fails its whole image: a record with one
    object dropped would punish the model for finding it. `limit` keeps the first N images by id.
    """
    ann_file = require(annotations, "COCO instances JSON", "annotations")
    image_dir = require(images, "COCO image folder", "images", is_dir=True)
    data = read_json(ann_file)
    if not isinstance(data, dict):
        raise RecordError(ann_file, FILE, "<root>", "expected a JSON object")
    for section in ("images", "annotations", "categories"):
        if not isinstance(data.get(section), list):
            raise RecordError(ann_file, FILE, section, "missing or not a list")
    policy = ErrorPolicy(on_error)
    names = _categories(data["categories"], ann_file, policy)
    coco = COCO()
    coco.dataset = {
        "images": _unique_ids(
            _with_keys(data["images"], ("id",), "image", ann_file, policy), ann_file, policy
        ),
        "annotations": _with_keys(
            data["annotations"], ("id", "image_id", "category_id"), "annotation", ann_file, policy
        ),
        "categories": [c for c in data["categories"] if isinstance(c, dict) and c.get("id") in names],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    _check_annotation_images(coco, ann_file, policy)

    ordered = [names[k] for k in sorted(names)]
    records, empty = [], 0
    for image_id in sorted(coco.imgs):
        if limit is not None and len(records) >= limit:
            break
        try:
            rec = _image_record(coco, image_id, names, ordered, ann_file, image_dir)
        except RecordError as err:
            policy.handle(err)
            continue
        if rec["solution"] or keep_empty:
            records.append(rec)
        else:
            empty += 1
    if empty:
        log.info("%s: left out %d image(s) without objects (keep_empty: false)", ann_file, empty)
    policy.report(ann_file, len(records))
    return Records(records, policy.skip_report(), "coco")


def _with_keys(items: list, keys: tuple[str, ...], kind: str, file: Path, policy: ErrorPolicy) -> list[dict]:
    """The entries pycocotools can index (it needs these keys); the others are reported."""
    kept = []
    for i, item in enumerate(items):
        missing = [k for k in keys if not isinstance(item, dict) or k not in item]
        if missing:
            policy.handle(RecordError(file, f"{kind} #{i}", missing[0], "missing"))
        else:
            kept.append(item)
    return kept


def _unique_ids(images: list[dict], file: Path, policy: ErrorPolicy) -> list[dict]:
    """Images whose id no other entry shares: pycocotools would keep the last one and pair the
    annotations with the wrong file, so a duplicated id is an error (skipped: all its entries)."""
    files: dict[object, list[str]] = {}
    for img in images:
        files.setdefault(img["id"], []).append(str(img.get("file_name")))
    for image_id, names in files.items():
        if len(names) > 1:
            policy.handle(
                RecordError(file, f"image {image_id}", "id", f"duplicate image id ({', '.join(names)})")
            )
    return [img for img in images if len(files[img["id"]]) == 1]


def _categories(cats: list, file: Path, policy: ErrorPolicy) -> dict[int, str]:
    """{category id: name}; a bad or duplicated category is reported here (never renamed), and its
    annotations then fail as unknown."""
    names: dict[int, str] = {}
    duplicated: dict[int, list[str]] = {}
    for i, cat in enumerate(cats):
        record = f"category {cat.get('id') if isinstance(cat, dict) else i}"
        try:
            if not isinstance(cat, dict) or "id" not in cat:
                raise RecordError(file, record, "id", "missing")
            if isinstance(cat["id"], bool) or not isinstance(cat["id"], int):
                raise RecordError(file, record, "id", f"expected an integer, got {cat['id']!r}")
            name = check_text(cat.get("name"), file, record, "name").strip()
            if cat["id"] in names or cat["id"] in duplicated:
                duplicated.setdefault(cat["id"], [names.pop(cat["id"], "")]).append(name)
                continue
            names[cat["id"]] = name
        except RecordError as err:
            policy.handle(err)
    for cat_id, both in duplicated.items():
        policy.handle(RecordError(file, f"category {cat_id}", "id", f"duplicate category id (names {both})"))
    return names


def _crowd(ann: dict, file: Path, record: str) -> bool:
    """COCO's iscrowd is the number 0 or 1; anything else ("no", "1", 2) is an error, never truthiness."""
    value = ann.get("iscrowd", 0)
    if isinstance(value, bool) or value not in (0, 1) or not isinstance(value, (int, float)):
        raise RecordError(file, record, "iscrowd", f"expected 0 or 1, got {value!r}")
    return value == 1


def _check_annotation_images(coco: COCO, file: Path, policy: ErrorPolicy) -> None:
    """An annotation of an image the file does not list belongs to no record: report it, never drop it."""
    for ann_id, ann in coco.anns.items():
        if ann.get("image_id") not in coco.imgs:
            policy.handle(
                RecordError(file, f"annotation {ann_id}", "image_id", f"unknown image {ann.get('image_id')}")
            )


def _image_record(
    coco: COCO, image_id: int, names: dict[int, str], ordered: list[str], file: Path, image_dir: Path
) -> dict:
    img = coco.imgs[image_id]
    name = f"image {image_id}"
    size = check_size(img.get("width"), img.get("height"), file, name)
    image = resolve_image(img.get("file_name"), image_dir, file, name, "file_name")
    objects, crowd = [], []
    for ann in coco.imgToAnns.get(image_id, []):
        record = f"annotation {ann.get('id')} (image {image_id})"
        if ann.get("category_id") not in names:
            raise RecordError(file, record, "category_id", f"unknown category {ann.get('category_id')!r}")
        box = xywh_to_xyxy(ann.get("bbox"), size, file, record, "bbox", BOX_TOLERANCE)
        area = ann.get("area")
        if not isinstance(area, (int, float)) or area <= 0:
            area = (box[2] - box[0]) * (box[3] - box[1])
        obj = {"label": names[ann["category_id"]], "box": box, "area": float(area)}
        (crowd if _crowd(ann, file, record) else objects).append(obj)
    return make_record(
        str(image_id),
        "detection",
        image,
        size,
        ", ".join(ordered),
        objects,
        categories=ordered,
        crowd=crowd,
    )
