"""Real public data from ../shared/data (skipped where absent): every quirk handled, masks exact."""

import pytest

from tests.conftest import shared
from workbench.chat import IGNORE, chatml
from workbench.data.collate import encode_records
from workbench.data.loading import open_source, read_records


def _all(name, **kw):
    src = open_source(str(shared(name)))
    return src, [r for _, r in read_records(src, **kw)]


def test_lima_long_answers_render_exactly(tok):
    src, recs = _all("chat_lima.jsonl")
    assert src.format == "ultrachat" and len(recs) == 1029
    examples = encode_records(tok, src.kind, recs)
    longest = max(len(e.rendered) for e in examples)
    assert longest > 2000  # multi-thousand-token answers, untruncated
    for rec, ex in zip(recs, examples):
        r = ex.rendered
        assert tok.decode(r.input_ids) == chatml(rec["messages"])
        trained = tok.decode([t for t in r.labels if t != IGNORE])
        assert trained == "".join(m["content"] + "<|im_end|>" for m in rec["messages"] if m["role"] == "assistant")


@pytest.mark.parametrize("name, kept, skipped", [
    ("pref_hh_rlhf_harmless_base_test.jsonl", 2303, {"empty content": 4}),
    ("pref_ultrafeedback_binarized_train.jsonl", 994, {"identical pair": 4, "empty content": 2}),
])
def test_preference_files_quirks_are_counted(tok, name, kept, skipped):
    src, recs = _all(name, skip_bad=True)
    assert (src.format, len(recs), dict(src.summary.skipped)) == ("preference", kept, skipped)
    for ex in encode_records(tok, "preference", recs[:200], max_len=512):
        c, r = ex.chosen, ex.rejected
        first_c = next(i for i, t in enumerate(c.labels) if t != IGNORE)
        first_r = next(i for i, t in enumerate(r.labels) if t != IGNORE)
        assert first_c == first_r and c.input_ids[:first_c] == r.input_ids[:first_r]
        assert len(c) <= 512 and not ex.dropped


def test_hh_without_skip_bad_names_the_line():
    from workbench.errors import WorkbenchError

    src = open_source(str(shared("pref_hh_rlhf_harmless_base_test.jsonl")))
    with pytest.raises(WorkbenchError, match=r"pref_hh_rlhf_harmless_base_test.jsonl:87: chosen\[0\] \(assistant\) has empty content"):
        list(read_records(src))


def test_gsm8k_prompts_keep_answers_as_meta(tok):
    src, recs = _all("prompts_gsm8k_test.jsonl")
    assert src.format == "prompt" and len(recs) == 1319
    assert recs[0]["meta"]["final_answer"] == "18"
    (ex,) = encode_records(tok, "prompt", recs[:1])
    assert tok.decode(ex.rendered.input_ids).endswith("<|im_start|>assistant\n")


def test_text_files(tok):
    src, recs = _all("text_c4_demo.jsonl")
    assert (src.format, len(recs)) == ("text", 300)
    src, recs = _all("text_tinyshakespeare.txt")
    assert len(recs) == 1 and recs[0]["text"].startswith("First Citizen:")
