"""LoRA adapters on the model, built on torch.nn.utils.parametrize: every read of an adapted weight is W + s·B·A.

    from workbench.model.lora import LoRAConfig, add_lora, adapters_disabled, merge_lora
    add_lora(model, LoRAConfig(rank=8, alpha=16, targets=("attention", "ffn", "experts")), base="runs/sft")
    # only the adapters require grad now; train as usual
    with adapters_disabled(model):
        ref = model(ids)          # the base model's outputs, exactly (DPO's reference: no second copy)
    merge_lora(model)             # W += s·B·A, adapters removed: a plain Transformer again

Why parametrize (and not peft): our code reads weights directly — MLA's cached decoding absorbs
`kv_b_proj.weight` into the query and the output, the router and the chunked loss read theirs, the
routed experts are stacked parameters used as `x @ gate_up[e]`, not Linear layers. A parametrized
weight *is* the adapted weight wherever it is read, so all of those see W + s·B·A with no special
path, and the module types stay ours (peft's wrapper broke the MoE block's type check, made
transformers and accelerate runtime dependencies, and left cached decoding off by up to 0.8 in
the logits from a full forward with the adapter unmerged).

Shapes, s = alpha / rank:
  a Linear weight W [out, in]:            A [r, in],    B [out, r],    ΔW = s·B·A
  stacked experts W [E, in, out] (x @ W[e]): A [E, in, r], B [E, r, out], ΔW[e] = s·A[e]·B[e]
B starts at zero, so a run starts from the base exactly; A ~ U(±1/sqrt(in)), peft's
kaiming_uniform(a=√5). The cost of the parametrization: each forward materialises W + ΔW for every
adapted weight (kept for the backward), one weight-sized tensor each; the base's gradients and
optimizer state, three of them per weight, are what is saved.

`dropout`: the adapter sees the weight, not the activations, so it drops input features of the
adapter (entries of A along `in`), one mask per forward shared by every token of the batch: the same
expectation as LoRA's dropout on x, a coarser noise. 0 (the default) turns it off.

Targets (TARGETS) are module names: the attention projections (MLA's q_proj or q_a_proj/q_b_proj,
kv_a_proj_with_mqa, kv_b_proj, o_proj; GQA's q/k/v/o_proj), the SwiGLU projections gate_proj,
up_proj, down_proj (the dense FFNs and the shared experts), and `experts` (the routed experts' stacked
gate_up and down). Groups: `attention`, `ffn`. The router and the embedding/head are never adapted.

Checkpoints (workbench.model.checkpoint writes and loads them): a model with adapters is saved as
config.json with a `lora` section — {rank, alpha, dropout, targets, base: {path, relative_path, sha256}}
— and adapter.safetensors (`<module>.<weight>.lora_A` / `.lora_B`), no copy of the base. `load_checkpoint`
of such a directory loads the base (checking its sha256; a base may itself be a LoRA checkpoint),
merges the adapters and returns a plain model: generate, export, eval and later stages see one model.
The base is looked for at its absolute `path`, then at `relative_path` (from the LoRA checkpoint's
directory: it still holds when the tree with both is moved, copied to another machine or renamed);
the first with the recorded sha256 is the one. Checkpoints written before relative_path load as before.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from workbench.errors import WorkbenchError
from workbench.model.checkpoint import (ADAPTERS, check_names_and_shapes, file_sha256, load_tensors, read_meta,
                                        weights_file)

ATTENTION = ("q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "k_proj", "v_proj")
FFN = ("gate_proj", "up_proj", "down_proj")
GROUPS = {"attention": ATTENTION, "ffn": FFN}
EXPERTS = "experts"
TARGETS = ATTENTION + FFN + (EXPERTS,) + tuple(GROUPS)
MAX_CHAIN = 8  # LoRA checkpoints on LoRA checkpoints: more than this is a loop, not a pipeline


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("attention", "ffn")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @classmethod
    def from_dict(cls, d, where: str = "lora") -> "LoRAConfig":
        """From a config's (already checked) `lora` mapping, or a checkpoint's config.json (checked here)."""
        if not isinstance(d, dict) or set(d) - {"rank", "alpha", "dropout", "targets"}:
            raise WorkbenchError(f"{where}: expected a mapping of rank, alpha, dropout and targets, got {d!r}")
        targets = d.get("targets", cls.targets)
        c = cls(**{**d, "targets": tuple(targets) if isinstance(targets, (list, tuple)) else ()})
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
        ok = (isinstance(c.rank, int) and not isinstance(c.rank, bool) and c.rank >= 1 and number(c.alpha)
              and c.alpha > 0 and number(c.dropout) and 0 <= c.dropout < 1 and c.targets
              and all(t in TARGETS for t in c.targets))
        if not ok:
            raise WorkbenchError(f"{where}: rank must be an integer >= 1, alpha a positive number, dropout in "
                                 f"[0, 1) and targets a list of {', '.join(TARGETS)}; got {d!r}")
        return c

    def to_dict(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout, "targets": list(self.targets)}


class LoRA(nn.Module):
    """The parametrization W -> W + s·ΔW of one weight (a Linear's, or a stacked expert tensor)."""

    def __init__(self, weight: torch.Tensor, cfg: LoRAConfig, init: bool = True):
        super().__init__()
        self.stacked = weight.dim() == 3
        r, kw = cfg.rank, {"device": weight.device, "dtype": weight.dtype}
        if self.stacked:  # [E, in, out]
            E, n_in, n_out = weight.shape
            self.lora_A = nn.Parameter(torch.zeros(E, n_in, r, **kw))
            self.lora_B = nn.Parameter(torch.zeros(E, r, n_out, **kw))
        else:  # [out, in]
            n_out, n_in = weight.shape
            self.lora_A = nn.Parameter(torch.zeros(r, n_in, **kw))
            self.lora_B = nn.Parameter(torch.zeros(n_out, r, **kw))
        if init:  # loading a checkpoint overwrites A: no random numbers are drawn then
            with torch.no_grad():
                self.lora_A.uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in))
        self.scale, self.p = cfg.scale, cfg.dropout
        self.enabled = True

    def delta(self, dropout: bool = False) -> torch.Tensor:
        A = self.lora_A
        if dropout and self.p > 0:  # drop input features of the adapter: the `in` axis of A
            shape = A.shape[:2] + (1,) if self.stacked else (1, A.shape[1])
            A = A * F.dropout(A.new_ones(shape), self.p, training=True)
        return self.scale * (A @ self.lora_B if self.stacked else self.lora_B @ A)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight  # the very tensor: disabled adapters give the base's outputs bit for bit
        return weight + self.delta(dropout=self.training).to(weight.dtype)


