"""Playground pane: talk to a checkpoint, compare checkpoints side by side, probe the next token, score answers.

    PlaygroundPane("runs/sft")     # the model field starts on that run (its latest checkpoint)

A bar with the model and the reward model, one row of sampling settings, and four tabs, one widget each
(app/widgets/chat_view.py, compare_view.py, probe_view.py, score_view.py). What they do lives in
workbench/eval/playground.py and workbench/eval/probe.py; the views only ask, in thread workers, and show.
The loaded checkpoints are shared by the four (a ModelCache), so switching tabs never reloads a model.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, Input, Label, TabbedContent, TabPane

from app import messages as M
from app.widgets.chat_view import ChatView
from app.widgets.compare_view import CompareView
from app.widgets.path_input import PathSuggester
from app.widgets.probe_view import ProbeView
from app.widgets.score_view import ScoreView
from workbench.errors import WorkbenchError
from workbench.eval.playground import ModelCache


class PlaygroundPane(Vertical):
    BINDINGS = [
        Binding("ctrl+l", "clear_chat", "Clear", show=False),
        Binding("escape", "stop", "Stop", show=False),
    ]

    def __init__(self, checkpoint: str | None = None, pipeline: str | None = None, **kw):
        kw["classes"] = " ".join(filter(None, ["pane", kw.get("classes")]))
        super().__init__(**kw)
        self.checkpoint = checkpoint or ""
        self.pipeline = pipeline  # a pipeline root: Compare starts on its rows, Score on its reward model
        self.cache = ModelCache()

    def compose(self) -> ComposeResult:
        with Horizontal(id="play-bar"):
            yield Label(M.PLAY_CKPT, classes="play-label")
            yield Input(self.checkpoint or self._pipeline_model(), id="play-ckpt", compact=True, placeholder=M.PLAY_CKPT_PLACEHOLDER,
                        suggester=PathSuggester())
            yield Label(M.PLAY_RM, classes="play-label")
            yield Input(self._pipeline_rm(), id="play-rm", compact=True, placeholder=M.PLAY_RM_PLACEHOLDER,
                        suggester=PathSuggester())
        with Horizontal(id="play-settings"):
            for key, name, default in M.PLAY_SETTINGS:
                yield Label(name, classes="play-label")
                yield Input(default, id=f"play-{key}", compact=True, classes="play-number",
                            type="integer" if key in ("top_k", "max_new_tokens") else "number")
            yield Checkbox(M.PLAY_GREEDY, id="play-greedy", compact=True)
        with TabbedContent(id="play-modes"):
            for mode, title in M.PLAY_MODES:
                with TabPane(title, id=f"play-{mode}"):
                    view = {"chat": ChatView, "compare": CompareView, "probe": ProbeView, "score": ScoreView}[mode]
                    yield view(id=f"{mode}-view", models=self.pipeline or "") if mode == "compare" else view(id=f"{mode}-view")

    def _pipeline_model(self) -> str:
        """The pipeline's SFT row (else its last), when the pane opened on a pipeline root."""
        if not self.pipeline:
            return ""
        from workbench.eval.playground import pipeline_rows

        try:
            rows = pipeline_rows(Path(self.pipeline)) or []
        except WorkbenchError:
            return ""
        return next((spec for label, spec in rows if label == "SFT"), rows[-1][1] if rows else "")

    def _pipeline_rm(self) -> str:
        """The pipeline's reward model (the first rm stage of its recipe), when the pane opened on one."""
        if not self.pipeline:
            return ""
        from workbench.eval.playground import pipeline_reward_model

        return pipeline_reward_model(self.pipeline) or ""

    def focus_default(self):
        return self.active_view().focus_default()

    def commands(self) -> list[tuple[str, str, object]]:
        return [(title, help_text, lambda a=action: self.run_action(a)) for action, title, help_text in M.PLAY_COMMANDS]

    # ------------------------------------------------------------------ what the views ask for
    def active_view(self):
        mode = self.query_one("#play-modes", TabbedContent).active.removeprefix("play-") or "chat"
        return self.query_one(f"#{mode}-view")

    @property
    def model_spec(self) -> str:
        return self.query_one("#play-ckpt", Input).value.strip()

    @property
    def rm_spec(self) -> str:
        return self.query_one("#play-rm", Input).value.strip()

    def sampling(self):
        """The settings row as a SamplingConfig (WorkbenchError naming the field that is wrong)."""
        from workbench.model.generate import SamplingConfig

        values = {}
        for key, name, default in M.PLAY_SETTINGS:
            text = self.query_one(f"#play-{key}", Input).value.strip() or default
            try:
                values[key] = int(text) if key in ("top_k", "max_new_tokens") else float(text)
            except ValueError:
                raise WorkbenchError(M.PLAY_NUMBER.format(name=name, value=text)) from None
        greedy = self.query_one("#play-greedy", Checkbox).value
        return SamplingConfig(greedy=greedy, **values).validate()

    def open(self, spec: str, reward: bool = False) -> None:
        """A run from the Runs pane: the model to talk to (Chat), or the reward model (Score)."""
        self.query_one("#play-rm" if reward else "#play-ckpt", Input).value = spec
        self.action_mode("score" if reward else "chat")

    # ------------------------------------------------------------------ actions
    def action_mode(self, mode: str) -> None:
        self.app.action_pane("playground")
        tabs = self.query_one("#play-modes", TabbedContent)
        tabs.active = f"play-{mode}"
        # Again after the refresh: tabs mounted a moment ago may still be activating their first one.
        self.call_after_refresh(setattr, tabs, "active", f"play-{mode}")
        self.call_after_refresh(self._focus_view)

    def _focus_view(self) -> None:
        # Only while this pane's tab is shown: focusing a widget of a hidden tab would switch to it.
        if self.app.query_one("#panes", TabbedContent).active == "playground":
            self.active_view().focus_default().focus()

    def action_clear_chat(self) -> None:
        self.query_one(ChatView).clear()

    def action_stop(self) -> None:
        self.active_view().stop_or_leave()

    def action_stop_request(self) -> None:
        self.active_view().stop()

    def action_tokens(self) -> None:
        self.action_mode("chat")
        self.query_one(ChatView).action_tokens()

    def action_random_prompt(self) -> None:
        self.action_mode("compare")
        self.query_one(CompareView).action_random_prompt()

    @on(TabbedContent.TabActivated, "#play-modes")
    def _mode_shown(self, event: TabbedContent.TabActivated) -> None:
        event.stop()  # the App's own handler is for the outer tabs
        self.call_after_refresh(self._focus_view)

    @on(Input.Changed, "#play-ckpt")
    def _model_changed(self) -> None:
        self.query_one(ProbeView).model_changed()  # the bars are the model's: probe again with the new one

    @on(Input.Submitted, "#play-ckpt, #play-rm")
    def _picked(self, event: Input.Submitted) -> None:
        self._focus_view()
