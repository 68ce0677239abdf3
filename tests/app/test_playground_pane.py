"""The Playground pane against the real app, on models whose answers are known (tests/workbench/eval/
conftest.py: `scripted` says a fixed chain of tokens then <|im_end|>): chat streams and stops, the history
is edited and re-rendered, compare shows N answers with their checks and RM scores, probe matches
`workbench probe`, score matches `workbench eval`'s RM score, wrong checkpoint kinds give messages."""

from __future__ import annotations

import json
import math
import shutil
import time

import pytest
from typer.testing import CliRunner

from app import messages as M
from app.app import Launch, WorkbenchApp
from tests.app.conftest import reward_checkpoint


def app_on(ckpt="") -> WorkbenchApp:
    return WorkbenchApp(Launch(pane="playground", checkpoint=str(ckpt) if ckpt else None))


async def ready(pilot, rm=""):
    await pilot.pause()
    if rm:
        pilot.app.query_one("#play-rm").value = str(rm)
    return pilot.app.query_one("#playground-pane")


async def wait_for(pilot, cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(0.03)
        if cond():
            return
    raise AssertionError(f"timed out waiting for {cond}")


def status(view) -> str:
    return str(view.query_one(".play-status").render())


def chain_of(tok, text: str) -> list[int]:
    return tok.encode(text)


async def mode(pilot, pane, name):
    pane.action_mode(name)
    await pilot.pause()
    return pane.query_one(f"#{name}-view")


# ------------------------------------------------------------------ chat
async def test_chat_streams_tokens_and_stops_at_im_end(scripted, byte_tok, monkeypatch):
    import app.widgets.chat_view as chat_view

    monkeypatch.setattr(chat_view, "FLUSH_S", 0.0)  # every token its own message, so the stream is visible
    ckpt = scripted(chain_of(byte_tok, "Bright sun"))
    pieces = []
    async with app_on(ckpt).run_test(size=(100, 30)) as pilot:
        pane = await ready(pilot)
        view = pane.query_one("#chat-view")
        real = view.output
        monkeypatch.setattr(view, "output", lambda m: (pieces.append((m.kind, m.text)), real(m)))
        await pilot.press(*"Hi", "enter")
        await wait_for(pilot, lambda: view.answer is None and len(view.history) == 2)
        assert view.history == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Bright sun"}]
        streamed = [t for k, t in pieces if k == "piece"]
        assert len(streamed) >= 5 and "".join(streamed) + pieces[-1][1] == "Bright sun"  # token by token
        assert status(view) == M.CHAT_DONE.format(n=11, how=M.CHAT_ENDED.format(token="<|im_end|>"))  # 10 + 1
        shown = [str(s.render()) for s in view.query("#chat-log Static")]
        assert shown == ["you: Hi", "model: Bright sun"]


async def test_chat_is_cut_at_max_new_tokens_and_renders_the_history(scripted, byte_tok):
    from workbench.eval.playground import chat_render

    ckpt = scripted(chain_of(byte_tok, "abcdef"))
    async with app_on(ckpt).run_test(size=(100, 30)) as pilot:
        pane = await ready(pilot)
        pane.query_one("#play-max_new_tokens").value = "3"
        view = pane.query_one("#chat-view")
        pane.query_one("#chat-system").value = "Be brief."
        view.focus_default().focus()
        await pilot.press(*"Q1", "enter")
        await wait_for(pilot, lambda: len(view.history) == 2)
        assert view.history[1]["content"] == "abc" and status(view) == M.CHAT_DONE.format(n=3, how=M.CHAT_CUT)
        await pilot.press("ctrl+t")  # what the model sees next: system + both turns + the generation prompt
        want = chat_render(byte_tok, view.history, "Be brief.")
        tokens = view.query_one("#chat-tokens")
        await wait_for(pilot, lambda: tokens.rendered is not None)
        assert tokens.rendered.input_ids == want.input_ids and tokens.rendered.labels == want.labels


async def test_editing_a_user_turn_answers_again_and_clear_forgets(scripted, byte_tok):
    ckpt = scripted(chain_of(byte_tok, "ok"))
    async with app_on(ckpt).run_test(size=(100, 30)) as pilot:
        pane = await ready(pilot)
        view = pane.query_one("#chat-view")
        for text in ("first", "second"):
            await pilot.press(*text, "enter")
            await wait_for(pilot, lambda: view.answer is None and view.history[-1]["role"] == "assistant")
        assert [t["content"] for t in view.history] == ["first", "ok", "second", "ok"]
        await pilot.press("up")  # into the history list
        log = view.query_one("#chat-log")
        assert log.has_focus
        log.index = 0
        await pilot.press("e")
        assert view.query_one("#chat-input").value == "first" and view.query_one("#chat-input").has_focus
        view.query_one("#chat-input").value = "changed"
        await pilot.press("enter")
        await wait_for(pilot, lambda: view.answer is None and len(view.history) == 2)
        assert [t["content"] for t in view.history] == ["changed", "ok"]  # the later turns were dropped
        log.focus()
        log.index = 1
        await pilot.press("delete")
        assert [t["content"] for t in view.history] == ["changed"]
        await pilot.press("ctrl+l")
        assert view.history == [] and view.query_one("#chat-empty").display
        view.focus_default().focus()
        await pilot.press("escape")  # nothing to stop: out of the text box, so the digits switch panes again
        assert view.query_one("#chat-input").value == "" and not view.query_one("#chat-input").has_focus
        await pilot.press("6")
        assert pilot.app.query_one("#panes").active == "report"


# ------------------------------------------------------------------ kinds and bad input
async def test_a_reward_model_or_a_missing_path_gives_a_message(random_lm, tmp_path):
    rm = reward_checkpoint(random_lm, [0.0] * 64, 0.5, tmp_path / "rm")
    async with app_on(rm).run_test(size=(100, 30)) as pilot:
        pane = await ready(pilot, rm=random_lm)
        view = pane.query_one("#chat-view")
        await pilot.press(*"hi", "enter")
        await wait_for(pilot, lambda: "reward model" in status(view))
        assert "it scores answers, it does not write them" in status(view) and view.answer is None
        assert view.history == [] and view.query_one("#chat-input").value == "hi"  # back in the box, to send again
        score = await mode(pilot, pane, "score")
        for field, text in (("#score-prompt", "p"), ("#score-a", "a"), ("#score-b", "b")):
            score.query_one(field).value = text
        score.ask()
        await wait_for(pilot, lambda: "not a reward model" in status(score))
        pane.query_one("#play-ckpt").value = str(tmp_path / "nowhere")
        chat = await mode(pilot, pane, "chat")
        chat.query_one("#chat-input").value = ""
        await pilot.press(*"x", "enter")
        await wait_for(pilot, lambda: "nowhere" in status(chat))
        pane.query_one("#play-temperature").value = "hot"
        chat.query_one("#chat-input").value = ""
        await pilot.press(*"y", "enter")
        assert status(chat) == M.PLAY_ERROR.format(error=M.PLAY_NUMBER.format(name="temp", value="hot"))
        assert chat.history == [] and chat.query_one("#chat-input").value == "y"


def test_workbench_generate_refuses_a_reward_model(random_lm, tmp_path):
    from workbench.cli import app

    rm = reward_checkpoint(random_lm, [0.0] * 64, 0.5, tmp_path / "rm")
    result = CliRunner().invoke(app, ["generate", str(rm), "--prompt", "hi"])
    assert result.exit_code == 1 and "is a reward model" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------ compare
async def test_compare_shows_each_models_answer_with_checks_and_rm_scores(scripted, byte_tok, random_lm, tmp_path):
    from workbench.eval.playground import ModelCache, score_responses

    ckpts = [scripted(chain_of(byte_tok, t), name=f"m{i}") for i, t in enumerate(["Ulm", "Rhine", "The Ulm"])]
    rm = reward_checkpoint(random_lm, [0.01 * (i % 7) for i in range(64)], 0.1, tmp_path / "rm")
    async with app_on(ckpts[0]).run_test(size=(160, 40)) as pilot:
        pane = await ready(pilot, rm=rm)
        view = await mode(pilot, pane, "compare")
        view.query_one("#compare-ckpts").value = " ".join(str(c) for c in ckpts)
        view.query_one("#compare-answer").value = "Ulm"
        view.query_one("#compare-prompt").value = "Which river?"
        view.ask()
        await wait_for(pilot, lambda: status(view).startswith("3 answered"))
        texts = [str(view.query_one(f"#compare-text-{i}").render()) for i in range(3)]
        assert texts == ["Ulm", "Rhine", "The Ulm"]
        assert [a["correct"] for a in view.answers] == [True, False, True]
        assert [a["length"] for a in view.answers] == [4, 6, 8]  # the characters + <|im_end|>
        rm_model = ModelCache().reward_model(str(rm))
        for a, t in zip(view.answers, texts):
            want = score_responses(rm_model, "Which river?", [t])["scores"][0]
            assert a["rm_score"] == pytest.approx(want, abs=1e-5)
            assert -0.01 < a["mean_logprob"] <= 0  # logit 40: the model is sure
        stats = str(view.query_one("#compare-stats-1").render())
        assert stats.startswith("6 tok") and "✗" in stats
        view.query_one("#compare-ckpts").value = " ".join(str(c) for c in ckpts * 2)
        view.ask()
        await wait_for(pilot, lambda: "at most 4" in status(view))


# ------------------------------------------------------------------ probe
async def test_probe_matches_workbench_probe_and_a_click_steps_on(random_lm, byte_tok):
    from workbench.cli import app as cli

    async with app_on(random_lm).run_test(size=(100, 30)) as pilot:
        pane = await ready(pilot)
        view = await mode(pilot, pane, "probe")
        await pilot.press(*"The town")
        await wait_for(pilot, lambda: view.result is not None and view.result["text"] == "The town")
        got = view.result["top"]
        cli_out = CliRunner().invoke(cli, ["probe", str(random_lm), "The town", "--json", "-k", "10"])
        want = json.loads(cli_out.output)["top"]
        assert [t["id"] for t in got] == [t["id"] for t in want]
        assert [t["prob"] for t in got] == pytest.approx([t["prob"] for t in want], abs=1e-6)
        assert sum(t["prob"] for t in got) <= 1 + 1e-6 and got == sorted(got, key=lambda t: -t["prob"])
        assert len(view.query_one("#probe-bars").options) == 10
        pick = next(i for i, t in enumerate(got) if "\ufffd" not in t["token"])  # a whole character
        first = got[pick]["token"]
        bars = view.query_one("#probe-bars")
        bars.focus()
        bars.highlighted = pick
        await pilot.press("enter")  # the highlighted token is appended, and probed again
        assert view.query_one("#probe-text").value == "The town" + first
        await wait_for(pilot, lambda: view.result["text"] == "The town" + first)
        before = view.query_one("#probe-text").value
        view.result["top"][0] = {**view.result["top"][0], "id": byte_tok.im_end_id, "token": "<|im_end|>"}
        bars.highlighted = 0
        await pilot.press("enter")  # a special token is not typed in as its characters
        assert view.query_one("#probe-text").value == before and "<|im_end|>" in status(view)
        await pilot.click("#probe-chat")
        await wait_for(pilot, lambda: view.result["chat"] and view.query_one("#probe-answer").display)
        from workbench.eval.probe import probe

        chat = probe(random_lm, "The town" + first, chat=True, top_k=10)
        assert [t["id"] for t in view.result["top"]] == [t["id"] for t in chat["top"]]


# ------------------------------------------------------------------ score
async def test_score_matches_workbench_eval_rm_score(scripted, byte_tok, random_lm, tmp_path):
    from workbench.eval.evaluate import evaluate_checkpoint

    lm = scripted(chain_of(byte_tok, "Quilon"))
    stats = {"mean": 0.25, "std": 2.0}
    rm = reward_checkpoint(random_lm, [0.02 * ((i * 5) % 11) - 0.1 for i in range(64)], 0.3, tmp_path / "rm", stats=stats)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Which kingdom?"}) + "\n")
    want = evaluate_checkpoint(lm, prompts=str(prompts), rm=str(rm), decodings=("greedy",))["greedy"]["rm_score"]
    async with app_on(lm).run_test(size=(100, 30)) as pilot:
        pane = await ready(pilot, rm=rm)
        view = await mode(pilot, pane, "score")
        for field, text in (("#score-prompt", "Which kingdom?"), ("#score-a", "Quilon"), ("#score-b", "Gildmere")):
            view.query_one(field).value = text
        view.query_one("#score-b").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(view, "result", None) is not None)
        r = view.result
        assert r["scores"][0] == pytest.approx(want, abs=1e-5)
        assert r["scores"][1] == pytest.approx((r["raw"][1] - 0.25) / 2.0, abs=1e-6)
        assert r["p_first"] == pytest.approx(1 / (1 + math.exp(r["raw"][1] - r["raw"][0])))
        shown = str(view.query_one("#score-result").render())
        assert f"{r['p_first']:.1%}" in shown and f"{r['scores'][0]:+.3f}" in shown
        view.query_one("#score-b").value = ""  # a failed request never leaves the last scores on screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: "empty" in status(view))
        assert view.result is None and str(view.query_one("#score-result").render()) == ""


