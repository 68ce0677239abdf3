"""atomic_dir: never half-written, never deletes what it must not."""

import os

import pytest

from workbench.errors import WorkbenchError
from workbench.io import atomic_dir, atomic_write_text


def test_success_renames_into_place_and_failure_leaves_the_old_directory(tmp_path):
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("1")
    assert (tmp_path / "out" / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out", force=True) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("crash mid-write")
    assert (tmp_path / "out" / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_dir(tmp_path / "out", force=True) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b"]
    assert oct((tmp_path / "out").stat().st_mode & 0o777) != "0o700"  # not mkdtemp's private mode


def test_refuses_the_current_directory_its_parents_and_folders_holding_the_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus.jsonl").write_text("{}\n")
    for target in (".", "..", ""):
        with pytest.raises(WorkbenchError, match="current directory"):
            with atomic_dir(target, force=True):
                pass
    with pytest.raises(WorkbenchError, match="contains the input"):
        with atomic_dir("data", force=True, protect=["data/corpus.jsonl"]):
            pass
    assert (tmp_path / "data" / "corpus.jsonl").exists()


def test_atomic_write_text(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "hello")
    assert (tmp_path / "f.txt").read_text() == "hello" and os.listdir(tmp_path) == ["f.txt"]


def test_atomic_writes_get_the_usual_permissions_not_mkstemps_private_ones(tmp_path):
    import os

    from workbench.io import atomic_write_bytes, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.png", b"\x89PNG")
        atomic_write_text(tmp_path / "b.md", "# hi")
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").read_bytes() == b"\x89PNG" and (tmp_path / "b.md").read_text() == "# hi"
    assert {(tmp_path / n).stat().st_mode & 0o777 for n in ("a.png", "b.md")} == {0o644}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def _checkpoint(out):
    from workbench.model import Transformer, preset
    from workbench.model.checkpoint import save_checkpoint

    save_checkpoint(Transformer(preset("tiny", vocab_size=300)), out)
    return ["model.safetensors", "config.json"]


def _lora_adapters(out):
    from workbench.model import Transformer, preset
    from workbench.model.checkpoint import save_checkpoint
    from workbench.model.lora import LoRAConfig, add_lora

    model = Transformer(preset("tiny", vocab_size=300))
    save_checkpoint(model, out.parent / "base")
    add_lora(model, LoRAConfig(rank=2), base=out.parent / "base")
    save_checkpoint(model, out)
    return ["adapter.safetensors", "config.json"]


def _quality_model(out):
    pytest.importorskip("sklearn")
    import numpy as np

    from workbench.data.quality_model import QualityModel, QualityTrainConfig

    features = QualityTrainConfig(n_features=2**8).features()
    QualityModel(features, np.zeros(2 * 2**8, np.float32), 0.0).save(out)
    return ["quality.safetensors", "quality.json"]


@pytest.mark.parametrize("save", [_checkpoint, _lora_adapters, _quality_model])
def test_saved_models_are_readable_by_others_though_save_file_writes_0600(tmp_path, save):
    old = os.umask(0o022)
    try:
        files = save(tmp_path / "out")
    finally:
        os.umask(old)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(files)
    assert {n: (tmp_path / "out" / n).stat().st_mode & 0o777 for n in files} == {n: 0o644 for n in files}
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_permissions_are_only_widened_to_the_umasks_and_links_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.write_text("x")
    outside.chmod(0o600)
    old = os.umask(0o027)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "private").write_text("p")
            (tmp / "sub" / "private").chmod(0o600)
            (tmp / "tool").write_text("#!/bin/sh\n")
            (tmp / "tool").chmod(0o750)
            (tmp / "link").symlink_to(outside)
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert (out / "sub").stat().st_mode & 0o777 == 0o750 and (out / "sub" / "private").stat().st_mode & 0o777 == 0o640
    assert (out / "tool").stat().st_mode & 0o777 == 0o750  # already as open as the umask allows: untouched
    assert outside.stat().st_mode & 0o777 == 0o600
