"""The training engine: exact resume, atomic checkpoints, non-finite steps, Control, schedule,
optimiser groups, metrics.jsonl and the run directory. Tiny pretrain runs on the small tokenizer."""

import json
import math
import threading
import time

import pytest
import torch

from tests.conftest import SAMPLE
from tests.workbench.train.conftest import losses, run
from workbench.errors import WorkbenchError
from workbench.train import checkpoint as ckpt_io
from workbench.train.config import load_config
from workbench.train.engine import Control, Engine, lr_at, train
from workbench.train.pretrain import PretrainStage


def pre(small_tok, *extra):
    """Overrides of a tiny pretrain run: 2 layers, windows of 32 tokens, 4 per batch."""
    return [f"tokenizer={small_tok}", f"data={SAMPLE / 'text.jsonl'}", "model={n_layers: 2}", "seq_len=32",
            "batch_size=4", "warmup_steps=2", "eval_every=0", "save_every=0", "tensorboard=false", *extra]


def read_jsonl(path):
    def refuse(name):  # NaN / Infinity are not JSON
        raise AssertionError(f"{path}: non-JSON constant {name}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def train_steps(path):
    return [r["step"] for r in read_jsonl(path / "metrics.jsonl") if r["event"] == "train"]


def stop_at(step, control):
    def cb(rec):
        if rec["event"] == "train" and rec["step"] == step:
            control.stop()
    return cb


def params_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------- resume


def test_a_stopped_and_resumed_pretrain_run_gives_the_same_losses(tmp_path, small_tok):
    _, full = run("pretrain", tmp_path / "full", *pre(small_tok, "max_steps=8"))
    control = Control()
    result, first = run("pretrain", tmp_path / "cut", *pre(small_tok, "max_steps=8"),
                        callbacks=[stop_at(4, control)], control=control)
    assert result["status"] == "stopped" and result["step"] == 4
    assert result["checkpoint"].endswith("step-000004")
    resumed = []
    result = train(None, tmp_path / "cut", resume=True, callbacks=[resumed.append])
    assert result["status"] == "finished" and result["step"] == 8
    assert [r["step"] for r in resumed if r["event"] == "train"] == [5, 6, 7, 8]
    assert losses(first) == pytest.approx(losses(full)[:4], abs=1e-7)
    assert losses(resumed) == pytest.approx(losses(full)[4:], abs=1e-7)
    assert losses(resumed, "lr") == losses(full, "lr")[4:]
    assert train_steps(tmp_path / "cut") == list(range(1, 9))
    lineage = json.loads((tmp_path / "cut" / "lineage.json").read_text())
    assert lineage["status"] == "finished" and [r["from_step"] for r in lineage["resumes"]] == [4]


def test_sft_with_packing_and_accumulation_resumes_at_the_exact_data_position(tmp_path, pretrained):
    args = [f"init_from={pretrained}", f"data={SAMPLE / 'chat.jsonl'}", "max_len=96", "packing=true", "grad_accum=2",
            "batch_size=2", "max_steps=6", "eval_every=0", "save_every=0", "tensorboard=false"]
    _, full = run("sft", tmp_path / "full", *args)
    control = Control()
    run("sft", tmp_path / "cut", *args, callbacks=[stop_at(3, control)], control=control)
    trainer = json.loads((tmp_path / "cut" / "checkpoints" / "step-000003" / "trainer.json").read_text())
    assert trainer["step"] == 3 and trainer["position"] > 0
    resumed = []
    train(None, tmp_path / "cut", resume=True, callbacks=[resumed.append])
    assert losses(resumed) == pytest.approx(losses(full)[3:], abs=1e-7)
    assert losses(resumed, "samples") == losses(full, "samples")[3:]  # the same conversations, packed the same way
    assert train_steps(tmp_path / "cut") == list(range(1, 7))


def test_ctrl_c_in_the_middle_of_a_step_saves_the_last_whole_step(tmp_path, small_tok, monkeypatch):
    """KeyboardInterrupt while step 5 is computed: the checkpoint is step 4 with step 4's data position,
    so the batches of the unfinished step are trained after resuming, not skipped."""
    _, full = run("pretrain", tmp_path / "full", *pre(small_tok, "max_steps=6"))
    original = PretrainStage.loss

    def interrupted(self, batch):
        if self.engine.step == 4:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(PretrainStage, "loss", interrupted)
    result, _ = run("pretrain", tmp_path / "cut", *pre(small_tok, "max_steps=6"))
    assert result["status"] == "stopped" and result["step"] == 4
    trainer = json.loads((tmp_path / "cut" / "checkpoints" / "step-000004" / "trainer.json").read_text())
    assert trainer["position"] == 4 * 4  # 4 steps of 4 windows
    monkeypatch.setattr(PretrainStage, "loss", original)
    resumed = []
    train(None, tmp_path / "cut", resume=True, callbacks=[resumed.append])
    assert losses(resumed) == pytest.approx(losses(full)[4:], abs=1e-7)


def test_ctrl_c_after_a_step_already_updated_the_weights_saves_nothing(tmp_path, small_tok, monkeypatch):
    """A stage that updates several times per step (PPO) interrupted after an update: saving those
    weights as the previous step would not resume exactly, so the last checkpoint stands."""
    original = PretrainStage.train_step

    def update_then_interrupt(self, micro):
        out = original(self, micro)
        if self.engine.step == 3:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(PretrainStage, "train_step", update_then_interrupt)
    result, _ = run("pretrain", tmp_path / "cut", *pre(small_tok, "max_steps=6", "save_every=2"))
    assert result["status"] == "interrupted" and result["checkpoint"] is None
    assert ckpt_io.latest_checkpoint(tmp_path / "cut").name == "step-000002"
    assert not (tmp_path / "cut" / "checkpoints" / "step-000003").exists()
    lineage = json.loads((tmp_path / "cut" / "lineage.json").read_text())
    assert lineage["status"] == "interrupted" and "not saved" in lineage["error"]


# ---------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("where", ["write_model", "torch.save"])
def test_a_checkpoint_that_fails_half_way_leaves_the_previous_one(tmp_path, small_tok, monkeypatch, where):
    from workbench.model.checkpoint import load_checkpoint

    out = tmp_path / "run"
    if where == "write_model":
        original = PretrainStage.write_model

        def broken(self, dest):
            original(self, dest)  # the weights and config are written ...
            if self.engine.step == 4:
                raise OSError(28, "No space left on device")  # ... then the disk fills up

        monkeypatch.setattr(PretrainStage, "write_model", broken)
    else:
        original, calls = torch.save, []

        def broken(obj, f, *a, **k):
            calls.append(f)
            if len(calls) == 2:  # the trainer state of the second checkpoint (step 4)
                open(f, "wb").write(b"\x80partial")
                raise OSError(28, "No space left on device")
            return original(obj, f, *a, **k)

        monkeypatch.setattr(ckpt_io.torch, "save", broken)
    with pytest.raises(OSError, match="No space"):
        run("pretrain", out, *pre(small_tok, "max_steps=6", "save_every=2", "keep_checkpoints=0"))
    folder = out / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "step-000002"]  # no half-written or hidden dir
    latest = ckpt_io.latest_checkpoint(out)
    assert latest.name == "step-000002"
    load_checkpoint(latest)  # complete and loadable
    ckpt_io.load_state(latest)
    assert json.loads((out / "lineage.json").read_text())["status"] == "crashed"
    monkeypatch.undo()
    result = train(None, out, resume=True)
    assert result["status"] == "finished" and result["step"] == 6
    assert train_steps(out) == list(range(1, 7))


