"""Every config group composes, instantiates what it declares, and rejects typos with the valid options."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from pr1 import rewards
from tests.conftest import CONF

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
    cfg = compose("thinking=true", "matcher=naive")
    assert cfg.task.rewards.format.thinking is True
    assert cfg.task.rewards.iou.thinking is True
    assert cfg.matcher.name == "naive"
    assert compose("thinking=false").task.rewards.format.thinking is False


def test_reward_options_build(compose):
    cfg = compose()
    for name, spec in cfg.task.rewards.items():
        opts = {k: v for k, v in OmegaConf.to_container(spec, resolve=True).items() if k != "weight"}
        assert callable(rewards.build(name, **opts))


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


@pytest.mark.parametrize("bad, match", [("thinking=maybe", "thinking"), ("mode=serve", "mode")])
def test_bad_values_fail_before_training(compose, bad, match):
    from pr1.run import validate

    with pytest.raises(ValueError, match=match):
        validate(compose(bad))
    validate(compose("thinking=true"))


@pytest.mark.parametrize(
    "ablation", sorted(p.stem for p in (CONF.parent / "sweeps" / "ablation").glob("*.yaml"))
)
def test_every_sweep_file_composes_with_a_grid(compose, ablation):
    cfg = compose(f"ablation={ablation}")
    assert cfg.sweep == ablation
    params = cfg.hydra.sweeper.params
    assert params and all("," in str(v) for v in params.values())
    for key, values in params.items():  # every swept value is itself a valid override
        for value in str(values).split(","):
            compose(f"ablation={ablation}", f"{key}={value}")
