"""Did training move a task's metric? Start vs end of a run on the same validation images, paired by image.

For a metric that is a mean over images (Acc@0.5, exact-count accuracy, word F1) the per-image values of the
two evaluations are paired and the mean difference gets Student's t-interval (`pr1.stats.paired_diff_ci`).
COCO AP is not a mean over images, so its difference gets a paired bootstrap over images instead (the same
resampled images score both evaluations; scipy.stats.bootstrap, percentile interval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from pr1.metrics import AREA_STATS, CocoImages
from pr1.stats import LEVEL, Interval, paired_diff_ci
from pr1.tasks.base import Task

BOOTSTRAP_RESAMPLES = 499


def _ap_diff_ci(
    records: Sequence[Mapping[str, Any]],
    start: Sequence[dict],
    end: Sequence[dict],
    metric: str,
    seed: int,
    resamples: int,
) -> tuple[float, float, Interval]:
    """AP(start), AP(end) and the paired bootstrap CI of their difference over the images (rows hold each
    image's predictions)."""
    recs = list(records)
    # Each side's images are matched once; a resample only re-accumulates them (CocoImages).
    by_area = metric in AREA_STATS
    s_images = CocoImages(recs, [row["predictions"] for row in start], by_area=by_area)
    e_images = CocoImages(recs, [row["predictions"] for row in end], by_area=by_area)
    idx = np.arange(len(recs))
    s_ap, e_ap = s_images(idx)[metric], e_images(idx)[metric]
    if len(recs) < 2:
        return s_ap, e_ap, Interval(e_ap - s_ap, np.nan, np.nan, len(recs))
    res = stats.bootstrap(
        (idx,),
        lambda i: e_images(i)[metric] - s_images(i)[metric],
        vectorized=False,
        n_resamples=resamples,
        confidence_level=LEVEL,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    return s_ap, e_ap, Interval(float(e_ap - s_ap), float(low), float(high), len(recs))


def improvement(
    task: Task,
    records: Sequence[Mapping[str, Any]],
    start: Sequence[dict],
    end: Sequence[dict],
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, dict[str, Any]]:
    """Per task (each task of a mixture), its primary metric at start and end and the paired change with its
    95% CI: `{"<task>/<metric>": {"start", "end", "diff", "lo", "hi", "n", "method"}}`.

    `start`/`end` are `task.evaluate`'s per-image rows for the same `records` in the same order.
    """
    if not len(records) == len(start) == len(end):
        raise ValueError(f"{len(records)} records but {len(start)} start and {len(end)} end rows")
    subtasks = getattr(task, "tasks", None) or {"": task}
    out = {}
    for name, sub in subtasks.items():
        idx = [i for i, r in enumerate(records) if not name or r.get("task") == name]
        if not idx:
            continue
        recs = [records[i] for i in idx]
        s_rows, e_rows = [start[i] for i in idx], [end[i] for i in idx]
        s_vals, e_vals = sub.image_values(s_rows, sub.metric), sub.image_values(e_rows, sub.metric)
        if s_vals is not None and e_vals is not None:
            ci, method = paired_diff_ci(e_vals, s_vals), "paired t over images"
            s_metric, e_metric = float(np.mean(s_vals)), float(np.mean(e_vals))
        else:
            s_metric, e_metric, ci = _ap_diff_ci(recs, s_rows, e_rows, sub.metric, seed, resamples)
            method = "paired bootstrap over images"
        key = f"{name}/{sub.metric}" if name else sub.metric
        out[key] = {
            "start": s_metric,
            "end": e_metric,
            "diff": ci.mean,
            "lo": ci.lo,
            "hi": ci.hi,
            "n": ci.n,
            "method": method,
        }
    return out
