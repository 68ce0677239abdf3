"""Each format normalises to the internal shape; each bad record names its field."""

import pytest

from workbench.data.formats import BadRecord, detect_format, normalise, parse_hh

U = lambda c: {"role": "user", "content": c}  # noqa: E731
A = lambda c: {"role": "assistant", "content": c}  # noqa: E731
SYS = lambda c: {"role": "system", "content": c}  # noqa: E731


def test_prompt_completion_and_hh_variants():
    assert normalise({"prompt": "2+2?", "completion": "4"}, "completion") == {"messages": [U("2+2?"), A("4")]}
    assert detect_format(["prompt", "completion"]) == "completion"
    # an HH prompt, and a chosen that repeats the whole transcript: only the reply is kept
    rec = {"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": " Go"}
    assert normalise(rec, "preference")["chosen"] == [A("Hello")]
    # CRLF, a leading space and single newlines are still transcripts
    rec = {"chosen": " Human: a\r\nAssistant: b\r\nHuman: c\r\nAssistant: good",
           "rejected": "Human: a\nAssistant: b\nHuman: c\nAssistant: bad"}
    assert normalise(rec, "preference") == {"prompt": [U("a"), A("b"), U("c")], "chosen": [A("good")],
                                            "rejected": [A("bad")]}


@pytest.mark.parametrize("columns, fmt", [
    (["prompt", "prompt_id", "messages"], "ultrachat"),
    (["messages"], "messages"),
    (["conversations", "system"], "sharegpt"),
    (["instruction", "input", "output"], "alpaca"),
    (["prompt", "chosen", "rejected", "metadata"], "preference"),
    (["prompt", "prompt_id", "chosen", "rejected", "messages", "score_chosen"], "preference"),  # UltraFeedback
    (["chosen", "rejected"], "preference"),
    (["prompt", "answer", "final_answer"], "prompt"),
    (["text", "meta"], "text"),
])
def test_detect(columns, fmt):
    assert detect_format(columns) == fmt


def test_detect_unknown_says_what_it_expected():
    with pytest.raises(ValueError, match=r"fields \(body, title\).*--format"):
        detect_format(["title", "body"])


def test_ultrachat_keeps_extra_fields_as_meta():
    rec = {"prompt": "Hi", "prompt_id": "abc", "messages": [U("Hi"), A("Hello")], "task": {"answer": "x"}}
    assert normalise(rec, "ultrachat") == {"messages": [U("Hi"), A("Hello")], "meta": {"task": {"answer": "x"}}}


