"""The Playground's core: talk to a checkpoint, compare checkpoints on one prompt, score answers.

    from workbench.eval.playground import ModelCache, ReplyStream, compare, score_responses
    cache = ModelCache()
    lm = cache.language_model("runs/sft")                  # a run dir means its latest checkpoint
    stream = ReplyStream(lm, lm.chat_ids([{"role": "user", "content": "Hi"}]), SamplingConfig(greedy=True))
    for piece in stream: print(piece, end="")              # token by token (KV cache); stops at <|im_end|>
    stream.reply.text, stream.reply.finished
    compare(cache, ["runs/base", "runs/sft"], "Which river runs through Dunvale?", sampling, rm="runs/rm")
    score_responses(cache.reward_model("runs/rm"), "a prompt", ["answer one", "answer two"])

The TUI's Playground pane (app/panes/playground.py) is a thin client of this module; so is
`workbench generate`'s check that a checkpoint is a language model. Everything here runs in the
caller's thread (the TUI runs it in a worker) and stops early when `cancelled()` says so.

- Chat renders the history with the ChatML template (`workbench.chat`, the trainers' own) plus the
  assistant's generation prompt, and stops at `<|im_end|>`; plain mode continues raw text and stops at
  `<|endoftext|>`.
- Compare answers one prompt with each checkpoint in turn (same sampling, same seed), and gives each
  answer's length, its mean log-prob per token under the model at temperature 1 (how sure the model is
  of what it said, whatever the sampling settings), the reward model's score (normalised as `workbench
  eval` reports it) and, when the prompt carries a checkable answer, whether the reply is correct.
- Compare's RM score is `workbench eval --rm`'s: the reply's own tokens (+ the newline after `<|im_end|>`
  when it finished). Score puts typed responses through the reward model as eval scores a finished
  answer (the rendered turn, `<|im_end|>` and its newline), and gives the Bradley-Terry
  probability sigmoid(r1 - r2) on the raw scores, the quantity the reward model was trained on.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workbench.errors import WorkbenchError

MAX_COMPARE = 4
KINDS = {"policy": "a language model", "reward": "a reward model (a `workbench train rm` run)"}


def kind_message(spec: str, path: Path, kind: str, want: str) -> str:
    """Why a checkpoint of `kind` cannot be used where `want` is needed, and what to do instead."""
    where = f"{spec} ({path})" if str(path) != str(spec) else str(path)
    got = KINDS.get(kind, f"a {kind} model (e.g. a PPO critic)")
    if want == "policy":
        hint = ("it scores answers, it does not write them: chat with a language model (a pretrain, sft, dpo or "
                "ppo run) and give this one as the reward model" if kind == "reward" else
                "it predicts a value per token, not the next token: use the run's policy checkpoint")
        return f"{where} is {got}: {hint}"
    return f"{where} is {got}, not a reward model: train one with `workbench train rm`"


@dataclass
class LanguageModel:
    model: object
    tok: object
    path: Path
    label: str

    def chat_ids(self, messages: list[dict], system: str | None = None) -> list[int]:
        """The history as the model sees it: ChatML turns + `<|im_start|>assistant\\n`."""
        return chat_render(self.tok, messages, system).input_ids

    def fit_chat(self, messages: list[dict], system: str | None, max_new_tokens: int) -> tuple[list[int], int]:
        """(prompt ids, turns dropped): the oldest turns are left out until prompt + max_new_tokens fit the
        context (the system message and the last user turn always stay; if they alone do not fit, stream()
        says by how much)."""
        context = self.model.cfg.max_seq_len
        dropped = 0
        ids = self.chat_ids(messages, system)
        while len(ids) + max_new_tokens > context and len(messages) - dropped > 1:
            dropped += 1
            ids = self.chat_ids(messages[dropped:], system)
        return ids, dropped

    def stop_ids(self, chat: bool) -> list[int]:
        # In chat mode a base model, which never learnt <|im_end|>, ends its text with <|endoftext|>.
        return [self.tok.im_end_id, self.tok.eot_id] if chat else [self.tok.eot_id]


def chat_render(tok, messages: list[dict], system: str | None = None):
    """The Rendered ChatML prompt of a history (labels as SFT would train it), generation prompt added."""
    from workbench.chat import render_chat

    msgs = ([{"role": "system", "content": system}] if system else []) + list(messages)
    if not msgs:
        raise WorkbenchError("nothing to answer: the conversation is empty")
    return render_chat(tok, msgs, add_generation_prompt=True)


class ModelCache:
    """Loaded checkpoints, the most recent `size` kept, shared by the Playground's requests (thread-safe).
    Keyed by the resolved checkpoint and its files' modification times, so a re-written one is re-read."""

    def __init__(self, device: str = "auto", size: int = 6):
        self.device, self.size = device, size
        self._models: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, spec: str):
        from workbench.train.checkpoint import checkpoint_kind, resolve_checkpoint

        if not str(spec).strip():
            raise WorkbenchError("no checkpoint given: type a run directory or a checkpoint path")
        path = resolve_checkpoint(str(spec).strip())
        stamp = tuple(f.stat().st_mtime_ns for f in sorted(path.iterdir()) if f.is_file())
        return path, checkpoint_kind(path), stamp

    def _get(self, spec: str, want: str):
        from workbench.train.engine import resolve_device

        path, kind, stamp = self._key(spec)
        if kind != want:
            raise WorkbenchError(kind_message(spec, path, kind, want))
        key = (str(path), stamp)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            device = resolve_device(self.device)
            if want == "policy":
                from workbench.model.checkpoint import load_checkpoint, load_checkpoint_tokenizer

                model, _ = load_checkpoint(path, device=device)
                loaded = LanguageModel(model.eval(), load_checkpoint_tokenizer(path), path, label(spec, path))
            else:
                from workbench.eval.evaluate import reward_scorer
                from workbench.model.checkpoint import load_checkpoint_tokenizer
                from workbench.train.models import load_reward_model

                model, meta, _ = load_reward_model(str(path), device, what="reward model")
                loaded = RewardModel(reward_scorer(model, meta), load_checkpoint_tokenizer(path), path, label(spec, path))
            self._models[key] = loaded
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return loaded

    def language_model(self, spec: str) -> LanguageModel:
        return self._get(spec, "policy")

    def reward_model(self, spec: str) -> "RewardModel":
        return self._get(spec, "reward")