# ---------------------------------------------------------------------------------- adding, finding
def _sites(model: nn.Module, targets) -> list[tuple[str, nn.Module, str]]:
    """(module path, module, tensor name) of every weight the targets name, in model order."""
    from workbench.model.moe import MoE

    sites = []
    for path, m in model.named_modules():
        leaf = path.rsplit(".", 1)[-1]
        if isinstance(m, nn.Linear) and leaf in ATTENTION + FFN and (".self_attn." in path or ".mlp." in path):
            sites.append((leaf, (path, m, "weight")))
        elif isinstance(m, MoE):
            sites += [(EXPERTS, (path, m, "gate_up")), (EXPERTS, (path, m, "down"))]
    have = {leaf for leaf, _ in sites}
    for t in targets:
        if not have & set(GROUPS.get(t, (t,))):
            raise WorkbenchError(f"lora: target {t!r} matches no weight of this model; it has "
                                 f"{', '.join(n for n in TARGETS if n in have)}")
    names = {n for t in targets for n in GROUPS.get(t, (t,))}
    return [site for leaf, site in sites if leaf in names]


def add_lora(model: nn.Module, cfg: LoRAConfig, base: str | Path | None = None, init: bool = True,
             freeze: bool = True) -> int:
    """Put adapters on the weights `cfg.targets` name; freeze everything else (freeze=True). Returns the
    number of adapter parameters. `base` is the checkpoint the weights came from: a LoRA checkpoint
    records it (path and sha256) so it can be merged back later."""
    if has_lora(model):
        raise WorkbenchError("this model already has LoRA adapters: merge them first (merge_lora)")
    sites = _sites(model, cfg.targets)
    if freeze:
        model.requires_grad_(False)
    for _, m, name in sites:
        parametrize.register_parametrization(m, name, LoRA(getattr(m, name), cfg, init=init))
    info = {"config": cfg, "base": None}
    if base is not None:
        base = Path(base).expanduser().resolve()
        info["base"] = {"path": str(base), "sha256": file_sha256(weights_file(base))}
    model._lora = info
    return sum(p.numel() for _, a in adapters(model) for p in (a.lora_A, a.lora_B))


