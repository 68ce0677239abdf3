"""`workbench data prepare` throughput (MB/s, docs/s) with 1 and N worker processes, and the time per step, in one run.

    python bench/prepare_throughput.py [FILES...]   # default: ../shared/data/text_c4_demo.jsonl,
                                                    #   ../shared/data/text_tinyshakespeare.txt and the C4
                                                    #   sample replicated --replicate times (10)
    python bench/prepare_throughput.py --workers 2 --batch-size 100 --repeat 3
    python bench/prepare_throughput.py --quality-model runs/quality   # + a "with the classifier" row per file

Each input is prepared into a temporary folder with the default config (cl100k_base, both dedups)
with `parallel.workers` 1 and N (default: every core), the runs interleaved so both see the same
machine load; best of --repeat. Two measurements per setting:
  prepare  the whole command: docs/s and MB/s of the input, and the seconds of each step (with
           workers, a step's seconds add up its time in every worker: CPU-ish, not wall time);
  filters  normalise -> boilerplate_lines -> quality [-> classifier] -> pii alone, over batches read
           into memory beforehand, through the same BatchRunner prepare uses (pool start included;
           near dedup off, as the workers would also compute its signatures): the part the workers
           run, so its speed-up is the pool's.
The load average (1 minute) is printed with every row, and `machine x`: what the machine gave at that
moment to N processes of a pure-Python busy loop against one (the ceiling of any speed-up then; on
a shared machine it swings with the neighbours' load). One warm-up run on sample_data/text.jsonl comes
first (the first `datasets` load of a process spends ~1.5 s setting itself up, and it starts the
forkserver the workers are forked from). The replicated C4 is 90% exact duplicates: the filters see
every copy, dedup removes them, so its dedup and tokenize shares are lower than a real corpus's.
A model trained on this C4 sample scores its own training negatives, so a classifier row's "kept" is
not a retention figure (bench/quality_classifier.py measures that). Not a test: results go to
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from workbench.data.corpus import ReadStats, iter_documents  # noqa: E402
from workbench.data.prepare import load_config, prepare  # noqa: E402
from workbench.data.prepare_batch import BATCH_STEPS, BatchRunner, resolve_workers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT = [SHARED / "text_c4_demo.jsonl", SHARED / "text_tinyshakespeare.txt"]


def config(workers: int, batch_size: int, model: str):
    return load_config(None, {"parallel.workers": workers, "input.batch_size": batch_size, "classifier.model": model})


def run_prepare(path: Path, cfg) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return prepare([str(path)], Path(tmp) / "out", cfg)


class _Batch:
    def __init__(self, texts):
        self.texts = texts


def run_filters(batches: list, cfg, model) -> float:
    """Seconds to push every batch through the per-document steps (what the workers do). Without
    near dedup, whose signatures workers compute too but one process leaves to dedup: same work."""
    cfg = load_config(None, {"parallel.workers": cfg.parallel.workers, "classifier.model": cfg.classifier.model,
                             "dedup.near": False})
    t0 = time.perf_counter()
    with BatchRunner(cfg, cfg.parallel.workers, model) as runner:
        for _ in runner.results(batches):
            pass
    return time.perf_counter() - t0


def _spin(n: int) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t0


def machine_speedup(workers: int, n: int = 5_000_000) -> float:
    """N busy loops in N processes against one in this process: throughput ratio."""
    import multiprocessing

    one = _spin(n)
    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
        many = max(pool.map(_spin, [n] * workers))
    return workers * one / many


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--workers", type=int, default=0, help="N for the parallel runs (0: every core)")
    ap.add_argument("--batch-size", type=int, default=load_config().input.batch_size)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--replicate", type=int, default=10, help="also prepare the C4 sample repeated this often (0: no)")
    ap.add_argument("--quality-model", default="", help="also prepare each file with this classifier")
    args = ap.parse_args()
    n = resolve_workers(args.workers)

    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(f) for f in args.files] or list(DEFAULT)
        if not args.files and args.replicate > 1:
            big = Path(tmp) / f"text_c4_demo_x{args.replicate}.jsonl"
            big.write_bytes(DEFAULT[0].read_bytes() * args.replicate)
            files.append(big)
        model = None
        if args.quality_model:
            from workbench.data.quality_model import QualityModel

            model = QualityModel.load(args.quality_model)
        run_prepare(ROOT / "sample_data" / "text.jsonl", config(n, 100, ""))  # warm-up: datasets, the forkserver
        print(f"{os.cpu_count()} cores, workers 1 vs {n}, batch size {args.batch_size}, best of {args.repeat}")
        print(f"{'input':<30} {'w':>2} {'MB':>6} {'docs':>6} {'kept':>6} {'s':>6} {'MB/s':>6} {'docs/s':>7} "
              f"{'x':>5} {'filters/s':>9} {'x':>5} {'load':>5} {'machine x':>9}  seconds per step")
        for f in files:
            for with_model in [False] + ([True] if model else []):
                name = f.name + (" + classifier" if with_model else "")
                cfgs = {w: config(w, args.batch_size, args.quality_model if with_model else "") for w in (1, n)}
                docs = list(iter_documents([str(f)], cfgs[1].input, ReadStats()))
                batches = [_Batch(docs[i:i + args.batch_size]) for i in range(0, len(docs), args.batch_size)]
                best, filt, loads, machine = {}, {}, [], []
                for _ in range(args.repeat):
                    machine.append(machine_speedup(n))
                    for w in (1, n):
                        r = run_prepare(f, cfgs[w])
                        if w not in best or r["seconds"] < best[w]["seconds"]:
                            best[w] = r
                        filt[w] = min(filt.get(w, float("inf")), run_filters(batches, cfgs[w], model if with_model else None))
                        loads.append(os.getloadavg()[0])
                for w in (1, n):
                    r = best[w]
                    steps = ", ".join(f"{s['name']} {s['seconds']:.2f}" for s in r["steps"])
                    up = best[1]["seconds"] / r["seconds"]
                    fup = filt[1] / filt[w]
                    print(f"{name:<30} {w:>2} {r['input']['bytes'] / 1e6:>6.2f} {r['input']['documents']:>6} "
                          f"{r['retained']['documents']:>6.1%} {r['seconds']:>6.2f} {r['throughput']['mb_per_s']:>6.2f} "
                          f"{r['throughput']['docs_per_s']:>7.0f} {up:>5.2f} {len(docs) / filt[w]:>9.0f} {fup:>5.2f} "
                          f"{max(loads):>5.1f} {min(machine):>4.2f}-{max(machine):<4.2f}  {steps}")
        print(f"filters = {' -> '.join(s for s in BATCH_STEPS if model or s != 'classifier')}; x = speed-up over "
              "1 worker; load = the highest 1-minute load average seen during that file's runs")


if __name__ == "__main__":
    main()
