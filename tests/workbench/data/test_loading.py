"""Files, folders and hub names through `datasets`; every bad input named by file and line."""

import json

import pytest

from workbench.data.loading import open_source, read_record, read_records
from workbench.errors import WorkbenchError

CHAT = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def jsonl(path, rows, raw_lines=()):
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def records(src, **kw):
    return [r for _, r in read_records(src, **kw)]


@pytest.mark.parametrize("suffix", ["jsonl", "json", "parquet", "csv", "arrow"])
def test_every_file_type(tmp_path, suffix):
    from datasets import Dataset

    rows = [{"instruction": f"Say {i}", "input": "", "output": str(i)} for i in range(3)]
    path = tmp_path / f"data.{suffix}"
    ds = Dataset.from_list(rows)
    {"jsonl": lambda: ds.to_json(path, lines=True), "json": lambda: path.write_text(json.dumps(rows)),
     "parquet": lambda: ds.to_parquet(path), "csv": lambda: ds.to_csv(path, index=False),
     "arrow": lambda: _write_arrow(ds, path)}[suffix]()
    src = open_source(str(path))
    assert (src.format, src.kind, len(src)) == ("alpaca", "conversation", 3)
    assert records(src)[2]["messages"][-1] == {"role": "assistant", "content": "2"}


def _write_arrow(ds, path):
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, ds.data.table.schema) as w:
        w.write_table(ds.data.table)


def test_txt_file_is_one_document_and_folder_concatenates(tmp_path):
    (tmp_path / "a.txt").write_text("First doc.\n\nStill first.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Second doc.", encoding="utf-8")
    src = open_source(str(tmp_path))
    assert src.format == "text"
    assert records(src) == [{"text": "First doc.\n\nStill first.\n"}, {"text": "Second doc."}]
    assert src.locate(1).endswith("b.txt record 0")


def test_locate_skips_blank_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(CHAT) + "\n\n\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    with pytest.raises(WorkbenchError, match=r"c.jsonl:4: conversation has no assistant turn"):
        records(open_source(str(path)))


def test_malformed_json_line_named_and_skippable(tmp_path):
    path = jsonl(tmp_path / "bad.jsonl", [CHAT, CHAT], raw_lines=['{"messages": [oops', json.dumps(CHAT)])
    with pytest.raises(WorkbenchError, match=r"bad.jsonl:3: malformed JSON: Expecting value \(column 15\)"):
        open_source(str(path))
    src = open_source(str(path), skip_bad=True)
    assert len(records(src, skip_bad=True)) == 3
    assert src.summary.unreadable["malformed JSON"] == 1
    assert src.summary.describe() == "3 of 3 records read kept; 1 unreadable lines skipped on load (1 malformed JSON)"
    assert src.locate(2).endswith("bad.jsonl:4")  # the record after the bad line keeps its line


def test_non_object_line(tmp_path):
    path = jsonl(tmp_path / "list.jsonl", [CHAT], raw_lines=["[1, 2]"])
    with pytest.raises(WorkbenchError, match=r"list.jsonl:2: expected a JSON object, got list"):
        open_source(str(path))


def test_bad_records_error_or_are_counted(tmp_path):
    bad_role = {"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}
    empty = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}
    path = jsonl(tmp_path / "mixed.jsonl", [CHAT, bad_role, CHAT, empty, empty])
    with pytest.raises(WorkbenchError, match=r"mixed.jsonl:2: messages\[1\].role is 'bot'.*--skip-bad"):
        records(open_source(str(path)))
    src = open_source(str(path))
    assert len(records(src, skip_bad=True)) == 2
    assert dict(src.summary.skipped) == {"unknown role": 1, "empty content": 2}
    assert src.summary.first_skipped["empty content"].endswith("mixed.jsonl:4: messages[1] (assistant) has empty content")


def test_mixed_field_types_named(tmp_path):
    other = {"messages": [{"role": "user", "content": ["not", "text"]}, {"role": "assistant", "content": "a"}]}
    path = jsonl(tmp_path / "types.jsonl", [CHAT, CHAT, other])
    with pytest.raises(WorkbenchError, match=r"types.jsonl:3: messages\[0\].content must be a string, got a list"):
        records(open_source(str(path)))
    path = jsonl(tmp_path / "shapes.jsonl", [{"text": "a"}, {"text": {"nested": 1}}])
    with pytest.raises(WorkbenchError, match=r"shapes.jsonl:2: 'text' must be a string, got an object"):
        records(open_source(str(path)))


