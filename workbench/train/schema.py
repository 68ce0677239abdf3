"""A stage's settings as form fields, and the checks and command line behind the TUI's Train pane.

    from workbench.train import schema
    schema.fields("sft")                      # [Field(name="init_from", kind="str", optional=True, ...), ...]
    values = schema.file_values("sft", "configs/sft/tiny.yaml")
    schema.validate("sft", {**values, "lr": "-1"})     # {"lr": "lr must be a positive number, got -1.0"}
    schema.command_line("sft", "configs/sft/tiny.yaml", "runs/pretrain", None, {**values, "lr": "5e-4"})
    # "workbench train sft --config configs/sft/tiny.yaml --from runs/pretrain lr=0.0005"

The fields come from the stage's config dataclass (train/config.py): name, type and default from
the dataclass, the choices of enum-like settings from config.CHOICES (the table validation reads),
and the group (`# --- group` headers) and help (each key's trailing comment) from
configs/STAGE/tiny.yaml, so the form reads like the commented config. Form text is parsed exactly
as a KEY=VALUE override on the command line (YAML, then the config's own coercion), and
`validate` runs the checks `workbench train` runs, pinning each message to the field it is about.
Headless: the app only draws what this module decides.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.train import config as C

ROOT = Path(__file__).resolve().parents[2]
OTHER = "other"  # the group of a setting the stage's tiny.yaml does not list
PATH_FIELDS = ("init_from", "data", "val_data", "tokenizer", "reward_model")  # completed as paths in the form
DEVICES = ("auto", "cpu", "cuda")
# Which finished runs can be the parent a setting names (the pipeline: pretrain -> sft -> rm / dpo / ppo).
PARENT_STAGES = {"init_from": {"pretrain": ("pretrain",), "sft": ("pretrain", "sft"), "rm": ("sft",),
                               "dpo": ("sft",), "ppo": ("sft", "dpo")},
                 "reward_model": {"ppo": ("rm",)}}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # bool | int | float | str | dict
    optional: bool  # None (null; an empty box in the form) is allowed
    default: object
    group: str
    help: str = ""
    choices: tuple[str, ...] | None = None  # a closed set of words: the form offers a select
    suggest: tuple[str, ...] | None = None  # an open set (device: also cuda:N): a select plus the current value
    path: bool = False  # a file or folder: the form completes it


# ------------------------------------------------------------------------------------ the fields
def default_config(stage: str) -> str:
    """configs/STAGE/tiny.yaml, relative when run from the repository root (as the README does)."""
    rel = Path("configs") / stage / "tiny.yaml"
    return str(rel) if rel.is_file() else str(ROOT / rel)


def parse_comments(text: str) -> list[tuple[str, str, str]]:
    """(key, group, help) for each top-level `key: value  # help` line of a commented config, in order."""
    out, group = [], OTHER
    for line in text.splitlines():
        header = re.match(r"#\s*---\s*(.+?)\s*$", line)
        if header:
            group = header.group(1)
            continue
        m = re.match(r"([A-Za-z_]\w*):(.*)$", line)
        if m:
            # The values in our configs hold no '#': the first ' #' starts the comment.
            _, sep, comment = m.group(2).partition(" #")
            out.append((m.group(1), group, comment.strip() if sep else ""))
    return out


def _choices(name: str) -> tuple[str, ...] | None:
    if name in C.CHOICES:
        return C.CHOICES[name]
    if name == "preset":
        from workbench.model.config import PRESETS

        return PRESETS
    return None


@functools.lru_cache(maxsize=None)
def fields(stage: str) -> tuple[Field, ...]:
    """Every setting of `stage` (but `stage` itself), in the order and groups of configs/STAGE/tiny.yaml."""
    if stage not in C.CONFIGS:
        raise WorkbenchError(f"unknown stage {stage!r}; expected one of {', '.join(C.STAGES)}")
    try:
        documented = parse_comments(Path(ROOT / "configs" / stage / "tiny.yaml").read_text(encoding="utf-8"))
    except OSError:
        documented = []
    where = {key: (group, help_text) for key, group, help_text in documented}
    order = {key: i for i, (key, _, _) in enumerate(documented)}
    defaults = C.CONFIGS[stage]()
    out = []
    for f in dataclasses.fields(C.CONFIGS[stage]):
        if f.name == "stage":
            continue
        group, help_text = where.get(f.name, (OTHER, ""))
        out.append(Field(f.name, f.type.replace(" | None", ""), "None" in f.type, getattr(defaults, f.name),
                         group, help_text, _choices(f.name), device_choices() if f.name == "device" else None,
                         f.name in PATH_FIELDS))
    out.sort(key=lambda f: order.get(f.name, len(order)))
    return tuple(out)


def field(stage: str, name: str) -> Field:
    return next(f for f in fields(stage) if f.name == name)


def groups(stage: str) -> list[tuple[str, list[Field]]]:
    """The fields by group, groups in file order ("other" last)."""
    out: dict[str, list[Field]] = {}
    for f in fields(stage):
        out.setdefault(f.group, []).append(f)
    return sorted(out.items(), key=lambda kv: kv[0] == OTHER)


def device_choices(current: str | None = None) -> tuple[str, ...]:
    """auto, cpu, cuda, each cuda:N of this machine when it has several (when torch is loaded already:
    importing it takes seconds, too long for drawing a form), and `current` if it is another."""
    torch = sys.modules.get("torch")
    n = torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0
    out = DEVICES + tuple(f"cuda:{i}" for i in range(n if n > 1 else 0))
    return out + ((current,) if current and current not in out else ())


def defaults(stage: str) -> dict:
    return {f.name: f.default for f in fields(stage)}


# ------------------------------------------------------------------------------------ values
def to_text(value) -> str:
    """A value as YAML flow text, as it is written on the command line (None -> null)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text[:-3].strip() if text.endswith("\n...") or text.endswith("...") else text


