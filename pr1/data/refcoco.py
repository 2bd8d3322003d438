"""RefCOCO/+/g grounding data, in the two layouts they are published in.

- refs + instances (the `refer` toolkit layout): a folder with `refs(<split_by>).p` (a pickle;
  `refs(...).json` is also read) and `instances.json`, plus the COCO train2014 images. A ref is
  `{"ref_id", "ann_id", "image_id", "split", "sentences": [{"sent_id", "sent"}, ...]}`; `ann_id` points into
  `instances.json`'s annotations, whose `bbox` is COCO [x, y, width, height]; `image_id` into its images
  (`file_name`, `width`, `height`). Every sentence is one record (the usual protocol, train and eval).
  RefCOCO and RefCOCO+ use split_by=unc (val/testA/testB), RefCOCOg split_by=umd (val/test).
- one record per line (JSONL): {"image": path (relative to the file's folder or absolute), "expression": str,
  "bbox": [x1, y1, x2, y2] in pixels, "width": int, "height": int, "id": optional}.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from pr1.data.records import (
    BOX_TOLERANCE,
    FILE,
    ErrorPolicy,
    RecordError,
    Records,
    check_box,
    check_size,
    check_text,
    make_record,
    parse_rows,
    read_json,
    read_jsonl,
    require,
    resolve_image,
    xywh_to_xyxy,
)


def load_refcoco(
    path: str | Path,
    images: str | Path | None = None,
    split: str | None = "train",
    split_by: str = "unc",
    on_error: str = "raise",
    limit: int | None = None,
) -> list[dict]:
    """Grounding records from a refs+instances folder, or from a JSONL file when `path` is one.

    `split` selects refs by their split field (None: all); `images` is the COCO image folder (default: the
    folder's `images/`). `limit` keeps the first N records (a fixed subset, as the reference recipe uses).
    """
    path = Path(path).expanduser()
    if path.suffix == ".jsonl":
        return load_jsonl(path, on_error=on_error, limit=limit)
    folder = require(path, "RefCOCO annotation folder", "path", is_dir=True)
    refs_file = next(
        (p for p in (folder / f"refs({split_by}).p", folder / f"refs({split_by}).json") if p.is_file()),
        folder / f"refs({split_by}).p",
    )
    refs = _read_refs(require(refs_file, "RefCOCO refs file", "path"))
    inst_file = require(folder / "instances.json", "RefCOCO instances.json", "path")
    image_dir = require(images if images is not None else folder / "images", "image folder", "images", True)
    return _from_refs(refs, refs_file, read_json(inst_file), inst_file, image_dir, split, on_error, limit)


class _PlainUnpickler(pickle.Unpickler):
    """Loads lists, dicts, strings and numbers only: a refs pickle needs nothing else, and refusing every
    class keeps a tampered pickle from executing code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: refs pickles hold only plain data")


def _read_refs(path: Path) -> list:
    if path.suffix == ".json":
        refs = read_json(path)
    else:
        with path.open("rb") as f:
            try:
                # Python 2 str pickles decode as UTF-8; bad bytes survive as surrogates for check_text.
                refs = _PlainUnpickler(f, encoding="utf-8", errors="surrogateescape").load()
            except (pickle.UnpicklingError, EOFError, ValueError) as e:
                raise RecordError(path, FILE, "<pickle>", f"unreadable refs pickle: {e}") from None
    if not isinstance(refs, list):
        raise RecordError(path, FILE, "<root>", f"expected a list of refs, got {type(refs).__name__}")
    return refs


def _index(items: object, file: Path, section: str) -> dict:
    if not isinstance(items, list):
        raise RecordError(file, FILE, section, "missing or not a list")
    return {it["id"]: it for it in items if isinstance(it, dict) and "id" in it}


def _from_refs(
    refs: list,
    refs_file: Path,
    instances: object,
    inst_file: Path,
    image_dir: Path,
    split: str | None,
    on_error: str,
    limit: int | None,
) -> Records:
    if not isinstance(instances, dict):
        raise RecordError(inst_file, FILE, "<root>", "expected a JSON object")
    images = _index(instances.get("images"), inst_file, "images")
    anns = _index(instances.get("annotations"), inst_file, "annotations")
    policy = ErrorPolicy(on_error)
    records: list[dict] = []
    for i, ref in enumerate(refs):
        if limit is not None and len(records) >= limit:
            break
        if not isinstance(ref, dict):
            policy.handle(RecordError(refs_file, i, "<ref>", "expected a dict"))
            continue
        if split is not None and ref.get("split") != split:
            continue
        try:
            records += _ref_records(ref, i, refs_file, images, anns, inst_file, image_dir)
        except RecordError as err:
            policy.handle(err)
    policy.report(refs_file, len(records))
    present = sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})
    if split is not None and split not in present:
        raise ValueError(f"{refs_file}: no ref has split {split!r}; splits present: {present}")
    return Records(records[:limit] if limit is not None else records, policy.skip_report(), "refer")


