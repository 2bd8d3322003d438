"""Row parsers for Perception-R1's own data files (github.com/linkangheng/PR1, read in its fork
philipmit/PR1), each converted once to pr1's record (pixels of the original image, the true image size).

The released loader (src/open_r1/dataset.py, MMR1Dataset) reads a JSON *list* of rows (or a hub dataset)
with the keys `image` (a path under --image_dir, or embedded bytes), `problem` (the text put into the
question template) and the answer under --answer_key. What each answer holds, and in which frame, follows
from the released reward that scores it:

- grounding (train: linkangheng/refcoco_320k, local_scripts/train/train_qwen2_2b_vl_grounding.sh): `problem`
  is the referring expression ("Output the bounding box of the {question} in the image."); `solution` is a
  flat [x1, y1, x2, y2] (a list, or its text: the reward eval()s it; pr1 reads it as a literal) that
  pr1_grounding_reward compares directly with Qwen2-VL's native box, so it is 0-1000 relative.
  The eval files (eval/evaluate_grounding.py, refcoco_val.json ...) add `normalized_solution`, the 0-1000 box
  the eval scores Qwen2-VL's answer against; when present it is the one read (`solution` there is the box
  for other models, whose frame that script does not pin down).
- counting (train: pr1_counting_10k.json, train_qwen2_2b_vl_counting.sh with --answer_key clicks): `problem`
  is the label; `clicks` is [[x, y], ...], which pr1_counting_reward matches against the centres of
  Qwen2-VL's 0-1000 boxes with distances over 1000*sqrt(2): 0-1000 relative. The PixMo-Count eval files
  (eval/evaluate_counting.py, pixmo_count_*_counting_problems_label.jsonl) hold `image_path`, `question`
  (the label) and `ground_truth` (the count, no points): eval-only records (require_points=False).
- detection (train: pr1_dataset_detection.json, train_qwen2_2b_vl_detection.sh with --answer_key solution):
  `solution` is {"target_id": [COCO category ids], "target_box": [[x1, y1, x2, y2], ...]} (pr1_detection_
  reward; ids as its get_cate_to_id, the COCO 2017 ids). The boxes are read as pixels of the stored image.
  The released reward compares them with Qwen2.5-VL's absolute boxes on the smart_resize'd image (sides
  rounded to multiples of 28: at most 14 px off for COCO sizes); the file itself does not say which of the
  two it holds, and a box past the border by more than the round-off is an error here, never clipped.
"""

from __future__ import annotations

import ast
import json

from pr1.coco_categories import COCO_IDS
from pr1.data.grounding_rows import Context, embedded_image, find_image
from pr1.data.records import (
    BOX_TOLERANCE,
    RecordError,
    check_box,
    check_point,
    check_size,
    check_text,
    image_size,
    make_record,
)

REL = 1000.0  # Qwen2-VL's relative frame: 0-1000 on both axes
COCO_NAMES = {i: name for name, i in COCO_IDS.items()}
CATEGORIES = [COCO_NAMES[i] for i in sorted(COCO_NAMES)]  # the 80 names in id order (the prompt's list)


def _image(row: dict, key: str, ctx: Context, i: int) -> tuple:
    value = row.get(key)
    image = embedded_image(value, ctx, i, key) if isinstance(value, dict) else find_image(value, ctx, i, key)
    if row.get("width") is not None and row.get("height") is not None:
        return image, check_size(row["width"], row["height"], ctx.path, i)
    return image, image_size(image, ctx.path, i, key)


