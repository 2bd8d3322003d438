"""Every supported distribution end to end on a sample built from its published schema: source box -> record
-> answer in the model's frame -> reward 1.0; plus detection errors, image checks, limits and skip reports."""

from __future__ import annotations

import json

import datasets
import pytest
from data_samples import (
    PIXMO_FEATURES,
    PR1_REL_BOX,
    REF_FILE,
    REF_SENT,
    REF_SIZE,
    REF_XYXY,
    image,
    jxu124_refcoco,
    lmms_lab_refcoco,
    pixmo_row,
    png_bytes,
    pr1_counting_eval_row,
    pr1_counting_row,
    pr1_detection_row,
    pr1_grounding_eval_row,
    pr1_grounding_row,
    vlm_r1_row,
    write_jsonl,
    write_parquet,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pr1.data import pr1_json
from pr1.data.__main__ import main
from pr1.data.formats import load
from pr1.data.grounding_rows import Context
from pr1.data.images import ImageTooLarge
from pr1.data.pixmo import url_file_name
from pr1.data.records import RecordError
from pr1.rewards import build
from tests.helpers import render

REL = {"kind": "rel1000"}
# REF_XYXY on 427x640 in rel1000, by hand: 103.93/427*1000 = 243.4 -> 243, 299.99/640*1000 = 468.7 -> 469,
# 238.15/427*1000 = 557.7 -> 558, 477.41/640*1000 = 745.95 -> 746.
REF_ANSWER = "<|box_start|>(243,469),(558,746)<|box_end|>"


def grounding_round_trip(rec: dict) -> None:
    assert rec["task"] == "grounding" and rec["image_size"] == list(REF_SIZE)
    assert rec["solution"] == pytest.approx(REF_XYXY)
    answer = render("grounding", rec["solution"], rec["image_size"], REL, thinking=False)
    assert answer == REF_ANSWER
    reward = build("iou", frame=REL, thinking=False)(
        [answer], solution=[rec["solution"]], image_size=[REF_SIZE]
    )
    assert reward == [1.0]


def test_lmms_lab_refcoco_parquet(tmp_path):
    """Schema: huggingface.co/datasets/lmms-lab/RefCOCO README (bbox is COCO xywh; image embedded)."""
    path = lmms_lab_refcoco(tmp_path)
    recs = load("grounding", path, image_cache=tmp_path / "cache")
    assert recs.format == "lmms-lab-refcoco" and len(recs) == 2  # one record per answer sentence
    assert [r["question"] for r in recs] == [REF_SENT, "lady in blue"]
    assert recs[0]["image"].startswith(str(tmp_path / "cache"))  # embedded bytes written once
    grounding_round_trip(recs[0])
    image(tmp_path / "train2014" / REF_FILE)  # with the COCO folder, its file is used instead
    again = load("grounding", path, images=tmp_path / "train2014", image_cache=tmp_path / "cache")
    assert again[0]["image"] == str(tmp_path / "train2014" / REF_FILE)


def test_jxu124_refcoco_parquet(tmp_path):
    """Schema: huggingface.co/datasets/jxu124/refcoco README (refs flattened; raw_anns: the COCO ann)."""
    recs = load("grounding", jxu124_refcoco(tmp_path), images=tmp_path)
    assert recs.format == "jxu124-refcoco" and [r["id"] for r in recs] == ["3:7", "3:8"]
    grounding_round_trip(recs[0])


@pytest.mark.parametrize("container", ["json", "jsonl"])
def test_vlm_r1_rec(tmp_path, container):
    """Row from github.com/om-ai-lab/VLM-R1/issues/11: solution = bbox_list with x2+1, y2+1 (= COCO x+w)."""
    image(tmp_path / "train2014" / REF_FILE)
    row = vlm_r1_row()
    path = tmp_path / f"refcoco_val.{container}"
    path.write_text(json.dumps([row])) if container == "json" else write_jsonl(path, [row])
    (rec,) = load("grounding", path, images=tmp_path)
    assert rec["question"] == REF_SENT
    grounding_round_trip(rec)
    bad = {**row, "normalized_solution": [100, 468, 557, 745]}
    path.write_text(json.dumps([bad]))
    with pytest.raises(RecordError, match="normalized_solution"):
        load("grounding", path, images=tmp_path, format="vlm-r1-rec")


def test_internvl_refcoco_jsonl(tmp_path):
    """Layout read by InternVL's refcoco eval (image, sent, bbox xyxy pixels, width, height)."""
    image(tmp_path / "coco" / "train2014" / REF_FILE)
    row = {
        "image": f"coco/train2014/{REF_FILE}",
        "sent": REF_SENT,
        "bbox": REF_XYXY,
        "width": 427,
        "height": 640,
    }
    (rec,) = load("grounding", write_jsonl(tmp_path / "refcoco_val.jsonl", [row]), images=tmp_path)
    grounding_round_trip(rec)


def test_pixmo_count_parquet_with_molmo_file_names(tmp_path):
    """Schema: huggingface.co/datasets/allenai/pixmo-count README (points in pixels, eval splits without
    points); file name = sha256(image_url), as Molmo's download_pixmo_urls writes it."""
    row = pixmo_row()
    image(tmp_path / "images" / url_file_name(row["image_url"]), (100, 50), fmt="JPEG")
    path = write_parquet(tmp_path / "train-00000-of-00001.parquet", [row], PIXMO_FEATURES)
    (rec,) = load("counting", path, images=tmp_path / "images")
    assert (
        rec["solution"] == [[10.5, 20.0], [30.0, 40.0]]
        and rec["count"] == 2
        and rec["image_size"] == [100, 50]
    )
    # rel1000 by hand: (10.5/100*1000, 20/50*1000) = (105, 400); (30/100*1000, 40/50*1000) = (300, 800).
    answer = render("counting", rec["solution"], rec["image_size"], REL, thinking=False, label="dogs")
    assert answer.endswith("<|box_start|>(105,400)<|box_end|><|box_start|>(300,800)<|box_end|>")
    reward = build("count", frame=REL, thinking=False)(
        [answer], solution=[rec["solution"]], image_size=[[100, 50]]
    )
    assert reward == [1.0]
    eval_row = {**row, "count": 4, "points": {"x": [], "y": []}}  # eval rows publish counts, empty points
    path = write_parquet(tmp_path / "validation.parquet", [eval_row], PIXMO_FEATURES)
    with pytest.raises(RecordError, match="points"):
        load("counting", path, images=tmp_path / "images")
    (rec,) = load("counting", path, images=tmp_path / "images", require_points=False)
    assert rec["solution"] is None and rec["count"] == 4


def test_pixmo_percent_units(tmp_path):
    image(tmp_path / "x.png", (200, 100))
    row = {"image": "x.png", "label": "cups", "points": {"x": [50.0], "y": [25.0]}}
    (rec,) = load("counting", write_jsonl(tmp_path / "p.jsonl", [row]), point_units="percent")
    assert rec["solution"] == [[100.0, 25.0]]


def test_unsupported_file_names_every_format_tried(tmp_path):
    path = write_jsonl(tmp_path / "mystery.jsonl", [{"img": "a.png", "caption": "x"}])
    with pytest.raises(RecordError) as err:
        load("grounding", path)
    msg = str(err.value)
    for name in (
        "lmms-lab-refcoco",
        "jxu124-refcoco",
        "vlm-r1-rec",
        "internvl-refcoco",
        "pr1-grounding-jsonl",
    ):
        assert f"{name}: missing" in msg
    assert "refer: not a folder" in msg and "Supported:" in msg and "pixmo-count [counting]" in msg
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(RecordError, match="not JSONL, JSON, parquet, arrow"):
        load("grounding", tmp_path / "notes.csv")


def internvl_file(tmp_path, rows):
    return write_jsonl(tmp_path / "refs.jsonl", rows)


def test_image_checks_and_skip_report(tmp_path):
    image(tmp_path / "ok.png", (40, 30))
    image(tmp_path / "big.png", (400, 300))
    (tmp_path / "text.png").write_text("Error: 404")  # a failed download kept under an image name
    (tmp_path / "empty.png").write_bytes(b"")
    good = {"image": "ok.png", "sent": "a", "bbox": [1, 1, 5, 5], "width": 40, "height": 30}
    rows = [
        good,
        {**good, "width": 30, "height": 40},  # declared size disagrees with the file
        {**good, "image": "text.png"},
        {**good, "image": "empty.png"},
        {**good, "image": "big.png", "width": 400, "height": 300},
        {**good, "image": "gone.png"},
    ]
    with pytest.raises(RecordError, match="declared 30x40 but the file is 40x30"):
        load("grounding", internvl_file(tmp_path, rows[:2]))
    with pytest.raises(RecordError, match="not a readable image"):
        load("grounding", internvl_file(tmp_path, rows[2:3]))
    with pytest.raises(ImageTooLarge, match="over the limit of 100000"):
        load("grounding", internvl_file(tmp_path, [rows[4]]), max_image_pixels=100_000)
    recs = load("grounding", internvl_file(tmp_path, rows), on_error="skip", max_image_pixels=100_000)
    assert len(recs) == 1
    report = recs.skip_report
    assert report["skipped"] == 5
    assert report["by_reason"] == {
        "image_size_mismatch": 1,
        "not_an_image": 2,
        "image_too_large": 1,
        "image_missing": 1,
    }
    assert len(report["examples"]) == 5 and "gone.png" in report["examples"][0]  # parse skips, then images


def test_limits(tmp_path):
    image(tmp_path / "ok.png", (40, 30))
    rows = [
        {"image": "ok.png", "sent": f"s{i}", "bbox": [1, 1, 5, 5], "width": 40, "height": 30}
        for i in range(6)
    ]
    path = internvl_file(tmp_path, rows)
    assert [r["question"] for r in load("grounding", path, n=2)] == ["s0", "s1"]
    assert [r["question"] for r in load("grounding", path, slice="2:5", n=2)] == ["s2", "s3"]
    assert [r["question"] for r in load("grounding", path, slice=[4, None])] == ["s4", "s5"]


def coco_file(tmp_path, images, anns, cats):
    for img in images:
        image(tmp_path / img["file_name"], (40, 30))
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


IMGS = [
    {"id": 1, "file_name": "1.jpg", "width": 40, "height": 30},
    {"id": 2, "file_name": "2.jpg", "width": 40, "height": 30},
]
ANN = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 5], "area": 50.0, "iscrowd": 0}
CATS = [{"id": 1, "name": "dog"}]


