"""Sampling with a KV cache: batched left-padded prompts, greedy/temperature/top-k/top-p, stop tokens.

    from workbench.model.generate import generate, SamplingConfig
    gen = generate(model, [prompt_ids, other_ids], SamplingConfig(max_new_tokens=64, temperature=0.8),
                   stop_ids=[tok.im_end_id], pad_id=tok.pad_id)
    gen.tokens[i]      # new tokens of prompt i, up to and including its stop token
    gen.logprobs[i]    # log p(token) under softmax(logits / temperature), one per new token (PPO)

`stream(...)` yields each step's new tokens as they come (the CLI prints them as it goes).
Prompts are left-padded so every row's next token sits in the last column; the attention mask
hides the padding and positions count real tokens only, so a padded prompt decodes exactly like
an unpadded one. The padded vocabulary columns and `<|pad|>` are never sampled.

Log-probs are those of the *sampling policy before top-k/top-p truncation*, at the sampling
temperature (TRL's convention): the same number a trainer recomputes from logits / temperature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from workbench.errors import WorkbenchError
from workbench.model.attention import KVCache


MIN_TEMPERATURE = 1e-3


@dataclass
class SamplingConfig:
    max_new_tokens: int = 128
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    greedy: bool = False
    seed: int | None = None

    def validate(self) -> "SamplingConfig":
        if self.max_new_tokens < 1:
            raise WorkbenchError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not math.isfinite(self.temperature) or self.temperature < 0 or 0 < self.temperature < MIN_TEMPERATURE:
            # below MIN_TEMPERATURE, logits / T overflow float32 and sampling breaks; 0 means greedy
            raise WorkbenchError(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE:g}, got {self.temperature}")
        if self.top_k < 0:
            raise WorkbenchError(f"top_k must be 0 (off) or more, got {self.top_k}")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise WorkbenchError(f"top_p must be in (0, 1], got {self.top_p}")
        return self

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0


@dataclass
class Generation:
    tokens: list[list[int]] = field(default_factory=list)  # new tokens per prompt (stop token included)
    logprobs: list[list[float]] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)  # ended with a stop token (vs ran out of budget)
    # Tensors for trainers: sequences [B, P + N] (left-padded prompt + response, pad after a stop),
    # response_logprobs [B, N], response_mask [B, N] (True for generated tokens up to the stop).
    sequences: torch.Tensor | None = None
    prompt_len: int = 0
    response_logprobs: torch.Tensor | None = None
    response_mask: torch.Tensor | None = None


def left_pad(prompts: list[list[int]], pad_id: int, device=None):
    if not prompts or any(len(p) == 0 for p in prompts):
        raise WorkbenchError("every prompt needs at least one token")
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p)
        mask[i, P - len(p):] = 1
    return ids.to(device), mask.to(device)


def _filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.masked_fill(drop.scatter(1, idx, drop), float("-inf"))
    return logits


@torch.no_grad()
def stream(model, prompts: list[list[int]], sampling: SamplingConfig, stop_ids=(), pad_id: int = 0,
           device=None, state: dict | None = None):
    """Yield (new tokens [B], their log-probs [B], finished-before-this-step [B]) once per step."""
    sampling.validate()
    cfg = model.cfg
    device = device or next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device)
    B, P = ids.shape
    if P + sampling.max_new_tokens > cfg.max_seq_len:
        raise WorkbenchError(f"prompt ({P} tokens) + max_new_tokens ({sampling.max_new_tokens}) exceeds the model's "
                             f"context of {cfg.max_seq_len} tokens (max_seq_len); ask for at most "
                             f"{max(cfg.max_seq_len - P, 0)} new tokens")
    dtype = next(model.parameters()).dtype
    cache = KVCache(cfg, B, P + sampling.max_new_tokens, device=device, dtype=dtype)
    gen = torch.Generator(device=device)
    if sampling.seed is not None:
        gen.manual_seed(sampling.seed)
    else:
        gen.seed()
    banned = torch.zeros(cfg.padded_vocab, dtype=torch.bool, device=device)
    banned[cfg.vocab_size:] = True
    if 0 <= pad_id < cfg.vocab_size:
        banned[pad_id] = True
    stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    temperature = 1.0 if sampling.is_greedy else sampling.temperature

    was_training = model.training
    model.eval()
    try:
        logits = model(ids, attention_mask=mask, cache=cache, logits_to_keep=1).logits[:, -1]
        for _ in range(sampling.max_new_tokens):
            logits = logits.float().masked_fill(banned, float("-inf")) / temperature
            logp = logits.log_softmax(-1)
            if sampling.is_greedy:
                nxt = logits.argmax(-1)
            else:
                probs = _filter(logits, sampling.top_k, sampling.top_p).softmax(-1)
                nxt = torch.multinomial(probs, 1, generator=gen)[:, 0]
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            lp = torch.where(done, torch.zeros_like(logp[:, 0]), logp.gather(1, nxt[:, None])[:, 0])
            yield nxt, lp, done.clone()
            done = done | torch.isin(nxt, stops)
            if bool(done.all()):
                break
            mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
            logits = model(nxt[:, None], attention_mask=mask, cache=cache).logits[:, -1]
        if state is not None:
            state["prompt_ids"], state["done"] = ids, done
    finally:
        model.train(was_training)


def generate(model, prompts: list[list[int]], sampling: SamplingConfig | None = None, stop_ids=(),
             pad_id: int = 0, device=None) -> Generation:
    sampling = sampling or SamplingConfig()
    steps, lps, before = [], [], []
    state: dict = {}
    for nxt, lp, done in stream(model, prompts, sampling, stop_ids, pad_id, device, state):
        steps.append(nxt)
        lps.append(lp)
        before.append(done)
    toks, logp = torch.stack(steps, 1), torch.stack(lps, 1)
    resp_mask = ~torch.stack(before, 1)
    out = Generation(sequences=torch.cat([state["prompt_ids"], toks], dim=1), prompt_len=state["prompt_ids"].shape[1],
                     response_logprobs=logp, response_mask=resp_mask)
    for i in range(len(prompts)):
        n = int(resp_mask[i].sum())
        out.tokens.append(toks[i, :n].tolist())
        out.logprobs.append(logp[i, :n].tolist())
        out.finished.append(bool(state["done"][i]))
    return out


def encode_prompt(tok, text: str, chat: bool = False, system: str | None = None) -> list[int]:
    """Token ids for a prompt: raw text (a base model continues it) or one ChatML user turn + the
    assistant header (a chat model answers it; stop at <|im_end|>)."""
    if not chat:
        ids = tok.encode(text)
        if not ids:
            raise WorkbenchError("the prompt is empty")
        return ids
    from workbench.chat import render_chat

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return render_chat(tok, messages, add_generation_prompt=True).input_ids


class TextDecoder:
    """Turns a growing list of token ids into text pieces, holding back a token that ends halfway
    through a UTF-8 character until the rest of it arrives."""

    def __init__(self, tok, skip_ids=()):
        self.tok, self.skip, self.ids, self.sent = tok, set(skip_ids), [], 0

    def push(self, token: int) -> str:
        if token not in self.skip:
            self.ids.append(token)
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        piece, self.sent = text[self.sent:], len(text)
        return piece

    def flush(self) -> str:
        text = self.tok.decode(self.ids)
        piece, self.sent = text[self.sent:], len(text)
        return piece
