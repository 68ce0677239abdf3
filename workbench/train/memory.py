"""A training step's memory: the peak the engine logs with every step, and what to turn down when a
step does not fit (the message the engine ends an out-of-memory run with, using the run's own values)."""

from __future__ import annotations

import torch

from workbench.train.config import TrainConfig


def peak_memory_mb(device: torch.device) -> float:
    """The process's peak memory so far, in MiB: CUDA's max allocated on a GPU, else the peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def out_of_memory_message(cfg: TrainConfig, device: torch.device, error: BaseException, step: int) -> str:
    """What to turn down when a step does not fit in memory, with this run's values."""
    where = "GPU" if device.type == "cuda" else "CPU"
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    knobs = [f"batch_size={max(cfg.batch_size // 2, 1)} (now {cfg.batch_size}) with grad_accum="
             f"{cfg.grad_accum * 2} (now {cfg.grad_accum}) keeps the same batch per step"]
    length = next((k for k in ("max_len", "seq_len") if hasattr(cfg, k)), None)
    if length:
        knobs.append(f"a shorter {length} (now {getattr(cfg, length)})")
    if not cfg.gradient_checkpointing:
        knobs.append("gradient_checkpointing=true (recompute activations in the backward pass)")
    if device.type == "cuda" and cfg.dtype == "fp32":
        knobs.append("dtype=auto (bf16 autocast)")
    if hasattr(cfg, "lora") and not getattr(cfg, "lora", None):
        knobs.append("LoRA (lora: {rank: 16}) trains small adapters instead of every weight")
    knobs.append("a smaller model, or more devices with FSDP (workbench model info estimates the memory)")
    return f"out of {where} memory in step {step} ({first}). To fit, try: " + "; ".join(knobs)
