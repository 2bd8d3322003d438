"""Every config group composes, instantiates what it declares, and rejects typos with the valid options."""

from __future__ import annotations

import copy

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pr1 import resolvers, rewards, schema
from pr1.tasks import Task
from pr1.tasks.prompts import THINKING_SUFFIX
from tests.helpers import CONF, ROOT

GROUPS = ["task", "model", "matcher", "objective", "trainer", "logger"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes(compose, group):
    for option in options(group):
        cfg = compose(f"{group}={option}")
        run_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
        del run_cfg["hydra"]
        OmegaConf.to_container(run_cfg, resolve=True)  # every interpolation of the run config resolves


@pytest.mark.parametrize("model", ["qwen2vl_2b", "qwen2vl_7b", "qwen25vl_3b", "qwen25vl_7b"])
def test_real_model_configs(compose, model):
    cfg = compose(f"model={model}", "model.lora.enabled=true", "model.freeze_vision=true")
    m = OmegaConf.to_container(cfg.model, resolve=True)
    assert m["path"].startswith("Qwen/") and m["build"] is None
    assert m["frame"]["kind"] == ("rel1000" if model.startswith("qwen2vl") else "abs_resized")
    assert m["lora"]["target_modules"]
    local = compose(f"model={model}", "model.path=/ckpt/local")
    assert local.model.path == "/ckpt/local"


def test_thinking_and_matcher_reach_the_rewards(compose):
    cfg = compose("task=detection", "thinking=true", "matcher=naive")
    task = Task.from_config(cfg.task, resolvers.run_options(cfg))
    options = {t.name: t.fn.keywords for t in task.rewards}
    assert options["format"]["thinking"] is True and options["detection"]["thinking"] is True
    assert options["detection"]["matcher"] == "naive" and "matcher" not in options["format"]
    assert task.prompt({"question": "cat"}).endswith(THINKING_SUFFIX)


def test_reward_options_build(compose):
    cfg = compose()
    assert cfg.task.kind == "mixture"  # the default: every task's rewards build
    specs = [(name, spec) for task in cfg.task.tasks.values() for name, spec in task.rewards.items()]
    assert {name for name, _ in specs} == {"format", "iou", "count", "edit", "detection"}
    for name, spec in specs:
        opts = {k: v for k, v in OmegaConf.to_container(spec, resolve=True).items() if k != "weight"}
        assert callable(rewards.build(name, **opts))


def test_optimizer_comes_from_the_config(compose):
    import torch

    cfg = compose("objective.lr=0.125", "objective.weight_decay=0.5")
    opt = instantiate(cfg.objective.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["lr"] == 0.125 and opt.defaults["weight_decay"] == 0.5
    sgd = compose("objective.optimizer._target_=torch.optim.SGD", "~objective.optimizer.weight_decay")
    assert isinstance(
        instantiate(sgd.objective.optimizer)([torch.nn.Parameter(torch.zeros(2))]), torch.optim.SGD
    )


def test_lr_schedule_comes_from_the_config(compose):
    """objective.lr_schedule names a transformers schedule; cosine_with_min_lr, hand-worked: warm-up 2 of 10
    steps, then lr * (r + (1 - r) * (1 + cos(pi * (s - 2) / 8)) / 2) with r = 0.1."""
    import math

    import torch

    from pr1.module import lr_scheduler

    cfg = compose(
        "objective.lr=1.0",
        "objective.warmup_steps=2",
        "objective.lr_schedule=cosine_with_min_lr",
        "+objective.lr_schedule_kwargs.min_lr_rate=0.1",
    )
    opt = instantiate(cfg.objective.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    sched = lr_scheduler(cfg.objective, opt, 10)
    lrs = []
    for _ in range(11):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    cosine = [0.1 + 0.9 * (1 + math.cos(math.pi * (s - 2) / 8)) / 2 for s in range(2, 11)]
    assert lrs == pytest.approx([0.0, 0.5, *cosine])
    constant = lr_scheduler(compose("objective.warmup_steps=0").objective, opt, 10)
    assert constant.get_last_lr()[0] == pytest.approx(opt.defaults["lr"])


def test_callbacks_group_builds_the_run_callbacks(compose, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from pr1.callbacks import RunRecorder
    from pr1.checkpointing import RunCheckpoints
    from pr1.run import build_callbacks

    cfg = compose(f"paths.run_dir={tmp_path}", "logger=wandb")
    callbacks = build_callbacks(cfg)
    assert sum(isinstance(c, RunRecorder) for c in callbacks) == 1
    (writer,) = [c for c in callbacks if isinstance(c, RunCheckpoints)]  # the one checkpoint writer
    assert writer.monitor == "val/score" and writer.every_n_steps == cfg.trainer.val_check_interval
    assert not any(isinstance(c, ModelCheckpoint) for c in callbacks)


def test_arm_name_from_overrides(compose):
    cfg = compose("matcher=naive", "thinking=true", "seed=3", "trainer.max_steps=5", "experiment=smoke")
    assert cfg.arm == "matcher=naive,thinking=true"
    assert compose("thinking=True").arm == "thinking=true"  # Hydra's spelling of swept booleans
    assert compose().arm == "default"
    assert compose("model.path=/ckpt/a").arm.startswith("model.path=_ckpt_a-")  # one safe directory name


@pytest.mark.parametrize("bad", ["matcher=hungarain", "model=qwen3", "objective=ppo", "task=grounding2"])
def test_unknown_option_lists_valid_ones(compose, bad):
    group = bad.split("=")[0]
    with pytest.raises(ConfigCompositionException) as err:
        compose(bad)
    msg = str(err.value)
    assert "Available options" in msg
    for option in options(group):
        assert option in msg


def test_unknown_key_fails(compose):
    with pytest.raises(ConfigCompositionException):
        compose("objective.num_generatoins=4")


@pytest.mark.parametrize(
    "bad, match",
    [
        ("thinking=maybe", r"^thinking must be true or false, got 'maybe'"),
        ("mode=serve", r"^mode must be one of \['train', 'eval'\], got 'serve'"),
        ("resume=1", r"^resume must be true or false"),
        ("objective.num_generations=1", r"^objective.num_generations must be an integer >= 2, got 1"),
        ("objective.prompts_per_step=0", r"^objective.prompts_per_step must be an integer >= 1"),
        ("objective.top_p=0", r"^objective.top_p must be a number in \(0, 1\], got 0"),
        ("objective.top_p=1.5", r"^objective.top_p must be a number in \(0, 1\]"),
        ("objective.beta=-0.1", r"^objective.beta must be a number >= 0"),
        ("objective.epsilon=0", r"^objective.epsilon must be a number > 0"),
        ("objective.num_iterations=0", r"^objective.num_iterations must be an integer >= 1"),
        ("objective.micro_batch_size=-1", r"^objective.micro_batch_size must be an integer >= 0"),
        ("objective.grad_accum=1.5", r"^objective.grad_accum must be an integer >= 1, got 1.5"),
        ("objective.adv_eps=0", r"^objective.adv_eps must be a number > 0"),
        ("objective.loss_type=ppo", r"^objective.loss_type must be one of \['grpo'"),
        ("objective.scale_rewards=rank", r"^objective.scale_rewards must be one of \['group'"),
        ("trainer.val_check_interval=0", r"^trainer.val_check_interval must be an integer >= 1"),
        ("print_every=0", r"^print_every must be an integer >= 1"),
        ("model.dtype=float8", r"^model.dtype must be one of \['float32'"),
        ("objective.grad_accum=2", r"^objective.grad_accum > 1 needs objective.num_iterations == 1"),
    ],
)
def test_bad_values_fail_before_training(compose, bad, match):
    overrides = [bad, "objective.num_iterations=2"] if "grad_accum=2" in bad else [bad]
    with pytest.raises(ValueError, match=match):
        schema.validate(compose(*overrides))


@pytest.mark.parametrize("objective", ["rl", "sft"])
def test_every_shipped_config_validates(compose, objective):
    schema.validate(compose(f"objective={objective}", "thinking=true"))


def test_schema_dtypes_are_the_model_loaders():
    from pr1.model import DTYPES

    assert set(schema.DTYPES) == set(DTYPES)


def test_invalid_config_fails_before_any_model_is_built(compose, tmp_path):
    from pr1.run import train

    cfg = compose("objective.num_generations=1", f"paths.run_dir={tmp_path}", "model.path=/nonexistent")
    with pytest.raises(ValueError, match="objective.num_generations"):
        train(cfg)


@pytest.mark.parametrize("ablation", sorted(p.stem for p in (ROOT / "sweeps" / "ablation").glob("*.yaml")))
def test_every_sweep_file_composes_with_a_grid(compose, ablation):
    cfg = compose(f"ablation={ablation}")
    assert cfg.sweep == ablation
    params = cfg.hydra.sweeper.params
    assert params and all("," in str(v) for v in params.values())
    for key, values in params.items():  # every swept value is itself a valid override
        for value in str(values).split(","):
            compose(f"ablation={ablation}", f"{key}={value}")


def test_sweeps_are_found_from_any_working_directory(tmp_path, monkeypatch):
    """The ablation group lives in sweeps/, found through an absolute searchpath whatever the cwd."""
    from hydra import compose, initialize_config_dir

    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=resolvers.CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["ablation=matcher"], return_hydra_config=True)
    assert cfg.sweep == "matcher"
    assert cfg.hydra.searchpath == [f"file://{resolvers.SWEEPS_DIR}"]


def test_the_default_run_trains_and_validates_on_a_shift_of_its_warm_starts_data(compose):
    """domain=zoom, the default: every task's knobs differ from the source-domain SFT data its warm start was
    built on, validation follows the shifted training distribution on its own seed, and the OCR vocabulary is
    the one the warm start last read."""
    build, default = compose("experiment=build_tiny_perception_ocr8"), compose()
    assert (build.domain.name, default.domain.name) == ("source", "zoom")
    assert default.model.path == build.export_dir
    for name in ("grounding", "counting", "ocr", "detection"):
        source, target = build.task.train.parts[name].knobs, default.task.train.parts[name].knobs
        assert target != source, name
        assert default.task.val.parts[name].knobs == target, name
        assert default.task.val.parts[name].seed != default.task.train.parts[name].seed, name
    assert default.task.train.parts.ocr.knobs.words == build.task.train.parts.ocr.knobs.words


def test_the_default_run_validates_detection_on_512_fresh_images_and_each_other_task_on_128(compose):
    """The held-out sets the README's default-run figures are on: 128 images per task on seed 12345, and 512
    for detection on its own seed (the one that replaced 12345's first 128, the top of the README)."""
    val = compose().task.val.parts
    sizes = {name: (val[name].n, val[name].seed) for name in ("grounding", "counting", "ocr", "detection")}
    assert sizes == {
        "grounding": (128, 12345),
        "counting": (128, 12345),
        "ocr": (128, 12345),
        "detection": (512, 20261204),
    }


@pytest.mark.parametrize("domain", ["source", "zoom"])
def test_a_domain_applies_alike_to_a_single_task_and_to_its_part_of_the_mixture(compose, domain):
    """Each task yaml reads its knobs from the domain, so task=<name> and task=perception's part agree."""
    mixture = compose(f"domain={domain}")
    for name in ("grounding", "counting", "ocr", "detection"):
        single = compose(f"task={name}", f"domain={domain}")
        assert single.task.train.knobs == mixture.task.train.parts[name].knobs, name
        chosen = OmegaConf.to_container(mixture.domain[name])
        assert {k: single.task.train.knobs[k] for k in chosen} == chosen, name


def test_the_build_stages_train_on_the_source_domain_the_generators_defaults(compose):
    """Every build stage selects domain=source, whose grounding knobs are the generator's own defaults (the
    first stage was built with them before domains existed) and whose OCR vocabulary is all of WORDS."""
    import inspect

    from pr1.data import synthetic

    builds = sorted(p.stem for p in (CONF / "experiment").glob("build_*.yaml"))
    assert len(builds) == 6, builds
    for build in builds:
        assert compose(f"experiment={build}").domain.name == "source", build
    source = compose("domain=source").domain
    grounding = inspect.signature(synthetic.make_grounding).parameters
    assert (source.grounding.min_frac, source.grounding.max_frac) == (
        grounding["min_frac"].default,
        grounding["max_frac"].default,
    )
    assert source.ocr.words is None  # every word of synthetic.WORDS


def _portable(node):
    """A resolved config with the checkout's location taken out of its embedded-asset paths."""
    if isinstance(node, dict):
        return {k: _portable(v) for k, v in node.items() if k != "paths"}
    if isinstance(node, list):
        return [_portable(v) for v in node]
    if isinstance(node, str) and "/pr1/assets/" in node:
        return "pr1/assets/" + node.split("/pr1/assets/", 1)[1]
    return node


# Keys added to the config after committed sweeps ran, absent from their records; each says how a run runs,
# not what it measures (data.val_batch_size: they validated 16 prompts per generate, which gives the same
# greedy answers, tests/test_eval.py), so they are also left out of arm ids (arm_exclude).
ADDED_KEYS = {"data.val_batch_size"}


def _drop_added(recorded: dict, now: dict) -> dict:
    """`now` without the ADDED_KEYS (and their arm_exclude entries) that `recorded` predates."""
    now = copy.deepcopy(now)
    for key in ADDED_KEYS:
        if OmegaConf.select(OmegaConf.create(recorded), key) is None:
            *parents, leaf = key.split(".")
            node = now
            for p in parents:
                node = node[p]
            del node[leaf]
            now["arm_exclude"].remove(key)
    return now


def _differ(a, b, prefix: str = "") -> set[str]:
    """The dotted keys at which two resolved configs differ (leaves, or a whole node present on one side)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {d for k in a.keys() | b.keys() for d in _differ(a.get(k), b.get(k), f"{prefix}{k}.")}
    return set() if a == b else {prefix.rstrip(".")}


@pytest.mark.parametrize("sweep", ["headline", "objective", "detection_reward", "model_size"])
def test_committed_sweep_records_are_what_the_sweep_file_composes(compose, sweep):
    """Rerunning a committed sweep reproduces its runs' configs (the device-run sweeps included): each run's
    config.yaml equals the config its recorded overrides compose now, apart from the machine's paths, the keys
    added since (ADDED_KEYS), and, for detection_reward, the `domain` node that was added to the config
    after it ran (its knobs unchanged)."""
    import json

    import yaml

    runs = sorted((ROOT / "results" / sweep).glob("*/seed*/config.yaml"))
    assert len(runs) >= 6, sweep
    for path in runs:
        recorded = _portable(yaml.safe_load(path.read_text()))
        overrides = json.loads((path.parent / "metrics.json").read_text())["overrides"]
        cfg = compose(*overrides)
        now = _portable(
            OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
        )
        if sweep == "detection_reward":
            assert now.pop("domain")["name"] == "source"
        assert _differ(recorded, _drop_added(recorded, now)) == set(), path
