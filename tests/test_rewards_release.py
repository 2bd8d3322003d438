"""`variant: release` against a literal, independent re-implementation of the released reward code.

The reference functions below (`ref_*`) follow the released code line by line (its torch ops written with
numpy/scipy, in float64); they return None where the released code raises. pr1's release variants must agree
on every input where the reference does not raise: seeded random answers, hand-worked cases, the edge cases
the released code handles in surprising ways.
"""

from __future__ import annotations

import ast
import json
import math
import re

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from pr1.rewards import build, explain

REL = {"kind": "rel1000"}
REF = "<|object_ref_start|>the cat<|object_ref_end|>"
SIZE = (1000, 1000)  # rel1000 frame on a 1000x1000 image: frame coordinates are pixels

_REF_CATE = {
    "person": 1, "bicycle": 2, "car": 3, "motorcycle": 4, "airplane": 5, "bus": 6, "train": 7, "truck": 8,
    "boat": 9, "traffic light": 10, "fire hydrant": 11, "stop sign": 13, "parking meter": 14, "bench": 15,
    "bird": 16, "cat": 17, "dog": 18, "horse": 19, "sheep": 20, "cow": 21, "elephant": 22, "bear": 23,
    "zebra": 24, "giraffe": 25, "backpack": 27, "umbrella": 28, "handbag": 31, "tie": 32, "suitcase": 33,
    "frisbee": 34, "skis": 35, "snowboard": 36, "sports ball": 37, "kite": 38, "baseball bat": 39,
    "baseball glove": 40, "skateboard": 41, "surfboard": 42, "tennis racket": 43, "bottle": 44,
    "wine glass": 46, "cup": 47, "fork": 48, "knife": 49, "spoon": 50, "bowl": 51, "banana": 52, "apple": 53,
    "sandwich": 54, "orange": 55, "broccoli": 56, "carrot": 57, "hot dog": 58, "pizza": 59, "donut": 60,
    "cake": 61, "chair": 62, "couch": 63, "potted plant": 64, "bed": 65, "dining table": 67, "toilet": 70,
    "tv": 72, "laptop": 73, "mouse": 74, "remote": 75, "keyboard": 76, "cell phone": 77, "microwave": 78,
    "oven": 79, "toaster": 80, "sink": 81, "refrigerator": 82, "book": 84, "clock": 85, "vase": 86,
    "scissors": 87, "teddy bear": 88, "hair drier": 89, "toothbrush": 90,
}  # fmt: skip


class _Raised(Exception):
    """Where the released code raises."""


