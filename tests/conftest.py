"""Shared fixtures: the embedded tiny model/processor and a small synthetic grounding set, built offline."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers import CONF, FAMILY_TINY, SLURM_PARTITION


@pytest.fixture(scope="session")
def tiny_processor():
    from pr1.tiny import build_processor

    return build_processor()


@pytest.fixture
def tiny_model(tiny_processor):
    """A fresh, small random Qwen2-VL (real class) for tests that modify weights."""
    from pr1.tiny import build_model

    return build_model(
        tiny_processor, hidden_size=64, num_layers=2, num_heads=2, vision_depth=1, vision_embed_dim=32
    )


@pytest.fixture(scope="session")
def grounding_records(tmp_path_factory):
    from pr1.data.synthetic import load_or_make

    root = tmp_path_factory.mktemp("data")
    return load_or_make("grounding", n=16, seed=0, root=root, knobs={"size": 112})


@pytest.fixture
def compose():
    """Compose pr1's Hydra config with overrides, as `python -m pr1.run` would (hydra node included)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    import pr1.run  # noqa: F401  (registers the pr1.* resolvers)

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} resolve as in a real run
        return cfg

    return _compose


@pytest.fixture
def save_run_config(compose):
    """`save(run_dir, *overrides)`: write the config.yaml pr1.run would save for those overrides."""
    from omegaconf import OmegaConf, open_dict

    def save(run_dir, *overrides: str) -> None:
        cfg = compose(*overrides)
        with open_dict(cfg):
            del cfg["hydra"]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    return save


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Require a responding cluster with partition `cpu`: fail under PR1_REQUIRE_SLURM=1, else skip."""
    problem = None
    if shutil.which("sinfo") is None:
        problem = "sinfo is not installed"
    else:
        proc = subprocess.run(
            ["sinfo", "-h", "-p", SLURM_PARTITION, "-o", "%a %t"], capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            problem = f"sinfo failed (exit {proc.returncode}): {proc.stderr.strip()}"
        elif not proc.stdout.strip():
            problem = f"sinfo shows no partition {SLURM_PARTITION!r}"
    if problem is None:
        return
    message = f"no local SLURM cluster: {problem}. Start one with `bash slurm/local-cluster.sh up` (as root)."
    if os.environ.get("PR1_REQUIRE_SLURM") == "1":
        pytest.fail(f"PR1_REQUIRE_SLURM=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def family_checkpoints(tmp_path_factory) -> dict:
    """A tiny random checkpoint of every Qwen-VL family, written with save_pretrained (load: model.path=)."""
    from pr1.tiny import FAMILIES, build_tiny

    root = tmp_path_factory.mktemp("families")
    return {family: build_tiny(root / family, family=family, **FAMILY_TINY) for family in FAMILIES}
