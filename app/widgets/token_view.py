"""TokenView: one rendered sequence token by token, as `workbench inspect` colours it, with a cursor.

    view.show(tok, rendered, start=0, end=None, boundaries=True)
    view.cursor = 12          # the token under the cursor; posts TokenView.Moved(view, TokenInfo)

The pieces (text and style of every token: trained green, masked dim, specials reversed, ↵ for
newlines) come from `workbench.inspector.token_pieces`, the CLI's own, so both show the same spans.
This widget only lays them out to its width (a Line API ScrollView: a 4,000-token chat is laid out
in a few milliseconds, and moving the cursor repaints two lines) and maps keys and clicks to tokens.
"""

from __future__ import annotations

from bisect import bisect_right
from functools import lru_cache

from rich.cells import cell_len, chop_cells
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from app import messages as M
from workbench.chat import Rendered
from workbench.data.record_view import TokenInfo, token_info
from workbench.inspector import token_pieces
from workbench.tokenizer import Tokenizer

TAB = "   "  # after the inspector's → marker: a tab shows as four cells
# Tokens laid out at most, from `start`: a 2 MB message (~500k tokens) took the UI thread 2-9 s to lay
# out; the rest is summed up on one line (the counts above the view still cover every token).
MAX_TOKENS = 20_000
MORE_STYLE = "dim italic"


@lru_cache(maxsize=64)
def _style(name: str) -> Style:
    return Style.parse(name)


