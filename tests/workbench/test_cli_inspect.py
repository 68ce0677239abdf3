"""`workbench inspect`: the --json contract, the rich view, and clean failures."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLE
from workbench.chat import IGNORE, render_chat
from workbench.cli import app

runner = CliRunner()
CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                     {"role": "assistant", "content": "4"}]}


def run(*args):
    result = runner.invoke(app, ["inspect", *map(str, args)])
    return result


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_json_contract(tmp_path, tok):
    path = jsonl(tmp_path / "c.jsonl", [CHAT, CHAT])
    result = run(path, "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(lines) == 2
    obj = lines[0]
    expected = render_chat(tok, CHAT["messages"])
    assert obj["input_ids"] == expected.input_ids
    assert obj["labels"] == expected.labels
    assert obj["attention_mask"] == [1] * len(expected)
    assert obj["tokens"] == [tok.decode([t]) for t in expected.input_ids]
    assert "".join(obj["tokens"]) == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    assert [t for t, l in zip(obj["tokens"], obj["labels"]) if l != IGNORE] == ["4", "<|im_end|>"]
    assert {k: obj[k] for k in ("index", "kind", "num_trainable", "truncated", "dropped", "warnings")} == {
        "index": 0, "kind": "conversation", "num_trainable": 2, "truncated": 0, "dropped": False, "warnings": []}
    assert obj["source"].endswith("c.jsonl:1")


def test_json_preference_and_index(tmp_path):
    rows = [{"prompt": "q", "chosen": "yes", "rejected": "no"}, {"prompt": "Q2", "chosen": "good", "rejected": "bad"}]
    result = run(jsonl(tmp_path / "p.jsonl", rows), "--json", "--index", 1)
    assert result.exit_code == 0, result.output
    (obj,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert obj["index"] == 1 and obj["kind"] == "preference"
    p = obj["prompt_length"]
    assert obj["chosen"]["input_ids"][:p] == obj["rejected"]["input_ids"][:p]
    assert "".join(obj["chosen"]["tokens"][p:]) == "good<|im_end|>\n"
    assert set(obj["chosen"]["labels"][:p]) == {IGNORE}


def test_mode_and_max_len_flags(tmp_path):
    multi = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    path = jsonl(tmp_path / "m.jsonl", [multi])
    last = json.loads(run(path, "--json", "--mode", "last").stdout)
    every = json.loads(run(path, "--json", "--mode", "every").stdout)
    assert last["num_trainable"] == 2 and every["labels"] == every["input_ids"]
    cut = json.loads(run(path, "--json", "--max-len", 5).stdout)
    assert len(cut["input_ids"]) == 5 and cut["dropped"] and cut["truncated"] == len(every["input_ids"]) - 5


def test_rich_view_shows_masks_turns_and_warnings(tmp_path):
    path = jsonl(tmp_path / "c.jsonl", [CHAT])
    result = run(path)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "<|im_start|>assistant↵" in out and "«4<|im_end|>✓»↵" in out  # not a terminal: « » marks
    assert "system" in out and "legend:" in out
    rows = [line.strip("│ ").split() for line in out.splitlines() if line.strip("│ ").startswith(("0 ", "1 ", "2 "))]
    assert [r[:5] for r in rows] == [["0", "system", "8", "0", "8"], ["1", "user", "9", "0", "9"],
                                     ["2", "assistant", "6", "2", "4"]]
    result = run(path, "--max-len", 6)
    assert "nothing trainable after truncation: example dropped" in result.stdout


def test_skip_bad_counts(tmp_path):
    bad = {"messages": [{"role": "user", "content": "q"}]}
    path = jsonl(tmp_path / "c.jsonl", [CHAT, bad, CHAT])
    result = run(path, "--json")
    assert result.exit_code == 1
    assert "c.jsonl:2: conversation has no assistant turn" in result.stderr
    result = run(path, "--json", "--skip-bad")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    assert "2 shown; 2 of 3 records read kept; skipped 1 bad (1 no assistant turn)" in result.stderr
    assert "c.jsonl:2: conversation has no assistant turn" in result.stderr  # not wrapped mid-path
    result = run(jsonl(tmp_path / "allbad.jsonl", [bad, bad]), "--skip-bad")
    assert result.exit_code == 1 and "no usable records" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--mode", "assistant"], "--mode must be one of all, last, every"),
    (["--max-len", "0"], "--max-len must be at least 1"),
    (["--index", "99"], "index 99 is out of range"),
    (["--format", "chatml"], "unknown format 'chatml'"),
    (["--tokenizer", "missing.tiktoken"], "tokenizer file not found: missing.tiktoken"),
    (["--index", "0", "--limit", "3"], "give one of them"),
    (["--split", "test"], "--split only applies to hub datasets"),
])
def test_bad_options_fail_cleanly(tmp_path, args, message):
    result = run(jsonl(tmp_path / "c.jsonl", [CHAT]), *args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output


def test_missing_file_fails_cleanly():
    result = run("no/such/file.jsonl")
    assert result.exit_code == 1 and "no such file or folder: no/such/file.jsonl" in result.stderr


@pytest.mark.parametrize("name, kind", [("chat.jsonl", "conversation"), ("preference.jsonl", "preference"),
                                        ("preference_multiturn.jsonl", "preference"),
                                        ("prompts.jsonl", "prompt"), ("text.jsonl", "text")])
def test_sample_data(name, kind):
    result = run(SAMPLE / name, "--json", "--limit", 0)
    assert result.exit_code == 0, result.output
    objs = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(objs) > 20 and {o["kind"] for o in objs} == {kind}
    assert not any(o["dropped"] for o in objs)


def test_sample_formats_folder_files():
    for path in sorted((SAMPLE / "formats").iterdir()):
        if path.suffix in (".jsonl", ".txt"):
            result = run(path, "--limit", 2)
            assert result.exit_code == 0, (path, result.output)


def test_console_script_end_to_end():
    """The installed entry point, as a user runs it (also the README's main command)."""
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "inspect", str(SAMPLE / "chat.jsonl"),
                           "--limit", "1", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_trainable"] > 0


def test_mode_does_not_apply_to_preference_pairs(tmp_path):
    result = run(jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}]), "--mode", "every")
    assert result.exit_code == 1 and "--mode every applies to conversations, not preference records" in result.stderr
    result = run(jsonl(tmp_path / "t.jsonl", [{"text": "doc"}]), "--mode", "last")
    assert result.exit_code == 1 and "every token of a text is trained" in result.stderr


