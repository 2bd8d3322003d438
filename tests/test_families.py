"""Every Qwen-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): tiny offline checkpoints, the frame detected from
the checkpoint, the coordinate-frame contract through the real processor, and GRPO / SFT / eval / resume /
LoRA end to end through `python -m pr1.run` and `python -m pr1.eval` (the shared-prefix fast path of each
family: tests/test_engine.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from pr1 import rewards
from pr1.coords import family_frame
from pr1.model import load_policy
from pr1.resolvers import run_options
from pr1.tasks import Task
from pr1.tiny import FAMILIES
from tests.helpers import FAMILY_TINY, render, run_module

CLASSES = {
    "qwen2vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", "qwen2_vl"),
    "qwen25vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", "qwen2_5_vl"),
    "qwen3vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", "qwen3_vl"),
}
# The frames written out by hand (independent of pr1.coords.family_frame), at the tiny configs' pixel limits.
ABS_TINY = {"kind": "abs_resized", "factor": 28, "min_pixels": 3136, "max_pixels": 12544}
FRAMES = {"qwen2vl": {"kind": "rel1000"}, "qwen25vl": ABS_TINY, "qwen3vl": {"kind": "rel1000"}}
REAL = {
    "qwen2vl_2b": ("Qwen/Qwen2-VL-2B-Instruct", "rel1000"),
    "qwen2vl_7b": ("Qwen/Qwen2-VL-7B-Instruct", "rel1000"),
    "qwen25vl_3b": ("Qwen/Qwen2.5-VL-3B-Instruct", "abs_resized"),
    "qwen25vl_7b": ("Qwen/Qwen2.5-VL-7B-Instruct", "abs_resized"),
    "qwen3vl_2b": ("Qwen/Qwen3-VL-2B-Instruct", "rel1000"),
    "qwen3vl_4b": ("Qwen/Qwen3-VL-4B-Instruct", "rel1000"),
    "qwen3vl_8b": ("Qwen/Qwen3-VL-8B-Instruct", "rel1000"),
}


def model_cfg(compose, *overrides: str):
    return compose(*overrides).model


# ------------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_checkpoint_loads_as_its_family(family_checkpoints, family):
    path = family_checkpoints[family]
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    model_cls, processor_cls, model_type = CLASSES[family]
    assert type(model).__name__ == model_cls and model.config.model_type == model_type
    assert type(processor).__name__ == processor_cls
    assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == model.config.image_token_id


# --------------------------------------------------------------------------------------- configs, frames
@pytest.mark.parametrize("model", sorted(REAL))
def test_real_model_configs(compose, model):
    hub_id, kind = REAL[model]
    m = OmegaConf.to_container(model_cfg(compose, f"model={model}"), resolve=True)
    assert m["path"] == hub_id and m["build"] is None and m["family"] == model.split("_")[0]
    assert m["frame"]["kind"] == kind  # offline and not downloaded: the declared family decides
    assert m["dtype"] == "bfloat16" and m["lora"]["target_modules"]


@pytest.mark.parametrize("family", FAMILIES)
def test_frame_follows_the_checkpoint_whatever_the_model_config(compose, family_checkpoints, family):
    """A folder of any family gets its family's frame, under the tiny config or another family's config."""
    path = family_checkpoints[family]
    cfg = model_cfg(compose, "model=tiny", f"model.path={path}")
    assert OmegaConf.to_container(cfg.frame, resolve=True) == FRAMES[family]
    other = model_cfg(compose, "model=qwen25vl_3b", f"model.path={path}", "model.max_pixels=12544")
    assert OmegaConf.to_container(other.frame, resolve=True) == FRAMES[family]
    policy, processor = load_policy(cfg)  # the loaded model and processor agree with the detected frame
    assert policy.config.model_type == CLASSES[family][2]


@pytest.mark.parametrize("family", ["qwen25vl", "qwen3vl"])
def test_tiny_family_configs_build_offline(compose, family):
    cfg = model_cfg(
        compose, f"model=tiny_{family}", *(f"model.build.{k}={v}" for k, v in FAMILY_TINY.items())
    )
    assert OmegaConf.to_container(cfg.frame, resolve=True) == FRAMES[family]
    policy, processor = load_policy(cfg)
    assert type(policy).__name__ == CLASSES[family][0] and type(processor).__name__ == CLASSES[family][1]


@pytest.mark.parametrize(
    "family, frame",
    [
        ("qwen3vl", ABS_TINY),  # the bug: a 0-1000 model scored as resized-image pixels
        ("qwen25vl", {"kind": "rel1000"}),
        ("qwen25vl", {**ABS_TINY, "max_pixels": 1000000}),  # not what the processor resizes to
        ("qwen2vl", ABS_TINY),
    ],
)
def test_contradicting_frame_is_refused(compose, family_checkpoints, family, frame):
    spec = "{" + ",".join(f"{k}:{v}" for k, v in frame.items()) + "}"
    cfg = model_cfg(compose, "model=tiny", f"model.path={family_checkpoints[family]}", f"model.frame={spec}")
    with pytest.raises(ValueError, match=f"contradicts the checkpoint \\({family}"):
        load_policy(cfg)


def test_explicit_frame_that_agrees_is_accepted(compose, family_checkpoints):
    cfg = model_cfg(
        compose, "model=tiny", f"model.path={family_checkpoints['qwen3vl']}", "model.frame={kind:rel1000}"
    )
    load_policy(cfg)


def test_path_and_build_together_are_refused(compose, family_checkpoints):
    cfg = model_cfg(compose, "model=tiny_qwen3vl", f"model.path={family_checkpoints['qwen3vl']}")
    with pytest.raises(ValueError, match="set model.build=null to load the checkpoint"):
        load_policy(cfg)


def test_unknown_family_without_a_readable_checkpoint_fails_clearly(compose, tmp_path):
    cfg = model_cfg(compose, "model=qwen3vl_2b", f"model.path={tmp_path / 'nowhere'}", "model.family=null")
    with pytest.raises(Exception, match="set model.family"):
        OmegaConf.to_container(cfg.frame, resolve=True)


def test_unsupported_model_type_is_named(compose, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    cfg = model_cfg(compose, "model=tiny", f"model.path={tmp_path}")
    with pytest.raises(Exception, match="'llava' is not a supported Qwen-VL family"):
        OmegaConf.to_container(cfg.frame, resolve=True)


def test_family_frame_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown model family 'qwen4vl'"):
        family_frame("qwen4vl", 3136, 12544)


# ------------------------------------------------------------------------------------ frame contract
def processed_size(processor, image: Image.Image) -> tuple[int, int]:
    """(width, height) of the image as the real processor resized it: its patch grid times the patch size."""
    enc = processor.image_processor(images=[image], return_tensors="pt")
    _, h, w = enc["image_grid_thw"][0].tolist()
    patch = processor.image_processor.patch_size
    return w * patch, h * patch


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(150, 100), (97, 211), (112, 112)])
def test_frame_contract_through_the_real_processor(compose, family_checkpoints, family, size):
    """ground truth -> answer in the family's frame -> parse -> reward 1.0, with the frame's coordinates
    computed by hand from the real processor's resize (not from pr1.coords)."""
    cfg = model_cfg(compose, "model=tiny", f"model.path={family_checkpoints[family]}")
    frame = OmegaConf.to_container(cfg.frame, resolve=True)
    processor = AutoProcessor.from_pretrained(
        family_checkpoints[family], size={"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels}
    )
    width, height = size
    truth = [0.2 * width, 0.3 * height, 0.7 * width, 0.9 * height]
    if family == "qwen25vl":  # absolute pixels of the processor-resized image
        rw, rh = processed_size(processor, Image.new("RGB", size))
        assert (rw, rh) != size or size == (112, 112)
        scale = [rw / width, rh / height] * 2
    else:  # 0-1000 relative to the image, whatever the processor resizes it to
        scale = [1000 / width, 1000 / height] * 2
    by_hand = np.rint(np.asarray(truth) * scale).astype(int).tolist()
    answer = render("grounding", truth, size, frame, thinking=False, label="the box")
    x1, y1, x2, y2 = by_hand
    assert answer.endswith(f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>")
    iou = rewards.build("iou", frame=frame, thinking=False)
    assert iou([answer], solution=[truth], image_size=[list(size)]) == [1.0]
    wrong = {"kind": "rel1000"} if family == "qwen25vl" else ABS_TINY  # the other family's frame misreads it
    assert (
        rewards.build("iou", frame=wrong, thinking=False)([answer], solution=[truth], image_size=[size])[0]
        < 0.9
    )


# ------------------------------------------------------------------------------------------ end to end
def train_steps(run_dir) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "train/reward" in r or "train/ppl" in r]


SMOKE = [
    "task=grounding",
    "experiment=smoke",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "task.val.n=2",
]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_grpo_trains_and_resumes(tmp_path, family_checkpoints, family):
    path = family_checkpoints[family]
    args = ["model=tiny", f"model.path={path}", "paths.run_dir=${paths.results_dir}/grpo", *SMOKE]
    proc = run_module(tmp_path, "pr1.run", *args)
    run_dir = tmp_path / "results" / "grpo"
    assert "pr1 run finished: 2 steps" in proc.stdout and train_steps(run_dir) == [1, 2]
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert OmegaConf.to_container(cfg.model.frame) == FRAMES[family]
    # the rewards get the run-wide frame from the task (bound once), not from their yaml
    iou = next(t for t in Task.from_config(cfg.task, run_options(cfg)).rewards if t.name == "iou")
    assert iou.fn.keywords["frame"] == FRAMES[family]
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["train/loss"]) and r["train/kl"] >= 0 for r in history if "train/loss" in r)

    proc = run_module(tmp_path, "pr1.run", *args, "trainer.max_steps=3")
    assert "Restored all states" in proc.stdout + proc.stderr and train_steps(run_dir) == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_grpo_with_lora_and_the_adapter_disabled_reference(tmp_path, family_checkpoints, family):
    export = tmp_path / "export"
    args = ["model=tiny", f"model.path={family_checkpoints[family]}", "model.lora.enabled=true", *SMOKE]
    run_module(tmp_path, "pr1.run", *args, "objective.beta=0.04", f"export_dir={export}")
    merged = AutoModelForImageTextToText.from_pretrained(export)  # adapters merged into the family's class
    assert type(merged).__name__ == CLASSES[family][0]
    assert not any("lora" in n for n, _ in merged.named_parameters())


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_sft_then_eval_of_the_export(tmp_path, family_checkpoints, family):
    export = tmp_path / "export"
    sft = ["objective=sft", "model=tiny", f"model.path={family_checkpoints[family]}", *SMOKE]
    run_module(tmp_path, "pr1.run", *sft, "paths.run_dir=${paths.results_dir}/sft", f"export_dir={export}")
    assert train_steps(tmp_path / "results" / "sft") == [1, 2]

    eval_dir = tmp_path / "eval"
    proc = run_module(
        tmp_path,
        "pr1.eval",
        "model=tiny",
        f"model.path={export}",
        f"paths.run_dir={eval_dir}",
        "task=grounding",
        "task.val.n=2",
    )
    summary = json.loads((eval_dir / "eval_metrics.json").read_text())
    assert summary["frame"] == FRAMES[family] and summary["n_records"] == 2 and "acc50" in summary["metrics"]
    assert "pr1 eval: task grounding" in proc.stdout


