"""evaluate_checkpoint on models whose answers are known (tests/workbench/eval/conftest.py)."""

import json
import math

import pytest
import torch

from tests.conftest import SAMPLE
from tests.workbench.eval.conftest import reward_checkpoint, write_jsonl
from workbench.errors import WorkbenchError
from workbench.eval.evaluate import evaluate_checkpoint

AMBER = {"prompt": "Which river runs through Pellwater?", "task": {"type": "fact_river", "answer": "Amber"}}
VELL = {"prompt": "What river flows past Yarrowdell?", "answer": "Vell",
        "task": {"type": "fact_river", "answer": "Vell"}}
SUM = {"prompt": "What is 2 + 3?", "answer": "5"}  # a bare answer: type "other"
LIMA = {"prompt": "Write a short poem about the sea."}


@pytest.fixture
def prompts(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [AMBER, VELL, SUM, LIMA])


def _ids(tok, text):
    return tok.encode(text)


def test_known_answers_give_known_metrics(scripted, byte_tok, prompts):
    """A model that says "Amber." to everything: right once in three judged prompts, always compliant."""
    ckpt = scripted(_ids(byte_tok, "Amber."))
    r = evaluate_checkpoint(ckpt, prompts=str(prompts), max_new_tokens=12)
    assert r["kind"] == "lm" and r["checkpoint"] == str(ckpt)
    for block in ("greedy", "sampled"):  # p(next) ~ 1 - 1e-15: sampling says the same
        g = r[block]
        assert g["n"] == 4 and g["compliance"] == 1.0 and g["eos_rate"] == 1.0 and g["im_start_rate"] == 0.0
        assert g["accuracy"] == pytest.approx(1 / 3)
        assert g["accuracy_by_type"] == {"fact_river": 0.5, "other": 0.0}
        assert g["length"] == len("Amber.") + 1  # bytes + <|im_end|>
        assert g["true_reward"] == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3; the poem is not judged
        assert g["rude_rate"] == 0.0 and g["refusal_rate"] == 0.0
        assert "kl_ref" not in g and "rm_score" not in g
    assert [a["greedy"] for a in r["answers"]] == ["Amber."] * 4
    assert [a["answer"] for a in r["answers"]] == ["Amber", "Vell", "5", None]
    assert [a["correct"] for a in r["answers"]] == [True, False, False, None]
    assert r["answers"][3]["prompt"] == LIMA["prompt"]
    assert "text" not in r and "pairs" not in r
    json.dumps(r)


def test_running_on_and_new_turns_are_not_compliant(scripted, byte_tok, prompts):
    x = _ids(byte_tok, "x")[0]
    runs_on = evaluate_checkpoint(scripted([], then=x, name="runs"), prompts=str(prompts), max_new_tokens=7)
    g = runs_on["greedy"]
    assert g["compliance"] == 0.0 and g["eos_rate"] == 0.0 and g["length"] == 7
    assert g["true_reward"] == -0.5  # wrong and never ended
    assert runs_on["answers"][0]["greedy"] == "x" * 7
    new_turn = evaluate_checkpoint(scripted([byte_tok.im_start_id], name="turn"), prompts=str(prompts),
                                   max_new_tokens=7)
    g = new_turn["greedy"]  # <|im_start|> then <|im_end|>: ended, but wrote a new turn
    assert g["eos_rate"] == 1.0 and g["im_start_rate"] == 1.0 and g["compliance"] == 0.0
    assert new_turn["answers"][0]["greedy"] == ""


def test_kl_is_zero_to_itself_and_exact_to_a_softer_copy(scripted, byte_tok, prompts):
    chain = _ids(byte_tok, "Amber.")
    sharp, soft = scripted(chain, logit=40.0), scripted(chain, logit=2.0)
    same = evaluate_checkpoint(sharp, prompts=str(prompts), ref=str(sharp), max_new_tokens=12)
    # the model's log-probs come from the KV-cached sampler, the reference's from a full forward
    assert same["greedy"]["kl_ref"] == pytest.approx(0.0, abs=1e-4)
    assert same["sampled"]["kl_ref"] == pytest.approx(0.0, abs=1e-4)
    r = evaluate_checkpoint(sharp, prompts=str(prompts), ref=str(soft), max_new_tokens=12)
    others = byte_tok.vocab_size - 2  # the sampler's vocabulary has no <|pad|>; the target is one token

    def logp(logit):
        return logit - math.log(math.exp(logit) + others)

    expected = (len(chain) + 1) * (logp(40.0) - logp(2.0))  # every answer token, <|im_end|> included
    assert r["sampled"]["kl_ref"] == pytest.approx(expected, rel=1e-4)
    assert r["greedy"]["kl_ref"] == pytest.approx(expected, rel=1e-4)


