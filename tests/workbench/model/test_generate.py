"""Sampling: greedy = argmax of full forwards, padding-invariant batches, stops, log-probs, filters."""

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.model.generate import SamplingConfig, TextDecoder, _filter, encode_prompt, generate

from .conftest import make

PAD = 299


def _greedy_by_full_forward(model, prompt, n):
    seq = list(prompt)
    for _ in range(n):
        logits = model(torch.tensor([seq])).logits[0, -1, :model.cfg.vocab_size].clone()
        logits[PAD] = float("-inf")
        seq.append(int(logits.argmax()))
    return seq[len(prompt):]


@pytest.mark.parametrize("name", ["tiny", "tiny-dense"])
def test_greedy_batch_equals_each_prompt_decoded_alone_without_cache(name):
    model = make(name)
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    out = generate(model, prompts, SamplingConfig(max_new_tokens=8, greedy=True), pad_id=PAD)
    for p, toks in zip(prompts, out.tokens):
        assert toks == _greedy_by_full_forward(model, p, 8)
    assert out.sequences.shape == (3, 5 + 8) and out.prompt_len == 5


def test_logprobs_are_those_of_the_sampling_distribution():
    model = make("tiny")
    prompt = [5, 6, 7]
    out = generate(model, [prompt], SamplingConfig(max_new_tokens=6, temperature=0.7, top_k=20, seed=3), pad_id=PAD)
    seq = torch.tensor([prompt + out.tokens[0]])
    logits = model(seq).logits[0, len(prompt) - 1:-1, :model.cfg.vocab_size].clone()
    logits[:, PAD] = float("-inf")
    ref = (logits / 0.7).log_softmax(-1).gather(1, seq[0, len(prompt):, None])[:, 0]
    assert torch.allclose(torch.tensor(out.logprobs[0]), ref, atol=1e-5)


def test_stops_at_the_stop_token_and_pads_after_it():
    model = make("tiny")
    free = generate(model, [[5, 6], [7, 8, 9]], SamplingConfig(max_new_tokens=6, greedy=True), pad_id=PAD)
    stop = free.tokens[0][2]  # make row 0's third token a stop token
    out = generate(model, [[5, 6], [7, 8, 9]], SamplingConfig(max_new_tokens=6, greedy=True), stop_ids=[stop], pad_id=PAD)
    assert out.tokens[0] == free.tokens[0][:free.tokens[0].index(stop) + 1] and out.finished[0]
    row = out.sequences[0, out.prompt_len:]
    n = len(out.tokens[0])
    assert (row[n:] == PAD).all() and out.response_mask[0].sum() == n
    assert (out.response_logprobs[0, n:] == 0).all()


def test_seeded_sampling_is_reproducible_and_never_picks_padding():
    model = make("tiny", init_std=0.02)  # a flat distribution: padding columns would be hit if allowed
    cfg = SamplingConfig(max_new_tokens=60, temperature=5.0, seed=7)
    a = generate(model, [[1, 2, 3]] * 4, cfg, pad_id=PAD)
    b = generate(model, [[1, 2, 3]] * 4, cfg, pad_id=PAD)
    assert a.tokens == b.tokens
    flat = [t for row in a.tokens for t in row]
    assert max(flat) < model.cfg.vocab_size and PAD not in flat and len(set(flat)) > 50


def test_top_k_one_is_greedy_and_top_p_keeps_the_smallest_nucleus():
    model = make("tiny")
    greedy = generate(model, [[4, 5]], SamplingConfig(max_new_tokens=5, greedy=True), pad_id=PAD)
    k1 = generate(model, [[4, 5]], SamplingConfig(max_new_tokens=5, temperature=1.0, top_k=1, seed=0), pad_id=PAD)
    assert greedy.tokens == k1.tokens
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(_filter(logits, 0, 0.8))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 + 0.3 reaches 0.8
    assert torch.isfinite(_filter(logits, 0, 0.01))[0].tolist() == [True, False, False, False]


@pytest.mark.parametrize("kw, message", [
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"), ({"top_k": -2}, "top_k"),
])
def test_bad_sampling_settings(kw, message):
    with pytest.raises(WorkbenchError, match=message):
        generate(make("tiny"), [[1]], SamplingConfig(**kw))


def test_chat_prompt_ends_with_the_assistant_header(tok):
    ids = encode_prompt(tok, "Where is Ashford?", chat=True, system="Be brief.")
    assert tok.decode(ids) == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhere is Ashford?"
                               "<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(WorkbenchError, match="empty"):
        encode_prompt(tok, "")


def test_text_decoder_holds_back_half_characters(tok):
    ids = tok.encode("naïve 🙂 ok")
    dec = TextDecoder(tok, skip_ids=[tok.eot_id])
    pieces = [dec.push(i) for i in ids + [tok.eot_id]]
    assert "".join(pieces) + dec.flush() == "naïve 🙂 ok"
    assert all("\ufffd" not in p for p in pieces)


def test_non_finite_settings_and_overlong_requests_are_refused():
    model = make("tiny")
    for kw in ({"temperature": float("nan")}, {"temperature": float("inf")}, {"top_p": float("nan")}):
        with pytest.raises(WorkbenchError, match="temperature|top_p"):
            generate(model, [[1]], SamplingConfig(**kw))
    with pytest.raises(WorkbenchError, match="exceeds the model's context of 512 tokens.*at most 509 new"):
        generate(model, [[1, 2, 3]], SamplingConfig(max_new_tokens=10_000_000))