def form_text(value) -> str:
    """A value as the form's text box shows it: the command-line text, empty for null."""
    return "" if value is None else to_text(value)


def parse_value(stage: str, name: str, raw):
    """The typed value of one form entry, read exactly as the CLI reads `name=raw` (YAML, then the
    config's coercion). Non-text entries (a switch, a select) are checked as they are."""
    if isinstance(raw, str):
        raw = C.parse_value(raw)
    try:
        return C._checked(C.CONFIGS[stage], {name: raw}, "form")[name]
    except WorkbenchError as e:
        raise WorkbenchError(str(e).removeprefix("form: ")) from None


def parse_values(stage: str, values: dict) -> tuple[dict, dict]:
    """(typed values, {field: message} for the entries that do not parse)."""
    typed, errors = {}, {}
    for name, raw in values.items():
        try:
            typed[name] = parse_value(stage, name, raw)
        except WorkbenchError as e:
            errors[name] = str(e)
    return typed, errors


def file_values(stage: str, path: str | os.PathLike) -> dict:
    """Every setting as the file sets it (defaults for the rest). Errors name the file and the setting."""
    data = C._read_yaml(path)
    if data.get("stage", stage) != stage:
        raise WorkbenchError(f"{path}: this is a {data['stage']!r} config, not {stage!r}")
    data.pop("stage", None)
    return {**defaults(stage), **C._checked(C.CONFIGS[stage], data, str(path))}


def to_yaml(stage: str, values: dict) -> str:
    """The form as a config file laid out like configs/STAGE/tiny.yaml (groups, one comment per key)."""
    typed, errors = parse_values(stage, values)
    if errors:
        name, message = next(iter(errors.items()))
        raise WorkbenchError(f"cannot save while {name} is not valid: {message}")
    lines = [f"# {stage} settings, saved from the workbench Train pane.",
             f"#   workbench train {stage} --config THIS_FILE", "", f"stage: {stage}"]
    for group, members in groups(stage):
        lines += ["", f"# --- {group}"]
        for f in members:
            line = f"{f.name}: {to_text(typed.get(f.name, f.default))}"
            lines.append(f"{line:<25}{' ' if len(line) < 25 else '   '}# {f.help}" if f.help else line)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ checks
