"""Detection reward throughput: completions scored per second, pr1 vs a plain-Python baseline, same run.

The baseline is what a straightforward reward would do: json.loads, a Python double loop for IoU (boxes
clipped to the image) with label gating, scipy's Hungarian on the list-of-lists matrix, and the same
soft-F1 aggregate (the script checks that both give the same scores). Run `python bench/bench_rewards.py`;
writes `results/bench/rewards.json`.
"""

from __future__ import annotations

import json
import platform
import random
import time
from pathlib import Path

from scipy.optimize import linear_sum_assignment

from pr1.rewards import REGISTRY

SIZE = (1000, 1000)  # pixels = rel1000 coordinates: ground truth needs no conversion in the baseline
LABELS = ["cat", "dog", "person", "car", "bus", "cup"]
BATCH = 16  # completions per call, a GRPO group


def scene(n: int, rng: random.Random) -> tuple[list[dict], list[str]]:
    """n ground-truth objects; BATCH completions of about n boxes (jittered, shuffled, some dropped/added)."""
    gt = []
    for _ in range(n):
        x, y = rng.randint(0, 900), rng.randint(0, 900)
        gt.append(
            {"label": rng.choice(LABELS), "box": [x, y, x + rng.randint(5, 100), y + rng.randint(5, 100)]}
        )
    completions = []
    for _ in range(BATCH):
        pred = [
            {"bbox_2d": [v + rng.randint(-5, 5) for v in o["box"]], "label": o["label"]}
            for o in gt
            if rng.random() > 0.1
        ]
        pred += [{"bbox_2d": [10, 10, 60, 60], "label": rng.choice(LABELS)} for _ in range(n // 10)]
        rng.shuffle(pred)
        completions.append(json.dumps(pred))
    return gt, completions


def baseline(completion: str, gt: list[dict]) -> float:
    """Plain-Python soft F1 with label-gated IoU and Hungarian matching."""
    try:
        pred = json.loads(completion)
    except json.JSONDecodeError:
        return 0.0
    reward = []
    for p in pred:
        row = []
        for g in gt:
            a, b = [min(max(v, 0), 1000) for v in p["bbox_2d"]], g["box"]  # clipped to the image
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            iou = inter / union if union > 0 and a[2] > a[0] and a[3] > a[1] else 0.0
            row.append(iou if p["label"] == g["label"] else 0.0)
        reward.append(row)
    rows, cols = linear_sum_assignment(reward, maximize=True)
    return 2 * sum(reward[i][j] for i, j in zip(rows, cols, strict=True)) / (len(pred) + len(gt))


def rate(fn, min_seconds: float = 1.0) -> float:
    """Completions per second of fn() (which scores BATCH completions), timed over >= min_seconds."""
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds:
        fn()
        calls += 1
    return calls * BATCH / elapsed


def main() -> None:
    rng = random.Random(0)
    results = []
    for n in (20, 100, 300):
        gt, completions = scene(n, rng)
        columns = {"solution": [gt] * BATCH, "image_size": [SIZE] * BATCH}
        ours = REGISTRY["detection"](completions, **columns)
        theirs = [baseline(c, gt) for c in completions]
        assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 1e-9, (ours, theirs)
        pr1_rate = rate(lambda c=completions, k=columns: REGISTRY["detection"](c, **k))
        base_rate = rate(lambda c=completions, g=gt: [baseline(x, g) for x in c])
        results.append(
            {
                "boxes_per_side": n,
                "pr1_completions_per_s": round(pr1_rate, 1),
                "baseline_completions_per_s": round(base_rate, 1),
                "speedup": round(pr1_rate / base_rate, 2),
                "pr1_ms_per_completion": round(1000 / pr1_rate, 3),
            }
        )
        print(
            f"{n:4d} boxes/side: pr1 {pr1_rate:9.1f}/s  baseline {base_rate:9.1f}/s  "
            f"ratio {pr1_rate / base_rate:5.2f}x  ({1000 / pr1_rate:.2f} ms per completion)"
        )
    out = Path(__file__).resolve().parents[1] / "results" / "bench" / "rewards.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "batch": BATCH}
    out.write_text(json.dumps({"meta": meta, "detection": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