def test_utf8_error_past_the_first_chunk(tmp_path):
    from workbench.data.loading import _utf8_problem

    path = tmp_path / "big.txt"
    path.write_bytes(("é" * 10 + "\n").encode() * 1000 + b"ok \xff\n")
    assert _utf8_problem(path, chunk=1001) == "line 1001, column 4: invalid UTF-8 (byte 0xff); files must be UTF-8 text"
    path.write_bytes("é".encode() * 600 + "é".encode()[:1])  # truncated at the end, split across chunks
    assert _utf8_problem(path, chunk=7).startswith("line 1, column 1201: invalid UTF-8 (byte 0xc3)")
    path.write_bytes("é€😀".encode() * 100)
    assert _utf8_problem(path, chunk=5) is None


def test_invalid_utf8_and_binary(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(CHAT).encode() + b'\n{"text": "caf\xe9"}\n')
    with pytest.raises(WorkbenchError, match=r"latin1.jsonl: line 2, column 14: invalid UTF-8 \(byte 0xe9\)"):
        open_source(str(path))
    path = tmp_path / "blob.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(WorkbenchError, match=r"blob.txt: line 1, column 1: binary file"):
        open_source(str(path))


@pytest.mark.parametrize("name, content", [("empty.jsonl", ""), ("blank.jsonl", "\n \n"), ("empty.txt", "")])
def test_empty_files(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    with pytest.raises(WorkbenchError, match=f"{name}: file is empty"):
        open_source(str(tmp_path / name))


def test_empty_json_array(tmp_path):
    (tmp_path / "none.json").write_text("[]")
    with pytest.raises(WorkbenchError, match="none.json: no records"):
        open_source(str(tmp_path / "none.json"))


def test_missing_paths_and_unknown_things(tmp_path):
    with pytest.raises(WorkbenchError, match="no such file or folder: .*nope.jsonl"):
        open_source(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(WorkbenchError, match="x.xml: unsupported file type"):
        open_source(str(tmp_path / "x.xml"))
    with pytest.raises(WorkbenchError, match="folder has no data files"):
        open_source(str(_empty_dir(tmp_path)))
    path = jsonl(tmp_path / "odd.jsonl", [{"title": "t", "body": "b"}])
    with pytest.raises(WorkbenchError, match=r"odd.jsonl: cannot tell the format from the fields \(body, title\)"):
        open_source(str(path))
    with pytest.raises(WorkbenchError, match="unknown format 'chatml'"):
        open_source(str(path), fmt="chatml")


def _empty_dir(tmp_path):
    d = tmp_path / "empty_dir"
    d.mkdir()
    (d / "notes.md").write_text("hi")
    return d


def test_folder_with_mixed_formats(tmp_path):
    jsonl(tmp_path / "a.jsonl", [CHAT])
    jsonl(tmp_path / "b.jsonl", [{"text": "doc"}])
    with pytest.raises(WorkbenchError, match="files have different formats"):
        open_source(str(tmp_path))


def test_hub_name_offline_says_how_to_use_a_local_file():
    with pytest.raises(WorkbenchError, match=r"'HuggingFaceH4/ultrachat_200k' is not a local file and the "
                       r"Hugging Face Hub is offline.*split='train_sft'.*to_json"):
        open_source("HuggingFaceH4/ultrachat_200k")


def test_format_override(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"text": "What is 2+2?"}])
    src = open_source(str(path), fmt="text")
    assert records(src) == [{"text": "What is 2+2?"}]


def test_read_record_by_index(tmp_path):
    path = jsonl(tmp_path / "c.jsonl", [CHAT, {"messages": [{"role": "user", "content": "only"}]}])
    src = open_source(str(path))
    assert read_record(src, 0)["messages"] == CHAT["messages"]
    with pytest.raises(WorkbenchError, match="c.jsonl:2: conversation has no assistant turn"):
        read_record(src, 1)
    with pytest.raises(WorkbenchError, match="index 2 is out of range: .* has 2 records"):
        read_record(src, 2)


