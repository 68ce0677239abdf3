"""`evaluate_checkpoint`: every metric of one checkpoint on held-out text, prompts and preference pairs.

    from workbench.eval.evaluate import evaluate_checkpoint
    r = evaluate_checkpoint("runs/ppo", prompts="sample_data/prompts.jsonl", ref="runs/sft", rm="runs/rm")
    r["greedy"]["compliance"], r["sampled"]["kl_ref"], r["answers"][0]["greedy"]

What is measured (rates are fractions in [0, 1]; see workbench/eval/metrics.py for the definitions):

- text: next-token loss and perplexity over the documents packed into windows of `text_window`
  tokens (default min(256, max_seq_len - 1)), `<|endoftext|>` between them, as pretraining reads them.
- prompts (a prompt file, or the prompts of a chat or preference file): each is rendered as ChatML
  with the assistant's generation prompt and answered twice, greedily and sampled at temperature 1
  with `samples_seed`, with at most `max_new_tokens` new tokens, stopping at <|im_end|>. Generation
  is batched (left-padded, KV cache), prompts grouped by length. Per decoding: compliance, eos and
  <|im_start|> rates, accuracy (overall and by task type) and the true reward where the record has
  an answer (a reply has ended its turn when it is compliant), length, rude and refusal rates; with `ref` the KL to it and with `rm` the reward model's
  mean score on these very answers.
- KL (`ref`, a language model): per answer the sum over its tokens of log p_model - log p_ref at
  temperature 1, in nats, averaged over answers. On the sampled answers this estimates
  KL(model || ref); on the greedy ones it is the log-likelihood ratio of the greedy answer.
- RM score (`rm`): the reward model reads prompt + answer (+ the `\\n` after a finished answer's
  <|im_end|>, the form it was trained on, as PPO scores rollouts), normalised by the model's
  `reward_stats` when it has them (then it is the number PPO logs as val/score).
- pairs: the accuracy of a reward model (`ckpt` itself when it is one, else `rm`) at scoring chosen
  above rejected, overall and by the records' `rejected_kind`, and the mean margin.

`limit` keeps the first N records of each file. Bad files and records raise WorkbenchError naming file
and line; with `skip_bad` bad records are skipped instead, and `result["skipped"]` says how many, per file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from workbench.errors import WorkbenchError
from workbench.eval.metrics import Reply, pairwise, sequence_kl, summarize, task_of

# Prompts per generation batch. A batch decodes until its last answer ends, so smaller batches let the
# finished ones stop early: on a 2-core CPU 64 beat 128 and 256 for an SFT model.
BATCH = 64
SCORE_BATCH = 64  # rows per forward when scoring: pairs, text windows, reference log-probs, RM scores
TEMPERATURE = 1.0  # the sampled answers: the model's own distribution, untruncated
NOTHING = ("nothing to evaluate: give --prompts FILE (generation metrics), --text FILE (loss and perplexity) "
           "or --pairs FILE (reward-model accuracy); --ref CKPT and --rm CKPT add KL and reward scores to --prompts")


@dataclass
class RewardScorer:
    """A reward model and the statistics its scores are normalised by (0, 1 when it has none)."""

    model: object  # ScalarHeadModel
    mean: float = 0.0
    std: float = 1.0

    def answers(self, tok, prompts: list[list[int]], g) -> torch.Tensor:
        """[B] normalised scores of prompt + answer (+ the separator after a finished answer)."""
        sep = tok.encode("\n")
        rows = [p + t + (sep if done else []) for p, t, done in zip(prompts, g.tokens, g.finished)]
        answer = [(len(p), len(p) + len(t)) for p, t in zip(prompts, g.tokens)]  # the response's tokens
        return self.normalise(self.raw(tok, rows, answer))

    def raw(self, tok, rows: list[list[int]], answer: list[tuple[int, int]]) -> torch.Tensor:
        """[B] raw scores of token rows; `answer[i]` = (start, end) of row i's response tokens (what
        a `score_logprob` model reads the likelihood of)."""
        dev = next(self.model.parameters()).device
        raw = []
        for s in range(0, len(rows), SCORE_BATCH):
            ids, mask = _right_pad(rows[s:s + SCORE_BATCH], tok.pad_id, dev)
            labels = torch.full_like(ids, -100)
            for i, (a, b) in enumerate(answer[s:s + SCORE_BATCH]):
                labels[i, a:b] = ids[i, a:b]
            raw.append(self.model.score(ids, mask, labels)[0])
        return torch.cat(raw).float()

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.mean) / self.std


@dataclass
class Prompt:
    text: str  # the last user message, for the report
    ids: list[int]  # ChatML prompt + generation prompt
    task: dict | None


def evaluate_checkpoint(ckpt, *, prompts=None, pairs=None, text=None, ref=None, rm=None, max_new_tokens=64,
                        samples_seed=0, device="auto", limit=None, progress=None, text_window=None,
                        decodings=("greedy", "sampled"), skip_bad=False) -> dict:
    """One JSON-able dict of metrics for `ckpt` (a checkpoint or a run directory: its latest).
    `decodings` answers the prompts greedily, sampled, or both (a caller that reads one saves the other).

    `progress(task, done, total)` is called as work completes (task: text, greedy, sampled, pairs)."""
    from workbench.train.checkpoint import checkpoint_kind, resolve_checkpoint
    from workbench.train.engine import resolve_device

    if not (prompts or pairs or text):
        raise WorkbenchError(NOTHING)
    if max_new_tokens < 1:
        raise WorkbenchError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if limit is not None and limit < 1:
        raise WorkbenchError(f"limit must be at least 1, got {limit}")
    if text_window is not None and text_window < 1:
        raise WorkbenchError(f"text_window must be at least 1, got {text_window}")
    report = progress or (lambda task, done, total: None)
    read = _Reader(limit, skip_bad)
    dev = resolve_device(device)
    path = resolve_checkpoint(ckpt)
    kind = checkpoint_kind(path)
    result = {"checkpoint": str(path), "kind": "reward_model" if kind == "reward" else "lm"}
    with torch.no_grad():
        if kind == "reward":
            given = (("--prompts", prompts), ("--text", text), ("--ref", ref), ("--rm", rm))
            lm_flags = [flag for flag, v in given if v]
            if lm_flags:
                raise WorkbenchError(f"{ckpt} is a reward model: {', '.join(lm_flags)} measure a language model. "
                                     f"Evaluate it with --pairs FILE, or pass it as --rm of a language model")
            from workbench.model.checkpoint import load_checkpoint_tokenizer
            from workbench.train.models import load_scalar_model

            scorer, _ = load_scalar_model(path, device=dev)
            result["pairs"] = pair_metrics(scorer, load_checkpoint_tokenizer(path), pairs, read, report)
            result["answers"] = []
            return read.noted(result)
        if kind != "policy":
            raise WorkbenchError(f"{ckpt} is a {kind} model (e.g. a PPO critic), not a language model or reward model")
        if pairs and not rm:
            raise WorkbenchError(f"--pairs needs a reward model to score them: {ckpt} is a language model; "
                                 f"pass --rm RM_CHECKPOINT, or evaluate the reward model itself with --pairs")
        from workbench.train.models import load_parent, load_reward_model

        model, tok, _ = load_parent(str(path), "policy", dev, what="checkpoint")
        reference = scorer = None
        if ref:
            reference, _, ref_path = load_parent(ref, "policy", dev, what="--ref")
            _check_tokenizer(ref_path, tok, ref, "--ref")
        if rm:
            rm_model, rm_meta, rm_path = load_reward_model(rm, dev, what="--rm")
            _check_tokenizer(rm_path, tok, rm, "--rm")
            scorer = reward_scorer(rm_model, rm_meta)
        if text:
            result["text"] = text_metrics(model, tok, text, read, text_window, report)
        result["answers"] = []
        if prompts:
            items = load_prompts(prompts, tok, read, model.cfg.max_seq_len - max_new_tokens, max_new_tokens)
            for name in [d for d in ("greedy", "sampled") if d in decodings]:
                sampling = _sampling(name, max_new_tokens)
                replies, kl, scores = decode(model, tok, items, sampling, samples_seed, reference, scorer,
                                             lambda done, total, name=name: report(name, done, total))
                result[name] = summarize(replies, kl, scores)
                if name == "greedy":
                    result["answers"] = [{"prompt": p.text, "greedy": r.text,
                                          "answer": p.task["answer"] if p.task else None, "correct": r.correct}
                                         for p, r in zip(items, replies)]
        if pairs:
            result["pairs"] = pair_metrics(scorer.model, tok, pairs, read, report)
    return read.noted(result)


def _sampling(name: str, max_new_tokens: int):
    from workbench.model.generate import SamplingConfig

    if name == "greedy":
        return SamplingConfig(max_new_tokens=max_new_tokens, greedy=True)
    return SamplingConfig(max_new_tokens=max_new_tokens, temperature=TEMPERATURE)


def reward_scorer(model, meta: dict) -> RewardScorer:
    """A reward model with the statistics its checkpoint records (raw scores when it has none)."""
    stats = meta.get("extra", {}).get("reward_stats") or {}
    return RewardScorer(model, float(stats["mean"]), float(stats["std"])) if _valid_stats(stats) else RewardScorer(model)


def _valid_stats(stats: dict) -> bool:
    ok = all(isinstance(stats.get(k), (int, float)) for k in ("mean", "std"))
    return ok and stats["std"] > 0


def _check_tokenizer(path, tok, spec, flag) -> None:
    """--ref and --rm must read the same token ids as the evaluated model."""
    from workbench.model.checkpoint import load_checkpoint_tokenizer
    from workbench.train.ppo import same_tokenizer

    other = load_checkpoint_tokenizer(path)
    if not same_tokenizer(other.describe(), tok.describe()):
        raise WorkbenchError(f"{flag} {spec}: its tokenizer ({other.name}) differs from the evaluated model's "
                             f"({tok.name}); compare models of one lineage")


# ---------------------------------------------------------------------- reading the data
class _Reader:
    """Reads the evaluation files: the first `limit` records of each. A bad record raises, or with
    `skip_bad` is skipped and counted per file; `noted` adds {file: {skipped, first}} to a result."""

    def __init__(self, limit: int | None = None, skip_bad: bool = False):
        self.limit, self.skip_bad, self.skipped = limit, skip_bad, {}

    def records(self, spec: str, kinds: tuple[str, ...], need: str):
        """(source, [(index, normalised record)]) of a file whose kind is one of `kinds`."""
        from workbench.data.loading import open_source, read_records

        src = open_source(spec, skip_bad=self.skip_bad)
        if src.kind not in kinds:
            raise WorkbenchError(f"{spec}: {need}, but the data is {src.format} ({src.kind})")
        recs = list(read_records(src, skip_bad=self.skip_bad, limit=self.limit))
        s = src.summary
        for reason, n in (s.skipped + s.unreadable).items():
            self._count(spec, s.first_skipped[reason], n)
        if not recs:
            raise WorkbenchError(f"{spec}: no records to evaluate ({s.describe()})")
        return src, recs

    def bad(self, spec: str, message: str) -> None:
        """A record the evaluation cannot use: raise, or with skip_bad count it and go on."""
        if not self.skip_bad:
            raise WorkbenchError(message + " (--skip-bad skips such records)")
        self._count(spec, message, 1)

    def _count(self, spec: str, message: str, n: int) -> None:
        note = self.skipped.setdefault(spec, {"skipped": 0, "first": []})
        note["skipped"] += n
        if len(note["first"]) < 3:
            note["first"].append(message)

    def noted(self, result: dict) -> dict:
        if self.skipped:
            result["skipped"] = self.skipped
        return result


def load_prompts(spec: str, tok, read: _Reader, max_len: int, max_new_tokens: int) -> list[Prompt]:
    """Prompts to answer: a prompt file, or the conversation before a chat's last assistant turn, or
    a pair's prompt. Each keeps its task (answer, type) when the record has one."""
    from workbench.data.collate import encode_records

    if max_len < 1:
        raise WorkbenchError(f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt in the model's context")
    src, recs = read.records(spec, ("prompt", "conversation", "preference"),
                             "--prompts needs prompts, conversations or preference pairs")
    messages, tasks = [], []
    for index, rec in recs:
        where = src.locate(index)
        if "messages" in rec:
            msgs = rec["messages"]
            msgs = msgs[:max(i for i, m in enumerate(msgs) if m["role"] == "assistant")]
        else:
            msgs = rec["prompt"]
        if not any(m["role"] == "user" for m in msgs):
            read.bad(spec, f"{where}: no user message before the reply to evaluate")
            continue
        try:
            tasks.append(task_of(rec.get("meta", {})))
        except ValueError as e:
            read.bad(spec, f"{where}: {e}")
            continue
        messages.append(msgs)
    if not messages:
        raise WorkbenchError(f"{spec}: no prompt left to answer ({read.skipped[spec]['skipped']} bad records skipped)")
    encoded = encode_records(tok, "prompt", [{"prompt": m} for m in messages], max_len=max_len)
    return [Prompt(next(m["content"] for m in reversed(msgs) if m["role"] == "user"), ex.rendered.input_ids, task)
            for msgs, ex, task in zip(messages, encoded, tasks)]


# ---------------------------------------------------------------------- generation metrics
def decode(model, tok, items: list[Prompt], sampling, seed: int, reference=None, scorer=None, progress=None):
    """(replies, per-answer KL to `reference` or None, per-answer RM scores or None), in `items` order.

    Prompts are sorted by length so each batch pads little; batch b samples with seed (seed, b)."""
    from workbench.model.generate import generate

    n = len(items)
    order = sorted(range(n), key=lambda i: len(items[i].ids))
    replies, kls, scores = [None] * n, [None] * n, [None] * n
    specials = tok.special_ids
    for b, start in enumerate(range(0, n, BATCH)):
        idx = order[start:start + BATCH]
        run = sampling if sampling.is_greedy else replace(sampling, seed=seed * 1_000_003 + b)
        g = generate(model, [items[i].ids for i in idx], run, stop_ids=[tok.im_end_id], pad_id=tok.pad_id)
        for j, i in enumerate(idx):
            toks = g.tokens[j]
            cut = next((k for k, t in enumerate(toks) if t in specials), len(toks))
            replies[i] = Reply(tok.decode(toks[:cut]), g.finished[j], tok.im_start_id in toks, len(toks), items[i].task)
        if reference is not None:
            for i, v in zip(idx, answer_kl(reference, g, tok.pad_id).tolist()):
                kls[i] = v
        if scorer is not None:
            for i, v in zip(idx, scorer.answers(tok, [items[i].ids for i in idx], g).tolist()):
                scores[i] = v
        if progress is not None:
            progress(min(start + BATCH, n), n)
    return replies, (kls if reference is not None else None), (scores if scorer is not None else None)


def answer_kl(reference, g, pad_id: int) -> torch.Tensor:
    """[B] sum over each generated answer's tokens of log p_model - log p_ref (temperature 1).

    log p_model is the sampler's own (generate() returns it, at temperature 1 for greedy decoding too);
    the reference recomputes its log-probs of the same tokens, SCORE_BATCH rows per forward."""
    from workbench.train.ppo import response_logprobs

    seqs, P, rmask = g.sequences, g.prompt_len, g.response_mask
    attn = torch.cat([seqs[:, :P] != pad_id, rmask], dim=1).long()  # prompt text never encodes to pad
    prompt = torch.zeros((rmask.shape[0], P), dtype=torch.bool, device=rmask.device)
    labels = torch.where(torch.cat([prompt, rmask], 1), seqs, -100)
    ref_lp = torch.cat([response_logprobs(reference, seqs[s:s + SCORE_BATCH], labels[s:s + SCORE_BATCH],
                                          attn[s:s + SCORE_BATCH], P, 1.0, pad_id)[0]
                        for s in range(0, len(seqs), SCORE_BATCH)])
    return sequence_kl(g.response_logprobs, ref_lp, rmask)


def _right_pad(rows: list[list[int]], pad_id: int, device):
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device)


