"""ChatML rendering that knows, for every token, which message it came from and whether it is trained.

    from workbench.chat import render_chat
    r = render_chat(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    r.input_ids, r.labels        # labels = input_ids where trained, -100 elsewhere
    r.spans                      # (start, end, message, role, part, trainable) runs of tokens

Each message is `<|im_start|>{role}\\n{content}<|im_end|>\\n`. Masks are produced here, while the
tokens are produced, never recovered later by searching token strings. Trained by default: the
content of assistant messages and their closing `<|im_end|>` (so the model learns to stop). Never
trained: the `<|im_start|>assistant\\n` header, system/user/tool turns, the `\\n` after `<|im_end|>`.

Every piece (header, content, `<|im_end|>`, `\\n`) is encoded on its own. Encoding the whole string
at once would let BPE merge the header's `\\n` with the first characters of the content, and the
tokens the model is trained on would then differ from what it sees at generation time after the
prompt `<|im_start|>assistant\\n`. Content is encoded with special tokens disabled.

Modes: "all" (every assistant turn, default), "last" (only the last assistant turn), "every"
(every token, pretraining-style). `prompt_messages=k` keeps the first k messages untrained in
any mode but "every": preference pairs use it so that only the response is trained.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from workbench.tokenizer import Tokenizer

IGNORE = -100
ROLES = ("system", "user", "assistant", "tool")
MODES = ("all", "last", "every")
GENERATION_PROMPT = "<|im_start|>assistant\n"


@dataclass(frozen=True)
class Span:
    """A run of tokens [start, end) from one part of one message."""

    start: int
    end: int
    message: int  # index in the message list; -1 for tokens that belong to no message
    role: str  # message role, or "text" for plain documents
    part: str  # header | content | end | sep | gen_prompt | text | eot
    trainable: bool


@dataclass(frozen=True)
class Rendered:
    """Token ids, aligned labels (-100 = no loss) and the spans they were built from."""

    input_ids: list[int]
    labels: list[int]
    spans: list[Span]
    truncated: int = 0  # tokens removed by `cut`

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_trainable(self) -> int:
        return sum(s.end - s.start for s in self.spans if s.trainable)

    def cut(self, max_len: int | None, drop_front: int = 0) -> Rendered:
        """Drop the first `drop_front` tokens, then keep at most `max_len` (None: no limit)."""
        n = len(self.input_ids)
        stop = n if max_len is None else min(n, drop_front + max_len)
        if drop_front == 0 and stop == n:
            return self
        spans = []
        for s in self.spans:
            a, b = max(s.start, drop_front), min(s.end, stop)
            if a < b:
                spans.append(replace(s, start=a - drop_front, end=b - drop_front))
        return Rendered(self.input_ids[drop_front:stop], self.labels[drop_front:stop], spans,
                        self.truncated + n - (stop - drop_front))


def render_chat(tok: Tokenizer, messages: list[dict], mode: str = "all", *,
                prompt_messages: int = 0, add_generation_prompt: bool = False) -> Rendered:
    """Render one conversation (a list of {role, content})."""
    return render_chat_batch(tok, [messages], mode, prompt_messages=[prompt_messages],
                             add_generation_prompt=add_generation_prompt)[0]


def render_chat_batch(tok: Tokenizer, conversations: list[list[dict]], mode: str = "all", *,
                      prompt_messages: list[int] | None = None,
                      add_generation_prompt: bool = False) -> list[Rendered]:
    """Render many conversations; all message contents go through tiktoken in one batch call."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    contents = tok.encode_batch([m["content"] for conv in conversations for m in conv])
    headers = _headers(tok)
    im_end, sep = tok.im_end_id, _sep(tok)
    every = mode == "every"
    out, k = [], 0
    for ci, conv in enumerate(conversations):
        first = prompt_messages[ci] if prompt_messages else 0
        trained = _trained_messages(conv, mode, first)
        ids: list[int] = []
        labels: list[int] = []
        spans: list[Span] = []

        def put(piece: list[int], msg: int, role: str, part: str, train: bool) -> None:
            start = len(ids)
            ids.extend(piece)
            labels.extend(piece if train else [IGNORE] * len(piece))
            if piece:
                spans.append(Span(start, len(ids), msg, role, part, train))

        for mi, msg in enumerate(conv):
            role = msg["role"]
            train = every or mi in trained
            put(headers.get(role) or _header(tok, role), mi, role, "header", every)
            put(contents[k], mi, role, "content", train)
            put([im_end], mi, role, "end", train)
            put(sep, mi, role, "sep", every)
            k += 1
        if add_generation_prompt:
            put(headers["assistant"], len(conv), "assistant", "gen_prompt", False)
        out.append(Rendered(ids, labels, spans))
    return out


def render_text_batch(tok: Tokenizer, texts: list[str]) -> list[Rendered]:
    """Plain documents for pretraining: the text, then `<|endoftext|>`; every token trained."""
    out = []
    for piece in tok.encode_batch(texts):
        n = len(piece)
        ids = piece + [tok.eot_id]
        spans = [Span(0, n, -1, "text", "text", True)] if n else []
        spans.append(Span(n, n + 1, -1, "text", "eot", True))
        out.append(Rendered(ids, list(ids), spans))
    return out


def render_preference_batch(tok: Tokenizer, pairs: list[dict]) -> list[tuple[Rendered, Rendered]]:
    """Render {prompt, chosen, rejected} message lists: the same prompt tokens, response trained."""
    convs, firsts = [], []
    for p in pairs:
        n = len(p["prompt"])
        convs += [p["prompt"] + p["chosen"], p["prompt"] + p["rejected"]]
        firsts += [n, n]
    rendered = render_chat_batch(tok, convs, "all", prompt_messages=firsts)
    return list(zip(rendered[0::2], rendered[1::2]))


def prompt_length(r: Rendered) -> int:
    """Tokens before the first trainable one (for a preference half: the shared prompt)."""
    return next((s.start for s in r.spans if s.trainable), len(r.input_ids))


def chatml(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The ChatML text of a conversation (what `tok.decode(render_chat(...).input_ids)` gives)."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + (GENERATION_PROMPT if add_generation_prompt else "")


def _trained_messages(conv: list[dict], mode: str, first: int) -> set[int]:
    assistant = [i for i, m in enumerate(conv) if m["role"] == "assistant" and i >= first]
    if mode == "last":
        return set(assistant[-1:])
    return set(assistant)


def _header(tok: Tokenizer, role: str) -> list[int]:
    return [tok.im_start_id] + tok.encode(f"{role}\n")


def _headers(tok: Tokenizer) -> dict[str, list[int]]:
    return {role: _header(tok, role) for role in ROLES}


def _sep(tok: Tokenizer) -> list[int]:
    return tok.encode("\n")
