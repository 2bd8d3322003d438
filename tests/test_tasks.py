"""Each task config composes into a working Task: prompts, answers earning full reward, metrics, processor."""

from __future__ import annotations

import re
import typing

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pr1 import rewards
from pr1.data.dataset import RecordDataset
from pr1.data.synthetic import make
from pr1.engine import PolicyEngine
from pr1.rewards import registry
from pr1.tasks import TASKS, RewardTerm, RunOptions, Task
from pr1.tasks.base import bind_reward
from pr1.tasks.prompts import THINKING_SUFFIX
from tests.helpers import CONF

SYNTHETIC = ("grounding", "counting", "ocr", "detection")
REAL = {"refcoco": "grounding", "pixmo_count": "counting", "pageocr": "ocr", "coco": "detection"}
MIXTURES = ("perception",)  # tests/test_mixture.py
PERFECT = {
    "grounding": ("acc50", 1.0),
    "counting": ("count_acc", 1.0),
    "ocr": ("f1", 1.0),
    "detection": ("ap", 1.0),
}


def test_every_task_option_is_covered():
    assert sorted(p.stem for p in (CONF / "task").glob("*.yaml")) == sorted([*SYNTHETIC, *REAL, *MIXTURES])


def build(compose, task: str, *overrides: str, thinking: bool = False, model: str = "tiny") -> tuple:
    cfg = compose(f"task={task}", f"model={model}", f"thinking={str(thinking).lower()}", *overrides)
    frame = OmegaConf.to_container(cfg.model.frame, resolve=True)
    run = RunOptions(thinking=thinking, frame=frame, matcher=cfg.matcher.name)
    return cfg, Task.from_config(cfg.task, run)


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
    thinking = Task.from_config(cfg.task, RunOptions(thinking=True, frame=t.frame))
    assert thinking.messages(record)[0]["content"][1]["text"] == expected + THINKING_SUFFIX


def test_processor_never_truncates_image_tokens(compose, data_dir, tiny_model, tiny_processor):
    """One record per synthetic task through the real prompt encoder, which checks the image-token count."""
    engine = PolicyEngine(tiny_model, tiny_processor)
    for task in SYNTHETIC:
        _, t = build(compose, task)
        batch = [RecordDataset(val_records(compose, task, data_dir))[0]]
        enc = engine.encode([t.messages(r) for r in batch], [r["pil"] for r in batch], "cpu")
        merge = tiny_processor.image_processor.merge_size
        grid = enc.image_grid_thw[0].tolist()
        assert (
            grid[1] * grid[2] * 14 * 14 == batch[0]["image_size"][0] * batch[0]["image_size"][1]
        )  # no resize
        n_tokens = int((enc.input_ids == tiny_model.config.image_token_id).sum())
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


def test_every_kind_is_a_task_class_with_a_config():
    kinds = {OmegaConf.load(p).kind for p in (CONF / "task").glob("*.yaml")}
    assert kinds == set(TASKS) == {*SYNTHETIC, "mixture"}  # the mixture's tasks: tests/test_mixture.py
    assert all(TASKS[k].kind == k for k in TASKS)


def test_run_wide_options_reach_only_the_rewards_that_declare_them(compose):
    cfg, t = build(compose, "counting", "matcher=naive", thinking=True)
    count = next(term for term in t.rewards if term.name == "count")
    assert count.fn.keywords == {
        "scale": pytest.approx(2**0.5),
        "variant": "pr1",
        "thinking": True,
        "frame": t.frame,
        "matcher": "naive",
    }
    fmt = next(term for term in t.rewards if term.name == "format")
    assert fmt.fn.keywords == {"low": -1.0, "task": "counting", "thinking": True}  # no frame, no matcher
    assert not count.needs_step and not fmt.needs_step


def test_a_reward_option_contradicting_a_run_wide_one_is_an_error(compose):
    run = RunOptions(thinking=False, frame={"kind": "rel1000"}, matcher="hungarian")
    with pytest.raises(
        ValueError, match=r"reward 'detection': option matcher='naive' contradicts the run-wide"
    ):
        bind_reward("detection", {"weight": 1.0, "matcher": "naive"}, run)
    with pytest.raises(ValueError, match=r"option thinking=True contradicts the run-wide thinking=False"):
        build(compose, "grounding", "+task.rewards.format.thinking=true")
    # The same value, given twice, is no contradiction.
    assert bind_reward("iou", {"weight": 2.0, "frame": {"kind": "rel1000"}}, run).weight == 2.0


