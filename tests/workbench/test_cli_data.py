"""`workbench data prepare` and `workbench tokenizer train` through the CLI."""

import json

from typer.testing import CliRunner

from tests.conftest import SAMPLE
from workbench.cli import app

runner = CliRunner()


def test_prepare_prints_report_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "data"
    r = runner.invoke(app, ["data", "prepare", str(SAMPLE / "text.jsonl"), "--out", str(out), "--seq-len", "64"])
    assert r.exit_code == 0, r.output
    assert "near_dedup" in r.output and "windows of 64" in r.output
    assert (out / "index.json").is_file() and (out / "report.md").is_file()
    r = runner.invoke(app, ["data", "prepare", str(SAMPLE / "text.jsonl"), "--out", str(out)])
    assert r.exit_code == 1 and "error:" in r.output and "--force" in r.output
    r = runner.invoke(app, ["data", "prepare", str(SAMPLE / "text.jsonl"), "--out", str(out), "--force",
                            "--no-quality", "--json", "--seq-len", "64"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["steps"][3]["removed"] == {} and report["output"]["documents"] >= 400


def test_prepare_user_errors_exit_1(tmp_path):
    r = runner.invoke(app, ["data", "prepare", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "no such file or folder" in r.output
    (tmp_path / "c.yaml").write_text("pack:\n  seq_lenn: 5\n")
    r = runner.invoke(app, ["data", "prepare", str(SAMPLE / "text.jsonl"), "--out", str(tmp_path / "o"),
                            "--config", str(tmp_path / "c.yaml")])
    assert r.exit_code == 1 and "did you mean 'seq_len'" in r.output
    r = runner.invoke(app, ["data", "prepare", str(SAMPLE / "text.jsonl"), "--out", str(tmp_path / "o"),
                            "--txt-split", "pages"])
    assert r.exit_code == 1 and "txt_split must be one of" in r.output
    assert not (tmp_path / "o").exists()


def test_tokenizer_train_then_inspect_with_it(tmp_path):
    tok = tmp_path / "small.tiktoken"
    r = runner.invoke(app, ["tokenizer", "train", str(SAMPLE / "text.jsonl"), "--vocab-size", "300",
                            "--out", str(tok), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ranks"] == 300
    r = runner.invoke(app, ["inspect", str(SAMPLE / "chat.jsonl"), "--tokenizer", str(tok), "--limit", "1", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout.splitlines()[0])
    assert row["input_ids"][0] == 301 and max(row["input_ids"]) <= 302  # <|im_start|>, <|im_end|> after 300
    r = runner.invoke(app, ["tokenizer", "train", str(SAMPLE / "text.jsonl"), "--vocab-size", "10", "--out", str(tok)])
    assert r.exit_code == 1 and "between 257" in r.output


def test_force_never_deletes_the_inputs_and_a_bad_eval_writes_nothing(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    corpus = data / "corpus.jsonl"
    corpus.write_text((SAMPLE / "text.jsonl").read_text())
    r = runner.invoke(app, ["data", "prepare", str(corpus), "--out", str(data), "--force"])
    assert r.exit_code == 1 and "contains the input" in r.output and corpus.exists()
    out = tmp_path / "t.tiktoken"
    r = runner.invoke(app, ["tokenizer", "train", str(corpus), "--vocab-size", "300", "--out", str(out),
                            "--eval", str(tmp_path / "nope.txt")])
    assert r.exit_code == 1 and not out.exists()


def test_a_jsonl_line_that_is_an_array_is_refused_wherever_it_is(tmp_path):
    for name, body in (("first.jsonl", '[{"text": "a b c d e f"}, {"text": "g h i j k l"}]\n'),
                       ("second.jsonl", '{"text": "a b c d e f"}\n[{"text": "g h i j k l"}]\n')):
        (tmp_path / name).write_text(body)
        r = runner.invoke(app, ["data", "prepare", str(tmp_path / name), "--out", str(tmp_path / f"o-{name}")])
        assert r.exit_code == 1 and "expected a JSON object, got list" in r.output, r.output


def test_a_range_error_in_the_config_names_the_file(tmp_path):
    cfg = tmp_path / "prep.yaml"
    cfg.write_text("dedup:\n  threshold: 1.5\n")
    r = runner.invoke(app, ["data", "prepare", str(SAMPLE / "text.jsonl"), "--out", str(tmp_path / "o"),
                            "--config", str(cfg)])
    assert r.exit_code == 1 and "prep.yaml" in r.output and "threshold" in r.output, r.output


def test_prepare_workers_option(tmp_path):
    args = ["data", "prepare", str(SAMPLE / "text.jsonl"), "--seq-len", "64", "--no-quality", "--json"]
    one = runner.invoke(app, [*args, "--out", str(tmp_path / "one"), "--workers", "1"])
    two = runner.invoke(app, [*args, "--out", str(tmp_path / "two"), "-j", "2"])
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    assert json.loads(two.stdout)["throughput"]["workers"] == 2  # 1,418 documents: 15 batches, so the pool ran
    assert (tmp_path / "one" / "train_00000.bin").read_bytes() == (tmp_path / "two" / "train_00000.bin").read_bytes()
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "bad"), "--workers", "-1"])
    assert r.exit_code == 1 and "parallel.workers must be 0 (every core) or more" in r.output
