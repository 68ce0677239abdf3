"""Padding, truncation policy, dropped examples, preference collation."""

import torch

from workbench.chat import IGNORE, prompt_length, render_chat, render_preference_batch
from workbench.data.collate import (PreferenceCollator, SFTCollator, encode_records, truncate_pair,
                                    truncate_prompt)

U = lambda c: {"role": "user", "content": c}  # noqa: E731
A = lambda c: {"role": "assistant", "content": c}  # noqa: E731


def test_pads_to_longest_with_masked_labels(tok):
    short, long = render_chat(tok, [U("Hi"), A("Yo")]), render_chat(tok, [U("Hello there"), A("General Kenobi!")])
    batch = SFTCollator(tok.pad_id)([short, long])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(long))
    n = len(short)
    assert batch["input_ids"][0].tolist() == short.input_ids + [tok.pad_id] * (len(long) - n)
    assert batch["labels"][0].tolist() == short.labels + [IGNORE] * (len(long) - n)
    assert batch["attention_mask"].tolist() == [[1] * n + [0] * (len(long) - n), [1] * len(long)]
    assert batch["input_ids"].dtype == torch.long


def test_pad_to_multiple_of_8(tok):
    r = render_chat(tok, [U("Hi"), A("Yo")])  # 12 tokens
    batch = SFTCollator(tok.pad_id, pad_to_multiple_of=8)([r])
    assert len(r) == 12 and batch["input_ids"].shape == (1, 16)
    assert batch["attention_mask"].sum().item() == 12


def test_truncation_keeps_the_start_and_drops_examples_with_nothing_left(tok):
    kept = render_chat(tok, [U("Hi"), A("one two three four")])
    cut_away = render_chat(tok, [U("a long question " * 20), A("answer")])
    collator = SFTCollator(tok.pad_id, max_len=10)
    batch = collator([kept, cut_away])
    assert batch["input_ids"].shape == (1, 10)
    assert batch["input_ids"][0].tolist() == kept.input_ids[:10]
    assert batch["labels"][0].tolist() == kept.labels[:10]
    assert (collator.dropped, collator.truncated) == (1, 2)
    assert collator([cut_away]) is None  # never a batch of all -100
    assert collator.dropped == 2


def test_encode_records_reports_truncation_and_drops(tok):
    recs = [{"messages": [U("q"), A("a b c d e f g")]}, {"messages": [U("q " * 50), A("a")]}]
    ok, dropped = encode_records(tok, "conversation", recs, max_len=12)
    assert not ok.dropped and ok.rendered.num_trainable == 12 - 9
    assert ok.warnings == [f"truncated: {len(render_chat(tok, recs[0]['messages'])) - 12} tokens cut (max_len 12)"]
    assert dropped.dropped and dropped.warnings[-1] == "nothing trainable after truncation: example dropped"


def test_modes_through_encode_records(tok):
    rec = {"messages": [U("1"), A("2"), U("3"), A("4")]}
    (every,) = encode_records(tok, "conversation", [rec], mode="every")
    (last,) = encode_records(tok, "conversation", [rec], mode="last")
    assert every.rendered.num_trainable == len(every.rendered)
    assert last.rendered.num_trainable == 2


def test_prompts_keep_their_end(tok):
    (ex,) = encode_records(tok, "prompt", [{"prompt": [U("word " * 40)]}], max_len=8)
    assert len(ex.rendered) == 8 and not ex.dropped
    assert tok.decode(ex.rendered.input_ids).endswith("<|im_end|>\n<|im_start|>assistant\n")
    full = render_chat(tok, [U("x")], add_generation_prompt=True)
    assert truncate_prompt(full, 100) is full


def _pair(tok, prompt, chosen, rejected):
    return render_preference_batch(tok, [{"prompt": [U(prompt)], "chosen": [A(chosen)], "rejected": [A(rejected)]}])[0]


