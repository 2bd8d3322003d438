"""Real-format loaders: what they read, and that every bad record names its file, record and field."""

from __future__ import annotations

import json
import logging
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
from PIL import Image

from pr1.data.coco import load_coco
from pr1.data.pageocr import load_pageocr
from pr1.data.pixmo import load_pixmo
from pr1.data.records import RecordError
from pr1.data.refcoco import load_jsonl, load_refcoco
from pr1.data.synthetic import make_grounding

BAD_BYTES = b"caf\xe9"  # Latin-1, not UTF-8


def image(path: Path, size: tuple[int, int] = (40, 30)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, "white").save(path)
    return path.name


def write_json(path: Path, obj: object, replace: tuple[bytes, bytes] | None = None) -> Path:
    """JSON file; `replace` swaps a placeholder for raw bytes (to plant non-UTF-8 text)."""
    data = json.dumps(obj).encode()
    path.write_bytes(data.replace(*replace) if replace else data)
    return path


def assert_names(err: pytest.ExceptionInfo, file: str, record: object, field: str) -> None:
    e = err.value
    assert Path(e.file).name == file and str(e.record) == str(record) and e.field == field, str(e)
    assert file in str(e) and str(record) in str(e) and field in str(e)


def skipped(caplog, n: int, kept: int) -> bool:
    return any(f"skipped {n} bad record(s), kept {kept}" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------ RefCOCO
def refcoco_folder(tmp_path: Path, sent: str = "left dog", **ann_overrides) -> Path:
    folder = tmp_path / "refcoco"
    folder.mkdir()
    image(tmp_path / "train2014" / "a.jpg")
    image(tmp_path / "train2014" / "b.jpg")
    instances = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 20], **ann_overrides},
            {"id": 11, "image_id": 2, "category_id": 1, "bbox": [0, 0, 40, 30]},
        ],
        "categories": [{"id": 1, "name": "dog"}],
    }
    write_json(folder / "instances.json", instances)
    sentences = [{"sent_id": 0, "sent": sent}, {"sent_id": 1, "sent": "dog on the left"}]
    refs = [
        {"ref_id": 0, "ann_id": 10, "image_id": 1, "split": "train", "sentences": sentences},
        {
            "ref_id": 1,
            "ann_id": 11,
            "image_id": 2,
            "split": "val",
            "sentences": [{"sent_id": 2, "sent": "dog"}],
        },
    ]
    (folder / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return folder


def test_refcoco_refs_layout(tmp_path):
    folder = refcoco_folder(tmp_path)
    train = load_refcoco(folder, images=tmp_path / "train2014", split="train")
    assert [r["id"] for r in train] == ["0:0", "0:1"]  # every sentence is a record
    assert train[0]["solution"] == [2.0, 3.0, 12.0, 23.0]  # xywh -> xyxy
    assert train[0]["question"] == "left dog" and train[0]["image_size"] == [40, 30]
    assert train[0]["image"].endswith("a.jpg") and train[0]["task"] == "grounding"
    val = load_refcoco(folder, images=tmp_path / "train2014", split="val")
    assert [r["solution"] for r in val] == [[0.0, 0.0, 40.0, 30.0]]
    assert len(load_refcoco(folder, images=tmp_path / "train2014", split=None, limit=2)) == 2
    with pytest.raises(ValueError, match="splits present"):
        load_refcoco(folder, images=tmp_path / "train2014", split="testA")


def test_refcoco_refs_json_and_jsonl_agree_with_generator(tmp_path):
    jsonl = make_grounding(tmp_path / "a", n=6, seed=3, colors=["red", "blue"], relations=True)
    refs = make_grounding(tmp_path / "b", n=6, seed=3, colors=["red", "blue"], relations=True, layout="refs")
    a = load_jsonl(jsonl)
    b = load_refcoco(refs.parent, images=refs.parent, split=None)
    strip = [({k: v for k, v in r.items() if k not in ("id", "image")}, Path(r["image"]).name) for r in a]
    assert strip == [
        ({k: v for k, v in r.items() if k not in ("id", "image")}, Path(r["image"]).name) for r in b
    ]


@pytest.mark.parametrize(
    "overrides, file, record, field",
    [
        ({"bbox": [30, 3, 20, 20]}, "instances.json", "annotation 10", "bbox"),  # outside the 40x30 image
        ({"bbox": [2, 3, -5, 20]}, "instances.json", "annotation 10", "bbox"),  # negative width
    ],
)
def test_refcoco_bad_boxes(tmp_path, overrides, file, record, field):
    folder = refcoco_folder(tmp_path, **overrides)
    with pytest.raises(RecordError) as err:
        load_refcoco(folder, images=tmp_path / "train2014", split="train")
    assert_names(err, file, record, field)


def test_refcoco_missing_image_and_skip_counts(tmp_path, caplog):
    folder = refcoco_folder(tmp_path)
    (tmp_path / "train2014" / "a.jpg").unlink()
    with pytest.raises(RecordError) as err:
        load_refcoco(folder, images=tmp_path / "train2014", split=None)
    assert_names(err, "instances.json", "image 1", "file_name")
    with caplog.at_level(logging.WARNING):
        kept = load_refcoco(folder, images=tmp_path / "train2014", split=None, on_error="skip")
    assert [r["id"] for r in kept] == ["1:2"] and skipped(caplog, 1, 1)


def test_refcoco_non_utf8_sentence(tmp_path):
    folder = refcoco_folder(tmp_path)
    refs = pickle.loads((folder / "refs(unc).p").read_bytes())
    refs[0]["sentences"][1]["sent"] = "XXXX"
    (folder / "refs(unc).p").unlink()
    write_json(folder / "refs(unc).json", refs, replace=(b"XXXX", BAD_BYTES))
    with pytest.raises(RecordError) as err:
        load_refcoco(folder, images=tmp_path / "train2014", split="train")
    assert_names(err, "refs(unc).json", "0 (ref_id 0)", "sentences[1].sent")
    assert "UTF-8" in str(err.value)


def test_refcoco_pickle_with_objects_is_refused(tmp_path):
    folder = refcoco_folder(tmp_path)
    (folder / "refs(unc).p").write_bytes(pickle.dumps([OrderedDict(ref_id=0)]))
    with pytest.raises(RecordError, match="refusing to load collections.OrderedDict"):
        load_refcoco(folder, images=tmp_path / "train2014")


def test_missing_paths_name_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"task\.train\.path"):
        load_refcoco(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"task\.train\.annotations"):
        load_coco(tmp_path / "instances.json", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"task\.train\.images"):
        load_pixmo(write_json(tmp_path / "p.jsonl", {}), images=tmp_path / "imgs")
    with pytest.raises(FileNotFoundError, match=r"task\.train\.path"):
        load_pageocr(tmp_path / "pages.jsonl")


