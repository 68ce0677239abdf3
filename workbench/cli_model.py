"""`workbench model info|init`, `workbench generate` and `workbench export`: thin wrappers over workbench.model.

    workbench model info --preset tiny
    workbench model init --preset tiny --out runs/tiny/init
    workbench generate runs/tiny/init --prompt "The town of" --max-new-tokens 40
    workbench export runs/tiny/init --to hf out/tiny-hf
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer

model_app = typer.Typer(no_args_is_help=True, help="Model presets, sizes and freshly initialised checkpoints.")


def _cli():
    from workbench import cli

    return cli


def _parse_sets(pairs: list[str]) -> dict:
    """--set key=value (value parsed as JSON when it can be: 64, 1e-3, true, null; else a string)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _cli()._fail(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _config(preset_name: str, tokenizer: Optional[str], sets: list[str]):
    from workbench.model.config import preset
    from workbench.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    overrides = _parse_sets(sets)
    if "vocab_size" in overrides:
        _cli()._fail("the vocabulary follows the tokenizer: use --tokenizer (e.g. a trained .tiktoken file), not --set vocab_size")
    return preset(preset_name, **{"vocab_size": tok.vocab_size, **overrides}), tok


@model_app.command()
def info(
    checkpoint: Optional[str] = typer.Argument(None, help="A checkpoint directory or a run directory (its latest checkpoint); or give --preset."),
    preset_name: Optional[str] = typer.Option(None, "--preset", "-p", help="tiny, small, base, or their -dense twins."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="The vocabulary follows the tokenizer (default cl100k_base)."),
    sets: List[str] = typer.Option([], "--set", help="Override a config field: --set kv_lora_rank=64 (repeatable)."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Sequence length for the attention FLOPs (default max_seq_len)."),
    batch: int = typer.Option(8, "--batch", "-b", help="Sequences per micro-batch for the training-memory estimate."),
    bf16: bool = typer.Option(False, "--bf16", help="Estimate with bf16 autocast activations (CUDA)."),
    checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Estimate with gradient checkpointing."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
):
    """Parameters (total and active per token), FLOPs per token, KV-cache bytes per token vs standard MHA,
    and the memory a training step needs (weights, gradients, AdamW state, activations at --batch x --seq-len)."""
    cli = _cli()

    def run():
        from workbench.errors import WorkbenchError
        from workbench.model.info import info_table

        if (checkpoint is None) == (preset_name is None):
            raise WorkbenchError("give a checkpoint directory or --preset (one of them)")
        if seq_len is not None and seq_len < 1:
            raise WorkbenchError(f"--seq-len must be at least 1, got {seq_len}")
        if batch < 1:
            raise WorkbenchError(f"--batch must be at least 1, got {batch}")
        if checkpoint is not None:
            from workbench.model.checkpoint import read_meta
            from workbench.train.checkpoint import resolve_checkpoint

            ckpt = str(resolve_checkpoint(checkpoint))
            cfg, name = read_meta(ckpt)["model"], ckpt
            if sets:
                cfg = cfg.replace(**_parse_sets(sets))
        else:
            cfg, _ = _config(preset_name, tokenizer, sets)
            name = preset_name
        from workbench.model.info import training_memory

        stats = cfg.stats(seq_len)
        memory = training_memory(cfg, batch, seq_len or cfg.max_seq_len, bf16=bf16,
                                 gradient_checkpointing=checkpointing)
        if as_json:
            print(json.dumps({"name": name, "config": cfg.to_dict(), **stats, "training_memory": memory}, indent=2))
        else:
            cli._Console().print(info_table(name, cfg, stats, memory))

    cli._run(run)


@model_app.command()
def init(
    out: str = typer.Option(..., "--out", "-o", help="Checkpoint directory to write."),
    preset_name: str = typer.Option("tiny", "--preset", "-p", help="tiny, small, base, or their -dense twins."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="cl100k_base (default) or a .tiktoken file; sets the vocabulary."),
    sets: List[str] = typer.Option([], "--set", help="Override a config field: --set n_layers=6 (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Write a freshly initialised checkpoint (model.safetensors + config.json + tokenizer description)."""
    cli = _cli()

    def run():
        import torch

        from workbench.model import Transformer
        from workbench.model.checkpoint import save_checkpoint

        cfg, tok = _config(preset_name, tokenizer, sets)
        torch.manual_seed(seed)
        model = Transformer(cfg, init=False)
        model.init_weights(seed=seed)
        save_checkpoint(model, out, tokenizer=tok, extra={"preset": preset_name, "seed": seed, "stage": "init"}, force=force)
        s = cfg.stats()
        cli._Console(stderr=True).print(f"wrote {out}: {preset_name}, {s['params'] / 1e6:.2f}M parameters "
                                        f"({s['active_params'] / 1e6:.2f}M active per token), vocab {cfg.vocab_size}")

    cli._run(run)


def generate(
    checkpoint: str = typer.Argument(..., help="A checkpoint directory, or a run directory (its latest checkpoint)."),
    prompts: List[str] = typer.Option(..., "--prompt", help="Text to continue (or, with --chat, a user message). Repeat for a batch."),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt in ChatML and stop at <|im_end|> (SFT/DPO/PPO models)."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message (with --chat)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n"),
    temperature: float = typer.Option(0.8, "--temperature"),
    top_k: int = typer.Option(0, "--top-k", help="Sample from the K most likely tokens (0 = off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling (1 = off)."),
    greedy: bool = typer.Option(False, "--greedy", help="Always take the most likely token."),
    seed: Optional[int] = typer.Option(None, "--seed"),
):
    """Generate text from a checkpoint with the KV cache, streaming it as it comes."""
    cli = _cli()

    def run():
        import sys

        from workbench.errors import WorkbenchError
        from workbench.model.checkpoint import load_checkpoint, load_checkpoint_tokenizer
        from workbench.model.generate import SamplingConfig, TextDecoder, encode_prompt, stream

        if system and not chat:
            raise WorkbenchError("--system needs --chat")
        sampling = SamplingConfig(max_new_tokens, temperature, top_k, top_p, greedy, seed).validate()
        from workbench.train.checkpoint import resolve_checkpoint

        ckpt = resolve_checkpoint(checkpoint)  # a run dir means its latest checkpoint, as --from does
        from workbench.train.checkpoint import checkpoint_kind

        kind = checkpoint_kind(ckpt)
        if kind != "policy":  # its backbone would load, and write gibberish through an untrained LM head
            from workbench.eval.playground import kind_message

            raise WorkbenchError(kind_message(checkpoint, ckpt, kind, "policy"))
        tok = load_checkpoint_tokenizer(ckpt)
        model, _ = load_checkpoint(ckpt)
        ids = [encode_prompt(tok, p, chat, system) for p in prompts]
        stop = [tok.im_end_id] if chat else [tok.eot_id]
        decoders = [TextDecoder(tok, skip_ids=stop) for _ in prompts]
        for nxt, _, done in stream(model, ids, sampling, stop_ids=stop, pad_id=tok.pad_id):
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    piece = decoders[i].push(t)
                    if len(prompts) == 1:  # stream a single answer as it comes
                        sys.stdout.write(piece)
                        sys.stdout.flush()
        if len(prompts) == 1:
            print(decoders[0].flush())
        else:
            for p, d in zip(prompts, decoders):
                print(f"--- {p}\n{tok.decode(d.ids)}")

    cli._run(run)


def export(
    checkpoint: str = typer.Argument(..., help="A checkpoint directory, or a run directory (its latest checkpoint)."),
    out: str = typer.Argument(..., help="Folder to write."),
    to: str = typer.Option("hf", "--to", help="Target format: hf (Hugging Face transformers)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
):
    """Export to a folder Hugging Face transformers loads natively (DeepseekV2ForCausalLM or LlamaForCausalLM)."""
    cli = _cli()

    def run():
        from workbench.errors import WorkbenchError
        from workbench.model.export import export_hf

        if to != "hf":
            raise WorkbenchError(f"--to must be 'hf', got {to!r}")
        from workbench.train.checkpoint import resolve_checkpoint

        path = export_hf(resolve_checkpoint(checkpoint), out, force=force)
        arch = json.loads((path / "config.json").read_text())["architectures"][0]
        cli._Console(stderr=True).print(f"wrote {path} ({arch}); load it with "
                                        f"transformers.AutoModelForCausalLM.from_pretrained({str(path)!r})")

    cli._run(run)