def test_rm_score_is_normalised_by_the_reward_stats(scripted, byte_tok, prompts, tmp_path):
    """A zero head scores every answer its bias, 0.7; the stats turn that into (0.7 - 0.2) / 2."""
    lm = scripted(_ids(byte_tok, "Amber."))
    rm = reward_checkpoint(lm, torch.zeros(64), 0.7, tmp_path / "rm", stats={"mean": 0.2, "std": 2.0, "n": 10})
    r = evaluate_checkpoint(lm, prompts=str(prompts), rm=str(rm), max_new_tokens=12)
    assert r["greedy"]["rm_score"] == pytest.approx((0.7 - 0.2) / 2.0)
    assert r["sampled"]["rm_score"] == pytest.approx(0.25)


# ---------------------------------------------------------------------- reward models and pairs
def _separating_head(lm, tok, pairs_file, n):
    """A head w with w . (h_chosen - h_rejected) = 1 on each of the first n pairs (n < d: exact), where
    h is the backbone's final hidden state at each half's last token, as the RM stage reads it."""
    from workbench.data.collate import encode_records
    from workbench.data.loading import open_source, read_records
    from workbench.model.checkpoint import load_checkpoint

    backbone, _ = load_checkpoint(lm)
    recs = [r for _, r in read_records(open_source(str(pairs_file)), limit=n)]
    feats = []
    for ex in encode_records(tok, "preference", recs):
        rows = [torch.tensor([half.input_ids]) for half in (ex.chosen, ex.rejected)]
        h = [backbone(x, logits_to_keep=0, return_hidden=True).hidden[0, -1] for x in rows]
        feats.append(h[0] - h[1])
    D = torch.stack(feats).detach()
    return torch.linalg.lstsq(D, torch.ones(len(feats), 1)).solution[:, 0]


def test_rm_pairwise_accuracy_on_separable_pairs(random_lm, byte_tok, tmp_path):
    pairs = SAMPLE / "preference.jsonl"
    w = _separating_head(random_lm, byte_tok, pairs, 24)
    good = reward_checkpoint(random_lm, w, 0.0, tmp_path / "good")
    r = evaluate_checkpoint(good, pairs=str(pairs), limit=24)
    assert r["kind"] == "reward_model" and r["answers"] == []
    p = r["pairs"]
    kinds = {json.loads(line).get("rejected_kind") for line in pairs.read_text().splitlines()[:24]}
    assert p["n"] == 24 and p["accuracy"] == 1.0 and set(p["by_kind"]) == kinds
    assert all(v == 1.0 for v in p["by_kind"].values())
    assert p["margin"] == pytest.approx(1.0, abs=1e-3)
    flipped = evaluate_checkpoint(reward_checkpoint(random_lm, -w, 0.0, tmp_path / "bad"), pairs=str(pairs), limit=24)
    assert flipped["pairs"]["accuracy"] == 0.0
    # a language model evaluated with --rm scores the pairs with that reward model
    via_lm = evaluate_checkpoint(random_lm, pairs=str(pairs), rm=str(good), limit=24)
    assert via_lm["kind"] == "lm" and via_lm["pairs"]["accuracy"] == 1.0


def test_ultrafeedback_pairs_and_lima_prompts(random_lm, byte_tok, tmp_path, scripted):
    """UltraFeedback rows (message-list chosen/rejected that repeat the prompt, scores, no kind) and
    LIMA-style prompts (no answer): what needs an answer or a kind is skipped, not zero."""
    q = "Name a colour."
    uf = [{"prompt": q, "prompt_id": str(i), "score_chosen": 8.0, "score_rejected": 3.0,
           "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": f"Blue {i}."}],
           "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": f"No {i}."}],
           "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"Blue {i}."}]}
          for i in range(3)]
    uf_file = write_jsonl(tmp_path / "uf.jsonl", uf)
    rm = reward_checkpoint(random_lm, torch.randn(64, generator=torch.Generator().manual_seed(0)), 0.0, tmp_path / "rm")
    p = evaluate_checkpoint(rm, pairs=str(uf_file))["pairs"]
    assert p["n"] == 3 and p["by_kind"] == {} and 0.0 <= p["accuracy"] <= 1.0
    lm = scripted(_ids(byte_tok, "Red."))
    r = evaluate_checkpoint(lm, prompts=str(uf_file), max_new_tokens=8)  # a pair file's prompts
    assert r["greedy"]["n"] == 3 and r["greedy"]["accuracy"] is None and r["greedy"]["true_reward"] is None
    assert r["answers"][0] == {"prompt": q, "greedy": "Red.", "answer": None, "correct": None}
    lima = write_jsonl(tmp_path / "lima.jsonl", [LIMA, {"prompt": [{"role": "user", "content": "Hi"}]}])
    assert evaluate_checkpoint(lm, prompts=str(lima), max_new_tokens=8)["sampled"]["accuracy"] is None