def test_jsonl_grounding_errors(tmp_path, caplog):
    image(tmp_path / "a.png")
    good = {"image": "a.png", "expression": "cat", "bbox": [1, 1, 5, 5], "width": 40, "height": 30}
    lines = [
        json.dumps(good).encode(),
        json.dumps({**good, "bbox": [1, 1, 50, 5]}).encode(),
        json.dumps({**good, "expression": "XXXX"}).encode().replace(b"XXXX", BAD_BYTES),
        json.dumps({**good, "image": "missing.png"}).encode(),
        b"{not json",
    ]
    path = tmp_path / "refs.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = [(2, "bbox"), (3, "expression"), (4, "image"), (5, "<line>")]
    for lineno, field in expected:
        rows = [lines[0]] * (lineno - 1) + [lines[lineno - 1]]  # good lines, then the bad one
        path.write_bytes(b"\n".join(rows))
        with pytest.raises(RecordError) as err:
            load_jsonl(path)
        assert_names(err, "refs.jsonl", lineno, field)
    path.write_bytes(b"\n".join(lines))
    with caplog.at_level(logging.WARNING):
        assert len(load_jsonl(path, on_error="skip")) == 1
    assert skipped(caplog, 4, 1)


# --------------------------------------------------------------------------------------------------- COCO
def coco_files(tmp_path: Path, anns: list[dict], cat_name: str = "cat") -> Path:
    image(tmp_path / "val2017" / "1.jpg")
    image(tmp_path / "val2017" / "2.jpg")
    image(tmp_path / "val2017" / "3.jpg")
    data = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 40, "height": 30} for i in (1, 2, 3)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "dog"}, {"id": 7, "name": cat_name}],
    }
    return write_json(tmp_path / "instances.json", data, replace=(b"XXXX", BAD_BYTES))