def test_pair_truncation_keeps_one_prompt_and_cuts_its_start(tok):
    c, r = _pair(tok, "context " * 30, "yes " * 10, "no")
    p, longest = prompt_length(c), len(c) - prompt_length(c)
    assert (p, longest) == (39, 13)
    c2, r2 = truncate_pair(c, r, 40)
    assert len(c2) == 40 and prompt_length(c2) == prompt_length(r2) == 27  # 40 - longest response
    assert c2.input_ids[:27] == r2.input_ids[:27] == c.input_ids[p - 27:p]
    assert c2.input_ids[27:] == c.input_ids[p:] and r2.input_ids[27:] == r.input_ids[p:]
    # a very long response: the prompt keeps half the budget, the response is cut
    c, r = _pair(tok, "context " * 30, "yes " * 100, "no")
    c3, r3 = truncate_pair(c, r, 40)
    assert prompt_length(c3) == prompt_length(r3) == 20 and len(c3) == 40
    assert c3.input_ids[:20] == c.input_ids[prompt_length(c) - 20:prompt_length(c)]


def test_preference_collator(tok):
    pairs = [_pair(tok, "q", "good answer", "bad"), _pair(tok, "another q", "fine", "not fine at all")]
    batch = PreferenceCollator(tok.pad_id)(pairs)
    assert set(batch) == {f"{h}_{k}" for h in ("chosen", "rejected") for k in ("input_ids", "labels", "attention_mask")}
    width = max(len(x) for pair in pairs for x in pair)
    assert batch["chosen_input_ids"].shape == batch["rejected_input_ids"].shape == (2, width)
    for i, (c, r) in enumerate(pairs):
        assert batch["chosen_labels"][i, :len(c)].tolist() == c.labels
        assert batch["rejected_input_ids"][i, :len(r)].tolist() == r.input_ids
        assert batch["rejected_attention_mask"][i].sum().item() == len(r)


def test_preference_responses_keep_half_the_budget(tok):
    collator = PreferenceCollator(tok.pad_id, max_len=6)
    batch = collator([_pair(tok, "q " * 40, "a", "b")])
    assert tok.decode(batch["chosen_input_ids"][0].tolist()) == "<|im_start|>assistant\na<|im_end|>\n"
    assert batch["rejected_labels"][0].tolist() == [IGNORE] * 3 + tok.encode("b") + [tok.im_end_id, IGNORE]
    assert (collator.dropped, collator.truncated) == (0, 1)


def test_map_conversations_equals_render(tok, tmp_path):
    from datasets import Dataset

    from workbench.data.collate import map_conversations

    rows = [{"messages": [U(f"q{i}"), A("a " * i + "done")]} for i in range(5)]
    mapped = map_conversations(Dataset.from_list(rows), "messages", tok, mode="last", batch_size=2)
    assert mapped.column_names == ["input_ids", "labels"]
    for row, rec in zip(mapped, rows):
        r = render_chat(tok, rec["messages"], mode="last")
        assert (row["input_ids"], row["labels"]) == (r.input_ids, r.labels)


def test_map_conversations_names_a_bad_record(tok):
    import pytest
    from datasets import Dataset

    from workbench.data.collate import map_conversations
    from workbench.errors import WorkbenchError

    rows = [{"messages": [U("q"), A("a")]}] * 3 + [{"messages": [U("q"), A(" ")]}]
    with pytest.raises(WorkbenchError, match=r"record 3: messages\[1\] \(assistant\) has empty content"):
        map_conversations(Dataset.from_list(rows), "messages", tok, batch_size=2)


def test_prompt_records_train_nothing_in_any_mode(tok):
    rec = {"prompt": [U("q"), A("earlier answer"), U("q2")]}
    for mode in ("all", "last", "every"):
        (ex,) = encode_records(tok, "prompt", [rec], mode=mode)
        assert ex.rendered.num_trainable == 0 and not ex.dropped
