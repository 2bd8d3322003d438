"""Evaluation metrics per task kind, computed from greedy completions with the same parser as training.

Each metric function takes (completions, records, frame, thinking) and returns (aggregate metrics, per-sample
rows), so eval can write both a metrics JSON and a predictions JSONL; each task class (pr1/tasks/) calls its
own. Completions are read by `pr1.parsing` (the rewards' parser: answer tags per `thinking`, then
boxes/points/text), coordinates are converted from the model's frame to original-image pixels with
`pr1.coords`. Every aggregate is higher-is-better except `edit_distance` and `count_mae`; the task config's
`metric` (which selects the best checkpoint) is always a higher-is-better one.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from rapidfuzz.distance import Levenshtein

from pr1 import rewards
from pr1.coords import clip, from_frame
from pr1.parsing import Item, completion_text, parse_items, split_answer
from pr1.rewards.ocr import word_prf

# Generative detectors give no confidence: every parsed box gets this score. COCOeval then ranks tied
# detections in input order (its sort is stable), i.e. by record order, then by order in the answer.
DETECTION_SCORE = 1.0
COCO_STATS = (
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar",
    "ar_small",
    "ar_medium",
    "ar_large",
)
# The COCO_STATS of one object-size range: a CocoImages resample gives them only with by_area=True.
AREA_STATS = tuple(k for k in COCO_STATS if k.endswith(("_small", "_medium", "_large")))

Result = tuple[dict[str, float], list[dict]]  # (aggregate metrics, one row per record)


def _items(completion: Any, thinking: bool, prefer: Literal["box", "point"]) -> list[Item]:
    """The parsed boxes/points of a completion's answer, exactly as the rewards read it."""
    return parse_items(split_answer(completion_text(completion), thinking).text, prefer).items


def _pixels(coords: tuple[float, ...], size: list[int], frame: Mapping[str, Any]) -> list[float | None]:
    """Frame coordinates -> original-image pixels, clipped to the image; None where not finite (a centre of
    +inf and -inf), so every row stays standard JSON."""
    return [float(v) if math.isfinite(v) else None for v in clip(from_frame(coords, size, frame), size)]


def grounding(completions: list[str], records: list[dict], frame: dict, thinking: bool) -> Result:
    """Acc@0.5 (share of IoU >= 0.5, RefCOCO's metric) and mean IoU, scored by the `iou` reward itself
    (pick=only: an answer with several boxes scores 0, the task asks for one)."""
    iou = rewards.build("iou", variant="iou", thinking=thinking, frame=frame)
    scores = np.asarray(
        iou(
            completions,
            solution=[r["solution"] for r in records],
            image_size=[r["image_size"] for r in records],
        ),
        dtype=float,
    )
    rows = []
    for r, c, s in zip(records, completions, scores, strict=True):
        boxes = [it.coords for it in _items(c, thinking, "box") if len(it.coords) == 4]
        pred = _pixels(boxes[0], r["image_size"], frame) if boxes else None
        rows.append(
            {"id": r["id"], "completion": c, "pred_box": pred, "n_boxes": len(boxes), "iou": float(s)}
        )
    agg = {"acc50": float((scores >= 0.5).mean()), "miou": float(scores.mean())} if len(scores) else {}
    return agg, rows


def _gt_count(record: dict) -> int:
    return int(record["count"]) if record.get("count") is not None else len(record["solution"])


def counting(completions: list[str], records: list[dict], frame: dict, thinking: bool) -> Result:
    """Exact-count accuracy (PixMo-Count's metric) and mean absolute count error.

    The predicted count is the number of items the answer lists (points, or boxes counted by their centre),
    the N of the count reward; the true count is the record's `count` (eval splits publish no points).
    """
    rows = []
    for r, c in zip(records, completions, strict=True):
        items = _items(c, thinking, "point")
        points = []
        for it in items:
            x1, y1, x2, y2 = it.coords if len(it.coords) == 4 else it.coords * 2
            points.append(_pixels(((x1 + x2) / 2, (y1 + y2) / 2), r["image_size"], frame))
        rows.append(
            {
                "id": r["id"],
                "completion": c,
                "pred_count": len(items),
                "gt_count": _gt_count(r),
                "points": points,
            }
        )
    if not rows:
        return {}, rows
    errors = np.asarray([abs(row["pred_count"] - row["gt_count"]) for row in rows], dtype=float)
    return {"count_acc": float((errors == 0).mean()), "count_mae": float(errors.mean())}, rows


