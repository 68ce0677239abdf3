"""Training throughput per stage: tokens/s and MFU for pretrain, SFT, RM, DPO and PPO, in one run.

    python bench/train_throughput.py                          # tiny and small on sample_data (CPU: ~10 min)
    python bench/train_throughput.py --presets tiny --steps 8 # quicker
    python bench/train_throughput.py --tokenizer cl100k_base  # the GPT-4 vocabulary instead of a trained 8k one

Each preset runs the whole chain through the real engine (`workbench.train.engine.train`) on the
bundled sample data: pretrain -> sft -> rm -> dpo and ppo, `--steps` optimizer steps each. Figures:
- tokens/s: non-pad tokens through forward + backward + AdamW per second, median over the steps
  after the first two (warm-up);
- MFU: tokens/s x training FLOPs per token (`ModelConfig.stats`, 6 x active matmul weights +
  attention, at the mean sequence length) / a matmul peak measured just before the row (as
  bench/model_throughput.py). DPO counts the policy's chosen + rejected tokens (the reference's
  log-probs are precomputed once); RM counts both halves of each pair;
- PPO: rollout tokens/s (generated response tokens per second of sampling), the share of the step
  spent generating, and whole-step tokens/s (prompt + response tokens per second of step).
The tokenizer defaults to an 8k BPE trained on sample_data (as the CPU demo would use); the model is
the preset with `--layers` overriding depth when given. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_throughput import matmul_peak, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"


def run_stage(stage, out, overrides):
    from workbench.train.config import load_config
    from workbench.train.engine import train

    records = []
    cfg = load_config(stage, None, overrides)
    t = time.perf_counter()
    train(cfg, out, callbacks=[records.append])
    wall = time.perf_counter() - t
    return [r for r in records if r["event"] == "train"], wall


def median_after_warmup(records, key):
    values = [r[key] for r in records[2:] if r.get(key) is not None] or [r[key] for r in records if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--tokenizer", default=None, help="a tiktoken encoding or .tiktoken file (default: train an 8k BPE)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    torch.manual_seed(0)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    tok = args.tokenizer
    if tok is None:
        from workbench.tokenizer_train import train_tokenizer

        tok = str(work / "bpe8k.tiktoken")
        train_tokenizer([str(SAMPLE / "text.jsonl")], 8192, tok, held_out=0.0)
    common = [f"max_steps={args.steps}", f"batch_size={args.batch_size}", "eval_every=0", "save_every=0",
              "tensorboard=false", f"device={args.device}", "warmup_steps=0"]
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, tokenizer {tok}, "
          f"{args.steps} steps per stage, batch {args.batch_size}\n")
    rows, ppo_rows = [], []
    for name in args.presets.split(","):
        runs = work / name
        stages = [
            ("pretrain", runs / "pretrain", [f"tokenizer={tok}", f"preset={name}", f"seq_len={args.seq_len}",
                                             f"data={SAMPLE / 'text.jsonl'}", "lr=1e-3"]),
            ("sft", runs / "sft", [f"init_from={runs / 'pretrain'}", f"data={SAMPLE / 'chat.jsonl'}", "lr=3e-4"]),
            ("rm", runs / "rm", [f"init_from={runs / 'sft'}", f"data={SAMPLE / 'preference.jsonl'}"]),
            ("dpo", runs / "dpo", [f"init_from={runs / 'sft'}", f"data={SAMPLE / 'preference.jsonl'}"]),
            ("ppo", runs / "ppo", [f"init_from={runs / 'sft'}", f"reward_model={runs / 'rm'}",
                                   f"data={SAMPLE / 'prompts.jsonl'}", "max_new_tokens=32"]),
        ]
        for stage, out, extra in stages:
            records, wall = run_stage(stage, out, extra + common)
            from workbench.model.checkpoint import read_meta
            from workbench.train.checkpoint import latest_checkpoint

            mcfg = read_meta(latest_checkpoint(out))["model"]
            tokens_per_s = median_after_warmup(records, "tokens_per_s")
            mean_len = statistics.mean(r["tokens"] / max(r.get("samples", 1) * (2 if stage in ("rm", "dpo") else 1), 1)
                                       for r in records)
            flops = mcfg.stats(seq_len=max(int(mean_len), 1))["flops_per_token"]
            peak = matmul_peak(device) * 1e9  # GFLOP/s -> FLOP/s
            mfu = tokens_per_s * flops / peak if stage != "ppo" else float("nan")
            rows.append([name, stage, f"{mcfg.stats()['params'] / 1e6:.2f}M", f"{mean_len:.0f}",
                         f"{tokens_per_s:,.0f}", "-" if stage == "ppo" else f"{100 * mfu:.1f}%",
                         f"{median_after_warmup(records, 'step_time'):.3f}", f"{wall:.1f}"])
            if stage == "ppo":
                rollout = median_after_warmup(records, "time/rollout")
                share = median_after_warmup(records, "time/rollout_share")
                resp = statistics.mean(r["response_length"] * r["samples"] for r in records)
                ppo_rows.append([name, f"{resp / rollout:,.0f}", f"{100 * share:.0f}%", f"{tokens_per_s:,.0f}",
                                 f"{median_after_warmup(records, 'step_time'):.2f}"])
            print(f"  {name} {stage}: {tokens_per_s:,.0f} tokens/s", flush=True)
    print()
    table(["preset", "stage", "params", "tokens/seq", "tokens/s", "MFU", "s/step", "wall s"], rows)
    table(["preset", "rollout tokens/s", "rollout share of step", "step tokens/s", "s/step"], ppo_rows)
    print(f"\nfiles in {work}")


if __name__ == "__main__":
    main()