# ------------------------------------------------------------------------------ real architectures
# Parameter counts shown on each checkpoint's hub page (safetensors metadata), in billions.
PUBLISHED_PARAMS_B = {
    "qwen2vl_2b": 2.21,
    "qwen2vl_7b": 8.29,
    "qwen25vl_3b": 3.75,
    "qwen25vl_7b": 8.29,
    "qwen3vl_2b": 2.13,
    "qwen3vl_4b": 4.44,
    "qwen3vl_8b": 8.77,
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_architecture_configs_build_offline(compose, name):
    from bench.real_configs import HUB_IDS, real_config

    config = real_config(name)
    assert HUB_IDS[name] == OmegaConf.to_container(model_cfg(compose, f"model={name}"), resolve=True)["path"]
    assert config.model_type == CLASSES[name.split("_")[0]][2]
    text, vision = config.text_config, config.vision_config
    out = vision.hidden_size if name.startswith("qwen2vl") else vision.out_hidden_size
    assert out == text.hidden_size  # the vision merger feeds the text model
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert real_config(name, num_hidden_layers=2).text_config.num_hidden_layers == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_architectures_have_the_published_size(name):
    """On the meta device (no weights allocated): the parameter count is the hub's, within 0.5%."""
    from bench.real_configs import real_config

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(real_config(name))
    params = sum(p.numel() for p in model.parameters()) / 1e9
    assert params == pytest.approx(PUBLISHED_PARAMS_B[name], rel=5e-3)
