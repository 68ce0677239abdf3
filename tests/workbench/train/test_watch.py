"""Watching runs for the Monitor (workbench/train/watch.py): the polling loop, header, panels, names."""

import json
import os

import pytest

from workbench.errors import WorkbenchError
from workbench.io import atomic_write_text
from workbench.train.follow import RunHistory, load_history
from workbench.train.watch import (HeaderRead, Loaded, Records, RunHeader, RunWatcher, follow_target, panels_for,
                                   duration, run_names, short_number)


def train(step, loss=1.0, tokens=100, elapsed=None, **kw):
    return {"event": "train", "step": step, "stage": "sft", "loss": loss, "lr": 1e-3, "grad_norm": 0.5,
            "tokens": tokens, "step_time": 0.1, "elapsed": elapsed if elapsed is not None else 0.1 * step,
            "tokens_per_s": tokens / 0.1, **kw}


def jsonl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_watcher_loads_then_streams_then_reloads_on_a_rewrite(tmp_path):
    run = tmp_path / "run"
    watcher = RunWatcher()
    events = watcher.poll({run: 1})
    assert [type(e) for e in events] == [Loaded, HeaderRead]  # an empty history: nothing written yet
    assert not events[0].history.series and events[1].header.status == "unknown"
    run.mkdir()
    (run / "metrics.jsonl").write_text(jsonl([train(1), train(2)]))
    (run / "train.log").write_text("setup line\n")
    events = watcher.poll({run: 1})
    records = [e for e in events if isinstance(e, Records)]
    assert [r["step"] for r in records[0].records] == [1, 2]
    assert [e.log for e in events if isinstance(e, HeaderRead)] == [["setup line"]]
    assert watcher.poll({run: 1}) == []  # nothing changed, header not due yet
    assert [type(e) for e in watcher.poll({run: 1}, headers_now=True)] == [HeaderRead]
    atomic_write_text(run / "metrics.jsonl", jsonl([train(1, loss=7.0)]))  # a resume rewrote it
    loaded = [e for e in watcher.poll({run: 1}) if isinstance(e, Loaded)]
    assert loaded and loaded[0].reset and loaded[0].history.xy("loss")[1].tolist() == [7.0]
    events = watcher.poll({run: 2})  # opened anew (a new token): a full read again, not a reset
    assert isinstance(events[0], Loaded) and not events[0].reset and len(events[0].history.series["loss"]) == 1
    assert watcher.poll({}) == []  # no longer watched: forgotten


def test_run_header_from_the_run_dir(sft_run, tmp_path):
    header = RunHeader.read(sft_run)
    assert (header.stage, header.max_steps, header.status) == ("sft", 60, "finished")
    assert header.data.endswith("chat.jsonl") and header.problem is None
    h, _ = load_history(sft_run)
    merged = header.merged(h)
    assert merged["step"] == 60 and merged["device"] == "cpu" and merged["eta"] is None
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text("stage: [unclosed\n")
    (bad / "lineage.json").write_text('{"status": "running"')
    header = RunHeader.read(bad)
    assert "config.yaml" in header.problem and "lineage.json" in header.problem
    assert RunHeader.read(tmp_path / "nowhere").status == "unknown"


def test_a_crash_without_an_end_event_is_shown_as_lineage_and_lock_tell(tmp_path):
    (tmp_path / "lineage.json").write_text('{"stage": "sft", "status": "running"}')  # no live lock
    header = RunHeader.read(tmp_path)
    h = RunHistory()
    h.add([{"event": "start", "step": 0, "max_steps": 10}, train(1)])
    assert header.status == "crashed" and header.merged(h)["status"] == "crashed"