# ---------------------------------------------------------------------- text and pairs
def text_metrics(model, tok, spec: str, read: _Reader, window, progress) -> dict:
    """Loss (nats per token) and perplexity of the documents of `spec`, packed into windows."""
    import math

    from workbench.data.collate import encode_records

    _, recs = read.records(spec, ("text",), "--text needs plain text (.txt, or .jsonl with a 'text' field)")
    stream = [t for ex in encode_records(tok, "text", [r for _, r in recs]) for t in ex.rendered.input_ids]
    ctx = model.cfg.max_seq_len
    if window is not None and window + 1 > ctx:  # a window of W predictions reads W + 1 tokens
        raise WorkbenchError(f"text_window {window} does not fit the model's context of {ctx} tokens "
                             f"(at most {ctx - 1}): beyond it the loss measures positions it never trained on")
    W = window or min(256, ctx - 1)
    starts = list(range(0, max(len(stream) - 1, 0), W))  # window s predicts stream[s+1 .. s+W]
    if not starts:
        raise WorkbenchError(f"{spec}: fewer than two tokens of text")
    dev = next(model.parameters()).device
    total, count = 0.0, 0
    # full windows are batched; the shorter last window goes alone (no padding needed)
    groups = [g for g in (starts[:-1], starts[-1:]) if g]
    done = 0
    for group in groups:
        for s in range(0, len(group), SCORE_BATCH):
            rows = torch.tensor([stream[a:a + W + 1] for a in group[s:s + SCORE_BATCH]], device=dev)
            out = model(rows, labels=rows)
            total += float(out.lm_loss) * out.n_tokens
            count += out.n_tokens
            done += len(rows)
            progress("text", done, len(starts))
    loss = total / count
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "tokens": count}


