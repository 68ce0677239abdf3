"""SFT: the loss is the mean NLL of the assistant's tokens (checked by hand), never NaN, falls on the
sample chats; packed rows give each conversation exactly the loss it has alone."""

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import SAMPLE
from tests.workbench.train.conftest import losses, run
from workbench.chat import IGNORE
from workbench.train.config import load_config
from workbench.train.engine import Engine
from workbench.train.sft import SFTStage, pack_rows

CHAT = SAMPLE / "chat.jsonl"


@pytest.fixture(scope="module")
def stage(tmp_path_factory, pretrained):
    """An SFT stage set up on the pretrained tiny model (no run: the tests call its pieces)."""
    cfg = load_config("sft", None, [f"init_from={pretrained}", f"data={CHAT}", "max_len=96", "batch_size=4",
                                    "device=cpu", "tensorboard=false"])
    s = SFTStage(cfg, Engine(cfg, tmp_path_factory.mktemp("sft") / "run"))
    s.setup()
    s.model.train()
    return s


def token_nll(model, input_ids, labels, **kw):
    """-log p(labels[t+1]) at every position t whose next label is trained (0 elsewhere), from the logits."""
    with torch.no_grad():
        logits = model(input_ids, **kw).logits[..., :model.cfg.vocab_size].float()  # padded vocab never predicted
    logp = F.log_softmax(logits[:, :-1], dim=-1)
    target = labels[:, 1:]
    mask = target != IGNORE
    nll = -logp.gather(-1, target.clamp(min=0)[..., None])[..., 0]
    return torch.where(mask, nll, torch.zeros_like(nll)), mask


def test_the_loss_is_the_mean_nll_over_trainable_positions(stage):
    _, batch = next(stage.batches(0))
    assert batch["input_ids"].shape[0] == 4 and (batch["labels"] == IGNORE).any()
    loss, metrics = stage.loss(batch)
    nll, mask = token_nll(stage.model, batch["input_ids"], batch["labels"], attention_mask=batch["attention_mask"])
    expected = nll.sum() / mask.sum()
    assert metrics["trained_tokens"] == int(mask.sum())
    assert metrics["lm_loss"] == pytest.approx(float(expected), abs=1e-5)
    with torch.no_grad():
        aux = stage.model(batch["input_ids"], attention_mask=batch["attention_mask"]).aux_loss
    assert float(loss.detach()) == pytest.approx(float(expected + aux), abs=1e-5)  # + the MoE balance term
    assert metrics["tokens"] == int(batch["attention_mask"].sum()) and metrics["samples"] == 4


def test_a_batch_with_nothing_trainable_has_loss_zero_not_nan(stage):
    _, batch = next(stage.batches(0))
    batch = dict(batch, labels=torch.full_like(batch["labels"], IGNORE))
    loss, metrics = stage.loss(batch)
    assert metrics["lm_loss"] == 0.0 and metrics["trained_tokens"] == 0
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in stage.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    stage.model.zero_grad(set_to_none=True)


def test_sft_loss_falls_on_the_sample_chats(tmp_path, pretrained):
    _, records = run("sft", tmp_path / "run", f"init_from={pretrained}", f"data={CHAT}", "max_len=128",
                     "batch_size=8", "max_steps=25", "eval_every=0", "save_every=0", "tensorboard=false")
    train = losses(records)
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5 - 0.5, train


def test_packing_keeps_conversations_apart(stage):
    items = stage.train_items[:3]
    width = sum(len(r) for r in items) + 5  # and a padding tail
    packed = pack_rows([items], width, stage.tokenizer.pad_id)
    nll, mask = token_nll(stage.model, packed["input_ids"], packed["labels"],
                          attention_mask=packed["attention_mask"], position_ids=packed["position_ids"])
    at = 0
    for r in items:
        ids, labels = torch.tensor([r.input_ids]), torch.tensor([r.labels])
        alone, alone_mask = token_nll(stage.model, ids, labels)
        n = len(r)
        # position t predicts t + 1; the segment's predictions are t = at .. at + n - 2
        assert torch.equal(mask[0, at:at + n - 1], alone_mask[0])
        assert float(nll[0, at:at + n - 1].sum()) == pytest.approx(float(alone.sum()), rel=1e-5, abs=1e-4)
        assert not mask[0, at + n - 1]  # nothing predicts the next conversation's first token
        at += n
    assert not mask[0, at - 1:].any()  # nor the padding
    # the stage's loss on the packed row = the token-weighted mean of the conversations' losses
    _, metrics = stage.loss(packed)
    assert metrics["lm_loss"] == pytest.approx(float(nll.sum() / mask.sum()), abs=1e-5)
    assert metrics["samples"] == 3 and metrics["tokens"] == width - 5


def test_packed_batches_take_whole_conversations_in_order_and_no_label_crosses_a_boundary(tmp_path, pretrained):
    cfg = load_config("sft", None, [f"init_from={pretrained}", f"data={CHAT}", "max_len=96", "batch_size=3",
                                    "packing=true", "device=cpu"])
    s = SFTStage(cfg, Engine(cfg, tmp_path / "run"))
    s.setup()
    stream = s.loader.stream(0)
    batches = s.batches(0)
    for _ in range(3):
        position, b = next(batches)
        for row in range(3):
            ids, labels, pos = b["input_ids"][row], b["labels"][row], b["position_ids"][row]
            real = int(b["attention_mask"][row].sum())
            assert b["attention_mask"][row, :real].all() and not b["attention_mask"][row, real:].any()
            starts = [int(i) for i in torch.nonzero(pos[:real] == 0)[:, 0]] + [real]
            assert len(starts) >= 2
            for a, z in zip(starts, starts[1:]):
                p, item = next(stream)  # the loader's order: nothing skipped, nothing repeated
                assert ids[a:z].tolist() == item.input_ids and labels[a:z].tolist() == item.labels
                assert labels[a] == IGNORE and ids[a] == s.tokenizer.im_start_id  # a boundary is never a target
                assert pos[a:z].tolist() == list(range(z - a))
            assert (labels[real:] == IGNORE).all()
        assert position == p  # resuming at `position` starts with the next conversation