# ------------------------------------------------------------------ snapshots
def _steady(pilot) -> None:
    """No blinking cursor: a snapshot must not depend on when in the blink it is taken."""
    from textual.widgets import Input

    for box in pilot.app.query(Input):
        box.cursor_blink = False


def _snapshot_models(scripted, byte_tok, tmp_path, monkeypatch):
    """Scripted models under relative paths (greedy: the screen is the same on every machine)."""
    for name, text in (("base", "Dunvale is"), ("sft", "River Ulm."), ("dpo", "The Ulm.")):
        shutil.copytree(scripted(chain_of(byte_tok, text), name=name), tmp_path / name)
    monkeypatch.chdir(tmp_path)


def test_snapshot_chat_80x24(scripted, byte_tok, tmp_path, monkeypatch, snap_compare):
    _snapshot_models(scripted, byte_tok, tmp_path, monkeypatch)

    async def run_before(pilot):
        pane = await ready(pilot)
        pane.query_one("#play-greedy").value = True
        view = pane.query_one("#chat-view")
        view.focus_default().focus()
        await pilot.press(*"Which river runs through Dunvale?", "enter")
        await wait_for(pilot, lambda: view.answer is None and len(view.history) == 2)
        _steady(pilot)
        await pilot.pause()

    assert snap_compare(app_on("sft"), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_compare_200x60(scripted, byte_tok, tmp_path, monkeypatch, snap_compare):
    _snapshot_models(scripted, byte_tok, tmp_path, monkeypatch)

    async def run_before(pilot):
        pane = await ready(pilot)
        pane.query_one("#play-greedy").value = True
        view = await mode(pilot, pane, "compare")
        view.query_one("#compare-ckpts").value = "base sft dpo"
        view.query_one("#compare-answer").value = "Ulm"
        view.query_one("#compare-prompt").value = "Which river runs through Dunvale?"
        view.ask()
        await wait_for(pilot, lambda: status(view).startswith("3 answered"))
        view.focus_default().focus()
        _steady(pilot)
        await pilot.pause()

    assert snap_compare(app_on("sft"), terminal_size=(200, 60), run_before=run_before)


async def test_a_run_opened_from_the_runs_pane_lands_in_the_playground(scripted, byte_tok, random_lm, tmp_path):
    ckpt = scripted(chain_of(byte_tok, "ok"))
    rm = reward_checkpoint(random_lm, [0.0] * 64, 0.5, tmp_path / "rm")
    app = WorkbenchApp(Launch(pane="runs"))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.query("#playground-pane"))  # the panes not shown first mount lazily
        app.query_one("#runs-pane").post_message(M.OpenPlayground(str(ckpt)))
        await wait_for(pilot, lambda: app.query_one("#panes").active == "playground")
        pane = app.query_one("#playground-pane")
        assert pane.model_spec == str(ckpt) and pane.query_one("#play-modes").active == "play-chat"
        app.query_one("#runs-pane").post_message(M.OpenPlayground(str(rm), reward=True))
        await wait_for(pilot, lambda: pane.query_one("#play-modes").active == "play-score")
        assert pane.rm_spec == str(rm) and pane.model_spec == str(ckpt)


async def test_a_long_chat_leaves_out_its_oldest_turns_to_fit_the_context(scripted, byte_tok):
    from workbench.eval.playground import ModelCache

    ckpt = scripted(chain_of(byte_tok, "ok"))
    lm = ModelCache().language_model(str(ckpt))
    context = lm.model.cfg.max_seq_len
    async with app_on(ckpt).run_test(size=(100, 30)) as pilot:
        pane = await ready(pilot)
        pane.query_one("#play-max_new_tokens").value = "8"
        view = pane.query_one("#chat-view")
        long = "x" * (context // 3)  # byte tokens: three such turns overflow the context
        view.history = [{"role": "user", "content": long}, {"role": "assistant", "content": long},
                        {"role": "user", "content": long}, {"role": "assistant", "content": long}]
        view.focus_default().focus()
        await pilot.press(*"last", "enter")
        await wait_for(pilot, lambda: view.answer is None and view.history[-1]["role"] == "assistant")
        assert view.history[-1]["content"] == "ok" and len(view.history) == 6  # the history itself is kept
        ids, dropped = lm.fit_chat(view.history[:5], None, 8)
        assert dropped >= 2 and len(ids) + 8 <= context
        assert M.CHAT_DROPPED.format(n=dropped) in status(view)