def _ref_records(
    ref: dict, i: int, refs_file: Path, images: dict, anns: dict, inst_file: Path, image_dir: Path
) -> list[dict]:
    name = f"{i} (ref_id {ref.get('ref_id')})"
    for key in ("ann_id", "image_id", "sentences"):
        if key not in ref:
            raise RecordError(refs_file, name, key, "missing")
    ann = anns.get(ref["ann_id"])
    if ann is None:
        raise RecordError(refs_file, name, "ann_id", f"annotation {ref['ann_id']} not in {inst_file.name}")
    img = images.get(ref["image_id"])
    if img is None:
        raise RecordError(refs_file, name, "image_id", f"image {ref['image_id']} not in {inst_file.name}")
    img_name = f"image {img['id']}"
    size = check_size(img.get("width"), img.get("height"), inst_file, img_name)
    image = resolve_image(img.get("file_name"), image_dir, inst_file, img_name, "file_name")
    box = xywh_to_xyxy(ann.get("bbox"), size, inst_file, f"annotation {ann['id']}", "bbox", BOX_TOLERANCE)
    sentences = ref["sentences"]
    if not isinstance(sentences, list) or not sentences:
        raise RecordError(refs_file, name, "sentences", "expected a non-empty list")
    out = []
    for j, s in enumerate(sentences):
        if not isinstance(s, dict):
            raise RecordError(refs_file, name, f"sentences[{j}]", "expected a dict")
        sent = check_text(s.get("sent", s.get("raw")), refs_file, name, f"sentences[{j}].sent")
        sid = s.get("sent_id", j)
        out.append(make_record(f"{ref.get('ref_id', i)}:{sid}", "grounding", image, size, sent, box))
    return out


def load_jsonl(path: str | Path, on_error: str = "raise", limit: int | None = None) -> list[dict]:
    """Read JSONL grounding records; bad lines raise (naming file/line/field) or are counted and skipped."""
    path = require(path, "grounding annotations", "path")
    return parse_rows(read_jsonl(path), lambda row, i: parse_row(row, path, i), path, on_error, limit)


def parse_row(row: dict, path: Path, lineno: int, images: Path | None = None) -> dict:
    """One pr1 grounding JSONL row (image relative to `images`, default the file's folder)."""
    for key in ("image", "expression", "bbox", "width", "height"):
        if key not in row:
            raise RecordError(path, lineno, key, "missing")
    image = resolve_image(row["image"], images or path.parent, path, lineno, "image")
    size = check_size(row["width"], row["height"], path, lineno)
    expression = check_text(row["expression"], path, lineno, "expression")
    box = check_box(row["bbox"], size, path, lineno, "bbox")
    return make_record(str(row.get("id", f"{path.stem}:{lineno}")), "grounding", image, size, expression, box)
