"""The Data pane: open any data source, list its examples, see each one's tokens and masks.

    DataPane("sample_data/chat.jsonl")    # pane.open(path) opens another

Top: the path (→ accepts the completion) and the format (auto-detected, or an override); the
tokenizer (cl100k_base, a .tiktoken file, a checkpoint or run dir), the mode and the max length.
Left: the examples (a virtual list: only the rows on screen are read) and a search box; right: the
example as training sees it (app/widgets/example_view.py). Every decision is in
workbench.data.browse. Opening, indexing and checking every record, loading a tokenizer and
searching (app/widgets/search_box.py) run in thread workers that post back; what a stale file,
tokenizer or search reports is dropped (generation numbers).
"""

from __future__ import annotations

import time
from functools import partial

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DirectoryTree, Input, Static
from textual.worker import get_current_worker

from app import messages as M
from app.widgets.data_bar import DataBar
from app.widgets.example_list import ExampleList
from app.widgets.example_view import ExampleView
from app.widgets.search_box import SearchBox
from app.widgets.token_view import TokenView
from workbench.data.browse import Browser, Encoding, open_browser, opens_at_once, tokenizer_of
from workbench.data.loading import BUILDERS
from workbench.data.record_view import display_path, short_location
from workbench.errors import WorkbenchError
from workbench.inspector import MODE_IGNORED


class DataTree(DirectoryTree):
    """Folders and data files only."""

    def filter_paths(self, paths):
        return [p for p in paths if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in BUILDERS)]


