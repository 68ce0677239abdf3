"""The quality classifier: train/save/load round trip, separation, prepare's classifier step, bad models, CLI."""

import json
import random

import numpy as np
import pytest

from tests.conftest import shared
from workbench.errors import WorkbenchError

pytest.importorskip("sklearn")

from workbench.data.corpus import ReadConfig  # noqa: E402
from workbench.data.prepare import load_config, prepare  # noqa: E402
from workbench.data.quality_model import (QualityModel, QualityTrainConfig, _held_out, read_texts,  # noqa: E402
                                          train_quality_model)

# Two vocabularies that share no word: any working n-gram classifier separates them perfectly.
GOOD = ("the river carries sediment toward delta where slow water settles fine clay layers over many "
        "seasons while plants anchor banks and roots hold soil against floods that arrive each spring").split()
BAD = ("buy cheap discount deals now click here free shipping limited offer best price sale hurry "
       "order today coupon code bonus gift exclusive bargain lowest prices guaranteed winner").split()
SMALL = QualityTrainConfig(n_features=2**12, epochs=20)


def _doc(words, seed, n=40):
    r = random.Random(seed)
    sentences = [" ".join(r.choice(words) for _ in range(8)).capitalize() + "." for _ in range(n // 8)]
    return " ".join(sentences)


def _jsonl(path, docs, field="text"):
    path.write_text("".join(json.dumps({field: d}) + "\n" for d in docs), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("quality")
    good = _jsonl(d / "good.jsonl", [_doc(GOOD, i) for i in range(40)])
    bad = _jsonl(d / "bad.jsonl", [_doc(BAD, 1000 + i) for i in range(40)])
    report = train_quality_model([good], [bad], d / "model", SMALL)
    return d / "model", report, (good, bad)


def test_separates_separable_classes_and_reports_the_saved_models_accuracy(model_dir):
    path, report, (good, bad) = model_dir
    h = report["held_out"]
    assert report["good"] == {"inputs": [good], "documents": 40, "train": 32, "held_out": 8}
    assert h["documents"] == 16 and h["accuracy"] == 1.0 and h["auc"] == 1.0 and h["balanced_accuracy"] == 1.0
    model = QualityModel.load(path)
    fresh_good, fresh_bad = model.score([_doc(GOOD, 5000 + i) for i in range(10)]), \
        model.score([_doc(BAD, 6000 + i) for i in range(10)])
    assert (fresh_good > 0.5).all() and (fresh_bad < 0.5).all()
    # the reported accuracy is the saved model's: recompute it on the same held-out documents
    texts = {k: read_texts([f], ReadConfig(), k) for k, f in (("good", good), ("bad", bad))}
    held = [t for k in ("good", "bad") for t, m in zip(texts[k], _held_out(texts[k], 0.2)) if m]
    p = model.score(held)
    assert h["kept_at"]["0.5"] == {"good": float((p[:8] >= 0.5).mean()), "bad": float((p[8:] >= 0.5).mean())}
    assert model.info["held_out"]["auc"] == 1.0 and model.features["n_features"] == 2**12


def test_save_load_round_trip_gives_identical_scores(tmp_path, model_dir):
    rng = np.random.default_rng(0)
    m = QualityModel(SMALL.features(), rng.normal(size=2 * 2**12).astype(np.float32), 0.25, {"note": "x"})
    m.save(tmp_path / "m")
    back = QualityModel.load(tmp_path / "m" / "quality.json")  # a file in the folder works too
    texts = [_doc(GOOD, 1), _doc(BAD, 2), "Unicode: naïve café — ✓.", ""]
    assert np.array_equal(m.score(texts), back.score(texts)) and back.bias == 0.25 and back.info == {"note": "x"}
    assert np.array_equal(m.weights, back.weights)
    words_only = QualityModel({**SMALL.features(), "char_ngrams": [0, 0]}, m.weights[:2**12], -1.0)
    words_only.save(tmp_path / "w")
    assert np.array_equal(words_only.score(texts), QualityModel.load(tmp_path / "w").score(texts))
    with pytest.raises(WorkbenchError, match="already exists"):
        m.save(tmp_path / "m")


def _docs_for_prepare():
    return [_doc(GOOD, 100 + i) for i in range(12)] + [_doc(BAD, 200 + i) for i in range(8)]


def test_prepare_classifier_step_removes_low_scores_and_reports_histogram(tmp_path, tok, model_dir):
    from tests.workbench.data.test_prepare import _decode_docs

    docs = _docs_for_prepare() + ["Too short."]  # removed by the heuristic filters, written to removed.jsonl
    src = _jsonl(tmp_path / "in.jsonl", docs)
    cfg = load_config(None, {"classifier.model": str(model_dir[0]), "pack.seq_len": 16, "pack.val_fraction": 0.0,
                             "report.write_removed": True, "report.examples": 2})
    report = prepare([src], tmp_path / "out", cfg)
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps)[3:6] == ["quality", "classifier", "pii"]
    c = steps["classifier"]
    assert c["docs_in"] == 20 and c["docs_out"] == 12 and c["removed"] == {"score below 0.5": 8}
    assert sorted(_decode_docs(tok, tmp_path / "out", "train")) == sorted(_docs_for_prepare()[:12])
    sc = c["scores"]
    assert sum(sc["histogram"]["counts"]) == 20 and len(sc["histogram"]["edges"]) == 11
    assert sc["kept_at"]["0.5"] == 12 and sc["kept_at"]["0.1"] >= 12 >= sc["kept_at"]["0.9"]
    assert all(e["score"] < 0.5 for e in sc["lowest"]) and all(e["score"] > 0.5 for e in sc["highest"])
    assert len(sc["lowest"]) == 2 and sc["lowest"][0]["score"] <= sc["lowest"][1]["score"]
    assert sc["lowest"][0]["text"].split(".")[0].lower().split()[0] in BAD
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## classifier" in md and "score histogram:" in md and "highest scores:" in md
    assert "0.9-1.0 #" in md and "0.50:  60.0%" in md  # 12 of 20 scored kept
    removed = [json.loads(line) for line in (tmp_path / "out" / "removed.jsonl").read_text().splitlines()]
    assert removed == [{"step": "quality", "reason": removed[0]["reason"], "text": "Too short."}]
    assert report["output"]["removed_file"] == "removed.jsonl"


def test_threshold_zero_keeps_everything_and_write_removed_scrubs_pii(tmp_path, model_dir):
    docs = _docs_for_prepare() + ["Mail bob@example.com now."]
    src = _jsonl(tmp_path / "in.jsonl", docs)
    cfg = load_config(None, {"classifier.model": str(model_dir[0]), "classifier.threshold": 0.0,
                             "report.write_removed": True, "pack.seq_len": 16})
    report = prepare([src], tmp_path / "out", cfg)
    assert next(s for s in report["steps"] if s["name"] == "classifier")["removed"] == {}
    removed = (tmp_path / "out" / "removed.jsonl").read_text()
    assert "[EMAIL]" in removed and "bob@example.com" not in removed
    with pytest.raises(WorkbenchError, match="classifier thresholds must be numbers in"):
        load_config(None, {"classifier.threshold": 1.5})
    plain = prepare([src], tmp_path / "plain", load_config(None, {"pack.seq_len": 16}))
    assert "classifier" not in [s["name"] for s in plain["steps"]] and not (tmp_path / "plain" / "removed.jsonl").exists()


def test_bad_model_files_name_the_file(tmp_path, model_dir):
    import shutil

    def broken(name, fix):
        d = tmp_path / name
        shutil.copytree(model_dir[0], d)
        fix(d)
        return d

    def meta(d, **kw):
        m = json.loads((d / "quality.json").read_text())
        (d / "quality.json").write_text(json.dumps({**m, **kw}))

    cases = [
        (tmp_path / "nope", "quality model .*nope not found"),
        (tmp_path, "not a quality model folder"),
        (broken("json", lambda d: (d / "quality.json").write_text("{oops")), r"json.quality\.json: cannot be read"),
        (broken("fmt", lambda d: meta(d, format="other")), "not a workbench quality model"),
        (broken("v2", lambda d: meta(d, version=2)), "v2.quality.json: quality model format version 2; this workbench reads version 1"),
        (broken("feat", lambda d: meta(d, features={"n_features": "many"})), "feat.quality.json: bad feature settings"),
        (broken("size", lambda d: meta(d, features={**SMALL.features(), "n_features": 2**13})), r"expected float32 weights \[16384\]"),
        (broken("cut", lambda d: (d / "quality.safetensors").write_bytes((d / "quality.safetensors").read_bytes()[:100])),
         r"cut.quality\.safetensors: cannot be read"),
        (broken("gone", lambda d: (d / "quality.safetensors").unlink()), r"gone.quality\.safetensors: missing"),
    ]
    for path, message in cases:
        with pytest.raises(WorkbenchError, match=message):
            QualityModel.load(path)
    src = _jsonl(tmp_path / "in.jsonl", _docs_for_prepare())
    with pytest.raises(WorkbenchError, match="v2.quality.json"):
        prepare([src], tmp_path / "out", load_config(None, {"classifier.model": str(tmp_path / "v2")}))
    assert not (tmp_path / "out").exists()


def test_training_inputs_conversations_and_empty_sides(tmp_path):
    conv = tmp_path / "chat.jsonl"
    conv.write_text(json.dumps({"messages": [{"role": "user", "content": "Why?"},
                                             {"role": "assistant", "content": "Because of\r\nrain in the cafe\u0301."}]}) + "\n")
    assert read_texts([str(conv)], ReadConfig(), "--good") == ["Because of\nrain in the caf\u00e9."]  # normalised
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    good = _jsonl(tmp_path / "g.jsonl", [_doc(GOOD, 1)])
    with pytest.raises(WorkbenchError, match="--bad .*blank.txt: no documents to train on"):
        train_quality_model([good], [str(tmp_path / "blank.txt")], tmp_path / "m", SMALL)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(WorkbenchError, match="empty.jsonl"):
        train_quality_model([str(tmp_path / "empty.jsonl")], [good], tmp_path / "m", SMALL)
    pref = tmp_path / "pref.jsonl"
    pref.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}) + "\n")
    with pytest.raises(WorkbenchError, match="pref.jsonl: preference records; --good takes text documents or conversations"):
        read_texts([str(pref)], ReadConfig(), "--good")
    assert not (tmp_path / "m").exists()


