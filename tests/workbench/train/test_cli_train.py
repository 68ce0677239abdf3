"""`workbench train ...` through the CLI: a pretrain -> sft chain, resume, Ctrl-C, user errors.

    python -m pytest -q tests/workbench/train/test_cli_train.py

Runs use the small trained tokenizer (conftest's `small_tok`), 2 layers and 64-token windows, so
every step takes milliseconds. Ctrl-C is tested by calling the SIGINT handler the run installed
(what the signal would call), not by sending a signal.
"""

import io
import json
import shutil
import signal

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.conftest import SAMPLE
from workbench.cli import app

runner = CliRunner()


def tiny(tok, steps=8):
    return [f"tokenizer={tok}", f"data={SAMPLE / 'text.jsonl'}", "model={n_layers: 2}", "seq_len=64",
            "batch_size=4", f"max_steps={steps}", "eval_every=4", "eval_batches=1", "save_every=0",
            "tensorboard=false"]


def train(*args):
    return runner.invoke(app, ["train", *map(str, args)])


def steps(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["event"] == "train"]


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory, small_tok):
    out = tmp_path_factory.mktemp("cli") / "pretrain"
    r = train("pretrain", "--out", out, *tiny(small_tok))
    assert r.exit_code == 0, r.output
    return out, r.output


def test_pretrain_prints_progress_and_a_summary_with_the_next_command(pretrain_run):
    out, output = pretrain_run
    assert "step 8/8  loss " in output and "tok/s" in output and "\x1b[" not in output  # plain lines off a terminal
    assert "eval step 4: val/loss" in output
    assert "finished: pretrain, step 8 of 8" in output
    ckpt = out / "checkpoints" / "step-000008"
    assert f"checkpoint     {ckpt}" in output and f"run dir        {out}" in output
    assert f"workbench train sft --from {out}" in output
    assert f"workbench generate {ckpt}" in output
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000008"
    assert steps(out) == list(range(1, 9))


def test_sft_from_the_pretrain_run_records_its_parent(pretrain_run, tmp_path):
    parent, _ = pretrain_run
    out = tmp_path / "sft"
    r = train("sft", "--from", parent, "--out", out, f"data={SAMPLE / 'chat.jsonl'}", "max_steps=4", "max_len=128",
              "batch_size=4", "eval_every=0", "tensorboard=false")
    assert r.exit_code == 0, r.output
    assert "finished: sft, step 4 of 4" in r.output
    assert f"workbench train rm --from {out}" in r.output and f"workbench train dpo --from {out}" in r.output
    assert "--chat" in r.output
    lineage = json.loads((out / "lineage.json").read_text())
    # --from a run dir records the concrete checkpoint it resolved to (its `latest` may move on later)
    assert lineage["parent"]["path"] == str((parent / "checkpoints" / "step-000008").resolve())
    assert lineage["parent"]["stage"] == "pretrain" and lineage["status"] == "finished"


def test_without_out_a_new_timestamped_run_dir_is_made_and_printed(small_tok, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = train("pretrain", *tiny(small_tok, steps=2))
    assert r.exit_code == 0, r.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("pretrain-20") and f"run dir        {run.relative_to(tmp_path)}" in r.output


def test_resume_extends_a_finished_run_without_repeating_steps(pretrain_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pretrain_run[0], run)
    r = train("pretrain", "--resume", run, "max_steps=12")
    assert r.exit_code == 0, r.output
    assert "resumed from" in r.output and "step-000008" in r.output
    assert "finished: pretrain, step 12 of 12" in r.output
    assert steps(run) == list(range(1, 13))
    r = train("pretrain", "--resume", run)  # nothing left to do: says how to extend it
    assert r.exit_code == 0 and "already at step 12 of max_steps 12" in r.output
    assert steps(run) == list(range(1, 13))


def test_first_ctrl_c_stops_with_a_checkpoint_that_resume_continues(small_tok, tmp_path):
    from workbench.cli_train import run_stage

    out, before = tmp_path / "run", signal.getsignal(signal.SIGINT)

    def press_ctrl_c_at_step_3(event):
        if event["event"] == "train" and event["step"] == 3:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # exactly what the signal would do

    text = io.StringIO()
    console = Console(file=text, force_terminal=True, width=150)  # the live progress bar path
    result = run_stage("pretrain", out=str(out), overrides=tiny(small_tok, steps=10), console=console,
                       callbacks=[press_ctrl_c_at_step_3])
    assert signal.getsignal(signal.SIGINT) is before  # the run's handler is gone again
    assert result["status"] == "stopped" and result["step"] == 3 and result["interrupts"] == 1
    assert result["checkpoint"] == str(out / "checkpoints" / "step-000003")
    output = text.getvalue()
    assert "stopping after this step (Ctrl-C again to abort)" in output
    assert f"workbench train pretrain --resume {out}" in output
    assert json.loads((out / "lineage.json").read_text())["status"] == "stopped"

    r = train("pretrain", "--resume", out)
    assert r.exit_code == 0, r.output
    assert "finished: pretrain, step 10 of 10" in r.output
    assert steps(out) == list(range(1, 11))


def test_second_ctrl_c_aborts_with_exit_130(small_tok, tmp_path, monkeypatch):
    from workbench import cli_train

    def press_twice(event):
        if event["event"] == "train" and event["step"] == 2:
            handler = signal.getsignal(signal.SIGINT)
            handler(signal.SIGINT, None)
            handler(signal.SIGINT, None)  # raises KeyboardInterrupt, as a second Ctrl-C does

    result = cli_train.run_stage("pretrain", out=str(tmp_path / "run"), overrides=tiny(small_tok, steps=10),
                                 console=Console(file=io.StringIO()), callbacks=[press_twice])
    assert result["interrupts"] == 2 and result["status"] == "stopped" and result["step"] == 2

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_train, "run_stage", interrupted)
    r = train("pretrain", "--out", tmp_path / "other")
    assert r.exit_code == 130 and "aborted" in r.output


