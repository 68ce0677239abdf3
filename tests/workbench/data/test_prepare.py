"""`prepare` end to end: packing round-trip, report, atomic output, bad inputs, config, .txt splits."""

import json
import random

import numpy as np
import pytest

from tests.conftest import SAMPLE, shared
from workbench.data.corpus import ReadConfig, ReadStats, iter_documents
from workbench.data.prepare import PrepareConfig, load_config, prepare
from workbench.data.shards import open_shards
from workbench.errors import WorkbenchError

STORY = ("The ferry leaves the harbour at dawn, and the fishermen wave from the pier as it passes. "
         "By noon it reaches the island, where the market sells bread, apples and smoked fish.")
LOG = "wind rain fog sun calm storm hail frost gale mist snow heat cloud thunder drizzle breeze".split()


def _docs():
    # each chapter logs its own word order: chapters differing only in numbers would be near duplicates
    # of each other (Jaccard 0.70 of 5-word shingles), and near-dedup rightly keeps one of them
    docs = [f"Chapter {i}. {STORY} On day {i} the captain logged {' '.join(random.Random(i).sample(LOG, 12))}."
            for i in range(30)]
    docs[3] += "\nWrite to captain.doe@example.com for tickets."       # PII scrubbed
    docs[4] = docs[2]                                                   # exact duplicate
    docs[5] = docs[6].replace("apples", "pears")                        # near duplicate: docs[6] goes
    docs += ["Too short.", "buy cheap shoes " * 20 + "now.", "Lorem ipsum dolor sit amet, consectetur elit.",
             "  Chapter 40. \u00a0" + STORY + "\r\nWe use cookies to track you.\r\nThe end of the story."]
    return docs


def _write_jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def _decode_docs(tok, folder, split):
    ds = open_shards(folder, split, tokenizer=tok)
    text = tok.decode(ds.tokens(0, ds.num_tokens).tolist())
    parts = text.split("<|endoftext|>")
    assert parts[-1] == ""
    return parts[:-1]


def test_round_trip_report_and_index(tmp_path, tok):
    src = _write_jsonl(tmp_path / "in.jsonl", _docs())
    cfg = load_config(None, {"pack.seq_len": 16, "pack.val_fraction": 0.2, "pack.shard_tokens": 100})
    out = tmp_path / "out"
    report = prepare([str(src)], out, cfg)
    train, val = _decode_docs(tok, out, "train"), _decode_docs(tok, out, "val")
    kept = train + val
    assert len(kept) == len(set(kept)) == report["output"]["documents"] == 34 - 1 - 1 - 3  # exact, near, quality
    docs = _docs()
    assert docs[0] in kept and docs[4] == docs[2] and kept.count(docs[2]) == 1   # exact dup removed
    assert docs[5] in kept and docs[6] not in kept
    assert any("[EMAIL]" in d for d in kept) and not any("@example.com" in d for d in kept)
    assert not any(d.startswith(("Too short", "buy cheap", "Lorem")) for d in kept)
    last = next(d for d in kept if d.startswith("Chapter 40."))
    assert "cookies" not in last and last == "Chapter 40.  " + STORY + "\nThe end of the story."
    chapters = [int(d.split(".")[0].split()[1]) for d in train]
    assert chapters == sorted(chapters)  # input order kept within a split
    assert 1 <= len(val) <= 10 and report["output"]["val"]["tokens"] >= 17
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["read", "normalise", "boilerplate_lines", "quality", "pii", "exact_dedup",
                           "near_dedup", "tokenize"]
    assert steps["read"]["docs_in"] == 34 and steps["tokenize"]["docs_out"] == len(kept)
    assert steps["exact_dedup"]["removed"] == {"exact duplicate": 1}
    assert steps["near_dedup"]["removed"] == {"near duplicate": 1} and steps["near_dedup"]["clusters"][0]["size"] == 2
    assert steps["pii"]["replacements"] == {"email": 1, "phone": 0, "ip": 0}
    assert steps["boilerplate_lines"]["lines_removed"] == {"we use cookies": 1}
    assert sum(steps["quality"]["removed"].values()) == 3 and all(steps["quality"]["examples"].values())
    assert report["retained"]["documents"] == pytest.approx(len(kept) / 34)
    total = sum(len(tok.encode(d)) + 1 for d in kept)
    assert report["output"]["tokens"] == total == steps["tokenize"]["tokens_out"]
    index = json.loads((out / "index.json").read_text())
    assert index["dtype"] == "uint32" and index["tokenizer"]["name"] == "cl100k_base"
    assert len(index["splits"]["train"]["shards"]) > 1
    assert json.loads((out / "report.json").read_text())["output"] == report["output"]
    md = (out / "report.md").read_text()
    assert "| quality |" in md and "exact duplicate" in md and "@example.com" not in md
    assert not list(tmp_path.glob("out.tmp-*"))


