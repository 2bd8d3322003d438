"""Each task config composes into a working Task: prompts, answers earning full reward, metrics, processor."""

from __future__ import annotations

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pr1.data.dataset import RecordDataset
from pr1.data.synthetic import make
from pr1.module import PR1Module
from pr1.tasks.prompts import THINKING_SUFFIX
from pr1.tasks.task import Task
from tests.conftest import CONF

SYNTHETIC = ("grounding", "counting", "ocr", "detection")
REAL = {"refcoco": "grounding", "pixmo_count": "counting", "pageocr": "ocr", "coco": "detection"}
PERFECT = {
    "grounding": ("acc50", 1.0),
    "counting": ("count_acc", 1.0),
    "ocr": ("f1", 1.0),
    "detection": ("ap", 1.0),
}


def test_every_task_option_is_covered():
    assert sorted(p.stem for p in (CONF / "task").glob("*.yaml")) == sorted([*SYNTHETIC, *REAL])


def build(compose, task: str, *overrides: str, thinking: bool = False, model: str = "tiny") -> tuple:
    cfg = compose(f"task={task}", f"model={model}", f"thinking={str(thinking).lower()}", *overrides)
    frame = OmegaConf.to_container(cfg.model.frame, resolve=True)
    return cfg, Task.from_config(cfg.task, thinking=thinking, frame=frame)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


_RECORDS: dict[tuple, list[dict]] = {}


def val_records(compose, task: str, data_dir) -> list[dict]:
    """Three val records of a synthetic task, built through its config once per test module."""
    if (task, data_dir) not in _RECORDS:
        cfg = compose(f"task={task}", f"paths.data_dir={data_dir}", "task.val.n=3")
        _RECORDS[task, data_dir] = instantiate(cfg.task.val)
    return _RECORDS[task, data_dir]


@pytest.mark.parametrize("task", SYNTHETIC)
@pytest.mark.parametrize("model, thinking", [("tiny", False), ("qwen25vl_3b", True)])  # rel1000 / abs_resized
def test_ground_truth_answer_earns_full_reward_and_metric(compose, data_dir, task, thinking, model):
    records = val_records(compose, task, data_dir)
    cfg, t = build(compose, task, thinking=thinking, model=model)
    assert t.kind == task and t.metric == cfg.task.metric == PERFECT[task][0]
    answers = [t.answer(r) for r in records]
    scores = t.score(answers, records)
    assert set(scores) == set(cfg.task.rewards) and "format" in scores
    for name, values in scores.items():
        assert values == pytest.approx([1.0] * len(records)), (name, answers[0])
    metrics, rows = t.evaluate(answers, records)
    key, best = PERFECT[task]
    assert metrics[key] == pytest.approx(best) and len(rows) == len(records)
    assert all(v < 0.5 for v in t.score([""] * len(records), records)["format"])


@pytest.mark.parametrize("task", SYNTHETIC)
def test_prompts(compose, data_dir, task):
    record = val_records(compose, task, data_dir)[0]
    cfg, t = build(compose, task)
    (message,) = t.messages(record)
    assert message["content"][0] == {"type": "image"}
    text = message["content"][1]["text"]
    expected = {
        "grounding": f"Output the bounding box of the {record['question']} in the image.",
        "counting": f"Output all the bounding boxes of the {record['question']}",
        "ocr": "Output the text in the image.",
        "detection": "Please output bbox coordinates and names of rectangle, ellipse, triangle.",
    }[task]
    assert text == expected
    thinking = Task.from_config(cfg.task, thinking=True, frame=t.frame)
    assert thinking.messages(record)[0]["content"][1]["text"] == expected + THINKING_SUFFIX


def test_processor_never_truncates_image_tokens(compose, data_dir, tiny_model, tiny_processor):
    """One record per synthetic task through the real prompt encoder, which checks the image-token count."""
    cfg = compose("model=tiny_scratch", "objective.beta=0")
    for task in SYNTHETIC:
        _, t = build(compose, task)
        module = PR1Module(cfg, t, tiny_model, tiny_processor)
        batch = [RecordDataset(val_records(compose, task, data_dir))[0]]
        enc = module.encode_prompts(batch)
        merge = tiny_processor.image_processor.merge_size
        grid = enc["image_grid_thw"][0].tolist()
        assert (
            grid[1] * grid[2] * 14 * 14 == batch[0]["image_size"][0] * batch[0]["image_size"][1]
        )  # no resize
        n_tokens = int((enc["input_ids"] == tiny_model.config.image_token_id).sum())
        assert n_tokens == grid[0] * grid[1] * grid[2] // merge**2


@pytest.mark.parametrize("task", REAL)
def test_real_dataset_configs(compose, tmp_path, task):
    """A real-dataset config fails naming the key to set, then reads data in its format once pointed at it."""
    cfg, t = build(compose, task, f"paths.root_dir={tmp_path}")
    assert t.kind == REAL[task]
    with pytest.raises(InstantiationException, match=r"not found: .* Set task\.train\."):
        instantiate(cfg.task.train)
    kind = REAL[task]
    ann = make(kind, tmp_path / "syn", n=3, seed=0, **({"layout": "refs"} if task == "refcoco" else {}))
    folder = str(ann.parent)
    overrides = {
        "refcoco": [f"task.train.path={folder}", f"task.train.images={folder}"],
        "pixmo_count": [f"task.train.path={ann}", f"task.train.images={folder}"],
        "pageocr": [f"task.train.path={ann}"],
        "coco": [f"task.train.annotations={ann}", f"task.train.images={folder}"],
    }[task]
    cfg, t = build(compose, task, *overrides)
    records = instantiate(cfg.task.train)
    assert len(records) == 3 and records[0]["task"] == kind
    assert t.score([t.answer(r) for r in records], records)["format"] == [1.0] * 3
