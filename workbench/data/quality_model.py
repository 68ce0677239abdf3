"""A trained quality classifier for `workbench data prepare`: hashed word and character n-grams -> logistic regression.

    workbench data quality train --good ../shared/data/chat_lima.jsonl --bad ../shared/data/text_c4_demo.jsonl \\
        --out runs/quality
    workbench data prepare ../shared/data/text_c4_demo.jsonl --out runs/c4 --quality-model runs/quality

    from workbench.data.quality_model import QualityModel
    QualityModel.load("runs/quality").score(["a document", ...])    # P(good) per document, float64

The FineWeb-Edu / DCLM recipe in miniature: positives are curated text (the kind we want more of),
negatives raw web text and what the heuristic filters removed (`prepare --write-removed` leaves it
in removed.jsonl); the `classifier` step of prepare keeps the documents scoring at or above a threshold.

Why scikit-learn (HashingVectorizer + SGDClassifier) and not fastText, measured on LIMA's assistant
answers vs the C4 sample, 5-fold cross-validation, 2-core CPU (bench/quality_classifier.py):

    features                           accuracy  balanced  ROC AUC  scoring C4 (one run, same load)
    sklearn words 1-2 + char 4           0.887     0.779    0.928     1x
    sklearn words 1-2                    0.863     0.716    0.891     3.5x
    fasttext-wheel words 2 + char 3-5    0.857     0.803    0.905     4.5x
    fasttext-wheel words 2               0.860     0.796    0.894     8.7x

Accuracy is a draw within noise (300 negatives); fastText scores ~4x faster. But fastText is
archived upstream, its only wheel (fasttext-wheel 0.9.2) fails in predict() under numpy 2, and its
binary model format is parsed by C++ (trusted input only). scikit-learn is maintained and its
HashingVectorizer is stateless, so a model is plain numbers plus the vectorizers' parameters:
saved as safetensors + JSON, rebuilt exactly, no pickle. Character n-grams cost the time and buy
the accuracy; `char_ngrams: [0, 0]` (`quality train --no-char-ngrams`) trades one for the other.

A model is a folder, written atomically: quality.safetensors (`weights` float32 [features], `bias`
[1]) and quality.json (format, version, the vectorizers' parameters, the training report). Loading
checks all of it and names the file. Score = sigmoid(weights . x + bias), x = binary n-gram
indicators, L2-normalised per document.

Training inputs (--good, --bad): .txt files and folders (split into documents as prepare does,
workbench/data/corpus.py), .jsonl/.json/.parquet with a text field, or conversations in any format
workbench/data/loading.py detects: each assistant turn is one document (curated answers are the
text we want). Texts are normalised as prepare's first step does. A share of each class (by a hash
of the text, so the split is deterministic) is held out to measure the saved model itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError

FORMAT = "workbench-quality-model"
VERSION = 1
WEIGHTS, META = "quality.safetensors", "quality.json"
MISSING = "the quality classifier needs scikit-learn: pip install 'workbench[quality]'"
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class QualityTrainConfig:
    n_features: int = 2**20  # hash buckets per vectorizer (words, characters)
    word_ngrams: list = field(default_factory=lambda: [1, 2])  # [min, max] words
    char_ngrams: list = field(default_factory=lambda: [4, 4])  # [min, max] characters; [0, 0]: none
    alpha: float = 1e-5  # L2 penalty of the SGD logistic regression
    epochs: int = 30
    held_out: float = 0.2  # share of each class measured, not trained on (0: train on everything)
    seed: int = 0

    def validate(self) -> None:
        if self.n_features < 16 or self.epochs < 1 or self.alpha <= 0:
            raise WorkbenchError("n_features must be at least 16, epochs at least 1, alpha positive")
        if not 0.0 <= self.held_out < 1.0:
            raise WorkbenchError(f"held_out must be in [0, 1), got {self.held_out}")
        _check_features(self.features(), "the training config")

    def features(self) -> dict:
        return {"n_features": self.n_features, "word_ngrams": list(self.word_ngrams),
                "char_ngrams": list(self.char_ngrams), "lowercase": True, "token_pattern": r"(?u)\b\w\w+\b"}


def _check_features(f, where: str) -> None:
    def ngrams(v, zero_ok):
        return isinstance(v, list) and len(v) == 2 and all(isinstance(n, int) and not isinstance(n, bool) for n in v) \
            and ((v == [0, 0] and zero_ok) or 1 <= v[0] <= v[1] <= 10)
    ok = isinstance(f, dict) and isinstance(f.get("n_features"), int) and f["n_features"] >= 16 \
        and ngrams(f.get("word_ngrams"), False) and ngrams(f.get("char_ngrams"), True) \
        and isinstance(f.get("lowercase"), bool) and isinstance(f.get("token_pattern"), str)
    if not ok:
        raise WorkbenchError(f"{where}: bad feature settings {f!r} (word_ngrams [min, max] from 1 to 10, "
                             "char_ngrams the same or [0, 0], n_features at least 16)")


def _vectorizers(f: dict) -> list:
    try:
        from sklearn.feature_extraction.text import HashingVectorizer
    except ImportError:
        raise WorkbenchError(MISSING) from None
    # binary indicators, one sign, no norm here: the document is normalised over both blocks at once
    common = dict(n_features=f["n_features"], lowercase=f["lowercase"], alternate_sign=False, binary=True,
                  norm=None, dtype=np.float32)
    vecs = [HashingVectorizer(analyzer="word", ngram_range=tuple(f["word_ngrams"]),
                              token_pattern=f["token_pattern"], **common)]
    if f["char_ngrams"] != [0, 0]:
        vecs.append(HashingVectorizer(analyzer="char", ngram_range=tuple(f["char_ngrams"]), **common))
    return vecs


@dataclass
class QualityModel:
    features: dict  # the vectorizers' parameters (QualityTrainConfig.features())
    weights: np.ndarray  # float32 [n_features * number of vectorizers]
    bias: float
    info: dict = field(default_factory=dict)  # the training report
    path: str = ""

    def __post_init__(self):
        self._vecs = _vectorizers(self.features)

    def featurize(self, texts: list[str]):
        from scipy.sparse import hstack
        from sklearn.preprocessing import normalize

        return normalize(hstack([v.transform(texts) for v in self._vecs], format="csr"))

    def score(self, texts: list[str]) -> np.ndarray:
        """P(good) for each text."""
        if not texts:
            return np.zeros(0)
        z = self.featurize(texts) @ self.weights + np.float32(self.bias)
        return 1.0 / (1.0 + np.exp(-z.astype(np.float64)))

    def save(self, out: str | os.PathLike, force: bool = False) -> None:
        from workbench.io import atomic_dir

        with atomic_dir(out, force=force) as tmp:
            self.write(tmp)

    def write(self, folder: Path) -> None:
        """Into an existing (temporary) folder; `save` is the atomic way."""
        from safetensors.numpy import save_file

        save_file({"weights": self.weights, "bias": np.array([self.bias], np.float32)}, str(folder / WEIGHTS))
        meta = {"format": FORMAT, "version": VERSION, "features": self.features, "training": self.info}
        (folder / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "QualityModel":
        """A model folder (or a file in it) from `workbench data quality train`; every problem names the file."""
        from safetensors import safe_open

        p = Path(path).expanduser()
        folder = p.parent if p.is_file() and p.name in (WEIGHTS, META) else p
        hint = "train one with `workbench data quality train`"
        if not folder.exists():
            raise WorkbenchError(f"quality model {path} not found ({hint})")
        if not folder.is_dir() or not (folder / META).is_file():
            raise WorkbenchError(f"{path}: not a quality model folder (no {META}; {hint})")
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise WorkbenchError(f"{folder / META}: cannot be read as a quality model ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise WorkbenchError(f"{folder / META}: not a workbench quality model (format {FORMAT!r} expected)")
        if meta.get("version") != VERSION:
            raise WorkbenchError(f"{folder / META}: quality model format version {meta.get('version')!r}; this "
                                 f"workbench reads version {VERSION}; retrain it with `workbench data quality train`")
        _check_features(meta.get("features"), str(folder / META))
        f = meta["features"]
        expected = f["n_features"] * (1 if f["char_ngrams"] == [0, 0] else 2)
        try:
            with safe_open(str(folder / WEIGHTS), framework="numpy") as st:
                tensors = {k: st.get_tensor(k) for k in st.keys()}
        except FileNotFoundError:
            raise WorkbenchError(f"{folder / WEIGHTS}: missing (a quality model folder holds {WEIGHTS} and {META})") from None
        except Exception as e:  # safetensors raises its own errors for truncated or corrupt files
            raise WorkbenchError(f"{folder / WEIGHTS}: cannot be read ({str(e)[:200]})") from None
        w, b = tensors.get("weights"), tensors.get("bias")
        if w is None or b is None or w.shape != (expected,) or b.shape != (1,) or \
                w.dtype != np.float32 or b.dtype != np.float32:
            raise WorkbenchError(f"{folder / WEIGHTS}: expected float32 weights [{expected}] and bias [1], got "
                                 + ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in tensors.items()))
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise WorkbenchError(f"{folder / WEIGHTS}: weights are not finite (NaN or infinity)")
        return cls(f, w, float(b[0]), meta.get("training") or {}, str(folder))


# ---------------------------------------------------------------- reading training texts

def read_texts(specs: list[str], read, label: str) -> list[str]:
    """Documents from files/folders (see the module docstring), normalised; `label` names the option in errors."""
    from workbench.data.corpus import ReadStats, iter_documents, list_files
    from workbench.data.filters import FilterConfig, normalise_text
    from workbench.data.loading import open_source, read_records

    fc = FilterConfig()
    texts: list[str] = []
    for path in list_files(specs):
        if path.suffix.lower() == ".txt" or read.text_field != "text":
            docs = iter_documents([str(path)], read, ReadStats())
        else:
            src = open_source(str(path), skip_bad=read.skip_bad)
            if src.kind not in ("text", "conversation"):
                raise WorkbenchError(f"{path}: {src.format} records; {label} takes text documents or "
                                     "conversations (their assistant turns)")
            records = (r for _, r in read_records(src, skip_bad=read.skip_bad))
            docs = (r["text"] for r in records) if src.kind == "text" else \
                (m["content"] for r in records for m in r["messages"] if m["role"] == "assistant")
        texts += [t for t in map(lambda d: normalise_text(d, fc), docs) if t.strip()]
    if not texts:
        raise WorkbenchError(f"{label} {', '.join(specs)}: no documents to train on")
    return texts


def _held_out(texts: list[str], share: float) -> np.ndarray:
    """A mask: the floor(share * n) texts with the smallest hash (deterministic, order-independent)."""
    h = [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest() for t in texts]
    mask = np.zeros(len(texts), bool)
    mask[sorted(range(len(texts)), key=h.__getitem__)[:int(share * len(texts))]] = True
    return mask


# ---------------------------------------------------------------- training

def train_quality_model(good: list[str], bad: list[str], out: str | os.PathLike,
                        cfg: QualityTrainConfig | None = None, read=None, force: bool = False) -> dict:
    """Train, measure on the held-out share, save to `out`; return the training report."""
    from workbench.data.corpus import ReadConfig
    from workbench.io import atomic_dir

    cfg = cfg or QualityTrainConfig()
    cfg.validate()
    read = read or ReadConfig()
    _vectorizers(cfg.features())  # no scikit-learn: say so before reading anything
    # opened first: an existing --out (without --force) stops us before minutes of reading and training
    with atomic_dir(out, force=force, protect=[*good, *bad]) as tmp:
        report = _train(good, bad, cfg, read, tmp)
    return {**report, "out": str(out)}


def _train(good: list[str], bad: list[str], cfg: QualityTrainConfig, read, tmp: Path) -> dict:
    t0 = time.perf_counter()
    classes = {"good": read_texts(good, read, "--good"), "bad": read_texts(bad, read, "--bad")}
    held = {k: _held_out(v, cfg.held_out) for k, v in classes.items()}
    seconds_read = time.perf_counter() - t0

    def part(test: bool):
        texts = [t for k in ("good", "bad") for t, h in zip(classes[k], held[k]) if h == test]
        y = np.concatenate([np.full(int((held[k] == test).sum()), k == "good", np.int8) for k in ("good", "bad")])
        return texts, y

    t1 = time.perf_counter()
    model = fit(*part(False), cfg)
    report = {"good": _side(good, classes["good"], held["good"]), "bad": _side(bad, classes["bad"], held["bad"]),
              "config": asdict(cfg), "seconds": {"read": round(seconds_read, 3), "train": round(time.perf_counter() - t1, 3)},
              "held_out": _measure(model, *part(True))}
    model.info = report
    model.write(tmp)
    return report


def fit(texts: list[str], y: np.ndarray, cfg: QualityTrainConfig) -> QualityModel:
    """The model for labels `y` (1 = good); weights rounded to float32 here, so it scores as it will after loading."""
    try:
        from sklearn.linear_model import SGDClassifier
    except ImportError:
        raise WorkbenchError(MISSING) from None
    model = QualityModel(cfg.features(), np.zeros(0, np.float32), 0.0)
    # balanced: the classes are rarely the same size, and a threshold of 0.5 should mean "as likely good as bad"
    clf = SGDClassifier(loss="log_loss", alpha=cfg.alpha, max_iter=cfg.epochs, tol=None, class_weight="balanced",
                        random_state=cfg.seed).fit(model.featurize(texts), y)
    model.weights = clf.coef_.ravel().astype(np.float32)
    model.bias = float(np.float32(clf.intercept_[0]))
    return model


def _side(specs: list[str], texts: list[str], held: np.ndarray) -> dict:
    return {"inputs": [str(s) for s in specs], "documents": len(texts), "train": int((~held).sum()),
            "held_out": int(held.sum())}


def _measure(model: QualityModel, texts: list[str], y: np.ndarray) -> dict | None:
    """The saved model's accuracy on the held-out texts (None: nothing held out), and its scoring speed."""
    if not texts:
        return None
    t0 = time.perf_counter()
    p = model.score(texts)
    seconds = time.perf_counter() - t0
    good, bad = p[y == 1], p[y == 0]
    out = {"documents": len(texts), "accuracy": float(((p >= 0.5) == (y == 1)).mean()),
           "good_kept": float((good >= 0.5).mean()) if len(good) else None,
           "bad_removed": float((bad < 0.5).mean()) if len(bad) else None, "auc": None,
           "docs_per_s": len(texts) / max(seconds, 1e-9),
           "kept_at": {f"{t:g}": {"good": float((good >= t).mean()) if len(good) else None,
                                  "bad": float((bad >= t).mean()) if len(bad) else None} for t in THRESHOLDS}}
    if len(good) and len(bad):
        from sklearn.metrics import roc_auc_score

        out["balanced_accuracy"] = (out["good_kept"] + out["bad_removed"]) / 2
        out["auc"] = float(roc_auc_score(y, p))
    return out


