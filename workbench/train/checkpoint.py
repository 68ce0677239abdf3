"""Trainer checkpoints inside a run directory, written atomically, loaded without unpickling.

    RUN/checkpoints/step-000100/   a model checkpoint (workbench.model.checkpoint: `workbench generate`
                                   and `--from` read it) + trainer_state.pt + trainer.json
    RUN/checkpoints/latest         the name of the newest complete checkpoint (one line)

In a LoRA run (`lora:` set) the model checkpoint is a LoRA checkpoint: config.json (with a `lora`
section naming the base checkpoint by path and sha256) + adapter.safetensors, and the optimizer
state covers the adapters only; `workbench generate`, `--from` and export merge it on load.

A checkpoint directory is built in a hidden temporary sibling and renamed into place, then `latest`
is replaced (temporary file + rename). A crash at any moment leaves `latest` naming a complete
checkpoint. `trainer_state.pt` holds tensors, numbers and lists only (optimizer state, RNG states)
and is read with `torch.load(weights_only=True)`; `trainer.json` holds the step, the data position
and counters.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.io import atomic_dir, atomic_write_text
from workbench.model.checkpoint import ADAPTERS, CONFIG, WEIGHTS, file_sha256, read_meta  # noqa: F401 (re-exported)

CHECKPOINTS, LATEST = "checkpoints", "latest"
STATE, TRAINER = "trainer_state.pt", "trainer.json"


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `RUN/checkpoints/latest` names, or None when the run has none yet."""
    folder = Path(run_dir) / CHECKPOINTS
    pointer = folder / LATEST
    if not pointer.is_file():
        # A crash between renaming step-N into place and updating `latest`: step-N is complete (it
        # was built aside and renamed), so the newest complete one is the run's latest.
        done = sorted(p for p in folder.glob("step-*") if (p / TRAINER).is_file() and (p / CONFIG).is_file())
        return done[-1] if done else None
    name = pointer.read_text(encoding="utf-8").strip()
    path = folder / name
    if not name or "/" in name or not (path / CONFIG).is_file():
        raise WorkbenchError(f"{pointer} names {name!r}, which is not a complete checkpoint")
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A model checkpoint directory, or a run directory (its latest checkpoint)."""
    p = Path(path).expanduser()
    if (p / CONFIG).is_file() and ((p / WEIGHTS).is_file() or (p / ADAPTERS).is_file()):
        return p
    if (p / CHECKPOINTS).is_dir():
        latest = latest_checkpoint(p)
        if latest is None:
            raise WorkbenchError(f"{p}: this run has no checkpoint yet")
        return latest
    if not p.exists():
        raise WorkbenchError(f"{p}: no such checkpoint or run directory")
    read_meta(p)  # raises the precise "not a model checkpoint" message
    return p


def checkpoint_kind(path: str | Path) -> str:
    """policy (a language model) or reward (a reward model: backbone + scalar head)."""
    return read_meta(path).get("extra", {}).get("kind", "policy")


def save(run_dir: Path, step: int, write_model, optimizer, trainer: dict, keep: int = 0) -> Path:
    """Write RUN/checkpoints/step-N atomically, point `latest` at it, prune old ones.

    `write_model(tmp)` writes the stage's model files into the temporary directory; `optimizer` is
    the optimizer or its state dict (FSDP's, gathered and keyed by parameter name)."""
    import random

    folder = Path(run_dir) / CHECKPOINTS
    dest = folder / step_name(step)
    with atomic_dir(dest, force=True) as tmp:
        write_model(tmp)
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
        torch.save({"optimizer": state, "rng": rng}, tmp / STATE)
        (tmp / TRAINER).write_text(json.dumps({"step": step, **trainer}, indent=2) + "\n")
    atomic_write_text(folder / LATEST, dest.name + "\n")
    if keep:
        steps = sorted(p for p in folder.glob("step-*") if p.is_dir() and p != dest)
        for old in steps[:max(0, len(steps) - (keep - 1))]:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def load_state(ckpt: Path) -> tuple[dict, dict]:
    """(trainer.json, trainer_state.pt) of a trainer checkpoint."""
    try:
        trainer = json.loads((ckpt / TRAINER).read_text(encoding="utf-8"))
        state = torch.load(ckpt / STATE, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise WorkbenchError(f"{ckpt}: not a trainer checkpoint ({Path(e.filename).name} missing); "
                             f"it can start a new run with --from, not be resumed") from None
    except (json.JSONDecodeError, RuntimeError, OSError) as e:
        raise WorkbenchError(f"{ckpt}: cannot read the trainer state ({e})") from None
    return trainer, state


def restore_rng(rng: dict) -> None:
    import random

    torch.set_rng_state(rng["torch"])
    state = rng["python"]
    random.setstate((state[0], tuple(state[1]), state[2]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])