def test_missing_sklearn_says_how_to_install(monkeypatch, model_dir):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.feature_extraction.text", None)
    with pytest.raises(WorkbenchError, match=r"pip install 'workbench\[quality\]'"):
        QualityModel.load(model_dir[0])


def test_cli_train_then_prepare(tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app

    runner = CliRunner()
    good = _jsonl(tmp_path / "good.jsonl", [_doc(GOOD, i) for i in range(20)])
    bad = _jsonl(tmp_path / "bad.jsonl", [_doc(BAD, 500 + i) for i in range(20)])
    r = runner.invoke(app, ["data", "quality", "train", "--good", good, "--bad", bad, "--out", str(tmp_path / "m"),
                            "--no-char-ngrams", "--held-out", "0.25"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # rich wraps lines at the terminal's width
    assert "accuracy 100.0%" in said and "ROC AUC 1.000" in said and "good: 20 documents (15 trained on, 5 held" in said
    assert json.loads((tmp_path / "m" / "quality.json").read_text())["features"]["char_ngrams"] == [0, 0]
    src = _jsonl(tmp_path / "in.jsonl", _docs_for_prepare())
    r = runner.invoke(app, ["data", "prepare", src, "--out", str(tmp_path / "o"), "--seq-len", "16", "--json",
                            "--quality-model", str(tmp_path / "m"), "--quality-threshold", "0.5"])
    assert r.exit_code == 0, r.output
    step = next(s for s in json.loads(r.stdout)["steps"] if s["name"] == "classifier")
    assert step["docs_out"] == 12 and step["threshold"] == 0.5
    r = runner.invoke(app, ["data", "prepare", src, "--out", str(tmp_path / "o2"), "--quality-model", str(tmp_path / "x")])
    assert r.exit_code == 1 and "quality model" in r.output and "not found" in r.output
    r = runner.invoke(app, ["data", "quality", "train", "--good", good, "--bad", str(tmp_path / "no.jsonl"),
                            "--out", str(tmp_path / "m2")])
    assert r.exit_code == 1 and "no such file or folder" in r.output and not (tmp_path / "m2").exists()
    r = runner.invoke(app, ["data", "quality", "train", "--good", good, "--bad", bad, "--out", str(tmp_path / "m")])
    assert r.exit_code == 1 and "--force" in r.output  # an existing model is not replaced by accident


def test_lima_vs_c4_held_out(tmp_path):
    lima, c4 = shared("chat_lima.jsonl"), shared("text_c4_demo.jsonl")
    cfg = QualityTrainConfig(n_features=2**16, char_ngrams=[0, 0])  # words only: 2x faster to test
    report = train_quality_model([str(lima)], [str(c4)], tmp_path / "m", cfg)
    h = report["held_out"]
    assert report["good"]["documents"] == 1082 and report["bad"]["documents"] == 300  # LIMA: assistant turns
    assert h["auc"] >= 0.85 and h["good_kept"] >= 0.9  # measured 0.872 and 0.963 (0.917, 0.958 with char 4-grams)
