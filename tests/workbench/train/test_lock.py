"""The run lock: one trainer per run directory, stale locks taken over, remote ones refused.

    python -m pytest -q tests/workbench/train/test_lock.py

The lock's own rules are tested on empty folders; then the engine under it: two trainers in two
threads of one process, and two real `workbench train --resume` processes.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE
from tests.workbench.train.conftest import run
from workbench.errors import WorkbenchError
from workbench.train.lock import LOCK, RunLock, process_start, read_lock


def write_lock(run_dir: Path, **fields) -> Path:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": process_start(os.getpid()),
            "since": "2025-01-02 10:00:00 UTC", "what": "workbench train sft --resume x", "token": "t", **fields}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK).write_text(json.dumps(info))
    return run_dir / LOCK


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has it now (pids are not reused this fast)


def tiny(tok, *more):
    return [f"tokenizer={tok}", f"data={SAMPLE / 'text.jsonl'}", "model={n_layers: 2}", "seq_len=32", "batch_size=2",
            "eval_every=0", "save_every=0", "tensorboard=false", *more]


# ------------------------------------------------------------------------------------ the lock itself
def test_the_lock_names_its_holder_and_is_gone_after_release(tmp_path):
    run_dir = tmp_path / "new" / "run"
    with RunLock(run_dir, what="workbench train pretrain") as lock:
        info = read_lock(run_dir)
        assert info.alive and info.local and info.pid == os.getpid() and info.host == socket.gethostname()
        assert info.what == "workbench train pretrain" and info.since
        assert f"pid {os.getpid()} on {socket.gethostname()} since {info.since} (workbench train pretrain)" == \
            info.describe()
        assert lock.took_over is None
    assert read_lock(run_dir) is None
    assert not (tmp_path / "new").exists()  # the folders made for the lock go with it when nothing else was written


def test_a_second_holder_in_the_same_process_is_refused_with_the_holders_name(tmp_path):
    with RunLock(tmp_path, what="the TUI"):
        with pytest.raises(WorkbenchError, match=rf"is being trained by pid {os.getpid()} on .* \(the TUI\); wait"):
            RunLock(tmp_path).acquire()
        assert read_lock(tmp_path).alive  # the refused one did not touch the holder's lock


@pytest.mark.parametrize("fields, reason", [
    (lambda: {"pid": dead_pid()}, "that process is gone"),
    (lambda: {"proc_start": process_start(os.getpid()) - 1}, "its pid now belongs to another process"),
    (lambda: {"boot_id": "a-boot-before-a-reboot"}, "rebooted"),
])
def test_a_stale_lock_is_detected_and_taken_over(tmp_path, fields, reason):
    write_lock(tmp_path, **fields())
    stale = read_lock(tmp_path)
    assert not stale.alive and reason in stale.reason
    with RunLock(tmp_path) as lock:
        assert lock.took_over is not None and lock.took_over.raw == stale.raw
        assert read_lock(tmp_path).alive and json.loads((tmp_path / LOCK).read_text())["token"] == lock.token
    assert read_lock(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no takeover mutex or temporary left


def test_a_lock_from_another_host_is_refused_with_how_to_remove_it(tmp_path):
    lock = write_lock(tmp_path, host="gpu-box-7", pid=4242)
    assert read_lock(tmp_path).alive and not read_lock(tmp_path).local
    with pytest.raises(WorkbenchError, match=rf"locked by pid 4242 on gpu-box-7 .*cannot be checked.*delete {lock}"):
        RunLock(tmp_path).acquire()
    assert lock.exists()


def test_a_half_written_lock_waits_and_an_old_broken_one_is_stale(tmp_path):
    (tmp_path / LOCK).write_text("")  # a creator between O_EXCL and its write
    with pytest.raises(WorkbenchError, match="being locked by another trainer right now"):
        RunLock(tmp_path).acquire()
    old = time.time() - 60
    os.utime(tmp_path / LOCK, (old, old))  # ... or one killed in between, long ago
    assert not read_lock(tmp_path).alive
    with RunLock(tmp_path) as lock:
        assert lock.took_over is not None
    assert read_lock(tmp_path) is None


def test_release_leaves_a_lock_that_another_holder_has_since_taken(tmp_path):
    lock = RunLock(tmp_path).acquire()
    write_lock(tmp_path, token="someone-else")
    lock.release()
    assert json.loads((tmp_path / LOCK).read_text())["token"] == "someone-else"


def test_only_one_of_many_threads_racing_for_a_stale_lock_gets_it(tmp_path):
    write_lock(tmp_path, pid=dead_pid())
    won, refused, go = [], [], threading.Barrier(6)

    def take():
        go.wait()
        try:
            won.append(RunLock(tmp_path).acquire())
        except WorkbenchError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=take) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 5, refused
    assert json.loads((tmp_path / LOCK).read_text())["token"] == won[0].token


# ------------------------------------------------------------------------------------ the engine under it
def snapshot(run_dir: Path) -> dict:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != LOCK}


def test_a_second_engine_on_a_training_run_is_refused_before_it_changes_anything(tmp_path, small_tok):
    from workbench.train.engine import Control, train

    out = tmp_path / "run"
    run("pretrain", out, *tiny(small_tok, "max_steps=2"))
    assert read_lock(out) is None  # released at the end
    holding, release, result = threading.Event(), threading.Event(), {}

    def hold_at_step_3(event):
        if event["event"] == "train" and event["step"] == 3:
            holding.set()
            release.wait(30)

    def first():
        result["first"] = train(None, out, resume=True, overrides=["max_steps=4"], callbacks=[hold_at_step_3],
                                control=Control())

    worker = threading.Thread(target=first, name="tui-worker")
    worker.start()
    try:
        assert holding.wait(30)
        before = snapshot(out)
        holder = read_lock(out)
        assert holder.alive and holder.pid == os.getpid() and "thread tui-worker" in holder.what
        with pytest.raises(WorkbenchError, match=rf"{out} is being trained by pid {os.getpid()} on "):
            train(None, out, resume=True, overrides=["max_steps=6"])
        assert snapshot(out) == before  # config.yaml, metrics.jsonl, lineage.json untouched
    finally:
        release.set()
        worker.join(60)
    assert result["first"]["status"] == "finished" and result["first"]["step"] == 4
    assert read_lock(out) is None


def test_the_lock_is_released_however_the_run_ends_and_a_takeover_is_logged(tmp_path, small_tok):
    from workbench.train.engine import train
    from workbench.train.config import load_config

    out = tmp_path / "run"

    def boom(event):
        if event["event"] == "train" and event["step"] == 1:
            raise RuntimeError("a bug in a callback")

    with pytest.raises(RuntimeError):
        train(load_config("pretrain", None, tiny(small_tok, "max_steps=3")), out, callbacks=[boom])
    assert json.loads((out / "lineage.json").read_text())["status"] == "crashed" and read_lock(out) is None

    def interrupt(event):
        if event["event"] == "train" and event["step"] == 1:
            raise KeyboardInterrupt

    assert train(None, out, resume=True, callbacks=[interrupt])["status"] == "stopped"
    assert read_lock(out) is None

    write_lock(out, pid=dead_pid(), what="workbench train pretrain --resume old")  # a trainer killed -9
    assert train(None, out, resume=True)["status"] == "finished" and read_lock(out) is None
    log = (out / "train.log").read_text()
    assert "took over the stale run lock of pid " in log and "(workbench train pretrain --resume old): that " \
        "process is gone" in log


def workbench_cmd() -> list[str]:
    script = Path(sys.executable).parent / "workbench"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "app.cli"]


def test_two_workbench_train_resume_processes_the_second_is_refused(tmp_path, small_tok):
    out = tmp_path / "run"
    run("pretrain", out, *tiny(small_tok, "max_steps=1"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([*workbench_cmd(), "train", "pretrain", "--resume", str(out), "max_steps=1000000"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while (holder := read_lock(out)) is None or holder.pid != first.pid:
            assert first.poll() is None and time.time() < deadline, first.stdout.read() if first.poll() else "timeout"
            time.sleep(0.1)
        assert holder.alive and f"--resume {out}" in holder.what
        second = subprocess.run([*workbench_cmd(), "train", "pretrain", "--resume", str(out)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        message = " ".join((second.stdout + second.stderr).split())  # rich wraps long lines
        assert second.returncode == 1, message
        assert f"error: {out} is being trained by pid {first.pid} on {socket.gethostname()} since" in message
        assert f"--resume {out} max_steps=1000000)" in message
    finally:
        first.send_signal(signal.SIGINT)  # the first stops gracefully (saves a checkpoint)
        output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    assert "stopped: pretrain" in output and read_lock(out) is None
    assert json.loads((out / "lineage.json").read_text())["status"] == "stopped"
