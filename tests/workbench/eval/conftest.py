"""Models with known behaviour for the eval tests, built in milliseconds.

- `byte_tok`: a byte-level tokenizer (the 256 single bytes, no merges) + the ChatML specials: 260 ids.
- `scripted(chain, then)`: a 1-layer model whose blocks output zero, so its next token depends on
  the current token only, through a table we write: after the chat generation prompt it says the
  tokens of `chain` one by one, then `then` (default <|im_end|>), which also follows every token not
  in the chain; each with logit `logit` against 0 for the rest. Its answers and their log-probs are known.
- `random_lm`: a randomly initialised 1-layer model (distinct hidden states for distinct texts).
- `reward_checkpoint(backbone, w, b)`: a reward-model checkpoint with a given linear head.
"""

import base64
import json

import pytest
import torch

from workbench.chat import render_chat


@pytest.fixture(scope="session")
def byte_tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "bytes.tiktoken"
    path.write_text("".join(f"{base64.b64encode(bytes([b])).decode()} {b}\n" for b in range(256)))
    from workbench.tokenizer import load_tokenizer

    return load_tokenizer(path)


def gen_prompt_last(tok) -> int:
    """The last token of every chat prompt (the `\\n` after `<|im_start|>assistant`)."""
    return render_chat(tok, [{"role": "user", "content": "x"}], add_generation_prompt=True).input_ids[-1]


def _save(model, tok, dest, extra=None):
    from workbench.model.checkpoint import save_checkpoint

    return save_checkpoint(model, dest, tokenizer=tok, extra=extra or {"stage": "test"})


@pytest.fixture
def scripted(tmp_path, byte_tok):
    def make(chain: list[int], then: int | None = None, logit: float = 40.0, name: str = "scripted"):
        from workbench.model import Transformer, preset

        tok = byte_tok
        states = [gen_prompt_last(tok)] + chain
        assert len(set(states)) == len(states), "a token may appear once in the chain"
        cfg = preset("tiny", vocab_size=tok.vocab_size, n_layers=1, tie_embeddings=False)
        model = Transformer(cfg, init=False)
        d = cfg.d_model
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
            model.norm.weight.fill_(1.0)
            E, W = model.embed_tokens.weight, model.lm_head.weight
            E[:, 0] = 1.0  # every token not in the chain: state 0
            then = tok.im_end_id if then is None else then
            W[then, 0] = logit / d ** 0.5
            nxt = chain + [then]
            for k, t in enumerate(states):
                E[t] = 0.0
                E[t, k + 1] = 1.0  # final norm: a one-hot row becomes sqrt(d) times itself
                W[nxt[k], k + 1] = logit / d ** 0.5
        return _save(model, tok, tmp_path / f"{name}-{logit}")
    return make


@pytest.fixture
def random_lm(tmp_path, byte_tok):
    from workbench.model import Transformer, preset

    cfg = preset("tiny", vocab_size=byte_tok.vocab_size, n_layers=1, init_std=0.2)
    model = Transformer(cfg, init=False)
    model.init_weights(seed=0)
    return _save(model, byte_tok, tmp_path / "random")


def reward_checkpoint(backbone_dir, head_w, head_b, dest, stats=None):
    from workbench.io import atomic_dir
    from workbench.model.checkpoint import load_checkpoint, load_checkpoint_tokenizer
    from workbench.train.models import ScalarHeadModel, write_scalar_model

    backbone, _ = load_checkpoint(backbone_dir)
    rm = ScalarHeadModel(backbone, zero_init=True)
    with torch.no_grad():
        rm.head.weight.copy_(torch.as_tensor(head_w, dtype=torch.float32)[None])
        rm.head.bias.fill_(float(head_b))
    extra = {"kind": "reward", "stage": "rm", "step": 0, **({"reward_stats": stats} if stats else {})}
    with atomic_dir(dest) as tmp:
        write_scalar_model(rm, tmp, load_checkpoint_tokenizer(backbone_dir), extra=extra)
    return dest


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
