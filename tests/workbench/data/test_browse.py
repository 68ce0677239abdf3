"""The lazy data browser (browse.py): the .jsonl index, bad records by file:line, skip-bad counts,
search, the same ids and labels as `workbench inspect --json`; and what the Data pane shows of a
record and reads from a person (record_view.py)."""

import base64
import io
import json
import threading

import pytest
from rich.console import Console

from tests.conftest import SAMPLE
from workbench.data import browse
from workbench.data.browse import Encoding, JsonlBrowser, RecordError, SourceBrowser, open_browser, tokenizer_of
from workbench.data.loading import open_source, read_records
from workbench.data.record_view import complete_path, display_path, first_line, parse_max_len, short_location, token_info
from workbench.errors import WorkbenchError
from workbench.inspector import InspectOptions, inspect

CHAT = {"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]}


def chat(user: str, reply: str = "Sure.") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def lines(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


@pytest.fixture
def small_chunks(monkeypatch):
    """Index a few bytes at a time, so records straddle chunk boundaries."""
    monkeypatch.setattr(browse, "FIRST_CHUNK", 7)
    monkeypatch.setattr(browse, "CHUNK", 11)


def index_all(b):
    while not b.index_more():
        pass
    return b


def validate_all(b):
    while not b.validate_more(3):
        pass
    return b


# ------------------------------------------------------------------------------ the index
@pytest.mark.parametrize("chunked", [False, True])
def test_offsets_and_line_numbers_over_blank_lines_crlf_bom_and_no_final_newline(tmp_path, request, chunked):
    if chunked:
        request.getfixturevalue("small_chunks")
    a, b, c = chat("first"), chat("second"), chat("third, ünïcode")
    text = "\ufeff" + json.dumps(a) + "\r\n\r\n  \n" + json.dumps(b) + "\r\n\n" + json.dumps(c, ensure_ascii=False)
    br = index_all(open_browser(write(tmp_path / "x.jsonl", text)))
    assert isinstance(br, JsonlBrowser) and br.complete and br.progress == 1.0 and len(br) == 3
    assert [br.locate(i) for i in range(3)] == [f"{tmp_path}/x.jsonl:{n}" for n in (1, 4, 6)]
    assert [br.record(i)["messages"] for i in range(3)] == [a["messages"], b["messages"], c["messages"]]
    # the same records, in the same order, as the datasets path the trainers take
    src = open_source(str(tmp_path / "x.jsonl"))
    assert [r for _, r in read_records(src)] == [br.record(i) for i in range(3)]
    assert [src.locate(i) for i in range(3)] == [br.locate(i) for i in range(3)]


def test_the_first_screen_does_not_wait_for_the_whole_file(tmp_path, monkeypatch):
    monkeypatch.setattr(browse, "FIRST_CHUNK", 1000)
    monkeypatch.setattr(browse, "CHUNK", 5000)
    path = write(tmp_path / "big.jsonl", lines(*[chat(f"question {i}") for i in range(2000)]))
    br = open_browser(path)
    assert 0 < len(br) < 20 and not br.complete and 0 < br.progress < 0.01
    assert br.record(3)["messages"][0]["content"] == "question 3"
    assert br.record(1500)["messages"][0]["content"] == "question 1500"  # asked for: indexed up to it
    assert not br.complete
    index_all(br)
    assert len(br) == 2000 and br.locate(1999).endswith(":2000")


def test_indexing_in_another_thread_while_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(browse, "CHUNK", 3000)
    path = write(tmp_path / "big.jsonl", lines(*[chat(f"q{i}") for i in range(3000)]))
    br = open_browser(path)
    worker = threading.Thread(target=lambda: index_all(br))
    worker.start()
    seen = [br.record(i)["messages"][0]["content"] for i in range(0, 3000, 97)]
    worker.join()
    assert seen == [f"q{i}" for i in range(0, 3000, 97)] and len(br) == 3000


@pytest.mark.parametrize("text, message", [
    ("", "file is empty"), ("  \n\r\n\n", "file is empty"), ("\ufeff", "file is empty"),
    ('{"foo": 1}\n', r"x.jsonl:1: cannot tell the format from the fields \(foo\)"),
    ("nope\n[1]\n", r"no record is a readable JSON object; first: .*x.jsonl:1: malformed JSON"),
])
def test_files_that_cannot_be_browsed_say_why(tmp_path, text, message):
    with pytest.raises(WorkbenchError, match=message):
        open_browser(write(tmp_path / "x.jsonl", text))


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(WorkbenchError, match="no such file or folder"):
        open_browser(str(tmp_path / "nope.jsonl"))
    with pytest.raises(WorkbenchError, match="unsupported file type"):
        open_browser(write(tmp_path / "x.xml", "<a/>"))
    with pytest.raises(WorkbenchError, match="unknown format 'chatml'"):
        open_browser(str(SAMPLE / "chat.jsonl"), fmt="chatml")


def test_format_is_detected_from_the_first_good_record_and_can_be_overridden(tmp_path):
    path = write(tmp_path / "x.jsonl", lines("{broken", {"prompt": "q", "chosen": "a", "rejected": "b"}))
    br = open_browser(path)
    assert (br.format, br.kind) == ("preference", "preference")
    as_prompts = open_browser(path, fmt="prompt")
    assert as_prompts.kind == "prompt" and as_prompts.record(1) == {
        "prompt": [{"role": "user", "content": "q"}], "meta": {"chosen": "a", "rejected": "b"}}


# ------------------------------------------------------------------------------ bad records
BAD = [CHAT, '{"messages": [oops', CHAT, "[1, 2]", {"messages": [{"role": "user", "content": "no reply"}]},
       {"conversations": []}, CHAT, '{"messages": [{"role": "user", "content": "\\ud800"}]}']


def test_a_bad_record_names_its_line_and_reason(tmp_path):
    path = write(tmp_path / "bad.jsonl", lines(*BAD))
    br = open_browser(path)
    assert br.format == "messages"
    with pytest.raises(RecordError) as e:
        br.record(1)
    assert (e.value.where, e.value.reason) == (f"{path}:2", "malformed JSON")
    assert str(e.value).startswith(f"{path}:2: malformed JSON: ")
    reasons = {}
    for i in range(len(br)):
        try:
            br.record(i)
        except RecordError as err:
            reasons[err.where.rsplit(":", 1)[1]] = err.reason
    assert reasons == {"2": "malformed JSON", "4": "not a JSON object", "5": "no assistant turn",
                       "6": "missing field", "8": "invalid Unicode"}
    rows = br.rows(range(len(br)))
    assert [r.error is not None for r in rows] == [False, True, False, True, True, True, False, True]
    assert rows[1].first_line.startswith("malformed JSON")


def test_invalid_utf8_is_a_bad_record_not_a_crash(tmp_path):
    path = write(tmp_path / "u.jsonl", lines(CHAT).encode() + b'{"messages": "\xff\xfe"}\n' + lines(CHAT).encode())
    br = validate_all(open_browser(path))
    assert br.bad[1].reason == "invalid UTF-8" and br.bad[1].where == f"{path}:2"
    assert list(br.good) == [0, 2]


def test_skip_bad_counts_by_the_same_reasons_as_loading(tmp_path):
    path = write(tmp_path / "bad.jsonl", lines(*BAD))
    br = validate_all(open_browser(path))
    assert br.validated and br.checked == len(br) == 8
    assert list(br.visible()) == list(range(8))  # strict: every record listed, bad ones flagged
    assert br.first_error.where == f"{path}:2"
    br.skip_bad = True
    assert list(br.visible()) == [0, 2, 6]
    # workbench inspect --skip-bad / the trainers count the same records under the same reasons
    src = open_source(path, skip_bad=True)
    assert len(list(read_records(src, skip_bad=True))) == 3
    assert br.summary.unreadable == src.summary.unreadable
    assert br.summary.skipped == src.summary.skipped
    assert (br.summary.read, br.summary.kept) == (8, 3)
    assert br.bad_counts() == {"malformed JSON": 1, "not a JSON object": 1, "invalid Unicode": 1,
                               "no assistant turn": 1, "missing field": 1}
    assert br.summary.first_skipped["missing field"] == f"{path}:6: missing field 'messages'"


def test_skip_bad_lists_records_as_they_are_checked(tmp_path, small_chunks):
    path = write(tmp_path / "bad.jsonl", lines(*BAD * 3))
    br = open_browser(path, skip_bad=True)
    assert list(br.visible()) == []
    br.validate_more(8)
    assert list(br.visible()) == [0, 2, 6]
    validate_all(br)
    assert list(br.visible()) == [0, 2, 6, 8, 10, 14, 16, 18, 22]


def test_a_json_file_with_bad_lines_opens_with_its_error(tmp_path):
    path = write(tmp_path / "bad.json", lines(CHAT, "{oops", CHAT))
    br = open_browser(path)
    assert isinstance(br, SourceBrowser) and len(br) == 2
    assert br.load_error.startswith(f"{path}:2: malformed JSON")
    assert br.bad_counts() == {"malformed JSON": 1}


# ------------------------------------------------------------------------------ search
def test_search_finds_message_text_in_any_case_and_nothing_else(tmp_path, small_chunks):
    rows = [chat("Tell me about Pudding"), chat("no", "CHERRY pudding!"), chat("role"), '{"messages": [pudding',
            {"messages": [{"role": "user", "content": "caf\u00e9 \"quoted\" a/b"}, {"role": "assistant", "content": "x"}]}]
    path = write(tmp_path / "s.jsonl", lines(*rows))  # json.dumps escapes é as \u00e9
    br = open_browser(path)
    assert list(br.search("pudding")) == [0, 1]
    assert list(br.search("PUDDING")) == [0, 1]
    assert list(br.search("role")) == [2]  # a field name is not message text
    assert list(br.search("Café")) == [4]  # written escaped in the file: found all the same
    assert list(br.search('"quoted"')) == [4] and list(br.search("a/b")) == [4]
    assert list(br.search("absent")) == [] and list(br.search("")) == []


def test_search_streams_and_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(browse, "FIRST_CHUNK", 500)
    monkeypatch.setattr(browse, "CHUNK", 2000)
    path = write(tmp_path / "s.jsonl", lines(*[chat(f"item {i}", "needle" if i % 10 == 0 else "hay")
                                               for i in range(1000)]))
    br = open_browser(path)
    hits = br.search("needle")
    assert next(hits) == 0 and not br.complete  # the first hit arrives before the file is indexed
    assert list(hits) == list(range(10, 1000, 10))
    stopped = []
    assert list(br.search("needle", stop=lambda: len(stopped) > 0)) == list(range(0, 1000, 10))
    found = []
    for i in br.search("needle", stop=lambda: len(found) >= 3):
        found.append(i)
    assert found == [0, 10, 20]


def test_search_in_a_datasets_source(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("instruction,input,output\nName a fruit,,Apple\nName a tree,,Oak\n", encoding="utf-8")
    br = open_browser(str(path))
    assert isinstance(br, SourceBrowser) and br.format == "alpaca" and len(br) == 2
    assert list(br.search("oak")) == [1]
    assert br.locate(1).endswith("c.csv record 1")


# ------------------------------------------------------------------------------ what is shown
def inspect_json(path, **kw):
    out = io.StringIO()
    inspect(InspectOptions(str(path), limit=None, as_json=True, **kw), Console(file=out), Console(file=io.StringIO()))
    return [json.loads(x) for x in out.getvalue().splitlines()]


SAMPLES = ["chat.jsonl", "preference.jsonl", "preference_multiturn.jsonl", "prompts.jsonl", "text.jsonl",
           "formats/alpaca.jsonl", "formats/hh.jsonl", "formats/messages.jsonl", "formats/sharegpt.jsonl",
           "formats/corpus.txt"]


@pytest.mark.parametrize("name", SAMPLES)
def test_same_ids_and_labels_as_inspect_json(tok, name):
    from workbench.inspector import example_json

    kw = {"mode": "last", "max_len": 40} if name == "chat.jsonl" else {}
    expected = inspect_json(SAMPLE / name, **kw)[:40]
    br = open_browser(str(SAMPLE / name))
    enc = Encoding(tok, kw.get("mode", "all"), kw.get("max_len"))
    got = [example_json(tok, br, br.example(i, enc)) for i in range(len(expected))]
    assert got == expected
    rows = br.rows(range(len(expected)), enc)
    for row, obj in zip(rows, expected):
        halves = [obj["chosen"], obj["rejected"]] if obj["kind"] == "preference" else [obj]
        assert row.tokens == sum(h["num_tokens"] for h in halves)
        assert row.trained == sum(h["num_trainable"] for h in halves)
        assert row.dropped == obj["dropped"] and row.truncated == any(h["truncated"] for h in halves)


def test_rows_follow_the_encoding(tok):
    br = open_browser(str(SAMPLE / "chat.jsonl"))
    plain = br.rows([0, 1])
    assert plain[0].tokens is None and plain[0].first_line.startswith("Quick question: how many live in Caldreth")
    all_, last, every = (br.rows([2], Encoding(tok, m))[0] for m in ("all", "last", "every"))
    assert all_.tokens == last.tokens == every.tokens == 92
    assert every.trained == 92 > all_.trained > last.trained > 0
    cut = br.rows([2], Encoding(tok, "all", 10))[0]
    assert cut.tokens == 10 and cut.truncated and cut.dropped and cut.trained == 0
    # cheap rows: what is cached, and the first line only for the rest
    enc = Encoding(tok, "last")
    cheap = br.rows([2, 3], enc, tokenize=False)
    assert (cheap[0].tokens, cheap[1].tokens) == (92, None) and cheap[1].first_line.startswith("Compute 9 * 6.")
    assert br.rows_tokenized == 4  # rows 2 in three modes (once cut), no more


def test_token_info_names_role_part_and_label(tok):
    br = open_browser(str(SAMPLE / "chat.jsonl"))
    r = br.example(0, Encoding(tok)).rendered
    first = token_info(tok, r, 0)
    assert (first.id, first.text, first.role, first.message, first.part, first.trained, first.special) == (
        tok.im_start_id, "<|im_start|>", "user", 0, "header", False, True)
    last_end = token_info(tok, r, len(r) - 2)
    assert (last_end.id, last_end.role, last_end.part, last_end.label, last_end.trained) == (
        tok.im_end_id, "assistant", "end", tok.im_end_id, True)
    assert token_info(tok, r, len(r) - 1).shown == "'\\n'"


def test_first_line_of_each_kind():
    assert first_line({"messages": [{"role": "system", "content": "Be nice"},
                                    {"role": "user", "content": "\n\n  Hello\tthere  \nmore"}]}, "conversation") == "Hello there"
    assert first_line({"prompt": [], "chosen": [{"role": "user", "content": "Q?"}], "rejected": []}, "preference") == "Q?"
    assert first_line({"text": "one\x1b[31m\ntwo"}, "text") == "one␛[31m"


def test_parse_max_len():
    assert parse_max_len("") is None and parse_max_len(" 2048 ") == 2048 and parse_max_len("4_096") == 4096
    for bad in ("0", "-3", "12.5", "lots"):
        with pytest.raises(WorkbenchError, match="max length must be a whole number"):
            parse_max_len(bad)


def test_complete_path(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chat.jsonl").write_text("")
    (tmp_path / "data" / "notes.md").write_text("")
    (tmp_path / "data" / ".hidden.jsonl").write_text("")
    (tmp_path / "data" / "sub").mkdir()
    root = str(tmp_path)
    assert complete_path(root + "/da") == root + "/data/"
    assert complete_path(root + "/data/") == root + "/data/chat.jsonl"
    assert complete_path(root + "/data/n") is None  # not a data file
    assert complete_path(root + "/data/n", suffixes=None) == root + "/data/notes.md"
    assert complete_path(root + "/data/s") == root + "/data/sub/"
    assert complete_path(root + "/data/.h") == root + "/data/.hidden.jsonl"
    assert complete_path(root + "/data/chat.jsonl") is None
    assert complete_path(root + "/nothing/x") is None and complete_path("") is None


def test_display_path(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "d")
    monkeypatch.chdir(tmp_path)
    assert display_path(str(tmp_path / "d" / "x.jsonl")) == "d/x.jsonl"
    assert display_path(str(tmp_path / "link" / "x.jsonl")) == "link/x.jsonl"  # a link keeps its name
    assert display_path("/elsewhere/x.jsonl") == "/elsewhere/x.jsonl" and display_path(str(tmp_path)) == str(tmp_path)


def test_short_location_drops_the_folders_the_path_field_shows():
    assert short_location("/work/shared/data/x.jsonl:7", "/work/shared/data/x.jsonl") == "x.jsonl:7"
    assert short_location("/d/x.jsonl:2: malformed JSON: oops", "/d/x.jsonl") == "x.jsonl:2: malformed JSON: oops"
    assert short_location("/d/my data/p.json record 3", "/d/my data") == "my data/p.json record 3"  # a folder
    assert short_location("sample_data/chat.jsonl:3", "sample_data/chat.jsonl") == "chat.jsonl:3"
    assert short_location("x.jsonl:1", "x.jsonl") == "x.jsonl:1"
    assert short_location("/other/y.jsonl:1", "/d/x.jsonl") == "/other/y.jsonl:1"  # not under it: as it is


def test_tokenizer_of_a_name_a_file_a_checkpoint_and_a_run_dir(tmp_path, tok):
    from workbench.model import Transformer, preset
    from workbench.model.checkpoint import save_checkpoint
    from workbench.tokenizer import load_tokenizer

    assert tokenizer_of("") is tok and tokenizer_of(None) is tok and tokenizer_of("cl100k_base") is tok
    ranks = tmp_path / "bytes.tiktoken"
    ranks.write_text("".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256)))
    small = load_tokenizer(str(ranks))
    assert tokenizer_of(str(ranks)).sha256 == small.sha256
    model = Transformer(preset("tiny", vocab_size=small.vocab_size, n_layers=1))
    save_checkpoint(model, tmp_path / "ck", tokenizer=small)
    assert tokenizer_of(str(tmp_path / "ck")).sha256 == small.sha256
    save_checkpoint(model, tmp_path / "run" / "checkpoints" / "step-000001", tokenizer=small)
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-000001\n")
    assert tokenizer_of(str(tmp_path / "run")).sha256 == small.sha256
    with pytest.raises(WorkbenchError, match="tokenizer file not found"):
        tokenizer_of(str(tmp_path / "nope.tiktoken"))
    with pytest.raises(WorkbenchError, match="not a model checkpoint"):
        tokenizer_of(str(tmp_path))