def has_lora(model: nn.Module) -> bool:
    return getattr(model, "_lora", None) is not None


def adapters(model: nn.Module):
    """(key prefix, LoRA) of every adapter: `layers.0.self_attn.kv_b_proj.weight`, `layers.1.mlp.gate_up`."""
    for path, m in model.named_modules():
        if parametrize.is_parametrized(m):
            for name, plist in m.parametrizations.items():
                for p in plist:
                    if isinstance(p, LoRA):
                        yield f"{path}.{name}", p


def lora_section(model: nn.Module, dest: str | Path | None = None) -> dict:
    """The `lora` entry of a LoRA checkpoint's config.json. With `dest`, the directory it is written to
    (or atomic_dir's temporary sibling of it: the way to the base is the same), the base's path relative
    to it is recorded too."""
    info = model._lora
    if info["base"] is None:
        raise WorkbenchError("these LoRA adapters have no base checkpoint to point to (add_lora(..., base=)); "
                             "merge them (merge_lora) to save the whole model instead")
    n = sum(p.numel() for _, a in adapters(model) for p in (a.lora_A, a.lora_B))
    base = dict(info["base"])
    if dest is not None:
        with contextlib.suppress(ValueError):  # Windows: no relative path from one drive to another
            base = {"path": base["path"], "relative_path": os.path.relpath(base["path"], Path(dest).resolve()),
                    "sha256": base["sha256"]}
    return {**info["config"].to_dict(), "params": n, "base": base}


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for key, a in adapters(model):
        out[f"{key}.lora_A"], out[f"{key}.lora_B"] = a.lora_A, a.lora_B
    return out


def load_adapter_state(model: nn.Module, tensors: dict[str, torch.Tensor], where) -> None:
    """Copy saved adapters in, checking every name, shape and value first."""
    expected = adapter_state(model)
    check_names_and_shapes(tensors, expected, f"{where}: the adapters do not match the lora settings",
                           lambda k, shape: f"{where}: adapter {k} has shape {shape}, the lora settings imply")
    for k, t in tensors.items():
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise WorkbenchError(f"{where}: adapter {k} is not finite floating point (a diverged run?)")
    with torch.no_grad():
        for k, t in tensors.items():
            expected[k].copy_(t)


@contextlib.contextmanager
def adapters_disabled(model: nn.Module):
    """Inside: the model computes with its base weights exactly (every adapter off)."""
    found = [a for _, a in adapters(model)]
    was = [a.enabled for a in found]
    for a in found:
        a.enabled = False
    try:
        yield model
    finally:
        for a, w in zip(found, was):
            a.enabled = w


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """W += s·B·A in place for every adapter (no dropout), and remove them: a plain model, same outputs."""
    sites = []
    for path, m in model.named_modules():
        if parametrize.is_parametrized(m):
            sites += [(m, name) for name, plist in m.parametrizations.items()
                      if any(isinstance(p, LoRA) for p in plist)]
    for m, name in sites:
        a = next(p for p in m.parametrizations[name] if isinstance(p, LoRA))
        delta = a.delta()
        parametrize.remove_parametrizations(m, name, leave_parametrized=False)
        getattr(m, name).add_(delta.to(getattr(m, name).dtype))
    model._lora = None
    return model


