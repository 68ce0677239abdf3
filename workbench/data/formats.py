"""Record formats: detect which one a dataset uses and normalise each record to one internal shape.

Four kinds of record, whatever the file looked like:

    conversation  {"messages": [{"role", "content"}, ...]}        ultrachat, messages, sharegpt, alpaca
    preference    {"prompt": [msgs], "chosen": [msgs], "rejected": [msgs]}   preference (incl. HH)
    prompt        {"prompt": [msgs]}                                prompt
    text          {"text": str}                                      text

Fields that are not part of the format (an ultrachat `prompt_id`, a `task`, an `answer`) are kept
under "meta". A record that cannot be normalised raises `BadRecord` with a short reason (used to
count skipped records) and a detail naming the field.
"""

from __future__ import annotations

import re

from workbench.chat import ROLES

FORMATS = {
    "ultrachat": "conversation",  # HuggingFaceH4/ultrachat_200k: prompt, prompt_id, messages
    "messages": "conversation",  # TRL conversational: messages
    "sharegpt": "conversation",  # conversations: [{from, value}], roles human/gpt/system
    "completion": "conversation",  # TRL prompt-completion: prompt, completion (strings or messages)
    "alpaca": "conversation",  # instruction, input, output (+ optional system, history)
    "preference": "preference",  # prompt?, chosen, rejected: strings, message lists or HH transcripts
    "prompt": "prompt",  # prompt (a string or messages) for generation, RL and evaluation
    "text": "text",  # plain documents: .txt files or {"text"}
}
FORMAT_FIELDS = {
    "ultrachat": ("prompt", "prompt_id", "messages"),
    "messages": ("messages",),
    "sharegpt": ("conversations", "system"),
    "completion": ("prompt", "completion"),
    "alpaca": ("instruction", "input", "output", "system", "history"),
    "preference": ("prompt", "chosen", "rejected"),
    "prompt": ("prompt",),
    "text": ("text",),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant",
                  "model": "assistant", "function_call": "assistant", "system": "system",
                  "observation": "tool", "function": "tool", "tool": "tool"}
_HH_TURN = re.compile(r"(?:^|\n)[ \t]*(Human|Assistant):[ \t]?")
_HH_START = re.compile(r"^\s*(Human|Assistant):")


class BadRecord(ValueError):
    """A record that does not fit its format. `reason` is short (for counts), `str()` is detailed."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def detect_format(columns: list[str]) -> str:
    """Pick the format from a dataset's column names."""
    cols = set(columns)
    if {"chosen", "rejected"} <= cols:  # first: UltraFeedback rows also carry `messages`
        return "preference"
    if "messages" in cols:
        return "ultrachat" if {"prompt", "prompt_id"} <= cols else "messages"
    if "conversations" in cols:
        return "sharegpt"
    if {"prompt", "completion"} <= cols:
        return "completion"
    if {"instruction", "output"} <= cols:
        return "alpaca"
    if "text" in cols:
        return "text"
    if "prompt" in cols:
        return "prompt"
    raise ValueError(
        f"cannot tell the format from the fields ({', '.join(sorted(cols)) or 'none'}). Expected "
        "messages (ultrachat/TRL), conversations (ShareGPT), prompt+completion (TRL), "
        "instruction+output (Alpaca), chosen+rejected (preference), text, or prompt; or pass --format")


def normalise(record: dict, fmt: str) -> dict:
    """Turn one raw record into the internal shape of its kind (raises BadRecord)."""
    try:
        out = _NORMALISERS[fmt](record)
    except KeyError as e:
        raise BadRecord("missing field", f"missing field {e.args[0]!r}") from None
    meta = {k: v for k, v in record.items() if k not in FORMAT_FIELDS[fmt] and v is not None}
    if meta:
        out["meta"] = meta
    return out


def _conversation(messages: list[dict]) -> dict:
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no assistant turn", "conversation has no assistant turn: nothing to train on")
    return {"messages": messages}


def _from_messages(record: dict) -> dict:
    return _conversation(_messages(_field(record, "messages"), "messages"))