def test_a_failed_final_checkpoint_is_recorded_as_a_crash(tmp_path, small_tok, monkeypatch):
    original = PretrainStage.write_model

    def broken(self, dest):
        if self.engine.step == 4:
            raise OSError(28, "No space left on device")
        original(self, dest)

    monkeypatch.setattr(PretrainStage, "write_model", broken)
    out = tmp_path / "run"
    with pytest.raises(OSError):
        run("pretrain", out, *pre(small_tok, "max_steps=4", "save_every=2"))
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["status"] == "crashed" and "No space" in lineage["error"]
    assert ckpt_io.latest_checkpoint(out).name == "step-000002"
    assert read_jsonl(out / "metrics.jsonl")[-1]["event"] == "end"


def test_keep_checkpoints_prunes_old_steps_but_never_the_latest(tmp_path, small_tok):
    out = tmp_path / "run"
    run("pretrain", out, *pre(small_tok, "max_steps=8", "save_every=2", "keep_checkpoints=2"))
    folder = out / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "step-000006", "step-000008"]
    assert ckpt_io.latest_checkpoint(out).name == "step-000008"
    # keep one: only the one `latest` names is left, across a resume that goes on further
    train(None, out, resume=True, overrides=["max_steps=10", "keep_checkpoints=1"])
    assert sorted(p.name for p in folder.iterdir()) == ["latest", "step-000010"]
    assert ckpt_io.latest_checkpoint(out).name == "step-000010"