def test_chat_files_are_answered_at_their_last_turn(scripted, byte_tok):
    r = evaluate_checkpoint(scripted(_ids(byte_tok, "Amber.")), prompts=str(SAMPLE / "chat.jsonl"), limit=5,
                            max_new_tokens=8)
    rows = [json.loads(line) for line in (SAMPLE / "chat.jsonl").read_text().splitlines()[:5]]
    users = [[m["content"] for m in row["messages"] if m["role"] == "user"][-1] for row in rows]
    assert [a["prompt"] for a in r["answers"]] == users
    assert [a["answer"] for a in r["answers"]] == [row["task"]["answer"] for row in rows]


# ---------------------------------------------------------------------- text
def test_text_loss_of_a_uniform_model_is_log_vocab(scripted, byte_tok, tmp_path):
    """logit 0 everywhere: every next token costs log(vocab) nats, in every window, the short last one too."""
    docs = ["The River Vell.", "Amber and Oska run to the sea."]
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": d} for d in docs])
    uniform = scripted([], logit=0.0)
    for window in (None, 5):
        t = evaluate_checkpoint(uniform, text=str(text), text_window=window)["text"]
        assert t["tokens"] == sum(len(d) + 1 for d in docs) - 1  # bytes + <|endoftext|>, the first unpredicted
        assert t["loss"] == pytest.approx(math.log(byte_tok.vocab_size))
        assert t["ppl"] == pytest.approx(byte_tok.vocab_size, rel=1e-4)


def test_a_text_window_past_the_context_is_refused(random_lm, tmp_path):
    from workbench.model.checkpoint import read_meta

    ctx = read_meta(random_lm)["model"].max_seq_len
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "The River Vell. " * (ctx // 8)}])
    assert evaluate_checkpoint(random_lm, text=str(text), text_window=ctx - 1)["text"]["tokens"] > ctx - 1
    with pytest.raises(WorkbenchError, match=f"text_window {ctx} does not fit the model's context of {ctx}"):
        evaluate_checkpoint(random_lm, text=str(text), text_window=ctx)


# ---------------------------------------------------------------------- errors
def test_nothing_to_evaluate_names_the_flags(random_lm):
    with pytest.raises(WorkbenchError, match="--prompts.*--text.*--pairs"):
        evaluate_checkpoint(random_lm)


def test_wrong_kinds_of_model_are_refused(random_lm, tmp_path, prompts):
    rm = reward_checkpoint(random_lm, torch.zeros(64), 0.0, tmp_path / "rm")
    with pytest.raises(WorkbenchError, match="is a reward model: --prompts"):
        evaluate_checkpoint(rm, prompts=str(prompts))
    with pytest.raises(WorkbenchError, match="--rm .* is a language model, not a reward model"):
        evaluate_checkpoint(random_lm, prompts=str(prompts), rm=str(random_lm))
    with pytest.raises(WorkbenchError, match="--ref .* is a reward model"):
        evaluate_checkpoint(random_lm, prompts=str(prompts), ref=str(rm))
    with pytest.raises(WorkbenchError, match="--pairs needs a reward model"):
        evaluate_checkpoint(random_lm, pairs=str(SAMPLE / "preference.jsonl"))


def test_bad_files_name_file_and_line(random_lm, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(LIMA) + "\n{not json\n")
    with pytest.raises(WorkbenchError, match=f"{broken}:2"):
        evaluate_checkpoint(random_lm, prompts=str(broken))
    bad_answer = write_jsonl(tmp_path / "answer.jsonl", [LIMA, {"prompt": "Hi", "answer": ["a", "b"]}])
    with pytest.raises(WorkbenchError, match=f"{bad_answer}:2: 'answer' must be"):
        evaluate_checkpoint(random_lm, prompts=str(bad_answer))
    with pytest.raises(WorkbenchError, match="--text needs plain text"):
        evaluate_checkpoint(random_lm, text=str(bad_answer))
    with pytest.raises(WorkbenchError, match="--prompts needs prompts"):
        evaluate_checkpoint(random_lm, prompts=str(SAMPLE / "text.jsonl"))


def test_skip_bad_skips_and_counts(random_lm, tmp_path):
    """--skip-bad: a malformed line, a record without a user turn and a bad answer are skipped and
    counted per file; the good prompts are still answered."""
    good = {"prompt": "What is 2 + 3?", "answer": "5"}
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([json.dumps(good), "{not json", json.dumps({"prompt": "Hi", "answer": ["a"]}),
                               json.dumps(LIMA)]) + "\n")
    with pytest.raises(WorkbenchError, match=f"{path}:2"):
        evaluate_checkpoint(random_lm, prompts=str(path), max_new_tokens=2, decodings=("greedy",))
    r = evaluate_checkpoint(random_lm, prompts=str(path), max_new_tokens=2, decodings=("greedy",), skip_bad=True)
    assert r["greedy"]["n"] == 2
    assert r["skipped"][str(path)]["skipped"] == 2
    assert any(f"{path}:3" in m for m in r["skipped"][str(path)]["first"])
    clean = evaluate_checkpoint(random_lm, prompts=str(SAMPLE / "prompts.jsonl"), limit=2, max_new_tokens=2,
                                decodings=("greedy",), skip_bad=True)
    assert "skipped" not in clean
