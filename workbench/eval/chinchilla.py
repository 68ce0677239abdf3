"""Chinchilla arithmetic (Hoffmann et al. 2022): how many parameters and tokens a compute budget wants.

    from workbench.eval.chinchilla import compute_optimal, standing, run_standing
    compute_optimal(flops=1e18)     # {"params": 9.1e7, "tokens": 1.8e9, "flops": 1e18, "tokens_per_param": 20}
    standing(params=6.8e6, tokens=4e6)          # where a training run sits against ~20 tokens per parameter
    run_standing("runs/pretrain")   # the same for a run: parameters from its config, tokens it has seen

The rules of thumb: training costs C ~ 6 N D FLOPs (N parameters, D tokens: 2 for the forward, 4 for
the backward, per parameter and token), and for a fixed C the loss is lowest near D ~ 20 N. So
N = sqrt(C / 120) and D = 20 N. Parameters are counted in total, embeddings included, as Chinchilla
counts them (for an MoE model that is every expert; `active_params` is given alongside).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from workbench.errors import WorkbenchError

TOKENS_PER_PARAM = 20.0
FLOPS_PER_PARAM_TOKEN = 6.0
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def parse_amount(text: str, what: str) -> float:
    """A positive number, optionally with a suffix: 6.8M, 2B, 1.5e21, 300k."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*", str(text), re.IGNORECASE)
    value = float(m.group(1)) * _SUFFIX[m.group(2).lower()] if m else float("nan")
    if not (math.isfinite(value) and value > 0):
        raise WorkbenchError(f"{what} must be a positive number such as 6.8M, 2B or 1e21, got {text!r}")
    return value


def compute_optimal(*, flops: float | None = None, params: float | None = None,
                    tokens: float | None = None) -> dict:
    """The compute-optimal (params, tokens, flops) from exactly one of the three."""
    given = [k for k, v in (("flops", flops), ("params", params), ("tokens", tokens)) if v is not None]
    if len(given) != 1:
        raise WorkbenchError("give exactly one of flops, params or tokens")
    if any(v is not None and not (math.isfinite(v) and v > 0) for v in (flops, params, tokens)):
        raise WorkbenchError(f"{given[0]} must be a positive number")
    if flops is not None:
        params = math.sqrt(flops / (FLOPS_PER_PARAM_TOKEN * TOKENS_PER_PARAM))
    elif tokens is not None:
        params = tokens / TOKENS_PER_PARAM
    tokens = TOKENS_PER_PARAM * params
    return {"params": params, "tokens": tokens, "flops": FLOPS_PER_PARAM_TOKEN * params * tokens,
            "tokens_per_param": TOKENS_PER_PARAM}


def verdict(tokens_per_param: float) -> str:
    if tokens_per_param < TOKENS_PER_PARAM / 2:
        return "under-trained: a smaller model would reach a lower loss with the same compute"
    if tokens_per_param > TOKENS_PER_PARAM * 2:
        return "past compute-optimal: more tokens per parameter than Chinchilla (cheap to run, costly to train)"
    return "about compute-optimal"


def standing(params: float, tokens: float) -> dict:
    """Where training `params` parameters on `tokens` tokens stands against Chinchilla's ~20 tokens/param."""
    if not (params > 0 and tokens >= 0):
        raise WorkbenchError(f"params must be positive and tokens non-negative, got {params}, {tokens}")
    flops = FLOPS_PER_PARAM_TOKEN * params * tokens
    best = compute_optimal(flops=flops) if flops > 0 else {"params": 0.0, "tokens": 0.0}
    ratio = tokens / params
    return {"params": params, "tokens": tokens, "flops": flops, "tokens_per_param": ratio,
            "optimal_tokens": TOKENS_PER_PARAM * params, "fraction_of_optimal_tokens": ratio / TOKENS_PER_PARAM,
            "compute_optimal_params": best["params"], "compute_optimal_tokens": best["tokens"],
            "verdict": verdict(ratio)}


def preset_standing(name: str, tokenizer: str | None = None, tokens: float | None = None) -> dict:
    """A preset (with the tokenizer's vocabulary): its optimal token count, or where `tokens` leaves it."""
    from workbench.model.config import preset
    from workbench.tokenizer import load_tokenizer

    stats = preset(name, vocab_size=load_tokenizer(tokenizer).vocab_size).stats()
    out = standing(stats["params"], tokens) if tokens is not None else compute_optimal(params=stats["params"])
    return {"preset": name, **out, "active_params": stats["active_params"]}


def _trainer_tokens(path: Path) -> tuple[int, int] | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return int(info["tokens_total"]), int(info["step"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def tokens_seen(ckpt: Path) -> tuple[int | None, int | None]:
    """(tokens, step) a trainer checkpoint records, else what its run's metrics.jsonl adds up to."""
    from workbench.train.checkpoint import TRAINER

    recorded = _trainer_tokens(ckpt / TRAINER)  # None: no, an older or a damaged trainer.json
    if recorded is not None:
        return recorded
    metrics = ckpt.parent.parent / "metrics.jsonl" if ckpt.parent.name == "checkpoints" else None
    if metrics is None or not metrics.is_file():
        return None, None
    tokens, step = 0, None
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a crash
        if isinstance(rec, dict) and rec.get("event") == "train":
            tokens += int(rec.get("tokens", 0))
            step = rec.get("step", step)
    return tokens, step


def run_standing(spec: str) -> dict:
    """A run or checkpoint: parameters from its model config, the tokens it has been trained on."""
    from workbench.model.checkpoint import read_meta
    from workbench.train.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(spec)
    meta = read_meta(ckpt)
    stats = meta["model"].stats()
    tokens, step = tokens_seen(ckpt)
    if tokens is None:
        raise WorkbenchError(f"{ckpt}: no record of the tokens it was trained on (trainer.json or the run's "
                             f"metrics.jsonl); give --params and --tokens instead")
    return {"checkpoint": str(ckpt), "stage": meta.get("extra", {}).get("stage"), "step": step,
            **standing(stats["params"], tokens), "active_params": stats["active_params"]}
