"""Cross-entropy through the output head without materialising [tokens, vocab] logits.

With cl100k's 100k vocabulary, 4,096 tokens of fp32 logits are 1.6 GB, and autograd keeps that
several times over (logits, log-softmax, their gradients). Here the head matmul, log-sum-exp and
the gradient are done a chunk of tokens at a time: the forward keeps only one log-sum-exp per
token; the backward recomputes each chunk's logits (one extra matmul) and accumulates the
gradients of the hidden states and of the head weight. Log-softmax is always in fp32.

    nll = linear_cross_entropy(h, W, targets)      # [N] per-token -log p(target), differentiable
    loss, n = causal_lm_loss(hidden, W, labels)    # labels aligned with input_ids, -100 ignored

Only positions with a label are pushed through the head at all (for SFT that skips the prompt).
Columns at or past `vocab_limit` (the padding that rounds the vocabulary up to a multiple of 128)
get -inf: they are never predicted and receive no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100
_CHUNK_ELEMENTS = 1 << 25  # ~128 MB of fp32 logits per chunk


def default_chunk(vocab: int) -> int:
    return max(16, _CHUNK_ELEMENTS // vocab)


def _chunk_logits(h, W, vocab_limit, scale):
    logits = (h @ W.t()).float()
    if scale != 1.0:
        logits = logits * scale
    if vocab_limit < W.shape[0]:
        logits[:, vocab_limit:] = float("-inf")
    return logits


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, h, W, targets, vocab_limit, chunk, scale):
        nll = torch.empty(h.shape[0], device=h.device, dtype=torch.float32)
        lse = torch.empty_like(nll)
        for s in range(0, h.shape[0], chunk):
            logits = _chunk_logits(h[s:s + chunk], W, vocab_limit, scale)
            target = logits.gather(1, targets[s:s + chunk, None])[:, 0]
            # log-sum-exp in place: on CPU every fresh [chunk, V] temporary costs page faults
            m = logits.amax(dim=-1)
            lse[s:s + chunk] = logits.sub_(m[:, None]).exp_().sum(-1).log_().add_(m)
            nll[s:s + chunk] = lse[s:s + chunk] - target
        ctx.save_for_backward(h, W, targets, lse)
        ctx.vocab_limit, ctx.chunk, ctx.scale = vocab_limit, chunk, scale
        return nll

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_nll):
        h, W, targets, lse = ctx.saved_tensors
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        grad_W = torch.zeros(W.shape, device=W.device, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for s in range(0, h.shape[0], ctx.chunk):
            hc = h[s:s + ctx.chunk]
            # d nll / d logits = softmax - onehot; times the incoming gradient and the logit scale
            p = _chunk_logits(hc, W, ctx.vocab_limit, ctx.scale).sub_(lse[s:s + ctx.chunk, None]).exp_()
            p[torch.arange(p.shape[0], device=p.device), targets[s:s + ctx.chunk]] -= 1
            p *= grad_nll[s:s + ctx.chunk, None] * ctx.scale
            p = p.to(hc.dtype)
            if grad_h is not None:
                grad_h[s:s + ctx.chunk] = p @ W.to(hc.dtype)
            if grad_W is not None:
                if hc.dtype == grad_W.dtype:
                    grad_W.addmm_(p.t(), hc)  # no [V, d] temporary per chunk
                else:
                    grad_W += (p.t() @ hc).float()
        return grad_h, (grad_W.to(W.dtype) if grad_W is not None else None), None, None, None, None


def linear_cross_entropy(h, W, targets, *, vocab_limit: int | None = None, chunk: int | None = None,
                         temperature: float = 1.0) -> torch.Tensor:
    """Per-token -log softmax((h @ W.T) / temperature)[target], fp32, [N]. h [N, d], W [V, d], targets [N]."""
    V = W.shape[0]
    if h.shape[0] == 0:
        return h.new_zeros(0, dtype=torch.float32) + 0 * h.sum() + 0 * W.sum()  # keep the graph connected
    return _LinearCrossEntropy.apply(h, W, targets, vocab_limit or V, chunk or default_chunk(V), 1.0 / temperature)


def naive_cross_entropy(h, W, targets, *, vocab_limit: int | None = None, temperature: float = 1.0) -> torch.Tensor:
    """The textbook version (full logits), for tests and the memory benchmark."""
    logits = _chunk_logits(h, W, vocab_limit or W.shape[0], 1.0 / temperature)
    return F.cross_entropy(logits, targets, reduction="none")


def shifted_targets(hidden: torch.Tensor, labels: torch.Tensor):
    """Positions t whose next label labels[t+1] is trained: (hidden rows [N, d], targets [N], mask [B, T-1])."""
    mask = labels[:, 1:] != IGNORE
    return hidden[:, :-1][mask], labels[:, 1:][mask], mask


def causal_lm_loss(hidden, W, labels, *, vocab_limit=None, chunk=None):
    """Mean next-token loss over trainable positions and their count. Zero trainable -> loss 0, never NaN."""
    h, targets, _ = shifted_targets(hidden, labels)
    nll = linear_cross_entropy(h, W, targets, vocab_limit=vocab_limit, chunk=chunk)
    n = nll.shape[0]
    return nll.sum() / max(n, 1), n


def token_logprobs(hidden, W, labels, *, vocab_limit=None, chunk=None, temperature: float = 1.0):
    """log p(labels[t+1] | ..t) for every trainable position, 0 elsewhere: [B, T-1] fp32 (DPO, PPO)."""
    h, targets, mask = shifted_targets(hidden, labels)
    nll = linear_cross_entropy(h, W, targets, vocab_limit=vocab_limit, chunk=chunk, temperature=temperature)
    out = torch.zeros(mask.shape, device=hidden.device, dtype=torch.float32)
    return out.masked_scatter(mask, -nll), mask