def label(spec: str, path: Path) -> str:
    """A short name for a checkpoint: its run's name (and step when it is not the latest)."""
    p = Path(path)
    if p.parent.name == "checkpoints":
        run = p.parent.parent.name
        return run if Path(spec).resolve() == p.parent.parent.resolve() else f"{run}@{p.name.removeprefix('step-').lstrip('0') or '0'}"
    return p.name


@dataclass
class Reply:
    text: str = ""
    tokens: list[int] = field(default_factory=list)  # new tokens, the stop token included
    finished: bool = False  # ended with the stop token (not cut by max_new_tokens)
    cancelled: bool = False


class ReplyStream:
    """Iterate for the reply's text pieces as they are sampled; `.reply` holds the whole of it after."""

    def __init__(self, lm: LanguageModel, prompt_ids: list[int], sampling, chat: bool = True, cancelled=None):
        self.lm, self.prompt_ids, self.sampling, self.chat = lm, prompt_ids, sampling, chat
        self.cancelled = cancelled or (lambda: False)
        self.reply = Reply()

    def __iter__(self):
        from workbench.model.generate import TextDecoder, stream

        stop = self.lm.stop_ids(self.chat)
        decoder = TextDecoder(self.lm.tok, skip_ids=stop)
        for nxt, _, done in stream(self.lm.model, [self.prompt_ids], self.sampling, stop_ids=stop,
                                   pad_id=self.lm.tok.pad_id):
            if bool(done[0]):
                break
            token = int(nxt[0])
            self.reply.tokens.append(token)
            if token in stop:
                self.reply.finished = True
            piece = decoder.push(token)
            self.reply.text += piece
            if piece:
                yield piece
            if self.reply.finished:
                break
            if self.cancelled():
                self.reply.cancelled = True
                return
        tail = decoder.flush()
        self.reply.text += tail
        if tail:
            yield tail


@torch.no_grad()
def mean_logprob(model, prompt_ids: list[int], tokens: list[int]) -> float | None:
    """Mean log p(token) per answer token under the model at temperature 1 (None for an empty answer)."""
    if not tokens:
        return None
    ids = torch.tensor([prompt_ids + tokens], device=next(model.parameters()).device)
    logits = model(ids).logits[0, len(prompt_ids) - 1:-1].float()
    logits[:, model.cfg.vocab_size:] = float("-inf")
    logp = logits.log_softmax(-1).gather(1, ids[0, len(prompt_ids):, None])[:, 0]
    return float(logp.mean())


