"""The registry contract: names = conf/reward/*.yaml, build validation, TRL signature, explain."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pr1.rewards import REGISTRY, build, explain
from pr1.rewards.registry import options_of

CONF = Path(__file__).resolve().parents[1] / "conf" / "reward"


def _options(name: str) -> dict:
    """A reward's yaml options (no interpolations: run-wide options are bound by the task)."""
    options = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"), resolve=True)
    assert options.pop("weight") == 1.0
    return options


def test_yaml_names_equal_registry():
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == sorted(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_yaml_options_build(name):
    options = _options(name)
    fn = build(name, **options)
    assert fn.__name__ == name
    params = inspect.signature(REGISTRY[name]).parameters
    assert set(options) <= set(params) and set(options) <= options_of(name)
    # the yaml documents the defaults (a YAML list [] stands for an empty-tuple default)
    defaults = {k: list(p.default) if isinstance(p.default, tuple) else p.default for k, p in params.items()}
    assert all(defaults[k] == v for k, v in options.items())
    assert not set(options) & {"thinking", "frame", "matcher"}  # run-wide: the task binds them once


def test_build_errors_name_the_valid_choices():
    with pytest.raises(KeyError, match="valid rewards"):
        build("ioux")
    with pytest.raises(TypeError, match="valid options"):
        build("iou", varient="iou")
    with pytest.raises(ValueError, match="acc50"):
        build("iou", variant="iou3")
    with pytest.raises(ValueError, match="frame"):
        build("iou", frame={"kind": "pixels"})
    with pytest.raises(ValueError, match="bool"):
        build("detection", labels="yes")
    with pytest.raises(ValueError, match="thinking"):
        build("format", thinking="false")
    with pytest.raises(ValueError, match="finite"):
        build("count", scale=float("nan"))


def test_trl_call_convention():
    """GRPOTrainer calls fn(prompts=, completions=, completion_ids=, **columns, trainer_state=, log_*=)."""
    fn = build("iou", thinking=False)
    out = fn(
        prompts=["p", "p"],
        completions=[[{"role": "assistant", "content": "[0,0,500,500]"}], "[0,0,500,500]"],
        completion_ids=[[1], [2]],
        solution=[[0, 0, 320, 240]] * 2,
        image_size=[[640, 480]] * 2,
        image=[None, None],
        trainer_state=None,
        log_extra=print,
        log_metric=print,
    )
    assert out == [1.0, 1.0]


def test_explain_shares_the_scoring():
    kw = {"solution": [[0, 0, 320, 240]] * 2, "image_size": [[640, 480]] * 2}
    completions = ["[0,0,500,500]", "[0,0,250,500]"]
    rows = explain("iou", completions, variant="iou2", **kw)
    assert [r["total"] for r in rows] == REGISTRY["iou"](completions, variant="iou2", **kw)
    assert rows[1]["iou"] == pytest.approx(0.5) and rows[1]["total"] == pytest.approx(0.25)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="completions"):
        REGISTRY["iou"](["a"], solution=[], image_size=[])


def test_schedule_and_integer_options_are_checked_when_the_reward_is_built():
    with pytest.raises(ValueError, match="reward 'iou': iou_schedule must start at step 0"):
        build("iou", iou_schedule=[[5, 0.5]])
    with pytest.raises(ValueError, match="reward 'detection': iou_schedule entries"):
        build("detection", iou_schedule=[[0, 0.5, 1]])
    with pytest.raises(ValueError, match="step must be an integer"):
        build("iou", step=1.5)
    assert build("iou", iou_schedule=[[0, 0.5], [10, 0.9]], step=3).__name__ == "iou"