def _config(stage: str, typed: dict) -> C.TrainConfig:
    """The config's own validation (load_config, as the CLI runs it) plus the choices of `preset`."""
    cfg = C.load_config(stage, None, typed)
    for f in fields(stage):
        value = getattr(cfg, f.name)
        if f.choices and f.name not in C.CHOICES and value not in f.choices:  # the config checks CHOICES itself
            raise WorkbenchError(f"{f.name} must be one of {', '.join(f.choices)}, got {value!r}")
    return cfg


def _run_checks(stage: str, cfg: C.TrainConfig) -> list[tuple[str, object]]:
    """(setting, check) for what `workbench train` checks after the config, before training: a parent
    is given (but for pretrain) and is a checkpoint, the device exists. Each is about one setting."""
    from workbench.cli_train import _check_parent

    def need_parent():
        if not cfg.init_from and stage != "pretrain":
            raise WorkbenchError(f"{stage} starts from a trained model: set init_from (a run dir or checkpoint)")

    checks = [("init_from", need_parent)]
    for key in ("init_from", "reward_model"):
        if getattr(cfg, key, None):
            checks.append((key, lambda key=key: _check_parent(getattr(cfg, key), key)))
    if cfg.device not in ("auto", "cpu"):  # the engine's check imports torch: only when it can fail
        def device():
            from workbench.train.engine import resolve_device

            resolve_device(cfg.device)

        checks.append(("device", device))
    return checks


def build_config(stage: str, values: dict) -> C.TrainConfig:
    """The config `workbench train STAGE` would run these settings with, after the checks it makes
    before training; raises the WorkbenchError it would print."""
    typed, errors = parse_values(stage, values)
    if errors:
        raise WorkbenchError(next(iter(errors.values())))
    cfg = _config(stage, typed)
    for _, check in _run_checks(stage, cfg):
        check()
    return cfg


def _problem(stage: str, typed: dict) -> str | None:
    try:
        _config(stage, typed)
    except WorkbenchError as e:
        return str(e)
    return None


def validate(stage: str, values: dict) -> dict[str, str]:
    """{setting: message} for every setting `workbench train` would refuse; {} when it would start.

    The config stops at its first complaint, so the culprit is set back to a value that passes (its
    default) and the checks run again until they pass. A message naming several settings
    ("batch_size (6) must be a multiple of num_minibatches (4)") goes to those whose reset changes
    the verdict. A message naming no setting goes under the key ""."""
    typed, errors = parse_values(stage, values)
    base = defaults(stage)
    # A parent left empty passes the config's checks as any path would; the path checks come after.
    neutral = {n: ("PARENT" if v is None and n in PARENT_STAGES else v) for n, v in base.items()}
    typed.update({n: neutral[n] for n in errors if n in neutral})
    names = [f.name for f in fields(stage)]
    for _ in range(len(names)):
        problem = _problem(stage, typed)
        if problem is None:
            break
        spots = sorted((m.start(), n) for n in names if n not in errors
                       for m in [re.search(rf"(?<![\w-]){re.escape(n)}(?!\w)", problem)] if m)
        mentioned = [n for _, n in spots]
        if not mentioned:
            errors[""] = problem
            return errors
        culprits = [n for n in mentioned if _problem(stage, {**typed, n: neutral[n]}) != problem] or mentioned[:1]
        for n in culprits:
            errors[n] = problem
            typed[n] = neutral[n]
    cfg = _config(stage, typed)
    for name, check in _run_checks(stage, cfg):
        if name not in errors:
            try:
                check()
            except WorkbenchError as e:
                errors[name] = str(e)
    return errors


# ------------------------------------------------------------------------------------ the command
def _typed_or_text(stage: str, name: str, raw):
    try:
        return parse_value(stage, name, raw), True
    except WorkbenchError:
        return raw, False


