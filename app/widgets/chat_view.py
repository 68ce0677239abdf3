"""ChatView: a multi-turn chat with a checkpoint, streamed token by token, with the history editable.

The history is a list of {role, content}; each request renders it with the ChatML template plus the
assistant's generation prompt (workbench.eval.playground.chat_render, the trainers' own rendering) and
streams the reply until `<|im_end|>` or max new tokens. In the history list: `e` (or Enter) edits a turn
— a user turn edited is answered again from there, an assistant turn is replaced (put words in the
model's mouth) — `delete` removes one. ctrl+t shows what the model sees, token by token, in the Data
pane's token view (assistant turns green: what SFT would train on).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Label, ListItem, ListView, Static

from app import messages as M
from app.widgets.play_view import PlayView
from app.widgets.token_view import TokenView

FLUSH_S = 0.03  # pieces are sent to the screen at most this often (one message per token would flood it)


def turn_text(role: str, content: str, streaming: bool = False) -> Text:
    style = {"user": "bold", "assistant": "bold green", "system": "bold magenta"}.get(role, "bold")
    return Text.assemble((f"{M.CHAT_ROLE.get(role, role)}: ", style), content, ("▌" if streaming else "", "dim"))


class HistoryList(ListView):
    BINDINGS = [Binding("e", "edit", "Edit"), Binding("delete,d", "remove", "Remove")]

    def action_edit(self) -> None:
        if self.index is not None:
            self.parent.edit(self.index)

    def action_remove(self) -> None:
        if self.index is not None:
            self.parent.remove_turn(self.index)


class ChatView(PlayView):
    BINDINGS = [
        Binding("ctrl+t", "tokens", M.CHAT_BINDINGS["tokens"]),
        Binding("ctrl+l", "clear", M.CHAT_BINDINGS["clear"]),
        Binding("escape", "stop", M.CHAT_BINDINGS["stop"], show=False),
        Binding("up", "history", "History", show=False),  # from the message box (a list handles its own)
    ]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.history: list[dict] = []
        self.editing: int | None = None
        self.answer: str | None = None  # the reply being streamed
        self.tokens_in_answer = 0

    def compose(self) -> ComposeResult:
        with Horizontal(classes="play-row"):
            yield Label(M.CHAT_SYSTEM, classes="play-label")
            yield Input(id="chat-system", compact=True, placeholder=M.CHAT_SYSTEM_PLACEHOLDER)
        yield HistoryList(id="chat-log")
        yield Static(M.CHAT_EMPTY, id="chat-empty")
        yield Static(id="chat-tokens-title")
        yield TokenView(id="chat-tokens")
        yield Static(classes="play-status")
        yield Input(id="chat-input", compact=True, placeholder=M.CHAT_INPUT_PLACEHOLDER)

    def focus_default(self):
        return self.query_one("#chat-input", Input)

    # ------------------------------------------------------------------ the history on screen
    def _draw(self) -> None:
        if not self.is_attached:
            return  # the app is closing as an answer lands
        log = self.query_one(HistoryList)
        log.clear()
        log.extend(ListItem(Static(turn_text(t["role"], t["content"]), markup=False)) for t in self.history)
        if self.answer is not None:
            log.append(ListItem(Static(turn_text("assistant", self.answer, streaming=True), id="chat-answer")))
        self.query_one("#chat-empty").display = not self.history and self.answer is None
        self.call_after_refresh(log.scroll_end, animate=False)
        if self.has_class("-tokens"):
            self.show_tokens()

    def clear(self) -> None:
        self.stop()
        self.history, self.editing = [], None
        self.query_one("#chat-input", Input).value = ""
        self.status()
        self._draw()

    def edit(self, index: int) -> None:
        if index >= len(self.history):
            return
        self._drop_answer()  # the answer in flight was to a history that is about to change
        self.editing = index
        turn = self.history[index]
        box = self.query_one("#chat-input", Input)
        box.value = turn["content"]
        box.focus()
        self.status(M.CHAT_EDITING.format(n=index + 1, role=M.CHAT_ROLE.get(turn["role"], turn["role"]),
                                          regen=M.CHAT_REGEN if turn["role"] == "user" else ""))

    def remove_turn(self, index: int) -> None:
        if index < len(self.history):
            self._drop_answer()
            del self.history[index]
            self.editing = None
            self._draw()

    # ------------------------------------------------------------------ asking
    @on(Input.Submitted, "#chat-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value
        if not text.strip():
            return
        event.input.value = ""
        if self.answer is not None:
            self.stop()  # a new message stops the answer in flight (keeping what it said)
        if self.editing is not None:
            index, self.editing = self.editing, None
            if index < len(self.history):
                self.history[index] = {**self.history[index], "content": text}
                if self.history[index]["role"] != "user":
                    self.status()
                    self._draw()
                    return
                del self.history[index + 1:]
        else:
            self.history.append({"role": "user", "content": text})
        self.ask()

    def ask(self) -> None:
        from workbench.errors import WorkbenchError
        from workbench.eval.playground import ReplyStream

        spec = self.pane.model_spec
        if not spec:
            self.failed(M.PLAY_NO_CKPT)
            return
        try:
            sampling = self.pane.sampling()
        except WorkbenchError as e:
            self.failed(M.PLAY_ERROR.format(error=e))
            return
        history, system = list(self.history), self.query_one("#chat-system", Input).value.strip() or None
        request = self.new_request()
        self.answer, self.tokens_in_answer = "", 0
        self.status(M.PLAY_LOADING.format(spec=spec))
        self._draw()
        cache = self.pane.cache

        def job(cancelled):
            lm = cache.language_model(spec)
            ids, dropped = lm.fit_chat(history, system, sampling.max_new_tokens)
            stream = ReplyStream(lm, ids, sampling, cancelled=cancelled)
            pending, last = [], time.monotonic()
            for piece in stream:
                pending.append(piece)
                if time.monotonic() - last >= FLUSH_S:
                    self.send(request, "piece", len(stream.reply.tokens), "".join(pending))
                    pending, last = [], time.monotonic()
            r = stream.reply
            self.send(request, "done", len(r.tokens), "".join(pending),
                      {"finished": r.finished, "text": r.text, "dropped": dropped,
                       "stop": lm.tok.token_str(r.tokens[-1]) if r.finished else None})

        self.start(request, job)

    def output(self, message: M.PlayOutput) -> None:
        if self.answer is None:
            return
        self.answer += message.text
        self.tokens_in_answer = message.index
        if message.kind == "piece":
            self.status(M.CHAT_STREAMING.format(n=message.index))
            try:
                self.query_one("#chat-answer", Static).update(turn_text("assistant", self.answer, streaming=True))
                self.query_one(HistoryList).scroll_end(animate=False)
            except Exception:  # noqa: BLE001 — the list is being redrawn: the next piece shows it
                pass
            return
        how = (M.CHAT_ENDED.format(token=message.data["stop"]) if message.data["finished"] else M.CHAT_CUT)
        if message.data["dropped"]:
            how += M.CHAT_DROPPED.format(n=message.data["dropped"])
        self._finish(message.data["text"], M.CHAT_DONE.format(n=message.index, how=how))

    def _finish(self, text: str, status: str) -> None:
        if text.strip():
            self.history.append({"role": "assistant", "content": text})
        self.answer = None
        self.status(status)
        self._draw()

    def _drop_answer(self) -> None:
        """Forget the answer in flight (its worker stops at its next token)."""
        if self.answer is not None:
            self.request += 1
            self.answer = None
            self.status(M.CHAT_STOPPED)

    def stopped(self) -> None:
        if self.answer is not None:
            self._finish(self.answer, M.CHAT_DONE.format(n=self.tokens_in_answer, how=M.CHAT_STOPPED))

    def failed(self, error: str) -> None:
        self.answer = None
        box = self.query_one("#chat-input", Input)
        if self.history and self.history[-1]["role"] == "user" and not box.value:
            box.value = self.history.pop()["content"]  # back in the box: fix the model or settings, Enter again
        self._draw()
        self.status(error, error=True)

    def action_stop(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.query_one("#chat-input", Input).value = ""
            self.status()
            return
        self.stop_or_leave()

    def action_history(self) -> None:
        log = self.query_one(HistoryList)
        if self.history:
            log.focus()
            log.index = len(self.history) - 1

    def action_clear(self) -> None:
        self.clear()

    # ------------------------------------------------------------------ the rendered prompt
    def action_tokens(self) -> None:
        self.toggle_class("-tokens")
        if self.has_class("-tokens"):
            self.show_tokens()

    def show_tokens(self) -> None:
        spec = self.pane.model_spec
        if not spec:
            self.status(M.PLAY_NO_CKPT, error=True)
            return
        history, system = list(self.history), self.query_one("#chat-system", Input).value.strip() or None
        try:
            max_new = self.pane.sampling().max_new_tokens
        except Exception:  # noqa: BLE001 — a bad settings field: the next ask says which
            max_new = 0
        self._render_tokens(spec, history, system, max_new, self.pane.cache)

    @work(thread=True, group="play-tokens", exclusive=True)
    def _render_tokens(self, spec, history, system, max_new, cache) -> None:
        from workbench.errors import WorkbenchError
        from workbench.eval.playground import chat_render

        try:
            try:
                lm = cache.language_model(spec)
                history = history or [{"role": "user", "content": ""}]
                _, dropped = lm.fit_chat(history, system, max_new)  # what the next answer will really read
                rendered = chat_render(lm.tok, history[dropped:], system)
                self.app.call_from_thread(self._tokens_ready, lm.tok, rendered, dropped)
            except WorkbenchError as e:
                self.app.call_from_thread(self.status, M.PLAY_ERROR.format(error=e), True)
        except RuntimeError:  # the app is closing
            pass

    def _tokens_ready(self, tok, rendered, dropped: int = 0) -> None:
        title = M.CHAT_PROMPT_TITLE.format(n=len(rendered)) + (M.CHAT_DROPPED.format(n=dropped) if dropped else "")
        self.query_one("#chat-tokens-title", Static).update(title)
        self.query_one(TokenView).show(tok, rendered)
