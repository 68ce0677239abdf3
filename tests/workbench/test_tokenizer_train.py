"""BPE training with rustbpe: the saved ranks file loads through load_tokenizer and round-trips text."""

import base64

import pytest

from tests.conftest import SAMPLE
from workbench.errors import WorkbenchError
from workbench.tokenizer import load_tokenizer
from workbench.tokenizer_train import train_tokenizer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "small.tiktoken"
    report = train_tokenizer([str(SAMPLE / "text.jsonl")], 320, out, held_out=0.05)
    return out, report


def test_ranks_file_format_and_specials(trained):
    out, report = trained
    lines = out.read_text().splitlines()
    assert len(lines) == report["ranks"] == 320
    assert [int(line.split()[1]) for line in lines] == list(range(320))
    assert base64.b64decode(lines[65].split()[0]) == b"A"  # the 256 bytes first, in byte order
    tok = load_tokenizer(out)
    assert (tok.eot_id, tok.im_start_id, tok.im_end_id, tok.pad_id) == (320, 321, 322, 323)
    assert tok.vocab_size == report["vocab_size_with_specials"] == 324
    assert tok.enc._pat_str == load_tokenizer().enc._pat_str  # GPT-4 split pattern


@pytest.mark.parametrize("text", ["The River Tamsin flows past Brinmoor.", "Ünïcödé → 日本語 🎉👩‍👩‍👧 \x00\t\r\n",
                                  "<|im_end|> is text here", "   lots   of   spaces\n\n\n", ""])
def test_round_trip_exact(trained, text):
    tok = load_tokenizer(trained[0])
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(i < 320 for i in ids)


def test_merges_compress_and_report(trained):
    out, report = trained
    tok = load_tokenizer(out)
    text = "The kingdom of Brask has towns on the River Drae."
    assert len(tok.encode(text)) < len(text.encode())
    results = {r["tokenizer"]: r for r in report["eval"]["results"]}
    assert set(results) == {str(out), "cl100k_base"} and report["eval"]["bytes"] > 0
    assert results[str(out)]["bytes_per_token"] > 1.0
    assert "held-out" in report["eval"]["source"]


def test_bad_requests(tmp_path):
    with pytest.raises(WorkbenchError, match="between 257"):
        train_tokenizer([str(SAMPLE / "text.jsonl")], 100, tmp_path / "a.tiktoken")
    with pytest.raises(WorkbenchError, match="end in .tiktoken"):
        train_tokenizer([str(SAMPLE / "text.jsonl")], 300, tmp_path / "a.txt")
    (tmp_path / "blank.txt").write_text("   \n\n  \n")
    with pytest.raises(WorkbenchError, match="no text to train on"):
        train_tokenizer([str(tmp_path / "blank.txt")], 300, tmp_path / "a.tiktoken")
    (tmp_path / "a.tiktoken").write_text("x")
    with pytest.raises(WorkbenchError, match="--force"):
        train_tokenizer([str(SAMPLE / "text.jsonl")], 300, tmp_path / "a.tiktoken")
    assert (tmp_path / "a.tiktoken").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
