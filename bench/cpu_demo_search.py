"""Experiments behind the `cpu-demo` recipe: run the chain with overrides, time each stage, score it.

    python bench/cpu_demo_search.py --out /tmp/cpu-demo-runs/exp1 --data sample_data \
        --pretrain max_steps=1500 --sft max_steps=300 --stages tok,pretrain,sft,rm,dpo,ppo

Each stage is the ordinary CLI (`workbench tokenizer train`, `workbench train STAGE --config
configs/STAGE/cpu-demo.yaml`), so what is timed is what a user runs. The scorer is a throwaway
until `workbench eval` covers it: greedy answers to the held-out fact files, graded with the
world's `check_answer`, plus the share of answers that close their turn and the share that are
rude (openers from `synthetic.RUDE`); the RM is scored on `eval_pairs.jsonl` by kind.
Results go to OUT/results.json and the terminal. Never run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WB = str(Path(sys.executable).with_name("workbench"))


def sh(cmd: list[str], log: Path) -> float:
    t = time.time()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        sys.exit(f"failed ({rc}): {' '.join(cmd)}; see {log}")
    return time.time() - t


def greedy_scores(ckpt: str, files: dict[str, Path], max_new_tokens: int = 48) -> dict:
    import torch

    from workbench.data.synthetic_tasks import check_answer
    from workbench.data.synthetic_reward import is_rude, true_reward
    from workbench.model.checkpoint import load_checkpoint, load_checkpoint_tokenizer
    from workbench.model.generate import SamplingConfig, encode_prompt, generate
    from workbench.train.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(ckpt)
    model, _ = load_checkpoint(path)
    tok = load_checkpoint_tokenizer(path)
    out = {}
    for name, file in files.items():
        rows = [json.loads(line) for line in file.read_text().splitlines()]
        for mode in ("greedy", "sampled"):
            ok = ended = rude = reward = 0
            examples = []
            for i in range(0, len(rows), 32):
                batch = rows[i:i + 32]
                sampling = SamplingConfig(max_new_tokens=max_new_tokens, greedy=mode == "greedy", seed=i)
                with torch.no_grad():
                    gen = generate(model, [encode_prompt(tok, r["prompt"], chat=True) for r in batch], sampling,
                                   stop_ids=[tok.im_end_id], pad_id=tok.pad_id)
                for r, toks, fin in zip(batch, gen.tokens, gen.finished):
                    text = tok.decode([t for t in toks if t != tok.im_end_id])
                    good = check_answer(r["task"], text)
                    ok += good
                    ended += fin
                    rude += is_rude(text)
                    reward += true_reward(r["task"], text, fin)
                    if len(examples) < 3:
                        examples.append((r["prompt"], text, good))
            n = len(rows)
            key = name if mode == "greedy" else f"{name}~"
            out[key] = {"acc": ok / n, "eos": ended / n, "rude": rude / n, "reward": reward / n, "examples": examples}
    return out


def rm_scores(ckpt: str, pairs: Path) -> dict:
    import torch

    from workbench.chat import render_preference_batch
    from workbench.model.checkpoint import load_checkpoint_tokenizer
    from workbench.train.models import load_reward_model

    rm, _, path = load_reward_model(ckpt, "cpu")
    tok = load_checkpoint_tokenizer(path)
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    by: dict[str, list[bool]] = {}
    for r in rows:
        msgs = {"prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}]}
        sc = []
        for x in render_preference_batch(tok, [msgs])[0]:
            with torch.no_grad():
                ids = torch.tensor([x.input_ids])
                sc.append(float(rm.score(ids, torch.ones_like(ids), torch.tensor([x.labels]))[0]))
        by.setdefault(r["rejected_kind"], []).append(sc[0] > sc[1])
    allv = [v for vs in by.values() for v in vs]
    return {"acc": sum(allv) / len(allv), **{k: sum(v) / len(v) for k, v in by.items()}}


EVALS = {"facts": "eval_facts.jsonl", "lore": "eval_lore.jsonl", "prompts": "prompts.jsonl"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--score", help="only score this checkpoint (an RM on eval_pairs, an LM on the eval files)")
    ap.add_argument("--data", default="sample_data")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--stages", default="tok,pretrain,sft,rm,dpo,ppo")
    for s in ("pretrain", "sft", "rm", "dpo", "ppo"):
        ap.add_argument(f"--{s}", nargs="*", default=[])
    a = ap.parse_args()
    data = Path(a.data)
    if a.score:
        from workbench.train.checkpoint import checkpoint_kind, resolve_checkpoint

        if checkpoint_kind(resolve_checkpoint(a.score)) == "reward":
            print(json.dumps(rm_scores(a.score, data / "eval_pairs.jsonl")))
        else:
            print(json.dumps(greedy_scores(a.score, {n: data / f for n, f in EVALS.items()})))
        return
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = a.stages.split(",")
    res_file = out / "results.json"
    res = json.loads(res_file.read_text()) if res_file.exists() else {}
    tok = out / "tok.tiktoken"
    parents = {"sft": "pretrain", "rm": "sft", "dpo": "sft", "ppo": "sft"}
    files = {"pretrain": "text.jsonl", "sft": "chat.jsonl", "rm": "preference.jsonl", "dpo": "preference.jsonl",
             "ppo": "prompts.jsonl"}
    if "tok" in stages:
        res["time_tok"] = sh([WB, "tokenizer", "train", str(data / "text.jsonl"), "--vocab-size", str(a.vocab),
                              "--out", str(tok)], out / "tok.log")
    for s in ("pretrain", "sft", "rm", "dpo", "ppo"):
        if s not in stages:
            continue
        cmd = [WB, "train", s, "--config", f"configs/{s}/cpu-demo.yaml", "--out", str(out / s),
               f"data={data / files[s]}", "tensorboard=false"]
        if s == "pretrain":
            cmd.append(f"tokenizer={tok}")
        else:
            cmd += ["--from", str(out / parents[s])]
        if s == "ppo":
            cmd.append(f"reward_model={out / 'rm'}")
        cmd += getattr(a, s)
        print(" ".join(cmd), flush=True)
        res[f"time_{s}"] = sh(cmd, out / f"{s}.log")
        print(f"{s}: {res[f'time_{s}']:.0f} s", flush=True)
        if s != "pretrain":  # scored in a child process: an idle parent holding torch's threads spins a core
            t = time.time()
            res[s] = json.loads(subprocess.run([sys.executable, __file__, "--score", str(out / s), "--data", str(data)],
                                               cwd=ROOT, capture_output=True, text=True, check=True).stdout)
            res[f"time_eval_{s}"] = time.time() - t
        print(json.dumps({k: v for k, v in res.items() if k in (s, "rm") or k.startswith("time")}, indent=1),
              flush=True)
        res_file.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
