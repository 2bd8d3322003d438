"""Eval metrics against hand-computed values; COCOeval on perfect, empty and hand-ranked prediction sets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pr1 import metrics
from pr1.metrics import coco_eval, word_prf
from tests.helpers import render

REL = {"kind": "rel1000"}
ALL_AREA = ("ap", "ap50", "ap75", "ar1", "ar10", "ar")
ABS = {"kind": "abs_resized", "factor": 28, "min_pixels": 3136, "max_pixels": 1003520}


def rec(task: str, solution, size=(100, 100), **extra) -> dict:
    return {"id": f"r{len(str(solution))}", "task": task, "image": "x.png", "image_size": list(size),
            "question": "q", "solution": solution, **extra}  # fmt: skip


def native(*pairs: tuple[int, int]) -> str:
    return "<|box_start|>" + ",".join(f"({x},{y})" for x, y in pairs) + "<|box_end|>"


def test_grounding_acc50_and_miou():
    records = [rec("grounding", [0, 0, 50, 50]) for _ in range(4)]
    completions = [
        native((0, 0), (500, 500)),  # IoU 1
        native((0, 0), (500, 250)),  # IoU 0.5 exactly: counts for Acc@0.5
        native((250, 0), (750, 500)),  # IoU 1250 / 3750 = 1/3
        "no box",  # 0
    ]
    agg, rows = metrics.grounding(completions, records, frame=REL, thinking=False)
    assert agg["acc50"] == 0.5
    assert agg["miou"] == pytest.approx((1 + 0.5 + 1 / 3 + 0) / 4)
    assert [r["iou"] for r in rows] == pytest.approx([1, 0.5, 1 / 3, 0])
    assert rows[2]["pred_box"] == pytest.approx([25, 0, 75, 50]) and rows[3]["pred_box"] is None


def test_grounding_thinking_and_absolute_frame():
    records = [rec("grounding", [10, 20, 60, 80], size=(112, 224))]  # smart_resize keeps 112x224 as is
    agg, rows = metrics.grounding(
        ["<think>it is there</think><answer>[10, 20, 60, 80]</answer>"], records, frame=ABS, thinking=True
    )
    assert agg == {"acc50": 1.0, "miou": 1.0} and rows[0]["pred_box"] == [10, 20, 60, 80]
    agg, _ = metrics.grounding(["[10, 20, 60, 80]"], records, frame=ABS, thinking=True)  # no tags
    assert agg["acc50"] == 0.0


def test_counting_accuracy_and_mae():
    points = [[10, 10], [50, 50], [90, 90]]
    records = [rec("counting", points, count=3) for _ in range(3)]
    records.append(rec("counting", None, count=4))  # PixMo eval split: a count, no points
    completions = [
        native((100, 100)) + native((500, 500)) + native((900, 900)),  # 3: exact
        "".join(native((100 * k, 100)) for k in range(1, 6)),  # 5: off by 2
        native((100, 100), (300, 300)) + native((500, 500), (700, 700)),  # 2 boxes: off by 1
        "[1, 2], [3, 4], [5, 6], [7, 8]",  # 4 points as plain lists: exact
    ]
    agg, rows = metrics.counting(completions, records, frame=REL, thinking=False)
    assert agg == {"count_acc": 0.5, "count_mae": pytest.approx(0.75)}
    assert [r["pred_count"] for r in rows] == [3, 5, 2, 4] and [r["gt_count"] for r in rows] == [3, 3, 3, 4]
    assert sum(rows[0]["points"], []) == pytest.approx(sum(points, []))
    assert sum(rows[2]["points"], []) == pytest.approx([20, 20, 60, 60])  # boxes count by their centre


def test_word_prf():
    assert word_prf("the cat", "the cat sat") == pytest.approx((1, 2 / 3, 0.8))
    assert word_prf("sat sat sat", "the cat sat") == pytest.approx((1 / 3, 1 / 3, 1 / 3))  # repeats paid once
    assert word_prf("", "") == (1.0, 1.0, 1.0) and word_prf("", "a") == (0.0, 0.0, 0.0)
    assert word_prf("Cat", "cat") == (0.0, 0.0, 0.0)  # case-sensitive


def test_ocr_edit_distance_and_f1():
    records = [rec("ocr", "the cat sat") for _ in range(3)]
    completions = ["the cat", "sat sat sat", "<think>reading</think><answer> the cat sat </answer>"]
    agg, rows = metrics.ocr(completions, records, frame=REL, thinking=True)
    # Without tags (thinking on) the first two have no answer: empty prediction, distance 1, F1 0.
    assert [r["edit_distance"] for r in rows] == [1.0, 1.0, 0.0]
    agg, rows = metrics.ocr(completions[:2], records[:2], frame=REL, thinking=False)
    assert [r["edit_distance"] for r in rows] == pytest.approx([4 / 11, 4 / 11])  # Levenshtein / max length
    assert agg["edit_distance"] == pytest.approx(4 / 11)
    assert agg["f1"] == pytest.approx((0.8 + 1 / 3) / 2)
    assert agg["precision"] == pytest.approx((1 + 1 / 3) / 2) and agg["recall"] == pytest.approx(
        (2 / 3 + 1 / 3) / 2
    )


def det_records(n: int = 3) -> list[dict]:
    objects = [
        [{"label": "cat", "box": [10, 10, 40, 40]}, {"label": "dog", "box": [50, 20, 90, 90]}],
        [{"label": "dog", "box": [0, 0, 30, 60]}],
        [{"label": "cat", "box": [20, 30, 80, 70]}, {"label": "cat", "box": [5, 75, 25, 95]}],
    ]
    return [rec("detection", objects[i], categories=["cat", "dog", "bird"], crowd=[]) for i in range(n)]


def test_coco_perfect_predictions_score_one():
    records = det_records()
    completions = [render("detection", r["solution"], r["image_size"], REL, thinking=False) for r in records]
    agg, rows = metrics.detection(completions, records, frame=REL, thinking=False)
    for key in ("ap", "ap50", "ap75", "ar10", "ar", "ap_small", "ap_medium"):
        assert agg[key] == pytest.approx(1.0), key
    assert agg["ar1"] == pytest.approx((2 / 3 + 1) / 2)  # one detection per image: 2 of the 3 cats
    assert agg["ap_large"] != agg["ap_large"]  # NaN: no large object (COCOeval's -1)
    assert rows[0]["predictions"][0] == {"label": "cat", "box": [10.0, 10.0, 40.0, 40.0], "score": 1.0}


def test_coco_empty_predictions_score_zero():
    records = det_records()
    agg, rows = metrics.detection(["", "[]", "nothing"], records, frame=REL, thinking=False)
    assert agg["ap"] == 0.0 and agg["ap50"] == 0.0 and agg["ar"] == 0.0
    assert all(r["predictions"] == [] for r in rows)


def test_coco_hand_ranked_case():
    """Two images with one dog each; the first detection hits, the second misses. With tied scores COCOeval
    ranks them in input order: precision 1 up to recall 0.5, none beyond, so AP = 51/101 (101-point)."""
    records = [
        rec("detection", [{"label": "dog", "box": [0, 0, 50, 50]}], categories=["dog"]) for _ in range(2)
    ]
    hit = [{"label": "dog", "box": [0, 0, 50, 50], "score": 1.0}]
    miss = [{"label": "dog", "box": [60, 60, 90, 90], "score": 1.0}]
    agg = coco_eval(records, [hit, miss])
    assert agg["ap"] == agg["ap50"] == agg["ap75"] == pytest.approx(51 / 101)
    assert agg["ar"] == pytest.approx(0.5)
    bird = [{"label": "bird", "box": [60, 60, 90, 90], "score": 1.0}]  # not a category: counts nowhere
    assert coco_eval(records, [hit + bird, hit])["ap"] == pytest.approx(1.0)


def test_coco_crowd_regions_are_ignored():
    crowd = [{"label": "dog", "box": [50, 50, 100, 100]}]
    base = {"label": "dog", "box": [0, 0, 40, 40]}
    extra = {"label": "dog", "box": [55, 55, 95, 95], "score": 1.0}  # inside the crowd region, ranked first
    preds = [[extra, {**base, "score": 1.0}]]
    with_crowd = coco_eval([rec("detection", [base], categories=["dog"], crowd=crowd)], preds)
    without = coco_eval([rec("detection", [base], categories=["dog"], crowd=[])], preds)
    assert with_crowd["ap"] == pytest.approx(1.0) and without["ap"] == pytest.approx(0.5)


def random_detection_set(seed: int, n: int = 24) -> tuple[list[dict], list[list[dict]]]:
    """Records of 0-3 objects (3 classes, some crowd regions, a few records listing `categories`, so a
    resample's category set depends on its records) and predictions near and far from them, some labelled
    outside the classes, scores partly tied."""
    rng = np.random.default_rng(seed)
    labels = ["cat", "dog", "bird"]

    def box() -> list[float]:
        x, y = rng.uniform(0, 40, 2)
        return [float(x), float(y), float(x + rng.uniform(10, 60)), float(y + rng.uniform(10, 60))]

    records, predictions = [], []
    for i in range(n):
        objects = [{"label": str(rng.choice(labels)), "box": box()} for _ in range(rng.integers(0, 4))]
        crowd = [{"label": "dog", "box": box()}] if i % 7 == 3 else []
        preds = [
            {
                "label": str(rng.choice(labels + ["fox"])) if rng.random() < 0.3 else o["label"],
                "box": [v + rng.normal(0, 1.5) for v in o["box"]],
                "score": float(rng.choice([1.0, 0.5, rng.random()])),
            }
            for o in objects
            if rng.random() < 0.8
        ]
        stray = [{"label": str(rng.choice(labels)), "box": box(), "score": 1.0} for _ in range(i % 2)]
        listed = {"categories": [*labels, "eel"]} if i % 5 == 0 else {}  # some name every class, one unseen
        records.append({**rec("detection", objects), "crowd": crowd, **listed})
        predictions.append(preds + stray)
    return records, predictions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_images_resample_equals_coco_eval_on_the_resampled_records(seed):
    """The bootstrap's shortcut against the brute force: COCOeval re-run on the resampled records, duplicates
    and the resample's own category set included."""
    records, predictions = random_detection_set(seed)
    images = metrics.CocoImages(records, predictions)
    all_area = metrics.CocoImages(records, predictions, by_area=False)
    rng = np.random.default_rng(100 + seed)
    for idx in [np.arange(len(records)), *(rng.integers(0, len(records), k) for k in (len(records), 9, 2))]:
        brute = coco_eval([records[i] for i in idx], [predictions[i] for i in idx])
        for got, keys in ((images(idx), brute), (all_area(idx), [k for k in brute if k in ALL_AREA])):
            for key in keys:
                assert got[key] == pytest.approx(brute[key], abs=1e-12, nan_ok=True), (list(idx), key)
        assert math.isnan(all_area(idx)["ap_small"])


def test_detection_parsing_drops_unusable_boxes():
    records = det_records(1)
    text = json.dumps(
        [
            {"bbox_2d": [100, 100, 400, 400], "label": "cat"},  # fine
            {"bbox_2d": [900, 900, 500, 500], "label": "dog"},  # reversed
            {"bbox_2d": [100, 100, 400, 400]},  # no label
        ]
    )
    agg, rows = metrics.detection([text], records, frame=REL, thinking=False)
    assert rows[0]["n_invalid"] == 2 and len(rows[0]["predictions"]) == 1 and rows[0]["n_gt"] == 2
    assert agg["ap50"] == pytest.approx(0.5 * (1 + 0))  # cat found, dog missed (bird has no ground truth)
