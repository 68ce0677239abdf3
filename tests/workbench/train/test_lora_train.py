"""LoRA in the trainers: only the adapters train and are saved (with a pointer to the base), the SFT loss
falls, a LoRA run resumes exactly, DPO's reference is the base with the adapters off (no copy), a
reward model's head trains with them, and later stages, `workbench generate` and a wrong base see
the checkpoint merged or a clear error."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import SAMPLE
from tests.workbench.train.conftest import losses, run
from workbench.errors import WorkbenchError
from workbench.model.checkpoint import ADAPTERS, WEIGHTS, load_checkpoint
from workbench.train.checkpoint import file_sha256, resolve_checkpoint

FAST = ("eval_every=0", "save_every=0", "tensorboard=false", "max_len=128", "batch_size=8")
LORA = "lora={rank: 8, alpha: 16, targets: [attention, ffn, experts]}"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """The first 64 sample preference pairs: DPO precomputes, and a reward model scores, all of them."""
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    lines = (SAMPLE / "preference.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:64]), encoding="utf-8")
    return path


def _sft(out, parent, *overrides, **kw):
    return run("sft", out, f"init_from={parent}", f"data={SAMPLE / 'chat.jsonl'}", *FAST, *overrides, **kw)


def _engine(stage, out, *overrides):
    """Train through an Engine kept at hand, to look at the live stage afterwards."""
    from workbench.train.config import load_config
    from workbench.train.engine import Engine

    records = []
    engine = Engine(load_config(stage, None, list(overrides)), out, callbacks=[records.append])
    engine.run()
    return engine, records


@pytest.fixture(scope="module")
def lora_sft(tmp_path_factory, pretrained):
    out = tmp_path_factory.mktemp("runs") / "sft-lora"
    result, records = _sft(out, pretrained, LORA, "max_steps=30", "lr=1e-2", "warmup_steps=3")
    return out, result, records


def test_lora_sft_trains_only_the_adapters_saves_only_them_and_its_loss_falls(lora_sft, pretrained):
    from workbench.model.lora import LoRAConfig, add_lora

    out, result, records = lora_sft
    base = resolve_checkpoint(pretrained)
    model, _ = load_checkpoint(base)
    total = sum(p.numel() for p in model.parameters())
    expected = add_lora(model, LoRAConfig(targets=("attention", "ffn", "experts")))
    start = next(r for r in records if r["event"] == "start")
    assert start["params"] == expected < total / 5  # what the optimiser holds: the adapters
    curve = losses(records)
    # measured over seeds 0-2: 4.19-4.28 -> 3.79-4.04 (full SFT: 4.14 -> 3.49; the embeddings, and with
    # them the ChatML tokens' rows, stay frozen under LoRA)
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5 - 0.15, curve

    ckpt = resolve_checkpoint(out)
    assert not (ckpt / WEIGHTS).exists() and (ckpt / ADAPTERS).stat().st_size < (base / WEIGHTS).stat().st_size / 3
    meta = json.loads((ckpt / "config.json").read_text())
    relative = meta["lora"]["base"].pop("relative_path")  # written from the save's temporary sibling directory
    assert (ckpt / relative).resolve() == base.resolve()
    assert meta["lora"]["base"] == {"path": str(base.resolve()), "sha256": file_sha256(base / WEIGHTS)}
    assert meta["lora"]["params"] == expected and meta["extra"]["stage"] == "sft"
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)["optimizer"]["state"]
    assert sum(s["exp_avg"].numel() for s in state.values()) == expected  # Adam moments: adapters only

    merged, _ = load_checkpoint(ckpt)
    before = load_checkpoint(base)[0].state_dict()
    assert merged.state_dict().keys() == before.keys()  # a plain model: no adapter left
    changed = {k for k, v in merged.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.endswith(("_proj.weight", "_proj_with_mqa.weight", ".gate_up", ".down")) for k in changed)
    assert "embed_tokens.weight" not in changed and "layers.1.mlp.gate.weight" not in changed  # frozen


def test_later_stages_generate_and_lineage_see_the_lora_checkpoint_merged(lora_sft, pairs, tmp_path):
    from workbench.cli import app

    out, _, _ = lora_sft
    ckpt = resolve_checkpoint(out)
    # a LoRA DPO run on the LoRA SFT run: its base is the SFT checkpoint, itself adapters on the pretrain
    dpo, records = run("dpo", tmp_path / "dpo", f"init_from={out}", f"data={pairs}", *FAST,
                       "lora={rank: 4}", "max_steps=2")
    assert losses(records, "dpo_loss")[0] == pytest.approx(math.log(2), abs=1e-5)
    lineage = json.loads((tmp_path / "dpo" / "lineage.json").read_text())
    assert lineage["parent"]["sha256"] == file_sha256(ckpt / ADAPTERS)
    meta = json.loads((resolve_checkpoint(tmp_path / "dpo") / "config.json").read_text())
    assert meta["lora"]["base"]["path"] == str(ckpt.resolve())
    r = CliRunner().invoke(app, ["generate", str(tmp_path / "dpo"), "--prompt", "Where is Ashford?", "--chat",
                                 "--greedy", "-n", "6"])
    assert r.exit_code == 0 and r.output.strip(), r.output


def test_a_lora_run_resumes_exactly_with_dropout(pretrained, tmp_path):
    from workbench.train.engine import Control, train

    args = ("lora={rank: 4, dropout: 0.1, targets: [attention, experts]}", "max_steps=6", "lr=3e-3",
            "warmup_steps=2", "batch_size=4")
    _, full = _sft(tmp_path / "full", pretrained, *args)
    control = Control()

    def stop_at_3(record):
        if record["event"] == "train" and record["step"] == 3:
            control.stop()

    result, first = _sft(tmp_path / "split", pretrained, *args, callbacks=[stop_at_3], control=control)
    assert result["status"] == "stopped" and result["step"] == 3
    rest = []
    result = train(None, tmp_path / "split", resume=True, callbacks=[rest.append])
    assert result["status"] == "finished" and [r["step"] for r in rest if r["event"] == "train"] == [4, 5, 6]
    assert losses(first) + losses(rest) == pytest.approx(losses(full), abs=1e-5)
    assert len(set(losses(full))) == 6  # the steps did move the adapters
    for bad, message in (("lora={rank: 8, dropout: 0.1, targets: [attention, experts]}", "cannot change lora.rank"),
                         ("lora=null", "cannot turn lora off")):
        with pytest.raises(WorkbenchError, match=message):
            train(None, tmp_path / "split", resume=True, overrides=[bad, "max_steps=8"])


def test_dpo_with_lora_needs_no_reference_copy_and_its_live_reference_is_the_base(sft_run, pairs, tmp_path):
    args = (f"init_from={sft_run}", f"data={pairs}", *FAST, LORA,
            "max_steps=3", "batch_size=4", "lr=3e-3", "warmup_steps=0")
    engine, live = _engine("dpo", tmp_path / "live", *args, "precompute_ref=false")
    _, pre = run("dpo", tmp_path / "pre", *args, "precompute_ref=true")
    assert engine.stage.ref is None  # no frozen copy: the reference is the policy with its adapters off
    assert losses(live, "dpo_loss")[0] == pytest.approx(math.log(2), abs=1e-5)
    assert losses(live, "dpo_loss") == pytest.approx(losses(pre, "dpo_loss"), abs=1e-5)
    assert abs(losses(live, "dpo_loss")[2] - math.log(2)) > 1e-3  # the adapters moved the policy
    # the reference really is the parent: its log-probs equal the SFT model's own
    from workbench.train.models import load_parent

    parent, _, _ = load_parent(str(sft_run), "policy", "cpu")
    batch = next(engine.stage.batches(0))[1]
    ref_c, ref_r = engine.stage.reference_logps(batch)
    par_c, par_r = engine.stage.response_logps(parent, batch)[:2]
    assert torch.allclose(ref_c, par_c, atol=1e-5) and torch.allclose(ref_r, par_r, atol=1e-5)
    log = (tmp_path / "live" / "train.log").read_text()
    assert "no copy of the model" in log and "trainable parameters" in log


def test_a_lora_reward_model_trains_its_head_and_loads_back_to_the_same_scores(sft_run, pairs, tmp_path):
    from workbench.train.models import load_reward_model

    engine, records = _engine("rm", tmp_path / "rm", f"init_from={sft_run}", f"data={pairs}",
                              *FAST, "lora={rank: 4, targets: [attention]}", "max_steps=4", "lr=3e-3")
    d = engine.stage.model.backbone.cfg.d_model
    adapters = sum(p.numel() for n, p in engine.stage.model.named_parameters() if "lora_" in n)
    assert next(r for r in records if r["event"] == "start")["params"] == adapters + d + 1  # adapters + the head
    ckpt = resolve_checkpoint(tmp_path / "rm")
    assert {p.name for p in ckpt.iterdir()} >= {ADAPTERS, "score_head.safetensors"} and not (ckpt / WEIGHTS).exists()
    loaded, meta, _ = load_reward_model(str(tmp_path / "rm"), "cpu")
    assert meta["extra"]["kind"] == "reward"
    batch = next(engine.stage.batches(0))[1]
    ids, mask = batch["chosen_input_ids"], batch["chosen_attention_mask"]
    engine.stage.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.score(ids, mask)[0], engine.stage.model.score(ids, mask)[0], atol=1e-5)


def test_a_missing_base_stops_a_later_stage_with_a_clear_message(pretrained, pairs, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(resolve_checkpoint(pretrained), base)
    _sft(tmp_path / "sft", base, "lora={rank: 2}", "max_steps=1")
    shutil.rmtree(base)
    with pytest.raises(WorkbenchError, match=r"holds LoRA adapters for the base checkpoint .*base, which is missing"):
        run("dpo", tmp_path / "dpo", f"init_from={tmp_path / 'sft'}", f"data={pairs}",
            *FAST, "max_steps=1")