def differs(stage: str, values: dict, base: dict) -> list[str]:
    """The settings whose entry differs from `base` (typed values, e.g. a file's): the overrides."""
    out = []
    for name, raw in values.items():
        if name in base:
            value, ok = _typed_or_text(stage, name, raw)
            if not ok or value != base[name]:
                out.append(name)
    return out


def command_args(stage: str, config: str | None, init_from: str | None, out: str | None, values: dict,
                 base: dict | None = None, nproc: int | str = 1) -> list[str]:
    """`train STAGE ...` arguments that run these settings: --config, --from when it differs from the
    file, --out, then KEY=VALUE for each setting that differs from the file (or the defaults), then
    `--nproc N` for N > 1 processes (torchrun). `values["init_from"]`, if present, is ignored: the
    parent is `init_from`. `base`: the file's values when the caller has them already
    (file_values(stage, config))."""
    if base is None:
        base = file_values(stage, config) if config else defaults(stage)
    args = ["train", stage] + (["--config", str(config)] if config else [])
    if init_from and init_from != base.get("init_from"):
        args += ["--from", init_from]
    if out:
        args += ["--out", str(out)]
    if not init_from and base.get("init_from"):
        args.append("init_from=null")  # --from cannot say "none"
    for name in differs(stage, {k: v for k, v in values.items() if k not in ("init_from", "stage")}, base):
        value, ok = _typed_or_text(stage, name, values[name])
        # not ok: as typed, so the CLI gives the message the form shows beside the field
        args.append(f"{name}={to_text(value) if ok else values[name]}")
    if str(nproc) != "1":  # a count the CLI refuses goes as typed: the CLI then says why
        args += ["--nproc", str(nproc)]
    return args


def command_line(stage: str, config: str | None, init_from: str | None, out: str | None, values: dict,
                 base: dict | None = None, nproc: int | str = 1) -> str:
    """The `workbench train ...` command for these settings, shell-quoted, ready to paste."""
    return "workbench " + shlex.join(command_args(stage, config, init_from, out, values, base, nproc))


def parse_processes(text: str) -> int:
    """The Train form's process count (`--nproc`): a whole number from 1; empty = 1."""
    text = (text or "").strip()
    if not text:
        return 1
    try:
        n = int(text)
    except ValueError:
        raise WorkbenchError(f"procs must be a whole number, got {text!r}") from None
    if n < 1:
        raise WorkbenchError(f"procs must be at least 1, got {n}")
    return n


def resume_args(run_dir: str | os.PathLike, overrides: list[str] = ()) -> list[str]:
    return ["train", run_stage(run_dir), "--resume", str(run_dir), *overrides]


def run_stage(run_dir: str | os.PathLike) -> str:
    """The stage a run directory was trained with (its config.yaml, else its lineage.json)."""
    import yaml

    run_dir = Path(run_dir)
    for name in ("config.yaml", "lineage.json"):
        try:
            text = (run_dir / name).read_text(encoding="utf-8")
            data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("stage") in C.STAGES:
            return data["stage"]
    raise WorkbenchError(f"{run_dir}: not a run directory (no readable config.yaml or lineage.json with a stage)")


# ------------------------------------------------------------------------------------ parents
def parent_runs(root: str | os.PathLike, stage: str, setting: str = "init_from") -> list[tuple[str, str]]:
    """(label, path) of the runs under `root` that `setting` of `stage` can name: finished (or stopped)
    runs of the parent stages that have a checkpoint, newest first (the Runs pane's scan)."""
    from workbench.train.checkpoint import latest_checkpoint
    from workbench.train.runs import scan_runs

    wanted = PARENT_STAGES.get(setting, {}).get(stage, ())
    out = []
    for run in scan_runs(root):
        if run.stage not in wanted or run.status not in ("finished", "stopped"):
            continue
        try:
            if latest_checkpoint(run.path) is None:
                continue
        except WorkbenchError:
            continue  # a broken `latest`: not a parent; the Runs pane says what is wrong
        about = [run.stage, f"step {run.step if run.step is not None else '?'}"]
        about += [] if run.status == "finished" else [run.status]
        out.append((f"{run.name} ({', '.join(about)})", str(run.path)))
    return out
