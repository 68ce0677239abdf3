"""The Data pane against the real App: the list, the token view and its masks, modes, the token
cursor, preference pairs, bad records, search, a 100,000-record file, and SVG snapshots."""

import json
import time

import pytest
from rich.style import Style
from textual.widgets import Button, Input, Static

from app.app import Launch, WorkbenchApp
from app.panes.data import DataPane
from app.widgets.example_list import ExampleList
from app.widgets.example_view import ExampleView
from app.widgets.token_view import TokenView
from tests.conftest import SAMPLE, shared
from workbench.data.browse import open_browser

GREEN = Style.parse("green").color
GREY = Style.parse("grey62").color  # the inspector's masked tokens


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder that sees sample_data/ (paths show as sample_data/...) and has no runs/."""
    (tmp_path / "sample_data").symlink_to(SAMPLE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_app(data="sample_data/chat.jsonl"):
    return WorkbenchApp(Launch(data=data, pane="data", runs_root="runs"))


def pane(app) -> DataPane:
    return app.query_one("#data-pane", DataPane)


async def ready(pilot, validated=True, timeout=20.0):
    """Wait until the file is open (and checked) and the tokenizer loaded."""
    p = pane(pilot.app)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        b = p.browser
        examples = p.query_one(ExampleList)
        if p.tok is not None and b is not None and (b.validated or not validated) and not p.query_one("#data-search").searching \
                and examples.pending is None and examples.encoding is not None:
            await pilot.pause()
            if examples.pending is None:  # the token counts of the rows on screen are in
                return p
        await pilot.pause(0.05)
    raise AssertionError(f"the Data pane did not get ready: browser={p.browser} tok={p.tok}")


def styled(view: TokenView, keep) -> list[str]:
    """The runs of text the view draws in a style `keep(style)` accepts, as a person sees them."""
    runs, current = [], ""
    for y in range(view.virtual_size.height):
        for seg in view.render_line(y - view.scroll_offset.y):
            if seg.style is not None and keep(seg.style):
                current += seg.text
            elif current and seg.text.strip():
                runs.append(current)
                current = ""
    return runs + ([current] if current else [])


def trained(view: TokenView) -> list[str]:
    return styled(view, lambda s: s.color == GREEN)


def shown(text: str) -> str:
    return text.replace("\n", "↵")


def info_line(app) -> str:
    return str(app.query_one("#ex-token", Static).content)


async def select_record(pilot, index):
    examples = pilot.app.query_one(ExampleList)
    examples.cursor = list(examples.indices).index(index)
    await pilot.pause()


async def test_the_trained_spans_are_the_assistant_replies_and_follow_mode_and_max_len(workdir):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        p = await ready(pilot)
        assert str(app.query_one("#data-status", Static).content) == "900 records"
        assert p.browser.format == "ultrachat"
        await pilot.press("down", "down")
        view = app.query_one("#ex-single", TokenView)
        record = p.browser.record(2)
        replies = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
        assert len(replies) >= 2
        assert trained(view) == [shown(r) + "<|im_end|>✓" for r in replies]
        assert styled(view, lambda s: s.color == GREY)  # the rest is drawn masked
        head = str(app.query_one("#ex-head", Static).content)
        assert head.startswith("#2 · chat.jsonl:3 · conversation · 92 tokens · 44 trained")
        # the mode: only the last reply, then every token
        p.action_mode("last")
        await pilot.pause()
        assert trained(view) == [shown(replies[-1]) + "<|im_end|>✓"]
        p.action_mode("every")
        await pilot.pause()
        every = "".join(trained(view))
        assert every.startswith("<|im_start|>") and all(shown(r) in every for r in replies)
        assert styled(view, lambda s: s.color == GREY) == []  # nothing masked any more
        await ready(pilot)
        row = app.query_one(ExampleList).visible_rows()[0]
        assert row.trained == row.tokens  # the list follows the mode too
        # the max length: validated beside it, applied when valid
        p.action_mode("all")
        box = app.query_one("#data-max-len", Input)
        box.focus()
        await pilot.press(*"12x")
        msg = app.query_one("#data-bar-msg", Static)
        assert msg.display and "max length must be a whole number" in str(msg.content) and box.has_class("-invalid")
        assert p.max_len == 12  # the last valid value stays
        await pilot.press("backspace")
        assert not msg.display and not box.has_class("-invalid")
        warnings = str(app.query_one("#ex-warnings", Static).content)
        assert "⚠ truncated: 80 tokens cut (max_len 12)" in warnings
        assert "nothing trainable after truncation: example dropped" in warnings
        await ready(pilot)
        assert app.query_one(ExampleList).visible_rows()[0].tokens == 12


async def test_the_token_cursor_raw_view_boundaries_search_and_the_palette(workdir):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        p = await ready(pilot)
        await pilot.press("enter")  # from the list into the tokens
        view = app.query_one("#ex-single", TokenView)
        assert view.has_focus
        r = p.query_one(ExampleView).example.rendered
        assert info_line(app).startswith(f"token 0/{len(r)} · id 100264 · '<|im_start|>' · user header")
        assert info_line(app).endswith("label -100: masked")
        await pilot.press("right", "right", "right")
        assert info_line(app).startswith(f"token 3/{len(r)} · id {r.input_ids[3]} · ")
        await pilot.press("end", "left")  # the last <|im_end|>: trained
        assert info_line(app).startswith(f"token {len(r) - 2}/{len(r)} · id 100265 · '<|im_end|>' · assistant end")
        assert info_line(app).endswith("label 100265: trained")
        line = view._lines[1]  # a click lands on the token drawn there
        x0, _x1, _text, _style, tok = line[len(line) // 2]
        await pilot.click(view, offset=(x0, 1))
        assert view.cursor == tok and info_line(app).startswith(f"token {tok}/")
        await pilot.press("escape")
        assert app.query_one(ExampleList).has_focus
        # raw messages, then tokens again, without and with token boundaries
        await pilot.press("r")
        raw = str(app.query_one("#ex-raw-text", Static).content)
        assert app.query_one("#ex-switch").current == "ex-raw"
        assert raw.startswith("user\nQuick question: how many live in Caldreth?") and "assistant\nSure! Caldreth has" in raw

        def shades():  # the backgrounds of the masked tokens of the first message's text
            return {seg.style.bgcolor for seg in view.render_line(1) if seg.style and seg.style.color == GREY}

        await pilot.press("r")
        assert len(shades()) == 2  # alternating: each token's extent shows
        await pilot.press("b")
        assert len(shades()) == 1
        # every action is in the palette
        commands = {t: c for t, _, c in p.commands()}
        assert {"Data: raw messages / tokens", "Data: mode last", "Data: skip / show bad records"} <= set(commands)
        await commands["Data: mode last"]()
        await pilot.pause()
        assert p.mode == "last" and str(app.query_one("#data-mode").value) == "last"
        # search: the list filters to the hits, streamed from a worker; clearing it brings all back
        expected = list(open_browser("sample_data/chat.jsonl").search("Orrinsby"))
        await pilot.press("slash")
        assert app.query_one("#data-search", Input).has_focus
        await pilot.press(*"orrinsby", "enter")
        await ready(pilot)
        assert list(app.query_one(ExampleList).indices) == expected and len(expected) > 3
        assert str(app.query_one("#data-status", Static).content).startswith(f"{len(expected)} hits for “orrinsby”")
        assert str(app.query_one("#ex-head", Static).content).startswith(f"#{expected[0]} · ")
        assert app.query_one(ExampleList).has_focus
        await pilot.press("slash", "escape")  # Escape empties the box
        await pilot.pause(0.5)
        assert len(app.query_one(ExampleList).indices) == 900
        # a tokenizer that cannot be loaded: said beside it, the last good one stays
        app.query_one("#data-tokenizer", Input).value = "nope.tiktoken"
        p._load_tokenizer("nope.tiktoken")
        end = time.monotonic() + 10
        while "tokenizer file not found" not in str(app.query_one("#data-bar-msg", Static).content):
            assert time.monotonic() < end
            await pilot.pause(0.05)
        assert p.tok is not None and app.query_one("#data-tokenizer").has_class("-invalid") and app.is_running


async def test_a_preference_pair_shows_the_prompt_once_and_both_responses(workdir):
    app = make_app("sample_data/preference.jsonl")
    async with app.run_test(size=(120, 40)) as pilot:
        p = await ready(pilot)
        record = p.browser.record(0)
        prompt, chosen, rejected = (app.query_one(f"#ex-{n}", TokenView) for n in ("prompt", "chosen", "rejected"))
        assert app.query_one("#ex-switch").current == "ex-pair"
        assert trained(prompt) == [] and record["prompt"][0]["content"] in "".join(prompt.lines)
        assert trained(chosen) == [shown(record["chosen"][0]["content"]) + "<|im_end|>✓"]
        assert trained(rejected) == [shown(record["rejected"][0]["content"]) + "<|im_end|>✓"]
        ex = p.query_one(ExampleView).example
        assert str(app.query_one("#ex-chosen-head", Static).content) == \
            f"chosen: {ex.chosen.num_trainable} of {len(ex.chosen) - prompt.end} trained"
        p.action_mode("last")  # a mode does not apply to pairs: said so, nothing changes
        await pilot.pause()
        assert "preference records ignore it" in str(app.query_one("#data-bar-msg", Static).content)
        assert trained(chosen) == [shown(record["chosen"][0]["content"]) + "<|im_end|>✓"]
        # the format override: the same file read as prompts (the select shows what was detected)
        assert app.query_one("#data-format").value == "auto"
        assert str(app.query_one("#data-format #label", Static).content) == "auto: preference"
        app.query_one("#data-format").value = "prompt"
        end = time.monotonic() + 10
        while p.browser is None or p.browser.format != "prompt":
            assert time.monotonic() < end
            await pilot.pause(0.05)
        await ready(pilot)
        assert p.browser.kind == "prompt" and app.query_one("#ex-switch").current == "ex-single"
        assert trained(app.query_one("#ex-single", TokenView)) == []  # nothing in a prompt is trained


async def test_a_bad_file_names_file_and_line_and_skipping_counts_by_reason(workdir):
    rows = [{"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]},
            '{"messages": [oops', {"messages": [{"role": "user", "content": "no reply"}]},
            {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}]
    (workdir / "bad.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    app = make_app("bad.jsonl")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        problem = str(app.query_one("#data-problem-text", Static).content)
        assert problem.startswith("✗ 2 bad records: 1 malformed JSON, 1 no assistant turn · bad.jsonl:2: malformed JSON: ")
        examples = app.query_one(ExampleList)
        assert len(examples.indices) == 4
        await pilot.press("down")  # the bad record itself: its error in place of its tokens
        assert str(app.query_one("#ex-head", Static).content).startswith("✗ bad.jsonl:2: malformed JSON")
        await pilot.click("#data-skip")
        await pilot.pause()
        assert list(examples.indices) == [0, 3]
        assert str(app.query_one("#data-problem-text", Static).content) == \
            "Skipping 2 bad records: 1 malformed JSON, 1 no assistant turn"
        assert str(app.query_one("#data-skip", Button).label) == "Show bad"
        assert str(app.query_one("#data-status", Static).content) == "2 good of 4 checked"
        # files that cannot be opened at all: a message, and the pane still opens files
        (workdir / "empty.jsonl").write_text("")
        (workdir / "notes.xml").write_text("<a/>")
        p = pane(app)
        for path, message in (("nope.jsonl", "no such file or folder"), ("empty.jsonl", "file is empty"),
                              ("notes.xml", "unsupported file type")):
            p.open(path)
            end = time.monotonic() + 10
            while message not in str(app.query_one("#data-problem-text", Static).content):
                assert time.monotonic() < end
                await pilot.pause(0.05)
            assert p.browser is None and app.is_running
            assert not app.query_one("#data-skip").display  # nothing to skip
        p.open("sample_data/formats/corpus.txt")  # through datasets, in a worker
        p = await ready(pilot)
        assert p.browser.kind == "text" and not app.query_one("#data-problem").display
        assert str(app.query_one("#ex-head", Static).content).startswith("#0 · corpus.txt record 0 · text")


async def test_at_80x24_a_long_path_leaves_room_for_the_counts_the_line_and_the_error(tmp_path):
    """Regression: under a long absolute path the problem bar (3 lines) cut off the counts by reason
    and the example's head (3 lines) cut off its counts: the folders are in the path field already."""
    folder = tmp_path / "a rather long folder name" / "holding the training data of this run"
    folder.mkdir(parents=True)
    rows = ['{"messages": [oops'] + [json.dumps({"prompt": f"Question {i}?"}) for i in range(3)] + ["[1, 2]"]
    data = folder / "prompts_gsm8k_test.jsonl"
    data.write_text("".join(r + "\n" for r in rows))
    app = make_app(str(data))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await select_record(pilot, 1)

        def seen(widget_id):  # what the widget shows on screen, its lines joined
            widget = app.query_one(widget_id, Static)
            return " ".join(s.text.strip() for s in widget.render_lines(widget.region.reset_offset)).strip()

        problem = seen("#data-problem-text")
        assert "2 bad records: 1 malformed JSON, 1 not a JSON object" in " ".join(problem.split())
        assert "prompts_gsm8k_test.jsonl:1: malformed JSON" in " ".join(problem.split())
        head = " ".join(seen("#ex-head").split())
        assert head.startswith("#1 · prompts_gsm8k_test.jsonl:2 · prompt ·") and head.endswith("masked")


