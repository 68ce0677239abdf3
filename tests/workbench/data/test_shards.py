"""Token shards: writer, index, memory-mapped reader, windows, deterministic resumable batches."""

import json

import numpy as np
import pytest

from workbench.data.shards import ShardWriter, dtype_for, open_shards, read_index, write_index
from workbench.errors import WorkbenchError

TOK = {"name": "t", "sha256": "abc", "vocab_size": 1000, "eot_id": 996}


def _make(folder, n=103, shard_tokens=10, dtype=np.uint16):
    w = ShardWriter(folder, "train", dtype, shard_tokens)
    data = np.arange(n) % 1000
    for doc in np.array_split(data, 7):  # documents cross shard boundaries
        w.write(doc)
    w.close()
    write_index(folder, TOK, dtype, 8, {"train": w.summary(8)})
    return data


def test_dtype_follows_vocabulary():
    assert dtype_for(65536) == np.uint16 and dtype_for(100278) == np.uint32


def test_stream_windows_and_index(tmp_path):
    data = _make(tmp_path)
    idx = read_index(tmp_path)
    assert idx["version"] == 1 and idx["dtype"] == "uint16" and idx["seq_len"] == 8
    assert [s["tokens"] for s in idx["splits"]["train"]["shards"]] == [10] * 10 + [3]
    assert idx["splits"]["train"] == {**idx["splits"]["train"], "documents": 7, "tokens": 103, "windows": 12}
    ds = open_shards(tmp_path, "train", tokenizer=TOK)
    assert ds.num_tokens == 103 and ds.num_windows(8) == 12 and ds.num_windows(102) == 1
    assert np.array_equal(ds.tokens(0, 103), data)
    for i in range(12):  # windows share one token: every token after the first is a target once
        assert np.array_equal(ds.window(i, 8), data[i * 8:i * 8 + 9])
    with pytest.raises(IndexError):
        ds.window(12, 8)


def test_batches_cover_each_window_once_per_epoch_and_resume(tmp_path):
    _make(tmp_path)
    ds = open_shards(tmp_path)
    full = list(ds.batches(3, 8, seed=1, epochs=2))
    assert [p for p, _ in full] == [3 * k for k in range(1, 9)]
    firsts = [int(b[r, 0]) for _, b in full[:4] for r in range(3)]
    assert sorted(firsts) == [8 * i for i in range(12)]  # epoch 1: each window exactly once
    resumed = list(ds.batches(3, 8, seed=1, start=full[2][0], epochs=2))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(full[3:], resumed))
    other = next(ds.batches(3, 8, seed=2))[1]
    assert not np.array_equal(other, full[0][1])
    x, y = full[0][1][:, :-1], full[0][1][:, 1:]
    assert x.shape == y.shape == (3, 8) and x.dtype == np.int64
    straddle = list(ds.batches(5, 8, seed=1, epochs=2))  # 24 windows / 5: the last partial batch is dropped
    assert [p for p, _ in straddle] == [5, 10, 15, 20]


def test_reader_refuses_incomplete_or_foreign_folders(tmp_path):
    with pytest.raises(WorkbenchError, match="no index.json"):
        open_shards(tmp_path)
    _make(tmp_path)
    with pytest.raises(WorkbenchError, match="made with tokenizer t"):
        open_shards(tmp_path, tokenizer={**TOK, "vocab_size": 5})
    with pytest.raises(WorkbenchError, match="no split 'val'"):
        open_shards(tmp_path, "val")
    (tmp_path / "train_00003.bin").write_bytes(b"\0")
    with pytest.raises(WorkbenchError, match="damaged"):
        open_shards(tmp_path)
    idx = json.loads((tmp_path / "index.json").read_text())
    (tmp_path / "index.json").write_text(json.dumps({**idx, "version": 99}))
    with pytest.raises(WorkbenchError, match="version 99"):
        open_shards(tmp_path)


def test_too_short_for_one_window(tmp_path):
    _make(tmp_path, n=5)
    with pytest.raises(WorkbenchError, match="fewer than one window"):
        next(open_shards(tmp_path).batches(1, 8))