def _from_sharegpt(record: dict) -> dict:
    turns = _field(record, "conversations")
    if not isinstance(turns, list):
        raise BadRecord("wrong type", f"'conversations' must be a list, got {_type(turns)}")
    messages = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise BadRecord("wrong type", f"conversations[{i}] must be an object, got {_type(t)}")
        who = t.get("from", t.get("role"))
        if not isinstance(who, str) or who.lower() not in SHAREGPT_ROLES:
            raise BadRecord("unknown role", f"conversations[{i}].from is {who!r}; expected one of "
                            f"{', '.join(sorted(SHAREGPT_ROLES))}")
        value = t.get("value", t.get("content"))
        if value is None:
            raise BadRecord("missing field", f"conversations[{i}] has no 'value'")
        messages.append({"role": SHAREGPT_ROLES[who.lower()], "content": value})
    return _conversation(_system(record) + _messages(messages, "conversations"))


def _from_alpaca(record: dict) -> dict:
    instruction = _text(record, "instruction")
    extra = record.get("input")
    if extra is not None and not isinstance(extra, str):
        raise BadRecord("wrong type", f"'input' must be a string, got {_type(extra)}")
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    history = []
    for i, pair in enumerate(record.get("history") or []):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise BadRecord("wrong type", f"history[{i}] must be a [question, answer] pair")
        for j, (role, text) in enumerate(zip(("user", "assistant"), pair)):
            if not isinstance(text, str) or not text.strip():
                raise BadRecord("empty content" if isinstance(text, str) else "wrong type",
                                f"history[{i}][{j}] must be a non-empty string")
            history.append({"role": role, "content": text})
    return _conversation(_system(record) + history + [
        {"role": "user", "content": user}, {"role": "assistant", "content": _text(record, "output")}])


def _from_preference(record: dict) -> dict:
    prompt = record.get("prompt")
    chosen, rejected = _field(record, "chosen"), _field(record, "rejected")
    if prompt is None or prompt == "" or prompt == []:
        # implicit prompt: chosen and rejected are whole dialogues sharing a prefix (TRL, raw HH)
        c, r = _whole_dialogue(chosen, "chosen"), _whole_dialogue(rejected, "rejected")
        n = 0
        while n < min(len(c), len(r)) - 1 and c[n] == r[n]:
            n += 1
        prompt_msgs, c, r = c[:n], c[n:], r[n:]
        if not prompt_msgs:
            raise BadRecord("prompts differ", "no 'prompt', and chosen and rejected share no opening turns")
    else:
        prompt_msgs = _dialogue(prompt, "prompt")
        c, r = _response(chosen, prompt_msgs, "chosen"), _response(rejected, prompt_msgs, "rejected")
    for name, resp in (("chosen", c), ("rejected", r)):
        other = next((m["role"] for m in resp if m["role"] not in ("assistant", "tool")), None)
        if other:
            raise BadRecord("prompts differ", f"'{name}' has a {other} turn after the prompt: "
                            "chosen and rejected must be replies to the same prompt")
        if resp[0]["role"] != "assistant" or resp[-1]["role"] != "assistant":
            raise BadRecord("no assistant turn", f"'{name}' must start and end with an assistant reply "
                            "(a tool result belongs to the prompt)")
    if c == r:
        raise BadRecord("identical pair", "chosen and rejected are identical: nothing to prefer")
    return {"prompt": prompt_msgs, "chosen": c, "rejected": r}


def _from_completion(record: dict) -> dict:
    prompt = _dialogue(_field(record, "prompt"), "prompt")
    return _conversation(prompt + _response(_field(record, "completion"), prompt, "completion"))


def _from_prompt(record: dict) -> dict:
    return {"prompt": _dialogue(_field(record, "prompt"), "prompt")}


def _from_text(record: dict) -> dict:
    return {"text": _text(record, "text")}


_NORMALISERS = {"ultrachat": _from_messages, "messages": _from_messages, "sharegpt": _from_sharegpt,
                "completion": _from_completion, "alpaca": _from_alpaca, "preference": _from_preference, "prompt": _from_prompt,
                "text": _from_text}


