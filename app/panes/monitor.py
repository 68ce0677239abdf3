"""Monitor pane (stub: being built)."""
from textual.widgets import Static


class MonitorPane(Static):
    def __init__(self, run_dirs=(), **kw):
        super().__init__(f"Monitor: {list(run_dirs)}", classes="pane", **kw)

    def show_runs(self, run_dirs, add=False) -> None:
        self.update(f"Monitor: {run_dirs}")

    def add_records(self, run_dir, records) -> None:
        pass

    def run_ended(self, run_dir, status, error=None) -> None:
        pass