def test_a_live_run_has_an_eta_and_a_speed(tmp_path):
    (tmp_path / "lineage.json").write_text(json.dumps({"stage": "sft", "status": "running"}))
    (tmp_path / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    h = RunHistory()
    h.add([{"event": "start", "step": 0, "max_steps": 20}, *(train(s, elapsed=2.0 * s) for s in range(1, 11))])
    merged = RunHeader.read(tmp_path).merged(h)
    assert merged["status"] == "running" and merged["eta"] == pytest.approx(20.0)
    assert merged["tokens_per_s"] == pytest.approx(1000.0) and merged["max_steps"] == 20


def test_run_names_are_the_shortest_distinct_suffixes(tmp_path):
    a, b, c = tmp_path / "lr1" / "sft", tmp_path / "lr2" / "sft", tmp_path / "dpo"
    assert run_names([a, b, c]) == ["lr1/sft", "lr2/sft", "dpo"]
    assert run_names([a]) == ["sft"]


def test_panels_per_stage_and_overlay():
    ids = lambda ps: [p.id for p in ps]  # noqa: E731
    assert ids(panels_for(["pretrain"], {"loss"})) == ["loss", "lr", "grad_norm", "tokens_per_s"]
    assert "moe_balance" in ids(panels_for(["pretrain"], {"loss", "moe_balance"}))
    ppo = ids(panels_for(["ppo"]))
    for needed in ("ppo_scores", "ppo_kl", "ppo_reward", "ppo_entropy", "ppo_clipfrac", "ppo_approxkl",
                   "ppo_ratio", "ppo_length", "ppo_eos"):
        assert needed in ppo
    both = ids(panels_for(["dpo", "ppo"]))
    assert "dpo_margins" in both and "ppo_kl" in both and both[:4] == ["loss", "lr", "grad_norm", "tokens_per_s"]
    assert {"rm_accuracy", "rm_margin"} <= set(ids(panels_for(["rm"])))
    # the options' own charts show when their runs log them: score_logprob's w, rpo_alpha's NLL
    assert "rm_logprob_weight" in ids(panels_for(["rm"], {"loss", "logprob_weight"}))
    assert "rm_logprob_weight" not in ids(panels_for(["rm"], {"loss", "accuracy"}))
    assert "dpo_nll" in ids(panels_for(["dpo"], {"loss", "nll_loss"}))
    assert "dpo_nll" not in ids(panels_for(["dpo"], {"loss", "rewards/margins"}))


def test_panel_keys_are_the_names_the_stages_log():
    """Every key a panel charts is logged by its stage (read from the stages' source: no typo'd names)."""
    from pathlib import Path

    import workbench.train as train_pkg

    src = {s: (Path(train_pkg.__file__).parent / f).read_text() for s, f in
           {"rm": "reward.py", "dpo": "dpo.py", "ppo": "ppo.py", "pretrain": "pretrain.py", "sft": "sft.py"}.items()}
    src["dpo"] += (src["dpo"].replace('"rewards/', '"val/rewards/')  # DPO's eval prefixes its train keys with val/
                   .replace('"nll_loss"', '"val/nll_loss"'))
    for panel in panels_for(["rm", "dpo", "ppo", "pretrain", "sft"]):
        for key in panel.keys:
            if not panel.stages:
                continue
            assert any(f'"{key}"' in src[s] for s in panel.stages), (panel.id, key)


def test_short_number():
    assert [short_number(v) for v in (1234567, 12_345, 0.5, 0.000123, None)] == ["1.23M", "12.3k", "0.5", "1.23e-04", "?"]


def test_follow_target_accepts_runs_their_metrics_and_future_dirs(tmp_path, sft_run):

    assert follow_target(sft_run) == sft_run
    assert follow_target(sft_run / "metrics.jsonl") == sft_run
    assert follow_target(tmp_path / "later") == tmp_path / "later"  # a run that will start there
    with pytest.raises(WorkbenchError, match="is a file"):
        follow_target(sft_run / "config.yaml")
    with pytest.raises(WorkbenchError, match="not a run directory.*the runs in it: sft"):
        follow_target(sft_run.parent)
    with pytest.raises(WorkbenchError, match="no such folder"):
        follow_target(tmp_path / "a" / "b")
    with pytest.raises(WorkbenchError, match="give a run directory"):
        follow_target("  ")


def test_merged_header_of_a_hand_edited_file_has_usable_fields(tmp_path):
    """A start event whose max_steps is a string, or an end whose status is a list, must not reach the
    header's arithmetic and style lookups (both once took the Monitor down)."""
    history = RunHistory()
    history.add([{"event": "start", "step": 0, "stage": ["x"], "max_steps": "ten", "device": {"a": 1}},
                 {"event": "train", "step": 1, "loss": 1.0, "elapsed": 1}, {"event": "train", "step": 2, "elapsed": 2},
                 {"event": "end", "step": 2, "status": ["finished"]}])
    info = RunHeader(tmp_path).merged(history)
    assert info["max_steps"] is None and info["stage"] is None and info["device"] is None
    assert info["status"] == "unknown" and info["step"] == 2
    assert duration(float("nan")) == "?"
