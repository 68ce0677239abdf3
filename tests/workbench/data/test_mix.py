"""Weighted mixes: `prepare --mix` token shares, epochs, per-source counts, dedup across sources, CLI
errors; and pretraining on a mix of raw text (`data: {path: weight}`)."""

import json
import random
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.workbench.data.test_prepare import _decode_docs, _write_jsonl
from workbench.cli import app
from workbench.data.mix import mix_order, parse_mix, sample_documents
from workbench.data.prepare import load_config, prepare
from workbench.errors import WorkbenchError

WORDS = ("river harbour island market bread apples fish ferry captain morning evening winter summer garden "
         "window letter travel mountain valley forest meadow village station bridge lantern harvest orchard "
         "weather journey stone silver copper timber wagon sailor keeper farmer baker weaver potter").split()


def _text(tag: str, seed: int) -> str:
    r = random.Random(f"{tag}{seed}")
    words = r.sample(WORDS, 7 * r.randint(3, 5))  # no word twice: no repeated n-gram for the filters to see
    return f"{tag} {seed}. " + " ".join(" ".join(words[i:i + 7]).capitalize() + "." for i in range(0, len(words), 7))


@pytest.fixture
def sources(tmp_path):
    web = [_text("Web", i) for i in range(120)] + ["Too short."]
    books = [_text("Book", i) for i in range(40)] + [web[7]]  # also in web: dedup keeps the web copy only
    web_path = _write_jsonl(tmp_path / "web.jsonl", web)
    (tmp_path / "books.txt").write_text("\n\n".join(books) + "\n", encoding="utf-8")
    return web_path, tmp_path / "books.txt", web, books


def _mix(src, out, weights=(0.7, 0.3), **overrides):
    web, books = src[:2]
    cfg = load_config(None, {"mix.sources": {str(web): weights[0], str(books): weights[1]}, "input.txt_split": "paragraph",
                             "pack.seq_len": 16, "pack.val_fraction": 0.1, "input.batch_size": 16, **overrides})
    return prepare([], out, cfg)


def _shares(tok, folder, split="train"):
    """Tokens per source in a split, counted from the shards themselves."""
    tokens = Counter()
    for doc in _decode_docs(tok, folder, split):
        tokens[doc.split(" ", 1)[0]] += len(tok.encode(doc)) + 1
    return tokens


def test_token_shares_hit_the_weights_and_the_scarcest_source_is_used_once(tmp_path, tok, sources):
    report = _mix(sources, tmp_path / "out")
    web, books = report["mix"]["sources"]
    got = _shares(tok, tmp_path / "out")
    total = sum(got.values())
    assert total == report["output"]["train"]["tokens"] == report["mix"]["tokens"]
    for row, tag, weight in ((web, "Web", 0.7), (books, "Book", 0.3)):
        assert row["weight"] == pytest.approx(weight)
        assert got[tag] == row["tokens"] and abs(got[tag] / total - weight) < 0.01
    # books (40 documents) is the scarce one for 0.3: all of it once; web is subsampled
    assert report["mix"]["basis"] == f"{sources[1]} at one epoch"
    assert books["epochs"] == 1.0 and books["repeats"] == 0 and books["unused_documents"] == 0
    assert 0.3 < web["epochs"] < 1.0 and web["unused_documents"] > 0 and web["repeats"] == 0
    train, val = _decode_docs(tok, tmp_path / "out", "train"), _decode_docs(tok, tmp_path / "out", "val")
    assert not set(train) & set(val) and len(val) == web["val"]["documents"] + books["val"]["documents"]
    assert {d.split(" ", 1)[0] for d in val} == {"Web", "Book"}  # each source holds out its own


def test_more_tokens_repeat_documents_and_the_report_counts_epochs(tmp_path, tok, sources):
    first = _mix(sources, tmp_path / "a")
    report = _mix(sources, tmp_path / "b", **{"mix.tokens": 3 * first["mix"]["tokens"]})
    web, books = report["mix"]["sources"]
    assert report["mix"]["basis"] == "mix.tokens" and abs(report["mix"]["tokens"] / (3 * first["mix"]["tokens"]) - 1) < 0.01
    assert books["epochs"] == pytest.approx(3.0, abs=0.05) and 1.0 < web["epochs"] < 3.0
    train = _decode_docs(tok, tmp_path / "b", "train")
    counts = Counter(train)
    assert max(counts.values()) >= 3  # documents really repeat in the shards ...
    repeats = sum(n - 1 for n in counts.values())
    assert repeats == web["repeats"] + books["repeats"]  # ... as often as the report says
    assert len(train) == web["documents_in_mix"] + books["documents_in_mix"]
    got = _shares(tok, tmp_path / "b")
    assert abs(got["Book"] / sum(got.values()) - 0.3) < 0.01