@pytest.mark.parametrize(
    "images, anns, cats, record, field",
    [
        (IMGS, [ANN], [*CATS, {"id": 1, "name": "cat"}], "category 1", "id"),  # never a silent rename
        ([*IMGS, {**IMGS[0], "file_name": "3.jpg"}], [ANN], CATS, "image 1", "id"),
        (IMGS, [{**ANN, "iscrowd": "no"}], CATS, "annotation 1 (image 1)", "iscrowd"),
        (IMGS, [{k: v for k, v in ANN.items() if k != "category_id"}], CATS, "annotation #0", "category_id"),
        (IMGS, [{k: v for k, v in ANN.items() if k != "id"}], CATS, "annotation #0", "id"),
    ],
)
def test_coco_sanity(tmp_path, images, anns, cats, record, field):
    path = coco_file(tmp_path, images, anns, cats)
    with pytest.raises(RecordError) as err:
        load("detection", path, images=tmp_path)
    assert str(err.value.record) == record and err.value.field == field, str(err.value)
    recs = load("detection", path, images=tmp_path, on_error="skip", keep_empty=True)
    assert recs.skip_report["skipped"] >= 1


def test_coco_round_trip(tmp_path):
    recs = load("detection", coco_file(tmp_path, IMGS, [ANN], CATS), images=tmp_path)
    assert recs.format == "coco" and recs[0]["solution"] == [
        {"label": "dog", "box": [1.0, 2.0, 11.0, 7.0], "area": 50.0}
    ]
    answer = render("detection", recs[0]["solution"], [40, 30], REL, thinking=False)
    # rel1000 by hand: 1/40 -> 25, 2/30 -> 67, 11/40 -> 275, 7/30 -> 233.
    assert json.loads(answer) == [{"bbox_2d": [25, 67, 275, 233], "label": "dog"}]
    reward = build("detection", frame=REL, thinking=False)(
        [answer], solution=[recs[0]["solution"]], image_size=[[40, 30]]
    )
    assert reward == [1.0]