# ---------------------------------------------------------------------------------- non-finite steps


def nan_loss_at(monkeypatch, bad_steps, snapshots=None):
    """Make the loss NaN on the given (1-based) steps; optionally snapshot the weights before each step."""
    original = PretrainStage.loss

    def loss(self, batch):
        step = self.engine.step + 1
        if snapshots is not None and step not in snapshots:
            snapshots[step] = params_of(self.model)
        value, metrics = original(self, batch)
        return (value * float("nan") if step in bad_steps else value), metrics

    monkeypatch.setattr(PretrainStage, "loss", loss)


def test_non_finite_steps_are_skipped_counted_and_logged(tmp_path, small_tok, monkeypatch):
    snapshots = {}
    nan_loss_at(monkeypatch, {3, 4}, snapshots)
    out = tmp_path / "run"
    result, records = run("pretrain", out, *pre(small_tok, "max_steps=6", "max_nonfinite=3"))
    assert result["status"] == "finished"
    train_records = {r["step"]: r for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "train"}
    assert [train_records[s].get("skipped") for s in range(1, 7)] == [None, None, 1, 1, None, None]
    assert train_records[3]["nonfinite_total"] == 1 and train_records[4]["nonfinite_total"] == 2
    assert train_records[3]["loss"] is None  # NaN is written as null
    assert all(math.isfinite(train_records[s]["loss"]) for s in (1, 2, 5, 6))
    assert not same(snapshots[2], snapshots[3])  # a good step changes the weights
    assert same(snapshots[3], snapshots[4]) and same(snapshots[4], snapshots[5])  # skipped ones do not
    log = (out / "train.log").read_text()
    assert "step 3: non-finite" in log and "step 4: non-finite" in log and "step 5" not in log


def test_too_many_non_finite_steps_in_a_row_fail_the_run(tmp_path, small_tok, monkeypatch):
    nan_loss_at(monkeypatch, {2, 3, 4, 5, 6})
    out = tmp_path / "run"
    with pytest.raises(WorkbenchError) as e:
        run("pretrain", out, *pre(small_tok, "max_steps=6", "max_nonfinite=3"))
    msg = str(e.value)
    assert "step 4" in msg and "lower lr" in msg.lower()
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["status"] == "failed" and lineage["error"] == msg and lineage["step"] == 4
    assert "run failed" in (out / "train.log").read_text()


def test_out_of_memory_fails_the_run_with_the_knobs_to_turn(tmp_path, small_tok, monkeypatch):
    def oom(self, batch):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:119] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 93012345678 bytes")
    monkeypatch.setattr(PretrainStage, "loss", oom)
    out = tmp_path / "run"
    with pytest.raises(WorkbenchError) as e:
        run("pretrain", out, *pre(small_tok, "max_steps=3"))
    msg = str(e.value)
    assert msg.startswith("out of CPU memory in step 1") and "can't allocate memory" in msg
    for knob in ("batch_size=2 (now 4) with grad_accum=2 (now 1)", "seq_len (now 32)", "gradient_checkpointing=true"):
        assert knob in msg
    assert json.loads((out / "lineage.json").read_text())["status"] == "failed"


def test_other_runtime_errors_still_crash_with_their_traceback(tmp_path, small_tok, monkeypatch):
    def bug(self, batch):
        raise RuntimeError("shape mismatch in a stage")
    monkeypatch.setattr(PretrainStage, "loss", bug)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="shape mismatch"):
        run("pretrain", out, *pre(small_tok, "max_steps=3"))
    assert json.loads((out / "lineage.json").read_text())["status"] == "crashed"


# ---------------------------------------------------------------------------------- Control


