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

from pr1.metrics import coco_eval
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
) -> Interval:
    """Paired bootstrap CI of AP(end) - AP(start) over the images (rows hold each image's predictions)."""
    recs = list(records)

    def ap(rows: Sequence[dict], idx: np.ndarray) -> float:
        return coco_eval([recs[i] for i in idx], [rows[i]["predictions"] for i in idx])[metric]

    idx = np.arange(len(recs))
    diff = ap(end, idx) - ap(start, idx)
    if len(recs) < 2:
        return Interval(diff, np.nan, np.nan, len(recs))
    res = stats.bootstrap(
        (idx,),
        lambda i: ap(end, i.astype(int)) - ap(start, i.astype(int)),
        vectorized=False,
        n_resamples=resamples,
        confidence_level=LEVEL,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(
        float(diff), float(res.confidence_interval.low), float(res.confidence_interval.high), len(recs)
    )


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
            ci, method = (
                _ap_diff_ci(recs, s_rows, e_rows, sub.metric, seed, resamples),
                "paired bootstrap over images",
            )
            s_metric = coco_eval(recs, [r["predictions"] for r in s_rows])[sub.metric]
            e_metric = coco_eval(recs, [r["predictions"] for r in e_rows])[sub.metric]
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
