"""ExampleList: the records of a data source as a virtual list (index, kind, first user line, tokens, trained).

    examples.show(browser, browser.visible(), encoding)   # any sequence of record indices
    examples.grow()                                       # the sequence grew (indexing, search hits)

A Line API ScrollView: only the rows on screen are read and tokenized, through `Browser.rows`:
first lines at once, token counts by a thread worker (one `encode_records` batch per screenful,
cached), so a 100,000-record file shows its first screen at once, scrolling costs one screenful,
and changing the mode never waits for the list. Moving the cursor posts
`ExampleList.Highlighted` with the record's index.
"""

from __future__ import annotations

from functools import partial

from rich.cells import set_cell_size
from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from app import messages as M
from workbench.data.browse import Browser, Encoding, Row

KINDS = {"conversation": "chat", "preference": "pair", "prompt": "prompt", "text": "text"}
TOKENS, TRAINED = 6, 7  # widths of the tokens and trained columns


class ExampleList(ScrollView, can_focus=True):
    """A sticky header line, then one line per record index; the cursor is a position in `indices`."""

    COMPONENT_CLASSES = {"example-list--header", "example-list--cursor", "example-list--error",
                         "example-list--dim", "example-list--warn"}
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "choose", "Show tokens", show=False),
    ]
    cursor: reactive[int] = reactive(0, always_update=True)

    class Highlighted(Message):
        """The cursor is on record `index` (None: the list is empty)."""

        def __init__(self, index: int | None):
            super().__init__()
            self.index = index

    class Counted(Message):
        """A screenful's token counts are ready (internal: the list repaints)."""

        def __init__(self, key: tuple, error: str | None = None):
            super().__init__()
            self.key, self.error = key, error

    class Chosen(Message):
        """Enter on a record: look at its tokens."""

        def __init__(self, index: int):
            super().__init__()
            self.index = index

    def __init__(self, **kw):
        super().__init__(**kw)
        self.browser: Browser | None = None
        self.indices = ()
        self.encoding: Encoding | None = None
        self._window: tuple | None = None  # (key, rows) of the last screenful read
        self.pending: tuple | None = None  # the screenful whose token counts a worker is computing
        self.reads = 0  # screenfuls read (the benchmark checks that only a few are)

    # ------------------------------------------------------------------ content
    def show(self, browser: Browser | None, indices, encoding: Encoding | None) -> None:
        self.browser, self.indices, self.encoding = browser, indices, encoding
        self._window = None
        self.scroll_to(0, 0, animate=False, immediate=True)
        self._resize()
        self.set_reactive(ExampleList.cursor, 0)
        self.refresh()
        self.post_message(self.Highlighted(self.current))

    def set_encoding(self, encoding: Encoding | None) -> None:
        self.encoding, self._window = encoding, None
        self.refresh()

    def grow(self) -> None:
        """The index sequence got longer (or was replaced by a longer one): redraw what changed."""
        before = self.virtual_size.height
        self._resize()
        if self.virtual_size.height != before:
            self.refresh()
        if before <= 1 and len(self.indices):  # the first rows arrived
            self.post_message(self.Highlighted(self.current))

    @property
    def current(self) -> int | None:
        return self.indices[self.cursor] if 0 <= self.cursor < len(self.indices) else None

    def _resize(self) -> None:
        size = Size(self.scrollable_content_region.width, len(self.indices) + 1)
        if size != self.virtual_size:
            self.virtual_size = size

    def visible_rows(self) -> list[Row]:
        """The rows on screen now: read at once (first lines), their token counts from the cache or,
        when missing, from a thread worker (one encode_records batch per screenful) that repaints."""
        if self.browser is None:
            return []
        first = self.scroll_offset.y
        height = max(self.scrollable_content_region.height - 1, 1)
        key = (first, height, len(self.indices), self.encoding, self.browser)
        if self._window is None or self._window[0] != key:
            indices = [self.indices[p] for p in range(first, min(first + height, len(self.indices)))]
            rows = self.browser.rows(indices, self.encoding, tokenize=False)
            self._window = (key, rows)
            self.reads += 1
            if self.encoding is not None and any(r.tokens is None and r.error is None for r in rows):
                self.pending = key
                # after this frame: the worker's Python (spans, labels) would compete for the GIL with it
                self.call_after_refresh(self.run_worker, partial(self._count, key, indices), thread=True,
                                        exclusive=True, group="example-rows", exit_on_error=False)
        return self._window[1]

    def _count(self, key: tuple, indices: list[int]) -> None:
        """Worker thread: tokenize a screenful (the browser caches it), then ask for a repaint."""
        _first, _height, _n, encoding, browser = key
        try:
            browser.rows(indices, encoding)
        except Exception as e:  # a bug, not bad data (bad records are rows with an error)
            self.post_message(self.Counted(key, f"{type(e).__name__}: {e}"))
            return
        self.post_message(self.Counted(key))

    def on_example_list_counted(self, message: Counted) -> None:
        if message.error:
            self.notify(M.WORKER_ERROR.format(what="Counting tokens", error=message.error), severity="error")
        if message.key == self.pending:
            self.pending = None
        if self._window is not None and self._window[0] == message.key:
            self._window = None  # read again: the counts are cached now
            self.refresh()

    # ------------------------------------------------------------------ drawing
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        digits = max(len(str(self.indices[-1])) if len(self.indices) else 1, 1)
        show_kind = width >= 60
        text_width = max(width - digits - 1 - (7 if show_kind else 0) - 2 - TOKENS - 1 - TRAINED, 4)
        if y == 0:
            style = self.get_component_rich_style("example-list--header")
            head = (f"{'#':>{digits}} " + (f"{'kind':<6} " if show_kind else "")
                    + set_cell_size(M.DATA_COL_FIRST, text_width + 1) + " "
                    + f"{M.DATA_COL_TOKENS:>{TOKENS}} {M.DATA_COL_TRAINED:>{TRAINED}}")
            return Strip([Segment(set_cell_size(head, width), style)])
        pos = self.scroll_offset.y + y - 1
        rows = self.visible_rows()
        k = pos - self.scroll_offset.y
        if not 0 <= k < len(rows):
            return Strip.blank(width, self.rich_style)
        row = rows[k]
        base = self.rich_style
        if row.error is not None:
            mark, first_style = "✗", self.get_component_rich_style("example-list--error")
        elif row.dropped:
            mark, first_style = "✗", self.get_component_rich_style("example-list--warn")
        elif row.truncated:
            mark, first_style = "…", base
        else:
            mark, first_style = " ", base
        dim = self.get_component_rich_style("example-list--dim")
        tokens = "" if row.tokens is None else f"{row.tokens:,}"
        trained = "" if row.trained is None else f"{row.trained:,}"
        if row.error is None and row.tokens is None:
            tokens = trained = "…"
        segments = [Segment(f"{row.index:>{digits}} ", dim)]
        if show_kind:
            kind = KINDS.get(self.browser.kind, self.browser.kind) if row.error is None else "bad"
            segments.append(Segment(f"{kind:<6} ", dim))
        segments += [Segment(set_cell_size(row.first_line, text_width), first_style),
                     Segment(mark + " ", first_style),
                     Segment(f"{tokens:>{TOKENS}} {trained:>{TRAINED}}", base)]
        if pos == self.cursor:  # over the cells' own colours
            segments = list(Segment.apply_style(segments, post_style=self.get_component_rich_style("example-list--cursor")))
        return Strip(segments).adjust_cell_length(width, base)

    def watch_cursor(self, old: int, new: int) -> None:
        for p in (old, new):
            self.refresh_line(p + 1)
        self._scroll_to_cursor()
        self.post_message(self.Highlighted(self.current))

    def _scroll_to_cursor(self) -> None:
        # line 0 is the header: the cursor's row is line cursor+1, and it must not hide under it
        top, height = self.scroll_offset.y, self.scrollable_content_region.height - 1
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        self._resize()  # the rows on screen follow from the window key (height and first row)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # ------------------------------------------------------------------ keys and mouse
    def action_move(self, step: int) -> None:
        if len(self.indices):
            self.cursor = min(max(self.cursor + step, 0), len(self.indices) - 1)

    def action_page(self, step: int) -> None:
        self.action_move(step * max(self.scrollable_content_region.height - 2, 1))

    def action_jump(self, where: int) -> None:
        if len(self.indices):
            self.cursor = 0 if where == 0 else len(self.indices) - 1

    def action_choose(self) -> None:
        if self.current is not None:
            self.post_message(self.Chosen(self.current))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and offset.y >= 1:
            pos = self.scroll_offset.y + offset.y - 1
            if pos < len(self.indices):
                self.cursor = pos
        self.focus()