def test_stop_from_a_callback_saves_a_checkpoint_at_that_step(tmp_path, small_tok):
    control = Control()
    out = tmp_path / "run"
    result, records = run("pretrain", out, *pre(small_tok, "max_steps=10"), callbacks=[stop_at(3, control)],
                          control=control)
    assert result == {"status": "stopped", "step": 3, "checkpoint": str(out / "checkpoints" / "step-000003"),
                      "run_dir": str(out)}
    assert ckpt_io.latest_checkpoint(out).name == "step-000003"
    assert json.loads((out / "lineage.json").read_text())["status"] == "stopped"
    assert records[-1]["event"] == "end" and records[-1]["status"] == "stopped"
    assert not [r for r in records if r["event"] == "eval"]  # a stopped run is not evaluated


def test_pause_and_resume_from_another_thread(tmp_path, small_tok):
    control = Control()
    arrived, reached, paused = {}, threading.Event(), threading.Event()
    outcome = {}

    def cb(rec):
        if rec["event"] == "train":
            arrived[rec["step"]] = time.monotonic()
            if rec["step"] == 2:
                reached.set()
                paused.wait(60)  # the other thread pauses before step 3 may begin

    def work():
        try:
            outcome["result"] = run("pretrain", tmp_path / "run", *pre(small_tok, "max_steps=5"),
                                    callbacks=[cb], control=control)[0]
        except BaseException as e:  # surfaced by the assertion below
            outcome["error"] = e

    worker = threading.Thread(target=work)
    worker.start()
    assert reached.wait(120)
    control.pause()
    paused.set()
    time.sleep(1.0)
    during = sorted(arrived)
    assert control.paused and worker.is_alive()
    resumed_at = time.monotonic()
    control.resume()
    worker.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert during == [1, 2]  # no step during the pause
    assert outcome["result"]["status"] == "finished" and outcome["result"]["step"] == 5
    assert all(arrived[s] > resumed_at for s in (3, 4, 5))


# ---------------------------------------------------------------------------------- schedule and optimiser


