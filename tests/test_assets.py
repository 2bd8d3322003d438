"""The embedded checkpoints: every one a config names has a rebuild recipe made of real experiments whose
last stage writes it, and a missing one is reported with that recipe before anything loads."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest

import pr1.schema
from pr1.model import ASSET_RECIPES, ASSETS
from tests.helpers import ROOT

CONF = ROOT / "conf"


def named_assets() -> set[str]:
    return {
        name
        for path in [*CONF.rglob("*.yaml"), *(ROOT / "sweeps").rglob("*.yaml")]
        for name in re.findall(r"\$\{pr1\.asset:([\w.-]+)\}", path.read_text())
    }


def test_every_asset_a_config_names_has_a_recipe():
    names = named_assets()
    assert {"tiny-perception-sft", "tiny4x-perception-sft"} <= names
    assert names <= set(ASSET_RECIPES), names - set(ASSET_RECIPES)


@pytest.mark.parametrize("name", sorted(ASSET_RECIPES))
def test_each_recipe_runs_existing_experiments_and_its_last_one_writes_the_asset(compose, name):
    stages = re.findall(r"python -m pr1\.run experiment=(\w+)", ASSET_RECIPES[name])
    assert stages, ASSET_RECIPES[name]
    assert all((CONF / "experiment" / f"{s}.yaml").is_file() for s in stages)
    assert compose(f"experiment={stages[-1]}").export_dir == str(ASSETS / name)
    for before, after in pairwise(stages):  # each stage starts from the one before it
        assert compose(f"experiment={after}").model.path == compose(f"experiment={before}").export_dir


def test_a_missing_embedded_checkpoint_names_its_own_recipe(tmp_path, monkeypatch):
    monkeypatch.setattr(pr1.schema, "ASSETS", tmp_path)
    problem = pr1.schema.model_path_problem(str(tmp_path / "tiny4x-perception-sft"))
    assert problem is not None and "embedded checkpoint missing" in problem
    assert ASSET_RECIPES["tiny4x-perception-sft"] in problem
