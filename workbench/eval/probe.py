"""What a model would say next: the top-k next tokens after a text, with their probabilities.

    from workbench.eval.probe import probe
    p = probe("runs/sft", "Which kingdom is Varnholt in?", top_k=5, chat=True)
    p["top"][0]   # {"id": 412, "token": "Var", "prob": 0.83, "logprob": -0.19}

Plain: the text's tokens as they are (a base model continues them). `chat=True`: the text as one
ChatML user turn followed by the assistant's generation prompt, so the distribution is that of the
first token of the answer. Probabilities are those the sampler draws from at temperature 1: over
the tokenizer's vocabulary without `<|pad|>` and the padding columns, sorted, highest first.
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError


def probe(ckpt, text: str, *, top_k: int = 10, chat: bool = False, device: str = "auto") -> dict:
    """{"checkpoint", "text", "chat", "prompt_tokens", "top": [{"id", "token", "prob", "logprob"}, ...]}."""
    from workbench.train.checkpoint import resolve_checkpoint
    from workbench.train.engine import resolve_device
    from workbench.train.models import load_parent

    if top_k < 1:
        raise WorkbenchError(f"top_k must be at least 1, got {top_k}")
    path = resolve_checkpoint(ckpt)
    model, tok, _ = load_parent(str(path), "policy", resolve_device(device), what="checkpoint")
    return {"checkpoint": str(path), **probe_model(model, tok, text, top_k=top_k, chat=chat)}


@torch.no_grad()
def probe_model(model, tok, text: str, *, top_k: int = 10, chat: bool = False, answer: str = "") -> dict:
    """`probe` on a model already loaded (the TUI's Playground keeps it): {"text", "chat", "prompt_tokens", "top"}.
    In chat mode, `answer` is the start of the assistant's reply: the distribution is that of its next token."""
    from workbench.model.generate import encode_prompt

    if top_k < 1:
        raise WorkbenchError(f"top_k must be at least 1, got {top_k}")
    ids = encode_prompt(tok, text, chat=chat) + (tok.encode(answer) if chat and answer else [])
    cfg = model.cfg
    if len(ids) > cfg.max_seq_len:
        raise WorkbenchError(f"the text is {len(ids)} tokens, longer than the model's context of {cfg.max_seq_len}")
    x = torch.tensor([ids], device=next(model.parameters()).device)
    logits = model(x, logits_to_keep=1).logits[0, -1].float()
    logits[cfg.vocab_size:] = float("-inf")  # the same tokens generate() can never sample
    logits[tok.pad_id] = float("-inf")
    logp = logits.log_softmax(-1)
    values, indices = logp.topk(min(top_k, cfg.vocab_size - 1))
    top = [{"id": int(i), "token": tok.token_str(int(i)), "prob": float(v.exp()), "logprob": float(v)}
           for v, i in zip(values, indices)]
    return {"text": text, "chat": chat, "prompt_tokens": len(ids), "top": top}