def test_config_option_names_are_the_registry_keys():
    assert {p.stem for p in (CONF / "reward").glob("*.yaml")} == set(rewards.REGISTRY)
    from pr1.matching import MATCHERS, MatcherName

    matchers = {p.stem for p in (CONF / "matcher").glob("*.yaml")}
    assert matchers == set(MATCHERS) == set(typing.get_args(MatcherName))
    assert all(OmegaConf.load(CONF / "matcher" / f"{m}.yaml").name == m for m in matchers)
    for path in (CONF / "reward").glob("*.yaml"):
        options = set(OmegaConf.load(path)) - {"weight"}
        assert options <= registry.options_of(path.stem), path.name
        assert not options & {"thinking", "frame", "matcher"}, (
            f"{path.name}: run-wide options are bound by the task"
        )


def _step_reward(answer, solution, image_size, *, step: int = -1):
    return {"total": float(step)}


@pytest.fixture
def step_reward(monkeypatch):
    """A reward whose scorer declares `step`, registered for one test only."""
    scorer = registry.register("test_step")(_step_reward)
    monkeypatch.setitem(registry.REGISTRY, "test_step", registry.REGISTRY.pop("test_step"))
    monkeypatch.setitem(registry._SCORERS, "test_step", scorer)
    return "test_step"


def test_score_passes_the_global_step_to_rewards_that_declare_it(compose, step_reward, data_dir):
    records = val_records(compose, "grounding", data_dir)
    term = bind_reward(step_reward, {"weight": 1.0}, RunOptions(thinking=False, frame={"kind": "rel1000"}))
    assert term.needs_step
    task = TASKS["grounding"](
        [term, RewardTerm("const", 1.0, lambda c, **kw: [0.0] * len(c))],
        "acc50",
        RunOptions(False, {"kind": "rel1000"}),
    )
    texts = [task.answer(r) for r in records]
    assert task.score(texts, records, step=7) == {"test_step": [7.0] * 3, "const": [0.0] * 3}
    assert task.score(texts, records)["test_step"] == [-1.0] * 3  # no step (eval): the scorer's default


def test_predictions_read_like_rewards_in_pixels():
    frame = {"kind": "rel1000"}
    record = {"image_size": [200, 100], "question": "x", "solution": [0, 0, 1, 1]}

    def task(kind, thinking=False):
        return TASKS[kind]([RewardTerm("r", 1.0, len)], "m", RunOptions(thinking, frame))

    box = "<|box_start|>(100,200),(300,400)<|box_end|>"
    assert task("grounding").predicted_items(box, record) == [[20, 20, 60, 40]]
    thought = f"<think>hm</think><answer>{box}</answer>"
    assert task("grounding", thinking=True).predicted_items(thought, record) == [[20, 20, 60, 40]]
    points = "<|box_start|>(500,500)<|box_end|><|box_start|>(0,1000)<|box_end|>"
    assert task("counting").predicted_items(points, record) == [[100, 50], [0, 100]]
    for junk in ("", "no box here", "<|box_start|>(1,2),(3<|box_end|>", "(" * 10_000):
        assert task("grounding").predicted_items(junk, record) == []
    assert task("ocr").predicted_items(box, record) == []
    assert task("grounding").well_formed(box) and not task("grounding").well_formed(points)


def test_truth_items_in_pixels():
    run = RunOptions(False, {"kind": "rel1000"})

    def truth(kind, solution):
        return TASKS[kind]([RewardTerm("r", 1.0, len)], "m", run).truth_items({"solution": solution})

    assert truth("grounding", [1, 2, 3, 4]) == [[1, 2, 3, 4]]
    assert truth("counting", [[1, 2], [3, 4]]) == [[1, 2], [3, 4]]
    assert truth("detection", [{"label": "a", "box": [1, 2, 3, 4]}]) == [[1, 2, 3, 4]]
    assert truth("ocr", "text") == []


def test_no_task_kind_branches_outside_the_tasks():
    """`if kind ==` dispatch lives in the task classes; the layers around them stay kind-agnostic (the
    rewards' structure rules in pr1/rewards/format.py and the data generators are below the task layer)."""
    root = CONF.parent / "pr1"
    for path in [*root.glob("*.py"), root / "tasks" / "base.py"]:
        text = path.read_text()
        assert not re.search(r"== [\"'](grounding|counting|ocr|detection)[\"']", text), path