async def test_a_100k_record_file_shows_its_first_screen_without_reading_it_all(tmp_path):
    path = tmp_path / "big.jsonl"
    line = '{"messages": [{"role": "user", "content": "Question %d: what is %d + 1?"}, ' \
           '{"role": "assistant", "content": "%d + 1 = %d."}]}\n'
    path.write_text("".join(line % (i, i, i, i + 1) for i in range(100_000)))
    start = time.perf_counter()
    app = WorkbenchApp(Launch(data=str(path), pane="data", runs_root=str(tmp_path / "runs")))
    async with app.run_test(size=(80, 24)) as pilot:
        examples = app.query_one(ExampleList)
        while not (examples.reads and len(examples.indices)):
            assert time.perf_counter() - start < 5, "first screen took over 5 s"
            await pilot.pause(0.01)
        first = time.perf_counter() - start
        p = await ready(pilot, validated=False)
        assert 0 < p.browser.rows_tokenized < 100  # only the rows on screen were tokenized
        await pilot.press("end")
        while len(p.browser) < 100_000 or examples.current != 99_999:
            await pilot.press("end")
            await pilot.pause(0.05)
        assert examples.visible_rows()[-1].first_line == "Question 99999: what is 99999 + 1?"
    print(f"first screen of a 100,000-record file: {first:.2f} s")


