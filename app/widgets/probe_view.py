"""ProbeView: the model's top-k next tokens as a bar chart, updated as you type.

Each change of the context waits DEBOUNCE_S of quiet, then asks a thread worker (the key that was typed is
on screen at once; a probe never blocks typing); only the newest request's answer is drawn. Plain mode:
the text as it is (what a base model continues). Chat mode: the text as a user turn, the assistant's
generation prompt and the answer so far. Enter or a click on a token appends it and probes again. The
numbers are workbench.eval.probe.probe_model's: the same as `workbench probe`.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Checkbox, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from app import messages as M
from app.widgets.play_view import PlayView

DEBOUNCE_S = 0.12
BAR = 30  # cells of a bar at probability 1


def shown(token: str) -> str:
    return repr(token)[1:-1].replace(" ", "␣") or "∅"


def bar_row(item: dict, width: int) -> Text:
    cells = item["prob"] * BAR
    bar = "█" * int(cells) + " ▏▎▍▌▋▊▉"[int((cells % 1) * 8)].strip()
    return Text.assemble((f"{shown(item['token'])[:width]:<{width}} ", "bold"), (f"{bar:<{BAR + 1}}", "green"),
                         f" {item['prob']:7.2%}", (f"  id {item['id']}", "dim"))


class ProbeView(PlayView):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.result: dict | None = None
        self._timer = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="play-row"):
            yield Input(id="probe-text", compact=True, placeholder=M.PROBE_TEXT_PLACEHOLDER)
            yield Checkbox(M.PROBE_CHAT, id="probe-chat", compact=True)
            yield Label(M.PROBE_TOPK, classes="play-label")
            yield Input("10", id="probe-k", compact=True, type="integer", classes="play-number")
        yield Input(id="probe-answer", compact=True, placeholder=M.PROBE_ANSWER_PLACEHOLDER)
        yield Static(M.PROBE_EMPTY, classes="play-status")
        yield OptionList(id="probe-bars")

    def focus_default(self):
        return self.query_one("#probe-text", Input)

    @on(Input.Changed, "#probe-text, #probe-answer, #probe-k")
    @on(Checkbox.Changed, "#probe-chat")
    def _changed(self, event) -> None:
        if event is not None and event.control.id == "probe-chat":
            self.set_class(event.value, "-chat")  # the answer-so-far box (shown by the CSS)
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self.ask)

    def ask(self) -> None:
        from workbench.errors import WorkbenchError
        from workbench.eval.probe import probe_model

        self._timer = None
        text = self.query_one("#probe-text", Input).value
        chat = self.query_one("#probe-chat", Checkbox).value
        answer = self.query_one("#probe-answer", Input).value if chat else ""
        spec = self.pane.model_spec
        if not spec:
            self.status(M.PLAY_NO_CKPT, error=True)
            return
        if not text and not chat:
            self.result = None
            self.query_one(OptionList).clear_options()
            self.status(M.PROBE_EMPTY)
            return
        try:
            k = int(self.query_one("#probe-k", Input).value or 10)
            if k < 1:
                raise ValueError
        except ValueError:
            self.status(M.PLAY_ERROR.format(error=WorkbenchError("top must be a whole number ≥ 1")), error=True)
            return
        request = self.new_request()
        cache = self.pane.cache

        def job(cancelled):
            lm = cache.language_model(spec)
            if cancelled():
                return
            t = time.perf_counter()
            result = probe_model(lm.model, lm.tok, text, top_k=k, chat=chat, answer=answer)
            result["ms"] = 1000 * (time.perf_counter() - t)
            result["tok"] = lm.tok
            self.send(request, "done", data=result)

        self.start(request, job)

    def failed(self, error: str) -> None:
        self.result = None
        self.query_one(OptionList).clear_options()  # not the bars of another model or text

    def model_changed(self) -> None:
        if self.query_one("#probe-text", Input).value or self.query_one("#probe-chat", Checkbox).value:
            self._changed(None)

    def output(self, message: M.PlayOutput) -> None:
        self.result = r = message.data
        bars = self.query_one(OptionList)
        width = min(max((len(shown(t["token"])) for t in r["top"]), default=4), 16)
        rows = [bar_row(t, width) for t in r["top"]]
        if bars.option_count == len(rows):  # the usual case while typing: new prompts in the same rows
            for i, row in enumerate(rows):
                bars.replace_option_prompt_at_index(i, row)
        else:
            highlighted = bars.highlighted
            bars.clear_options()
            bars.add_options([Option(row, id=str(i)) for i, row in enumerate(rows)])
            if highlighted is not None and bars.has_focus:
                bars.highlighted = min(highlighted, len(rows) - 1)
        mass = sum(t["prob"] for t in r["top"])
        self.status(M.PROBE_HEAD.format(n=r["prompt_tokens"], k=len(r["top"]), mass=mass, ms=r["ms"]))

    @on(OptionList.OptionSelected, "#probe-bars")
    def _append(self, event: OptionList.OptionSelected) -> None:
        if self.result is None:
            return
        item = self.result["top"][int(event.option.id)]
        token = item["token"]
        tok = self.result["tok"]
        if item["id"] in (tok.im_end_id, tok.eot_id):
            self.status(M.PROBE_ENDS.format(token=token))
            return
        if item["id"] in tok.special_ids:
            self.status(M.PROBE_SPECIAL.format(token=token), error=True)
            return
        if "\ufffd" in token:  # a byte of a character split across tokens: no text to type for it
            self.status(M.PROBE_PARTIAL, error=True)
            return
        box = self.query_one("#probe-answer" if self.query_one("#probe-chat", Checkbox).value else "#probe-text", Input)
        box.value += token
        box.cursor_position = len(box.value)
