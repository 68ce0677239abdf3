"""ExampleView: one example as training sees it — its tokens and masks, per-turn counts, warnings.

    view.show(browser, index, encoding, raw=False, boundaries=True)

A conversation, prompt or text is one TokenView; a preference pair shows its prompt once, then
chosen and rejected side by side, each with its own mask. `raw` shows the messages instead (role
and content). Everything shown comes from the core: `Browser.example` (the trainers'
`encode_records`), the inspector's `token_pieces` and `turn_table`, `browse.token_info`.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import ContentSwitcher, Static

from app import messages as M
from app.widgets.token_view import TokenView
from workbench.chat import prompt_length
from workbench.data.browse import Browser, Encoding, RecordError
from workbench.data.record_view import TokenInfo, message_sections, short_location
from workbench.inspector import printable, turn_table


class ExampleView(Vertical):
    """The right side of the Data pane."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.example = None  # the workbench.data.collate.Example shown
        self.index: int | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="ex-head", markup=False)
        yield Static(id="ex-warnings", markup=False)
        with ContentSwitcher(initial="ex-single", id="ex-switch"):
            yield TokenView(id="ex-single")
            with Vertical(id="ex-pair"):
                yield Static(id="ex-prompt-head", classes="half-head", markup=False)
                yield TokenView(id="ex-prompt")
                with Horizontal(id="ex-halves"):
                    for name in ("chosen", "rejected"):
                        with Vertical(classes="half"):
                            yield Static(id=f"ex-{name}-head", classes="half-head", markup=False)
                            yield TokenView(id=f"ex-{name}")
            with VerticalScroll(id="ex-raw"):
                yield Static(id="ex-raw-text", markup=False)
        yield Static(id="ex-token", markup=False)
        with VerticalScroll(id="ex-turns-box"):  # a long chat's turns scroll, never cut
            yield Static(id="ex-turns")

    # ------------------------------------------------------------------ showing an example
    def message(self, text: str, error: bool = False) -> None:
        """No example: a line of text in its place (an error in red)."""
        self.example, self.index = None, None
        self._head(Text(text, style="bold red" if error else "dim"))
        for wid in ("#ex-warnings", "#ex-token", "#ex-turns"):
            self.query_one(wid, Static).update("")
        self.query_one("#ex-single", TokenView).clear()
        self.query_one("#ex-switch", ContentSwitcher).current = "ex-single"

    def show(self, browser: Browser, index: int, encoding: Encoding | None, raw: bool = False,
             boundaries: bool = True) -> None:
        keep = index == self.index  # the same record re-encoded (mode, max len): keep the cursor
        self.index = index
        try:
            record = browser.record(index)
            if raw or encoding is None:
                self._show_raw(browser, index, record)
                return
            ex = browser.example(index, encoding)
        except RecordError as e:
            self.message(M.DATA_RECORD_ERROR.format(error=short_location(str(e), browser.path)), error=True)
            self.index = index
            return
        self.example = ex
        tok = encoding.tok
        switch = self.query_one("#ex-switch", ContentSwitcher)
        if ex.kind == "preference":
            p = prompt_length(ex.chosen)
            counts = M.DATA_PAIR_COUNTS.format(chosen=len(ex.chosen), rejected=len(ex.rejected))
            self.query_one("#ex-prompt-head", Static).update(M.DATA_PROMPT_HEAD.format(n=p))
            self.query_one("#ex-prompt", TokenView).show(tok, ex.chosen, 0, p, boundaries, keep)
            for name, half in (("chosen", ex.chosen), ("rejected", ex.rejected)):
                self.query_one(f"#ex-{name}-head", Static).update(M.DATA_HALF_HEAD.format(
                    name=name, trained=half.num_trainable, response=len(half) - p))
                self.query_one(f"#ex-{name}", TokenView).show(tok, half, p, len(half), boundaries, keep)
            switch.current = "ex-pair"
            self.query_one("#ex-turns", Static).update("")
        else:
            r = ex.rendered
            counts = M.DATA_COUNTS.format(tokens=len(r), trained=r.num_trainable, masked=len(r) - r.num_trainable)
            self.query_one("#ex-single", TokenView).show(tok, r, 0, len(r), boundaries, keep)
            switch.current = "ex-single"
            table = turn_table(r)
            table.padding = (0, 1)  # the inspector's table, a little tighter: it fits 80 columns
            self.query_one("#ex-turns", Static).update(table)
        self._head(Text(M.DATA_HEAD.format(index=index, where=_where(browser, index),
                                           kind=ex.kind, counts=counts)))
        warnings = "\n".join(M.DATA_WARNING.format(warning=w) for w in ex.warnings)
        self.query_one("#ex-warnings", Static).update(Text(warnings, style="bold yellow"))
        self.query_one("#ex-warnings").display = bool(warnings)

    def _show_raw(self, browser: Browser, index: int, record: dict) -> None:
        self.example = None
        text = Text()
        for name, msgs in message_sections(record, browser.kind):
            if name and browser.kind == "preference":
                text.append(M.DATA_RAW_TITLE.format(name=name) + "\n", style="bold")
            for m in msgs:
                text.append(m["role"] + "\n", style="bold cyan" if m["role"] != "assistant" else "bold green")
                text.append(printable(m["content"]) + "\n\n")
        text.rstrip()
        self.query_one("#ex-raw-text", Static).update(text)
        self.query_one("#ex-switch", ContentSwitcher).current = "ex-raw"
        self._head(Text(M.DATA_HEAD.format(index=index, where=_where(browser, index),
                                           kind=browser.kind, counts="raw messages")))
        self.query_one("#ex-warnings").display = False
        self.query_one("#ex-turns", Static).update("")
        self.query_one("#ex-token", Static).update("")

    def _head(self, text: Text) -> None:
        self.query_one("#ex-head", Static).update(text)

    # ------------------------------------------------------------------ the token cursor
    def on_token_view_moved(self, event: TokenView.Moved) -> None:
        """Say which token is under the cursor: the focused view's, else the first view's."""
        event.stop()
        views = self.token_views()
        view = event.view
        if view.has_focus or (views and view is views[0] and not any(v.has_focus for v in views)):
            self.query_one("#ex-token", Static).update(token_line(event.info, len(view.rendered or ())))

    def on_descendant_focus(self, event) -> None:
        if isinstance(event.widget, TokenView) and event.widget.rendered is not None:
            self.query_one("#ex-token", Static).update(token_line(event.widget.info(), len(event.widget.rendered)))

    def token_views(self) -> list[TokenView]:
        """The token views on screen now (one, or prompt / chosen / rejected)."""
        current = self.query_one("#ex-switch", ContentSwitcher).current
        if current == "ex-pair":
            return [self.query_one(f"#ex-{n}", TokenView) for n in ("prompt", "chosen", "rejected")]
        return [self.query_one("#ex-single", TokenView)] if current == "ex-single" else []


def _where(browser: Browser, index: int) -> str:
    """file:line of a record, without the folders the path field shows (a long path would fill the head)."""
    return printable(short_location(browser.locate(index), browser.path))


def token_line(info: TokenInfo | None, n: int) -> Text:
    """The cursor's token: position, id, text, role and part of its message, label."""
    if info is None:
        return Text(M.DATA_NO_TOKENS, style="dim")
    label = M.DATA_TOKEN_TRAINED.format(label=info.label) if info.trained else M.DATA_TOKEN_MASKED
    text = Text(M.DATA_TOKEN.format(pos=info.index, n=n, id=info.id, text=info.shown, role=info.role,
                                    part=info.part, label=label))
    text.stylize("bold green" if info.trained else "dim", len(text) - len(label))
    return text
