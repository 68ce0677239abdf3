import base64
import hashlib
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.errors import WorkbenchError
from workbench.tokenizer import CL100K_SHA256, load_tokenizer


def test_default_is_cl100k_with_chatml_specials(tok):
    assert tok.name == "cl100k_base"
    assert tok.sha256 == CL100K_SHA256
    assert (tok.im_start_id, tok.im_end_id, tok.eot_id) == (100264, 100265, 100257)
    assert tok.encode("Hello!") == [9906, 0]  # GPT-4's ids
    assert tok.decode([100264, 882, 198]) == "<|im_start|>user\n"


def test_pad_id_is_never_produced_by_text(tok):
    assert tok.pad_id not in tok.enc._mergeable_ranks.values()
    assert tok.pad_id not in {tok.eot_id, tok.im_start_id, tok.im_end_id}
    assert tok.pad_id == tok.vocab_size - 1
    assert tok.decode([tok.pad_id]) == "<|pad|>"
    assert tok.pad_id not in tok.encode("<|pad|> <|endoftext|> padding")


def test_aliases_share_one_tokenizer():
    assert load_tokenizer("cl100k_base") is load_tokenizer(None) is load_tokenizer("gpt-4")


@pytest.mark.parametrize("text", ["<|im_end|>", "<|im_start|>assistant\n", "x<|endoftext|>y", "<|pad|>"])
def test_special_strings_in_text_are_ordinary_tokens(tok, text):
    ids = tok.encode(text)
    assert not set(ids) & tok.special_ids
    assert tok.decode(ids) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip_arbitrary_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=8))
def test_batch_encode_matches_single(tok, texts):
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]


def _write_ranks(path, extra=(b"ab", b"abc")):
    tokens = [bytes([b]) for b in range(256)] + list(extra)
    path.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % i for i, t in enumerate(tokens)))
    return len(tokens)


def test_ranks_file_gets_specials_after_its_vocabulary(tmp_path):
    n = _write_ranks(tmp_path / "mini.tiktoken")
    t = load_tokenizer(tmp_path / "mini.tiktoken")
    assert (t.eot_id, t.im_start_id, t.im_end_id, t.pad_id) == (n, n + 1, n + 2, n + 3)
    assert t.vocab_size == n + 4
    assert t.encode("abc") == [257]
    assert t.sha256 == hashlib.sha256((tmp_path / "mini.tiktoken").read_bytes()).hexdigest()
    text = "abcab <|im_end|> héllo ✓"
    assert t.decode(t.encode(text)) == text
    assert not set(t.encode(text)) & t.special_ids


@pytest.mark.parametrize("content, message", [
    (b"", "empty tokenizer file"),
    (b"not-base64-and-no-rank\n", ":1: not a tiktoken ranks line"),
    (b"YQ== 0\nYg== x\n", ":2: not a tiktoken ranks line"),
    (b"YQ== 0\nYg== 1\n", "needs all 256 single bytes"),
    (b"YQ== 0\nYg== 0\n", "share a rank"),
    (b"YQ== -5\n", ":1: rank -5 is out of range"),
    (b"YQ== 0\nYg== 100000000000000000000\n", ":2: rank 100000000000000000000 is out of range"),
    (b"YQ== 0\nYQ== 1\n", ":2: token b'a' already has rank 0"),
])
def test_bad_ranks_file(tmp_path, content, message):
    path = tmp_path / "bad.tiktoken"
    path.write_bytes(content)
    with pytest.raises(WorkbenchError, match=message):
        load_tokenizer(path)


def test_missing_file_and_unknown_name():
    with pytest.raises(WorkbenchError, match="tokenizer file not found"):
        load_tokenizer("nope/vocab.tiktoken")
    with pytest.raises(WorkbenchError, match="is a folder"):
        load_tokenizer(Path(__file__).parent)
    with pytest.raises(WorkbenchError, match="unknown tokenizer 'gpt5_base'"):
        load_tokenizer("gpt5_base")


def test_other_tiktoken_encoding_gets_chat_specials(monkeypatch):
    """A named tiktoken encoding (offline we build one; online it would be downloaded)."""
    base = tiktoken.Encoding(name="fake_base", pat_str=load_tokenizer().enc._pat_str,
                             mergeable_ranks={bytes([b]): b for b in range(256)},
                             special_tokens={"<|endoftext|>": 256})
    monkeypatch.setattr(tiktoken, "list_encoding_names", lambda: ["fake_base"])
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: base)
    t = load_tokenizer("fake_base")
    assert (t.eot_id, t.im_start_id, t.im_end_id, t.pad_id) == (256, 257, 258, 259)


def test_encoding_that_needs_a_download_fails_clearly(monkeypatch):
    def offline(name):
        raise ConnectionError("Failed to resolve host")

    monkeypatch.setattr(tiktoken, "list_encoding_names", lambda: ["o200k_fake"])
    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(WorkbenchError, match="download.*offline, use the bundled default 'cl100k_base'"):
        load_tokenizer("o200k_fake")