async def test_a_huge_message_draws_its_first_tokens_and_says_how_many_more(tmp_path):
    """A 2 MB message is laid out only up to MAX_TOKENS (it froze the pane for seconds); the counts
    still cover every token and the cursor never lands on the summary line."""
    from app.widgets.token_view import MAX_TOKENS

    big = " ".join(f"w{i % 997}" for i in range(60_000))
    path = tmp_path / "huge.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": big}]}) + "\n")
    app = make_app(str(path))
    async with app.run_test(size=(100, 30)) as pilot:
        p = await ready(pilot)
        view = p.query_one("#ex-single", TokenView)
        t0 = time.perf_counter()
        p.query_one(ExampleView).show(p.browser, 0, p.encoding)
        elapsed = time.perf_counter() - t0
        total = len(p.query_one(ExampleView).example.rendered)
        assert total > MAX_TOKENS and view.end - view.start == MAX_TOKENS and view.hidden == total - MAX_TOKENS
        assert view.lines[-1].startswith(f"… {total - MAX_TOKENS:,} more tokens not drawn")
        assert f"{total:,} tokens" in str(p.query_one("#ex-head").render())  # the counts cover all of it
        view.focus()
        await pilot.press("end", "down", "down")
        assert view.cursor == MAX_TOKENS - 1  # the last drawn token, not the summary line
        print(f"\n{total:,}-token message shown in {elapsed * 1000:.0f} ms")
        assert elapsed < 3, elapsed