def test_each_source_keeps_its_counts_and_dedup_runs_across_sources(tmp_path, tok, sources):
    report = _mix(sources, tmp_path / "out", weights=(0.9, 0.1))  # web is the scarce one: each document once
    web, books = ({s["name"]: s for s in row["steps"]} for row in report["mix"]["sources"])
    assert web["read"]["docs_in"] == 121 and books["read"]["docs_in"] == 41
    assert web["quality"]["removed"] == {"fewer than 5 words": 1} and books["quality"]["removed"] == {}
    assert web["exact_dedup"]["removed"] == {} and books["exact_dedup"]["removed"] == {"exact duplicate": 1}
    assert web["tokenize"]["docs_out"] == 120 and books["tokenize"]["docs_out"] == 40
    totals = {s["name"]: s for s in report["steps"]}  # the steps table adds the sources up
    assert totals["read"]["docs_in"] == 162 and totals["tokenize"]["docs_out"] == 160
    assert totals["tokenize"]["tokens_out"] == web["tokenize"]["tokens_out"] + books["tokenize"]["tokens_out"]
    assert report["mix"]["sources"][0]["epochs"] == 1.0
    docs = _decode_docs(tok, tmp_path / "out", "train") + _decode_docs(tok, tmp_path / "out", "val")
    assert docs.count(sources[2][7]) == 1  # in both sources, kept once
    assert report["input"]["documents"] == 162 and report["inputs"] == [str(p) for p in sources[:2]]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## mix" in md and "| source | read | normalise |" in md


def test_a_mix_is_deterministic_and_identical_with_workers(tmp_path, sources):
    _mix(sources, tmp_path / "a", **{"parallel.workers": 1})
    _mix(sources, tmp_path / "b", **{"parallel.workers": 2})
    _mix(sources, tmp_path / "c", **{"parallel.workers": 1, "mix.seed": 1})
    read = lambda d: b"".join(p.read_bytes() for p in sorted(d.glob("*.bin")))  # noqa: E731
    assert read(tmp_path / "a") == read(tmp_path / "b") != read(tmp_path / "c")
    assert not list((tmp_path / "a").glob(".mix*")) and not (tmp_path / "a" / ".mix").exists()