def _literal(value: object, ctx: Context, i: int, name: str) -> object:
    """A list given as itself or as its text (JSON or a Python literal; never evaluated as code)."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise RecordError(ctx.path, i, name, f"not a list literal: {value!r:.100}") from None


def _from_rel(xy: object, n: int, size: tuple[int, int], ctx: Context, i: int, name: str) -> list[float]:
    """n 0-1000 coordinates (x, y alternating) as pixels of a `size` image."""
    if not isinstance(xy, (list, tuple)) or len(xy) != n:
        raise RecordError(ctx.path, i, name, f"expected {n} numbers, got {xy!r:.100}")
    try:
        values = [float(v) for v in xy]
    except (TypeError, ValueError):
        raise RecordError(ctx.path, i, name, f"non-numeric coordinate in {xy!r:.100}") from None
    if any(isinstance(v, bool) for v in xy) or not all(0.0 <= v <= REL for v in values):
        raise RecordError(ctx.path, i, name, f"{xy!r:.100} is not in the 0-1000 frame")
    return [v * size[k % 2] / REL for k, v in enumerate(values)]


def grounding(row: dict, i: int, ctx: Context) -> list[dict]:
    image, size = _image(row, "image", ctx, i)
    name = "normalized_solution" if row.get("normalized_solution") is not None else "solution"
    rel = _literal(row.get(name), ctx, i, name)
    box = check_box(_from_rel(rel, 4, size, ctx, i, name), size, ctx.path, i, name)
    sent = check_text(row.get("problem"), ctx.path, i, "problem").strip()
    return [make_record(str(row.get("id", f"{ctx.path.stem}:{i}")), "grounding", image, size, sent, box)]


def counting(row: dict, i: int, ctx: Context) -> list[dict]:
    image, size = _image(row, "image", ctx, i)
    clicks = _literal(row.get("clicks"), ctx, i, "clicks")
    if not isinstance(clicks, list):
        raise RecordError(ctx.path, i, "clicks", f"expected a list of [x, y], got {clicks!r:.100}")
    points = [
        check_point(_from_rel(p, 2, size, ctx, i, f"clicks[{j}]"), size, ctx.path, i, f"clicks[{j}]")
        for j, p in enumerate(clicks)
    ]
    label = check_text(row.get("problem"), ctx.path, i, "problem").strip()
    rid = str(row.get("id", f"{ctx.path.stem}:{i}"))
    return [make_record(rid, "counting", image, size, label, points, count=len(points))]


def counting_eval(row: dict, i: int, ctx: Context, require_points: bool) -> list[dict]:
    if require_points:
        raise RecordError(
            ctx.path,
            i,
            "ground_truth",
            "these eval rows publish counts without points: set require_points: false (eval only)",
        )
    image, size = _image(row, "image_path", ctx, i)
    count = row.get("ground_truth")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise RecordError(
            ctx.path, i, "ground_truth", f"expected a non-negative integer count, got {count!r}"
        )
    label = check_text(row.get("question"), ctx.path, i, "question").strip()
    rid = str(row.get("id", f"{ctx.path.stem}:{i}"))
    return [make_record(rid, "counting", image, size, label, None, count=count)]


def _targets(value: object, ctx: Context, i: int) -> tuple[list, list]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise RecordError(ctx.path, i, "solution", f"invalid JSON text ({e.msg})") from None
    if not isinstance(value, dict):
        raise RecordError(ctx.path, i, "solution", "expected {'target_id': [...], 'target_box': [...]}")
    ids, boxes = value.get("target_id"), value.get("target_box")
    if not isinstance(ids, list) or not isinstance(boxes, list) or len(ids) != len(boxes):
        raise RecordError(ctx.path, i, "solution", "target_id and target_box must be lists of equal length")
    return ids, boxes


def detection(row: dict, i: int, ctx: Context) -> list[dict]:
    image, size = _image(row, "image", ctx, i)
    ids, boxes = _targets(row.get("solution"), ctx, i)
    objects = []
    for j, (cat, box) in enumerate(zip(ids, boxes, strict=True)):
        if isinstance(cat, bool) or not isinstance(cat, int) or cat not in COCO_NAMES:
            raise RecordError(
                ctx.path, i, f"solution.target_id[{j}]", f"{cat!r} is not a COCO 2017 category id"
            )
        xyxy = check_box(box, size, ctx.path, i, f"solution.target_box[{j}]", BOX_TOLERANCE)
        area = (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1])
        objects.append({"label": COCO_NAMES[cat], "box": xyxy, "area": area})
    rid = str(row.get("id", f"{ctx.path.stem}:{i}"))
    question = ", ".join(CATEGORIES)
    return [
        make_record(rid, "detection", image, size, question, objects, categories=list(CATEGORIES), crowd=[])
    ]