class DataPane(Vertical):
    BINDINGS = [
        Binding("slash", "search", M.DATA_BINDINGS["search"]),
        Binding("r", "raw", M.DATA_BINDINGS["raw"]),
        Binding("b", "boundaries", M.DATA_BINDINGS["boundaries"]),
        Binding("o", "tree", M.DATA_BINDINGS["tree"]),
        Binding("escape", "back", show=False),
    ]

    class Opened(Message):
        def __init__(self, gen: int, browser: Browser | None, error: str | None = None):
            super().__init__()
            self.gen, self.browser, self.error = gen, browser, error

    class Progress(Message):
        def __init__(self, gen: int, error: str | None = None):
            super().__init__()
            self.gen, self.error = gen, error

    class TokenizerLoaded(Message):
        def __init__(self, gen: int, tok, error: str | None = None):
            super().__init__()
            self.gen, self.tok, self.error = gen, tok, error

    def __init__(self, path: str | None = None, **kw):
        super().__init__(classes="pane", **kw)
        self.path = path
        self.browser: Browser | None = None
        self.tok = None
        self.encoding: Encoding | None = None
        self.mode, self.max_len, self.fmt = "all", None, None
        self.raw, self.boundaries = False, True
        self._gen = {"open": 0, "tok": 0}

    def compose(self) -> ComposeResult:
        yield DataBar(self.path, id="data-controls")
        with Horizontal(id="data-problem"):
            yield Static(id="data-problem-text", markup=False)
            yield Button(M.DATA_SKIP_BUTTON, id="data-skip", variant="warning", compact=True)
        with Horizontal(id="data-body"):
            yield DataTree(".", id="data-tree")
            with Vertical(id="data-left"):
                yield SearchBox(id="data-search")
                yield ExampleList(id="data-examples")
                yield Static(id="data-status", markup=False)
            yield ExampleView(id="data-example")

    def on_mount(self) -> None:
        # Threads started now would compete for the GIL with the App's start (measured: a 100k-record
        # file's first screen came ~2x later): the tokenizer loads once the first screen is up.
        self.call_after_refresh(self._load_tokenizer, "cl100k_base")
        if self.path:
            self.open(self.path)
        else:
            self.query_one(ExampleView).message(M.DATA_NO_DATA)

    def focus_default(self):
        """What the App focuses when this tab is shown: the list, so its keys work at once."""
        return self.query_one(ExampleList)

    def commands(self) -> list[tuple[str, str, object]]:
        return [(title, help_text, partial(self.run_action, action)) for action, title, help_text in M.DATA_COMMANDS]

    # ------------------------------------------------------------------ opening
    def open(self, path: str) -> None:
        """Open a data file or folder (the format detected again)."""
        path = display_path(path)
        self.path, self.fmt = path, None
        self.query_one(DataBar).set_path(path)
        self._start_open(skip_bad=False)

    def _start_open(self, skip_bad: bool) -> None:
        self._gen["open"] += 1
        self.browser = None
        self.query_one(SearchBox).reset(None)
        self.query_one(ExampleList).show(None, (), self.encoding)
        self.query_one(ExampleView).message(M.DATA_OPENING.format(path=self.path))
        self._status(M.DATA_OPENING.format(path=self.path))
        self.query_one("#data-problem").display = False
        gen = self._gen["open"]
        if not opens_at_once(self.path):
            self._worker(partial(self._load, self.path, self.fmt, skip_bad, gen))
            return
        # A .jsonl file opens here, at once (its first MiB is indexed), so the first screen shows
        # rows; the rest of the index and the check of every record follow in a worker.
        try:
            b = open_browser(self.path, self.fmt, skip_bad)
        except Exception as e:  # any bad input: a message in the pane, never a crash
            self._opened(self.Opened(gen, None, _message(e)))
            return
        self._opened(self.Opened(gen, b))
        self.call_after_refresh(self._worker, partial(self._follow, b, gen))

    def _worker(self, work) -> None:
        self.run_worker(work, thread=True, exclusive=True, group="data-open", exit_on_error=False)

    def _load(self, path: str, fmt: str | None, skip_bad: bool, gen: int) -> None:
        """Worker thread: open a source that datasets reads (it takes a while), then follow it."""
        try:
            b = open_browser(path, fmt, skip_bad)
        except Exception as e:  # any bad input: a message in the pane, never a crash
            self.post_message(self.Opened(gen, None, _message(e)))
            return
        self.post_message(self.Opened(gen, b))
        self._follow(b, gen)

    def _follow(self, b: Browser, gen: int) -> None:
        """Worker thread: index the rest and check every record, reporting ~5 times a second."""
        worker = get_current_worker()
        last, had_error = time.monotonic(), False
        while not worker.is_cancelled and gen == self._gen["open"]:
            started = time.monotonic()
            try:
                done = b.validate_more(500) if b.index_more() else False
            except Exception as e:  # the file changed or vanished under us: say so, keep what was read
                self.post_message(self.Progress(gen, f"{type(e).__name__}: {e}"))
                return
            news = b.first_error is not None and not had_error
            had_error = b.first_error is not None
            if done or news or time.monotonic() - last > 0.2:  # coalesced: ~5 reports a second
                self.post_message(self.Progress(gen))
                last = time.monotonic()
            if done:
                return
            if b.complete:  # checking holds the GIL (json, normalise): rest as long, so the UI keeps its turns
                time.sleep(min(time.monotonic() - started, 0.05))

    @on(Opened)
    def _opened(self, message: Opened) -> None:
        if message.gen != self._gen["open"]:
            return
        view = self.query_one(ExampleView)
        if message.error:
            self._status("")
            view.message(M.DATA_BAD.format(error=message.error), error=True)
            self._problem(M.DATA_BAD.format(error=message.error), button=None)
            return
        b = self.browser = message.browser
        self.query_one(SearchBox).reset(b)
        self.query_one(DataBar).set_format(self.fmt, b.format)
        self.query_one(ExampleList).show(b, b.visible(), self.encoding)
        self._progress(self.Progress(message.gen))
        self._mode_note()

    @on(Progress)
    def _progress(self, message: Progress) -> None:
        b = self.browser
        if message.gen != self._gen["open"] or b is None:
            return
        if message.error:
            self.notify(M.WORKER_ERROR.format(what=f"Reading {self.path}", error=message.error), severity="error")
        examples = self.query_one(ExampleList)
        if self.hits is None:
            examples.indices = b.visible()
            examples.grow()
        self._update_status()
        errors = b.load_error or b.first_error
        if errors:
            counts = b.bad_counts()
            n = sum(counts.values())
            so_far = "" if b.validated else M.DATA_SO_FAR
            reasons = ", ".join(f"{k} {r}" for r, k in counts.most_common())
            words = dict(n=n, s="" if n == 1 else "s", so_far=so_far, reasons=reasons)
            if b.skip_bad:
                self._problem(M.DATA_SKIPPING.format(**words), M.DATA_SHOW_BAD_BUTTON)
            else:  # the counts first: a long first error may not fit the bar's three lines
                first = short_location(str(errors), b.path)
                self._problem(M.DATA_BAD.format(error=f"{M.DATA_BAD_COUNTS.format(**words)} · {first}"),
                              M.DATA_SKIP_BUTTON)

    def _update_status(self) -> None:
        b = self.browser
        if b is None:
            return
        if not b.complete:
            text = M.DATA_INDEXING.format(n=len(b), pct=b.progress)
        elif b.skip_bad:
            text = M.DATA_SHOWN_GOOD.format(shown=len(b.good), n=b.checked)
        else:
            text = M.DATA_RECORDS.format(n=len(b))
        if b.complete and not b.validated:
            text += M.DATA_CHECKING.format(pct=b.checked / max(len(b), 1))
        search = self.query_one(SearchBox)
        if search.hits is not None:
            text = M.DATA_HITS.format(hits=len(search.hits), query=search.query_text) + \
                (M.DATA_SEARCHING if search.searching else f" · {text}")
        self._status(text)

    def _status(self, text: str) -> None:
        self.query_one("#data-status", Static).update(text)

    def _problem(self, text: str, button: str | None) -> None:
        self.query_one("#data-problem").display = True
        self.query_one("#data-problem-text", Static).update(text)
        skip = self.query_one("#data-skip", Button)
        skip.display = button is not None
        if button:
            skip.label = button

    # ------------------------------------------------------------------ tokenizer, mode, max length
    def _load_tokenizer(self, spec: str) -> None:
        self._gen["tok"] += 1
        self.query_one(DataBar).note("tok", M.DATA_TOKENIZER_LOADING.format(spec=spec or "cl100k_base"))
        self.run_worker(partial(self._tokenizer_worker, spec, self._gen["tok"]), thread=True,
                        exclusive=True, group="data-tokenizer", exit_on_error=False)

    def _tokenizer_worker(self, spec: str, gen: int) -> None:
        try:
            self.post_message(self.TokenizerLoaded(gen, tokenizer_of(spec)))
        except Exception as e:
            self.post_message(self.TokenizerLoaded(gen, None, _message(e)))

    @on(TokenizerLoaded)
    def _tokenizer_loaded(self, message: TokenizerLoaded) -> None:
        if message.gen != self._gen["tok"]:
            return
        if message.error:
            self.query_one(DataBar).note("tok", M.DATA_TOKENIZER_FAILED.format(error=message.error), error=True)
            self.notify(M.DATA_TOKENIZER_FAILED.format(error=message.error), severity="error", timeout=8)
            return
        self.query_one(DataBar).note("tok", "")
        self.tok = message.tok
        self._apply_encoding()

    def _apply_encoding(self) -> None:
        enc = Encoding(self.tok, self.mode, self.max_len) if self.tok is not None else None
        if enc == self.encoding:
            return
        self.encoding = enc
        self.query_one(ExampleList).set_encoding(enc)
        self._show_current()
        self._mode_note()

    def _mode_note(self) -> None:
        b = self.browser
        ignored = b is not None and b.kind != "conversation" and self.mode != "all"
        self.query_one(DataBar).note("mode", M.DATA_MODE_IGNORED.format(
            mode=self.mode, kind=b.kind, why=MODE_IGNORED[b.kind]) if ignored else "")

    @on(DataBar.Changed)
    def _control_changed(self, event: DataBar.Changed) -> None:
        if event.what == "path":
            self.open(event.value)
            self.query_one(ExampleList).focus()
        elif event.what == "tokenizer":
            self._load_tokenizer(event.value)
        elif event.what == "format":
            if event.value != self.fmt and self.path:
                self.fmt = event.value
                self._start_open(skip_bad=False)
        else:
            setattr(self, event.what, event.value)  # mode, max_len
            self._apply_encoding()

    # ------------------------------------------------------------------ the list and the example
    @on(ExampleList.Highlighted)
    def _highlighted(self, event: ExampleList.Highlighted) -> None:
        self._show_current()

    @on(ExampleList.Chosen)
    def _chosen(self, event: ExampleList.Chosen) -> None:
        views = self.query_one(ExampleView).token_views()
        if views:
            views[1 if len(views) > 1 else 0].focus()  # a pair: its chosen response

    def _show_current(self) -> None:
        index = self.query_one(ExampleList).current
        view = self.query_one(ExampleView)
        if self.browser is None or index is None:
            if self.browser is not None:
                search = self.query_one(SearchBox)
                view.message(M.DATA_RECORDS.format(n=0) if search.hits is None else
                             M.DATA_HITS.format(hits=0, query=search.query_text))
            return
        view.show(self.browser, index, self.encoding, self.raw, self.boundaries)
        if self.encoding is None and not self.raw:
            view.query_one("#ex-token", Static).update(
                M.DATA_WAITING_TOKENIZER.format(spec=self.query_one("#data-tokenizer", Input).value or "cl100k_base"))

    @on(DirectoryTree.FileSelected)
    def _file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self._show_tree(False)
        self.open(str(event.path))

    @on(Button.Pressed, "#data-skip")
    def _skip_pressed(self) -> None:
        self.action_skip()

    # ------------------------------------------------------------------ search
    @property
    def hits(self) -> list[int] | None:
        """The search filter (record indices, growing while the search runs), or None."""
        return self.query_one(SearchBox).hits

    @on(SearchBox.Results)
    def _results(self, message: SearchBox.Results) -> None:
        b, examples = self.browser, self.query_one(ExampleList)
        if b is None:
            return
        if message.hits is None:
            examples.show(b, b.visible(), self.encoding)
        elif examples.indices is not message.hits:  # a new search: the list shows its hits
            examples.show(b, message.hits, self.encoding)
        else:
            examples.grow()
        self._update_status()

    @on(Input.Submitted, "#data-search")
    def _search_submitted(self) -> None:
        self.query_one(ExampleList).focus()

    # ------------------------------------------------------------------ actions
    def action_search(self) -> None:
        self.query_one("#data-search", Input).focus()

    def action_open(self) -> None:
        self.query_one("#data-path", Input).focus()

    def action_tokenizer(self) -> None:
        self.query_one("#data-tokenizer", Input).focus()

    def action_raw(self) -> None:
        self.raw = not self.raw
        self._show_current()

    def action_boundaries(self) -> None:
        self.boundaries = not self.boundaries
        self._show_current()

    def action_mode(self, mode: str) -> None:
        self.query_one(DataBar).set_mode(mode)

    def action_tree(self) -> None:
        self._show_tree(not self.query_one(DataTree).display)

    def _show_tree(self, show: bool) -> None:
        """The file tree takes the list's place (the example stays in view)."""
        tree = self.query_one(DataTree)
        tree.display, self.query_one("#data-left").display = show, not show
        (tree if show else self.query_one(ExampleList)).focus()

    def action_skip(self) -> None:
        b = self.browser
        if b is None or not (b.first_error or b.load_error):
            return
        b.skip_bad = not b.skip_bad
        if self.hits is None:
            self.query_one(ExampleList).show(b, b.visible(), self.encoding)
        self._progress(self.Progress(self._gen["open"]))

    def action_back(self) -> None:
        focused = self.app.focused
        search = self.query_one("#data-search", Input)
        if focused is search and search.value:
            search.value = ""
        elif isinstance(focused, DataTree):
            self._show_tree(False)
        elif isinstance(focused, TokenView) or focused is search:
            self.query_one(ExampleList).focus()


def _message(e: Exception) -> str:
    """What to tell a person: a WorkbenchError says it all; anything else names its type."""
    return str(e) if isinstance(e, WorkbenchError) else f"{type(e).__name__}: {e}"
