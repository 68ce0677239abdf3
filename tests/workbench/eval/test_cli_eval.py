"""`workbench eval`, `probe` and `chinchilla` end to end on tiny checkpoints."""

import json

import torch
from typer.testing import CliRunner

from tests.conftest import SAMPLE
from tests.workbench.eval.conftest import reward_checkpoint, write_jsonl
from workbench.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_eval_json_one_line_per_checkpoint_and_the_table(scripted, byte_tok, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Which river runs through Pellwater?", "answer": "Amber"},
                                                 {"prompt": "Write a poem."}])
    amber = scripted(byte_tok.encode("Amber."), name="amber")
    other = scripted(byte_tok.encode("Oska."), name="oska")
    r = run("eval", amber, other, "--prompts", prompts, "--ref", amber, "--json", "-n", "10", "--seed", "3")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 2  # nothing else on stdout
    a, o = (json.loads(line) for line in lines)
    assert a["checkpoint"] == str(amber) and o["checkpoint"] == str(other)
    assert a["greedy"]["accuracy"] == 1.0 and o["greedy"]["accuracy"] == 0.0
    assert abs(a["sampled"]["kl_ref"]) < 1e-4 and o["sampled"]["kl_ref"] > 1
    assert set(a) == {"checkpoint", "kind", "greedy", "sampled", "answers"}
    table = run("eval", amber, other, "--prompts", prompts, "--limit", "1", "-n", "10")
    assert table.exit_code == 0, table.output
    assert "compliance" in table.stdout and "100.0%" in table.stdout and "accuracy: other" in table.stdout


def test_eval_pairs_of_a_reward_model(random_lm, tmp_path):
    rm = reward_checkpoint(random_lm, torch.ones(64), 0.0, tmp_path / "rm")
    r = run("eval", rm, "--pairs", SAMPLE / "preference.jsonl", "--limit", "6", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "reward_model" and out["pairs"]["n"] == 6 and "greedy" not in out


def test_eval_errors_exit_1_with_a_message(random_lm, tmp_path):
    r = run("eval", random_lm)
    assert r.exit_code == 1 and "nothing to evaluate" in r.output and "--prompts" in r.output
    r = run("eval", random_lm, "--text", SAMPLE / "text.jsonl", "--ref", random_lm)
    assert r.exit_code == 1 and "give --prompts" in r.output
    r = run("eval", tmp_path / "missing", "--text", SAMPLE / "text.jsonl")
    assert r.exit_code == 1 and "no such checkpoint" in r.output
    r = run("eval", random_lm, "--prompts", SAMPLE / "prompts.jsonl", "--limit", "0")
    assert r.exit_code == 1 and "--limit" in r.output


def test_probe_and_chinchilla_commands(random_lm):
    r = run("probe", random_lm, "The River", "--top-k", "4", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["top"]) == 4
    r = run("probe", random_lm, "The River", "--chat")
    assert r.exit_code == 0 and "prob" in r.stdout
    r = run("chinchilla", "--params", "1B", "--json")
    assert json.loads(r.stdout)["tokens"] == 2e10
    r = run("chinchilla", "--flops", "1.2e20")
    assert r.exit_code == 0 and "1.00B" in r.stdout and "20.00B" in r.stdout
    r = run("chinchilla", "--run", random_lm)
    assert r.exit_code == 1 and "no record of the tokens" in r.output
    r = run("chinchilla")
    assert r.exit_code == 1 and "--flops" in r.output
