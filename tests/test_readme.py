"""The README's set-up commands are the ones CI and users actually run."""

import re

from tests.conftest import ROOT


def _commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def test_two_setup_commands_and_ci_runs_the_test_one():
    main, tests = _commands()
    assert "workbench inspect sample_data/chat.jsonl" in main
    assert "pytest" in tests
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert tests in ci


def test_main_command_points_at_real_sample_data():
    main, _ = _commands()
    assert (ROOT / main.split("workbench inspect ")[1].split()[0]).is_file()
