"""Synthetic datasets written in the real on-disk formats, so tests and the default run use the real loaders.

- grounding: RefCOCO JSONL (or, with layout="refs", the refs pickle + instances.json layout);
- counting: PixMo-Count JSONL with points;
- ocr: page-OCR JSONL (image + text), text rendered with Pillow's bundled font (or any TTF path);
- detection: a COCO instances JSON.
Deterministic for a seed: the same (task, n, seed, knobs) always gives the same bytes. Images default to
112x112 pixels (OCR: 224x56, the same pixel count) so the tiny model's processor (max_pixels 112*112) never
resizes them. Knobs set the difficulty: object count, size, distractors, clutter.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pr1.data.coco import load_coco
from pr1.data.pageocr import load_pageocr
from pr1.data.pixmo import load_pixmo
from pr1.data.refcoco import load_jsonl, load_refcoco

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 200, 20),
    "purple": (140, 50, 170),
    "orange": (240, 130, 20),
}
SHAPES = ("rectangle", "ellipse", "triangle")
CLUTTER_GRAY = (190, 190, 190)
MAX_TRIES = 10_000  # placement attempts per image before a knob combination is declared impossible
# Short, common words: OCR lines stay within a 224-pixel-wide image at the default font size.
_WORD_TEXT = (
    "apple river stone green light house paper water seven quick brown table chair music piano cloud "
    "north south bread honey smile train plane ocean field tiger zebra lemon mango grape salt sugar "
    "night dream storm winter summer spring market garden bridge window door forest island valley "
    "silver golden orange purple yellow little happy brave quiet simple open close start over under "
    "above below left right"
)
WORDS = tuple(_WORD_TEXT.split())


def _check_names(names: Sequence[str], valid: Sequence[str], what: str) -> None:
    for name in names:
        if name not in valid:
            raise ValueError(f"unknown {what} {name!r}; valid: {sorted(valid)}")


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


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int, k: int) -> None:
    """k light-grey line segments: background structure that is not an object (drawn before objects)."""
    for _ in range(k):
        xs, ys = rng.integers(0, width, 2), rng.integers(0, height, 2)
        draw.line([(int(xs[0]), int(ys[0])), (int(xs[1]), int(ys[1]))], fill=CLUTTER_GRAY, width=1)


def _random_box(rng: np.random.Generator, size: int, min_frac: float, max_frac: float) -> list[int]:
    w = int(rng.integers(int(size * min_frac), int(size * max_frac) + 1))
    h = int(rng.integers(int(size * min_frac), int(size * max_frac) + 1))
    x1 = int(rng.integers(0, size - w + 1))
    y1 = int(rng.integers(0, size - h + 1))
    return [x1, y1, x1 + w, y1 + h]


def _disjoint(box: list[int], taken: list[list[int]], gap: int = 1) -> bool:
    return all(
        box[2] + gap <= t[0] or t[2] + gap <= box[0] or box[3] + gap <= t[1] or t[3] + gap <= box[1]
        for t in taken
    )


def _place(rng: np.random.Generator, size: int, w: int, h: int, taken: list[list[int]]) -> list[int] | None:
    """A w x h box inside the image not touching `taken`, or None after a bounded number of tries."""
    for _ in range(100):
        x1, y1 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        box = [x1, y1, x1 + w, y1 + h]
        if _disjoint(box, taken):
            return box
    return None


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _relational_scene(
    rng: np.random.Generator,
    combos: list[tuple[str, str]],
    size: int,
    lo: int,
    hi: int,
    n_distractors: int,
) -> tuple[list[tuple[tuple[str, str], list[int]]], str]:
    """Target, its same-kind twin of clearly different size, an anchor and distractors, none overlapping.

    The size word tells the target from its twin (areas differ at least 2.25x); the relation to the anchor
    is read off the geometry, so every expression is true and refers to exactly one object.
    """
    small_hi = min((lo + hi) // 2, int(hi / 1.5))
    for _ in range(MAX_TRIES):
        order = rng.permutation(len(combos))
        target, anchor = combos[order[0]], combos[order[1]]
        others = [combos[k] for k in order[2:]]
        small = int(rng.integers(lo, small_hi + 1))
        large = int(rng.integers(math.ceil(1.5 * small), hi + 1))
        target_small = bool(rng.random() < 0.5)
        sides = [small, large] if target_small else [large, small]
        sides.append(int(rng.integers(lo, small_hi + 1)))
        kinds = [target, target, anchor]
        for k in range(min(n_distractors, len(others))):
            sides.append(int(rng.integers(lo, small_hi + 1)))
            kinds.append(others[k])
        boxes: list[list[int]] = []
        for side in sides:
            box = _place(rng, size, side, side, boxes)
            if box is None:
                break
            boxes.append(box)
        if len(boxes) < len(sides):
            continue
        (tx1, ty1, tx2, ty2), (ax1, ay1, ax2, ay2) = boxes[0], boxes[2]
        dx, dy = (tx1 + tx2 - ax1 - ax2) / 2, (ty1 + ty2 - ay1 - ay2) / 2
        if abs(dx) >= abs(dy):
            relation = "left of" if dx < 0 else "right of"
        else:
            relation = "above" if dy < 0 else "below"
        size_word = "small" if target_small else "large"
        expression = f"{size_word} {target[0]} {target[1]} {relation} the {anchor[0]} {anchor[1]}"
        return list(zip(kinds, boxes, strict=True)), expression
    raise ValueError("cannot place a relational scene: lower n_distractors or max_frac")


def make_grounding(
    out: str | Path,
    n: int,
    seed: int,
    size: int = 112,
    shapes: Sequence[str] = ("rectangle",),
    colors: Sequence[str] = ("red",),
    n_distractors: int = 0,
    min_frac: float = 0.15,
    max_frac: float = 0.6,
    relations: bool = False,
    layout: str = "jsonl",
) -> Path:
    """Shapes on white with a referring expression.

    Plain ("red rectangle"): distractors differ in colour/shape and may overlap; the target is drawn last,
    fully visible. relations=True: "small red ellipse left of the blue rectangle" — a same-kind twin of
    another size makes the size word necessary, and the relation to an anchor object is true by
    construction. layout: "jsonl" (annotations.jsonl) or "refs" (refs(unc).p + instances.json).
    """
    _check_names(colors, list(COLORS), "colour")
    _check_names(shapes, SHAPES, "shape")
    if layout not in ("jsonl", "refs"):
        raise ValueError(f"layout must be 'jsonl' or 'refs', got {layout!r}")
    combos = [(c, s) for c in colors for s in shapes]
    if (n_distractors or relations) and len(combos) < 2:
        raise ValueError("distractors/relations need at least two colour/shape combinations")
    lo, hi = int(size * min_frac), int(size * max_frac)
    if relations and (lo < 2 or math.ceil(1.5 * lo) > hi):
        raise ValueError("relations need 2 <= size*min_frac and 1.5*size*min_frac <= size*max_frac")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        img = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(img)
        if relations:
            objects, expression = _relational_scene(rng, combos, size, lo, hi, n_distractors)
        else:
            picks = rng.permutation(len(combos))[: 1 + min(n_distractors, len(combos) - 1)]
            objects = [(combos[k], _random_box(rng, size, min_frac, max_frac)) for k in picks]
            expression = f"{objects[0][0][0]} {objects[0][0][1]}"
        for (color, shape), box in objects[::-1]:  # the target is drawn last, fully visible
            _draw(draw, shape, box, COLORS[color])
        name = f"images/{i:06d}.png"
        img.save(out / name)
        lines.append(
            {
                "id": f"syn-grounding-{seed}-{i}",
                "image": name,
                "expression": expression,
                "bbox": objects[0][1],
                "width": size,
                "height": size,
                "objects": objects,
            }
        )
    if layout == "refs":
        return _write_refs(out, lines, shapes)
    for row in lines:
        del row["objects"]
    return _write_jsonl(out / "annotations.jsonl", lines)


def _write_refs(out: Path, lines: list[dict], shapes: Sequence[str]) -> Path:
    """The `refer` toolkit layout: every object is an instance annotation, the target is referred to."""
    cat_ids = {s: k + 1 for k, s in enumerate(shapes)}
    images, annotations, refs = [], [], []
    for i, row in enumerate(lines):
        images.append(
            {"id": i + 1, "file_name": row["image"], "width": row["width"], "height": row["height"]}
        )
        for k, ((_, shape), (x1, y1, x2, y2)) in enumerate(row["objects"]):
            ann_id = len(annotations) + 1
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": i + 1,
                    "category_id": cat_ids[shape],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
            if k == 0:
                target = (ann_id, cat_ids[shape])
        sentence = {"sent_id": i, "sent": row["expression"], "raw": row["expression"]}
        sentence["tokens"] = row["expression"].split()
        refs.append(
            {
                "ref_id": i,
                "ann_id": target[0],
                "image_id": i + 1,
                "category_id": target[1],
                "split": "train",
                "file_name": row["image"],
                "sent_ids": [i],
                "sentences": [sentence],
            }
        )
    categories = [{"id": k, "name": s, "supercategory": "shape"} for s, k in cat_ids.items()]
    instances = {"images": images, "annotations": annotations, "categories": categories}
    (out / "instances.json").write_text(json.dumps(instances))
    (out / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return out / "refs(unc).p"


def make_counting(
    out: str | Path,
    n: int,
    seed: int,
    size: int = 112,
    shapes: Sequence[str] = ("ellipse",),
    colors: Sequence[str] = ("red",),
    min_count: int = 1,
    max_count: int = 6,
    min_side: int = 8,
    max_side: int = 14,
    distractors: int = 0,
    clutter: int = 0,
) -> Path:
    """Objects to count (points at their centres, PixMo-Count JSONL); distractors are objects of another
    colour/shape that must not be counted; clutter draws background lines."""
    _check_names(colors, list(COLORS), "colour")
    _check_names(shapes, SHAPES, "shape")
    combos = [(c, s) for c in colors for s in shapes]
    if distractors and len(combos) < 2:
        raise ValueError("distractors need at least two colour/shape combinations")
    if not 0 <= min_count <= max_count or not 2 <= min_side <= max_side <= size:
        raise ValueError("need 0 <= min_count <= max_count and 2 <= min_side <= max_side <= size")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        for _ in range(MAX_TRIES):
            target = combos[int(rng.integers(len(combos)))]
            count = int(rng.integers(min_count, max_count + 1))
            others = [c for c in combos if c != target]
            kinds = [target] * count + [others[int(rng.integers(len(others)))] for _ in range(distractors)]
            boxes: list[list[int]] = []
            for _kind in kinds:
                side = int(rng.integers(min_side, max_side + 1))
                box = _place(rng, size, side, side, boxes)
                if box is None:
                    break
                boxes.append(box)
            if len(boxes) == len(kinds):
                break
        else:
            raise ValueError("cannot place the objects: lower max_count, distractors or max_side")
        img = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(img)
        _clutter(draw, rng, size, size, clutter)
        for (color, shape), box in zip(kinds, boxes, strict=True):
            _draw(draw, shape, box, COLORS[color])
        name = f"images/{i:06d}.png"
        img.save(out / name)
        points = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes[:count]]
        lines.append(
            {
                "id": f"syn-counting-{seed}-{i}",
                "image": name,
                "image_sha256": hashlib.sha256((out / name).read_bytes()).hexdigest(),
                "label": f"{target[0]} {target[1]}s",
                "count": count,
                "points": {"x": [p[0] for p in points], "y": [p[1] for p in points]},
            }
        )
    return _write_jsonl(out / "annotations.jsonl", lines)


def make_ocr(
    out: str | Path,
    n: int,
    seed: int,
    width: int = 224,
    height: int = 56,
    min_words: int = 1,
    max_words: int = 3,
    lines: int = 1,
    font_size: int = 14,
    font: str | None = None,
    clutter: int = 0,
    words: Sequence[str] | None = None,
) -> Path:
    """Lines of common words rendered in black on white (page-OCR JSONL: image + text, lines joined by \\n).

    words: the vocabulary lines are drawn from, a subset of WORDS (the tiny tokenizer's whole-token words),
    None for all of them; fewer words make reading easier, the synthetic knob for an OCR task a small model
    can learn.

    font: a TrueType file (e.g. /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf); default Pillow's bundled
    font, so the data needs nothing outside the Python environment. Words that would overflow the width are
    dropped from the end of the line, so the text always shows in full.
    """
    words = WORDS if words is None else words
    _check_names(words, WORDS, "word")
    if not words:
        raise ValueError("words must name at least one word")
    face = ImageFont.truetype(font, font_size) if font else ImageFont.load_default(size=font_size)
    line_h = font_size + 4
    if not 1 <= min_words <= max_words or lines < 1 or lines * line_h + 4 > height:
        raise ValueError(
            f"need 1 <= min_words <= max_words and {lines} line(s) of {line_h}px within {height}px"
        )
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        text_lines = []
        for _ in range(int(rng.integers(1, lines + 1))):
            line = [
                words[int(k)]
                for k in rng.integers(0, len(words), int(rng.integers(min_words, max_words + 1)))
            ]
            while len(line) > 1 and face.getlength(" ".join(line)) > width - 8:
                line.pop()
            text_lines.append(" ".join(line))
        img = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(img)
        _clutter(draw, rng, width, height, clutter)
        top = int(rng.integers(2, height - len(text_lines) * line_h + 1))
        for k, line in enumerate(text_lines):
            left = int(rng.integers(2, max(3, width - int(face.getlength(line)) - 2)))
            draw.text((left, top + k * line_h), line, fill="black", font=face)
        name = f"images/{i:06d}.png"
        img.save(out / name)
        rows.append({"id": f"syn-ocr-{seed}-{i}", "image": name, "text": "\n".join(text_lines)})
    return _write_jsonl(out / "annotations.jsonl", rows)


def make_detection(
    out: str | Path,
    n: int,
    seed: int,
    size: int = 112,
    classes: Sequence[str] = SHAPES,
    colors: Sequence[str] = tuple(COLORS),
    min_objects: int = 1,
    max_objects: int = 4,
    min_frac: float = 0.12,
    max_frac: float = 0.35,
    clutter: int = 0,
) -> Path:
    """Scenes of k non-overlapping objects whose class is their shape (any colour), as COCO instances JSON.

    `area` is the box area (there are no masks). Category ids follow `classes`' order from 1.
    """
    _check_names(classes, SHAPES, "class")
    _check_names(colors, list(COLORS), "colour")
    lo, hi = max(2, int(size * min_frac)), int(size * max_frac)
    if not 1 <= min_objects <= max_objects or not lo <= hi:
        raise ValueError("need 1 <= min_objects <= max_objects and min_frac <= max_frac")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(n):
        for _ in range(MAX_TRIES):
            k = int(rng.integers(min_objects, max_objects + 1))
            boxes: list[list[int]] = []
            for _obj in range(k):
                w, h = (int(v) for v in rng.integers(lo, hi + 1, 2))
                box = _place(rng, size, w, h, boxes)
                if box is None:
                    break
                boxes.append(box)
            if len(boxes) == k:
                break
        else:
            raise ValueError("cannot place the objects: lower max_objects or max_frac")
        kinds = [(int(rng.integers(len(classes))), colors[int(rng.integers(len(colors)))]) for _ in boxes]
        img = Image.new("RGB", (size, size), "white")
        draw = ImageDraw.Draw(img)
        _clutter(draw, rng, size, size, clutter)
        for (cls, color), box in zip(kinds, boxes, strict=True):
            _draw(draw, classes[cls], box, COLORS[color])
        name = f"images/{i:06d}.png"
        img.save(out / name)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for (cls, _color), (x1, y1, x2, y2) in zip(kinds, boxes, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": c, "supercategory": "shape"} for k, c in enumerate(classes)]
    path = out / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _load_grounding(folder: Path, on_error: str) -> list[dict]:
    jsonl = folder / "annotations.jsonl"
    if jsonl.is_file():
        return load_jsonl(jsonl, on_error=on_error)
    return load_refcoco(folder, images=folder, split=None, on_error=on_error)


MAKERS: dict[str, Callable[..., Path]] = {
    "grounding": make_grounding,
    "counting": make_counting,
    "ocr": make_ocr,
    "detection": make_detection,
}
LOADERS: dict[str, Callable[[Path, str], list[dict]]] = {
    "grounding": _load_grounding,
    "counting": lambda folder, on_error: load_pixmo(folder / "annotations.jsonl", on_error=on_error),
    "ocr": lambda folder, on_error: load_pageocr(folder / "annotations.jsonl", on_error=on_error),
    "detection": lambda folder, on_error: load_coco(
        folder / "instances.json", folder, on_error=on_error, keep_empty=True
    ),
}


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
) -> list[dict]:
    """Records of a synthetic dataset, generated on first use (atomically: a killed build leaves nothing).

    The folder is renamed into place only once complete, so its existence means the dataset is whole; when
    two processes build the same one, the first rename wins and the other discards its copy.
    """
    knobs = dict(knobs or {})
    target = dataset_dir(root, task, n, seed, knobs)
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            make(task, tmp, n=n, seed=seed, **knobs)
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.is_dir():
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return LOADERS[task](target, on_error)
