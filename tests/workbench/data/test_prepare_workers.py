"""`prepare` with worker processes: byte-identical to one process, bad records named the same, no torch in workers."""

import json
import subprocess
import sys

import pytest

from tests.workbench.data.test_prepare import STORY, _docs, _write_jsonl
from workbench.data.corpus import ReadConfig, ReadStats, iter_documents
from workbench.data.prepare import load_config, prepare
from workbench.data.prepare_batch import BatchRunner
from workbench.errors import WorkbenchError


def _corpus():
    """34 documents of _docs() plus more, so that with batches of 4 every kind of removal, PII and
    duplicates fall in several batches and across batch boundaries."""
    docs = _docs()
    docs[13] = docs[1]                                                   # exact duplicate, 3 batches later
    docs[22] = docs[9].replace("harbour", "port")                        # near duplicate of batch 2 in batch 5
    docs[17] += "\nCall +1 (555) 123-4567 or write to ana@example.org."  # PII in another batch
    docs[26] += "\nThe server is 192.168.1.20.\nWe use cookies here."
    docs += [f"Short {i}." for i in range(6)]                           # 6 removals of one reason: examples = first 3
    docs += [f"Chapter {i}. " + STORY + " Privacy policy applies." for i in range(50, 54)]
    return docs


def _strip_timings(report: dict) -> dict:
    report = json.loads(json.dumps(report))
    for key in ("created", "seconds", "throughput", "out"):
        report.pop(key)
    report["config"].pop("parallel")
    for step in report["steps"]:
        step.pop("seconds")
    return report


def _prepare(src, out, workers, **overrides):
    cfg = load_config(None, {"input.batch_size": 4, "pack.seq_len": 16, "pack.val_fraction": 0.2,
                             "pack.shard_tokens": 300, "report.write_removed": True,
                             "parallel.workers": workers, **overrides})
    return prepare([str(src)], out, cfg)


