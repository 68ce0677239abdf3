"""The App's frame: launch plans, the console-script wiring, themes, the palette, every pane at two sizes."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from app.app import WorkbenchApp, plan_launch
from tests.conftest import ROOT, SAMPLE
from workbench.errors import WorkbenchError


def _run_dir(path, stage="sft"):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(f"stage: {stage}\nmax_steps: 10\n")
    return path


def test_launch_defaults_to_the_sample_chat_and_runs():
    launch = plan_launch([])
    assert launch.data == str(SAMPLE / "chat.jsonl") and launch.runs == [] and launch.pane == "data"
    assert launch.runs_root == "runs"


def test_launch_sorts_run_dirs_from_data(tmp_path):
    a, b = _run_dir(tmp_path / "a"), _run_dir(tmp_path / "b", "dpo")
    launch = plan_launch([str(a), str(b)])
    assert launch.runs == [str(a), str(b)] and launch.pane == "monitor"
    launch = plan_launch([str(SAMPLE / "preference.jsonl")])
    assert launch.data == str(SAMPLE / "preference.jsonl") and launch.pane == "data"
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "train.log").write_text("")  # the first file the engine writes
    assert plan_launch([str(tmp_path / "early"), str(tmp_path / "later")]).runs == [
        str(tmp_path / "early"), str(tmp_path / "later")]  # a run about to start: the Monitor waits for it
    launch = plan_launch([str(a), str(SAMPLE / "text.jsonl")])
    assert launch.runs == [str(a)] and launch.data == str(SAMPLE / "text.jsonl") and launch.pane == "monitor"


def test_launch_errors_name_the_path(tmp_path):
    with pytest.raises(WorkbenchError, match="no such file or folder: .*nope.jsonl"):
        plan_launch([str(tmp_path / "nope.jsonl")])
    assert plan_launch([str(tmp_path / "not-yet" / "run")]).runs  # runs/ itself may not exist yet
    with pytest.raises(WorkbenchError, match="one data file"):
        plan_launch([str(SAMPLE / "chat.jsonl"), str(SAMPLE / "text.jsonl")])


def test_tui_command_reports_bad_paths_without_a_traceback(tmp_path):
    from app.cli import app

    result = CliRunner().invoke(app, ["tui", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output and "Traceback" not in result.output


def test_console_script_is_the_app_cli_and_help_does_not_load_textual():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'workbench = "app.cli:main"' in text
    code = ("import sys; from app.cli import app; from typer.main import get_command; "
            "names = sorted(get_command(app).commands); print(names); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    names, textual_modules = out.strip().splitlines()
    assert "'tui'" in names and "'train'" in names and "'inspect'" in names
    assert textual_modules == "[]"  # `workbench --help` and every headless command stay light


def test_python_dash_m_app_is_the_tui_command():
    out = subprocess.run([sys.executable, "-m", "app", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "Run directories" in out.stdout


async def _visit_every_pane(app, size):
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        seen = []
        for key, pane in (("2", "train"), ("3", "monitor"), ("4", "runs"), ("5", "playground"), ("6", "report"), ("1", "data")):
            app.set_focus(None)  # a focused input would take the digit
            await pilot.press(key)
            await pilot.pause()
            seen.append(app.query_one("#panes").active)
        return seen


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_every_pane_opens_at_both_sizes(size):
    seen = await _visit_every_pane(WorkbenchApp(plan_launch([])), size)
    assert seen == ["train", "monitor", "runs", "playground", "report", "data"]


async def test_theme_toggles_between_dark_and_light():
    app = WorkbenchApp(plan_launch([]))
    async with app.run_test(size=(80, 24)) as pilot:
        dark = app.current_theme.dark
        app.action_toggle_dark()
        await pilot.pause()
        assert app.current_theme.dark is not dark
        app.action_toggle_dark()
        assert app.current_theme.dark is dark


def test_unknown_theme_is_a_user_error():
    with pytest.raises(WorkbenchError, match="unknown theme 'neon'"):
        WorkbenchApp(plan_launch([]), theme="neon")


async def test_palette_lists_the_panes_and_the_panes_actions():
    app = WorkbenchApp(plan_launch([]))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for name in ("Data", "Train", "Monitor", "Runs"):
            assert f"Show the {name} pane" in titles
        pane_commands = [t for p in app.query(".pane") for t, _, _ in getattr(p, "commands", lambda: [])()]
        assert set(pane_commands) <= set(titles)


async def test_a_subclass_of_the_app_keeps_its_styles():
    class Sub(WorkbenchApp):  # e.g. bench/tui_overhead.py: CSS paths must not follow the subclass's module
        pass

    app = Sub(plan_launch([]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.query_one("#panes").styles.height.value == 1  # app.tcss: height 1fr
