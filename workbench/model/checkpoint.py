"""Model checkpoints: a directory with `model.safetensors` + `config.json` (+ the tokenizer).

    from workbench.model.checkpoint import save_checkpoint, load_checkpoint
    save_checkpoint(model, "runs/tiny/init", tokenizer=tok)
    model, meta = load_checkpoint("runs/tiny/init")     # meta["tokenizer"], meta["extra"]
    tok = load_checkpoint_tokenizer("runs/tiny/init")   # the tokenizer the model was built for

config.json = {"format": "workbench-model", "version": 1, "model": {ModelConfig fields},
"tokenizer": {name, sha256, vocab_size, special ids}, "extra": {...}}. A tokenizer trained from a
.tiktoken file is copied in as `tokenizer.tiktoken`, so the directory is self-contained. Loading
never unpickles (safetensors + JSON), checks every tensor's name and shape, and checks that the
tokenizer's hash still matches. Writes are atomic (workbench.io.atomic_dir).

A model with LoRA adapters (workbench.model.lora) is saved as a LoRA checkpoint: the same
config.json plus a `lora` section (settings; the base checkpoint's path, relative path and sha256) and
`adapter.safetensors` in place of `model.safetensors`. `load_checkpoint` merges it into its base on
load, so everything that loads checkpoints (later stages, generate, export, eval) sees one plain model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.io import atomic_dir
from workbench.model.config import ModelConfig
from workbench.model.transformer import Transformer

FORMAT, VERSION = "workbench-model", 1
WEIGHTS, CONFIG, TOKENIZER_FILE = "model.safetensors", "config.json", "tokenizer.tiktoken"
ADAPTERS = "adapter.safetensors"  # a LoRA checkpoint's own tensors (its base holds the rest)


def weights_file(ckpt: str | Path) -> Path:
    """The tensors that make a checkpoint what it is: model.safetensors, or a LoRA checkpoint's adapters.
    What lineage and the pipeline hash to tell one checkpoint from another."""
    ckpt = Path(ckpt)
    return ckpt / ADAPTERS if (ckpt / ADAPTERS).is_file() and not (ckpt / WEIGHTS).is_file() else ckpt / WEIGHTS


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tensors(model: Transformer) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if model.cfg.tie_embeddings:
        state.pop("lm_head.weight")  # the same tensor as embed_tokens.weight
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def write_checkpoint_files(model: Transformer, dest: Path, tokenizer=None, extra: dict | None = None) -> None:
    """Write the checkpoint files into an existing (temporary) directory (a LoRA checkpoint when the
    model has adapters: only they are written, with a pointer to the base)."""
    from safetensors.torch import save_file

    from workbench.model import lora

    meta = {"format": FORMAT, "version": VERSION, "model": model.cfg.to_dict(), "tokenizer": None, "extra": extra or {}}
    if lora.has_lora(model):
        meta["lora"] = lora.lora_section(model, dest)
    if tokenizer is not None:
        meta["tokenizer"] = tokenizer.describe()
        if Path(tokenizer.name).is_file():
            shutil.copyfile(tokenizer.name, dest / TOKENIZER_FILE)
            meta["tokenizer"]["file"] = TOKENIZER_FILE
    if lora.has_lora(model):
        tensors = {k: v.detach().contiguous().cpu() for k, v in lora.adapter_state(model).items()}
        save_file(tensors, str(dest / ADAPTERS), metadata={"format": "pt"})
    else:
        save_file(_tensors(model), str(dest / WEIGHTS), metadata={"format": "pt"})
    (dest / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")


def save_checkpoint(model: Transformer, out: str | Path, tokenizer=None, extra: dict | None = None,
                    force: bool = False) -> Path:
    with atomic_dir(out, force=force) as tmp:
        write_checkpoint_files(model, tmp, tokenizer, extra)
    return Path(out)


def read_meta(ckpt: str | Path) -> dict:
    ckpt = Path(ckpt)
    cfg_path = ckpt / CONFIG
    if not ckpt.is_dir():
        raise WorkbenchError(f"{ckpt}: no such checkpoint directory")
    if not cfg_path.is_file() or not ((ckpt / WEIGHTS).is_file() or (ckpt / ADAPTERS).is_file()):
        raise WorkbenchError(f"{ckpt}: not a model checkpoint (needs {CONFIG} and {WEIGHTS}; "
                             f"create one with `workbench model init`)")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WorkbenchError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WorkbenchError(f"{cfg_path}: not a workbench model config (format should be {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise WorkbenchError(f"{cfg_path}: checkpoint version {meta.get('version')!r}, this workbench reads {VERSION}")
    meta["model"] = ModelConfig.from_dict(meta.get("model"), where=f"{cfg_path}: model", complete=True)
    info = meta.get("tokenizer")
    if info is not None:
        ok = isinstance(info, dict) and isinstance(info.get("name"), str) and (
            info.get("file") is None or (isinstance(info["file"], str) and info["file"] == Path(info["file"]).name))
        if not ok or not isinstance(info.get("sha256"), (str, type(None))):
            raise WorkbenchError(f"{cfg_path}: 'tokenizer' must be an object with a string 'name', an optional "
                                 f"'sha256' and an optional 'file' inside the checkpoint directory")
    if not isinstance(meta.get("extra", {}), dict):
        raise WorkbenchError(f"{cfg_path}: 'extra' must be an object")
    if meta.get("lora") is not None:
        if not isinstance(meta["lora"], dict) or not (ckpt / ADAPTERS).is_file():
            raise WorkbenchError(f"{cfg_path}: a LoRA checkpoint needs a 'lora' object and {ADAPTERS}")
    elif not (ckpt / WEIGHTS).is_file():
        raise WorkbenchError(f"{ckpt}: not a model checkpoint (needs {CONFIG} and {WEIGHTS}; "
                             f"create one with `workbench model init`)")
    return meta


def load_tensors(path: Path, device=None, what: str = "weights") -> dict[str, torch.Tensor]:
    """A safetensors file (no pickle), or a WorkbenchError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device or "cpu"))
    except (SafetensorError, OSError, ValueError) as e:
        raise WorkbenchError(f"{path}: cannot read {what} ({e})") from None


