"""Model throughput in one run: matmul peak, training tokens/s and MFU, KV-cache decoding, chunked-loss memory.

    python bench/model_throughput.py                  # full run on CUDA if present, else CPU (~8 min on 2 CPU cores)
    python bench/model_throughput.py --quick          # smoke run (< 2 min on 2 CPU cores)
    python bench/model_throughput.py --vocab 8192     # a small trained-tokenizer vocabulary instead of cl100k
    python bench/model_throughput.py --device cuda --compile   # bf16 autocast, preset base, torch.compile'd blocks

On a shared 2-core machine, close other work first: with torch's 2 threads and the second core busy,
small ops wait on the descheduled thread (decode steps were measured 25x slower). So generation
runs with --gen-threads (default 1 on CPU); the 1-minute load average is printed before and after.

Sections (markdown tables; figures to docs/BENCHMARKS.md as ratios from one run):
  1. peak        best of several square matmuls, moments before (CPU fp32 2048^2; CUDA bf16 8192^2), GFLOP/s
  2. train       forward + backward + AdamW step, tokens/s (best timed step), MFU = flops/token x tokens/s / peak,
                 where flops/token = cfg.stats(seq_len) at the seq_len used and the peak is re-measured just
                 before each row; "head+loss" = the share of a step spent in the chunked output-head loss alone
  3. generate    greedy tokens/s: generate() with the KV cache vs recomputing the whole sequence every step
  4. loss-mem    linear_cross_entropy (chunked) vs naive_cross_entropy at vocab 100,352 x 4,096 tokens:
                 peak memory of forward + backward, each in a fresh subprocess (CPU: peak RSS above the
                 inputs, via /proc VmHWM reset; CUDA: max_memory_allocated), time, and max |diff| of the
                 loss and of the gradients of h and W
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from workbench.model import Transformer, preset
from workbench.model.generate import SamplingConfig, generate
from workbench.model.loss import causal_lm_loss, linear_cross_entropy, naive_cross_entropy

CL100K_PADDED = 100352
CL100K_LIMIT = 100278


# ---------------------------------------------------------------------------------------- helpers
def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def table(headers, rows):
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    print(flush=True)


def matmul_peak(device, n=None, repeat=10):
    """Best-of-`repeat` GFLOP/s of one n x n matmul: fp32 on CPU, bf16 on CUDA."""
    n = n or (8192 if device == "cuda" else 2048)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty_like(a)
    torch.mm(a, b, out=out)  # warm up
    best = min(timed(lambda: torch.mm(a, b, out=out), device)[0] for _ in range(repeat))
    return 2 * n ** 3 / best / 1e9


# ---------------------------------------------------------------------------------------- training
def train_setup(name, B, T, args, device):
    overrides = {"vocab_size": args.vocab} if args.vocab else {}
    if args.compile:
        overrides["compile"] = True
    cfg = preset(name, **overrides, max_seq_len=max(T, preset(name).max_seq_len))
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    ids = torch.randint(0, cfg.vocab_size, (B, T), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            out = model(ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out

    return cfg, model, ids, step


def head_loss_time(cfg, model, B, T, device):
    """fwd+bwd of the output-head loss alone on [B, T, d] hidden states (best of 2)."""
    hidden = torch.randn(B, T, cfg.d_model, device=device, requires_grad=True)
    labels = torch.randint(0, cfg.vocab_size, (B, T), device=device)

    def run():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _ = causal_lm_loss(hidden, model.lm_head.weight, labels, vocab_limit=cfg.vocab_size)
        loss.backward()

    t = min(timed(run, device)[0] for _ in range(2))
    model.zero_grad(set_to_none=True)
    return t


def bench_train(args, device, shapes):
    rows, results = [], {}
    for name, (B, T) in shapes.items():
        cfg, model, ids, step = train_setup(name, B, T, args, device)
        for _ in range(args.warmup):
            step()
        peak = matmul_peak(device)  # moments before the timed steps: this machine is shared and noisy
        times = [timed(step, device)[0] for _ in range(args.steps)]
        st = cfg.stats(T)
        tps = B * T / min(times)
        mfu = st["flops_per_token"] * tps / (peak * 1e9)
        share = head_loss_time(cfg, model, B, T, device) / min(times) if not args.quick else float("nan")
        results[name] = dict(tps=tps, mfu=mfu, peak=peak, share=share, step=min(times))
        rows.append([name, f"{B}x{T}", f"{cfg.padded_vocab:,}", f"{st['params'] / 1e6:.2f}M",
                     f"{st['active_params'] / 1e6:.2f}M", f"{st['flops_per_token'] / 1e6:.1f}M",
                     f"{min(times):.2f} / {statistics.median(times):.2f}", f"{tps:,.0f}", f"{peak:,.0f}",
                     f"**{mfu:.1%}**", f"{share:.0%}"])
        del model
    print(f"### Training step ({'bf16 autocast' if device == 'cuda' else 'fp32'}, fwd+bwd+AdamW, "
          f"{args.warmup} warmup + {args.steps} timed steps, tokens/s from the best step)\n")
    table(["preset", "batch x seq", "vocab (padded)", "params", "active", "FLOPs/token", "step s best / median",
           "tokens/s", "peak GFLOP/s", "MFU", "head+loss share"], rows)
    return results


def greedy_no_cache(model, prompts, n, pad_id=0):
    """The baseline: the whole sequence through the model again for every new token."""
    cfg = model.cfg
    ids = torch.tensor(prompts, device=next(model.parameters()).device)
    banned = torch.zeros(cfg.padded_vocab, dtype=torch.bool, device=ids.device)
    banned[cfg.vocab_size:] = True
    banned[pad_id] = True  # as generate() does
    new = []
    for _ in range(n):
        logits = model(ids, logits_to_keep=1).logits[:, -1].float().masked_fill(banned, float("-inf"))
        nxt = logits.argmax(-1)
        new.append(nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
    return torch.stack(new, 1)


def bench_generate(args, device, runs, n_new, prompt_len=32):
    rows, results = [], {}
    threads = torch.get_num_threads()
    if device == "cpu" and args.gen_threads:
        torch.set_num_threads(args.gen_threads)
    for name, batches in runs.items():
        cfg = preset(name, **({"vocab_size": args.vocab} if args.vocab else {}))
        torch.manual_seed(0)
        model = Transformer(cfg).to(device).eval()
        if device == "cuda":
            model = model.to(torch.bfloat16)
        for B in batches:
            prompts = torch.randint(1, cfg.vocab_size, (B, prompt_len)).tolist()
            sampling = SamplingConfig(max_new_tokens=n_new, greedy=True)
            generate(model, prompts, SamplingConfig(max_new_tokens=4, greedy=True), stop_ids=())  # warm up
            t_cache, gen = timed(lambda: generate(model, prompts, sampling, stop_ids=()), device)
            assert all(len(t) == n_new for t in gen.tokens), "generation stopped early"
            t_full, toks = timed(lambda: greedy_no_cache(model, prompts, n_new), device)
            same = (toks.cpu() == torch.tensor(gen.tokens)).float().mean().item()
            speedup = t_full / t_cache
            results[(name, B)] = speedup
            rows.append([name, B, f"{B * n_new / t_full:,.0f}", f"{B * n_new / t_cache:,.0f}",
                         f"**{speedup:.1f}x**", f"{same:.0%}"])
    print(f"### Greedy generation ({prompt_len}-token prompt, {n_new} new tokens, no stop token, "
          f"{torch.get_num_threads()} torch thread(s))\n")
    torch.set_num_threads(threads)
    table(["preset", "batch", "no cache tokens/s", "KV cache tokens/s", "cache speedup", "same tokens"], rows)
    return results


# ---------------------------------------------------------------------------------------- loss memory
def _rss_now_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _reset_peak_rss() -> bool:
    try:  # "5" resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kb(reset_ok):
    if reset_ok:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def loss_child(variant, device, N, d):
    """Run in a fresh process: one fwd+bwd of one loss variant; print JSON (peak MB above inputs, seconds)."""
    torch.manual_seed(0)
    V, limit = CL100K_PADDED, CL100K_LIMIT
    h = torch.randn(N, d, device=device, requires_grad=True)
    W = (torch.randn(V, d, device=device) * 0.02).requires_grad_()
    targets = torch.randint(0, limit, (N,), device=device)
    fn = naive_cross_entropy if variant == "naive" else linear_cross_entropy

    def run():
        nll = fn(h, W, targets, vocab_limit=limit)
        nll.mean().backward()
        return nll

    if variant == "check":  # correctness: chunked against naive
        fn = naive_cross_entropy
        ref = run().detach()
        ref_g = (h.grad.clone(), W.grad.clone())
        out = {}
        for name in ("chunked",):
            h.grad = W.grad = None
            nll = linear_cross_entropy(h, W, targets, vocab_limit=limit)
            nll.mean().backward()
            out[name] = dict(loss=(nll.detach() - ref).abs().max().item(),
                             mean_loss=abs(nll.mean().item() - ref.mean().item()),
                             grad_h=(h.grad - ref_g[0]).abs().max().item(),
                             grad_W=(W.grad - ref_g[1]).abs().max().item())
        print(json.dumps(out))
        return
    # warm up kernels on a few tokens, then measure from the inputs' footprint
    fn(h[:16], W, targets[:16], vocab_limit=limit).mean().backward()
    h.grad = W.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_ok = _reset_peak_rss()
        base = _rss_now_kb()
    t, _ = timed(run, device)
    if device == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    else:
        peak_mb = (_peak_rss_kb(reset_ok) - base) / 1024
    print(json.dumps(dict(peak_mb=peak_mb, seconds=t, inputs_mb=(h.numel() + W.numel()) * 4 / 2 ** 20)))


def bench_loss_memory(args, device, N, d=256):
    def child(variant):
        cmd = [sys.executable, os.path.abspath(__file__), "--loss-child", variant, "--device", device,
               "--loss-tokens", str(N), "--loss-d", str(d)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"loss child {variant} failed:\n{res.stderr}")
        return json.loads(res.stdout.strip().splitlines()[-1])

    r = {v: child(v) for v in ("naive", "chunked")}
    check = child("check")
    naive = r["naive"]["peak_mb"]
    rows = [[v, f"{r[v]['peak_mb']:,.0f}", f"**{r[v]['peak_mb'] / naive:.2f}**", f"{r[v]['seconds']:.2f}",
             f"{r[v]['seconds'] / r['naive']['seconds']:.2f}",
             "-" if v == "naive" else f"{check[v]['loss']:.1e}",
             "-" if v == "naive" else f"{check[v]['grad_h']:.1e}",
             "-" if v == "naive" else f"{check[v]['grad_W']:.1e}"] for v in r]
    print(f"### Loss fwd+bwd at vocab {CL100K_PADDED:,} (limit {CL100K_LIMIT:,}) x {N:,} tokens, d={d} "
          f"(inputs {r['naive']['inputs_mb']:.0f} MB; each variant in a fresh process; "
          f"{'max_memory_allocated' if device == 'cuda' else 'peak RSS'} above the inputs)\n")
    table(["variant", "peak MB", "vs naive", "seconds", "time vs naive", "max |dloss|", "max |dgrad h|",
           "max |dgrad W|"], rows)
    return dict(ratio=r["chunked"]["peak_mb"] / naive,
                diff=max(max(check[k][x] for x in ("loss", "grad_h", "grad_W")) for k in check))


# ---------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="smoke run: few steps, fewer presets, short generation")
    ap.add_argument("--vocab", type=int, default=None, help="override vocab_size (e.g. 8192) in train/generate")
    ap.add_argument("--compile", action="store_true", help="torch.compile each block (cfg.compile)")
    ap.add_argument("--presets", default=None, help="comma-separated training presets (default per device)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per preset")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--sections", default="peak,train,generate,loss-mem")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--gen-threads", type=int, default=None, help="threads for generation (CPU default 1; 0 = as --threads)")
    ap.add_argument("--loss-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--loss-tokens", type=int, default=None)
    ap.add_argument("--loss-d", type=int, default=256)
    args = ap.parse_args()
    device = args.device
    if args.loss_child:
        loss_child(args.loss_child, device, args.loss_tokens, args.loss_d)
        return
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gen_threads is None:
        args.gen_threads = 1 if device == "cpu" else 0
    sections = set(args.sections.split(","))
    q = args.quick
    args.steps = args.steps or (1 if q else 4)
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 2)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        shapes = {"base": (8, 1024), "base-dense": (8, 1024)}
        gen_runs = {"tiny": [1, 8], "tiny-dense": [1, 8], "small": [1, 8], "base": [1, 8]}
    else:
        shapes = {"tiny": (8, 256), "tiny-dense": (8, 256), "small": (4, 256), "small-dense": (4, 256)}
        gen_runs = {"tiny": [1, 8], "tiny-dense": [1, 8], "small": [1]}  # small x8 without cache: minutes
    if args.presets:
        every = {"tiny": (8, 256), "small": (4, 256), "base": (8, 1024)}
        shapes = {n: every[n.split("-")[0]] for n in args.presets.split(",")}
    elif q:  # a smoke run: two presets at a smaller batch
        shapes = {n: (max(1, B // 2), T // 2) for n, (B, T) in list(shapes.items())[:2]}
    if q:
        gen_runs = {n: [1] for n in list(gen_runs)[:2]}
    n_new = 32 if q else 256
    loss_tokens = args.loss_tokens or (512 if q else 4096)

    print(f"device: {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else
                                 f", {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
          + f", torch {torch.__version__}, vocab {args.vocab or 'cl100k (100,278 -> 100,352 padded)'}"
          + (", compile" if args.compile else "")
          + f", load average {os.getloadavg()[0]:.2f}\n")
    t0 = time.perf_counter()
    summary = []
    if "peak" in sections:
        sizes = [4096, 8192] if device == "cuda" else [1024, 2048, 4096]
        peaks = {n: matmul_peak(device, n) for n in sizes}
        print(f"### Matmul peak ({'bf16' if device == 'cuda' else 'fp32'}, best of 10)\n")
        table(["n x n", "GFLOP/s"], [[f"{n}", f"{g:,.0f}"] for n, g in peaks.items()])
    if "train" in sections:
        tr = bench_train(args, device, shapes)
        for name, r in tr.items():
            goal = "dense >= 50%" if "dense" in name else "reported next to dense"
            met = ("met" if r["mfu"] >= 0.5 else "not met") if "dense" in name else "-"
            summary.append([f"MFU {name}", f"{r['mfu']:.1%} ({r['tps']:,.0f} tok/s)", goal, met])
    if "generate" in sections:
        g = bench_generate(args, device, gen_runs, n_new)
        for (name, B), s in g.items():
            summary.append([f"KV cache {name} batch {B}", f"{s:.1f}x", ">= 5x", "met" if s >= 5 else "not met"])
    if "loss-mem" in sections:
        lm = bench_loss_memory(args, device, loss_tokens, args.loss_d)
        summary.append(["chunked loss peak memory", f"{lm['ratio']:.2f} of naive",
                        "<= 0.33", "met" if lm["ratio"] <= 1 / 3 else "not met"])
        summary.append(["chunked loss = naive", f"max |diff| {lm['diff']:.1e}", "<= 1e-5",
                        "met" if lm["diff"] <= 1e-5 else "not met"])
    print(f"### Summary ({time.perf_counter() - t0:.0f} s, load average {os.getloadavg()[0]:.2f})\n")
    table(["figure", "measured", "goal", "status"], summary)


if __name__ == "__main__":
    main()