def test_trained_tokenizer_gives_uint16_shards(tmp_path):
    from workbench.tokenizer_train import train_tokenizer

    train_tokenizer([str(SAMPLE / "text.jsonl")], 300, tmp_path / "t.tiktoken")
    out = tmp_path / "out"
    prepare([str(SAMPLE / "text.jsonl")], out, load_config(None, {"pack.tokenizer": str(tmp_path / "t.tiktoken"),
                                                                  "pack.seq_len": 64}))
    assert json.loads((out / "index.json").read_text())["dtype"] == "uint16"
    assert np.asarray(open_shards(out).maps[0]).dtype == np.uint16


def test_existing_output_needs_force_and_survives_failures(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", _docs())
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(WorkbenchError, match="--force"):
        prepare([str(src)], out)
    bad = _write_jsonl(tmp_path / "short.jsonl", ["Too short.", "Tiny."])
    with pytest.raises(WorkbenchError, match="no documents left after filtering"):
        prepare([str(bad)], out, force=True)
    assert (out / "keep.txt").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == \
        ["in.jsonl", "out", "short.jsonl"]
    prepare([str(src)], out, force=True)
    assert not (out / "keep.txt").exists() and (out / "index.json").is_file()


@pytest.mark.parametrize("name,content,message", [
    ("bin.txt", b"hello\x00\xff\xfe binary", "binary file"),
    ("bad.jsonl", b'{"text": "fine document here"}\n{"text": "caf\xe9"}\n', "line 2, column 14: invalid UTF-8"),
    ("empty.jsonl", b"", "file is empty"),
    ("broken.jsonl", b'{"text": "ok"}\n{"text": \n', "broken.jsonl:2: malformed JSON"),
    ("num.jsonl", b'{"text": "ok"}\n{"text": 5}\n', "num.jsonl:2: 'text' is an integer"),
    ("other.jsonl", b'{"body": "ok"}\n', "no 'text' field (fields: body)"),
])
def test_bad_inputs_named(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(WorkbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare([str(tmp_path / name)], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp-*"))


def test_missing_paths_and_empty_folders(tmp_path):
    with pytest.raises(WorkbenchError, match="no such file or folder"):
        prepare([str(tmp_path / "nope.jsonl")], tmp_path / "out")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.md").write_text("x")
    with pytest.raises(WorkbenchError, match="folder has no data files"):
        prepare([str(tmp_path / "d")], tmp_path / "out")


def test_skip_bad_counts_and_reports(tmp_path):
    good = [json.dumps({"text": f"{STORY} Entry number {i} of the log."}).encode() for i in range(5)]
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(good[:3] + [b'{"text": "caf\xe9"}', b"{oops", b'{"text": null}'] + good[3:]))
    (tmp_path / "b.txt").write_bytes(b"\x00\xffbinary")
    (tmp_path / "c.jsonl").write_bytes(b"")
    report = prepare([str(tmp_path)], tmp_path / "out", load_config(None, {"input.skip_bad": True, "pack.seq_len": 8,
                                                                             "dedup.near": False}))
    assert report["output"]["documents"] == 5
    assert report["input"]["skipped"] == {"not UTF-8": 2, "malformed JSON": 1, "text not a string": 1,
                                          "empty file": 1}
    assert "a.jsonl:4" in report["input"]["first_skipped"]["not UTF-8"]


def test_config_rejects_unknown_keys(tmp_path):
    (tmp_path / "c.yaml").write_text("dedup:\n  treshold: 0.7\n")
    with pytest.raises(WorkbenchError, match="did you mean 'threshold'"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("filter:\n  min_words: 3\n")
    with pytest.raises(WorkbenchError, match="did you mean 'filters'"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(WorkbenchError, match="must be an integer"):
        load_config(None, {"pack.seq_len": "long"})


def test_example_config_lists_the_defaults():
    import dataclasses
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "configs" / "data" / "prepare.yaml"
    assert dataclasses.asdict(load_config(path)) == dataclasses.asdict(PrepareConfig())


def test_txt_split_modes(tmp_path):
    paras = [" ".join(f"w{p}_{i}" for i in range(40)) for p in range(5)]
    (tmp_path / "book.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")

    def docs(**kw):
        return list(iter_documents([str(tmp_path / "book.txt")], ReadConfig(**kw), ReadStats()))
    assert docs(txt_split="paragraph") == paras
    assert docs(txt_split="file") == ["\n\n".join(paras)]
    assert docs(txt_split="chunk", txt_chunk_words=100) == ["\n\n".join(paras[:3]), "\n\n".join(paras[3:])]
    assert len(docs(txt_split="line")) == 5


def test_c4_demo_mostly_survives(tmp_path):
    report = prepare([str(shared("text_c4_demo.jsonl"))], tmp_path / "c4")
    assert report["retained"]["documents"] >= 0.8


def test_parquet_and_json_array_inputs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [f"{STORY} Entry {i}." for i in range(3)]
    pq.write_table(pa.table({"body": docs}), tmp_path / "a.parquet")
    (tmp_path / "b.json").write_text(json.dumps([{"body": d} for d in docs]))
    cfg = ReadConfig(text_field="body")
    assert list(iter_documents([str(tmp_path)], cfg, ReadStats())) == docs + docs
    (tmp_path / "c.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(WorkbenchError, match="c.parquet: cannot be read as parquet"):
        list(iter_documents([str(tmp_path / "c.parquet")], cfg, ReadStats()))


class _Docs:
    """A split's writer that keeps each document's tokens (what TrainValSplitter writes to)."""

    def __init__(self):
        self.docs = []

    @property
    def documents(self):
        return len(self.docs)

    @property
    def num_tokens(self):
        return sum(len(d) for d in self.docs)

    def write(self, tokens, documents=1):
        self.docs.append(list(tokens))


def test_train_val_splitter_moves_the_last_train_documents_while_val_is_short_of_a_window():
    from workbench.data.shards import TrainValSplitter, is_val

    texts = [t for t in (f"doc {i}" for i in range(200)) if not is_val(t, 0.5)]
    val_text = next(t for t in (f"doc {i}" for i in range(200)) if is_val(t, 0.5))
    doc = [[10 * i + j for j in range(4)] for i in range(6)]  # six documents of 4 tokens; a window is 10
    # val empty by the hash: the last documents move, oldest first, until val has a window (12 >= 10)
    # and train keeps one (12 tokens left)
    w = {"train": _Docs(), "val": _Docs()}
    split = TrainValSplitter(w, 0.5, 10)
    assert [split.add(t, np.array(d)) for t, d in zip(texts, doc)] == ["train"] * 6
    assert split.tail == [4, 4, 4] and w["train"].docs == doc[:3]  # held back: the newest 10 tokens past the first
    split.finish()
    assert w["train"].docs == doc[:3] and w["val"].docs == doc[3:] and split.moved == 3
    # val has a document: nothing moves that would leave train short of a window
    w = {"train": _Docs(), "val": _Docs()}
    split = TrainValSplitter(w, 0.5, 10)
    assert split.add(val_text, np.array([7, 7])) == "val"
    for t, d in zip(texts, doc[:3]):
        split.add(t, np.array(d))
    split.finish()
    assert w["train"].docs == doc[:3] and w["val"].docs == [[7, 7]] and split.moved == 0
    # no move: a datatrove part (its merge moves across parts) or val_fraction 0
    for fraction, move in ((0.5, False), (0.0, True)):
        w = {"train": _Docs(), "val": _Docs()}
        split = TrainValSplitter(w, fraction, 10)
        for t, d in zip(texts, doc):
            split.add(t, np.array(d))
        split.finish(move=move)
        assert w["train"].docs == doc and w["val"].docs == [] and split.moved == 0