def _ref_box_iou(b1: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    lt = np.maximum(b1[:, None, :2], b2[:, :2])
    rb = np.minimum(b1[:, None, 2:], b2[:, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[:, :, 0] * wh[:, :, 1]
    union = area1[:, None] + area2 - inter
    return inter / (union + 1e-8), union


def _ref_giou(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    if not ((b1[:, 2:] >= b1[:, :2]).all() and (b2[:, 2:] >= b2[:, :2]).all()):
        raise _Raised("assert in generalized_box_iou")
    iou, union = _ref_box_iou(b1, b2)
    lt = np.minimum(b1[:, None, :2], b2[:, :2])
    rb = np.maximum(b1[:, None, 2:], b2[:, 2:])
    wh = np.clip(rb - lt, 0, None)
    area = wh[:, :, 0] * wh[:, :, 1] + 1e-8
    return iou - (area - union) / area


def _cxcywh(x: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = x.T
    return np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)


def ref_detection(content: str, target_id: list[int], target_box: list[list[float]], penalty: bool):
    try:
        data = json.loads(content.replace("```json", "").replace("```", ""))
        pred_id, pred_box, wrong = [], [], 0
        for entry in data:  # TypeError for numbers/None/bools
            try:
                bbox = entry["bbox_2d"]
                label_id = int(_REF_CATE[entry["label"]])
                pred_id.append(label_id)
                pred_box.append(bbox)
            except Exception:
                wrong += 1
        if not pred_id:
            raise _Raised("parse_json returns two values")
        fmt = 1 - wrong / len(data)
        if not all(
            isinstance(b, list) and len(b) == 4 and all(type(v) in (int, float) for v in b) for b in pred_box
        ):
            raise _Raised("torch.tensor / box ops")
        pred_id_a = np.asarray(pred_id)
        pred_box_a = np.asarray(pred_box, dtype=float)
        if not np.isfinite(pred_box_a).all():
            raise _Raised("non-finite cost")
        reward = fmt * 0.25
        n, m = len(pred_id), len(target_id)
        if n == 0 or m == 0:
            return reward
        if (pred_id_a >= 90).any():
            raise _Raised("one-hot index out of range")
        logits = np.zeros((n, 90))
        logits[np.arange(n), pred_id_a] = 1.0
        prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        tgt_ids = np.asarray(target_id) - 1
        tgt_box = np.asarray(target_box, dtype=float)
        cost_class = -prob[:, tgt_ids]
        cost_bbox = np.abs(_cxcywh(pred_box_a)[:, None, :] - _cxcywh(tgt_box)[None, :, :]).sum(-1)
        cost_giou = -_ref_giou(pred_box_a, tgt_box)
        cost = 5 * cost_bbox + 1 * cost_class + 2 * cost_giou
        src, tgt = linear_sum_assignment(cost)
        matched_ious, _ = _ref_box_iou(pred_box_a[src], tgt_box[tgt])
        keep = np.diag(matched_ious) > 0.5
        src, tgt = src[keep], tgt[keep]
        k = len(src)
        if k == 0:
            return reward
        precision, recall = k / n, k / m
        f1 = 2 * (precision * recall) / (precision + recall + 1e-8)
        reward += f1 * 0.75
        cls_reward = (pred_id_a[src] == np.asarray(target_id)[tgt]).astype(float).mean()
        iou_reward = np.diag(_ref_box_iou(pred_box_a[src], tgt_box[tgt])[0]).mean()
        reward += cls_reward * 1.0 + iou_reward * 1.0
        if penalty:
            reward -= ((n - k) / n + (m - k) / m) * 0.5
        return float(np.clip(reward, 0, 3))
    except (_Raised, TypeError, ValueError, KeyError, IndexError):
        return None


def _ref_float_sequence(s: str) -> list[float]:
    num = r"(-?\d+(?:\.\d+)?)"
    for pattern in (
        rf"\[\s*{num},\s*{num},\s*{num},\s*{num}\s*\]",
        rf"\(\s*{num},\s*{num},\s*{num},\s*{num}\s*\)",
        rf"\(\s*{num},\s*{num}\),\s*\(\s*{num},\s*{num}\)",
    ):
        match = re.search(pattern, s)
        if match:
            return [float(match.group(i)) for i in range(1, 5)]
    return [0, 0, 0, 0]


def ref_grounding(content: str, sol: list[float]):
    content = content.replace("<|endoftext|>", "")
    bbox = _ref_float_sequence(content)
    if "<|box_start|>" not in content:
        bbox = [int(x * 1000) for x in bbox]
    x_left, y_top = max(bbox[0], sol[0]), max(bbox[1], sol[1])
    x_right, y_bottom = min(bbox[2], sol[2]), min(bbox[3], sol[3])
    inter = max(0, x_right - x_left) * max(0, y_bottom - y_top)
    union = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) + (sol[2] - sol[0]) * (sol[3] - sol[1]) - inter
    if union == 0:
        return None
    return (inter / union) ** 2


def ref_counting(content: str, sol: list[list[float]]):
    pattern = (
        r"<\|object_ref_start\|>[^<]*<\|object_ref_end\|>(?:<\|box_start\|>[^<]*<\|box_end\|>)+<\|im_end\|>"
    )
    if not re.match(pattern, content):
        return 0.0
    res = []
    for span in re.findall(r"<\|box_start\|>(.*?)<\|box_end\|>", content.replace("<|endoftext|>", "")):
        try:
            (x1, y1), (x2, y2) = ast.literal_eval(span)
            res.append(((x1 + x2) / 2, (y1 + y2) / 2))
        except Exception:
            pass
    if not res or not sol:
        return 0.0
    pred, gt = np.asarray(res, dtype=float), np.asarray(sol, dtype=float)
    dist = np.sqrt(((pred[:, None] - gt[None]) ** 2).sum(-1))
    rows, cols = linear_sum_assignment(dist)
    score = 1 - (dist[rows, cols] / (1000 * math.sqrt(2))).mean()
    return min(len(pred), len(gt)) / max(len(pred), len(gt)) * score


def _gt_box(rng: np.random.Generator) -> list[int]:
    x1, y1 = (int(v) for v in rng.integers(0, 900, 2))
    w, h = (int(v) for v in rng.integers(1, 1000 - max(x1, y1), 2))
    return [x1, y1, x1 + w, y1 + h]


def _detection_case(rng: np.random.Generator) -> tuple[str, list[dict]]:
    labels = ["person", "cat", "dog", "car", "traffic light", "tv"]
    gt = [{"label": str(rng.choice(labels)), "box": _gt_box(rng)} for _ in range(int(rng.integers(0, 6)))]
    entries: list = []
    for _ in range(int(rng.integers(0, 8))):
        kind = rng.random()
        if gt and kind < 0.5:  # near a ground-truth box
            o = gt[int(rng.integers(len(gt)))]
            box = [round(float(v + rng.normal(0, rng.choice([2, 20, 80]))), 3) for v in o["box"]]
            box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
            label = o["label"] if rng.random() < 0.7 else str(rng.choice(labels))
        else:
            box = sorted(rng.uniform(0, 1000, 2).round(3).tolist())
            box = [box[0], *sorted(rng.uniform(0, 1000, 2).round(3).tolist()), box[1]]
            box = [box[0], box[1], box[3], box[2]]
            label = str(rng.choice(labels))
        entry: object = {"bbox_2d": box, "label": label}
        odd = rng.random()
        if odd < 0.05:
            entry = {"bbox_2d": box, "label": label.upper()}  # not in the map: a wrong-format entry
        elif odd < 0.08:
            entry = {"bbox": box, "label": label}
        elif odd < 0.10:
            entry = [box, label]
        elif odd < 0.12:
            entry = {"bbox_2d": [int(v) for v in box], "label": label, "confidence": 0.9}
        entries.append(entry)
        if rng.random() < 0.1:
            entries.append(entry)  # an exact duplicate
    text = json.dumps(entries)
    if rng.random() < 0.3:
        text = f"```json\n{text}\n```"
    return text, gt


def _score(name: str, text: str, solution, **options) -> float:
    return build(name, frame=REL, **options)([text], solution=[solution], image_size=[SIZE])[0]


@pytest.mark.parametrize("penalty", [False, True])
def test_release_detection_matches_the_reference_on_random_answers(penalty):
    rng = np.random.default_rng(17 + penalty)
    compared = 0
    for _ in range(1500):
        text, gt = _detection_case(rng)
        ref = ref_detection(text, [_REF_CATE[o["label"]] for o in gt], [o["box"] for o in gt], penalty)
        ours = _score("detection", text, gt, variant="release", penalty=penalty)
        if ref is not None:
            compared += 1
            assert ours == pytest.approx(ref, abs=1e-9), text
    assert compared > 1000


def test_release_detection_hand_worked():
    gt = [{"label": "cat", "box": [0, 0, 100, 100]}, {"label": "dog", "box": [200, 200, 400, 400]}]
    one = json.dumps([{"bbox_2d": [0, 0, 100, 80], "label": "dog"}])  # IoU 0.8 with the cat, wrong class
    # 0.25 * 1 + 0.75 * F1(1, 1/2) + 0 * class + 0.8 IoU; F1 = 2/3 (up to the released 1e-8).
    assert _score("detection", one, gt, variant="release") == pytest.approx(0.25 + 0.5 + 0.8, abs=1e-7)
    # + penalty: -0.5 * (0/1 + 1/2)
    assert _score("detection", one, gt, variant="release", penalty=True) == pytest.approx(1.3, abs=1e-7)
    # Table 6 rows on the same answer: IoU only; + class; + F1; + penalty.
    rows = [_score("detection", one, gt, variant=v) for v in ("t6_iou", "t6_cls", "t6_f1", "t6_missing")]
    assert rows == pytest.approx([1.05, 1.05, 1.55, 1.3], abs=1e-7)
    half = json.dumps([{"bbox_2d": [0, 0, 100, 50], "label": "cat"}])  # IoU exactly 0.5: not kept (> 0.5)
    assert _score("detection", half, gt, variant="release") == 0.25
    mixed = json.dumps([{"bbox_2d": [0, 0, 100, 100], "label": "cat"}, {"bbox_2d": [1, 2, 3, 4]}, 7])
    share = 1 - 2 / 3
    expected = 0.25 * share + 0.75 * 2 * 0.5 / (1 + 0.5 + 1e-8) + 1 + 1
    assert _score("detection", mixed, gt, variant="release") == pytest.approx(expected, abs=1e-7)


def test_release_detection_where_the_released_code_raises():
    gt = [{"label": "toothbrush", "box": [0, 0, 100, 100]}]
    text = json.dumps([{"bbox_2d": [0, 0, 100, 100], "label": "toothbrush"}])
    assert ref_detection(text, [90], [[0, 0, 100, 100]], False) is None  # id 90 indexes past the one-hot
    assert _score("detection", text, gt, variant="release") == pytest.approx(3.0, abs=1e-7)
    flipped = json.dumps([{"bbox_2d": [100, 100, 0, 0], "label": "toothbrush"}, json.loads(text)[0]])
    assert ref_detection(flipped, [90], [[0, 0, 100, 100]], False) is None  # assert in generalized_box_iou
    parts = explain("detection", [flipped], solution=[gt], image_size=[SIZE], frame=REL, variant="release")[0]
    assert parts["n_matched"] == 1 and parts["n_pred"] == 2  # the reversed box counts in N, matches nothing
    for text in ("", "[]", "{}", "not json", "5", '"abc"', "[" * 100_000):
        assert _score("detection", text, gt, variant="release") == 0.0


def test_release_class_cost_off_by_one_breaks_ties():
    """Two identical boxes, labels dog (18) and cat (17), one cat ground truth (id 17, column 16): the cost
    prefers the prediction whose id is 16 (none), so the tie falls to the lower row and the class reward
    follows the row order, as in the released code."""
    gt = [{"label": "cat", "box": [0, 0, 100, 100]}]
    for order in (["dog", "cat"], ["cat", "dog"]):
        text = json.dumps([{"bbox_2d": [0, 0, 100, 100], "label": label} for label in order])
        ref = ref_detection(text, [17], [[0, 0, 100, 100]], False)
        assert _score("detection", text, gt, variant="release") == pytest.approx(ref, abs=1e-9)


def _grounding_text(rng: np.random.Generator, gt: list[int]) -> str:
    box = [int(v + rng.normal(0, 40)) for v in gt]
    kind = rng.integers(5)
    if kind == 0:
        return f"{REF}<|box_start|>({box[0]},{box[1]}),({box[2]},{box[3]})<|box_end|>"
    if kind == 1:
        first = f"<|box_start|>({box[0]}, {box[1]}),({box[2]}, {box[3]})<|box_end|>"
        return f"{first} and [{box[1]},{box[0]},{box[3]},{box[2]}]"  # the released parse takes [..] first
    if kind == 2:
        return "[" + ", ".join(f"{v / 1000:.3f}" for v in box) + "]"
    if kind == 3:
        return f"({box[0]},{box[1]},{box[2]},{box[3]})"
    return "I cannot find it."


def test_release_grounding_matches_the_reference():
    rng = np.random.default_rng(3)
    compared = 0
    for _ in range(1000):
        gt = _gt_box(rng)
        text = _grounding_text(rng, gt)
        ref = ref_grounding(text, gt)
        if ref is not None:
            compared += 1
            assert _score("iou", text, gt, variant="release") == pytest.approx(ref, abs=1e-12), text
    assert compared > 900
    # Hand-worked: IoU 0.5 -> 0.25; a plain list is read as 0-1 fractions (int(x * 1000)).
    assert (
        _score("iou", "<|box_start|>(0,0),(100,50)<|box_end|>", [0, 0, 100, 100], variant="release") == 0.25
    )
    assert _score("iou", "[0.0, 0.0, 0.1, 0.05]", [0, 0, 100, 100], variant="release") == 0.25


def _counting_text(rng: np.random.Generator, gt: list[list[int]]) -> str:
    spans = []
    for x, y in gt[: int(rng.integers(0, len(gt) + 3))] if gt else []:
        dx, dy = rng.integers(1, 40, 2)
        x1, y1 = int(x - dx + rng.normal(0, 10)), int(y - dy + rng.normal(0, 10))
        spans.append(f"({x1},{y1}),({int(x + dx)},{int(y + dy)})")
    if rng.random() < 0.2:
        spans.append("(500,500)")  # a point: skipped by the released parse
    if rng.random() < 0.2:
        spans.append("(900.5, 10), (950, 40.25)")
    head = "<|object_ref_start|>apples<|object_ref_end|>" if rng.random() < 0.9 else ""
    return head + "".join(f"<|box_start|>{s}<|box_end|>" for s in spans)


def test_release_counting_matches_the_reference():
    rng = np.random.default_rng(5)
    for _ in range(800):
        gt = [[int(v) for v in rng.integers(0, 1000, 2)] for _ in range(int(rng.integers(1, 7)))]
        text = _counting_text(rng, gt)
        ref = ref_counting(text + "<|im_end|>", gt)
        assert _score("count", text + "<|im_end|>", gt, variant="release") == pytest.approx(ref, abs=1e-9), (
            text
        )
    # Hand-worked: 2 boxes for 3 points, centres on two of them: (2/3) * (1 - 0) = 2/3.
    text = f"{REF}<|box_start|>(0,0),(20,20)<|box_end|><|box_start|>(90,90),(110,110)<|box_end|>"
    assert _score("count", text, [[10, 10], [100, 100], [500, 500]], variant="release") == pytest.approx(
        2 / 3
    )
    assert _score("count", "<|box_start|>(0,0),(20,20)<|box_end|>", [[10, 10]], variant="release") == 0.0
