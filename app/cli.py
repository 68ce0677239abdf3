"""The `workbench` console script: the headless CLI (workbench.cli) plus `workbench tui`.

The script lives here, not in workbench/, so that the core never imports textual or app/ (not
even lazily): `app` depends on `workbench`, never the reverse. Nothing heavy is imported at module
level, so `workbench --help` stays fast; textual is imported only when `tui` runs.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from workbench.cli import _fail, app


@app.command()
def tui(
    paths: Optional[List[str]] = typer.Argument(None, metavar="[PATH]...",
                                                help="Run directories (the Monitor follows them, overlaid) or a data file "
                                                     "(the Data pane opens it). Default: sample_data/chat.jsonl and ./runs."),
    runs: str = typer.Option("runs", "--runs", help="Root of the run directories the Runs pane lists."),
    theme: Optional[str] = typer.Option(None, "--theme", help="A Textual theme, e.g. textual-dark, textual-light."),
):
    """The terminal workbench: browse data with its masks, set up and run a stage, watch it train."""
    from workbench.errors import WorkbenchError

    try:
        code = tui_main(list(paths or []), runs_root=runs, theme=theme)
    except WorkbenchError as e:
        _fail(str(e))
    raise typer.Exit(code)


def tui_main(paths: list[str], runs_root: str = "runs", theme: str | None = None) -> int:
    from app.app import WorkbenchApp, plan_launch

    launch = plan_launch(paths, runs_root)
    WorkbenchApp(launch, theme=theme).run()
    return 0


def main():
    app()


if __name__ == "__main__":
    main()
