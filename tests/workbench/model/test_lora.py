"""LoRA on the model: exact trainable counts, disabled = base exactly, merged = unmerged, cached decoding
= a full forward with adapters on kv_b_proj and on the stacked experts, LoRA checkpoints merge on load
(base checked by sha256), and a merged LoRA checkpoint exports to transformers with the same logits."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.model.attention import KVCache
from workbench.model.checkpoint import ADAPTERS, WEIGHTS, load_checkpoint, save_checkpoint
from workbench.model.generate import SamplingConfig, generate
from workbench.model.lora import TARGETS, LoRAConfig, adapter_state, adapters_disabled, add_lora, has_lora, merge_lora

from .conftest import VOCAB, make

ALL = ("attention", "ffn", "experts")


def _randomise(model, std=0.2, seed=1):
    """Non-zero B (and A): adapters that really change the outputs (a fresh B is zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in adapter_state(model).values():
            t.copy_(torch.randn(t.shape, generator=gen) * std)


def _ids(T=16, B=2, seed=2):
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


def test_targets_are_the_ones_the_config_accepts():
    from workbench.train.config import LORA_TARGETS

    assert set(LORA_TARGETS) == set(TARGETS)


@pytest.mark.parametrize("name, overrides, targets, expected", [
    # tiny: d 64, 4 heads, qk 16+8, v 16, kv_lora_rank 32; layer 0 dense (176), 1-3 MoE: 8 experts of 48, 1 shared
    ("tiny", {}, ("kv_b_proj",), 4 * 4 * (32 + 4 * 32)),
    ("tiny", {}, ("experts",), 3 * 8 * 4 * ((64 + 96) + (48 + 64))),
    ("tiny", {}, ("attention",), 4 * 4 * ((64 + 96) + (64 + 40) + (32 + 128) + (64 + 64))),
    ("tiny", {}, ("ffn",), 4 * 3 * (64 + 176) + 3 * 4 * 3 * (64 + 48)),
    ("tiny", {"q_lora_rank": 24}, ("q_a_proj", "q_b_proj"), 4 * 4 * ((64 + 24) + (24 + 96))),
    ("tiny-dense", {"n_kv_heads": 2}, ("attention",), 4 * 4 * ((64 + 64) + 2 * (64 + 32) + (64 + 64))),
])
def test_only_the_adapters_train_and_their_count_is_the_shapes(name, overrides, targets, expected):
    model = make(name, **overrides)
    total = sum(p.numel() for p in model.parameters())
    n = add_lora(model, LoRAConfig(rank=4, targets=targets))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert n == expected == sum(p.numel() for p in trainable)
    assert sum(p.numel() for p in model.parameters()) == total + n
    _randomise(model)
    model(_ids(), labels=_ids()).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_fresh_adapters_and_disabled_adapters_give_the_base_outputs_exactly():
    model = make("tiny")
    ids = _ids()
    with torch.no_grad():
        base = model(ids).logits
        add_lora(model, LoRAConfig(rank=4, targets=ALL))
        assert torch.equal(model(ids).logits, base)  # B starts at zero: training starts from the base
        _randomise(model)
        adapted = model(ids).logits
        with adapters_disabled(model):
            assert torch.equal(model(ids).logits, base)
        assert torch.equal(model(ids).logits, adapted)  # and on again after the block
    assert (adapted - base).abs().max() > 0.5


@pytest.mark.parametrize("name, overrides", [("tiny", {}), ("tiny", {"q_lora_rank": 24}),
                                             ("tiny-dense", {"n_kv_heads": 2})])
def test_merged_equals_unmerged(name, overrides):
    model = make(name, **overrides)
    add_lora(model, LoRAConfig(rank=4, alpha=8, targets=ALL if name == "tiny" else ("attention", "ffn")))
    _randomise(model)
    ids = _ids()
    with torch.no_grad():
        unmerged = model(ids).logits
        merge_lora(model)
        merged = model(ids).logits
    assert not has_lora(model) and not any("lora" in k for k in model.state_dict())
    assert type(model.layers[1].mlp).__name__ == type(make(name, **overrides).layers[1].mlp).__name__  # no wrapper
    assert (merged - unmerged).abs().max() < 1e-5


@pytest.mark.parametrize("targets", [("kv_b_proj",), ("experts",), ALL])
def test_cached_decoding_equals_a_full_forward_with_adapters_unmerged(targets):
    """MLA decodes from the cache with kv_b_proj.weight absorbed into the query and output, and the
    experts are read as stacked tensors: both must see W + s·B·A (peft's adapters did not)."""
    model = make("tiny")
    add_lora(model, LoRAConfig(rank=4, targets=targets))
    _randomise(model)
    ids = _ids(T=14)
    with torch.no_grad():
        full = model(ids).logits
        with adapters_disabled(model):
            base = model(ids).logits
        cache = KVCache(model.cfg, 2, 14)
        steps = [model(ids[:, :6], cache=cache).logits[:, -1]]
        for t in range(6, 13):
            steps.append(model(ids[:, t:t + 1], cache=cache).logits[:, -1])
    decoded = torch.stack(steps, 1)
    assert (full[:, 5:13] - base[:, 5:13]).abs().max() > 0.3  # the adapters matter at these positions
    assert (decoded - full[:, 5:13]).abs().max() < 1e-4
    # and generate() (left-padded batch, cache) picks the tokens a full forward picks
    prompt = ids[0, :5].tolist()
    out = generate(model, [prompt, ids[1, :3].tolist()], SamplingConfig(max_new_tokens=6, greedy=True),
                   pad_id=VOCAB - 1)
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(6):
            logits = model(torch.tensor([seq])).logits[0, -1, :VOCAB].clone()
            logits[VOCAB - 1] = float("-inf")
            seq.append(int(logits.argmax()))
    assert out.tokens[0] == seq[5:]


def test_dropout_drops_adapter_inputs_in_training_only():
    model = make("tiny")
    add_lora(model, LoRAConfig(rank=4, dropout=0.5, targets=ALL))
    _randomise(model)
    ids = _ids()
    with torch.no_grad():
        a, b = model(ids).logits, model(ids).logits
        assert torch.equal(a, b)  # eval: no dropout
        model.train()
        torch.manual_seed(0)
        c = model(ids).logits
        torch.manual_seed(0)
        assert torch.equal(c, model(ids).logits)  # one mask per seeded forward
        assert (c - a).abs().max() > 1e-3


def test_gradient_checkpointing_recomputes_the_same_dropout_masks():
    def grads(checkpointing):
        model = make("tiny", gradient_checkpointing=checkpointing)
        add_lora(model, LoRAConfig(rank=4, dropout=0.3, targets=ALL))
        _randomise(model, std=0.1)
        model.train()
        torch.manual_seed(0)
        ids = _ids()
        model(ids, labels=ids).loss.backward()
        return [p.grad for p in model.parameters() if p.requires_grad]

    plain, recomputed = grads(False), grads(True)
    assert all(torch.equal(a, b) for a, b in zip(plain, recomputed)) and len(plain) > 10


def test_bad_targets_and_settings_are_refused():
    with pytest.raises(WorkbenchError, match="target 'experts' matches no weight of this model"):
        add_lora(make("tiny-dense"), LoRAConfig(targets=("experts",)))
    with pytest.raises(WorkbenchError, match="target 'q_a_proj' matches no weight.*q_proj"):
        add_lora(make("tiny"), LoRAConfig(targets=("q_a_proj",)))  # q_lora_rank null: one q_proj
    with pytest.raises(WorkbenchError, match="rank must be an integer >= 1"):
        LoRAConfig.from_dict({"rank": 0})
    with pytest.raises(WorkbenchError, match="expected a mapping of rank, alpha, dropout and targets"):
        LoRAConfig.from_dict({"rnak": 4})
    model = make("tiny")
    add_lora(model, LoRAConfig())
    with pytest.raises(WorkbenchError, match="already has LoRA adapters"):
        add_lora(model, LoRAConfig())


# ------------------------------------------------------------------------------ checkpoints
def _lora_checkpoint(tmp_path, name="tiny", targets=ALL, tok=None, **overrides):
    """(base dir, LoRA dir, the unmerged model): a saved base, randomised adapters saved on it."""
    model = make(name, **overrides)
    save_checkpoint(model, tmp_path / "base", tokenizer=tok)
    add_lora(model, LoRAConfig(rank=4, targets=targets), base=tmp_path / "base")
    _randomise(model)
    save_checkpoint(model, tmp_path / "lora", tokenizer=tok, extra={"kind": "policy"})
    return tmp_path / "base", tmp_path / "lora", model


def test_a_lora_checkpoint_is_the_adapters_and_a_pointer_and_loads_merged(tmp_path):
    from workbench.train.checkpoint import file_sha256

    base, lora_dir, model = _lora_checkpoint(tmp_path)
    assert sorted(p.name for p in lora_dir.iterdir()) == [ADAPTERS, "config.json"]
    meta = json.loads((lora_dir / "config.json").read_text())
    assert meta["lora"]["base"] == {"path": str(base.resolve()), "relative_path": "../base",
                                    "sha256": file_sha256(base / WEIGHTS)}
    assert meta["lora"]["rank"] == 4 and meta["lora"]["targets"] == list(ALL)
    assert (lora_dir / ADAPTERS).stat().st_size < (base / WEIGHTS).stat().st_size / 2
    loaded, loaded_meta = load_checkpoint(lora_dir)
    assert not has_lora(loaded) and loaded_meta["extra"] == {"kind": "policy"}
    ids = _ids()
    with torch.no_grad():
        assert (loaded(ids).logits - model(ids).logits).abs().max() < 1e-5


def test_lora_on_a_lora_checkpoint_merges_down_the_chain(tmp_path):
    _, first, model = _lora_checkpoint(tmp_path, targets=("attention",))
    merge_lora(model)
    second, _ = load_checkpoint(first)
    add_lora(second, LoRAConfig(rank=2, targets=("experts",)), base=first)
    _randomise(second, seed=5)
    save_checkpoint(second, tmp_path / "second")
    loaded, _ = load_checkpoint(tmp_path / "second")
    ids = _ids()
    with torch.no_grad():
        with adapters_disabled(second):
            assert (second(ids).logits - model(ids).logits).abs().max() < 1e-5  # its base is the first, merged
        assert (loaded(ids).logits - second(ids).logits).abs().max() < 1e-5


def test_a_missing_or_changed_base_is_a_clear_error(tmp_path):
    base, lora_dir, _ = _lora_checkpoint(tmp_path)
    save_checkpoint(make("tiny", seed=3), base, force=True)  # another model under the same path
    with pytest.raises(WorkbenchError, match=r"base checkpoint .*base, which has changed since \(sha256"):
        load_checkpoint(lora_dir)
    (base / WEIGHTS).unlink()
    (base / "config.json").unlink()
    base.rmdir()
    with pytest.raises(WorkbenchError, match=r"holds LoRA adapters for the base checkpoint .*base, which is missing"):
        load_checkpoint(lora_dir)
    with pytest.raises(WorkbenchError, match="no base checkpoint to point to"):
        model = make("tiny")
        add_lora(model, LoRAConfig())
        save_checkpoint(model, tmp_path / "nobase")


def _moved_tree(tmp_path):
    """A tree with a base, a LoRA checkpoint on it and, one level deeper, a LoRA checkpoint on that one;
    the logits of both loaded, then the whole tree moved elsewhere (its old absolute paths are gone)."""
    tree = tmp_path / "runs"
    _, first, model = _lora_checkpoint(tree, targets=("attention",))
    merge_lora(model)
    add_lora(model, LoRAConfig(rank=2, targets=("experts",)), base=first)
    _randomise(model, seed=5)
    save_checkpoint(model, tree / "dpo" / "step-1")
    ids = _ids()
    with torch.no_grad():
        before = [load_checkpoint(tree / d)[0](ids).logits for d in ("lora", "dpo/step-1")]
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(tree, moved)
    assert not tree.exists()
    return moved, ids, before


def test_a_moved_tree_of_lora_checkpoints_loads_its_bases_by_their_relative_paths(tmp_path):
    moved, ids, before = _moved_tree(tmp_path)
    meta = json.loads((moved / "dpo" / "step-1" / "config.json").read_text())
    assert meta["lora"]["base"]["relative_path"] == "../../lora"
    assert not Path(meta["lora"]["base"]["path"]).exists()  # the absolute path now leads nowhere
    with torch.no_grad():
        after = [load_checkpoint(moved / d)[0](ids).logits for d in ("lora", "dpo/step-1")]
    assert all(torch.equal(a, b) for a, b in zip(after, before))
    assert not torch.equal(after[0], after[1])  # the second adapters really change the model


def test_a_copied_tree_takes_the_base_whose_sha256_matches(tmp_path):
    """The recorded absolute path holds another model now: the copy's own base (relative) is the one."""
    base, lora_dir, model = _lora_checkpoint(tmp_path / "runs")
    shutil.copytree(tmp_path / "runs", tmp_path / "copy")
    save_checkpoint(make("tiny", seed=3), base, force=True)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "copy" / "lora")[0](_ids()).logits, model(_ids()).logits)
    with pytest.raises(WorkbenchError, match="which has changed since"):  # the original: one path, a changed base
        load_checkpoint(lora_dir)


