"""SearchBox: the Data pane's search over message text; it streams hits from a thread worker.

    box.browser = browser        # what to search (a workbench.data.browse.Browser)
    # typing searches after a 0.3 s pause (Enter at once); it posts SearchBox.Results(query, hits, done):
    # `hits` is one list that grows as batches arrive (at most one post per 0.1 s), None when cleared

A new query, a new browser or clearing the box stops the running search; what a stale search
still reports is dropped (generation numbers). The matching is `Browser.search` (the core).
"""

from __future__ import annotations

import time
from functools import partial

from textual import on
from textual.message import Message
from textual.widgets import Input
from textual.worker import get_current_worker

from app import messages as M
from workbench.data.browse import Browser


class SearchBox(Input):
    class Results(Message):
        def __init__(self, query: str, hits: list[int] | None, done: bool):
            super().__init__()
            self.query, self.hits, self.done = query, hits, done

    class _Batch(Message):
        def __init__(self, gen: int, hits: list[int], done: bool, error: str | None = None):
            super().__init__()
            self.gen, self.hits, self.done, self.error = gen, hits, done, error

    def __init__(self, **kw):
        super().__init__(placeholder=M.DATA_SEARCH_PLACEHOLDER, compact=True, **kw)
        self.browser: Browser | None = None
        self.hits: list[int] | None = None
        self.query_text, self.searching = "", False
        self._gen = 0
        self._timer = None

    def reset(self, browser: Browser | None) -> None:
        """A new source: stop searching the old one; the box keeps its text, unsearched."""
        self.browser = browser
        self._stop()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.3, partial(self.search, event.value))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.search(event.value)  # the Submitted message goes on up: the pane focuses the list

    def search(self, query: str) -> None:
        if query == self.query_text and self.hits is not None:
            return
        self._stop()
        if self.browser is None or not query:
            self.post_message(self.Results("", None, True))
            return
        self.hits, self.query_text, self.searching = [], query, True
        self.post_message(self.Results(query, self.hits, False))
        self.run_worker(partial(self._search, self.browser, query, self._gen), thread=True,
                        exclusive=True, group="data-search", exit_on_error=False)

    def _stop(self) -> None:
        self._gen += 1
        self.hits, self.query_text, self.searching = None, "", False

    def _search(self, b: Browser, query: str, gen: int) -> None:
        """Worker thread: stream hits, a batch at most every 0.1 s."""
        worker = get_current_worker()
        batch, last = [], 0.0
        try:
            for index in b.search(query, stop=lambda: worker.is_cancelled or gen != self._gen):
                batch.append(index)
                if time.monotonic() - last > 0.1:
                    self.post_message(self._Batch(gen, batch, False))
                    batch, last = [], time.monotonic()
        except Exception as e:  # a bug: bad records never match, they do not raise
            self.post_message(self._Batch(gen, batch, True, f"{type(e).__name__}: {e}"))
            return
        self.post_message(self._Batch(gen, batch, True))

    @on(_Batch)
    def _batch(self, message: _Batch) -> None:
        message.stop()
        if message.gen != self._gen or self.hits is None:
            return
        self.hits.extend(message.hits)
        self.searching = not message.done
        if message.error:
            self.notify(M.WORKER_ERROR.format(what="Search", error=message.error), severity="error")
        self.post_message(self.Results(self.query_text, self.hits, message.done))