def test_limit_and_start(tmp_path):
    rows = [{"text": f"doc {i}"} for i in range(600)]  # more than one read batch
    src = open_source(str(jsonl(tmp_path / "t.jsonl", rows)))
    got = list(read_records(src, start=250, limit=300))
    assert [i for i, _ in got] == list(range(250, 550))
    assert got[-1][1] == {"text": "doc 549"}


def test_skip_bad_slow_path_keeps_fields_the_first_record_lacks(tmp_path):
    rows = [{"instruction": "Say hi", "output": "hi"},
            {"instruction": "Translate", "input": "cat", "output": "chat", "system": "You translate."}]
    path = jsonl(tmp_path / "alp.jsonl", rows, raw_lines=['{"instruction": "trunc'])
    src = open_source(str(path), skip_bad=True)
    assert records(src)[1]["messages"] == [{"role": "system", "content": "You translate."},
                                           {"role": "user", "content": "Translate\n\ncat"},
                                           {"role": "assistant", "content": "chat"}]
    assert src.summary.unreadable == {"malformed JSON": 1}


def test_json_line_separators_inside_strings(tmp_path):
    path = tmp_path / "ls.jsonl"
    path.write_text('{"text": "one\u2028two\u0085 three\x0c"}\n{"text": "b"}\n{bad\n', encoding="utf-8")
    with pytest.raises(WorkbenchError, match=r"ls.jsonl:3: malformed JSON"):
        open_source(str(path))
    src = open_source(str(path), skip_bad=True)
    assert records(src) == [{"text": "one\u2028two\u0085 three\x0c"}, {"text": "b"}]
    assert src.locate(1).endswith("ls.jsonl:2")


def test_byte_order_marks(tmp_path):
    bom = "\ufeff"
    (tmp_path / "a.jsonl").write_text(bom + json.dumps({"text": "x"}) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(WorkbenchError, match=r"a.jsonl:2: malformed JSON"):
        open_source(str(tmp_path / "a.jsonl"))
    (tmp_path / "b.csv").write_text(bom + "text\nhello\n", encoding="utf-8")
    assert records(open_source(str(tmp_path / "b.csv"))) == [{"text": "hello"}]
    (tmp_path / "c.txt").write_text(bom + "doc", encoding="utf-8")
    assert records(open_source(str(tmp_path / "c.txt"))) == [{"text": "doc"}]


def test_lone_surrogate_is_a_bad_line(tmp_path):
    path = jsonl(tmp_path / "s.jsonl", [{"text": "ok"}], raw_lines=['{"text": "bad \\ud800 escape"}', '{"text": "fine"}'])
    with pytest.raises(WorkbenchError, match=r"s.jsonl:2: a string holds a lone surrogate"):
        open_source(str(path))
    src = open_source(str(path), skip_bad=True)
    assert records(src) == [{"text": "ok"}, {"text": "fine"}] and src.locate(1).endswith("s.jsonl:3")


def test_locations_when_records_are_not_one_per_line(tmp_path):
    pretty = tmp_path / "pretty.jsonl"  # `jq .` output: objects over several lines
    pretty.write_text(json.dumps(CHAT, indent=1) + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]}, indent=1))
    with pytest.raises(WorkbenchError, match=r"pretty.jsonl record 1: conversation has no assistant turn"):
        records(open_source(str(pretty)))
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([1, CHAT, "x", {"messages": []}]))
    src = open_source(str(arr), skip_bad=True)
    assert dict(src.summary.unreadable) == {"not a JSON object": 2}
    with pytest.raises(WorkbenchError, match=r"arr.json record 3: 'messages' has no messages"):
        records(src)
    lines_json = jsonl(tmp_path / "lines.JSON", [CHAT, {"messages": "x"}])  # JSON lines named .JSON
    with pytest.raises(WorkbenchError, match=r"lines.JSON:2: 'messages' must be a list"):
        records(open_source(str(lines_json)))