def test_a_moved_tree_without_its_base_names_both_paths_and_the_sha256(tmp_path):
    from workbench.train.checkpoint import file_sha256

    moved, _, _ = _moved_tree(tmp_path)
    sha = file_sha256(moved / "base" / WEIGHTS)
    shutil.rmtree(moved / "base")
    with pytest.raises(WorkbenchError) as e:
        load_checkpoint(moved / "lora")
    message = str(e.value)
    assert f"sha256 {sha}" in message
    assert f"{(tmp_path / 'runs' / 'base').resolve()} (missing)" in message  # the absolute path recorded
    assert f"{(moved / 'base').resolve()} (missing)" in message  # and the relative one, from the moved tree
    save_checkpoint(make("tiny", seed=3), moved / "base")  # another model where the base was
    with pytest.raises(WorkbenchError, match=r"renamed/base \(another model: sha256 [0-9a-f]{12}…\); put the base back"):
        load_checkpoint(moved / "lora")


def test_a_lora_checkpoint_without_a_relative_path_loads_from_its_absolute_one(tmp_path):
    """Checkpoints written before relative_path was recorded: the absolute path alone, as before."""
    base, lora_dir, model = _lora_checkpoint(tmp_path / "runs")
    config = lora_dir / "config.json"
    meta = json.loads(config.read_text())
    del meta["lora"]["base"]["relative_path"]
    config.write_text(json.dumps(meta))
    with torch.no_grad():
        assert (load_checkpoint(lora_dir)[0](_ids()).logits - model(_ids()).logits).abs().max() < 1e-5
    shutil.move(tmp_path / "runs", tmp_path / "moved")
    with pytest.raises(WorkbenchError, match=r"base checkpoint .*runs/base, which is missing \(moved or deleted"):
        load_checkpoint(tmp_path / "moved" / "lora")


def test_a_merged_lora_checkpoint_exports_to_transformers_with_the_same_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    from workbench.model.export import export_hf

    _, lora_dir, model = _lora_checkpoint(tmp_path)
    export_hf(lora_dir, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ids = _ids(T=24)
    with torch.no_grad():
        ours = model(ids).logits[..., :VOCAB]  # adapters unmerged
        with adapters_disabled(model):
            plain = model(ids).logits[..., :VOCAB]
        theirs = hf(ids).logits
    assert type(hf).__name__ == "DeepseekV2ForCausalLM"
    assert (ours - plain).abs().max() > 0.5  # the export carries the adapters, not just the base
    assert (ours - theirs).abs().max() < 1e-4
