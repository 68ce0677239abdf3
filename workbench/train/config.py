"""One config dataclass per stage, read from YAML (yaml.safe_load) plus `key=value` overrides.

    from workbench.train.config import load_config
    cfg = load_config("sft", "configs/sft/tiny.yaml", ["lr=1e-4", "max_steps=50"])

`TrainConfig` holds what every stage shares (optimiser, schedule, batching, checkpoints, device);
each stage adds its own fields and overrides a few defaults (SFT a lower learning rate, DPO and PPO
lower still). Defaults are sensible for the `tiny` preset on a CPU. Every check says what to change:
unknown keys get a did-you-mean, numbers are range-checked, `1e-4` written in YAML (a string to
YAML 1.1) is read as the number it is meant to be.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field

from workbench.errors import WorkbenchError

STAGES = ("pretrain", "sft", "rm", "dpo", "ppo")


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise WorkbenchError(msg)


def _need_max_len(max_len: int) -> None:
    _need(max_len >= 2, f"max_len must be at least 2, got {max_len}")


# The settings that take one of a few words. Validation and the TUI's form (train/schema.py) both
# read this table, so a Select never offers a value the config refuses. (`device` is not here: it
# also takes cuda:N.)
CHOICES: dict[str, tuple[str, ...]] = {
    "schedule": ("cosine", "linear", "constant"),
    "dtype": ("auto", "fp32", "bf16"),
    "mode": ("all", "last"),
    "loss_type": ("sigmoid", "ipo"),
    "score_logprob": ("sum", "mean"),  # or null
}


# LoRA (workbench.model.lora; `lora: null` = off). The target names here are lora.TARGETS (a test keeps
# them equal): the config is checked without importing torch, so the TUI's form stays quick.
LORA_DEFAULTS = {"rank": 8, "alpha": 16.0, "dropout": 0.0, "targets": ["attention", "ffn"]}
LORA_TARGETS = ("attention", "ffn", "experts", "q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj",
                "o_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj")


def _need_lora(cfg) -> None:
    """Check `lora` and fill in its defaults (so config.yaml records every LoRA setting a run used)."""
    if cfg.lora is None:
        return
    for key in cfg.lora:
        hint = difflib.get_close_matches(str(key), LORA_DEFAULTS, n=1)
        _need(key in LORA_DEFAULTS, f"lora: unknown setting {key!r}"
              + (f" (did you mean {hint[0]!r}?)" if hint else " (lora takes rank, alpha, dropout and targets)"))
    v = {**LORA_DEFAULTS, **cfg.lora}
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)  # noqa: E731
    rank, alpha, dropout, targets = v["rank"], v["alpha"], v["dropout"], v["targets"]
    _need(isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1,
          f"lora.rank must be an integer of at least 1, got {rank!r}")
    _need(number(alpha) and alpha > 0, f"lora.alpha must be a positive number, got {alpha!r}")
    _need(number(dropout) and 0 <= dropout < 1, f"lora.dropout must be in [0, 1), got {dropout!r}")
    targets = [targets] if isinstance(targets, str) else targets
    _need(isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets),
          f"lora.targets must be a list of names ({', '.join(LORA_TARGETS)}), got {v['targets']!r}")
    for t in targets:
        hint = difflib.get_close_matches(t, LORA_TARGETS, n=1)
        _need(t in LORA_TARGETS, f"lora.targets: unknown target {t!r}"
              + (f" (did you mean {hint[0]!r}?)" if hint else f"; choose from {', '.join(LORA_TARGETS)}"))
    cfg.lora = {"rank": rank, "alpha": float(alpha), "dropout": float(dropout), "targets": list(dict.fromkeys(targets))}


def _need_choice(cfg, name: str, optional: bool = False) -> None:
    choices, value = CHOICES[name], getattr(cfg, name)
    if optional and value is None:
        return
    words = (*choices, "null") if optional else choices
    _need(value in choices, f"{name} must be {', '.join(words[:-1])} or {words[-1]}, got {value!r}")


@dataclass
class TrainConfig:
    stage: str = ""
    # --- where from and to
    init_from: str | None = None  # parent checkpoint (a checkpoint dir or a run dir: its latest); pretrain: optional
    data: str | None = None  # training data: a file, folder or hub name (pretrain: also a prepared shard folder)
    format: str | None = None  # data format (default: detected from the field names)
    val_data: str | None = None  # validation data; default: val_fraction of `data` held out
    val_fraction: float = 0.05
    skip_bad: bool = False  # skip (and count) bad records instead of stopping at the first
    # --- optimisation
    seed: int = 0
    max_steps: int = 200  # optimizer steps
    batch_size: int = 8  # sequences per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 3e-3  # peak learning rate
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1  # the decay ends at lr * min_lr_ratio
    weight_decay: float = 0.1  # AdamW; never applied to norms, biases or embeddings
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping (the norm is still logged)
    max_nonfinite: int = 5  # stop after this many non-finite steps in a row (each one is skipped)
    # --- evaluation and checkpoints
    eval_every: int = 50  # steps; 0 = only at the end
    eval_batches: int = 8  # validation batches per evaluation; 0 = the whole validation set
    save_every: int = 100  # steps; 0 = only at the end (and on stop)
    keep_checkpoints: int = 2  # newest step checkpoints kept; 0 = keep all
    # --- hardware
    device: str = "auto"  # auto (cuda when present) | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    gradient_checkpointing: bool = False
    compile: bool = False
    tensorboard: bool = True  # also log to RUN/tensorboard when the tensorboard package is installed

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        c, need = self, _need
        need(c.lr > 0, f"lr must be a positive number, got {c.lr}")
        for name in ("max_steps", "batch_size", "grad_accum"):
            need(getattr(c, name) >= 1, f"{name} must be at least 1, got {getattr(c, name)}")
        for name in ("warmup_steps", "eval_every", "eval_batches", "save_every", "keep_checkpoints", "seed"):
            need(getattr(c, name) >= 0, f"{name} must be 0 or more, got {getattr(c, name)}")
        need(c.max_nonfinite >= 1, f"max_nonfinite must be at least 1, got {c.max_nonfinite}")
        _need_choice(c, "schedule")
        need(0 <= c.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {c.min_lr_ratio}")
        need(c.weight_decay >= 0, f"weight_decay must be 0 or more, got {c.weight_decay}")
        need(0 <= c.beta1 < 1 and 0 <= c.beta2 < 1, f"beta1 and beta2 must be in [0, 1), got {c.beta1}, {c.beta2}")
        need(c.eps > 0, f"eps must be positive, got {c.eps}")
        need(c.grad_clip >= 0, f"grad_clip must be 0 (off) or positive, got {c.grad_clip}")
        need(0 <= c.val_fraction < 1, f"val_fraction must be in [0, 1), got {c.val_fraction}")
        _need_choice(c, "dtype")
        need(c.device == "auto" or c.device == "cpu" or c.device.startswith("cuda"),
             f"device must be auto, cpu, cuda or cuda:N, got {c.device!r}")
        need(c.data is not None, f"{c.stage}: no training data: set data (in the config file or data=PATH)")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class PretrainConfig(TrainConfig):
    stage: str = "pretrain"
    # raw text or a `workbench data prepare` folder; or {path: weight}, raw text sources mixed by token share
    data: str | dict | None = "sample_data/text.jsonl"
    preset: str = "tiny"  # model preset when starting from scratch (no init_from)
    model: dict = field(default_factory=dict)  # overrides of the preset's fields, e.g. {n_layers: 2}
    tokenizer: str | None = None  # cl100k_base (default), another tiktoken encoding or a .tiktoken file
    seq_len: int = 256  # tokens per training window (documents are packed, <|endoftext|> between them)
    fsdp: bool = False  # several processes: shard weights, gradients and AdamW state (FSDP2) instead of DDP

    def validate(self):
        super().validate()
        _need(self.seq_len >= 1, f"seq_len must be at least 1, got {self.seq_len}")
        if isinstance(self.data, dict):
            from workbench.data.mix import check_sources

            check_sources(self.data, "data", raw_text=True)
        return self


@dataclass
class SFTConfig(TrainConfig):
    stage: str = "sft"
    data: str | None = "sample_data/chat.jsonl"
    lr: float = 1e-3
    max_len: int = 512  # tokens per conversation (longer ones are cut; see workbench.data.collate)
    mode: str = "all"  # which assistant turns are trained: all | last
    packing: bool = False  # pack several conversations per row (no attention across them)
    lora: dict | None = None  # LoRA adapters (rank, alpha, dropout, targets); null = train every weight
    fsdp: bool = False  # several processes: shard weights, gradients and AdamW state (FSDP2) instead of DDP
    # pretraining text mixed into every step (InstructGPT's "ptx"): loss = chat loss + replay_weight x
    # the next-token loss of replay_batch_size windows of replay_seq_len tokens; null = off
    replay_data: str | None = None
    replay_weight: float = 1.0
    replay_batch_size: int = 8
    replay_seq_len: int = 128

    def validate(self):
        super().validate()
        _need_max_len(self.max_len)
        _need_choice(self, "mode")
        _need_lora(self)
        _need(self.replay_data is None or (isinstance(self.replay_data, str) and self.replay_data.strip()),
              f"replay_data must be a text file or folder (or null for none), got {self.replay_data!r}")
        _need(self.replay_weight > 0 and math.isfinite(self.replay_weight),
              f"replay_weight must be a positive number, got {self.replay_weight}")
        for name in ("replay_batch_size", "replay_seq_len"):
            _need(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        _need(not (self.fsdp and self.lora), "fsdp and lora together: LoRA trains small adapters, which DDP "
              "replicates cheaply; set fsdp: false (or drop lora)")
        return self


@dataclass
class RMConfig(TrainConfig):
    stage: str = "rm"
    data: str | None = "sample_data/preference.jsonl"
    lr: float = 3e-4
    max_len: int = 512  # tokens per prompt + response
    center_rewards_coef: float = 0.0  # optional penalty pulling mean reward to 0 (TRL's center_rewards_coefficient)
    score_logprob: str | None = None  # sum | mean: the score adds w x the backbone's log p(response); null = head only
    lora: dict | None = None  # LoRA adapters on the backbone (the scalar head trains in full); null = off

    def validate(self):
        super().validate()
        _need_max_len(self.max_len)
        _need_lora(self)
        _need(self.center_rewards_coef >= 0, f"center_rewards_coef must be 0 or more, got {self.center_rewards_coef}")
        _need_choice(self, "score_logprob", optional=True)
        # a whole answer's log p is tens to hundreds of nats below 0: centring would swamp the pairwise loss
        _need(not (self.score_logprob == "sum" and self.center_rewards_coef > 0),
              f"center_rewards_coef ({self.center_rewards_coef:g}) cannot pull rewards to 0 with score_logprob: sum "
              f"(a whole answer's log-probability is far below 0: the penalty would swamp the pairwise loss); "
              f"set center_rewards_coef=0 (PPO normalises by the saved reward_stats) or score_logprob=mean")
        return self


@dataclass
class DPOConfig(TrainConfig):
    stage: str = "dpo"
    data: str | None = "sample_data/preference.jsonl"
    lr: float = 1e-4
    warmup_steps: int = 5
    max_len: int = 512
    beta: float = 0.1  # strength of the implicit KL constraint to the reference
    loss_type: str = "sigmoid"  # sigmoid (DPO) | ipo
    label_smoothing: float = 0.0  # conservative DPO: assumed fraction of flipped labels
    rpo_alpha: float = 0.0  # > 0 adds alpha x the chosen responses' mean NLL (TRL's rpo_alpha); 0 = plain DPO
    precompute_ref: bool = True  # reference log-probs computed once before training
    lora: dict | None = None  # LoRA adapters; the reference is then the policy with them off (no copy); null = off

    def validate(self):
        super().validate()
        _need_lora(self)
        _need(self.beta > 0, f"beta must be positive, got {self.beta}")
        _need_choice(self, "loss_type")
        _need(0 <= self.label_smoothing < 0.5, f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        _need(self.rpo_alpha >= 0, f"rpo_alpha must be 0 or more, got {self.rpo_alpha}")
        _need_max_len(self.max_len)
        return self


@dataclass
class PPOConfig(TrainConfig):
    stage: str = "ppo"
    data: str | None = "sample_data/prompts.jsonl"  # prompts
    reward_model: str | None = None  # a checkpoint written by `workbench train rm`
    lr: float = 3e-5
    warmup_steps: int = 0
    batch_size: int = 8  # prompts per rollout (one optimizer "step" = one rollout + its PPO epochs)
    max_prompt_len: int = 128  # prompts keep their last tokens
    max_new_tokens: int = 48
    temperature: float = 1.0  # sampling and training log-probs use the same temperature
    ppo_epochs: int = 4
    num_minibatches: int = 2  # minibatches per epoch (batch_size must divide evenly)
    clip_range: float = 0.2  # epsilon of the clipped surrogate
    clip_range_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef: float = 0.05  # beta of the per-token KL penalty (initial value when adaptive)
    adaptive_kl: bool = False  # Ziegler et al.'s proportional controller towards kl_target
    kl_target: float = 6.0
    kl_horizon: int = 10000
    missing_eos_penalty: float = 1.0  # subtracted from the score of a response without <|im_end|>
    normalize_reward: bool = True  # scores to mean 0, std 1 with the reward model's saved statistics
    whiten_rewards: bool = False

    def validate(self):
        super().validate()
        need = _need
        need(self.grad_accum == 1, f"ppo: grad_accum must be 1, got {self.grad_accum}: one step is one rollout of "
             f"batch_size prompts; raise batch_size or num_minibatches instead")
        need(self.reward_model is not None, "ppo needs a reward model: reward_model=PATH (a `workbench train rm` run)")
        for name in ("max_prompt_len", "max_new_tokens", "ppo_epochs", "num_minibatches"):
            need(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        need(self.batch_size % self.num_minibatches == 0,
             f"batch_size ({self.batch_size}) must be a multiple of num_minibatches ({self.num_minibatches})")
        need(self.temperature > 0, f"temperature must be positive (sampling and training share it), got {self.temperature}")
        need(self.clip_range > 0 and self.clip_range_value > 0, "clip_range and clip_range_value must be positive")
        need(self.vf_coef >= 0, f"vf_coef must be 0 or more, got {self.vf_coef}")
        need(0 < self.gamma <= 1 and 0 <= self.lam <= 1, f"gamma must be in (0, 1] and lam in [0, 1], got {self.gamma}, {self.lam}")
        # 0 turns the leash off (the reward-hacking demonstration); the adaptive controller scales it, so not there.
        need(self.kl_coef >= 0, f"kl_coef (beta) must be 0 or more, got {self.kl_coef}")
        need(self.kl_coef > 0 or not self.adaptive_kl, "adaptive_kl needs kl_coef > 0 (it scales the starting value)")
        need(self.kl_target > 0 and self.kl_horizon >= 1, "kl_target must be positive and kl_horizon at least 1")
        need(self.missing_eos_penalty >= 0, f"missing_eos_penalty must be 0 or more, got {self.missing_eos_penalty}")
        return self


CONFIGS: dict[str, type[TrainConfig]] = {"pretrain": PretrainConfig, "sft": SFTConfig, "rm": RMConfig,
                                         "dpo": DPOConfig, "ppo": PPOConfig}


def load_config(stage: str, path: str | os.PathLike | None = None, overrides: list[str] | dict | None = None,
                base: dict | None = None) -> TrainConfig:
    """The stage's config: defaults < `base` (a resumed run's saved config) < YAML file < overrides."""
    if stage not in CONFIGS:
        raise WorkbenchError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    cls = CONFIGS[stage]
    values: dict = {}
    for source, data in (("saved config", base), (str(path) if path else None, _read_yaml(path) if path else None)):
        if data and data.get("stage", stage) != stage:  # before the keys: a dpo file's `beta` is not the problem
            raise WorkbenchError(f"{source}: this is a {data['stage']!r} config, not {stage!r}")
        if data:
            values.update(_checked(cls, data, source))
    if isinstance(overrides, dict):
        values.update(_checked(cls, overrides, "override"))
    else:
        for item in overrides or ():
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise WorkbenchError(f"override {item!r} is not key=value (e.g. lr=1e-4)")
            values.update(_checked(cls, {key.strip(): parse_value(raw)}, "override"))
    if values.get("stage", stage) != stage:
        raise WorkbenchError(f"{path or 'config'}: this is a {values['stage']!r} config, not {stage!r}")
    values["stage"] = stage
    return cls(**values).validate()


def parse_value(raw: str):
    """The value of a KEY=VALUE override (or a form field): YAML (`1e-4`, `true`, `{n_layers: 2}`), empty =
    null; text YAML cannot read stays the text itself (the type check then says what is wrong with it)."""
    import yaml

    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return raw


def _read_yaml(path) -> dict:
    from workbench.io import read_yaml

    data = read_yaml(path)
    if not isinstance(data, dict):
        raise WorkbenchError(f"{path}: expected a mapping of settings (key: value), got {type(data).__name__}")
    return data


# Names users bring from Hugging Face's TrainingArguments, too far from ours for difflib to match.
_ALIASES = {"learning_rate": "lr", "per_device_train_batch_size": "batch_size",
            "gradient_accumulation_steps": "grad_accum", "max_grad_norm": "grad_clip", "lr_scheduler_type": "schedule"}


def _checked(cls, data: dict, where) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    out = {}
    for key, value in data.items():
        if key not in fields:
            # a field the key extends (lr_rate -> lr) beats difflib's fuzzy pick (lr_rate -> min_lr_ratio)
            prefix = sorted((f for f in fields if str(key).startswith(f + "_")), key=len, reverse=True)
            hint = [_ALIASES[key]] if key in _ALIASES else prefix or difflib.get_close_matches(str(key), fields, n=1)
            other = [s for s, c in CONFIGS.items() if key in {f.name for f in dataclasses.fields(c)}]
            msg = f"{where}: unknown setting {key!r} for stage {cls.stage!r}"
            if other:  # an exact name of another stage's setting says more than a near miss here
                msg += f" (it belongs to: {', '.join(other)})"
            elif hint:
                msg += f" (did you mean {hint[0]!r}?)"
            raise WorkbenchError(msg)
        out[key] = _coerce(key, value, fields[key], where)
    return out


_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "dict": "a mapping"}


def _coerce(key: str, value, annotation: str, where):
    optional = "None" in annotation
    base = annotation.replace(" | None", "")
    if value is None and optional:
        return None
    if " | " in base:  # a union (pretrain's data: str | dict): the first kind that fits
        kinds = base.split(" | ")
        for kind in kinds:
            try:
                return _coerce(key, value, kind, where)
            except WorkbenchError:
                pass
        raise WorkbenchError(f"{where}: {key} must be {' or '.join(_KINDS[k] for k in kinds)}"
                             f"{' or null' if optional else ''}, got {value!r}")
    if base == "float" and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
          "bool": isinstance(value, bool),
          "str": isinstance(value, str),
          "dict": isinstance(value, dict)}[base]
    if not ok:
        raise WorkbenchError(f"{where}: {key} must be {_KINDS[base]}{' or null' if optional else ''}, got {value!r}")
    return float(value) if base == "float" else value


def dump_yaml(cfg: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