def pair_metrics(scorer, tok, spec: str, read: _Reader, progress) -> dict:
    """Pairwise accuracy of `scorer` on the preference pairs of `spec`, by `rejected_kind`."""
    from workbench.data.collate import encode_records

    src, recs = read.records(spec, ("preference",), "--pairs needs preference pairs (prompt, chosen, rejected)")
    examples = encode_records(tok, "preference", [r for _, r in recs], [i for i, _ in recs],
                              max_len=scorer.backbone.cfg.max_seq_len)
    kinds_of = {i: r.get("meta", {}).get("rejected_kind") for i, r in recs}
    kept = [e for e in examples if not e.dropped]
    if not kept:
        raise WorkbenchError(f"{spec}: no pair left to score ({len(examples)} read, none with a response "
                             f"inside the reward model's {scorer.backbone.cfg.max_seq_len}-token context)")
    dev = next(scorer.parameters()).device
    chosen, rejected = [], []
    for s in range(0, len(kept), SCORE_BATCH):
        batch = kept[s:s + SCORE_BATCH]
        halves = [e.chosen for e in batch] + [e.rejected for e in batch]
        ids, mask = _right_pad([h.input_ids for h in halves], tok.pad_id, dev)
        labels = _right_pad([h.labels for h in halves], -100, dev)[0]
        scores, _ = scorer.score(ids, mask, labels)
        chosen += scores[:len(batch)].tolist()
        rejected += scores[len(batch):].tolist()
        progress("pairs", s + len(batch), len(kept))
    return pairwise(chosen, rejected, [kinds_of[e.index] for e in kept])