@pytest.mark.parametrize("args, message", [
    (["pretrain", "lr_rate=1"], "unknown setting 'lr_rate' for stage 'pretrain' (did you mean"),
    (["pretrain", "max_stepz=1"], "(did you mean 'max_steps'?)"),
    (["pretrain", "lr=-1"], "lr must be a positive number, got -1.0"),
    (["pretrain", "batch_size=0"], "batch_size must be at least 1, got 0"),
    (["pretrain", "lr"], "override 'lr' is not key=value"),
    (["pretrain", "=3"], "override '=3' is not key=value"),
    (["sft", "{tmp}"], "is not a KEY=VALUE setting; did you mean --from"),
    (["dpo", "beta=0"], "beta must be positive, got 0.0"),
    (["sft"], "sft starts from a trained model: --from"),
    (["sft", "--from", "{tmp}/nowhere"], "nowhere: no such checkpoint or run directory"),
    (["rm", "--from", "{tmp}"], "not a model checkpoint"),
    (["pretrain", "--out", "{tmp}"], "already exists and is not empty"),
    (["pretrain", "--out", "{tmp}/a", "--resume", "{tmp}/b"], "--out and --resume are exclusive"),
    (["pretrain", "--resume", "{tmp}"], "not a run directory (no config.yaml)"),
    (["pretrain", "--resume", "{tmp}", "--config", "x.yaml"], "--resume continues a run with its saved config"),
    (["pretrain", "--config", "{tmp}/missing.yaml"], "config file"),
    (["ppo", "--from", "{tmp}"], "ppo needs a reward model"),
    (["pretrain", "--print-every", "-1"], "--print-every must be 0 or more"),
])
def test_user_errors_exit_1_with_a_message(tmp_path, args, message):
    (tmp_path / "something.txt").write_text("x")  # a non-empty directory that is not a run
    r = train(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("error: ") and message in " ".join(r.output.split()), r.output


def test_resume_checks_the_stage_and_the_overrides(pretrain_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pretrain_run[0], run)
    r = train("sft", "--resume", run)
    assert r.exit_code == 1 and f"is a pretrain run, not sft: workbench train pretrain --resume {run}" in r.output
    r = train("pretrain", "--resume", run, "max_stepz=20")
    assert r.exit_code == 1 and "did you mean 'max_steps'" in r.output
    assert steps(run) == list(range(1, 9))  # untouched


def test_parents_are_checked_before_anything_runs(pretrain_run, tmp_path):
    run, _ = pretrain_run
    r = train("ppo", "--from", run, f"reward_model={tmp_path / 'nope'}")
    assert r.exit_code == 1 and "reward_model: " in r.output and "no such checkpoint or run directory" in r.output
    r = train("sft", "--from", run, f"init_from={run}")
    assert r.exit_code == 1 and "give the parent checkpoint once" in r.output
    early = tmp_path / "early"  # a run that ended before its first checkpoint
    early.mkdir()
    shutil.copy(run / "config.yaml", early / "config.yaml")
    r = train("sft", "--from", early)
    assert r.exit_code == 1 and f"workbench train pretrain --resume {early}" in " ".join(r.output.split())


def test_help_lists_the_stages_and_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from workbench.cli import app; "
            "assert 'torch' not in sys.modules, 'workbench --help must not import torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
    r = runner.invoke(app, ["train", "--help"])
    assert r.exit_code == 0
    for stage in ("pretrain", "sft", "rm", "dpo", "ppo"):
        assert stage in r.output