def _same_outputs(a, b):
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert len([n for n in names if n.startswith("train_")]) > 1 and "removed.jsonl" in names
    for name in names:
        if name not in ("report.json", "report.md"):  # those hold timings and the creation time
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_two_workers_write_what_one_process_writes(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", _corpus())
    one, two = _prepare(src, tmp_path / "one", 1), _prepare(src, tmp_path / "two", 2)
    assert one["throughput"]["workers"] == 1 and two["throughput"]["workers"] == 2  # the pool really ran
    _same_outputs(tmp_path / "one", tmp_path / "two")
    assert _strip_timings(one) == _strip_timings(two)
    steps = {s["name"]: s for s in two["steps"]}  # and the merged counts are the right ones
    assert steps["exact_dedup"]["removed"] == {"exact duplicate": 2}
    assert steps["near_dedup"]["removed"] == {"near duplicate": 2}
    assert steps["pii"]["replacements"] == {"email": 2, "phone": 1, "ip": 1}
    assert steps["boilerplate_lines"]["lines_removed"] == {"privacy policy": 4, "we use cookies": 2}
    assert steps["quality"]["removed"]["fewer than 5 words"] == 7
    assert steps["quality"]["examples"]["fewer than 5 words"] == ["Too short.", "Short 0.", "Short 1."]
    removed = [json.loads(line) for line in (tmp_path / "two" / "removed.jsonl").read_text().splitlines()]
    assert [r["text"] for r in removed if r["text"].startswith("Short")] == [f"Short {i}." for i in range(6)]


def test_without_exact_dedup_near_dedup_sees_every_copy_in_both_modes(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", _corpus())
    kw = {"dedup.exact": False}  # the workers then send a signature for every text, repeated ones too
    one, two = _prepare(src, tmp_path / "one", 1, **kw), _prepare(src, tmp_path / "two", 2, **kw)
    _same_outputs(tmp_path / "one", tmp_path / "two")
    assert _strip_timings(one) == _strip_timings(two)
    assert next(s for s in two["steps"] if s["name"] == "near_dedup")["removed"] == {"near duplicate": 4}


def test_the_classifier_step_runs_in_workers(tmp_path):
    pytest.importorskip("sklearn")
    from tests.workbench.data.test_quality_model import BAD, GOOD, SMALL, _doc, _jsonl
    from workbench.data.quality_model import train_quality_model

    train_quality_model([_jsonl(tmp_path / "g.jsonl", [_doc(GOOD, i) for i in range(30)])],
                        [_jsonl(tmp_path / "b.jsonl", [_doc(BAD, 100 + i) for i in range(30)])], tmp_path / "m", SMALL)
    docs = [_doc(GOOD if i % 3 else BAD, 500 + i) for i in range(30)]
    src = _write_jsonl(tmp_path / "in.jsonl", docs)
    kw = {"classifier.model": str(tmp_path / "m")}
    one, two = _prepare(src, tmp_path / "one", 1, **kw), _prepare(src, tmp_path / "two", 2, **kw)
    assert two["throughput"]["workers"] == 2
    _same_outputs(tmp_path / "one", tmp_path / "two")
    assert _strip_timings(one) == _strip_timings(two)
    c = next(s for s in two["steps"] if s["name"] == "classifier")
    assert c["removed"] == {"score below 0.5": 10} and c["scores"]["documents"] == 30


def _lines_with_a_surrogate(at: int, n: int = 40) -> list[str]:
    lines = [json.dumps({"text": f"Entry {i}. {STORY}"}) for i in range(n)]
    lines[at] = '{"text": "Entry bad. caf\\u00e9 \\ud800 ' + STORY + '"}'  # a lone surrogate: not valid Unicode
    return lines


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_record_in_a_worker_batch_is_named_as_in_one_process(tmp_path, workers):
    lines = _lines_with_a_surrogate(25)
    lines.insert(3, "")  # blank lines do not count as records, but do count as lines
    lines.append("{oops")  # a read error after it: the earlier problem is the one reported
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkbenchError) as e:
        _prepare(tmp_path / "in.jsonl", tmp_path / "out", workers)
    assert str(e.value) == (f"{tmp_path / 'in.jsonl'}:27: the text holds a lone surrogate (an escape like "
                            "\\ud800 with no pair) at character 17, which is not valid Unicode (--skip-bad skips "
                            "the record)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # nothing half-written


def test_skip_bad_removes_invalid_unicode_the_same_way(tmp_path):
    (tmp_path / "in.jsonl").write_text("\n".join(_lines_with_a_surrogate(25)) + "\n")
    one, two = (_prepare(tmp_path / "in.jsonl", tmp_path / f"o{w}", w, **{"input.skip_bad": True}) for w in (1, 2))
    assert _strip_timings(one) == _strip_timings(two)
    assert one["steps"][1]["removed"] == {"invalid Unicode (a lone surrogate)": 1}


def test_positions_name_the_first_line_of_each_document(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n\n{"text": 2}\n{"text": "three"}\n')
    (tmp_path / "b.txt").write_text("p1 a\np1 b\n\n\np2 a\n\np3 a\np3 b\n")
    for cfg, want in ((ReadConfig(skip_bad=True), ["a.jsonl:1", "a.jsonl:4"]),
                      (ReadConfig(txt_split="paragraph"), ["b.txt:1", "b.txt:5", "b.txt:7"]),
                      (ReadConfig(txt_split="chunk", txt_chunk_words=3), ["b.txt:1", "b.txt:5"])):
        stats, where = ReadStats(), []
        name = want[0].split(":")[0]
        for _ in iter_documents([str(tmp_path / name)], cfg, stats):
            where.append(ReadStats.where(stats.position))
        assert where == [f"{tmp_path}/{w}" for w in want]


class _Batch:
    def __init__(self, texts):
        self.texts = texts


def test_batches_in_flight_are_bounded_and_workers_never_import_torch():
    import torch  # noqa: F401  the parent has torch (conftest imports it); the workers must not

    cfg = load_config(None, {"input.batch_size": 2})
    pulled, worst = 0, 0

    def batches():
        nonlocal pulled
        for i in range(30):
            pulled += 1
            yield _Batch([f"Entry {i}. {STORY}", f"Note {i}. {STORY}", f"Entry {i}. {STORY}"])

    with BatchRunner(cfg, 2) as runner:
        for n, (res, batch) in enumerate(runner.results(batches()), 1):
            worst = max(worst, pulled - n)
            assert res.texts == batch.texts
            # near dedup's signatures come from the worker, but not for a text exact dedup will remove
            assert res.signatures[0] is not None and res.signatures[1] is not None and res.signatures[2] is None
        assert n == 30 and worst <= 2 * 2  # memory holds a bounded number of batches, not the corpus
        assert runner.pool.submit(eval, "'torch' in __import__('sys').modules").result() is False
    code = "import sys, workbench.data.prepare, workbench.data.prepare_batch; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_a_negative_worker_count_is_refused():
    with pytest.raises(WorkbenchError, match="parallel.workers must be 0"):
        load_config(None, {"parallel.workers": -1})
