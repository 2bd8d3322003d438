"""Synthetic datasets written in the real on-disk formats, so tests and the default run use the real loaders.

Deterministic for a seed: the same (task, n, seed, knobs) always gives the same images and annotations.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 200, 20),
    "purple": (140, 50, 170),
    "orange": (240, 130, 20),
}
SHAPES = ("rectangle", "ellipse", "triangle")


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: list[int], color: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    if shape == "rectangle":
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=color)
    elif shape == "ellipse":
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=color)
    elif shape == "triangle":
        draw.polygon([(x1, y2 - 1), ((x1 + x2) // 2, y1), (x2 - 1, y2 - 1)], fill=color)
    else:
        raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES}")


def _random_box(rng: np.random.Generator, size: int, min_frac: float, max_frac: float) -> list[int]:
    w = int(rng.integers(int(size * min_frac), int(size * max_frac) + 1))
    h = int(rng.integers(int(size * min_frac), int(size * max_frac) + 1))
    x1 = int(rng.integers(0, size - w + 1))
    y1 = int(rng.integers(0, size - h + 1))
    return [x1, y1, x1 + w, y1 + h]


def make_grounding(
    out: str | Path,
    n: int,
    seed: int,
    size: int = 112,
    shapes: list[str] | tuple[str, ...] = ("rectangle",),
    colors: list[str] | tuple[str, ...] = ("red",),
    n_distractors: int = 0,
    min_frac: float = 0.15,
    max_frac: float = 0.6,
) -> Path:
    """Shapes on white with a referring expression ("the red rectangle"); distractors differ in colour/shape."""
    for c in colors:
        if c not in COLORS:
            raise ValueError(f"unknown colour {c!r}; valid: {sorted(COLORS)}")
    combos = [(c, s) for c in colors for s in shapes]
    if n_distractors and len(combos) < 2:
        raise ValueError("distractors need at least two colour/shape combinations to stay unambiguous")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        picks = rng.permutation(len(combos))[: 1 + min(n_distractors, len(combos) - 1)]
        img = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(img)
        objects = [(combos[k], _random_box(rng, size, min_frac, max_frac)) for k in picks]
        for (color, shape), box in objects[::-1]:  # the target is drawn last, fully visible
            _draw(draw, shape, box, COLORS[color])
        (color, shape), box = objects[0]
        name = f"images/{i:06d}.png"
        img.save(out / name)
        lines.append(
            {
                "id": f"syn-grounding-{seed}-{i}",
                "image": name,
                "expression": f"{color} {shape}",
                "bbox": box,
                "width": size,
                "height": size,
            }
        )
    with (out / "annotations.jsonl").open("w") as f:
        for row in lines:
            f.write(json.dumps(row) + "\n")
    return out / "annotations.jsonl"


MAKERS = {"grounding": make_grounding}
LOADERS = {"grounding": "pr1.data.refcoco:load_jsonl"}


def dataset_dir(root: str | Path, task: str, n: int, seed: int, knobs: dict) -> Path:
    """Cache folder named by everything that determines the content."""
    key = json.dumps({"task": task, "n": n, "seed": seed, "knobs": knobs}, sort_keys=True)
    return Path(root) / f"{task}-n{n}-s{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def make(task: str, out: str | Path, n: int, seed: int, **knobs) -> Path:
    """Write a synthetic dataset for `task`; returns its annotation file."""
    if task not in MAKERS:
        raise KeyError(f"no synthetic generator for task {task!r}; valid: {sorted(MAKERS)}")
    return MAKERS[task](out, n=n, seed=seed, **knobs)


def load_or_make(
    task: str, n: int, seed: int, root: str | Path, on_error: str = "raise", knobs: dict | None = None
):
    """Records of a synthetic dataset, generated on first use (atomically: a killed build leaves nothing)."""
    import importlib

    knobs = dict(knobs or {})
    target = dataset_dir(root, task, n, seed, knobs)
    if not (target / "annotations.jsonl").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            make(task, tmp, n=n, seed=seed, **knobs)
            os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    module, fn = LOADERS[task].split(":")
    return getattr(importlib.import_module(module), fn)(target / "annotations.jsonl", on_error=on_error)
