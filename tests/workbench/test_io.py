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
