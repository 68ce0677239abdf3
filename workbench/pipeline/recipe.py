"""A pipeline recipe: which stages run, from which configs, in which order, then what is evaluated.

    from workbench.pipeline.recipe import load_recipe
    recipe = load_recipe("cpu-demo")          # configs/recipes/cpu-demo.yaml
    recipe = load_recipe("my/recipe.yaml")    # or any YAML file

The file (every key is described in configs/recipes/cpu-demo.yaml):

    tokenizer: {vocab_size: 2048, data: sample_data/text.jsonl}   # or null: the configs' own tokenizer
    stages:                       # run in this order; each name is a run directory under the pipeline root
      pretrain: {stage: pretrain, config: configs/pretrain/tiny.yaml, set: {max_steps: 100}}
      sft: {stage: sft, from: pretrain, config: configs/sft/tiny.yaml}
      rm: {stage: rm, from: sft, config: configs/rm/tiny.yaml}
      ppo: {stage: ppo, from: sft, reward_model: rm, config: configs/ppo/tiny.yaml}
    eval: {prompts: PATH, heldout: [PATH, ...], pairs: PATH, text: PATH, max_new_tokens: 64}
    report: {rows: {base: pretrain, SFT: sft, PPO: ppo}, examples: 5}

Optional in `eval`: `limit` (records per file), `ref` (the stage KL is measured against; default
where the first DPO / PPO stage starts) and `rm` (the reward model scoring every row; default
PPO's). Without `report.rows`, every policy stage is a row.

Paths are relative to the current directory, as in the stage configs (run from the repository root).
Everything is checked before anything runs, each stage's config and `set` through the stage's own
config loader; every error names the file and the key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.train.config import STAGES, load_config

RECIPES = Path("configs") / "recipes"
# Names under the pipeline root that are not stage run directories.
RESERVED = ("tokenizer", "eval", "plots", "report")
TOP_KEYS = ("tokenizer", "stages", "eval", "report")
TOKENIZER_KEYS = ("vocab_size", "data")
STAGE_KEYS = ("stage", "config", "from", "reward_model", "set")
EVAL_KEYS = ("prompts", "heldout", "pairs", "text", "max_new_tokens", "limit", "ref", "rm")
REPORT_KEYS = ("rows", "examples")
# Set by the pipeline itself from the recipe's `from`, `reward_model` and `tokenizer`.
WIRED = ("init_from", "reward_model")


@dataclass
class TokenizerSpec:
    vocab_size: int
    data: list[str]


@dataclass
class StageSpec:
    name: str  # the run directory under the pipeline root
    stage: str  # pretrain | sft | rm | dpo | ppo
    config: str | None = None
    parent: str | None = None  # `from`: the stage whose checkpoint this one starts from
    reward_model: str | None = None  # ppo: the rm stage that scores it
    set: dict = field(default_factory=dict)


@dataclass
class EvalSpec:
    prompts: str | None = None
    heldout: list[str] = field(default_factory=list)
    pairs: str | None = None
    text: str | None = None
    max_new_tokens: int = 64
    limit: int | None = None  # at most this many records of each file (None = all)
    ref: str | None = None  # the stage KL is measured against (default: where DPO / PPO start)
    rm: str | None = None  # the reward model that scores every row (default: PPO's)


@dataclass
class Recipe:
    path: Path
    name: str
    tokenizer: TokenizerSpec | None
    stages: dict[str, StageSpec]  # in run order
    eval: EvalSpec
    rows: dict[str, str]  # report row label -> stage name
    examples: int = 5



def find_recipe(name_or_path: str) -> Path:
    """A recipe file: the path itself, or configs/recipes/NAME.yaml for a bare name."""
    p = Path(name_or_path).expanduser()
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if not p.is_file():
            raise WorkbenchError(f"recipe {name_or_path}: no such file")
        return p
    candidate = RECIPES / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(f.stem for f in RECIPES.glob("*.yaml")) if RECIPES.is_dir() else []
    hint = difflib.get_close_matches(name_or_path, known, n=1)
    raise WorkbenchError(f"recipe {name_or_path!r}: no {candidate}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                         + (f"; known recipes: {', '.join(known)}" if known else
                            " (run from the repository root, or give a path to a recipe file)"))


def load_recipe(name_or_path: str) -> Recipe:
    from workbench.io import read_yaml

    path = find_recipe(name_or_path)
    data = read_yaml(path)
    where = str(path)
    if not isinstance(data, dict):
        raise WorkbenchError(f"{where}: expected a mapping with {', '.join(TOP_KEYS)}")
    _keys(data, TOP_KEYS, where, "")
    tokenizer = _tokenizer(data.get("tokenizer"), where)
    stages = _stages(data.get("stages"), where, tokenizer is not None)
    ev = _eval(data.get("eval") or {}, where, stages)
    rows, examples = _report(data.get("report"), where, stages)
    return Recipe(path=path, name=path.stem, tokenizer=tokenizer, stages=stages, eval=ev, rows=rows, examples=examples)


# ------------------------------------------------------------------------------------ the sections
def _fail(where: str, key: str, message: str):
    raise WorkbenchError(f"{where}: {key}: {message}")


def _keys(section: dict, allowed, where: str, prefix: str) -> None:
    for key in section:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            _fail(where, f"{prefix}{key}", "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else
                                                           f"; expected {', '.join(allowed)}"))


def _mapping(value, where: str, key: str) -> dict:
    if not isinstance(value, dict):
        _fail(where, key, f"expected a mapping, got {value!r}")
    return value


def _int(value, where: str, key: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(where, key, f"expected an integer of at least {low}, got {value!r}")
    return value


def _file(value, where: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        _fail(where, key, f"expected a path, got {value!r}")
    if not Path(value).expanduser().exists():
        _fail(where, key, f"{value}: no such file or folder (paths are relative to the current directory: "
                          f"run from the repository root)")
    return value


def _files(value, where: str, key: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [_file(v, where, f"{key}[{i}]" if isinstance(value, list) else key) for i, v in enumerate(items)]


def _tokenizer(value, where: str) -> TokenizerSpec | None:
    if value is None:
        return None
    section = _mapping(value, where, "tokenizer")
    _keys(section, TOKENIZER_KEYS, where, "tokenizer.")
    for key in TOKENIZER_KEYS:
        if key not in section:
            _fail(where, f"tokenizer.{key}", "missing (or set `tokenizer: null` to keep the configs' own)")
    return TokenizerSpec(vocab_size=_int(section["vocab_size"], where, "tokenizer.vocab_size", 257),
                         data=_files(section["data"], where, "tokenizer.data"))


def _stage_name(name, where: str) -> str:
    if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name:
        _fail(where, f"stages.{name}", "a stage name is a plain folder name (letters, digits, - or _)")
    if name in RESERVED:
        _fail(where, f"stages.{name}", f"{', '.join(RESERVED)} are taken by the pipeline's own outputs")
    return name


def _stages(value, where: str, trains_tokenizer: bool) -> dict[str, StageSpec]:
    section = _mapping(value, where, "stages")
    if not section:
        _fail(where, "stages", "no stages to run")
    out: dict[str, StageSpec] = {}
    for name, raw in section.items():
        key = f"stages.{_stage_name(name, where)}"
        raw = _mapping(raw, where, key)
        _keys(raw, STAGE_KEYS, where, key + ".")
        stage = raw.get("stage")
        if stage not in STAGES:
            _fail(where, f"{key}.stage", f"expected one of {', '.join(STAGES)}, got {stage!r}")
        spec = StageSpec(name=name, stage=stage, set=dict(_mapping(raw.get("set") or {}, where, f"{key}.set")))
        if raw.get("config") is not None:
            spec.config = _file(raw["config"], where, f"{key}.config")
        for field_name, attr in (("from", "parent"), ("reward_model", "reward_model")):
            ref = raw.get(field_name)
            if ref is None:
                continue
            if ref not in out:
                earlier = ", ".join(out) or "none"
                _fail(where, f"{key}.{field_name}", f"{ref!r} is not a stage listed before {name!r} "
                                                    f"(stages run in order; earlier: {earlier})")
            setattr(spec, attr, ref)
        if spec.parent is None and stage != "pretrain":
            _fail(where, f"{key}.from", f"a {stage} stage starts from a trained model: name an earlier stage")
        if spec.reward_model is not None and (stage != "ppo" or out[spec.reward_model].stage != "rm"):
            _fail(where, f"{key}.reward_model", "only a ppo stage takes a reward model, and it must be an rm stage")
        if stage == "ppo" and spec.reward_model is None:
            _fail(where, f"{key}.reward_model", "a ppo stage needs the rm stage that scores it")
        for wired in WIRED:
            if wired in spec.set:
                _fail(where, f"{key}.set.{wired}", "set by the pipeline from `from` / `reward_model`; remove it")
        if trains_tokenizer and stage == "pretrain" and spec.parent is None and "tokenizer" in spec.set:
            _fail(where, f"{key}.set.tokenizer", "the recipe trains a tokenizer for this stage; "
                                                 "remove one of the two (or set `tokenizer: null` at the top)")
        _check_config(spec, where, key, trains_tokenizer)
        out[name] = spec
    return out


def _check_config(spec: StageSpec, where: str, key: str, trains_tokenizer: bool) -> None:
    """The stage's config file plus `set`, through the stage's own loader (placeholders for the parents)."""
    wired = dict(spec.set)
    if spec.parent is not None:
        wired["init_from"] = "<parent>"
    if spec.stage == "ppo":
        wired["reward_model"] = "<reward model>"
    if trains_tokenizer and spec.stage == "pretrain" and spec.parent is None:
        wired["tokenizer"] = "<trained>"
    try:
        load_config(spec.stage, spec.config, wired)
    except WorkbenchError as e:
        text = str(e).replace("override: ", "")
        raise WorkbenchError(f"{where}: {key}: {text}") from None


def _stage_ref(value, where: str, key: str, stages: dict[str, StageSpec]) -> str:
    if value not in stages:
        hint = difflib.get_close_matches(str(value), list(stages), n=1)
        _fail(where, key, f"{value!r} is not a stage of this recipe" +
              (f" (did you mean {hint[0]!r}?)" if hint else f"; stages: {', '.join(stages)}"))
    return value


def _eval(value, where: str, stages: dict[str, StageSpec]) -> EvalSpec:
    section = _mapping(value, where, "eval")
    _keys(section, EVAL_KEYS, where, "eval.")
    ev = EvalSpec()
    for key in ("prompts", "pairs", "text"):
        if section.get(key) is not None:
            setattr(ev, key, _file(section[key], where, f"eval.{key}"))
    if section.get("heldout") is not None:
        ev.heldout = _files(section["heldout"], where, "eval.heldout")
    if "max_new_tokens" in section:
        ev.max_new_tokens = _int(section["max_new_tokens"], where, "eval.max_new_tokens", 1)
    if section.get("limit") is not None:
        ev.limit = _int(section["limit"], where, "eval.limit", 1)
    rl = [s for s in stages.values() if s.stage in ("dpo", "ppo")]
    ev.ref = _stage_ref(section["ref"], where, "eval.ref", stages) if section.get("ref") else \
        (rl[0].parent if rl else None)
    rms = [s.reward_model for s in stages.values() if s.reward_model] + [s.name for s in stages.values() if s.stage == "rm"]
    ev.rm = _stage_ref(section["rm"], where, "eval.rm", stages) if section.get("rm") else (rms[0] if rms else None)
    if ev.rm is not None and stages[ev.rm].stage != "rm":
        _fail(where, "eval.rm", f"{ev.rm!r} is a {stages[ev.rm].stage} stage, not an rm stage")
    if ev.ref is not None and stages[ev.ref].stage == "rm":
        _fail(where, "eval.ref", f"{ev.ref!r} is a reward model; KL is measured against a policy")
    return ev


def _report(value, where: str, stages: dict[str, StageSpec]) -> tuple[dict[str, str], int]:
    section = _mapping(value if value is not None else {}, where, "report")
    _keys(section, REPORT_KEYS, where, "report.")
    if section.get("rows") is None:  # default: one row per policy stage, named after it
        rows = {name: name for name, s in stages.items() if s.stage != "rm"}
    else:
        rows = {}
        for label, name in _mapping(section["rows"], where, "report.rows").items():
            key = f"report.rows.{label}"
            rows[str(label)] = _stage_ref(name, where, key, stages)
            if stages[name].stage == "rm":
                _fail(where, key, f"{name!r} is a reward model: its pairwise accuracy is reported on its own; "
                                  f"rows are policies")
    examples = _int(section.get("examples", 5), where, "report.examples", 0)
    return rows, examples