def test_lr_schedule_warmup_then_decay_to_the_floor():
    cfg = load_config("pretrain", None, {"lr": 1e-3, "warmup_steps": 4, "max_steps": 20, "min_lr_ratio": 0.1})
    assert [lr_at(cfg, s) for s in (1, 2, 3, 4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lr_at(cfg, 12) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # cosine: half-way = the mean
    assert lr_at(cfg, 20) == pytest.approx(1e-4)
    assert all(lr_at(cfg, s) > lr_at(cfg, s + 1) for s in range(4, 20))
    cfg.schedule = "linear"
    assert [lr_at(cfg, s) for s in (4, 8, 12, 20)] == pytest.approx([1e-3, 1e-3 * (0.1 + 0.9 * 0.75), 5.5e-4, 1e-4])
    cfg.schedule = "constant"
    assert [lr_at(cfg, s) for s in (1, 4, 5, 20)] == pytest.approx([2.5e-4, 1e-3, 1e-3, 1e-3])
    cfg.warmup_steps = 0
    assert lr_at(cfg, 1) == 1e-3


def test_the_lr_in_the_records_follows_the_schedule_and_adamw_skips_decay_on_norms_biases_embeddings(
        tmp_path, small_tok):
    cfg = load_config("pretrain", None, pre(small_tok, "max_steps=5", "warmup_steps=2", "lr=1e-2",
                                            "schedule=linear", "weight_decay=0.1"))
    records = []
    engine = Engine(cfg, tmp_path / "run", callbacks=[records.append])
    engine.run()
    assert losses(records, "lr") == pytest.approx([5e-3, 1e-2, 7e-3, 4e-3, 1e-3])
    names = {id(p): n for n, p in engine.stage.model.named_parameters()}
    groups = {g["weight_decay"]: [names[id(p)] for p in g["params"]] for g in engine.optimizer.param_groups}
    assert set(groups) == {0.1, 0.0}
    decayed, plain = set(groups[0.1]), set(groups[0.0])
    assert decayed.isdisjoint(plain) and decayed | plain == set(names.values())
    assert "embed_tokens.weight" in plain
    assert {n for n in names.values() if "norm" in n or n.endswith("bias")} <= plain
    assert all(p.dim() < 2 for n, p in engine.stage.model.named_parameters() if n in plain and "embed" not in n)
    assert {n for n, p in engine.stage.model.named_parameters() if p.dim() >= 2 and "embed" not in n} == decayed
    assert any("q_proj" in n or "kv_a_proj" in n for n in decayed) and any(n.endswith("gate_up") for n in decayed)


# ---------------------------------------------------------------------------------- metrics and run dir


def test_metrics_jsonl_is_flushed_json_with_the_required_keys(tmp_path, small_tok):
    out = tmp_path / "run"
    seen = {}

    def cb(rec):  # the file already holds every train record up to this one
        if rec["event"] == "train":
            seen[rec["step"]] = train_steps(out)

    run("pretrain", out, *pre(small_tok, "max_steps=4", "eval_every=2", "val_fraction=0.1"), callbacks=[cb])
    assert seen == {k: list(range(1, k + 1)) for k in range(1, 5)}
    records = read_jsonl(out / "metrics.jsonl")
    events = [r["event"] for r in records]
    assert events[0] == "start" and events[-1] == "end" and events.count("eval") == 2 and "checkpoint" in events
    required = {"event", "step", "stage", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed", "peak_mem_mb"}
    for r in records:
        if r["event"] == "train":
            assert required <= set(r), required - set(r)
            assert r["stage"] == "pretrain" and r["tokens"] == 4 * 32 and r["tokens_per_s"] > 0
            assert math.isfinite(r["loss"]) and r["grad_norm"] > 0
            assert 10 < r["peak_mem_mb"] < 64 * 1024  # this process's peak RSS: torch alone is > 10 MiB
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4] and all(r["val/loss"] > 0 for r in evals)


def test_run_dir_config_lineage_and_refusals(tmp_path, pretrained):
    from workbench.model.checkpoint import WEIGHTS

    out = tmp_path / "sft"
    args = [f"init_from={pretrained}", f"data={SAMPLE / 'chat.jsonl'}", "max_len=96", "batch_size=2", "max_steps=2",
            "eval_every=0", "save_every=0", "tensorboard=false"]
    cfg = load_config("sft", None, args)
    result = train(cfg, out)
    assert load_config("sft", out / "config.yaml") == cfg
    lineage = json.loads((out / "lineage.json").read_text())
    parent = ckpt_io.latest_checkpoint(pretrained)
    assert lineage["parent"]["path"] == str(parent.resolve())
    assert lineage["parent"]["sha256"] == ckpt_io.file_sha256(parent / WEIGHTS)
    assert lineage["parent"]["stage"] == "pretrain" and lineage["parent"]["kind"] == "policy"
    assert lineage["inputs"]["data"] == str(SAMPLE / "chat.jsonl")
    assert lineage["status"] == "finished" and lineage["started"] and lineage["ended"] >= lineage["started"]
    assert lineage["final_checkpoint"] == result["checkpoint"]
    with pytest.raises(WorkbenchError, match="not empty.*--resume"):
        train(cfg, out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkbenchError, match="no config.yaml"):
        train(None, tmp_path / "empty", resume=True)
    with pytest.raises(WorkbenchError, match="is a sft run, not pretrain"):
        train(load_config("pretrain", None, []), out, resume=True)


def test_resume_refuses_to_change_the_model_and_leaves_the_saved_config_alone(tmp_path, small_tok):
    out = tmp_path / "run"
    run("pretrain", out, *pre(small_tok, "max_steps=2"))
    saved = (out / "config.yaml").read_text()
    for override in ("tokenizer=null", "model={n_layers: 3}", "preset=small"):
        with pytest.raises(WorkbenchError, match="--resume cannot change"):
            train(None, out, resume=True, overrides=["max_steps=3", override])
    assert (out / "config.yaml").read_text() == saved
    (out / "config.yaml").write_text(": : garbage [")
    with pytest.raises(WorkbenchError, match="not valid YAML"):
        train(None, out, resume=True)


def test_a_crash_before_latest_was_updated_resumes_from_the_newest_complete_checkpoint(tmp_path, small_tok):
    out = tmp_path / "run"
    run("pretrain", out, *pre(small_tok, "max_steps=4", "save_every=2", "keep_checkpoints=0"))
    (out / "checkpoints" / "latest").unlink()  # step-000004 was renamed into place, `latest` never updated
    assert ckpt_io.latest_checkpoint(out).name == "step-000004"
    resumed = []
    train(None, out, resume=True, overrides=["max_steps=5"], callbacks=[resumed.append])
    assert [r["step"] for r in resumed if r["event"] == "train"] == [5]
