"""Train pane (stub: being built)."""
from textual.widgets import Static


class TrainPane(Static):
    def __init__(self, runs_root="runs", **kw):
        super().__init__("Train", classes="pane", **kw)

    def resume(self, run_dir: str, detached: bool = False) -> None:
        pass

    def running_jobs(self) -> list[str]:
        return []

    def stop_all(self, wait: bool = True) -> None:
        pass