GOOD_ANNS = [
    {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1.5, 2, 10, 5], "area": 30.0, "iscrowd": 0},
    {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 30], "area": 900.0, "iscrowd": 1},
    {"id": 3, "image_id": 2, "category_id": 1, "bbox": [20, 10, 20, 20.4], "area": 300.0, "iscrowd": 0},
]


def test_coco_records(tmp_path):
    ann = coco_files(tmp_path, GOOD_ANNS)
    recs = load_coco(ann, tmp_path / "val2017")
    assert [r["id"] for r in recs] == ["1", "2"]  # image 3 has no object: dropped for training
    first = recs[0]
    assert first["solution"] == [{"label": "cat", "box": [1.5, 2.0, 11.5, 7.0], "area": 30.0}]
    assert first["crowd"] == [{"label": "dog", "box": [0.0, 0.0, 40.0, 30.0], "area": 900.0}]
    assert first["categories"] == ["dog", "cat"] and first["question"] == "dog, cat"
    assert recs[1]["solution"][0]["box"] == [
        20.0,
        10.0,
        40.0,
        30.0,
    ]  # 0.4 px round-off past the border clipped
    assert [r["id"] for r in load_coco(ann, tmp_path / "val2017", keep_empty=True)] == ["1", "2", "3"]
    assert len(load_coco(ann, tmp_path / "val2017", keep_empty=True, limit=1)) == 1


@pytest.mark.parametrize(
    "bad, record, field",
    [
        ({"category_id": 99}, "annotation 3 (image 2)", "category_id"),  # unknown category
        ({"bbox": [35, 10, 20, 10]}, "annotation 3 (image 2)", "bbox"),  # outside the image
        ({"bbox": [5, 10, 20, -3]}, "annotation 3 (image 2)", "bbox"),  # negative height
        ({"image_id": 42}, "annotation 3", "image_id"),  # an image the file does not list
    ],
)
def test_coco_bad_annotation(tmp_path, caplog, bad, record, field):
    ann = coco_files(tmp_path, [*GOOD_ANNS[:2], {**GOOD_ANNS[2], **bad}])
    with pytest.raises(RecordError) as err:
        load_coco(ann, tmp_path / "val2017")
    assert_names(err, "instances.json", record, field)
    with caplog.at_level(logging.WARNING):
        kept = load_coco(ann, tmp_path / "val2017", on_error="skip")
    assert [r["id"] for r in kept] == ["1"] and skipped(caplog, 1, 1)


def test_coco_missing_image_and_non_utf8_category(tmp_path):
    ann = coco_files(tmp_path, GOOD_ANNS)
    (tmp_path / "val2017" / "2.jpg").unlink()
    with pytest.raises(RecordError) as err:
        load_coco(ann, tmp_path / "val2017")
    assert_names(err, "instances.json", "image 2", "file_name")
    ann = coco_files(tmp_path, GOOD_ANNS, cat_name="XXXX")
    with pytest.raises(RecordError) as err:
        load_coco(ann, tmp_path / "val2017")
    assert_names(err, "instances.json", "category 7", "name")


# ----------------------------------------------------------------------------------------------- PixMo
def pixmo_file(tmp_path: Path, rows: list[dict]) -> Path:
    images = tmp_path / "images"
    image(images / "x.png")
    image(images / ("ab" * 32 + ".jpg"))
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"".join(json.dumps(r).encode().replace(b"XXXX", BAD_BYTES) + b"\n" for r in rows))
    return path


