"""`workbench model info|init`, `generate`, `export` from the command line."""

import json

from typer.testing import CliRunner

from workbench.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_info_prints_sizes_and_the_kv_cache_ratio():
    r = run("model", "info", "--preset", "tiny")
    assert r.exit_code == 0, r.output
    assert "DeepSeekMoE" in r.output and "0.312x" in r.output and "6.77M total" in r.output
    j = json.loads(run("model", "info", "--preset", "small", "--json", "--set", "kv_lora_rank=64").output)
    assert j["config"]["kv_lora_rank"] == 64 and j["kv_cache_values_per_token"] == (64 + 16) * 8


def test_init_generate_export_chain(tmp_path):
    ck, hf = tmp_path / "ck", tmp_path / "hf"
    r = run("model", "init", "--preset", "tiny", "--out", ck, "--set", "n_layers=2", "--seed", "3")
    assert r.exit_code == 0, r.output
    meta = json.loads((ck / "config.json").read_text())
    assert meta["model"]["n_layers"] == 2 and meta["tokenizer"]["name"] == "cl100k_base"
    assert json.loads(run("model", "info", ck, "--json").output)["params"] > 0

    a = run("generate", ck, "--prompt", "The town of", "-n", "8", "--seed", "1")
    b = run("generate", ck, "--prompt", "The town of", "-n", "8", "--seed", "1")
    assert a.exit_code == 0 and a.output == b.output and len(a.output.strip()) > 0
    r = run("generate", ck, "--prompt", "hi", "--prompt", "Where is Ashford?", "--chat", "--greedy", "-n", "4")
    assert r.exit_code == 0 and r.output.count("--- ") == 2

    r = run("export", ck, "--to", "hf", hf)
    assert r.exit_code == 0, r.output
    assert json.loads((hf / "config.json").read_text())["model_type"] == "deepseek_v2"
    assert run("export", ck, "--to", "hf", hf).exit_code == 1  # exists: needs --force


def test_cli_errors_are_one_line_and_exit_1(tmp_path):
    cases = [
        (("model", "info"), "give a checkpoint directory or --preset"),
        (("model", "info", "--preset", "huge"), "unknown model preset 'huge'"),
        (("model", "init", "--out", tmp_path / "x", "--set", "n_layer=3"), "did you mean 'n_layers'"),
        (("model", "init", "--out", tmp_path / "y", "--set", "oops"), "--set expects key=value"),
        (("generate", tmp_path / "missing", "--prompt", "x"), "no such checkpoint"),
        (("export", tmp_path / "missing", "--to", "onnx", tmp_path / "o"), "--to must be 'hf'"),
    ]
    for args, message in cases:
        r = run(*args)
        assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, (args, r.output)
    assert not (tmp_path / "x").exists()


def test_vocab_size_follows_the_tokenizer_not_set(tmp_path):
    r = run("model", "init", "--out", tmp_path / "v", "--set", "vocab_size=10")
    assert r.exit_code == 1 and "follows the tokenizer" in r.output and not (tmp_path / "v").exists()


def test_info_estimates_training_memory_by_part():
    from workbench.model.config import preset
    from workbench.model.info import training_memory

    cfg = preset("small", vocab_size=8192)
    n = cfg.stats()["params"]
    m = training_memory(cfg, 8, 512)
    assert (m["weights"], m["gradients"], m["optimizer"]) == (4 * n, 4 * n, 8 * n)  # fp32 + AdamW's two moments
    assert m["total"] == m["weights"] + m["gradients"] + m["optimizer"] + m["activations"]
    twice = training_memory(cfg, 16, 512)["activations"]
    assert 1.5 * m["activations"] < twice < 2 * m["activations"]  # per token, but the logits only one chunk at a time
    big = training_memory(cfg, 32, 512)["activations"]  # where the blocks, not the logits chunk, dominate
    assert training_memory(cfg, 32, 512, gradient_checkpointing=True)["activations"] < big / 3
    assert training_memory(cfg, 8, 512, bf16=True)["activations"] < m["activations"]
    lora = training_memory(cfg, 8, 512, trainable=n // 100)
    assert lora["optimizer"] == 8 * (n // 100) and lora["weights"] == m["weights"]

    j = json.loads(run("model", "info", "--preset", "small", "--batch", "4", "--seq-len", "256",
                       "--gradient-checkpointing", "--json").output)
    assert j["training_memory"]["batch"] == 4 and j["training_memory"]["gradient_checkpointing"] is True
    r = run("model", "info", "--preset", "tiny", "--batch", "0")
    assert r.exit_code == 1 and "--batch must be at least 1" in r.output
    assert "training memory" in run("model", "info", "--preset", "tiny").output