def check_names_and_shapes(tensors: dict, expected: dict, mismatch: str, bad_shape) -> None:
    """Saved tensors against the ones a model expects: the same names (`mismatch` + the first missing and
    unexpected ones) and the same shapes (`bad_shape(name, shape)` + the expected shape)."""
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WorkbenchError(mismatch + (f"; missing {', '.join(missing[:5])}" if missing else "")
                             + (f"; unexpected {', '.join(unexpected[:5])}" if unexpected else ""))
    for k, t in tensors.items():
        if t.shape != expected[k].shape:
            raise WorkbenchError(f"{bad_shape(k, tuple(t.shape))} {tuple(expected[k].shape)}")


def load_checkpoint(ckpt: str | Path, device=None, **overrides) -> tuple[Transformer, dict]:
    """(model in eval mode, meta). `overrides` change runtime switches (gradient_checkpointing, compile).
    A LoRA checkpoint comes back merged into its base (checked by sha256): a plain model."""
    return _load(Path(ckpt), device, overrides, ())


def _load(ckpt: Path, device, overrides: dict, chain: tuple) -> tuple[Transformer, dict]:
    meta = read_meta(ckpt)
    if meta.get("lora") is not None:
        from workbench.model.lora import load_merged

        return load_merged(ckpt, meta, device, overrides, chain)
    cfg = meta["model"].replace(**overrides) if overrides else meta["model"]
    path = Path(ckpt) / WEIGHTS
    tensors = load_tensors(path, device)
    model = Transformer(cfg, init=False)
    expected = _tensors(model)
    check_names_and_shapes(tensors, expected, f"{path}: weights do not match config.json",
                           lambda k, shape: f"{path}: tensor {k} has shape {shape}, config.json implies")
    for k, t in tensors.items():
        if not t.is_floating_point():
            raise WorkbenchError(f"{path}: tensor {k} is {t.dtype}, expected floating point")
        if not bool(torch.isfinite(t).all()):
            raise WorkbenchError(f"{path}: tensor {k} contains NaN or infinite values (a diverged run?)")
    model.load_state_dict(tensors, strict=False)
    if device is not None:
        model.to(device)
    return model.eval(), meta


def load_checkpoint_tokenizer(ckpt: str | Path):
    """The tokenizer recorded in the checkpoint, verified against its hash; cl100k_base when none was recorded."""
    from workbench.tokenizer import load_tokenizer

    meta = read_meta(ckpt)
    info = meta.get("tokenizer")
    spec = (str(Path(ckpt) / info["file"]) if info.get("file") else info.get("name")) if info else None
    tok = load_tokenizer(spec)
    if info and info.get("sha256") and tok.sha256 and tok.sha256 != info["sha256"]:
        raise WorkbenchError(f"{ckpt}: tokenizer {spec} has sha256 {tok.sha256[:12]}…, the checkpoint was "
                             f"made with {info['sha256'][:12]}…")
    if tok.vocab_size != meta["model"].vocab_size:
        raise WorkbenchError(f"{ckpt}: the model has a {meta['model'].vocab_size}-token vocabulary but its "
                             f"tokenizer {tok.name} has {tok.vocab_size}")
    return tok