def test_show_cli(tmp_path, capsys):
    image(tmp_path / "train2014" / REF_FILE)
    path = tmp_path / "refcoco_val.json"
    path.write_text(json.dumps([vlm_r1_row(), {**vlm_r1_row(), "image": "missing.jpg"}]))
    out = tmp_path / "preview.png"
    main(["show", "refcoco", str(path), "--images", str(tmp_path), "--json", "--out", str(out)])
    info = json.loads(capsys.readouterr().out)
    assert {"format", "n_records", "skipped", "first"} <= set(info)
    assert info["format"] == "vlm-r1-rec" and info["n_records"] == 1
    assert info["skipped"]["by_reason"] == {"image_missing": 1}
    assert info["first"]["image_size"] == [427, 640] and info["first"]["solution"] == pytest.approx(REF_XYXY)
    assert out.is_file() and out.stat().st_size > 0
    main(["show", "refcoco", str(path), "--images", str(tmp_path)])
    text = capsys.readouterr().out
    assert "format: vlm-r1-rec" in text and "records: 1" in text


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_caught_by_full_check(tmp_path, fmt):
    """A truncated file keeps its header, so only decoding the pixels (check_images=full) catches it."""
    whole = tmp_path / "whole.img"
    Image.effect_noise((64, 48), 60).convert("RGB").save(whole, format=fmt)  # noise: no tiny compressed file
    data = whole.read_bytes()
    (tmp_path / "cut.img").write_bytes(data[: len(data) // 2])
    good = {"image": "whole.img", "sent": "a", "bbox": [1, 1, 5, 5], "width": 64, "height": 48}
    path = internvl_file(tmp_path, [good, {**good, "image": "cut.img"}])
    assert len(load("grounding", path)) == 2  # the header check cannot see it
    with pytest.raises(RecordError, match="truncated or corrupt") as err:
        load("grounding", path, check_images="full")
    assert err.value.reason == "image_truncated" and "cut.img" in str(err.value)
    recs = load("grounding", path, check_images="full", on_error="skip")
    assert [r["image"] for r in recs] == [str(tmp_path / "whole.img")]
    assert recs.skip_report["by_reason"] == {"image_truncated": 1}
    with pytest.raises(ValueError, match="check_images must be one of"):
        load("grounding", path, check_images="deep")


def test_aspect_ratio_over_200_is_flagged(tmp_path):
    """Qwen2-VL's smart_resize raises for max(w, h) / min(w, h) > 200; 201x1 is over, 200x1 is not."""
    image(tmp_path / "strip.png", (201, 1))
    image(tmp_path / "edge.png", (200, 1))
    row = {"image": "strip.png", "sent": "a", "bbox": [1, 0, 5, 1], "width": 201, "height": 1}
    path = internvl_file(tmp_path, [row, {**row, "image": "edge.png", "width": 200}])
    with pytest.raises(RecordError, match="aspect ratio 201.0, over 200") as err:
        load("grounding", path)
    assert err.value.reason == "aspect_ratio"
    recs = load("grounding", path, on_error="skip")
    assert [r["image"] for r in recs] == [str(tmp_path / "edge.png")]
    assert recs.skip_report["by_reason"] == {"aspect_ratio": 1}


def pr1_round_trip(rec: dict) -> None:
    """A record read from a 0-1000 source box: back in 0-1000 it is the source, and scores 1.0."""
    # PR1_REL_BOX in pixels of 427x640, by hand: 243*0.427 = 103.761, 469*0.64 = 300.16, 558*0.427 = 238.266,
    # 746*0.64 = 477.44.
    assert rec["image_size"] == list(REF_SIZE)
    assert rec["solution"] == pytest.approx([103.761, 300.16, 238.266, 477.44])
    answer = render("grounding", rec["solution"], rec["image_size"], REL, thinking=False)
    assert answer == "<|box_start|>({},{}),({},{})<|box_end|>".format(*PR1_REL_BOX)
    reward = build("iou", frame=REL, thinking=False)(
        [answer], solution=[rec["solution"]], image_size=[REF_SIZE]
    )
    assert reward == [1.0]


@pytest.mark.parametrize("row", [pr1_grounding_row(), pr1_grounding_eval_row()], ids=["train", "eval"])
def test_pr1_grounding_json_list(tmp_path, row):
    """philipmit/PR1 src/open_r1/dataset.py reads a JSON list; rewards.py / eval/evaluate_grounding.py fix the
    0-1000 frame of `solution` (train) and `normalized_solution` (eval)."""
    image(tmp_path / "train2014" / REF_FILE)
    path = tmp_path / "refcoco_val.json"
    path.write_text(json.dumps([row]))
    recs = load("grounding", path, images=tmp_path)
    assert recs.format == "pr1-grounding" and recs[0]["question"] == REF_SENT
    assert load("grounding", path, images=tmp_path, format="pr1-grounding") == recs
    pr1_round_trip(recs[0])


def test_pr1_grounding_hub_parquet_and_bad_boxes(tmp_path):
    """linkangheng/refcoco_320k as a local parquet (image embedded); a box outside 0-1000 is an error."""
    row = {**pr1_grounding_row(), "image": {"bytes": png_bytes(REF_SIZE), "path": None}}
    features = datasets.Features(
        {"image": datasets.Image(), "problem": datasets.Value("string"), "solution": datasets.Value("string")}
    )
    path = write_parquet(tmp_path / "train-00000-of-00001.parquet", [row], features)
    (rec,) = load("grounding", path, image_cache=tmp_path / "cache")
    pr1_round_trip(rec)
    image(tmp_path / "train2014" / REF_FILE)
    path = tmp_path / "bad.json"
    for solution, problem in [("[103.9, 299.9, 1238.1, 477.4]", "0-1000"), ("__import__('os')", "literal")]:
        path.write_text(json.dumps([{**pr1_grounding_row(), "solution": solution}]))
        with pytest.raises(RecordError, match=problem) as err:
            load("grounding", path, images=tmp_path)
        assert err.value.field == "solution"


def test_pr1_counting_json_list_and_eval_jsonl(tmp_path):
    """philipmit/PR1 train_qwen2_2b_vl_counting.sh (--answer_key clicks) and rewards.py pr1_counting_reward
    (clicks vs centres of 0-1000 boxes); eval/evaluate_counting.py for the count-only JSONL."""
    image(tmp_path / "pixmo-count" / "dogs.jpg", (100, 50), fmt="JPEG")
    path = tmp_path / "pr1_counting_10k.json"
    path.write_text(json.dumps([pr1_counting_row()]))
    recs = load("counting", path, images=tmp_path)
    (rec,) = recs
    # clicks in pixels of 100x50, by hand: (105/1000*100, 400/1000*50) = (10.5, 20),
    # (300/1000*100, 800/1000*50) = (30, 40).
    assert recs.format == "pr1-counting" and rec["question"] == "dogs" and rec["count"] == 2
    assert rec["solution"] == [[10.5, 20.0], [30.0, 40.0]]
    answer = render("counting", rec["solution"], rec["image_size"], REL, thinking=False, label="dogs")
    assert answer.endswith("<|box_start|>(105,400)<|box_end|><|box_start|>(300,800)<|box_end|>")
    reward = build("count", frame=REL, thinking=False)(
        [answer], solution=[rec["solution"]], image_size=[[100, 50]]
    )
    assert reward == [1.0]
    path = write_jsonl(
        tmp_path / "pixmo_count_validation540_counting_problems_label.jsonl", [pr1_counting_eval_row()]
    )
    with pytest.raises(RecordError, match="require_points: false"):
        load("counting", path, images=tmp_path)
    recs = load("counting", path, images=tmp_path, require_points=False)
    assert recs.format == "pr1-counting-eval"
    assert recs[0]["solution"] is None and recs[0]["count"] == 4 and recs[0]["image_size"] == [100, 50]


def test_pr1_detection_json_list(tmp_path):
    """philipmit/PR1 train_qwen2_2b_vl_detection.sh (--answer_key solution) and rewards.py
    pr1_detection_reward (solution["target_id"]: COCO ids of utils.get_cate_to_id; ["target_box"]: xyxy)."""
    image(tmp_path / "000000000001.jpg", (40, 30), fmt="JPEG")
    path = tmp_path / "pr1_dataset_detection.json"
    path.write_text(json.dumps([pr1_detection_row()]))
    recs = load("detection", path, images=tmp_path)
    (rec,) = recs
    assert recs.format == "pr1-detection" and len(rec["categories"]) == 80 and rec["crowd"] == []
    dog = {"label": "dog", "box": [1.0, 2.0, 11.0, 7.0], "area": 50.0}  # COCO id 18 is dog
    assert rec["solution"] == [dog]
    answer = render("detection", rec["solution"], [40, 30], REL, thinking=False)
    # rel1000 by hand: 1/40 -> 25, 2/30 -> 67, 11/40 -> 275, 7/30 -> 233.
    assert json.loads(answer) == [{"bbox_2d": [25, 67, 275, 233], "label": "dog"}]
    reward = build("detection", frame=REL, thinking=False)(
        [answer], solution=[rec["solution"]], image_size=[[40, 30]]
    )
    assert reward == [1.0]
    bad = pr1_detection_row()
    bad["solution"] = {"target_id": [12, 18], "target_box": [[1, 2, 11, 7], [1, 2, 41, 7]]}  # 12: a COCO gap
    path.write_text(json.dumps([bad]))
    with pytest.raises(RecordError, match="12 is not a COCO 2017 category id") as err:
        load("detection", path, images=tmp_path)
    assert err.value.field == "solution.target_id[0]"
    recs = load("detection", path, images=tmp_path, on_error="skip")
    assert len(recs) == 0 and recs.skip_report["skipped"] == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(value=json_values | st.text(max_size=40))
def test_pr1_rows_with_arbitrary_answers_raise_only_record_errors(tmp_path, value):
    """Whatever a Perception-R1 row holds as its answer, parsing gives a checked record or a RecordError."""
    image(tmp_path / "a.png", (100, 50))
    ctx = Context(tmp_path / "rows.json", tmp_path, None)
    rows = [
        (pr1_json.grounding, {"image": "a.png", "problem": "x", "solution": value}),
        (pr1_json.grounding, {"image": "a.png", "problem": "x", "normalized_solution": value}),
        (pr1_json.counting, {"image": "a.png", "problem": "x", "clicks": value}),
        (pr1_json.detection, {"image": "a.png", "problem": "x", "solution": value}),
    ]
    for parse, row in rows:
        try:
            (rec,) = parse(row, 0, ctx)
        except RecordError:
            continue
        assert rec["image_size"] == [100, 50]