# ------------------------------------------------------------------------------------ compare
def expand_specs(text: str) -> tuple[list[tuple[str | None, str]], str | None]:
    """"a b c" (space-separated run dirs or checkpoints; a pipeline root stands for its report rows) ->
    ([(label or None, spec)], a note on what was left out). At most MAX_COMPARE: more named one by one is
    an error; a pipeline root's rows past the limit are left out, and the note says which."""
    out, note = [], None
    for spec in text.split():
        path = Path(spec).expanduser()
        rows = pipeline_rows(path) if path.is_dir() else None
        if rows and len(out) + len(rows) > MAX_COMPARE:
            keep = max(MAX_COMPARE - len(out), 0)
            note = (f"compared {MAX_COMPARE} at most: left out {', '.join(lab for lab, _ in rows[keep:])} "
                    f"(name its run dir to compare it)")
            rows = rows[:keep]
        out.extend(rows if rows is not None else [(None, spec)])
    if not out:
        raise WorkbenchError(f"give 1 to {MAX_COMPARE} checkpoints (run dirs, space-separated) or a pipeline root")
    if len(out) > MAX_COMPARE:
        names = ", ".join(spec for _, spec in out)
        raise WorkbenchError(f"{len(out)} checkpoints ({names}): compare at most {MAX_COMPARE} at once")
    return out, note


def pipeline_rows(root: Path) -> list[tuple[str, str]] | None:
    """A pipeline root's report rows that exist, [(label, run dir)] (None when `root` is not one)."""
    import json

    from workbench.io import read_yaml

    rows = None
    report = root / "report.json"
    recipe = root / "recipe.yaml"
    try:
        if report.is_file():
            rows = [(r["label"], r["stage"]) for r in json.loads(report.read_text(encoding="utf-8"))["rows"]]
        elif recipe.is_file():
            rows = list((((read_yaml(recipe) or {}).get("report") or {}).get("rows") or {}).items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, WorkbenchError) as e:
        raise WorkbenchError(f"{report if report.is_file() else recipe}: cannot read the pipeline's rows ({e})") from None
    if rows is None:
        return None
    found = [(str(lab), str(root / name)) for lab, name in rows if (root / str(name) / "checkpoints").is_dir()]
    if not found:
        raise WorkbenchError(f"{root}: a pipeline root, but none of its rows ({', '.join(str(n) for _, n in rows)}) "
                             f"has a checkpoint yet")
    return found


def pipeline_reward_model(root) -> str | None:
    """The run dir of a pipeline root's first reward-model stage that has a checkpoint (None without one)."""
    from workbench.io import read_yaml

    root = Path(root)
    try:
        stages = ((read_yaml(root / "recipe.yaml") or {}).get("stages") or {}) if (root / "recipe.yaml").is_file() else {}
        names = [name for name, s in stages.items() if isinstance(s, dict) and s.get("stage") == "rm"]
    except (WorkbenchError, OSError, AttributeError):
        return None
    return next((str(root / n) for n in names if (root / n / "checkpoints").is_dir()), None)


def answer_task(answer: str | None, prompt: str, known: dict | None = None) -> dict | None:
    """The task to check replies against: a typed expected answer, else the prompt's own, if it is known."""
    if answer and answer.strip():
        return {"type": "other", "answer": answer.strip()}
    return (known or {}).get(" ".join(prompt.split()))


def known_tasks(files) -> dict:
    """{prompt text (whitespace-normalised): task} from prompt files with answers (the sample world's)."""
    import json

    from workbench.eval.metrics import task_of

    out = {}
    for f in files:
        try:
            lines = Path(f).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                rec = json.loads(line)
                task = task_of(rec)
            except (ValueError, AttributeError, TypeError):
                continue
            prompt = rec.get("prompt")
            if task and isinstance(prompt, str):
                out[" ".join(prompt.split())] = task
    return out