def print_train_report(report: dict, console) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    g, b, h = report["good"], report["bad"], report["held_out"]
    console.print(Text(f"good: {g['documents']:,} documents ({g['train']:,} trained on, {g['held_out']:,} held out); "
                       f"bad: {b['documents']:,} ({b['train']:,}, {b['held_out']:,}); trained in "
                       f"{report['seconds']['train']:.1f} s"))
    if h is None:
        console.print(Text("nothing held out (held_out 0): no accuracy measured", style="yellow"))
    else:
        parts = [f"accuracy {h['accuracy']:.1%}"]
        if h.get("balanced_accuracy") is not None:
            parts += [f"balanced {h['balanced_accuracy']:.1%}", f"ROC AUC {h['auc']:.3f}",
                      f"good kept {h['good_kept']:.1%}", f"bad removed {h['bad_removed']:.1%}"]
        console.print(Text(f"held out ({h['documents']:,} documents, threshold 0.5): " + ", ".join(parts)
                           + f"; scoring {h['docs_per_s']:,.0f} docs/s"))
        table = Table(title="share kept at each threshold (held out)", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("threshold", "good kept", "bad kept"):
            table.add_column(col, justify="right")
        pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
        for t, k in h["kept_at"].items():
            table.add_row(t, pct(k["good"]), pct(k["bad"]))
        console.print(table)
    console.print(Text(f"model: {report['out']} (use: workbench data prepare ... --quality-model {report['out']})",
                       style="dim"))


# ---------------------------------------------------------------- what prepare's classifier step records

class ScoreStats:
    """Scores seen by prepare's classifier step: a histogram, documents kept at each threshold, both ends."""

    BINS = 10

    def __init__(self, thresholds, examples: int, snippet):
        self.thresholds = sorted(set(float(t) for t in thresholds))
        self.hist = np.zeros(self.BINS, np.int64)
        self.kept = np.zeros(len(self.thresholds), np.int64)
        self.n, self.total = 0, 0.0
        self.k, self.snippet = examples, snippet  # snippet(text) -> a short, PII-scrubbed string
        self.low: list[tuple[float, str]] = []
        self.high: list[tuple[float, str]] = []

    def add(self, texts: list[str], scores: np.ndarray) -> None:
        if not len(scores):
            return
        self.hist += np.histogram(scores, bins=self.BINS, range=(0.0, 1.0))[0]
        self.kept += (scores[:, None] >= np.array(self.thresholds)[None, :]).sum(0)
        self.n += len(scores)
        self.total += float(scores.sum())
        order = np.argsort(scores, kind="stable")
        self.low = sorted(self.low + [(float(scores[i]), self.snippet(texts[i])) for i in order[:self.k]])[:self.k]
        self.high = sorted(self.high + [(float(scores[i]), self.snippet(texts[i])) for i in order[::-1][:self.k]],
                           key=lambda e: -e[0])[:self.k]

    def as_dict(self) -> dict:
        return {"documents": self.n, "mean": self.total / max(self.n, 1),
                "histogram": {"edges": [round(i / self.BINS, 3) for i in range(self.BINS + 1)],
                              "counts": self.hist.tolist()},
                "kept_at": {f"{t:g}": int(k) for t, k in zip(self.thresholds, self.kept)},
                "lowest": [{"score": round(s, 4), "text": t} for s, t in self.low],
                "highest": [{"score": round(s, 4), "text": t} for s, t in self.high]}
