"""prepare on datatrove's executors (workbench/data/datatrove_steps.py): the same documents as
`workbench data prepare`, in a folder open_shards reads. Skipped without the `datatrove` extra."""

import json
import random
import shutil

import numpy as np
import pytest

pytest.importorskip("datatrove")

from datatrove.data import Document  # noqa: E402

from workbench.data.datatrove_steps import (ReadDocuments, WordSplitter, WriteShards, lsh_shape,  # noqa: E402
                                            minhash_config, removal_probability, run_local, stages)
from workbench.data.corpus import ReadConfig  # noqa: E402
from workbench.data.dedup import DedupConfig  # noqa: E402
from workbench.data.prepare import load_config, prepare  # noqa: E402
from workbench.data.shard_merge import merge_shards  # noqa: E402
from workbench.data.shards import is_val, open_shards, read_index  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402

FUNCTION_WORDS = "the of and to in a is that for it as with was on by".split()


def _original(i: int) -> tuple[str, list[str]]:
    """~150 words of sentences from a vocabulary of its own: originals share no 5-word shingle."""
    rng = random.Random(i)
    vocab = [f"{'bcdfgklmnprstvz'[i % 15]}{'aeiou'[j % 5]}{i}x{j}{'aeiou'[i % 5]}n" for j in range(60)]
    sentences = [" ".join(rng.choice(vocab if k % 2 else FUNCTION_WORDS) for k in range(12)).capitalize() + "."
                 for _ in range(12)]
    return " ".join(sentences), vocab


def _copy(text: str, vocab: list[str], seed: int) -> str:
    """One word of ~150 replaced: Jaccard ~0.93 to the original, removed by both ways of deduplicating."""
    words = text.split(" ")
    words[random.Random(seed).randrange(len(words))] = random.Random(seed + 1).choice(vocab)
    return " ".join(words)


def _corpus(folder):
    a, b, originals = [], [], []
    for i in range(12):
        text, vocab = _original(i)
        originals.append(text)
        (a if i < 6 else b).append(text)
        if i % 3 == 0:
            b.append(_copy(text, vocab, i))                       # near copy in the other file (other task)
        if i % 3 == 1:
            (a if i < 6 else b).append(_copy(text, vocab, i))     # near copy in the same file
            b.append(_copy(text, vocab, i + 100))                 # and one in file b: a cluster of three
        if i % 4 == 2:
            b.append("  " + text.replace(". ", ".\u00a0", 1) + "\n\n")  # exact copy after normalising
    pii = "Write to keeper.doe@example.com for the log. " + _original(50)[0]
    boiler = _original(51)[0] + "\nWe use cookies to track you."
    a += ["Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.", boiler]
    b += ["Too short.", pii]
    paths = []
    for name, docs in (("a.jsonl", a), ("b.jsonl", b)):
        (folder / name).write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
        paths.append(str(folder / name))
    return paths, len(a) + len(b), originals + [boiler.rsplit("\n", 1)[0],
                                                pii.replace("keeper.doe@example.com", "[EMAIL]")]


def _stream(folder, split):
    ds = open_shards(folder, split)
    return ds.tokens(0, ds.num_tokens)


