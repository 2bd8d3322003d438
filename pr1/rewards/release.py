"""The released Perception-R1 rewards (linkangheng/PR1 with its 2025-05-27 update), for `variant: release`.

Written from reading the released code, not copied. Where the released code raises (and so scores the
completion 0, or stops training), these functions score instead; pr1's README lists each such case.
Coordinates stay in the frame the model writes (0-1000 for Qwen2-VL, resized pixels for Qwen2.5-VL), as in
the released code: its matching cost is not scale-free, so the units matter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from pr1.coco_categories import COCO_IDS
from pr1.matching import detr_cost, iou_matrix, min_cost

_ONE_HOT = 90  # the released class "logits" are a one-hot row of 90 columns
_MAX_COORD = 1e15  # past this the released code's tensors overflow (float32 / int64) and it raises


class Entries(NamedTuple):
    """The valid entries of a released-format detection answer and the share of valid entries."""

    labels: list[str]
    boxes: np.ndarray  # (K, 4) as written
    share: float  # valid entries / entries (the released "format reward")


def _is_box(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and all(abs(v) <= _MAX_COORD for v in value)
    )


def parse_detection(text: str | None, vocabulary: Mapping[str, int]) -> Entries | None:
    """The released parse: the whole answer, minus ``` fences, is JSON; each entry needs "bbox_2d" and a
    "label" from `vocabulary` (exact spelling). None where the released code scores 0 outright (not JSON, not
    a list/object/string, or no valid entry). An entry whose bbox_2d is not 4 numbers of magnitude <= 1e15
    counts as invalid here; the released code raises on it (scoring the completion 0).
    """
    if not text:
        return None
    try:
        data = json.loads(text.replace("```json", "").replace("```", ""))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, (list, dict, str)):
        return None
    contents = list(data)  # a dict iterates its keys and a string its characters: all invalid entries
    labels, boxes = [], []
    for entry in contents:
        if not isinstance(entry, dict) or "bbox_2d" not in entry:
            continue
        label = entry.get("label")
        if isinstance(label, str) and label in vocabulary and _is_box(entry["bbox_2d"]):
            labels.append(label)
            boxes.append([float(v) for v in entry["bbox_2d"]])
    if not labels:
        return None
    return Entries(
        labels,
        np.asarray(boxes, dtype=float).reshape(-1, 4),
        1.0 - (len(contents) - len(labels)) / len(contents),
    )


def vocabulary(gt_labels: Sequence[str]) -> dict[str, int]:
    """The released COCO label map, extended by the ground truth's other labels (ids 91, 92, ... sorted).

    The released map is COCO's only; the extension lets the released reward score other label sets (e.g. the
    synthetic shapes); on COCO it changes nothing.
    """
    extra = sorted(set(gt_labels) - set(COCO_IDS))
    return {**COCO_IDS, **{label: 91 + i for i, label in enumerate(extra)}}


def class_cost(pred_ids: np.ndarray, gt_ids: np.ndarray) -> np.ndarray:
    """The released class cost: minus the softmax of a 90-wide one-hot at the predicted id, read at column
    (ground-truth id - 1). The released code shifts only the ground truth, so "same class" there means
    pred_id == gt_id - 1; the term is at most 0.02 and only breaks near-ties of the box costs.
    """
    hot = pred_ids[:, None] == gt_ids[None, :] - 1
    return -np.where(hot, math.e, 1.0) / (math.e + _ONE_HOT - 1)


def _ordered(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])


def detection(
    entries: Entries | None,
    gt_boxes: np.ndarray,
    gt_labels: Sequence[str],
    vocab: Mapping[str, int],
    *,
    threshold: float = 0.5,
    w_format: float = 0.25,
    w_f1: float = 0.75,
    w_cls: float = 1.0,
    w_iou: float = 1.0,
    penalty: bool = False,
) -> dict[str, float]:
    """The released detection reward (max w_format + w_f1 + w_cls + w_iou = 3 with the defaults).

    w_format * share, then DETR-cost Hungarian matching of the valid entries to the ground truth, pairs kept
    when IoU > threshold (k kept of N predictions and M objects); with k > 0:
    + w_f1 * F1(k / N, k / M) + w_cls * (share of kept pairs with the right label) + w_iou * mean kept IoU,
    - 0.5 * ((N - k) / N + (M - k) / M) when `penalty`, clamped to [0, 3]. With k = 0 (or N or M = 0) the
    reward is the format term alone, with no penalty. Reversed boxes (x2 < x1 or y2 < y1; the released code
    asserts on them) are never matched here.
    """
    out = {"share": 0.0, "n_pred": 0.0, "n_gt": float(len(gt_boxes)), "n_matched": 0.0, "f1": 0.0}
    out |= {"class_acc": 0.0, "mean_iou": 0.0, "total": 0.0}
    if entries is None:
        return out
    n, m = len(entries.labels), len(gt_boxes)
    reward = w_format * entries.share
    out |= {"share": entries.share, "n_pred": float(n), "total": reward}
    if n == 0 or m == 0:
        return out
    pred_ids = np.asarray([vocab[label] for label in entries.labels], dtype=np.intp)
    gt_ids = np.asarray([vocab[label] for label in gt_labels], dtype=np.intp)
    ordered = _ordered(entries.boxes)
    cost = detr_cost(entries.boxes, gt_boxes, class_cost(pred_ids, gt_ids))
    if not ordered.all():  # matched last
        cost[~ordered] = np.abs(cost[ordered]).max(initial=0.0) * 2 + 1e6
    rows, cols = min_cost(cost)
    iou = iou_matrix(entries.boxes, gt_boxes)[rows, cols]
    keep = (iou > threshold) & ordered[rows]
    rows, cols, iou = rows[keep], cols[keep], iou[keep]
    k = len(rows)
    if k == 0:
        return out
    precision, recall = k / n, k / m
    f1 = 2 * precision * recall / (precision + recall + 1e-8)
    class_acc = float((pred_ids[rows] == gt_ids[cols]).mean())
    mean_iou = float(iou.mean())
    reward += w_f1 * f1 + w_cls * class_acc + w_iou * mean_iou
    if penalty:
        reward -= 0.5 * ((n - k) / n + (m - k) / m)
    reward = min(max(reward, 0.0), 3.0)
    return out | {
        "n_matched": float(k),
        "f1": f1,
        "class_acc": class_acc,
        "mean_iou": mean_iou,
        "total": reward,
    }


_RNUM = r"(-?\d{1,20}(?:\.\d{1,20})?)"
_GROUNDING_RES = (
    re.compile(rf"\[\s*{_RNUM},\s*{_RNUM},\s*{_RNUM},\s*{_RNUM}\s*\]"),
    re.compile(rf"\(\s*{_RNUM},\s*{_RNUM},\s*{_RNUM},\s*{_RNUM}\s*\)"),
    re.compile(rf"\(\s*{_RNUM},\s*{_RNUM}\),\s*\(\s*{_RNUM},\s*{_RNUM}\)"),
)


def grounding_box(text: str | None, rel1000: bool) -> list[float]:
    """The released grounding parse: the first `[a, b, c, d]` anywhere, else the first `(a, b, c, d)`, else
    the first `(a, b), (c, d)`, else [0, 0, 0, 0]. Without `<|box_start|>` in the text the numbers are read
    as 0-1 fractions and become int(x * 1000) (done only in the 0-1000 frame, the released model's).
    """
    text = text or ""
    box = [0.0, 0.0, 0.0, 0.0]
    for pattern in _GROUNDING_RES:
        found = pattern.search(text)
        if found:
            box = [float(v) for v in found.groups()]
            break
    if rel1000 and "<|box_start|>" not in text:
        box = [float(int(v * 1000)) for v in box]
    return box


_CNUM = r"\s*[-+]?(?:\d{1,20}\.?\d{0,20}|\.\d{1,20})(?:[eE][-+]?\d{1,4})?\s*"
_CPAIR = rf"[(\[]{_CNUM},{_CNUM}[)\]]"
_COUNT_BOX_RE = re.compile(rf"\s*(?:[(\[]\s*{_CPAIR}\s*,\s*{_CPAIR}\s*[)\]]|{_CPAIR}\s*,\s*{_CPAIR})\s*")
_COUNT_FORMAT_RE = re.compile(
    r"<\|object_ref_start\|>[^<]{0,1000}<\|object_ref_end\|>(?:<\|box_start\|>[^<]{0,1000}<\|box_end\|>)+"
    r"(?:<\|im_end\|>|$)"
)
_BOX_SPAN_RE = re.compile(r"<\|box_start\|>([^\n]{0,1000}?)<\|box_end\|>")
_NUMBER_RE = re.compile(_CNUM)


def counting_format(text: str | None) -> bool:
    """The released counting format: one object ref, then one or more box spans, at the start of the text."""
    return bool(text) and _COUNT_FORMAT_RE.match(text) is not None


def counting_centres(text: str | None) -> np.ndarray:
    """Centres of the `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` boxes (any order, reversed boxes too).

    The released code evaluates each span and skips those that are not two pairs (a point, text); this
    reads the same well-formed spans as numbers, never evaluating them.
    """
    centres = []
    for span in _BOX_SPAN_RE.findall(text or ""):
        if _COUNT_BOX_RE.fullmatch(span):
            x1, y1, x2, y2 = (float(v) for v in _NUMBER_RE.findall(span.replace("(", " ").replace(")", " ")))
            centres.append(((x1 + x2) / 2, (y1 + y2) / 2))
    return np.asarray(centres, dtype=float).reshape(-1, 2)


def counting(pred: np.ndarray, gt: np.ndarray) -> float:
    """The released count reward on 0-1000 points: (min(N,M)/max(N,M)) * (1 - mean matched distance /
    (1000 * sqrt 2)), Hungarian matching on Euclidean distance; 0 when either side is empty (the released
    code raises and scores 0). Not clipped: points far off the grid can score below 0.
    """
    if len(pred) == 0 or len(gt) == 0:
        return 0.0
    with np.errstate(all="ignore"):
        dist = np.sqrt(((pred[:, None, :] - gt[None, :, :]) ** 2).sum(axis=-1))
    if not np.isfinite(dist).all():  # the released assignment raises on these: 0
        return 0.0
    rows, cols = min_cost(dist)
    score = 1.0 - float(dist[rows, cols].mean()) / (1000 * math.sqrt(2))
    return min(len(pred), len(gt)) / max(len(pred), len(gt)) * score
