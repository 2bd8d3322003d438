"""Synthetic generators: deterministic bytes, real formats read by the real loaders, knobs that work."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pr1.data import synthetic
from pr1.data.__main__ import main as cli
from pr1.data.synthetic import COLORS, LOADERS, load_or_make, make

TASKS = ("grounding", "counting", "ocr", "detection")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_bytes(tmp_path, task):
    make(task, tmp_path / "a", n=5, seed=7)
    make(task, tmp_path / "b", n=5, seed=7)
    make(task, tmp_path / "c", n=5, seed=8)
    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert a == b and len(a) == 6  # 5 images + the annotation file
    assert a != c


@pytest.mark.parametrize("task", TASKS)
def test_real_loader_reads_it_and_images_fit_the_tiny_processor(tmp_path, task):
    records = load_or_make(task, n=4, seed=0, root=tmp_path)
    assert len(records) == 4 and all(r["task"] == task for r in records)
    for r in records:
        with Image.open(r["image"]) as im:
            assert list(im.size) == r["image_size"]
            assert im.size[0] * im.size[1] <= 112 * 112  # max_pixels of the tiny processor: never resized
    before = tree(tmp_path)
    assert load_or_make(task, n=4, seed=0, root=tmp_path) == records  # cached, not rebuilt
    assert tree(tmp_path) == before and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def pixel(record: dict, xy) -> tuple[int, int, int]:
    with Image.open(record["image"]) as im:
        return im.convert("RGB").getpixel((int(xy[0]), int(xy[1])))


def test_counting_knobs(tmp_path):
    knobs = {"colors": ["red", "blue"], "min_count": 2, "max_count": 5, "distractors": 3, "clutter": 4}
    records = load_or_make("counting", n=12, seed=1, root=tmp_path, knobs=knobs)
    for r in records:
        assert 2 <= r["count"] == len(r["solution"]) <= 5
        color = r["question"].split()[0]
        assert all(pixel(r, p) == COLORS[color] for p in r["solution"])  # each point sits on its object
        with Image.open(r["image"]) as im:
            rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
        other = [c for c in ("red", "blue") if c != color][0]
        assert (rgb == COLORS[other]).all(axis=1).any()  # distractors are drawn, and not counted


def test_detection_knobs(tmp_path):
    knobs = {"classes": ["rectangle", "ellipse"], "min_objects": 3, "max_objects": 3, "clutter": 2}
    records = load_or_make("detection", n=8, seed=2, root=tmp_path, knobs=knobs)
    for r in records:
        assert r["categories"] == ["rectangle", "ellipse"] and len(r["solution"]) == 3
        boxes = [o["box"] for o in r["solution"]]
        for a, b in itertools.combinations(boxes, 2):  # disjoint: every object fully visible
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        for box in boxes:
            assert pixel(r, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)) in COLORS.values()


def test_ocr_text_is_rendered(tmp_path):
    records = load_or_make(
        "ocr", n=6, seed=3, root=tmp_path, knobs={"lines": 2, "height": 56, "max_words": 2}
    )
    assert any("\n" in r["solution"] for r in records)
    for r in records:
        assert all(w in synthetic.WORDS for w in r["solution"].split())
        with Image.open(r["image"]) as im:
            assert (np.asarray(im.convert("L")) < 100).sum() > 20  # dark text pixels


def test_ocr_words_knob_limits_the_vocabulary(tmp_path):
    words = ["apple", "river", "tiger"]
    records = load_or_make("ocr", n=20, seed=4, root=tmp_path, knobs={"words": words, "max_words": 2})
    seen = {w for r in records for w in r["solution"].split()}
    assert seen == set(words)  # drawn from the subset only, and all of it shows in 20 lines
    default = load_or_make("ocr", n=20, seed=4, root=tmp_path, knobs={"words": list(synthetic.WORDS)})
    assert [r["solution"] for r in default] == [
        r["solution"] for r in load_or_make("ocr", n=20, seed=4, root=tmp_path / "d")
    ]  # the full list is the default: the default data is unchanged
    unset = load_or_make("ocr", n=20, seed=4, root=tmp_path / "u", knobs={"words": None})
    assert [r["solution"] for r in unset] == [r["solution"] for r in default]  # domain=source's null
    with pytest.raises(ValueError, match="unknown word 'banana'"):
        make("ocr", tmp_path / "bad", n=1, seed=0, words=["apple", "banana"])
    with pytest.raises(ValueError, match="at least one word"):
        make("ocr", tmp_path / "none", n=1, seed=0, words=[])


def test_relational_expressions_are_true_and_unambiguous():
    rng = np.random.default_rng(0)
    combos = [(c, s) for c in ("red", "blue") for s in ("ellipse", "rectangle")]
    for _ in range(30):
        objects, expression = synthetic._relational_scene(rng, combos, 112, 16, 67, n_distractors=1)
        size_word, color, shape, *relation, _the, a_color, a_shape = expression.split()
        (target, t_box), (twin, w_box), (anchor, a_box) = objects[:3]
        assert target == twin == (color, shape) and anchor == (a_color, a_shape) != target
        assert all(kind not in (target, anchor) for kind, _ in objects[3:])
        area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        assert (
            area(t_box) / area(w_box) <= 1 / 2.25
            if size_word == "small"
            else area(t_box) / area(w_box) >= 2.25
        )
        cx, cy = (
            (t_box[0] + t_box[2] - a_box[0] - a_box[2]) / 2,
            (t_box[1] + t_box[3] - a_box[1] - a_box[3]) / 2,
        )
        truth = {"left of": cx < 0, "right of": cx > 0, "above": cy < 0, "below": cy > 0}
        assert truth[" ".join(relation)]
        for a, b in itertools.combinations([box for _, box in objects], 2):
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_cli(tmp_path, capsys):
    cli(["make", "counting", "--out", str(tmp_path / "c"), "--n", "3", "--seed", "1", "--max_count", "2"])
    assert "wrote 3 counting records" in capsys.readouterr().out
    records = LOADERS["counting"](tmp_path / "c", "raise")
    assert all(1 <= r["count"] <= 2 for r in records)
    knobs = ["--layout", "refs", "--relations", "true", "--colors", "red,blue"]
    cli(["make", "grounding", "--out", str(tmp_path / "g"), "--n", "2", *knobs])
    assert (tmp_path / "g" / "refs(unc).p").is_file() and (tmp_path / "g" / "instances.json").is_file()
    with pytest.raises(SystemExit, match="--max_count"):
        cli(["make", "counting", "--out", str(tmp_path / "x"), "--n", "1", "--max_cont", "3"])
    with pytest.raises(ValueError, match="unknown colour"):
        cli(["make", "detection", "--out", str(tmp_path / "y"), "--n", "1", "--colors", "teal"])
