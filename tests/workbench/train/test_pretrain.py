"""Pretraining: the loss really falls, prepared shards are read (with their own tokenizer only),
windows must fit the model, and init_from continues a checkpoint."""

import json

import pytest

from tests.conftest import SAMPLE
from tests.workbench.train.conftest import losses, run
from workbench.errors import WorkbenchError

TEXT = SAMPLE / "text.jsonl"


def args(*extra):
    return ["seq_len=64", "batch_size=8", "eval_every=0", "save_every=0", "tensorboard=false",
            *extra]


def scratch(small_tok, *extra):
    """A new 2-layer tiny model on the small tokenizer."""
    return args(f"tokenizer={small_tok}", "model={n_layers: 2}", *extra)


def test_loss_and_validation_loss_fall_on_sample_text(tmp_path, small_tok):
    _, records = run("pretrain", tmp_path / "run", *scratch(small_tok, f"data={TEXT}", "max_steps=30",
                                                            "eval_every=10", "eval_batches=4"))
    train = losses(records)
    first, last = sum(train[:5]) / 5, sum(train[-5:]) / 5
    assert first == pytest.approx(6.24, abs=0.15)  # ~ln(512): a fresh model guesses uniformly
    assert last < first - 0.7, train
    val = [r["val/loss"] for r in records if r["event"] == "eval"]
    assert len(val) == 3 and val[-1] < val[0] - 0.4, val


@pytest.fixture(scope="module")
def shards(tmp_path_factory, small_tok):
    from workbench.data.prepare import load_config, prepare

    out = tmp_path_factory.mktemp("shards") / "text"
    cfg = load_config(None, {"pack.tokenizer": str(small_tok), "pack.val_fraction": 0.1, "filters.enabled": False})
    prepare([str(TEXT)], out, cfg)
    return out


def test_pretrain_from_a_prepared_shard_folder(tmp_path, small_tok, shards):
    index = json.loads((shards / "index.json").read_text())
    out = tmp_path / "run"
    result, records = run("pretrain", out, *scratch(small_tok, f"data={shards}", "max_steps=3"))
    assert result["status"] == "finished"
    log = (out / "train.log").read_text()
    assert f"pretrain data: {index['splits']['train']['tokens']:,} train tokens" in log
    assert f"{index['splits']['val']['tokens']:,} validation tokens" in log
    assert [r["event"] for r in records].count("eval") == 1  # the shards' val split is evaluated at the end
    assert json.loads((out / "lineage.json").read_text())["inputs"]["data"] == str(shards)


def test_shards_of_another_tokenizer_are_refused(tmp_path, shards):
    with pytest.raises(WorkbenchError, match="shards were made with tokenizer .*small.tiktoken, not cl100k_base"):
        run("pretrain", tmp_path / "run", *args("model={n_layers: 1}", f"data={shards}", "max_steps=1"))  # cl100k


def test_windows_longer_than_the_model_are_refused(tmp_path, small_tok):
    with pytest.raises(WorkbenchError, match=r"seq_len 512 \(\+1 for the shifted target\) exceeds the model's "
                                             r"max_seq_len 512; lower seq_len or set model: \{max_seq_len: N\}"):
        run("pretrain", tmp_path / "run", *scratch(small_tok, f"data={TEXT}", "seq_len=512"))


def test_init_from_continues_a_checkpoint(tmp_path, small_tok, pretrained):
    from workbench.model.checkpoint import load_checkpoint
    from workbench.train.checkpoint import latest_checkpoint

    parent = latest_checkpoint(pretrained)
    _, fresh = run("pretrain", tmp_path / "fresh", *scratch(small_tok, f"data={TEXT}", "max_steps=2"))
    out = tmp_path / "more"
    _, records = run("pretrain", out, *args(f"init_from={pretrained}", f"data={TEXT}", "max_steps=2", "lr=1e-9",
                                            "warmup_steps=0"))
    # the same windows (same seed) cost far less to a model that was already trained on them
    assert losses(records)[0] < losses(fresh)[0] - 1.0
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["parent"]["path"] == str(parent.resolve()) and lineage["parent"]["stage"] == "pretrain"
    before, _ = load_checkpoint(parent)
    after, meta = load_checkpoint(latest_checkpoint(out))
    assert meta["tokenizer"]["sha256"] == json.loads((parent / "config.json").read_text())["tokenizer"]["sha256"]
    for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        assert (a - b).abs().max() < 1e-4, name  # lr 1e-9: two steps barely move anything
    with pytest.raises(WorkbenchError, match="leave tokenizer and model unset"):
        run("pretrain", tmp_path / "bad", *args(f"init_from={pretrained}", f"tokenizer={small_tok}", f"data={TEXT}"))
