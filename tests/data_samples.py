"""Sample files in the published layouts of real distributions, built from their schemas (sources cited where
each is used in tests/test_data_formats.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
from PIL import Image

# The RefCOCO row VLM-R1 shows in github.com/om-ai-lab/VLM-R1/issues/11 (COCO ann 1719310 on a 427x640 image):
# COCO bbox [x, y, w, h] = [103.93, 299.99, 134.22, 177.42]; so xyxy = [103.93, 299.99, 238.15, 477.41].
REF_SIZE = (427, 640)
REF_XYWH = [103.93, 299.99, 134.22, 177.42]
REF_XYXY = [103.93, 299.99, 238.15, 477.41]
REF_FILE = "COCO_train2014_000000581857.jpg"
REF_SENT = "the lady with the blue shirt"


def image(path: Path, size: tuple[int, int] = REF_SIZE, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, "white").save(path, format=fmt)
    return path


def png_bytes(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, format="PNG")
    return buf.getvalue()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path: Path, rows: list[dict], features: datasets.Features | None = None) -> Path:
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))
    return path


def lmms_lab_refcoco(tmp: Path) -> Path:
    """lmms-lab/RefCOCO's features (README dataset_info): question_id, image, question, answer (sequence of
    strings), segmentation, bbox (COCO xywh, float32), iscrowd, file_name."""
    features = datasets.Features(
        {
            "question_id": datasets.Value("string"),
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answer": datasets.Sequence(datasets.Value("string")),
            "segmentation": datasets.Sequence(datasets.Value("float32")),
            "bbox": datasets.Sequence(datasets.Value("float32")),
            "iscrowd": datasets.Value("int8"),
            "file_name": datasets.Value("string"),
        }
    )
    row = {
        "question_id": "581857_0",
        "image": {"bytes": png_bytes(REF_SIZE), "path": None},
        "question": "Please carefully observe the area circled in the image and come up with a caption.",
        "answer": [REF_SENT, "lady in blue"],
        "segmentation": [],
        "bbox": REF_XYWH,
        "iscrowd": 0,
        "file_name": REF_FILE,
    }
    return write_parquet(tmp / "val-00000-of-00001.parquet", [row], features)


def jxu124_refcoco(tmp: Path) -> Path:
    """jxu124/refcoco's features (README dataset_info): sent_ids, file_name, ann_id, ref_id, image_id, split,
    sentences [{raw, sent, sent_id, tokens}], category_id, raw_anns, raw_image_info, raw_sentences (JSON),
    image_path, bbox, captions, global_image_id, anns_id. No pixels: the images are COCO's."""
    image(tmp / "coco" / "train2014" / REF_FILE)
    ann = {"id": 1719310, "image_id": 581857, "bbox": REF_XYWH, "category_id": 1}
    info = {"id": 581857, "file_name": REF_FILE, "width": REF_SIZE[0], "height": REF_SIZE[1]}
    sentences = [
        {"raw": "The lady with the blue shirt", "sent": REF_SENT, "sent_id": 7, "tokens": REF_SENT.split()},
        {"raw": "lady in blue", "sent": "lady in blue", "sent_id": 8, "tokens": ["lady", "in", "blue"]},
    ]
    row = {
        "sent_ids": [7, 8],
        "file_name": REF_FILE,
        "ann_id": 1719310,
        "ref_id": 3,
        "image_id": 581857,
        "split": "val",
        "sentences": sentences,
        "category_id": 1,
        "raw_anns": json.dumps(ann),
        "raw_image_info": json.dumps(info),
        "raw_sentences": json.dumps(sentences),
        "image_path": f"coco/train2014/{REF_FILE}",
        "bbox": REF_XYWH,
        "captions": [REF_SENT, "lady in blue"],
        "global_image_id": "coco.581857",
        "anns_id": "1719310",
    }
    return write_parquet(tmp / "refcoco-val.parquet", [row])


