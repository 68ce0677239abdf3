"""Listing run directories: statuses from lineage and the lock, last metrics, the lineage tree, delete.

    python -m pytest -q tests/workbench/train/test_runs.py

`make_runs` writes a fake pipeline (fixed names and dates) that the Runs pane's tests reuse.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLE
from tests.workbench.train.conftest import run
from workbench.errors import WorkbenchError
from workbench.train import runs as R
from workbench.train.lock import LOCK, RunLock, process_start


def _lock(run_dir: Path, pid: int, **more) -> None:
    (run_dir / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "2025-01-03 08:00:00 UTC",
                                            "what": "workbench train ppo", "token": "x", **more}))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def make_run(root: Path, name: str, stage: str, status: str, started: str, *, step: int, max_steps: int,
             parent: str | None = None, reward_model: str | None = None, error: str | None = None,
             train: dict | None = None, evals: dict | None = None) -> Path:
    """A run directory as the engine leaves it: lineage.json, config.yaml, metrics.jsonl (no weights)."""
    d = root / name
    d.mkdir(parents=True)
    ckpt = lambda run_name: str((root / run_name / "checkpoints" / "step-000060").resolve())  # noqa: E731
    inputs = {"data": "sample_data/chat.jsonl"}
    if reward_model:
        inputs["reward_model"] = {"path": ckpt(reward_model), "sha256": "0" * 64}
    lineage = {"stage": stage, "run_dir": str(d.resolve()), "inputs": inputs, "started": started, "resumes": [],
               "parent": {"path": ckpt(parent), "sha256": "0" * 64, "stage": None, "kind": "policy", "step": 60}
               if parent else None, "status": status, "ended": None if status == "running" else started[:14] + "45:00+00:00"}
    if status != "running":
        lineage.update(step=step, error=error)
    (d / "lineage.json").write_text(json.dumps(lineage, indent=2))
    (d / "config.yaml").write_text(f"stage: {stage}\nmax_steps: {max_steps}\nlr: 0.0003\n")
    rows = [{"event": "start", "step": 0, "stage": stage, "max_steps": max_steps}]
    for s in range(1, step + 1):
        rows.append({"event": "train", "step": s, "stage": stage, "loss": round(4.0 - s / 40, 4),
                     "lr": 3e-4, **(train or {})})
        if evals is not None and s % 20 == 0:
            rows.append({"event": "eval", "step": s, "stage": stage, "val/loss": round(4.1 - s / 40, 4), **evals})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "checkpoints" / "step-000060").mkdir(parents=True)
    return d


def make_runs(root: Path) -> Path:
    """A pipeline (pretrain -> sft -> rm / dpo / ppo with rm as PPO's reward model), an lr sweep with a
    crashed and a failed run, and a broken one. ppo holds a live lock (this test process)."""
    day = "2025-01-0{}T{}:00:00+00:00"
    make_run(root, "pipeline/pretrain", "pretrain", "finished", day.format(2, "09"), step=60, max_steps=60,
             evals={})
    make_run(root, "pipeline/sft", "sft", "finished", day.format(2, "10"), step=60, max_steps=60,
             parent="pipeline/pretrain", evals={})
    make_run(root, "pipeline/rm", "rm", "finished", day.format(2, "11"), step=60, max_steps=60,
             parent="pipeline/sft", train={"accuracy": 0.75, "margin": 0.5})
    make_run(root, "pipeline/dpo", "dpo", "stopped", day.format(2, "12"), step=40, max_steps=100,
             parent="pipeline/sft", train={"rewards/accuracies": 0.625})
    ppo = make_run(root, "pipeline/ppo", "ppo", "running", day.format(3, "08"), step=25, max_steps=200,
                   parent="pipeline/sft", reward_model="pipeline/rm", train={"objective/scores": 0.5})
    _lock(ppo, os.getpid(), proc_start=process_start(os.getpid()))
    crashed = make_run(root, "lr-sweep/sft-lr3e-4", "sft", "running", day.format(2, "13"), step=33, max_steps=60,
                       parent="pipeline/pretrain")
    _lock(crashed, dead_pid())
    make_run(root, "lr-sweep/sft-lr1e-2", "sft", "failed", day.format(2, "14"), step=12, max_steps=60,
             parent="pipeline/pretrain", error="stopped at step 12: 8 steps in a row had a non-finite loss")
    (root / "broken").mkdir()
    (root / "broken" / "lineage.json").write_text('{"stage": "sft", "sta')  # cut short
    (root / ".hidden" / "run").mkdir(parents=True)
    (root / ".hidden" / "run" / "config.yaml").write_text("stage: sft\n")
    return root


@pytest.fixture
def root(tmp_path):
    return make_runs(tmp_path / "runs")


def by_name(runs):
    return {r.name: r for r in runs}


def test_scan_lists_nested_runs_newest_first_with_statuses_from_lineage_and_lock(root):
    runs = R.scan_runs(root)
    assert [r.name for r in runs] == ["pipeline/ppo", "lr-sweep/sft-lr1e-2", "lr-sweep/sft-lr3e-4", "pipeline/dpo",
                                      "pipeline/rm", "pipeline/sft", "pipeline/pretrain", "broken"]
    s = by_name(runs)
    assert {n: r.status for n, r in s.items()} == {
        "pipeline/ppo": "running", "lr-sweep/sft-lr1e-2": "failed", "lr-sweep/sft-lr3e-4": "crashed",
        "pipeline/dpo": "stopped", "pipeline/rm": "finished", "pipeline/sft": "finished",
        "pipeline/pretrain": "finished", "broken": "unknown"}
    assert s["pipeline/ppo"].holder.pid == os.getpid()
    assert "the trainer died" in s["lr-sweep/sft-lr3e-4"].error and "process is gone" in s["lr-sweep/sft-lr3e-4"].error
    assert s["broken"].error.startswith("lineage.json is unreadable") and s["broken"].stage is None
    assert s["lr-sweep/sft-lr1e-2"].error.startswith("stopped at step 12")
    assert (s["pipeline/dpo"].step, s["pipeline/dpo"].max_steps) == (40, 100)
    assert (s["pipeline/ppo"].step, s["pipeline/ppo"].max_steps) == (25, 200)  # from metrics: lineage has no step yet
    assert s["pipeline/sft"].parent == (root / "pipeline" / "pretrain").resolve()
    assert s["pipeline/ppo"].reward_model == (root / "pipeline" / "rm").resolve()


def test_lineage_running_without_any_lock_is_crashed_and_a_live_lock_is_running_whatever_lineage_says(root):
    (root / "lr-sweep" / "sft-lr3e-4" / LOCK).unlink()
    assert by_name(R.scan_runs(root))["lr-sweep/sft-lr3e-4"].status == "crashed"
    with RunLock(root / "pipeline" / "dpo"):  # a resume being set up: lineage still says stopped
        assert by_name(R.scan_runs(root))["pipeline/dpo"].status == "running"
    assert by_name(R.scan_runs(root))["pipeline/dpo"].status == "stopped"


def test_last_metrics_come_from_the_end_of_the_file_and_a_partial_line_is_skipped(root, monkeypatch):
    s = by_name(R.scan_runs(root))
    assert s["pipeline/sft"].loss == 2.5 and s["pipeline/sft"].metrics == {"val/loss": 2.6}
    assert R.metrics_text(s["pipeline/rm"]) == "loss 2.5  accuracy 0.75"
    assert R.metrics_text(s["pipeline/ppo"]) == "loss 3.375  objective/scores 0.5"
    assert R.metrics_text(s["pipeline/ppo"], short=True) == "loss 3.375 scores 0.5"
    assert R.metrics_text(s["pipeline/sft"], short=True) == "loss 2.5 val/loss 2.6"
    metrics = root / "pipeline" / "ppo" / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"event": "train", "step": 26, "lo')  # the trainer is writing this line right now
    assert by_name(R.scan_runs(root))["pipeline/ppo"].step == 25
    # Reading from the end: a long history is not read whole (only the last chunk, found at once).
    big = root / "pipeline" / "pretrain" / "metrics.jsonl"
    with open(big, "a") as f:
        for s_ in range(61, 20_000):
            f.write(json.dumps({"event": "train", "step": s_, "stage": "pretrain", "loss": 1.0}) + "\n")
        f.write(json.dumps({"event": "eval", "step": 20_000, "stage": "pretrain", "val/loss": 0.5}) + "\n")
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, m="r", *a, **k: (reads.append(m), real_open(p, m, *a, **k))[1])
    last = R.last_records(big)
    assert last["train"]["step"] == 19_999 and last["eval"]["val/loss"] == 0.5 and reads == ["rb"]
    assert big.stat().st_size > 50 * R.TAIL_CHUNK


def test_an_eval_far_back_is_found_by_reading_further(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"event": "eval", "step": 1, "val/loss": 3.0}] + [{"event": "train", "step": s, "loss": 1.0}
                                                              for s in range(2, 3000)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert R.last_records(path) == {"train": rows[-1], "eval": rows[0]}
    # An eval line cut in two by the edge of the first chunk read is put back together.
    evaluation = json.dumps({"event": "eval", "step": 1, "val/loss": 3.0, "note": "x" * 150}) + "\n"
    train = [json.dumps({"event": "train", "step": s, "loss": 1.0}) + "\n" for s in range(2, 2000)]
    tail = []
    while sum(map(len, tail)) < R.TAIL_CHUNK - 100:
        tail.append(train[len(tail)])
    path.write_text(evaluation + "".join(tail))
    assert len(path.read_bytes()) - R.TAIL_CHUNK in range(1, len(evaluation) - 1)  # the edge is inside it
    assert R.last_records(path)["eval"]["step"] == 1
    path.write_text("not json\n\x00\x01\n")
    assert R.last_records(path) == {}


def test_the_tree_goes_pretrain_sft_then_rm_dpo_ppo_and_outside_parents_make_roots(root):
    runs = R.scan_runs(root)

    def shape(nodes):
        return [(n.info.name, shape(n.children)) for n in nodes]

    assert shape(R.lineage_tree(runs)) == [
        ("pipeline/pretrain", [("pipeline/sft", [("pipeline/rm", []), ("pipeline/dpo", []), ("pipeline/ppo", [])]),
                               ("lr-sweep/sft-lr3e-4", []), ("lr-sweep/sft-lr1e-2", [])]),
        ("broken", [])]
    sft_only = [r for r in runs if r.name.startswith("pipeline/") and r.stage != "pretrain"]
    assert [n.info.name for n in R.lineage_tree(sft_only)] == ["pipeline/sft"]  # its parent is not listed
    s = by_name(runs)
    assert [r.name for r in R.children_of(s["pipeline/rm"], runs)] == ["pipeline/ppo"]  # rm scores ppo


def test_resume_command_and_which_runs_can_be_resumed(root):
    s = by_name(R.scan_runs(root))
    assert R.resume_command(s["pipeline/dpo"]) == f"workbench train dpo --resume {root / 'pipeline' / 'dpo'}"
    assert R.why_not_resumable(s["pipeline/dpo"]) is None
    assert R.why_not_resumable(s["lr-sweep/sft-lr3e-4"]) is None and R.why_not_resumable(s["lr-sweep/sft-lr1e-2"]) is None
    assert "is training right now (pid" in R.why_not_resumable(s["pipeline/ppo"])
    assert R.why_not_resumable(s["pipeline/sft"]).endswith(f"--resume {root / 'pipeline' / 'sft'} max_steps=120")
    assert "no config.yaml" in R.why_not_resumable(s["broken"])
    with pytest.raises(WorkbenchError, match="stage is unknown"):
        R.resume_command(s["broken"])
    odd = R.RunInfo(path=Path("runs/my run"), name="my run", stage="sft")
    assert R.resume_command(odd) == "workbench train sft --resume 'runs/my run'"


def test_delete_refuses_non_runs_and_running_runs_and_removes_the_rest(root):
    with pytest.raises(WorkbenchError, match="not a run directory"):
        R.delete_run(root / "pipeline")
    with pytest.raises(WorkbenchError, match="is being trained by pid"):
        R.delete_run(root / "pipeline" / "ppo")
    (root / "link").symlink_to(root / "pipeline" / "dpo")
    with pytest.raises(WorkbenchError, match="symbolic link"):
        R.delete_run(root / "link")
    assert (root / "pipeline" / "ppo" / "metrics.jsonl").exists() and (root / "pipeline" / "dpo").exists()
    R.delete_run(root / "lr-sweep" / "sft-lr3e-4")  # crashed: its stale lock does not protect it
    R.delete_run(root / "broken")
    assert sorted(p.name for p in (root / "lr-sweep").iterdir()) == ["sft-lr1e-2"]  # nothing hidden left behind
    assert "broken" not in os.listdir(root)
    assert [r.name for r in R.scan_runs(root)][:2] == ["pipeline/ppo", "lr-sweep/sft-lr1e-2"]


def test_a_missing_or_empty_root_has_no_runs_and_a_run_dir_as_root_lists_itself(tmp_path, root):
    assert R.scan_runs(tmp_path / "nope") == [] and R.scan_runs(tmp_path / "runs" / "lr-sweep" / "x") == []
    (tmp_path / "empty").mkdir()
    assert R.scan_runs(tmp_path / "empty") == []
    assert [r.name for r in R.scan_runs(root / "pipeline" / "dpo")] == ["dpo"]


def test_display_helpers(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    assert R.local_time(None) == "" and R.local_time("garbage-that-is-long") == "garbage-that-is-"
    assert R.time_span("2025-01-02T14:00:00+00:00", "2025-01-02T14:45:10+00:00") == "2025-01-02 14:00 → 14:45"
    assert R.time_span("2025-01-02T14:00:00+00:00", "2025-01-03T01:00:00+00:00") == \
        "2025-01-02 14:00 → 2025-01-03 01:00"
    assert R.time_span("2025-01-02T14:00:00+00:00", None) == "2025-01-02 14:00"
    assert R.steps_text(R.RunInfo(Path("x"), "x", step=3, max_steps=10)) == "3/10"
    assert R.steps_text(R.RunInfo(Path("x"), "x", max_steps=10)) == "?/10"
    assert R.short_number(1234) == "1,234" and R.short_number(0.123456) == "0.1235"
    assert R.status_counts([R.RunInfo(Path("a"), "a", status="running"), R.RunInfo(Path("b"), "b", status="running"),
                            R.RunInfo(Path("c"), "c"), R.RunInfo(Path("d"), "d", status="crashed")]).items() == \
        {"running": 2, "crashed": 1, "unknown": 1}.items()
    assert list(R.status_counts([R.RunInfo(Path("a"), "a", status="finished"),
                                 R.RunInfo(Path("b"), "b", status="crashed")])) == ["crashed", "finished"]


def test_a_real_tiny_run_reads_back_finished_with_its_parent(tmp_path, small_tok):
    root = tmp_path / "runs"
    common = ["batch_size=2", "eval_every=2", "eval_batches=1", "save_every=0", "tensorboard=false", "max_steps=2"]
    run("pretrain", root / "pre", f"data={SAMPLE / 'text.jsonl'}", f"tokenizer={small_tok}", "model={n_layers: 2}",
        "seq_len=32", *common)
    run("sft", root / "sft", f"init_from={root / 'pre'}", f"data={SAMPLE / 'chat.jsonl'}", "max_len=64", *common)
    s = by_name(R.scan_runs(root))
    assert (s["sft"].status, s["sft"].stage, s["sft"].step, s["sft"].max_steps) == ("finished", "sft", 2, 2)
    assert s["sft"].parent == (root / "pre").resolve() and s["sft"].loss > 0 and s["sft"].metrics["val/loss"] > 0
    assert [n.info.name for n in R.lineage_tree(list(s.values()))[0].children] == ["sft"]
    assert s["pre"].holder is None


def test_a_hand_edited_lineage_with_wrong_types_is_listed_and_does_not_hide_the_other_runs(tmp_path):
    """lineage.json with a number where a path belongs (or a list for the status) once raised in
    read_run, so the whole scan failed and the Runs pane showed no run at all."""
    good = tmp_path / "good"
    good.mkdir()
    (good / "lineage.json").write_text(json.dumps({"stage": "sft", "status": "finished"}))
    weird = tmp_path / "weird"
    weird.mkdir()
    (weird / "lineage.json").write_text(json.dumps({"status": ["x"], "stage": {"a": 1}, "started": 5,
                                                    "parent": {"path": 7}, "inputs": {"reward_model": {"path": 3}}}))
    (weird / "config.yaml").write_text("stage: 3\nmax_steps: [1]\n")
    runs = {r.name: r for r in R.scan_runs(tmp_path)}
    assert runs["good"].status == "finished"
    w = runs["weird"]
    assert (w.status, w.stage, w.started, w.parent, w.parent_checkpoint, w.max_steps) == ("unknown", None, None, None,
                                                                                           None, None)
    assert R.status_counts(list(runs.values())) == {"finished": 1, "unknown": 1}