def test_data_cannot_inject_markup_or_terminal_escapes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("run[/]") / "[bold]x"
    folder.mkdir(parents=True)
    chat = {"messages": [{"role": "user", "content": "[/INST] \x1b[31mred\x1b]0;pwned"},
                         {"role": "assistant", "content": "[bold]ok[/]"}]}
    result = run(jsonl(folder / "d.jsonl", [chat]))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "␛[31mred␛]0;pwned" in result.stdout
    assert "[bold]ok[/]" in result.stdout and "#0 · run[/]/[bold]x/d.jsonl:1" in result.stdout
    bad_role = {"conversations": [{"from": "human", "value": "q"}, {"from": "[/INST]", "value": "a"}]}
    result = run(jsonl(tmp_path / "s.jsonl", [bad_role, bad_role]), "--skip-bad")
    assert result.exit_code == 1 and "conversations[1].from is '[/INST]'" in result.stderr


def test_piping_into_head_exits_cleanly():
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "inspect", str(SAMPLE / "text.jsonl"),
                             "--limit", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert b"Traceback" not in proc.stderr.read()


def test_colour_terminal_marks_trained_tokens_by_style(tmp_path):
    from rich.console import Console

    from workbench.inspector import InspectOptions, inspect

    out = Console(force_terminal=True, color_system="truecolor", record=True, width=100, file=io.StringIO())
    inspect(InspectOptions(str(jsonl(tmp_path / "c.jsonl", [CHAT]))), out, out)
    text = out.export_text(styles=False, clear=False)
    assert "4<|im_end|>✓↵" in text and "«" not in text
    html = out.export_html(inline_styles=True)
    green = 'style="color: #008000; text-decoration-color: #008000; background-color: #262626; font-weight: bold">4<'
    assert green in html  # the trained answer "4" in bold green