def vlm_r1_row() -> dict:
    """The row printed in github.com/om-ai-lab/VLM-R1/issues/11 (rec_jsons_processed/refcoco_*.json)."""
    return {
        "height": 640,
        "width": 427,
        "id": 0,
        "original_id": 1719310,
        "dataset_name": "refcoco",
        "area": 14863.615599999997,
        "iscrowd": 0,
        "image_id": 0,
        "category_id": 1,
        "bbox_list": [[103.93, 299.99, 237.15, 476.40999999999997]],
        "text_type": "caption",
        "image": f"train2014/{REF_FILE}",
        "problem": "Please provide the bounding box coordinate of the region this sentence describes: "
        f"{REF_SENT}.",
        "normal_caption": REF_SENT,
        "solution": REF_XYXY,
        "normalized_solution": [243, 468, 557, 745],
    }


def pixmo_row(url: str = "https://example.com/dogs.jpg") -> dict:
    """allenai/pixmo-count's features (README dataset_info): image_url, image_sha256, count (int32), points
    (sequence of {x, y}: stored as {"x": [...], "y": [...]}), label."""
    return {
        "image_url": url,
        "image_sha256": "0" * 64,
        "count": 2,
        "points": {"x": [10.5, 30.0], "y": [20.0, 40.0]},
        "label": "dogs",
    }


PIXMO_FEATURES = datasets.Features(
    {
        "image_url": datasets.Value("string"),
        "image_sha256": datasets.Value("string"),
        "count": datasets.Value("int32"),
        "points": datasets.Sequence({"x": datasets.Value("float32"), "y": datasets.Value("float32")}),
        "label": datasets.Value("string"),
    }
)


# Perception-R1's own files (github.com/linkangheng/PR1, read in its fork philipmit/PR1): a JSON list of rows
# read by src/open_r1/dataset.py (MMR1Dataset); each answer's frame follows from the reward that scores it.
# REF_XYXY's box in 0-1000 (the rounding pr1 renders): 103.93/427 -> 243, 299.99/640 -> 469,
# 238.15/427 -> 558, 477.41/640 -> 746.
PR1_REL_BOX = [243, 469, 558, 746]


def pr1_grounding_row() -> dict:
    """A linkangheng/refcoco_320k row (train_qwen2_2b_vl_grounding.sh; src/open_r1/rewards.py
    pr1_grounding_reward: IoU of Qwen2-VL's 0-1000 box with eval(solution)): image, problem (the expression),
    solution (the flat 0-1000 box as text)."""
    return {"image": f"train2014/{REF_FILE}", "problem": REF_SENT, "solution": str(PR1_REL_BOX)}


def pr1_grounding_eval_row() -> dict:
    """An eval/jsons/grounding/refcoco_val.json row (eval/evaluate_grounding.py: the prompt wraps `problem`,
    Qwen2-VL answers are scored against `normalized_solution`, others against `solution`)."""
    return {
        "image": f"train2014/{REF_FILE}",
        "problem": REF_SENT,
        "solution": REF_XYXY,
        "normalized_solution": PR1_REL_BOX,
    }


def pr1_counting_row() -> dict:
    """A pr1_counting_10k.json row (train_qwen2_2b_vl_counting.sh --answer_key clicks; pr1_counting_reward
    matches `clicks` with the centres of Qwen2-VL's 0-1000 boxes): image, problem (the label), clicks."""
    return {"image": "pixmo-count/dogs.jpg", "problem": "dogs", "clicks": [[105, 400], [300, 800]]}


def pr1_counting_eval_row() -> dict:
    """A pixmo_count_validation540_counting_problems_label.jsonl row (eval/evaluate_counting.py)."""
    return {"image_path": "pixmo-count/dogs.jpg", "question": "dogs", "ground_truth": 4}


def pr1_detection_row() -> dict:
    """A pr1_dataset_detection.json row (train_qwen2_2b_vl_detection.sh --answer_key solution;
    pr1_detection_reward reads solution["target_id"] (COCO ids, utils.get_cate_to_id) and ["target_box"])."""
    return {
        "image": "000000000001.jpg",
        "problem": "Please output bbox coordinates and names of person, bicycle, car.",
        "solution": {"target_id": [18], "target_box": [[1.0, 2.0, 11.0, 7.0]]},
    }