def test_sampling_is_nearest_the_target():
    lengths = np.array([10, 20, 30, 40])
    for target in (35, 100, 250, 1000):
        picks = sample_documents(lengths, target, np.random.default_rng(target))
        assert abs(int(lengths[picks].sum()) - target) <= 20  # within half of the longest document
        counts = Counter(picks.tolist())
        assert all(counts[i] in (target // 100, target // 100 + 1) for i in range(4))  # whole epochs, then a part
    # source 1 (8 x 5 tokens) is the scarce one at equal weights: all of it once, source 0 ~40 tokens
    sources, docs = mix_order([lengths, np.array([5] * 8)], [1, 1], 0, seed=0)
    assert sorted(docs[sources == 1].tolist()) == list(range(8))
    assert abs(int(lengths[docs[sources == 0]].sum()) - 40) <= 20
    assert sources.tolist() != sorted(sources.tolist())  # interleaved, not one source after the other


@pytest.mark.parametrize("spec,message", [
    ("a.jsonl=x", "the weight 'x' is not a number"),
    ("a.jsonl", "expected PATH=WEIGHT"),
    ("{web}=0", "the weight of {web} must be a positive number, got 0.0"),
    ("{web}=-1", "must be a positive number, got -1.0"),
    ("{web}=inf", "must be a positive number, got inf"),
    ("missing.jsonl=1", "no such file or folder: missing.jsonl"),
])
def test_cli_mix_errors_are_clear(tmp_path, sources, spec, message):
    spec, message = (x.format(web=sources[0]) for x in (spec, message))
    r = CliRunner().invoke(app, ["data", "prepare", "--mix", spec, "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and message in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_cli_mix_runs_and_refuses_inputs_with_it(tmp_path, sources):
    runner = CliRunner()
    web, books = (str(p) for p in sources[:2])
    r = runner.invoke(app, ["data", "prepare", "--mix", f"{web}=2", "--mix", f"{books}=1", "--txt-split", "paragraph",
                            "--seq-len", "16", "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    mix = json.loads(r.stdout)["mix"]
    assert [round(s["weight"], 3) for s in mix["sources"]] == [0.667, 0.333] and mix["max_share_error"] < 0.01
    r = runner.invoke(app, ["data", "prepare", web, "--mix", f"{books}=1", "--out", str(tmp_path / "p")])
    assert r.exit_code == 1 and "not both" in r.output
    r = runner.invoke(app, ["data", "prepare", "--mix", f"{web}=1", "--mix", f"{web}=2", "--out", str(tmp_path / "p")])
    assert r.exit_code == 1 and "already in the mix" in r.output
    with pytest.raises(WorkbenchError, match="mix.sources: the weight of .* must be a positive number"):
        load_config(None, {"mix.sources": {web: True}})
    assert parse_mix([f"{web}=0.5"]) == {web: 0.5}


# ---------------------------------------------------------------- pretraining on a mix of raw text

def test_pretrain_config_takes_a_mix_of_raw_text(tmp_path, sources):
    from workbench.train.config import load_config as train_config

    web, books = (str(p) for p in sources[:2])
    cfg = train_config("pretrain", None, [f"data={{{web}: 0.7, {books}: 0.3}}"])
    assert cfg.data == {web: 0.7, books: 0.3}
    assert train_config("pretrain", None, [f"data={web}"]).data == web
    with pytest.raises(WorkbenchError, match="the weight of .* must be a positive number, got 0"):
        train_config("pretrain", None, [f"data={{{web}: 0}}"])
    with pytest.raises(WorkbenchError, match="data must be a string or a mapping or null, got 5"):
        train_config("pretrain", None, ["data=5"])
    prepared = tmp_path / "prepared"
    prepare([web], prepared, load_config(None, {"pack.seq_len": 16}))
    with pytest.raises(WorkbenchError, match="is a prepared shard folder; a mix takes raw text"):
        train_config("pretrain", None, [f"data={{{prepared}: 1, {books}: 1}}"])


def test_pretrain_samples_a_mix_by_token_shares(tmp_path, tok, sources):
    from workbench.train.data import mix_documents

    web, books = (str(p) for p in sources[:2])
    train, val, rows = mix_documents({web: 0.25, books: 0.75}, tok, val_fraction=0.1, seed=0)
    text = [tok.decode(d.tolist()) for d in train]
    tokens = Counter()
    for t, d in zip(text, train):
        tokens[t.split(" ", 1)[0]] += len(d)
    assert abs(tokens["Book"] / sum(tokens.values()) - 0.75) < 0.01
    assert [r["path"] for r in rows] == [web, books] and rows[1]["epochs"] == 1.0 and rows[0]["epochs"] < 0.5
    assert len(val) >= 2 and all(t.endswith("<|endoftext|>") for t in text)


def test_pretrain_runs_on_a_mix(tmp_path, sources):
    from workbench.tokenizer_train import train_tokenizer
    from workbench.train.config import load_config as train_config
    from workbench.train.engine import train

    web, books = (str(p) for p in sources[:2])
    tok = tmp_path / "t.tiktoken"
    train_tokenizer([web], 300, tok, held_out=0.0)
    cfg = train_config("pretrain", None, [f"data={{{web}: 0.5, {books}: 0.5}}", f"tokenizer={tok}", "model={n_layers: 1}",
                                          "seq_len=32", "batch_size=4", "max_steps=2", "eval_every=0", "save_every=0",
                                          "tensorboard=false", "eval_batches=1"])
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "finished"
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"mix: {web}:" in log and "share 0.5" in log and "epochs" in log
    assert json.loads((tmp_path / "run" / "lineage.json").read_text())["inputs"]["data"] == {web: 0.5, books: 0.5}