class TokenView(ScrollView, can_focus=True):
    """Tokens [start, end) of a Rendered, wrapped to the width; left/right/up/down or a click move the cursor."""

    COMPONENT_CLASSES = {"token-view--cursor"}
    BINDINGS = [
        Binding("left", "move(-1)", "Previous token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("up", "line(-1)", "Line up", show=False),
        Binding("down", "line(1)", "Line down", show=False),
        Binding("home", "jump(0)", "First token", show=False),
        Binding("end", "jump(-1)", "Last token", show=False),
        Binding("pageup", "line(-10)", show=False),
        Binding("pagedown", "line(10)", show=False),
    ]
    cursor: reactive[int] = reactive(0, always_update=True)

    class Moved(Message):
        """The cursor is on another token."""

        def __init__(self, view: TokenView, info: TokenInfo | None):
            super().__init__()
            self.view, self.info = view, info

        @property
        def control(self) -> TokenView:
            return self.view

    def __init__(self, **kw):
        super().__init__(**kw)
        self.tok: Tokenizer | None = None
        self.rendered: Rendered | None = None
        self.start = self.end = 0
        self.hidden = 0  # tokens past MAX_TOKENS, not laid out
        self._pieces: list[tuple[str, str, int]] = []
        self._boundaries = True
        self._width = 0
        # _lines[y] = [(x0, x1, text, style, token)], _token_line[t - start] = line of token t's first cell
        self._lines: list[list[tuple[int, int, str, str, int]]] = []
        self._token_line: list[int] = []
        self._strips: dict[int, Strip] = {}  # drawn lines without the cursor, until the next layout

    # ------------------------------------------------------------------ content
    def show(self, tok: Tokenizer, r: Rendered, start: int = 0, end: int | None = None,
             boundaries: bool = True, keep_cursor: bool = False) -> None:
        self.tok, self.rendered, self._boundaries = tok, r, boundaries
        full_end = len(r) if end is None else end
        self.start, self.end = start, min(full_end, start + MAX_TOKENS)
        self.hidden = full_end - self.end
        self._pieces = token_pieces(tok, r, self.start, self.end, boundaries)
        self._layout()
        cursor = min(max(self.cursor, self.start), self.end - 1) if keep_cursor else self.start
        if not keep_cursor:
            self.scroll_to(0, 0, animate=False, immediate=True)
        self.set_reactive(TokenView.cursor, cursor)
        self.refresh()
        self.post_message(self.Moved(self, self.info()))

    def clear(self) -> None:
        self.rendered, self._pieces, self.start, self.end, self.hidden = None, [], 0, 0, 0
        self._layout()
        self.refresh()

    def info(self) -> TokenInfo | None:
        if self.rendered is None or not self.start <= self.cursor < self.end:
            return None
        return token_info(self.tok, self.rendered, self.cursor)

    @property
    def lines(self) -> list[str]:
        """The laid-out text, one string per screen line (what a person reads)."""
        return ["".join(p[2] for p in line) for line in self._lines]

    def _layout(self) -> None:
        """Wrap the pieces to the content width; remember the line each token starts on."""
        width = max(self.scrollable_content_region.width, 8) if self.is_mounted else 80
        lines: list[list] = [[]]
        x = 0
        for text, style, tok in self._pieces:
            for k, part in enumerate(text.replace("\t", TAB).split("\n")):
                if k:  # the inspector's ↵ already marks the newline: break the line
                    lines.append([])
                    x = 0
                while part:
                    n = cell_len(part)
                    if x >= width or (x and x + n > width and n <= width):  # fits a fresh line: do not split it
                        lines.append([])
                        x = 0
                    head = part if x + n <= width else chop_cells(part, width - x)[0]
                    if not head:  # a wide character that does not fit in what is left of the line
                        lines.append([])
                        x = 0
                        continue
                    part = part[len(head):]
                    w = cell_len(head)
                    lines[-1].append((x, x + w, head, style, tok))
                    x += w
                    if part:
                        lines.append([])
                        x = 0
        if len(lines) > 1 and not lines[-1]:
            lines.pop()  # the newline after the last token: no empty line below it
        if self.hidden:  # a line that is no token (token -1: never the cursor, never clicked)
            more = chop_cells(M.DATA_MORE_TOKENS.format(n=self.hidden, shown=self.end - self.start), width)[0]
            lines.append([(0, cell_len(more), more, MORE_STYLE, -1)])
        token_line = [-1] * max(self.end - self.start, 0)
        for y, line in enumerate(lines):
            for piece in line:
                if piece[4] >= 0 and token_line[piece[4] - self.start] < 0:
                    token_line[piece[4] - self.start] = y
        self._width, self._lines, self._token_line = width, lines, token_line
        self._strips.clear()
        if self.virtual_size.height != len(lines):
            self.virtual_size = Size(width, len(lines))
            self.refresh(layout=True)  # a view whose height is auto (the prompt) grows or shrinks
        else:
            self.virtual_size = Size(width, len(lines))

    def on_resize(self, event: events.Resize) -> None:
        self._strips.clear()
        if self._pieces and self.scrollable_content_region.width != self._width:
            self._layout()
            self._scroll_to_cursor()
            self.refresh()

    # ------------------------------------------------------------------ drawing
    def render_line(self, y: int) -> Strip:
        line_no = self.scroll_offset.y + y
        if line_no >= len(self._lines):
            return Strip.blank(self.size.width, self.rich_style)
        line = self._lines[line_no]
        has_cursor = bool(line) and line[0][4] <= self.cursor <= line[-1][4]
        strip = None if has_cursor else self._strips.get(line_no)
        if strip is None:
            cursor_style = self.get_component_rich_style("token-view--cursor", partial=True)
            segments = [Segment(text, _style(style) + cursor_style if tok == self.cursor else _style(style))
                        for _x0, _x1, text, style, tok in line]
            strip = Strip(segments, line[-1][1] if line else 0).extend_cell_length(self.size.width, self.rich_style)
            if not has_cursor:  # lines without the cursor do not change until the next layout
                self._strips[line_no] = strip
        return strip

    def notify_style_update(self) -> None:
        self._strips.clear()  # a new theme: new colours for the padding
        super().notify_style_update()

    def watch_cursor(self, old: int, new: int) -> None:
        if not self._token_line:
            return
        for t in (old, new):
            if self.start <= t < self.end:
                first = self._token_line[t - self.start]
                self.refresh_lines(first, 2)  # a token may wrap onto the next line
        self._scroll_to_cursor()
        self.post_message(self.Moved(self, self.info()))

    def _scroll_to_cursor(self) -> None:
        if self.start <= self.cursor < self.end and self._token_line:
            y = self._token_line[self.cursor - self.start]
            self.scroll_to_region(Region(0, y, 1, 1), animate=False, immediate=True)

    def on_focus(self) -> None:
        self.refresh()  # the cursor is drawn brighter while the view has focus (data.tcss)

    def on_blur(self) -> None:
        self.refresh()

    # ------------------------------------------------------------------ keys and mouse
    def action_move(self, step: int) -> None:
        if self.end > self.start:
            self.cursor = min(max(self.cursor + step, self.start), self.end - 1)

    def action_jump(self, where: int) -> None:
        if self.end > self.start:
            self.cursor = self.start if where == 0 else self.end - 1

    def action_line(self, step: int) -> None:
        """The token on the line `step` lines away nearest the cursor's column."""
        if self.end <= self.start:
            return
        here = self._token_line[self.cursor - self.start]
        x = next((p[0] for p in self._lines[here] if p[4] == self.cursor), 0)
        last = len(self._lines) - 1 - (1 if self.hidden else 0)  # the "more tokens" line holds none
        target = min(max(here + step, 0), last)
        while target != here and not self._lines[target]:
            target += 1 if step > 0 else -1
        if target == here or not self._lines[target]:
            self.cursor = self.end - 1 if step > 0 else self.start
            return
        line = self._lines[target]
        k = max(bisect_right([p[0] for p in line], x) - 1, 0)
        self.cursor = line[k][4]

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        y = self.scroll_offset.y + offset.y
        if 0 <= y < len(self._lines):
            for x0, x1, _text, _style, tok in self._lines[y]:
                if x0 <= offset.x + self.scroll_offset.x < x1 and tok >= 0:
                    self.cursor = tok
                    break
        self.focus()
