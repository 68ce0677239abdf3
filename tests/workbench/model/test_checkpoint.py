"""Checkpoints: exact round trip, atomic writes, loading refuses pickles and mismatches with clear messages."""

import json

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.model import checkpoint as ck
from workbench.model.checkpoint import load_checkpoint, load_checkpoint_tokenizer, save_checkpoint

from .conftest import make


@pytest.mark.parametrize("name, overrides", [("tiny", {}), ("tiny-dense", {"tie_embeddings": False})])
def test_round_trip_gives_identical_outputs(tmp_path, name, overrides):
    model = make(name, **overrides)
    save_checkpoint(model, tmp_path / "ck", extra={"stage": "init"})
    loaded, meta = load_checkpoint(tmp_path / "ck")
    ids = torch.randint(0, 300, (2, 9))
    assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert meta["extra"] == {"stage": "init"} and meta["model"] == model.cfg
    if model.cfg.tie_embeddings:
        assert loaded.lm_head.weight is loaded.embed_tokens.weight


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = make("tiny")
    save_checkpoint(model, tmp_path / "ck")
    before = (tmp_path / "ck" / "model.safetensors").read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(make("tiny", seed=1), tmp_path / "ck", force=True)
    assert (tmp_path / "ck" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary left behind
    load_checkpoint(tmp_path / "ck")


def test_existing_directory_needs_force(tmp_path):
    save_checkpoint(make("tiny"), tmp_path / "ck")
    with pytest.raises(WorkbenchError, match="--force"):
        save_checkpoint(make("tiny"), tmp_path / "ck")


def test_a_pickle_in_place_of_safetensors_is_refused_not_unpickled(tmp_path):
    save_checkpoint(make("tiny"), tmp_path / "ck")

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    torch.save({"x": Boom()}, tmp_path / "ck" / "model.safetensors")
    with pytest.raises(WorkbenchError, match="cannot read weights"):
        load_checkpoint(tmp_path / "ck")


def test_mismatched_weights_and_configs_are_named(tmp_path):
    save_checkpoint(make("tiny"), tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    meta["model"]["kv_lora_rank"] = 16
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WorkbenchError, match=r"kv_a_\w+.weight has shape .* config.json implies"):
        load_checkpoint(tmp_path / "ck")
    meta["model"]["kv_lora_rnak"] = meta["model"].pop("kv_lora_rank")
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WorkbenchError, match="did you mean 'kv_lora_rank'"):
        load_checkpoint(tmp_path / "ck")
    meta["model"]["kv_lora_rank"] = meta["model"].pop("kv_lora_rnak")
    meta["model"]["n_layers"] = 3
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WorkbenchError, match="unexpected layers.3"):
        load_checkpoint(tmp_path / "ck")
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(WorkbenchError, match="not valid JSON"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(WorkbenchError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkbenchError, match="workbench model init"):
        load_checkpoint(tmp_path / "empty")


def test_the_tokenizer_travels_with_the_checkpoint(tmp_path, tok):
    from workbench.model import Transformer, preset

    save_checkpoint(Transformer(preset("tiny")), tmp_path / "ck", tokenizer=tok)
    assert load_checkpoint_tokenizer(tmp_path / "ck").sha256 == tok.sha256
    # a model whose vocabulary does not match its tokenizer is refused
    save_checkpoint(make("tiny"), tmp_path / "bad", tokenizer=tok)
    with pytest.raises(WorkbenchError, match="300-token vocabulary"):
        load_checkpoint_tokenizer(tmp_path / "bad")


def test_a_trained_tokenizer_file_is_copied_in(tmp_path):
    import base64

    from workbench.model import Transformer, preset
    from workbench.tokenizer import load_tokenizer

    ranks = tmp_path / "bytes.tiktoken"
    ranks.write_text("".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256)))
    tok = load_tokenizer(str(ranks))
    save_checkpoint(Transformer(preset("tiny", vocab_size=tok.vocab_size)), tmp_path / "ck", tokenizer=tok)
    ranks.unlink()  # the checkpoint does not depend on the original file
    again = load_checkpoint_tokenizer(tmp_path / "ck")
    assert again.sha256 == tok.sha256 and again.encode("héllo") == tok.encode("héllo")
    assert (tmp_path / "ck" / ck.TOKENIZER_FILE).is_file()


def _edit_config(path, fn):
    meta = json.loads((path / "config.json").read_text())
    fn(meta)
    (path / "config.json").write_text(json.dumps(meta))


def test_a_missing_setting_is_an_error_not_a_silent_default(tmp_path):
    save_checkpoint(make("tiny", rope_theta=500000.0), tmp_path / "ck")
    _edit_config(tmp_path / "ck", lambda m: m["model"].pop("rope_theta"))
    with pytest.raises(WorkbenchError, match="missing model setting.*rope_theta"):
        load_checkpoint(tmp_path / "ck")


def test_non_finite_weights_and_odd_tokenizer_entries_are_refused(tmp_path, tok):
    from safetensors.torch import load_file, save_file

    save_checkpoint(make("tiny"), tmp_path / "ck", tokenizer=tok)
    weights = tmp_path / "ck" / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["norm.weight"][0] = float("nan")
    save_file(tensors, str(weights))
    with pytest.raises(WorkbenchError, match="norm.weight contains NaN"):
        load_checkpoint(tmp_path / "ck")
    _edit_config(tmp_path / "ck", lambda m: m["tokenizer"].update(file="../../etc/passwd"))
    with pytest.raises(WorkbenchError, match="inside the checkpoint directory"):
        load_checkpoint_tokenizer(tmp_path / "ck")
