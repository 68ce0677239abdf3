"""Data pane (stub: being built)."""
from textual.widgets import Static


class DataPane(Static):
    def __init__(self, path=None, **kw):
        super().__init__(f"Data: {path}", classes="pane", **kw)
        self.path = path

    def open(self, path: str) -> None:
        self.path = path
        self.update(f"Data: {path}")