def test_pixmo_layouts(tmp_path):
    rows = [
        {"image": "x.png", "label": "dogs", "count": 2, "points": {"x": [1, 39.5], "y": [2, 29]}},
        {"image_sha256": "ab" * 32, "label": "cats", "points": [{"x": 3, "y": 4}]},
        {"image": "x.png", "label": "cups", "points": [[5, 6], [7, 8], [9, 10]]},
    ]
    recs = load_pixmo(pixmo_file(tmp_path, rows), images=tmp_path / "images")
    assert [r["solution"] for r in recs] == [
        [[1.0, 2.0], [39.5, 29.0]],
        [[3.0, 4.0]],
        [[5, 6], [7, 8], [9, 10]],
    ]
    assert [r["count"] for r in recs] == [2, 1, 3] and recs[0]["question"] == "dogs"
    assert recs[1]["image"].endswith("ab" * 32 + ".jpg") and recs[0]["image_size"] == [40, 30]


def test_pixmo_eval_split_without_points(tmp_path):
    path = pixmo_file(tmp_path, [{"image": "x.png", "label": "dogs", "count": 4}])
    with pytest.raises(RecordError) as err:
        load_pixmo(path, images=tmp_path / "images")
    assert_names(err, "train.jsonl", 1, "points")
    (rec,) = load_pixmo(path, images=tmp_path / "images", require_points=False)
    assert rec["solution"] is None and rec["count"] == 4


@pytest.mark.parametrize(
    "row, field",
    [
        ({"image": "x.png", "label": "dogs", "points": [[1, 2], [41, 2]]}, "points[1]"),  # outside
        ({"image": "x.png", "label": "dogs", "count": 3, "points": [[1, 2]]}, "count"),  # count != points
        ({"image": "x.png", "label": "XXXX", "points": [[1, 2]]}, "label"),  # not UTF-8
        ({"image": "gone.png", "label": "dogs", "points": [[1, 2]]}, "image"),  # missing image
        ({"image_sha256": "cd" * 32, "label": "dogs", "points": []}, "image_sha256"),  # no such file
    ],
)
def test_pixmo_bad_rows(tmp_path, caplog, row, field):
    good = {"image": "x.png", "label": "dogs", "points": [[1, 2]]}
    path = pixmo_file(tmp_path, [good, row])
    with pytest.raises(RecordError) as err:
        load_pixmo(path, images=tmp_path / "images")
    assert_names(err, "train.jsonl", 2, field)
    with caplog.at_level(logging.WARNING):
        assert len(load_pixmo(path, images=tmp_path / "images", on_error="skip")) == 1
    assert skipped(caplog, 1, 1)


# ------------------------------------------------------------------------------------------------ PageOCR
def test_pageocr_layouts(tmp_path):
    image(tmp_path / "p1.png")
    jsonl = tmp_path / "pages.jsonl"
    jsonl.write_text(json.dumps({"image": "p1.png", "text": "Hello\nworld"}) + "\n")
    (rec,) = load_pageocr(jsonl)
    assert rec["solution"] == "Hello\nworld" and rec["task"] == "ocr" and rec["image_size"] == [40, 30]
    turns = [{"from": "human", "value": "<image>\nOCR:"}, {"from": "gpt", "value": "page text"}]
    conv = [{"image": "p1.png", "conversations": turns}]
    (rec,) = load_pageocr(write_json(tmp_path / "fox.json", conv))
    assert rec["solution"] == "page text" and rec["id"] == "fox:0"


@pytest.mark.parametrize(
    "row, record, field",
    [
        ({"image": "p1.png", "text": "XXXX"}, 1, "text"),
        ({"image": "p1.png", "text": "  "}, 1, "text"),
        ({"image": "nope.png", "text": "hi"}, 1, "image"),
        (
            {"image": "p1.png", "conversations": [{"from": "gpt", "value": "XXXX"}]},
            1,
            "conversations[0].value",
        ),
    ],
)
def test_pageocr_bad_pages(tmp_path, caplog, row, record, field):
    image(tmp_path / "p1.png")
    path = write_json(
        tmp_path / "pages.json", [{"image": "p1.png", "text": "ok"}, row], replace=(b"XXXX", BAD_BYTES)
    )
    with pytest.raises(RecordError) as err:
        load_pageocr(path)
    assert_names(err, "pages.json", record, field)
    with caplog.at_level(logging.WARNING):
        assert len(load_pageocr(path, on_error="skip")) == 1
    assert skipped(caplog, 1, 1)
