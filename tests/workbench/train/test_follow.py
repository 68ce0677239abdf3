"""Following a run directory (workbench/train/follow.py): the tail, resets, dedup, series, ETA."""

import json
import os

import numpy as np
import pytest

from workbench.io import atomic_write_text
from workbench.train.follow import (MetricsFollower, RunHistory, downsample, ema, eta, load_history, parse_lines,
                                    tail_lines, tokens_per_s)


def train(step, loss=1.0, tokens=100, elapsed=None, **kw):
    return {"event": "train", "step": step, "stage": "sft", "loss": loss, "lr": 1e-3, "grad_norm": 0.5,
            "tokens": tokens, "step_time": 0.1, "elapsed": elapsed if elapsed is not None else 0.1 * step,
            "tokens_per_s": tokens / 0.1, **kw}


def line(record) -> str:
    return json.dumps(record) + "\n"


def append(path, text):
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


# ------------------------------------------------------------------------------------ the follower
def test_follower_reads_only_new_complete_lines_and_keeps_a_partial_one(tmp_path):
    f = MetricsFollower(tmp_path)
    path = tmp_path / "metrics.jsonl"
    assert f.poll().records == []  # no file yet: nothing, no error
    append(path, line(train(1)) + line(train(2)))
    assert [r["step"] for r in f.poll().records] == [1, 2]
    assert f.poll().records == []  # nothing new
    third = line(train(3))
    append(path, third[:17])  # a write in progress
    assert f.poll().records == []
    append(path, third[17:] + line(train(4))[:5])
    up = f.poll()
    assert [r["step"] for r in up.records] == [3] and not up.reset
    append(path, line(train(4))[5:])
    assert [r["step"] for r in f.poll().records] == [4]
    assert f.offset == path.stat().st_size


def test_follower_picks_up_a_file_that_appears_later(tmp_path):
    run = tmp_path / "not-yet"
    f = MetricsFollower(run)
    assert f.poll().records == [] and not f.poll().reset
    run.mkdir()
    append(run / "metrics.jsonl", line(train(1)))
    up = f.poll()
    assert [r["step"] for r in up.records] == [1] and not up.reset


def test_follower_resets_when_a_resume_replaces_the_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, "".join(line(train(s)) for s in range(1, 11)))
    f = MetricsFollower(tmp_path)
    assert len(f.poll().records) == 10
    # what RunFiles.truncate_metrics does on --resume from step 6: an atomic replace, then appends
    atomic_write_text(path, "".join(line(train(s)) for s in range(1, 7)))
    append(path, line(train(7, loss=0.25)))
    up = f.poll()
    assert up.reset and [r["step"] for r in up.records] == [1, 2, 3, 4, 5, 6, 7]
    assert up.records[-1]["loss"] == 0.25


def test_follower_resets_when_the_file_shrinks_in_place(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, line(train(1)) + line(train(2)))
    f = MetricsFollower(tmp_path)
    f.poll()
    with open(path, "w", encoding="utf-8") as fh:  # same inode, truncated
        fh.write(line(train(1, loss=9.0)))
    up = f.poll()
    assert up.reset and [(r["step"], r["loss"]) for r in up.records] == [(1, 9.0)]


def test_follower_reports_a_deleted_file_as_a_reset(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, line(train(1)))
    f = MetricsFollower(tmp_path)
    f.poll()
    os.unlink(path)
    up = f.poll()
    assert up.reset and up.records == []


def test_malformed_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, line(train(1)) + "{not json\n" + "[1, 2]\n" + "\n" + line(train(2)))
    f = MetricsFollower(tmp_path)
    up = f.poll()
    assert [r["step"] for r in up.records] == [1, 2]
    assert up.bad == 2 and f.bad == 2


def test_parse_lines_fast_path_and_fallback_agree():
    good = [json.dumps(train(i)).encode() for i in range(5)]
    assert parse_lines(good) == ([train(i) for i in range(5)], 0)
    assert parse_lines(good + [b"oops"]) == ([train(i) for i in range(5)], 1)


