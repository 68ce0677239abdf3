"""`workbench data prepare` throughput (MB/s, docs/s) and the share of time per step, in one run.

    python bench/prepare_throughput.py [FILES...]   # default: ../shared/data/text_c4_demo.jsonl and
                                                    #          ../shared/data/text_tinyshakespeare.txt

Each input is prepared into a temporary folder with the default config (cl100k_base, both
dedups), best of --repeat runs. One warm-up run on sample_data/text.jsonl comes first: the first
`datasets` load of a process spends ~1.5 s setting itself up, which is not per-file work.
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


def run(path: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return prepare([str(path)], Path(tmp) / "out", PrepareConfig())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=[str(p) for p in DEFAULT])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    run(ROOT / "sample_data" / "text.jsonl")  # warm-up
    print(f"{'input':<28} {'MB':>6} {'docs':>6} {'kept':>6} {'tokens':>9} {'s':>6} {'MB/s':>6} {'docs/s':>7}  share of time per step")
    for f in args.files:
        best = min((run(Path(f)) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        steps = {s["name"]: s["seconds"] for s in best["steps"]}
        total = sum(steps.values()) or 1
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in steps.items() if v / total >= 0.005)
        print(f"{Path(f).name:<28} {best['input']['bytes'] / 1e6:>6.2f} {best['input']['documents']:>6} "
              f"{best['retained']['documents']:>6.1%} {best['output']['tokens']:>9,} {best['seconds']:>6.2f} "
              f"{best['throughput']['mb_per_s']:>6.2f} {best['throughput']['docs_per_s']:>7.0f}  {shares}")


if __name__ == "__main__":
    main()