def _texts(tok, folder, split):
    return tok.decode(_stream(folder, split).tolist()).split("<|endoftext|>")[:-1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """prepare and run_local (2 tasks, 2 workers) on the same two files, the same settings."""
    root = tmp_path_factory.mktemp("dt")
    inputs, n_in, kept = _corpus(root)
    overrides = {"pack.seq_len": 32, "pack.val_fraction": 0.1, "pack.shard_tokens": 1000}
    prepare(inputs, root / "prepare", load_config(None, overrides))
    index = run_local(inputs, root / "datatrove", load_config(None, overrides), tasks=2, workers=2,
                      work=root / "work")
    return {"root": root, "inputs": inputs, "n_in": n_in, "kept": kept, "index": index, "overrides": overrides}


def test_keeps_the_documents_prepare_keeps(runs, tok):
    root = runs["root"]
    for split in ("train", "val"):  # same documents, same order, same split: the same token streams
        assert np.array_equal(_stream(root / "datatrove", split), _stream(root / "prepare", split))
    ours, theirs = read_index(root / "datatrove"), read_index(root / "prepare")
    assert ours["splits"] == theirs["splits"] == runs["index"]["splits"]  # shard files cut at the same tokens
    assert len(ours["splits"]["train"]["shards"]) > 1
    assert ours["tokenizer"] == theirs["tokenizer"] and ours["dtype"] == "uint32"
    texts = _texts(tok, root / "datatrove", "train") + _texts(tok, root / "datatrove", "val")
    # every near or exact copy went, across tasks too; the filters and PII scrubbing ran
    assert sorted(texts) == sorted(runs["kept"]) and runs["n_in"] - len(texts) == 17
    assert open_shards(root / "datatrove", "train", tokenizer=tok).num_windows(32) > 0


def test_the_work_folder_holds_each_stage(runs):
    work = runs["root"] / "work"
    assert sorted(p.name for p in (work / "filtered").iterdir()) == ["00000.jsonl", "00001.jsonl"]
    assert sorted(p.name for p in (work / "parts").iterdir()) == ["00000", "00001"]
    stats = json.loads((work / "logs" / "filter" / "stats.json").read_text())
    steps = {s["name"].split(": ", 1)[1]: s["stats"] for s in stats}  # "TYPE: name"
    assert list(steps)[:5] == ["📖 workbench read", "normalise", "boilerplate_lines", "quality", "pii"]
    assert steps["quality"] == {"total": 31, "forwarded": 29, "dropped": 2, "dropped_fewer than 5 words": 1,
                                "dropped_contains 'lorem ipsum'": 1}
    assert steps["pii"]["pii_email"] == 1 and steps["boilerplate_lines"]["lines_we use cookies"] == 1


def test_a_used_work_folder_is_refused(runs):
    root = runs["root"]
    with pytest.raises(WorkbenchError, match="silently does nothing"):
        run_local(runs["inputs"], root / "again", tasks=2, workers=2, work=root / "work")
    assert not (root / "again").exists()


def test_merge_names_missing_and_mismatched_parts(runs, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(runs["root"] / "work" / "parts", work / "parts")
    part = work / "parts" / "00001" / "part.json"
    info = json.loads(part.read_text())
    part.write_text(json.dumps({**info, "seq_len": 64}))
    with pytest.raises(WorkbenchError, match="seq_len 64 differs"):
        merge_shards(work, tmp_path / "out")
    shutil.rmtree(work / "parts" / "00001")
    with pytest.raises(WorkbenchError, match="tasks 1 of 2 of the shards stage did not finish"):
        merge_shards(work, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(WorkbenchError, match="no finished parts"):
        merge_shards(tmp_path / "nothing", tmp_path / "out")


def test_exact_dedup_alone_matches_prepare(runs, tmp_path):
    """dedup.near off: the MinHash stages on one shingle per document remove exact copies only."""
    overrides = {**runs["overrides"], "dedup.near": False}
    prepare(runs["inputs"], tmp_path / "prepare", load_config(None, overrides))
    run_local(runs["inputs"], tmp_path / "datatrove", load_config(None, overrides), tasks=2, workers=1)
    for split in ("train", "val"):
        assert np.array_equal(_stream(tmp_path / "datatrove", split), _stream(tmp_path / "prepare", split))
    docs = sum(read_index(tmp_path / "datatrove")["splits"][s]["documents"] for s in ("train", "val"))
    assert docs == len(runs["kept"]) + 12  # the 12 near copies stay; the 3 exact ones went
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datatrove", "prepare"]  # the temporary work folder went


def test_merge_moves_the_last_documents_to_val_across_parts(tmp_path):
    """val empty by hash: prepare moves its last train documents to val; so does the merge, here
    from both parts (the last task has only two documents, fewer than one window)."""
    log = "wind rain fog sun calm storm hail frost gale mist snow heat cloud thunder".split()
    docs = [f"Entry {i}: the keeper wrote {' '.join(random.Random(i).sample(log, 8))}." for i in range(12)]
    assert not any(is_val(d, 0.01) for d in docs)  # the case under test
    cfg = load_config(None, {"filters.enabled": False, "pii.enabled": False, "dedup.exact": False,
                             "dedup.near": False, "pack.seq_len": 40, "pack.val_fraction": 0.01})
    files = []
    for name, part in (("a.jsonl", docs[:10]), ("b.jsonl", docs[10:])):
        (tmp_path / name).write_text("".join(json.dumps({"text": d}) + "\n" for d in part))
        files.append(str(tmp_path / name))
    prepare(files, tmp_path / "prepare", cfg)
    writer = WriteShards(tmp_path / "work" / "parts", cfg.pack)
    for rank, part in enumerate((docs[:10], docs[10:])):
        list(writer.run(iter(Document(text=t, id=str(i)) for i, t in enumerate(part)), rank=rank, world_size=2))
    index = merge_shards(tmp_path / "work", tmp_path / "merged")
    assert index["splits"]["val"]["documents"] >= 3  # more than the last part holds
    assert index["splits"] == read_index(tmp_path / "prepare")["splits"]
    for split in ("train", "val"):
        assert np.array_equal(_stream(tmp_path / "merged", split), _stream(tmp_path / "prepare", split))


def test_inputs_are_split_into_contiguous_blocks_of_files(tmp_path):
    files = []
    for name in "abc":
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"text": f"document {name}"}) + "\n")
        files.append(str(tmp_path / f"{name}.jsonl"))
    step = ReadDocuments(files)
    ranks = [[d.text for d in step.run(None, rank, 2)] for rank in range(2)]
    assert ranks == [["document a"], ["document b", "document c"]]  # rank order = prepare's reading order
    (tmp_path / "c.jsonl").write_text('{"text": "ok"}\n{"text": "bad \\ud800 escape"}\n')
    with pytest.raises(WorkbenchError, match=r"c.jsonl: document 2: .*lone surrogate .* at character 5"):
        list(step.run(None, 1, 2))
    assert [d.text for d in ReadDocuments(files, ReadConfig(skip_bad=True)).run(None, 1, 2)] == ["document b", "ok"]
    with pytest.raises(WorkbenchError, match="no such file"):
        ReadDocuments([str(tmp_path / "missing.jsonl")])