def test_location_index_is_built_once(tmp_path, monkeypatch):
    import workbench.data.loading as loading

    src = open_source(str(jsonl(tmp_path / "t.jsonl", [{"text": f"{i}"} for i in range(50)])))
    calls = []
    real = loading._locations
    monkeypatch.setattr(loading, "_locations", lambda part: calls.append(1) or real(part))
    assert [src.locate(i) for i in (0, 49, 7)] == [f"{tmp_path}/t.jsonl:{n}" for n in (1, 50, 8)]
    assert len(calls) == 1


def test_csv_rows_with_extra_fields_and_parse_errors(tmp_path):
    (tmp_path / "extra.csv").write_text("text,x\na,b,c\n")
    with pytest.raises(WorkbenchError, match=r"extra.csv:2: 3 fields, but the header has 2 \(text, x\)"):
        open_source(str(tmp_path / "extra.csv"))
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(WorkbenchError, match=r"garbage.parquet: cannot be read as parquet: \S"):
        open_source(str(tmp_path / "garbage.parquet"))


def test_folders_ignore_hidden_files(tmp_path):
    jsonl(tmp_path / "a.jsonl", [CHAT])
    (tmp_path / ".ipynb_checkpoints").mkdir()
    jsonl(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.jsonl", [CHAT])
    (tmp_path / "._a.jsonl").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert len(open_source(str(tmp_path))) == 1


def test_ultrafeedback_rows_are_preference_pairs(tmp_path):
    row = {"prompt": "q", "prompt_id": "1", "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
           "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}],
           "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}]}
    src = open_source(str(jsonl(tmp_path / "uf.jsonl", [row])))
    assert src.kind == "preference"
    assert records(src)[0]["chosen"] == [{"role": "assistant", "content": "good"}]


def test_hub_name_online_failure_says_how_to_use_a_local_file(monkeypatch):
    import datasets

    def unreachable(name, split):
        assert (name, split) == ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")
        raise ConnectionError("Couldn't reach 'HuggingFaceH4/ultrafeedback_binarized' on the Hub")

    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(WorkbenchError, match=r"could not be loaded from the Hugging Face Hub \(ConnectionError: "
                       r"Couldn't reach.*split='train_prefs'\).to_json\('data.jsonl'\)"):
        open_source("HuggingFaceH4/ultrafeedback_binarized")


def test_empty_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "none.parquet")
    with pytest.raises(WorkbenchError, match="none.parquet: no records"):
        open_source(str(tmp_path / "none.parquet"))


def test_json_lines_whose_first_line_is_an_array(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('["oops"]\n{"text": "a"}\n{"text": "b"}\n')
    with pytest.raises(WorkbenchError, match=r"a.jsonl:1: expected a JSON object, got list"):
        open_source(str(path))
    src = open_source(str(path), skip_bad=True)
    assert records(src) == [{"text": "a"}, {"text": "b"}] and src.locate(0).endswith("a.jsonl:2")


def test_unreadable_file_in_a_folder_is_skipped_and_counted(tmp_path):
    jsonl(tmp_path / "a.jsonl", [CHAT])
    (tmp_path / "b.jsonl").write_text("{bad\n{worse\n")
    with pytest.raises(WorkbenchError, match=r"b.jsonl:1: malformed JSON"):
        open_source(str(tmp_path))
    src = open_source(str(tmp_path), skip_bad=True)
    assert len(src) == 1 and src.summary.unreadable == {"malformed JSON": 2}
    with pytest.raises(WorkbenchError, match=r"b.jsonl: no readable records \(0 of 0 records read kept; 2 unreadable"
                       r" lines skipped on load \(2 malformed JSON\)\); first: .*b.jsonl:1: malformed JSON"):
        open_source(str(tmp_path / "b.jsonl"), skip_bad=True)


def test_save_to_disk_folder(tmp_path):
    from datasets import Dataset

    Dataset.from_list([CHAT, CHAT]).save_to_disk(str(tmp_path / "saved"))
    src = open_source(str(tmp_path / "saved"))
    assert (src.format, len(src)) == ("messages", 2) and src.locate(1).endswith("saved record 1")


def test_record_asked_for_by_index_gets_no_skip_bad_hint(tmp_path):
    src = open_source(str(jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])))
    with pytest.raises(WorkbenchError) as info:
        read_record(src, 0)
    assert str(info.value).endswith("c.jsonl:1: conversation has no assistant turn: nothing to train on (format messages)")
