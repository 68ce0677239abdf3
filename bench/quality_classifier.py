"""The quality classifier: held-out accuracy, scoring speed, and how much of a web crawl it keeps per threshold.

    python bench/quality_classifier.py [--good FILE] [--bad FILE] [--folds 5]
        # default: LIMA's assistant answers (../shared/data/chat_lima.jsonl) vs the C4 sample
        # (../shared/data/text_c4_demo.jsonl), needs the `quality` extra (scikit-learn)

k-fold cross-validation over both classes, by the same code `workbench data quality train` runs
(workbench/data/quality_model.py: fit, then the float32 model that would be saved). Each --bad
document is scored once, by the fold's model that did not train on it, so the retention table is
what the classifier would keep of web text it has never seen (the seed articles: ~30% of a crawl).
Rows: the default features (word 1-2-grams + char 4-grams) and words only. Docs/s is model.score
on the --bad documents (one thread), the number the `classifier` step of prepare runs at.
Not a test: results go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402

from workbench.data.corpus import ReadConfig  # noqa: E402
from workbench.data.quality_model import THRESHOLDS, QualityTrainConfig, fit, read_texts  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def folds(n: int, k: int, rng) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def main() -> None:
    from sklearn.metrics import roc_auc_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--good", default=str(SHARED / "chat_lima.jsonl"))
    ap.add_argument("--bad", default=str(SHARED / "text_c4_demo.jsonl"))
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()

    good, bad = read_texts([args.good], ReadConfig(), "--good"), read_texts([args.bad], ReadConfig(), "--bad")
    texts = good + bad
    y = np.array([1] * len(good) + [0] * len(bad), np.int8)
    print(f"good: {len(good):,} documents from {Path(args.good).name}; bad: {len(bad):,} from {Path(args.bad).name}; "
          f"{args.folds}-fold cross-validation")
    print(f"{'features':<24} {'acc':>6} {'bal acc':>8} {'AUC':>6} {'good kept':>10} {'bad removed':>12} "
          f"{'fit s':>6} {'docs/s':>7}   bad kept at " + " ".join(f"{t:g}" for t in THRESHOLDS))
    for name, cfg in (("words 1-2 + char 4", QualityTrainConfig()),
                      ("words 1-2", QualityTrainConfig(char_ngrams=[0, 0]))):
        fold = folds(len(texts), args.folds, np.random.default_rng(0))
        p = np.zeros(len(texts))
        fit_s, rates = 0.0, []
        for k in range(args.folds):
            train, test = fold != k, fold == k
            t0 = time.perf_counter()
            model = fit([t for t, m in zip(texts, train) if m], y[train], cfg)
            fit_s += time.perf_counter() - t0
            p[test] = model.score([t for t, m in zip(texts, test) if m])
            bad_test = [t for t, m, c in zip(texts, test, y) if m and c == 0]
            t0 = time.perf_counter()
            model.score(bad_test)
            rates.append(len(bad_test) / (time.perf_counter() - t0))
        pos, neg = p[y == 1], p[y == 0]
        good_kept, bad_removed = (pos >= 0.5).mean(), (neg < 0.5).mean()
        acc = ((p >= 0.5) == (y == 1)).mean()
        kept = " ".join(f"{(neg >= t).mean():.0%}" for t in THRESHOLDS)
        print(f"{name:<24} {acc:>6.3f} {(good_kept + bad_removed) / 2:>8.3f} {roc_auc_score(y, p):>6.3f} "
              f"{good_kept:>10.1%} {bad_removed:>12.1%} {fit_s / args.folds:>6.1f} {np.median(rates):>7.0f}   {kept}")


if __name__ == "__main__":
    main()