def test_sharegpt_roles_and_system_column():
    rec = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "q"},
                             {"from": "gpt", "value": "a"}, {"from": "observation", "value": "o"},
                             {"from": "gpt", "value": "b"}]}
    assert normalise(rec, "sharegpt")["messages"] == [SYS("S"), U("q"), A("a"),
                                                       {"role": "tool", "content": "o"}, A("b")]
    rec = {"system": "Be nice.", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    assert normalise(rec, "sharegpt")["messages"] == [SYS("Be nice."), U("q"), A("a")]


def test_alpaca_with_and_without_input_and_history():
    assert normalise({"instruction": "Add.", "input": "2 and 3", "output": "5"}, "alpaca") == {
        "messages": [U("Add.\n\n2 and 3"), A("5")]}
    assert normalise({"instruction": "Hi", "input": "", "output": "Hello"}, "alpaca") == {
        "messages": [U("Hi"), A("Hello")]}
    rec = {"instruction": "And 3?", "input": "", "output": "9", "history": [["Square 2", "4"]], "system": "Math."}
    assert normalise(rec, "alpaca")["messages"] == [SYS("Math."), U("Square 2"), A("4"), U("And 3?"), A("9")]


def test_preference_strings():
    out = normalise({"prompt": "q", "chosen": "good", "rejected": "bad"}, "preference")
    assert out == {"prompt": [U("q")], "chosen": [A("good")], "rejected": [A("bad")]}


def test_preference_message_lists_with_prompt_prefix_trl_style():
    rec = {"prompt": [U("q")], "chosen": [U("q"), A("good")], "rejected": [A("bad")]}
    assert normalise(rec, "preference") == {"prompt": [U("q")], "chosen": [A("good")], "rejected": [A("bad")]}


def test_preference_implicit_prompt():
    rec = {"chosen": [U("q"), A("a"), U("q2"), A("good")], "rejected": [U("q"), A("a"), U("q2"), A("bad")]}
    assert normalise(rec, "preference") == {"prompt": [U("q"), A("a"), U("q2")],
                                            "chosen": [A("good")], "rejected": [A("bad")]}


def test_hh_transcripts():
    rec = {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: Knock knock.",
           "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: No."}
    assert normalise(rec, "preference") == {"prompt": [U("Hi there"), A("Hello!"), U("Joke?")],
                                            "chosen": [A("Knock knock.")], "rejected": [A("No.")]}
    # an HH prompt string ending in an empty "Assistant:" cue, with bare replies
    rec = {"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": " Hello", "rejected": " Go away"}
    assert normalise(rec, "preference")["prompt"] == [U("Hi")]
    assert parse_hh("Human: a\n\nAssistant: b") == [U("a"), A("b")]


def test_prompt_kind():
    assert normalise({"prompt": "What is 2+2?", "answer": "4"}, "prompt") == {
        "prompt": [U("What is 2+2?")], "meta": {"answer": "4"}}
    assert normalise({"prompt": [SYS("s"), U("q")]}, "prompt") == {"prompt": [SYS("s"), U("q")]}


@pytest.mark.parametrize("fmt, rec, reason, detail", [
    ("messages", {"messages": None}, "missing field", "missing field 'messages'"),
    ("messages", {"messages": "hi"}, "wrong type", "'messages' must be a list of messages, got a string"),
    ("messages", {"messages": []}, "empty content", "'messages' has no messages"),
    ("messages", {"messages": [U("q"), {"role": "bot", "content": "a"}]}, "unknown role", r"messages\[1\].role is 'bot'"),
    ("messages", {"messages": [U("q"), {"content": "a"}]}, "missing field", r"messages\[1\] has no 'role'"),
    ("messages", {"messages": [U("q"), {"role": "assistant"}]}, "missing field", r"messages\[1\] has no 'content'"),
    ("messages", {"messages": [U("q"), {"role": "assistant", "content": 5}]}, "wrong type", r"messages\[1\].content must be a string, got a number"),
    ("messages", {"messages": [U("q"), A("  \n")]}, "empty content", r"messages\[1\] \(assistant\) has empty content"),
    ("messages", {"messages": [SYS("s"), U("q")]}, "no assistant turn", "no assistant turn"),
    ("sharegpt", {"conversations": [{"from": "robot", "value": "x"}]}, "unknown role", r"conversations\[0\].from is 'robot'"),
    ("alpaca", {"instruction": "Do", "output": ""}, "empty content", "'output' is empty"),
    ("alpaca", {"instruction": "Do", "input": 3, "output": "x"}, "wrong type", "'input' must be a string"),
    ("preference", {"prompt": "q", "chosen": "same", "rejected": "same"}, "identical pair", "identical"),
    ("preference", {"prompt": "q", "chosen": "", "rejected": "bad"}, "empty content", r"chosen\[0\] \(assistant\) has empty content"),
    ("preference", {"prompt": "q", "chosen": "a"}, "missing field", "missing field 'rejected'"),
    ("preference", {"prompt": "q", "chosen": [U("more?")], "rejected": "b"}, "prompts differ", "'chosen' has a user turn after the prompt"),
    ("preference", {"prompt": "q", "chosen": [A("a"), {"role": "tool", "content": "t"}], "rejected": "b"}, "no assistant turn", "'chosen' must start and end with an assistant reply"),
    ("preference", {"prompt": "q", "chosen": [{"role": "tool", "content": "t"}, A("a")], "rejected": "b"}, "no assistant turn", "'chosen' must start and end with an assistant reply"),
    ("preference", {"prompt": "q", "chosen": [A("a"), U("more"), A("b")], "rejected": "b"}, "prompts differ", "'chosen' has a user turn after the prompt"),
    ("preference", {"chosen": "plain", "rejected": "text"}, "missing field", "missing field 'prompt' \\('chosen' is plain text"),
    ("preference", {"prompt": [SYS("s"), U("q")], "chosen": [U("q"), A("a")], "rejected": "b"}, "prompts differ", "'chosen' has a user turn"),
    ("preference", {"chosen": [U("q"), A("a")], "rejected": [U("other"), A("b")]}, "prompts differ", "share no opening turns"),
    ("preference", {"chosen": [U("q"), A("a"), U("x"), A("b")], "rejected": [U("q"), A("a"), U("y"), A("c")]}, "prompts differ", "'chosen' has a user turn"),
    ("sharegpt", {"conversations": [{"from": "human", "value": None}]}, "missing field", r"conversations\[0\] has no 'value'"),
    ("alpaca", {"instruction": "q", "output": "a", "history": [["h", "a"], ["h2", ""]]}, "empty content", r"history\[1\]\[1\] must be a non-empty string"),
    ("text", {"text": ""}, "empty content", "'text' is empty"),
    ("text", {"text": ["a"]}, "wrong type", "'text' must be a string, got a list"),
])
def test_bad_records(fmt, rec, reason, detail):
    with pytest.raises(BadRecord, match=detail) as info:
        normalise(rec, fmt)
    assert info.value.reason == reason