def compare(cache: ModelCache, specs: list[tuple[str | None, str]], prompt: str, sampling, *, system=None,
            rm: str | None = None, task: dict | None = None, chat: bool = True, cancelled=None, on_piece=None,
            on_answer=None) -> list[dict]:
    """Answer `prompt` with each checkpoint in turn. One dict per checkpoint: label, checkpoint, text,
    length, finished, mean_logprob, rm_score, correct; or label, checkpoint, error when it cannot answer.
    `on_piece(i, piece)` streams answer i; `on_answer(i, result)` gets each one as it is done."""
    from dataclasses import replace

    from workbench.eval.metrics import is_correct

    cancelled = cancelled or (lambda: False)
    scorer, rm_error = None, None
    if rm and rm.strip():
        try:
            scorer = cache.reward_model(rm)
        except WorkbenchError as e:  # the answers are still worth seeing, without scores
            rm_error = str(e)
    if sampling.seed is None:  # one seed for every checkpoint, so a difference is the model's
        sampling = replace(sampling, seed=int(torch.randint(0, 2**31 - 1, ()).item()))
    results = []
    for i, (name, spec) in enumerate(specs):
        if cancelled():
            break
        try:
            lm = cache.language_model(spec)
            ids = lm.chat_ids([{"role": "user", "content": prompt}], system) if chat else lm.tok.encode(prompt)
            if not ids:
                raise WorkbenchError("the prompt is empty")
            stream = ReplyStream(lm, ids, sampling, chat=chat, cancelled=cancelled)
            for piece in stream:
                if on_piece:
                    on_piece(i, piece)
            r = stream.reply
            out = {"label": name or lm.label, "checkpoint": str(lm.path), "text": r.text, "length": len(r.tokens),
                   "finished": r.finished, "cancelled": r.cancelled,
                   "mean_logprob": mean_logprob(lm.model, ids, r.tokens),
                   "rm_score": None, "rm_error": rm_error, "correct": is_correct(task, r.text) if task else None}
            if scorer is not None and not r.cancelled:
                try:
                    out["rm_score"] = score_reply(scorer, lm.tok, ids, r.tokens, r.finished)
                except WorkbenchError as e:  # this column keeps its answer; only the score is missing
                    out["rm_error"] = str(e)
        except WorkbenchError as e:
            out = {"label": name or Path(spec).name, "checkpoint": spec, "error": str(e)}
        results.append(out)
        if on_answer:
            on_answer(i, out)
    return results


# ------------------------------------------------------------------------------------ score
@dataclass
class RewardModel:
    scorer: object  # workbench.eval.evaluate.RewardScorer
    tok: object
    path: Path
    label: str


def score_reply(rm: RewardModel, tok, prompt_ids: list[int], tokens: list[int], finished: bool) -> float:
    """The reward model's normalised score of a generated reply, exactly as `workbench eval --rm` and PPO
    score it: the model's own tokens, + the newline after <|im_end|> only when the reply finished."""
    from workbench.train.ppo import same_tokenizer

    if not same_tokenizer(rm.tok.describe(), tok.describe()):
        raise WorkbenchError(f"the reward model reads another tokenizer ({rm.tok.name}) than this model "
                             f"({tok.name}): pick a reward model of the same lineage")
    if not tokens:
        raise WorkbenchError("no answer to score")
    sep = tok.encode("\n") if finished else []
    row = prompt_ids + tokens + sep
    max_len = rm.scorer.model.backbone.cfg.max_seq_len
    if len(row) > max_len:
        raise WorkbenchError(f"prompt + answer is {len(row)} tokens, longer than the reward model's context of {max_len}")
    with torch.no_grad():
        raw = rm.scorer.raw(tok, [row], [(len(prompt_ids), len(prompt_ids) + len(tokens))])
    return float(rm.scorer.normalise(raw)[0])


def score_responses(rm: RewardModel, prompt: str, responses: list[str], system: str | None = None) -> dict:
    """{"scores": normalised as `workbench eval` reports, "raw": the model's own, "p_first": Bradley-Terry
    P(response 1 preferred over response 2) = sigmoid(raw1 - raw2) (None for a single response)}."""
    from workbench.chat import render_chat

    if not prompt.strip():
        raise WorkbenchError("the prompt is empty")
    if any(not r.strip() for r in responses):
        raise WorkbenchError("a response is empty")
    head = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    rows, spans = [], []
    for r in responses:
        rendered = render_chat(rm.tok, head + [{"role": "assistant", "content": r}], mode="last")
        trained = [i for i, lab in enumerate(rendered.labels) if lab != -100]  # the answer and its <|im_end|>
        rows.append(rendered.input_ids)
        spans.append((trained[0], trained[-1] + 1))
    max_len = rm.scorer.model.backbone.cfg.max_seq_len
    if max(len(r) for r in rows) > max_len:
        raise WorkbenchError(f"prompt + response is {max(len(r) for r in rows)} tokens, longer than the reward "
                             f"model's context of {max_len}")
    with torch.no_grad():
        raw = rm.scorer.raw(rm.tok, rows, spans)
    scores = rm.scorer.normalise(raw)
    p = None
    if len(responses) == 2:
        p = 1.0 / (1.0 + math.exp(-(float(raw[0]) - float(raw[1]))))
    return {"scores": [float(s) for s in scores], "raw": [float(s) for s in raw], "p_first": p,
            "normalised": (rm.scorer.mean, rm.scorer.std) != (0.0, 1.0)}