def test_tail_lines_reads_the_end_of_a_log(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    assert tail_lines(log, 3) == ["line 4997", "line 4998", "line 4999"]
    assert tail_lines(tmp_path / "missing.log") == []


# ------------------------------------------------------------------------------------ history
def test_history_keeps_each_event_once_from_both_sources():
    h = RunHistory()
    start = {"event": "start", "step": 0, "stage": "sft", "max_steps": 10, "device": "cpu"}
    live = [start, train(1), train(2), {"event": "log", "step": 2, "message": "hello"}]
    assert h.add(live)
    from_file = [start, train(1), train(2), train(3)]  # the file: the same events (no log), one more
    assert h.add(from_file)
    assert not h.add(from_file)  # all seen
    steps, losses = h.xy("loss")
    assert steps.tolist() == [1, 2, 3] and len(losses) == 3
    assert list(h.logs) == ["hello"] and h.status() == "running"


def test_history_a_resumed_run_repeating_an_eval_and_end_at_the_same_step_keeps_both():
    h = RunHistory()
    end1 = {"event": "end", "step": 5, "status": "stopped", "elapsed": 1.5}
    h.add([{"event": "start", "step": 0}, train(5), end1])
    assert h.status() == "stopped"
    h.add([{"event": "start", "step": 5, "resumed_from": "x"}])
    assert h.status() == "running"
    h.add([{"event": "eval", "step": 5, "val/loss": 2.0, "eval_time": 0.1},
           {"event": "end", "step": 5, "status": "finished", "elapsed": 1.7}])
    assert h.status() == "finished"
    h.add([end1])  # the same old end event again (a replay): ignored
    assert h.status() == "finished"


def test_history_series_skip_nulls_and_sort_late_records():
    h = RunHistory()
    h.add([train(1), train(3), train(2, loss=None, skipped=1), train(4)])
    steps, losses = h.xy("loss")
    assert steps.tolist() == [1, 3, 4]
    h.add([{**train(2), "loss": 7.0, "step": 2.5}])  # arrives late
    steps, losses = h.xy("loss")
    assert steps.tolist() == [1, 2.5, 3, 4]
    assert losses.tolist() == [1.0, 7.0, 1.0, 1.0]
    assert "skipped" not in h and "event" not in h and "loss" in h


def test_x_as_cumulative_tokens_including_eval_points():
    h = RunHistory()
    h.add([train(1, tokens=100), train(2, tokens=50), {"event": "eval", "step": 2, "val/loss": 3.0, "eval_time": 0},
           train(3, tokens=10)])
    xs, _ = h.xy("loss", x="tokens")
    assert xs.tolist() == [100, 150, 160]
    xs, ys = h.xy("val/loss", x="tokens")
    assert xs.tolist() == [150] and ys.tolist() == [3.0]
    assert h.source["val/loss"] == "eval" and h.source["loss"] == "train"


def test_ema_is_tensorboards_debiased_average_and_incremental_matches_batch():
    ys = [1.0, 2.0, 3.0, 10.0]
    out = ema(ys, 0.5)
    # debiased: the first point is the value itself, not (1 - w) * value
    assert out[0] == pytest.approx(1.0)
    assert out[1] == pytest.approx((0.25 * 1 + 0.5 * 2) / 0.75)
    assert ema(ys, 0.0).tolist() == ys
    h = RunHistory()
    h.add([train(i + 1, loss=y) for i, y in enumerate(ys[:2])])
    h.xy("loss", smoothing=0.5)
    h.add([train(i + 1, loss=y) for i, y in enumerate(ys)])
    assert h.xy("loss", smoothing=0.5)[1].tolist() == pytest.approx(out.tolist())


def test_downsample_keeps_spikes_extremes_and_the_last_point():
    xs = np.arange(100_000, dtype=float)
    ys = np.sin(xs / 5000)
    ys[31_337] = 50.0  # a one-step spike
    ys[77_777] = -50.0
    dx, dy = downsample(xs, ys, 200)
    assert len(dx) <= 401
    assert 50.0 in dy and -50.0 in dy and dx[-1] == 99_999
    assert np.all(np.diff(dx) > 0)  # still in x order
    small = np.arange(10.0)
    assert downsample(small, small, 200)[0] is small


def test_downsample_100k_is_fast():
    import time

    xs = np.arange(100_000, dtype=float)
    ys = np.random.default_rng(0).normal(size=100_000)
    t = time.perf_counter()
    for _ in range(10):
        downsample(xs, ys, 200)
    assert (time.perf_counter() - t) / 10 < 0.05


def test_eta_and_tokens_per_s_from_recent_steps():
    records = [train(s, elapsed=2.0 * s) for s in range(1, 11)]  # 2 s per step (evals included)
    assert eta(records, 20) == pytest.approx(20.0)
    assert eta(records, 10) == 0.0
    assert eta([], 10) is None and eta(records, None) is None
    assert eta([train(1)], 11) == pytest.approx(1.0)  # one record: its step_time
    assert tokens_per_s(records) == pytest.approx(1000.0)
    assert tokens_per_s([]) is None


def test_load_history_of_a_real_run(sft_run):
    h, follower = load_history(sft_run)
    steps, _ = h.xy("loss")
    assert steps.tolist() == list(range(1, 61))
    assert h.status() == "finished" and h.start["stage"] == "sft"
    assert follower.offset == (sft_run / "metrics.jsonl").stat().st_size


def test_a_big_file_is_read_in_chunks_with_the_same_result(tmp_path):
    from workbench.train.follow import read_into

    path = tmp_path / "metrics.jsonl"
    append(path, "".join(line(train(s, loss=float(s))) for s in range(1, 2001)))
    f = MetricsFollower(tmp_path)
    first = f.poll(10_000)  # ~60 lines per read, cut mid-line
    assert first.more and 0 < len(first.records) < 100
    history = read_into(RunHistory(), f, first)
    steps, losses = history.xy("loss")
    assert steps.tolist() == list(range(1, 2001)) and losses.tolist() == [float(s) for s in range(1, 2001)]
    assert f.offset == path.stat().st_size and not f.poll(10_000).more


def test_garbage_values_in_records_never_raise():
    """metrics.jsonl is a text file anyone can edit: NaN / Infinity / huge steps are not placed (json
    reads NaN and Infinity), and strings where numbers belong are ignored by the ETA and tokens/s."""
    h = RunHistory()
    h.add([{"event": "train", "step": float("nan"), "loss": 1.0}, {"event": "train", "step": float("inf"), "loss": 1.0},
           {"event": "train", "step": 10 ** 400, "loss": 1.0}, {"event": "train", "step": "3", "loss": 1.0}])
    assert h.last_step == 0 and "loss" not in h
    records = [{"event": "train", "step": 1, "tokens": "x", "step_time": "y", "elapsed": float("nan")},
               {"event": "train", "step": 2, "tokens": 10, "step_time": 0.5, "elapsed": "z"}]
    assert tokens_per_s(records) == pytest.approx(20.0)
    assert eta(records, "ten") is None
    assert eta(records, 10) == pytest.approx(4.0)  # from step_time: the elapsed values are unusable