def ocr(completions: list[str], records: list[dict], frame: dict, thinking: bool) -> Result:
    """Normalised edit distance (Levenshtein / max length, lower is better) and word precision/recall/F1,
    each averaged over pages. The prediction is the answer text stripped, as the `edit` reward reads it."""
    rows = []
    for r, c in zip(records, completions, strict=True):
        text = split_answer(completion_text(c), thinking).text
        pred, gt = (text or "").strip(), str(r["solution"]).strip()
        precision, recall, f1 = word_prf(pred, gt)
        rows.append(
            {
                "id": r["id"],
                "completion": c,
                "pred_text": pred,
                "edit_distance": float(Levenshtein.normalized_distance(pred, gt)),
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    if not rows:
        return {}, rows
    keys = ("edit_distance", "f1", "precision", "recall")
    return {k: float(np.mean([row[k] for row in rows])) for k in keys}, rows


def _norm_label(label: Any) -> str:
    return " ".join(str(label).lower().split())


def _xywh(box: list[float]) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def coco_eval(records: list[dict], predictions: list[list[dict]]) -> dict[str, float]:
    """COCO box AP/AR of per-record predictions [{"label", "box" (pixels xyxy), "score"}], via COCOeval.

    The ground truth is built in memory from the records: one image per record, categories from the records'
    `categories` (else their labels), objects' `area` where given (COCO's mask area), `crowd` boxes as
    iscrowd regions. A predicted label outside the categories belongs to no category and so counts nowhere,
    as in COCO. Metrics COCOeval leaves undefined (-1: no ground truth in that area range) are NaN.
    """
    return _summary(_evaluated(records, predictions))


class CocoImages:
    """COCO AP/AR of any multiset of a set's images (a bootstrap resample) from one per-image evaluation.

    COCOeval matches each image on its own (`evaluate`) and mixes images only when it accumulates, so a
    resample's metrics are the accumulation of its images' stored matches, in the resample's order (which
    orders tied scores, as `coco_eval` on the resampled records does). Re-matching per resample made the
    512-image detection bootstrap of a run take minutes. `by_area=False` accumulates the "all" area range
    only (4x faster): the per-area metrics (`ap_small`, ..., `ar_large`) are then NaN.
    """

    def __init__(self, records: list[dict], predictions: list[list[dict]], *, by_area: bool = True):
        self._ev = _evaluated(records, predictions)
        self._by_area = by_area

    def __call__(self, idx: Sequence[int]) -> dict[str, float]:
        """`coco_eval` of `[records[i] for i in idx]` and their predictions, up to float summation order."""
        ev, params = self._ev, self._ev._paramsEval
        n_img, n_area = len(params.imgIds), len(params.areaRng)
        areas = range(n_area if self._by_area else 1)  # "all" is COCOeval's first area range
        sub = copy.copy(ev)  # the evaluated COCOeval, with this resample's images in place of the set's
        # evalImgs is laid out category-major, then area range, then image (COCOeval.evaluate).
        sub.evalImgs = [
            ev.evalImgs[(k * n_area + a) * n_img + int(i)]
            for k in range(len(params.catIds))
            for a in areas
            for i in idx
        ]
        sub._paramsEval = copy.copy(params)
        sub._paramsEval.imgIds = list(range(1, len(idx) + 1))
        sub._paramsEval.areaRng = params.areaRng[: len(areas)]
        sub._paramsEval.areaRngLbl = params.areaRngLbl[: len(areas)]
        sub.params = copy.copy(sub._paramsEval)
        return _summary(sub)


def _evaluated(records: list[dict], predictions: list[list[dict]]) -> COCOeval:
    """A COCOeval of the records' ground truth and the predictions, matched per image (`evaluate` run)."""
    names: dict[str, int] = {}
    for r in records:
        for label in [*r.get("categories", []), *(o["label"] for o in r["solution"] + r.get("crowd", []))]:
            names.setdefault(_norm_label(label), len(names) + 1)
    images = [
        {"id": i + 1, "width": r["image_size"][0], "height": r["image_size"][1]}
        for i, r in enumerate(records)
    ]
    categories = [{"id": k, "name": name} for name, k in names.items()]
    gt_anns, dt_anns = [], []
    for i, r in enumerate(records):
        for crowd, objects in ((0, r["solution"]), (1, r.get("crowd", []))):
            for o in objects:
                x, y, w, h = _xywh(o["box"])
                gt_anns.append(
                    {
                        "id": len(gt_anns) + 1,
                        "image_id": i + 1,
                        "category_id": names[_norm_label(o["label"])],
                        "bbox": [x, y, w, h],
                        "area": float(o.get("area", w * h)),
                        "iscrowd": crowd,
                    }
                )
        for p in predictions[i]:
            cat = names.get(_norm_label(p["label"]))
            if cat is None:
                continue
            x, y, w, h = _xywh(p["box"])
            dt_anns.append(
                {
                    "id": len(dt_anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "score": float(p["score"]),
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        gt, dt = COCO(), COCO()
        gt.dataset = {"images": images, "categories": categories, "annotations": gt_anns}
        dt.dataset = {"images": images, "categories": categories, "annotations": dt_anns}
        gt.createIndex()
        dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
    return ev


def _summary(ev: COCOeval) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
        ev.summarize()
    return {k: (float(v) if v >= 0 else math.nan) for k, v in zip(COCO_STATS, ev.stats, strict=True)}


def detection(completions: list[str], records: list[dict], frame: dict, thinking: bool) -> Result:
    """COCO AP, AP50, AP75, AP by area, AR@1/10/100 (`ar` = AR@100), by `coco_eval`.

    Each parsed box with a label (the detection reward's format: JSON `bbox_2d` + `label`, or native refs)
    becomes a detection scored DETECTION_SCORE; boxes are clipped to the image, and reversed, empty or
    unlabelled ones are dropped (reported per sample as `n_invalid`).
    """
    predictions, rows = [], []
    for r, c in zip(records, completions, strict=True):
        preds, invalid = [], 0
        for it in _items(c, thinking, "box"):
            box = _pixels(it.coords, r["image_size"], frame) if len(it.coords) == 4 else None
            if box is None or None in box or not it.label or not (box[2] > box[0] and box[3] > box[1]):
                invalid += 1
                continue
            preds.append({"label": it.label, "box": box, "score": DETECTION_SCORE})
        predictions.append(preds)
        rows.append(
            {
                "id": r["id"],
                "completion": c,
                "predictions": preds,
                "n_invalid": invalid,
                "n_gt": len(r["solution"]),
            }
        )
    return (coco_eval(records, predictions) if records else {}), rows