def parse_hh(transcript: str) -> list[dict]:
    """Anthropic HH "\\n\\nHuman: ...\\n\\nAssistant: ..." transcript -> messages."""
    parts = _HH_TURN.split(transcript.replace("\r\n", "\n"))
    if parts[0].strip():
        raise BadRecord("wrong type", "transcript text before the first 'Human:' turn")
    role = {"Human": "user", "Assistant": "assistant"}
    return [{"role": role[who], "content": text.strip()} for who, text in zip(parts[1::2], parts[2::2])]


def _dialogue(value, name: str) -> list[dict]:
    """A prompt or whole dialogue: a string (one user turn, or an HH transcript) or messages."""
    if isinstance(value, str):
        if _HH_START.match(value):
            msgs = parse_hh(value)
            if msgs and msgs[-1]["role"] == "assistant" and not msgs[-1]["content"]:
                msgs = msgs[:-1]  # an HH prompt ends with an empty "Assistant:" cue
            return _messages(msgs, name)
        return _messages([{"role": "user", "content": value}], name)
    return _messages(value, name)


def _whole_dialogue(value, name: str) -> list[dict]:
    """chosen/rejected without a prompt: each must be a whole dialogue (messages or HH transcript)."""
    if isinstance(value, str) and not _HH_START.match(value):
        raise BadRecord("missing field", f"missing field 'prompt' ('{name}' is plain text, not a whole "
                        "dialogue: give a prompt, message lists, or HH 'Human:/Assistant:' transcripts)")
    return _messages(parse_hh(value), name) if isinstance(value, str) else _messages(value, name)


def _response(value, prompt: list[dict], name: str) -> list[dict]:
    """A reply: a string, or messages that may repeat the prompt first (TRL), or a string holding
    the whole HH transcript. A string that merely starts with "Human:" is a reply (HH has some)."""
    def repeats_prompt(msgs):
        return len(msgs) > len(prompt) and [(m["role"], m["content"].strip()) for m in msgs[:len(prompt)]] == \
            [(m["role"], m["content"].strip()) for m in prompt]

    if isinstance(value, str):
        if _HH_START.match(value):
            msgs = parse_hh(value)
            if repeats_prompt(msgs):
                return _messages(msgs[len(prompt):], name)
        return _messages([{"role": "assistant", "content": value}], name)
    msgs = _messages(value, name)
    return msgs[len(prompt):] if repeats_prompt(msgs) else msgs


def _messages(value, name: str) -> list[dict]:
    if not isinstance(value, list):
        raise BadRecord("wrong type", f"'{name}' must be a list of messages, got {_type(value)}")
    if not value:
        raise BadRecord("empty content", f"'{name}' has no messages")
    out = []
    for i, m in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise BadRecord("wrong type", f"{where} must be an object with role and content, got {_type(m)}")
        role, content = m.get("role"), m.get("content")
        if role is None:
            raise BadRecord("missing field", f"{where} has no 'role'")
        if not isinstance(role, str) or role not in ROLES:
            raise BadRecord("unknown role", f"{where}.role is {role!r}; expected one of {', '.join(ROLES)}")
        if content is None:
            raise BadRecord("missing field", f"{where} has no 'content'")
        if not isinstance(content, str):
            raise BadRecord("wrong type", f"{where}.content must be a string, got {_type(content)}")
        if not content.strip():
            raise BadRecord("empty content", f"{where} ({role}) has empty content")
        out.append({"role": role, "content": content})
    return out


def _system(record: dict) -> list[dict]:
    system = record.get("system")
    if system is None or system == "":
        return []
    if not isinstance(system, str):
        raise BadRecord("wrong type", f"'system' must be a string, got {_type(system)}")
    return [{"role": "system", "content": system}]


def _field(record: dict, name: str):
    value = record.get(name)
    if value is None:
        raise BadRecord("missing field", f"missing field {name!r}")
    return value


def _text(record: dict, name: str) -> str:
    value = _field(record, name)
    if not isinstance(value, str):
        raise BadRecord("wrong type", f"{name!r} must be a string, got {_type(value)}")
    if not value.strip():
        raise BadRecord("empty content", f"{name!r} is empty")
    return value


def _type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
