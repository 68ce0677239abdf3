"""`probe` (next-token top-k) and the Chinchilla arithmetic."""

import json

import pytest

from workbench.errors import WorkbenchError
from workbench.eval.chinchilla import compute_optimal, parse_amount, preset_standing, run_standing, standing
from workbench.eval.probe import probe


def test_probe_is_sorted_and_sums_to_at_most_one(random_lm, byte_tok):
    from workbench.model.generate import encode_prompt

    plain = probe(random_lm, "The River Vell", top_k=7)
    probs = [t["prob"] for t in plain["top"]]
    assert len(probs) == 7 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    assert plain["prompt_tokens"] == len("The River Vell")  # bytes
    everything = probe(random_lm, "The River Vell", top_k=byte_tok.vocab_size)["top"]
    assert sum(t["prob"] for t in everything) == pytest.approx(1.0, abs=1e-5)  # the whole distribution
    assert byte_tok.pad_id not in {t["id"] for t in everything}  # never sampled, never shown
    chat = probe(random_lm, "The River Vell", top_k=3, chat=True)
    assert chat["prompt_tokens"] == len(encode_prompt(byte_tok, "The River Vell", chat=True))
    assert chat["top"] != plain["top"][:3]


def test_probe_of_a_scripted_model(scripted, byte_tok):
    first = byte_tok.encode("A")[0]
    model = scripted([first])
    top = probe(model, "Which river?", top_k=2, chat=True)["top"]
    assert top[0]["id"] == first and top[0]["token"] == "A" and top[0]["prob"] > 0.999
    with pytest.raises(WorkbenchError, match="top_k"):
        probe(model, "x", top_k=0)


def test_compute_optimal_known_numbers():
    # Chinchilla itself: 70B parameters, 1.4T tokens, 6 * 70e9 * 1.4e12 = 5.88e23 FLOPs
    out = compute_optimal(flops=5.88e23)
    assert out["params"] == pytest.approx(70e9) and out["tokens"] == pytest.approx(1.4e12)
    assert compute_optimal(params=1e9) == {"params": 1e9, "tokens": 2e10, "flops": 1.2e20, "tokens_per_param": 20.0}
    assert compute_optimal(tokens=2e10)["params"] == pytest.approx(1e9)
    with pytest.raises(WorkbenchError, match="exactly one"):
        compute_optimal(flops=1e18, params=1e6)


def test_standing_and_amounts():
    s = standing(params=1e6, tokens=5e6)
    assert s["tokens_per_param"] == 5.0 and s["optimal_tokens"] == 2e7 and s["fraction_of_optimal_tokens"] == 0.25
    assert s["flops"] == 3e13 and s["compute_optimal_params"] == pytest.approx(5e5)  # sqrt(3e13 / 120)
    assert s["verdict"].startswith("under-trained")
    assert standing(1e6, 2e7)["verdict"] == "about compute-optimal"
    assert standing(1e6, 1e9)["verdict"].startswith("past compute-optimal")
    assert parse_amount("6.8M", "--params") == 6.8e6 and parse_amount("2B", "x") == 2e9
    assert parse_amount("1.5e21", "x") == 1.5e21 and parse_amount("300k", "x") == 3e5
    for bad in ("-1", "ten", "0", "1e999"):
        with pytest.raises(WorkbenchError, match="--flops must be a positive number"):
            parse_amount(bad, "--flops")


def test_where_a_preset_and_a_run_stand(tmp_path, byte_tok):
    from workbench.model import Transformer, preset
    from workbench.model.checkpoint import save_checkpoint

    cfg = preset("tiny", vocab_size=byte_tok.vocab_size)
    p = preset_standing("tiny", str(byte_tok.name))
    assert p["params"] == cfg.stats()["params"] and p["tokens"] == 20 * p["params"]
    assert preset_standing("tiny", str(byte_tok.name), tokens=1e6)["tokens_per_param"] == 1e6 / p["params"]
    # a run directory: the checkpoint's trainer.json, else the run's metrics.jsonl
    run = tmp_path / "run"
    ckpt = save_checkpoint(Transformer(cfg), run / "checkpoints" / "step-000010", tokenizer=byte_tok,
                           extra={"stage": "pretrain", "step": 10})
    (run / "checkpoints" / "latest").write_text("step-000010\n")
    (ckpt / "trainer.json").write_text(json.dumps({"step": 10, "tokens_total": 12_800}))
    s = run_standing(str(run))
    assert (s["params"], s["tokens"], s["step"], s["stage"]) == (p["params"], 12_800, 10, "pretrain")
    (ckpt / "trainer.json").unlink()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"event": "train", "step": i, "tokens": 1000}) + "\n"
                                               for i in (1, 2, 3)) + '{"event": "end"}\n{"cut off')
    assert run_standing(str(run))["tokens"] == 3000
    (run / "metrics.jsonl").unlink()
    with pytest.raises(WorkbenchError, match="no record of the tokens"):
        run_standing(str(ckpt))
