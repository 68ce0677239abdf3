"""The example configs in configs/: each loads for its stage, documents every key, points at real data.

    python -m pytest -q tests/workbench/train/test_configs.py

configs/STAGE/PRESET.yaml is read with `load_config(STAGE, path)`, the way `workbench train STAGE
--config path` reads it (configs/data holds `workbench data prepare` configs, configs/recipes pipeline recipes: both skipped).
"""

import dataclasses
import re

import pytest
import yaml

from tests.conftest import ROOT
from workbench.train.config import CONFIGS, STAGES, load_config

FILES = sorted(p for p in (ROOT / "configs").glob("*/*.yaml") if p.parent.name not in ("data", "recipes"))


def test_every_stage_has_a_tiny_and_a_small_config():
    names = {(p.parent.name, p.stem) for p in FILES}
    for stage in STAGES:
        assert {(stage, "tiny"), (stage, "small")} <= names, f"configs/{stage}/ needs tiny.yaml and small.yaml"


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads_for_its_stage_and_comments_every_key(path):
    stage = path.parent.name
    assert stage in STAGES, f"{path}: configs/<stage>/ must be one of {STAGES}"
    cfg = load_config(stage, path)
    assert cfg.stage == stage
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.match(r"^[a-z_]+:", line):  # a top-level setting: it says what it does on its own line
            assert "#" in line, f"{path.name}: {line.split(':')[0]} has no comment"


@pytest.mark.parametrize("stage", STAGES)
def test_tiny_config_lists_every_setting_and_its_data_exists(stage):
    path = ROOT / "configs" / stage / "tiny.yaml"
    keys = set(yaml.safe_load(path.read_text(encoding="utf-8")))
    fields = {f.name for f in dataclasses.fields(CONFIGS[stage])}
    assert fields - keys == set(), f"add these settings, with a comment, to {path}: {sorted(fields - keys)}"
    cfg = load_config(stage, path)
    assert (ROOT / cfg.data).exists(), cfg.data  # run from the repository root, as the file says
    assert cfg.device == "auto" and not cfg.compile  # a CPU runs it as it is
