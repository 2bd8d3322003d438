"""Pairwise rewards and one-to-one matchers, shared by detection (boxes) and counting (points).

A matcher takes an (N predictions x M ground truths) reward matrix and returns the matched index pairs as
`(rows, cols)` integer arrays of equal length min(N, M) (callers drop pairs whose reward is 0). One-to-one
matching is what stops a duplicated prediction from being paid twice.
- hungarian: the assignment maximising the total reward (scipy `linear_sum_assignment`); the paper's.
- naive: the i-th prediction with the i-th ground truth; the paper's "w/o reward matching" ablation.
- greedy: repeatedly take the largest remaining reward; a common cheap approximation, never above hungarian.
The released Perception-R1 detection reward instead matches on a DETR-style cost (`detr_cost`, minimised with
`min_cost`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

MatcherName = Literal["hungarian", "naive", "greedy"]
Pairs = tuple[np.ndarray, np.ndarray]


def _as(arr: np.ndarray | list, width: int) -> np.ndarray:
    return np.asarray(arr, dtype=float).reshape(-1, width)


def box_validity(boxes: np.ndarray | list) -> np.ndarray:
    """Finite boxes with x2 > x1 and y2 > y1 (reversed or empty boxes are invalid, never repaired)."""
    b = _as(boxes, 4)
    return np.isfinite(b).all(axis=1) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])


def iou_matrix(a: np.ndarray | list, b: np.ndarray | list) -> np.ndarray:
    """IoU of every box of `a` (N, 4) with every box of `b` (M, 4), xyxy; invalid boxes give 0."""
    a, b = _as(a, 4), _as(b, 4)
    va, vb = box_validity(a), box_validity(b)
    a, b = np.where(va[:, None], a, 0.0), np.where(vb[:, None], b, 0.0)
    with np.errstate(all="ignore"):  # overflow of absurd coordinates ends as 0 below
        iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
        ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
        inter = np.maximum(iw, 0.0, out=iw) * np.maximum(ih, 0.0, out=ih)
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        union = area_a[:, None] + area_b[None, :] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    iou = np.nan_to_num(iou, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    iou = np.minimum(iou, 1.0, out=iou)
    iou *= va[:, None] & vb[None, :]
    return iou


def giou_matrix(a: np.ndarray | list, b: np.ndarray | list) -> np.ndarray:
    """Generalised IoU (Rezatofighi et al. 2019) of every box of `a` with every box of `b`, xyxy.

    Defined for ordered boxes (x2 >= x1, y2 >= y1), empty ones included: IoU - (C - U) / C with C the area of
    the smallest enclosing box and U the union; a zero union or enclosing area contributes 0. Range [-1, 1].
    """
    a, b = _as(a, 4), _as(b, 4)
    with np.errstate(all="ignore"):
        inter_wh = np.clip(
            np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None
        )
        inter = inter_wh[..., 0] * inter_wh[..., 1]
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        union = area_a[:, None] + area_b[None, :] - inter
        hull_wh = np.clip(
            np.maximum(a[:, None, 2:], b[None, :, 2:]) - np.minimum(a[:, None, :2], b[None, :, :2]), 0, None
        )
        hull = hull_wh[..., 0] * hull_wh[..., 1]
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        spill = np.divide(hull - union, hull, out=np.zeros_like(hull), where=hull > 0)
    return iou - spill


def detr_cost(
    pred: np.ndarray | list,
    gt: np.ndarray | list,
    class_cost: np.ndarray,
    *,
    w_box: float = 5.0,
    w_class: float = 1.0,
    w_giou: float = 2.0,
) -> np.ndarray:
    """DETR matching cost (Carion et al. 2020): w_box * L1(cx,cy,w,h) + w_class * class_cost - w_giou * GIoU.

    Boxes are xyxy in whatever units the caller uses (the L1 term is not scale-free, so the units change the
    balance of the terms); `class_cost` is the (N, M) class term, lower = better. The defaults are DETR's and
    the released Perception-R1 reward's weights.
    """
    a, b = _as(pred, 4), _as(gt, 4)

    def cxcywh(x: np.ndarray) -> np.ndarray:
        return np.concatenate([(x[:, :2] + x[:, 2:]) / 2, x[:, 2:] - x[:, :2]], axis=1)

    l1 = np.abs(cxcywh(a)[:, None, :] - cxcywh(b)[None, :, :]).sum(axis=-1)
    return w_box * l1 + w_class * np.asarray(class_cost, dtype=float) - w_giou * giou_matrix(a, b)


def min_cost(cost: np.ndarray) -> Pairs:
    """Minimum-total-cost one-to-one assignment (scipy `linear_sum_assignment`); empty if a side is empty."""
    cost = np.asarray(cost, dtype=float)
    if cost.ndim != 2 or 0 in cost.shape:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty.copy()
    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.intp), cols.astype(np.intp)


def point_similarity(p: np.ndarray | list, q: np.ndarray | list, scale: float) -> np.ndarray:
    """max(0, 1 - |p_i - q_j| / scale) for every pair of points; non-finite points give 0."""
    p, q = _as(p, 2), _as(q, 2)
    with np.errstate(all="ignore"):
        dist = np.sqrt(((p[:, None, :] - q[None, :, :]) ** 2).sum(axis=-1))
    sim = np.clip(1.0 - dist / scale, 0.0, 1.0)
    return np.nan_to_num(sim, nan=0.0)


def hungarian(reward: np.ndarray) -> Pairs:
    """Maximum-total-reward one-to-one assignment."""
    rows, cols = linear_sum_assignment(reward, maximize=True)
    return rows.astype(np.intp), cols.astype(np.intp)


def naive(reward: np.ndarray) -> Pairs:
    """The i-th prediction with the i-th ground truth, in the order written."""
    k = np.arange(min(reward.shape), dtype=np.intp)
    return k, k.copy()


def greedy(reward: np.ndarray) -> Pairs:
    """Repeatedly match the largest remaining entry, removing its row and column."""
    r = np.array(reward, dtype=float)
    rows, cols = [], []
    for _ in range(min(r.shape)):
        i, j = np.unravel_index(np.argmax(r), r.shape)
        rows.append(i)
        cols.append(j)
        r[i, :] = -np.inf
        r[:, j] = -np.inf
    return np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)


MATCHERS: dict[str, Callable[[np.ndarray], Pairs]] = {
    "hungarian": hungarian,
    "naive": naive,
    "greedy": greedy,
}


def match(reward: np.ndarray, matcher: str) -> Pairs:
    """Match with the named matcher; empty pairs when either side is empty."""
    if matcher not in MATCHERS:
        raise ValueError(f"unknown matcher {matcher!r}; valid: {sorted(MATCHERS)}")
    reward = np.asarray(reward, dtype=float)
    if reward.ndim != 2 or 0 in reward.shape:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty.copy()
    return MATCHERS[matcher](reward)
