"""Runs pane (stub: being built)."""
from textual.widgets import Static


class RunsPane(Static):
    def __init__(self, root="runs", **kw):
        super().__init__(f"Runs under {root}", classes="pane", **kw)

    def refresh_runs(self) -> None:
        pass
