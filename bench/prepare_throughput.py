"""`workbench data prepare` throughput (MB/s, docs/s) and the share of time per step, in one run.

    python bench/prepare_throughput.py [FILES...]   # default: ../shared/data/text_c4_demo.jsonl and
                                                    #          ../shared/data/text_tinyshakespeare.txt
    python bench/prepare_throughput.py --quality-model runs/quality   # + a "with the classifier" row per file

Each input is prepared into a temporary folder with the default config (cl100k_base, both
dedups), best of --repeat runs. One warm-up run on sample_data/text.jsonl comes first: the first
`datasets` load of a process spends ~1.5 s setting itself up, which is not per-file work.
With --quality-model (from `workbench data quality train`) each file is prepared again with the
classifier step (default threshold 0.5); its own docs/s is printed after the step shares. A model
trained on this C4 sample scores its own training negatives, so that row's "kept" is not a
retention figure: bench/quality_classifier.py measures retention on unseen documents.
Not a test: results go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from workbench.data.prepare import PrepareConfig, prepare  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT = [SHARED / "text_c4_demo.jsonl", SHARED / "text_tinyshakespeare.txt"]


def run(path: Path, model: str = "") -> dict:
    cfg = PrepareConfig()
    cfg.classifier.model = model
    with tempfile.TemporaryDirectory() as tmp:
        return prepare([str(path)], Path(tmp) / "out", cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=[str(p) for p in DEFAULT])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quality-model", default="", help="also prepare each file with this classifier")
    args = ap.parse_args()

    run(ROOT / "sample_data" / "text.jsonl")  # warm-up
    print(f"{'input':<34} {'MB':>6} {'docs':>6} {'kept':>6} {'tokens':>9} {'s':>6} {'MB/s':>6} {'docs/s':>7}  share of time per step")
    rows = [(f, "") for f in args.files] + [(f, args.quality_model) for f in args.files if args.quality_model]
    for f, model in rows:
        best = min((run(Path(f), model) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        steps = {s["name"]: s["seconds"] for s in best["steps"]}
        total = sum(steps.values()) or 1
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in steps.items() if v / total >= 0.005)
        if model:
            c = next(s for s in best["steps"] if s["name"] == "classifier")
            shares += f"; classifier {c['docs_in'] / max(c['seconds'], 1e-9):,.0f} docs/s"
        name = Path(f).name + (" + classifier" if model else "")
        print(f"{name:<34} {best['input']['bytes'] / 1e6:>6.2f} {best['input']['documents']:>6} "
              f"{best['retained']['documents']:>6.1%} {best['output']['tokens']:>9,} {best['seconds']:>6.2f} "
              f"{best['throughput']['mb_per_s']:>6.2f} {best['throughput']['docs_per_s']:>7.0f}  {shares}")


if __name__ == "__main__":
    main()