# ---------------------------------------------------------------------------------- checkpoints
def load_merged(ckpt: Path, meta: dict, device, overrides: dict, chain: tuple = ()):
    """(merged model, meta) of a LoRA checkpoint: its base, verified by sha256, plus its adapters."""
    from workbench.model.checkpoint import _load

    where = ckpt / "config.json"
    section = meta["lora"]
    base = section.get("base") if isinstance(section, dict) else None
    if not (isinstance(base, dict) and isinstance(base.get("path"), str) and isinstance(base.get("sha256"), str)):
        raise WorkbenchError(f"{where}: lora.base must name the base checkpoint (path and sha256)")
    if not isinstance(base.get("relative_path", ""), str):
        raise WorkbenchError(f"{where}: lora.base.relative_path must be a path (a string)")
    cfg = LoRAConfig.from_dict({k: v for k, v in section.items() if k not in ("base", "params")}, f"{where}: lora")
    chain = chain + (ckpt.resolve(),)
    base_path = _find_base(ckpt, base, chain)
    model, _ = _load(base_path, device, overrides, chain)
    runtime = ("gradient_checkpointing", "compile")  # switches, not architecture
    if {k: v for k, v in model.cfg.to_dict().items() if k not in runtime} != \
            {k: v for k, v in meta["model"].to_dict().items() if k not in runtime}:
        raise WorkbenchError(f"{where}: the model settings differ from those of its base checkpoint {base_path}")
    add_lora(model, cfg, init=False, freeze=False)
    load_adapter_state(model, load_tensors(ckpt / ADAPTERS, device, "LoRA adapters"), ckpt / ADAPTERS)
    return merge_lora(model).eval(), meta


def _find_base(ckpt: Path, base: dict, chain: tuple) -> Path:
    """The base checkpoint `lora.base` names: at its absolute path, else at its relative one (from the
    LoRA checkpoint's directory), whichever holds the weights of the recorded sha256."""
    where, expected = ckpt / "config.json", base["sha256"]
    candidates = [Path(base["path"])]
    if base.get("relative_path") is not None:  # absent from checkpoints written before it was recorded
        moved = Path(os.path.normpath(ckpt.resolve() / base["relative_path"]))  # relpath's inverse, lexically
        if moved.resolve() != candidates[0].resolve():
            candidates.append(moved)
    alone, tried = None, []  # the error when one path was tried; each path tried, with what it holds
    for path in candidates:
        if len(chain) > MAX_CHAIN or path.resolve() in chain:
            raise WorkbenchError(f"{where}: its chain of LoRA base checkpoints loops or is longer than {MAX_CHAIN}: "
                                 f"{' -> '.join(map(str, chain + (path,)))}")
        if not path.is_dir():
            alone = WorkbenchError(f"{ckpt} holds LoRA adapters for the base checkpoint {path}, which is missing "
                                   f"(moved or deleted?); put it back, or set lora.base.path in {where}")
            tried.append(f"{path} (missing)")
            continue
        try:
            actual = file_sha256(weights_file(path))
        except OSError as e:
            alone = WorkbenchError(f"{ckpt}: cannot read its LoRA base checkpoint {path} ({e})")
            tried.append(f"{path} (unreadable: {e})")
            continue
        if actual == expected:
            return path
        alone = WorkbenchError(f"{ckpt} holds LoRA adapters for the base checkpoint {path}, which has changed "
                               f"since (sha256 {actual[:12]}…, the adapters were trained on {expected[:12]}…)")
        tried.append(f"{path} (another model: sha256 {actual[:12]}…)")
    if len(tried) == 1:
        raise alone
    raise WorkbenchError(f"{ckpt} holds LoRA adapters for a base checkpoint with sha256 {expected}, found neither "
                         f"at its recorded path {tried[0]} nor at its place relative to the adapters {tried[1]}; "
                         f"put the base back, or set lora.base.path in {where}")


def load_adapters(model: nn.Module, ckpt: Path, device=None) -> None:
    """Resume: the adapters of one of this run's checkpoints into `model` (which has the same lora
    settings and base). A checkpoint of other settings or another base is refused."""
    saved = read_meta(ckpt).get("lora")
    live = lora_section(model)
    for key in ("rank", "alpha", "targets"):
        if saved.get(key) != live[key]:
            raise WorkbenchError(f"--resume cannot change lora.{key} ({saved.get(key)!r} -> {live[key]!r}): "
                                 f"{ckpt} holds adapters of the first; start a new run instead")
    if (saved.get("base") or {}).get("sha256") != live["base"]["sha256"]:
        raise WorkbenchError(f"{ckpt}: its adapters were trained on another version of the base checkpoint "
                             f"{live['base']['path']} (its sha256 has changed); start a new run instead")
    load_adapter_state(model, load_tensors(ckpt / ADAPTERS, device, "LoRA adapters"), ckpt / ADAPTERS)

