"""Detection reward: predictions matched one-to-one to ground truth (soft F1, components, or the release).

Variants (option `variant`):
- soft_f1 (default): 2 * sum of matched IoU / (N + M), bounded [0, 1] like every other pr1 answer reward.
- components: a weighted sum of documented components on pr1's parse and matching (see `_components`).
- release: the released Perception-R1 reward (`pr1.rewards.release.detection`), max 3.
- t6_iou, t6_cls, t6_f1, t6_missing: the paper's Table 6 rows, built up on the released reward (format share
  0.25 in every row): IoU only; + class; + F1 (= release); + missing-object penalty (= release, penalty=true).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from pr1.coords import REL1000, quantise
from pr1.matching import MatcherName, iou_matrix, match
from pr1.parsing import Answer, parse_items
from pr1.rewards import dynamic, release
from pr1.rewards.format import well_formed
from pr1.rewards.iou import predicted, target_boxes
from pr1.rewards.registry import register

Variant = Literal["soft_f1", "components", "release", "t6_iou", "t6_cls", "t6_f1", "t6_missing"]
# Table 6 rows as weights of the released reward (format share, F1, class accuracy, mean IoU, penalty).
RELEASE_PRESETS: dict[str, dict[str, Any]] = {
    "t6_iou": {"w_f1": 0.0, "w_cls": 0.0, "penalty": False},
    "t6_cls": {"w_f1": 0.0, "w_cls": 1.0, "penalty": False},
    "t6_f1": {"w_f1": 0.75, "w_cls": 1.0, "penalty": False},
    "t6_missing": {"w_f1": 0.75, "w_cls": 1.0, "penalty": True},
}


def _norm_label(label: Any) -> str:
    return " ".join(str(label).lower().split())


def _components(
    iou: np.ndarray, same: np.ndarray, rows: np.ndarray, cols: np.ndarray, kept: np.ndarray, n: int, m: int
) -> dict[str, float]:
    """Components over the k kept pairs of N predictions and M objects (N = M = 0 is perfect on each).

    mean_iou = mean IoU of kept pairs; f1 = 2k / (N + M) (F1 of precision k/N and recall k/M at the IoU
    threshold); recall = k / M; class_acc = share of kept pairs with the right label; missing = ((N - k) / N +
    (M - k) / M) / 2 (a term is 0 when its N or M is 0).
    """
    k = int(kept.sum())
    if n == m == 0:
        return {"mean_iou": 1.0, "f1": 1.0, "recall": 1.0, "class_acc": 1.0, "missing": 0.0}
    return {
        "mean_iou": float(iou[rows, cols][kept].mean()) if k else 0.0,
        "f1": 2 * k / (n + m),
        "recall": k / m if m else 0.0,
        "class_acc": float(same[rows, cols][kept].mean()) if k else 0.0,
        "missing": ((n - k) / n if n else 0.0) / 2 + ((m - k) / m if m else 0.0) / 2,
    }


def _release(
    answer: Answer,
    solution: Any,
    image_size: tuple[float, float],
    frame: Mapping[str, Any],
    threshold: float,
    weights: dict[str, Any],
) -> dict[str, float]:
    gt_labels = [str(o["label"]) for o in solution]
    gt = quantise(np.asarray([o["box"] for o in solution], dtype=float).reshape(-1, 4), image_size, frame)
    vocab = release.vocabulary(gt_labels)
    entries = release.parse_detection(answer.text, vocab)
    scored = release.detection(entries, gt, gt_labels, vocab, threshold=threshold, **weights)
    return {**scored, "answer": scored["total"]}


@register("detection")
def detection_reward(
    answer: Answer,
    solution: Any,
    image_size: tuple[float, float],
    *,
    variant: Variant = "soft_f1",
    matcher: MatcherName = "hungarian",
    labels: bool = True,
    iou_min: float = 0.0,
    w_iou: float = 1.0,
    w_f1: float = 0.0,
    w_recall: float = 0.0,
    w_cls: float = 0.0,
    w_missing: float = 0.0,
    penalty: bool = False,
    iou_schedule: Sequence[Sequence[float]] = (),
    step: int = 0,
    frame: Mapping[str, Any] = REL1000,
) -> dict[str, float]:
    """Detection answer reward; `variant` picks the formula (module docstring), the options below tune it.

    soft_f1: answer = 2 * sum_matched r_ij / (N + M), the F1 of soft precision sum r / N and soft recall
    sum r / M, r_ij = IoU(pred_i, gt_j), times 1[label_i == label_j] when `labels` (case/space-insensitive),
    0 below the IoU threshold; range [0, 1]; N = M = 0 scores 1.
    components: answer = w_iou * mean_iou + w_f1 * f1 + w_recall * recall + w_cls * class_acc - w_missing *
    missing (`_components`), pairs matched as in soft_f1 and kept when r > 0.
    Both use pr1's parse (every format in `pr1.parsing`; points and reversed or empty boxes count in N and
    match nothing), predictions clipped to the image, and `matcher` (hungarian maximises sum r; naive pairs
    in written order; greedy takes the best pair first). One-to-one matching pays a duplicated box once.
    release / t6_*: the released reward (`pr1.rewards.release.detection`): its JSON parse, DETR-cost
    Hungarian matching, pairs kept when IoU > the threshold (0.5), `penalty` for variant release.
    IoU threshold: `iou_min` (soft_f1, components) or 0.5 (release); `iou_schedule` (`pr1.rewards.dynamic`,
    V-Triune's dynamic IoU) replaces it with the scheduled threshold at global step `step`.
    """
    if variant == "release" or variant in RELEASE_PRESETS:
        weights = RELEASE_PRESETS.get(variant, {"penalty": penalty})
        out = _release(
            answer, solution, image_size, frame, dynamic.threshold(iou_schedule, step, 0.5), weights
        )
        return {**out, "format": float(well_formed("detection", answer))}
    threshold = dynamic.threshold(iou_schedule, step, iou_min)
    parsed = parse_items(answer.text, "box")
    items = parsed.items
    coords = [it.coords if len(it.coords) == 4 else (np.nan,) * 4 for it in items]
    pred = predicted(coords, image_size, frame)
    gt = target_boxes([o["box"] for o in solution], image_size, frame)
    n, m = len(pred), len(gt)
    iou = iou_matrix(pred, gt)
    ids = {label: i for i, label in enumerate({_norm_label(o["label"]) for o in solution})}
    gt_ids = np.asarray([ids[_norm_label(o["label"])] for o in solution], dtype=np.intp)
    pred_ids = np.asarray([ids.get(_norm_label(it.label), -1) for it in items], dtype=np.intp)
    same = pred_ids[:, None] == gt_ids[None, :]
    reward = iou * same if labels else iou
    reward = np.where(reward >= threshold, reward, 0.0)
    rows, cols = match(reward, matcher)
    kept = reward[rows, cols] > 0
    parts = _components(iou, same, rows, cols, kept, n, m)
    if variant == "soft_f1":
        value = float(2 * reward[rows, cols].sum() / (n + m)) if n + m else 1.0
    else:
        value = (
            w_iou * parts["mean_iou"]
            + w_f1 * parts["f1"]
            + w_recall * parts["recall"]
            + w_cls * parts["class_acc"]
            - w_missing * parts["missing"]
        )
    return {
        "format": float(well_formed("detection", answer, parsed)),
        "n_pred": float(n),
        "n_gt": float(m),
        "n_matched": float(kept.sum()),
        **parts,
        "answer": value,
        "total": value,
    }