async def test_rerender_of_the_longest_lima_chat_is_fast():
    """Mode changes re-render at once: LIMA's longest chat (3,567 tokens with cl100k_base)."""
    app = WorkbenchApp(Launch(data=str(shared("chat_lima.jsonl")), pane="data", runs_root="runs"))
    async with app.run_test(size=(200, 60)) as pilot:
        p = await ready(pilot, validated=False)
        await select_record(pilot, 601)
        assert len(p.query_one(ExampleView).example.rendered) == 3567
        times = []
        for mode in ("last", "every", "all") * 3:
            t = time.perf_counter()
            p.action_mode(mode)
            await pilot.pause()
            times.append(time.perf_counter() - t)
        median = sorted(times)[len(times) // 2]
    print(f"re-render of the 3,567-token chat: {median * 1000:.0f} ms")
    assert median < 0.5  # generous on a busy 2-core machine; the benchmark reports the real figure


# ------------------------------------------------------------------------------ snapshots
async def _chat_third_record(pilot):
    await ready(pilot)
    await pilot.press("down", "down")
    await pilot.pause()


async def _pair(pilot):
    await ready(pilot)
    await pilot.press("enter", "right", "right")
    await pilot.pause()


def test_snapshot_chat_80x24(workdir, snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_chat_third_record)


def test_snapshot_chat_200x60(workdir, snap_compare):
    assert snap_compare(make_app(), terminal_size=(200, 60), run_before=_chat_third_record)


def test_snapshot_pair_100x30(workdir, snap_compare):
    assert snap_compare(make_app("sample_data/preference.jsonl"), terminal_size=(100, 30), run_before=_pair)
