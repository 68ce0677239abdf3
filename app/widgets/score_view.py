"""ScoreView: a prompt and two responses -> each one's reward-model score and the Bradley-Terry
probability that the first is preferred, sigmoid(raw1 - raw2), the quantity the reward model was trained on.

Each response is scored as `workbench eval --rm` scores a finished answer (workbench.eval.playground.
score_responses): the ChatML turn with its <|im_end|> and newline; scores are normalised by the model's
reward stats when it has them, as eval and PPO report them. The reward model is the pane's RM field.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Input, Static

from app import messages as M
from app.widgets.play_view import PlayView

BAR = 40


class ScoreView(PlayView):
    result: dict | None = None
    def compose(self) -> ComposeResult:
        yield Input(id="score-prompt", compact=True, placeholder=M.SCORE_PROMPT_PLACEHOLDER)
        yield Input(id="score-a", compact=True, placeholder=M.SCORE_RESPONSE_PLACEHOLDER.format(n=1))
        yield Input(id="score-b", compact=True, placeholder=M.SCORE_RESPONSE_PLACEHOLDER.format(n=2))
        yield Static(M.SCORE_EMPTY, classes="play-status")
        yield Static(id="score-result")

    def focus_default(self):
        return self.query_one("#score-prompt", Input)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.ask()

    def ask(self) -> None:
        from workbench.eval.playground import score_responses

        prompt = self.query_one("#score-prompt", Input).value
        responses = [self.query_one(f"#score-{k}", Input).value for k in "ab"]
        spec, cache = self.pane.rm_spec, self.pane.cache
        if not spec:
            self._clear()
            self.status(M.PLAY_NO_RM, error=True)
            return
        request = self.new_request()
        self._clear()
        self.status(M.PLAY_LOADING.format(spec=spec))

        def job(cancelled):
            rm = cache.reward_model(spec)
            result = score_responses(rm, prompt, responses)
            result["stats"] = (rm.scorer.mean, rm.scorer.std)
            self.send(request, "done", data=result)

        self.start(request, job)

    def _clear(self) -> None:
        self.result = None
        self.query_one("#score-result", Static).update("")  # never the scores of other inputs

    def failed(self, error: str) -> None:
        self._clear()

    def stopped(self) -> None:
        if self.result is None:
            self.status("")

    def output(self, message: M.PlayOutput) -> None:
        r = self.result = message.data
        lines = Text()
        for n, (score, raw) in enumerate(zip(r["scores"], r["raw"]), 1):
            lines.append(M.SCORE_ROW.format(n=n, score=score, raw=raw) + "\n")
        p = r["p_first"]
        filled = round(p * BAR)
        lines.append("\n" + M.SCORE_PREFER.format(p=p) + "\n")
        lines.append("1 " + "█" * filled, style="green")
        lines.append("█" * (BAR - filled), style="red")
        lines.append(" 2\n")
        if r["normalised"]:
            lines.append(M.SCORE_NORMALISED.format(mean=r["stats"][0], std=r["stats"][1]), style="dim")
        self.query_one("#score-result", Static).update(lines)
        self.status("")