def test_lsh_shape_puts_half_removal_at_the_threshold():
    assert lsh_shape(0.65, 128) == (14, 7) and minhash_config(DedupConfig()).num_buckets == 14
    for num_perm in (64, 128, 256):
        for threshold in (0.5, 0.65, 0.8, 0.9):
            buckets, rows = lsh_shape(threshold, num_perm)
            assert buckets * rows <= num_perm
            assert abs(removal_probability(threshold, buckets, rows) - 0.5) < 0.1
    assert removal_probability(0.93, 14, 7) > 0.9999 and removal_probability(0.3, 14, 7) < 0.005
    exact = minhash_config(DedupConfig(near=False))
    assert (exact.num_buckets, exact.hashes_per_bucket) == (1, 1)


def test_word_splitter_needs_no_spacy():
    w = WordSplitter()
    assert w.word_tokenize("Hello, wörld! It's 42.") == ["Hello", "wörld", "It", "s", "42"]
    assert w.sent_tokenize("One here. Two there!\nThree") == ["One here.", "Two there!", "Three"]
    assert w.span_tokenize("A b. C") == [(0, 4), (5, 6)]


def test_stages_and_their_task_counts(runs, tmp_path):
    jobs = stages(runs["inputs"], tmp_path / "work", load_config(None, {}), out=tmp_path / "out")
    assert [(j.name, j.tasks) for j in jobs] == [("filter", 2), ("buckets", 14), ("clusters", 1), ("shards", 2),
                                                 ("merge", 1)]  # tasks: one per input file by default
    assert len({j.logging_dir for j in jobs}) == 5
    plain = stages(runs["inputs"], tmp_path / "work", load_config(None, {"dedup.near": False, "dedup.exact": False}))
    assert [j.name for j in plain] == ["filter", "shards"]
    with pytest.raises(WorkbenchError, match="quality model .* not found"):  # in the driver, before any task
        stages(runs["inputs"], tmp_path / "work", load_config(None, {"classifier.model": str(tmp_path / "none")}))
    with pytest.raises(WorkbenchError, match="contains .*work"):  # the merge would replace it
        stages(runs["inputs"], tmp_path / "out" / "work", load_config(None, {}), out=tmp_path / "out")


def test_clusters_keep_their_earliest_document(tmp_path):
    """Pairs (task, index): B-C first, then A-B. datatrove's own stage 3 unions by size, so the
    cluster {B, C} absorbs A and A (the earliest) is removed; prepare, and this stage, keep A."""
    import struct

    from datatrove.pipeline.dedup.minhash import MinhashConfig

    from workbench.data.datatrove_steps import FirstKeptClusters

    a, b, c, d, e = (0, 0), (0, 1), (1, 0), (1, 3), (1, 2)
    pairs = [(b, c), (a, b), (e, d)]
    (tmp_path / "dups").mkdir()
    (tmp_path / "dups" / "00000_00.dups").write_bytes(b"".join(struct.pack("<4I", *x, *y) for x, y in pairs))
    step = FirstKeptClusters(str(tmp_path / "dups"), str(tmp_path / "remove"), config=MinhashConfig(num_buckets=1))
    list(step.run())
    removed = {f: sorted(struct.unpack(f"<{p.stat().st_size // 4}I", p.read_bytes()))
               for f, p in ((0, tmp_path / "remove" / "000000.remove"), (1, tmp_path / "remove" / "000001.remove"))}
    assert removed == {0: [1], 1: [0, 3]}  # b, c, d go; a and e, each its cluster's first, stay
