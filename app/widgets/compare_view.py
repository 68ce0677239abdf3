"""CompareView: one prompt to 2-4 checkpoints, answers side by side, each with its length, mean log-prob,
reward-model score and, when the prompt has a checkable answer, ✓ or ✗.

The models field takes run dirs (space-separated) or a pipeline root, which stands for its report rows
(base, SFT, DPO, PPO). The expected answer is the one typed, else the prompt's own when it is one of the
sample world's questions (ctrl+r picks a held-out one). Every checkpoint answers with the same sampling
settings and the same seed, one after the other, streamed into its column (workbench.eval.playground.compare).
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Static

from app import messages as M
from app.widgets.play_view import PlayView

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
HELD_OUT = ("eval_facts.jsonl", "eval_lore.jsonl", "eval_facts_alt.jsonl", "eval_lore_alt.jsonl")
WIDE = 120  # at least this wide: one column per model; narrower, two


def stats_line(answer: dict) -> Text:
    if answer.get("error"):
        return Text(M.PLAY_ERROR.format(error=answer["error"]), style="red")
    logp = "–" if answer["mean_logprob"] is None else f"{answer['mean_logprob']:.2f}"
    rm = "–" if answer["rm_score"] is None else f"{answer['rm_score']:+.2f}"
    correct = {True: " · ✓", False: " · ✗", None: ""}[answer["correct"]]
    line = Text(M.COMPARE_STATS.format(n=answer["length"], logp=logp, rm=rm, correct=correct), style="dim")
    if answer["correct"] is not None:
        line.stylize("green" if answer["correct"] else "red", len(line) - 1)
    if answer.get("rm_error"):
        line.append(f"\nRM: {answer['rm_error']}", style="yellow")  # the answer stands; its score is missing
    return line


class CompareView(PlayView):
    BINDINGS = [Binding("ctrl+r", "random_prompt", "Held-out Q"), Binding("escape", "stop", "Stop", show=False)]
    _known: dict | None = None  # the sample world's questions and answers, read once

    def __init__(self, models: str = "", **kw):
        super().__init__(**kw)
        self.models = models
        self.answers: list[dict | None] = []
        self.texts: list[str] = []
        self.checked: dict | None = None  # the task the answers are checked against
        self.left_out: str | None = None  # what a pipeline root's rows past the limit left out
        self.sampling = None  # the settings of the request on screen
        self.picked: tuple[str, str] | None = None  # (prompt, answer) ctrl+r filled in
        self.busy = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="play-row"):
            yield Label(M.COMPARE_CKPTS, classes="play-label")
            yield Input(self.models, id="compare-ckpts", compact=True, placeholder=M.COMPARE_CKPTS_PLACEHOLDER)
            yield Label(M.COMPARE_ANSWER, classes="play-label")
            yield Input(id="compare-answer", compact=True, placeholder=M.COMPARE_ANSWER_PLACEHOLDER)
        yield Input(id="compare-prompt", compact=True, placeholder=M.COMPARE_PROMPT_PLACEHOLDER)
        yield Static(M.COMPARE_EMPTY, classes="play-status")
        with VerticalScroll(id="compare-scroll"):
            yield Grid(id="compare-grid")

    def focus_default(self):
        return self.query_one("#compare-prompt", Input)

    def on_resize(self) -> None:
        self._columns()

    def _columns(self) -> None:
        n = max(len(self.answers), 1)
        self.query_one("#compare-grid", Grid).styles.grid_size_columns = n if self.size.width >= WIDE else min(n, 2)

    @classmethod
    def known(cls) -> dict:
        if cls._known is None:
            from workbench.eval.playground import known_tasks

            cls._known = known_tasks(sorted(SAMPLE.glob("*.jsonl")))
        return cls._known

    def action_random_prompt(self) -> None:
        from workbench.eval.playground import known_tasks

        held = known_tasks([SAMPLE / f for f in HELD_OUT])
        if not held:
            return
        prompt, task = random.choice(sorted(held.items()))
        self.query_one("#compare-prompt", Input).value = prompt
        self.query_one("#compare-answer", Input).value = str(task["answer"])
        self.picked = (prompt, str(task["answer"]))
        self.query_one("#compare-prompt", Input).focus()

    def action_stop(self) -> None:
        self.stop_or_leave()

    def stopped(self) -> None:
        if self.busy:
            self.busy = False
            self._unfinished()
            self.status(M.CHAT_STOPPED)

    def failed(self, error: str) -> None:
        self.busy = False
        self._unfinished()

    def _unfinished(self) -> None:
        """Cells still waiting (or streaming) when a request ends early say so."""
        for i, answer in enumerate(self.answers):
            if answer is None:
                self._show(i, self.texts[i] or M.COMPARE_NOT_ASKED)

    @on(Input.Submitted, "#compare-prompt, #compare-ckpts, #compare-answer")
    def _submitted(self, event: Input.Submitted) -> None:
        self.ask()

    def ask(self) -> None:
        from workbench.errors import WorkbenchError
        from workbench.eval.playground import answer_task, compare, expand_specs

        prompt = self.query_one("#compare-prompt", Input).value
        answer_box = self.query_one("#compare-answer", Input)
        if self.picked and prompt != self.picked[0] and answer_box.value == self.picked[1]:
            answer_box.value = ""  # the held-out question's answer does not belong to an edited prompt
        self.picked = None if prompt != (self.picked or ("",))[0] else self.picked
        if not prompt.strip():
            self.focus_default().focus()
            return
        try:
            ckpts = self.query_one("#compare-ckpts", Input).value.strip() or self.pane.model_spec
            specs, note = expand_specs(ckpts)
            sampling = self.pane.sampling()
        except WorkbenchError as e:
            self.status(M.PLAY_ERROR.format(error=e), error=True)
            return
        if sampling.seed is None:  # one seed for every model (so a difference is the model's), shown after
            sampling = replace(sampling, seed=random.randrange(2**31))
        self.sampling = sampling
        task = answer_task(self.query_one("#compare-answer", Input).value, prompt, self.known())
        rm, cache = self.pane.rm_spec, self.pane.cache
        request = self.new_request()
        self._cells([label or Path(spec).name for label, spec in specs])
        self.busy = True
        self.left_out = note
        self.checked = task
        self.status(M.COMPARE_RUNNING.format(i=1, n=len(specs)))

        def job(cancelled):
            last = [time.monotonic()]
            pending: dict[int, list[str]] = {}

            def piece(i, text):
                pending.setdefault(i, []).append(text)
                if time.monotonic() - last[0] >= 0.03:
                    for j, parts in pending.items():
                        self.send(request, "piece", j, "".join(parts))
                    pending.clear()
                    last[0] = time.monotonic()

            def answer(i, result):
                for j, parts in pending.items():
                    self.send(request, "piece", j, "".join(parts))
                pending.clear()
                self.send(request, "answer", i, data=result)

            results = compare(cache, specs, prompt, sampling, rm=rm or None, task=task, cancelled=cancelled,
                              on_piece=piece, on_answer=answer)
            self.send(request, "done", len(results))

        self.start(request, job)

    def _cells(self, labels: list[str]) -> None:
        grid = self.query_one("#compare-grid", Grid)
        grid.remove_children()
        self.answers, self.texts = [None] * len(labels), [""] * len(labels)
        cells = []
        for i, name in enumerate(labels):
            cells.append(Vertical(Static(Text(name, style="bold"), classes="compare-title"),
                                  Static(M.COMPARE_WAITING, classes="compare-text", id=f"compare-text-{i}", markup=False),
                                  Static(classes="compare-stats", id=f"compare-stats-{i}"),
                                  classes="compare-cell"))
        grid.mount_all(cells)
        self._columns()

    def output(self, message: M.PlayOutput) -> None:
        i = message.index
        if message.kind == "piece":
            self.texts[i] += message.text
            self._show(i, self.texts[i] + "▌")
        elif message.kind == "answer":
            self.answers[i] = message.data
            self._show(i, message.data.get("text", ""))
            self._title(i, message.data["label"])
            self._stats(i, stats_line(message.data))
            if i + 1 < len(self.answers):
                self.status(M.COMPARE_RUNNING.format(i=i + 2, n=len(self.answers)))
        elif message.kind == "done":
            self.busy = False
            task = M.COMPARE_TASK.format(answer=self.checked["answer"]) if self.checked else M.COMPARE_NO_TASK
            seed = " · greedy" if self.sampling.is_greedy else f" · seed {self.sampling.seed}"
            failed = sum(1 for a in self.answers if a and a.get("error"))
            self.status(M.COMPARE_DONE.format(n=message.index - failed, seed=seed, task=task,
                                              failed=M.COMPARE_FAILED.format(n=failed) if failed else "")
                        + (f" · {self.left_out}" if self.left_out else ""))

    def _show(self, i: int, text: str) -> None:
        try:
            self.query_one(f"#compare-text-{i}", Static).update(text)
        except Exception:  # noqa: BLE001 — the cells are being replaced by a newer request
            pass

    def _title(self, i: int, label: str) -> None:
        try:
            self.query(".compare-title")[i].update(Text(label, style="bold"))
        except Exception:  # noqa: BLE001
            pass

    def _stats(self, i: int, line: Text) -> None:
        try:
            self.query_one(f"#compare-stats-{i}", Static).update(line)
        except Exception:  # noqa: BLE001
            pass
