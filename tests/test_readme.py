"""The README's set-up commands are the ones CI and users actually run."""

import re

from tests.conftest import ROOT


def _commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def test_two_setup_commands_and_ci_runs_the_test_one():
    main, tests = _commands()
    assert main.endswith(".venv/bin/workbench tui")
    assert "pytest" in tests
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert tests in ci


def test_main_command_opens_real_sample_data():
    from app.app import plan_launch

    main, _ = _commands()
    assert main.split("&&")[-1].split() == [".venv/bin/workbench", "tui"]  # no argument: the defaults
    assert plan_launch([]).data == str(ROOT / "sample_data" / "chat.jsonl")
    assert (ROOT / "sample_data" / "chat.jsonl").is_file()
