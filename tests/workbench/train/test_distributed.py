"""Data-parallel training (workbench/train/distributed.py): 2 gloo processes on the CPU, launched by torchrun.

    .venv/bin/pytest -q tests/workbench/train/test_distributed.py

Each 2-process job is compared with one process running the same global batch:
- SFT: 2 ranks x batch 4 give the per-step losses of 1 rank x batch 8 (same rows, same order), and a
  run saved at world size 2 resumes at world size 1 and at 2 (there with FSDP2: `fsdp=true`) with
  those losses and the data position; FSDP's gathered checkpoint resumes at world size 1;
- DPO (with LoRA: only adapters train) logs the metrics of the 1-process run (all-reduced, weighted);
- PPO: each rank samples its own rollouts; the logged rollout metrics are the means of both ranks';
- a rank that raises ends the job within seconds, with that rank's error; a stuck one, at the timeout.
The models are the tiny dense preset with 2 layers (a dense model: MoE balance terms are per rank).
"""

import json
import shutil
import signal
import time

import pytest
import torch

from tests.conftest import SAMPLE
from tests.workbench.train.conftest import run

COMMON = ("tensorboard=false", "eval_every=0", "save_every=0", "device=cpu", "schedule=constant", "warmup_steps=0")
NOISE = {"step_time", "elapsed", "tokens_per_s", "peak_mem_mb", "eval_time", "time/rollout", "time/rollout_share"}


def _tiny_dense(dest, small_tok, **overrides):
    """A freshly initialised tiny-dense model (2 layers) with the small tokenizer, saved at `dest`."""
    from workbench.model.checkpoint import save_checkpoint
    from workbench.model.config import preset
    from workbench.model.transformer import Transformer
    from workbench.tokenizer import load_tokenizer

    tok = load_tokenizer(str(small_tok))
    model = Transformer(preset("tiny-dense", vocab_size=tok.vocab_size, n_layers=2, **overrides), init=False)
    model.init_weights(0)
    return save_checkpoint(model, dest, tokenizer=tok, extra={"stage": "init"})


@pytest.fixture(scope="module")
def dense(tmp_path_factory, small_tok):
    return _tiny_dense(tmp_path_factory.mktemp("dense") / "init", small_tok)


@pytest.fixture(autouse=True)
def _threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread per rank on these 2 shared cores


def launch(*argv, entry=("-m", "workbench")):
    """Run `workbench ARGV` in 2 processes through torchrun, from this process (as --nproc does).
    torchrun installs its own signal handlers: they are put back afterwards."""
    from workbench.train.distributed import launch as _launch

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    try:
        _launch(list(map(str, argv)), 2, entry=entry)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def records(run_dir, event="train"):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r["event"] == event}


def trainer(run_dir, step):
    return json.loads((run_dir / "checkpoints" / f"step-{step:06d}" / "trainer.json").read_text())


def same(a: dict, b: dict, rel=1e-5, abs=1e-7, skip=()):
    """Every metric of one record equals the other's (timings aside)."""
    assert set(a) - NOISE == set(b) - NOISE
    for k in set(a) - NOISE - {"event", "stage", "step", *skip}:
        assert a[k] == pytest.approx(b[k], rel=rel, abs=abs), k


def test_sft_two_ranks_match_one_and_resume_at_either_world_size_and_under_fsdp(tmp_path, dense):
    """1 x batch 8 = 2 x batch 4 (DDP, through the CLI) for steps 1-2; that run resumed at world size 1
    (batch 8) and at 2 with FSDP2 gives steps 3-4; the FSDP run's gathered checkpoint resumes at 1: 5-6."""
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.train.engine import train

    args = (*COMMON, f"data={SAMPLE / 'chat.jsonl'}", "max_len=96", "lr=3e-3")
    _, ref = run("sft", tmp_path / "one", f"init_from={dense}", *args, "batch_size=8", "max_steps=6")
    ref = {r["step"]: r for r in ref if r["event"] == "train"}

    two = tmp_path / "two"  # through the CLI: `workbench train sft ... --nproc 2`
    result = CliRunner().invoke(app, ["train", "sft", "--from", str(dense), "--out", str(two), "--nproc", "2",
                                      *args, "batch_size=4", "max_steps=2"])
    assert result.exit_code == 0, result.output
    assert "torchrun --standalone --nproc-per-node 2" in result.output
    got = records(two)
    assert sorted(got) == [1, 2]
    for step in (1, 2):
        same(got[step], ref[step])
        assert got[step]["samples"] == 8
    assert got[1]["loss"] != got[2]["loss"]
    assert trainer(two, 2)["position"] == 16 and trainer(two, 2)["world_size"] == 2  # 2 steps x 2 ranks x 4

    def resume_here(run_dir, *overrides):
        out = []
        result = train(None, run_dir, resume=True, overrides=list(overrides), callbacks=[out.append])
        assert result["status"] == "finished"
        return {r["step"]: r for r in out if r["event"] == "train"}

    at_one = tmp_path / "at_one"  # world size 2 -> 1: batch 8 keeps the global batch
    shutil.copytree(two, at_one)
    resumed = resume_here(at_one, "batch_size=8", "max_steps=4")
    for step in (3, 4):
        same(resumed[step], ref[step])
    assert trainer(at_one, 4)["position"] == 32 and trainer(at_one, 4)["world_size"] == 1
    assert "saved by 2 process(es), resumed by 1" in (at_one / "train.log").read_text()

    at_two = tmp_path / "at_two"  # world size 2 -> 2, now with the model sharded (FSDP2)
    shutil.copytree(two, at_two)
    launch("train", "sft", "--resume", at_two, "max_steps=4", "fsdp=true")
    assert records(at_two, "start")[2]["fsdp"] is True and records(at_two, "start")[2]["world_size"] == 2
    got = records(at_two)
    assert sorted(got) == [1, 2, 3, 4]
    for step in (3, 4):
        same(got[step], ref[step])
    assert trainer(at_two, 4)["position"] == 32
    lineage = json.loads((at_two / "lineage.json").read_text())
    assert lineage["status"] == "finished" and len(lineage["resumes"]) == 1
    # the gathered checkpoint holds the whole weights: those the unsharded run reached
    sharded, plain = (load_file(str(d / "checkpoints" / "step-000004" / "model.safetensors")) for d in (at_two, at_one))
    assert sharded.keys() == plain.keys()
    assert all(torch.allclose(sharded[k], plain[k], atol=1e-6) for k in plain)

    resumed = resume_here(at_two, "max_steps=6", "batch_size=8")  # FSDP's AdamW state (by name) at world size 1
    for step in (5, 6):
        same(resumed[step], ref[step])


def _pairs(tmp_path, n: int):
    """The first `n` sample preference pairs, as a file."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join((SAMPLE / "preference.jsonl").read_text().splitlines(keepends=True)[:n]))
    return data


def _one_and_two(stage: str, tmp_path, args):
    """`stage` in 1 process x 8 pairs (ONE) and in 2 ranks x 4 (TWO): (TWO's train records by step,
    ONE's by step, ONE's records)."""
    _, ref = run(stage, tmp_path / "one", *args, "batch_size=8")
    launch("train", stage, "--out", tmp_path / "two", *args, "batch_size=4")
    return records(tmp_path / "two"), {r["step"]: r for r in ref if r["event"] == "train"}, ref


def test_dpo_with_lora_logs_the_all_reduced_metrics(tmp_path, dense):
    data = _pairs(tmp_path, 80)  # 80 pairs: the reference precompute stays short
    args = (*COMMON, f"data={data}", "max_len=96", "lr=1e-2", "lora={rank: 4}",
            "eval_batches=2", f"init_from={dense}", "max_steps=3")
    got, ref_train, ref = _one_and_two("dpo", tmp_path, args)
    assert sorted(got) == [1, 2, 3]
    # DPO's rewards are beta x (log pi - log ref), differences of sums of ~100 log-probs (~ -140): their float
    # noise is ~1e-7 x 140 x beta absolute (the 2 ranks precompute the reference in batches of 4, not 8).
    # At step 1 every margin is 0 up to that noise, so rewards/accuracies (margin > 0) is a coin toss there.
    for step in (1, 2, 3):
        same(got[step], ref_train[step], abs=1e-5, skip={"rewards/accuracies"} if step == 1 else ())
    assert got[1]["loss"] == pytest.approx(0.6931472, abs=1e-5)  # log 2: the policy is its reference at step 1
    assert got[3]["rewards/margins"] != 0
    same(records(tmp_path / "two", "eval")[3], next(r for r in ref if r["event"] == "eval"), abs=1e-5)
    from workbench.model.checkpoint import read_meta

    assert read_meta(tmp_path / "two" / "checkpoints" / "step-000003").get("lora")  # adapters alone, as 1 process


def test_a_logprob_reward_model_trains_its_untied_output_head_on_two_ranks(tmp_path, small_tok):
    """`score_logprob` reads the LM head, so under DDP the head trains (a plain RM's is frozen there):
    2 ranks x 4 pairs follow 1 rank x 8, step by step, and both checkpoints hold the same trained head."""
    from workbench.model.checkpoint import load_checkpoint

    untied = _tiny_dense(tmp_path / "untied", small_tok, tie_embeddings=False)
    data = _pairs(tmp_path, 64)
    args = (*COMMON, f"data={data}", "max_len=96", "lr=1e-2", "score_logprob=sum", "val_data=" + str(data),
            "eval_batches=1", f"init_from={untied}", "max_steps=3")
    got, ref_train, _ = _one_and_two("rm", tmp_path, args)
    assert sorted(got) == [1, 2, 3]
    for step in (1, 2, 3):
        same(got[step], ref_train[step], rel=1e-4, abs=1e-5)
    heads = [load_checkpoint(tmp_path / name / "checkpoints" / "step-000003")[0].lm_head.weight for name in ("one", "two")]
    assert not torch.equal(heads[0], load_checkpoint(untied)[0].lm_head.weight)  # trained
    assert torch.allclose(heads[0], heads[1], atol=1e-5)


def _reward_model(dense, dest):
    """A reward checkpoint: the dense model's backbone with a seeded random head."""
    from workbench.io import atomic_dir
    from workbench.model.checkpoint import load_checkpoint, load_checkpoint_tokenizer
    from workbench.train.models import ScalarHeadModel, write_scalar_model

    backbone, _ = load_checkpoint(dense)
    with atomic_dir(dest) as tmp:
        write_scalar_model(ScalarHeadModel(backbone, seed=3), tmp, load_checkpoint_tokenizer(dense),
                           extra={"kind": "reward", "stage": "rm", "step": 0})
    return dest


def test_ppo_ranks_sample_their_own_rollouts_and_log_their_means(tmp_path, dense):
    from workbench.model.generate import SamplingConfig
    from workbench.train.config import load_config
    from workbench.train.engine import Engine
    from workbench.train.ppo import PPOStage, rollout_seed

    rm = _reward_model(dense, tmp_path / "rm")
    args = (*COMMON, f"data={SAMPLE / 'prompts.jsonl'}", f"init_from={dense}", f"reward_model={rm}",
            "normalize_reward=false", "batch_size=4", "num_minibatches=2", "ppo_epochs=1", "max_new_tokens=6",
            "max_steps=2", "lr=1e-3", "adaptive_kl=true", "kl_target=0.5", "kl_horizon=20")
    launch("train", "ppo", "--out", tmp_path / "two", *args)
    got = records(tmp_path / "two")
    assert sorted(got) == [1, 2] and got[1]["samples"] == 8

    # Each rank's first rollout, redone in this process: rank r sampled prompts [4r, 4r + 4) with its seed.
    cfg = load_config("ppo", None, list(args))
    stage = PPOStage(cfg, Engine(cfg, tmp_path / "probe"))
    stage.setup()
    batches = stage.batches(0)
    rolls = []
    for rank in (0, 1):
        _, prompts = next(batches)
        sampling = SamplingConfig(max_new_tokens=6, temperature=cfg.temperature, top_k=0, top_p=1.0,
                                  seed=rollout_seed(cfg.seed, 0, rank))
        with torch.no_grad():
            rolls.append(stage._rollout(prompts, sampling))
    scores = [float(r["score"].mean()) for r in rolls]
    assert scores[0] != scores[1]  # different prompts and seeds: different rollouts
    assert got[1]["objective/scores"] == pytest.approx(sum(scores) / 2, rel=1e-4)
    lengths = [float(r["rmask"].float().sum(1).mean()) for r in rolls]
    assert got[1]["response_length"] == pytest.approx(sum(lengths) / 2, rel=1e-5)
    assert got[1]["tokens"] == sum(int(r["attn"].sum()) for r in rolls)
    assert got[1]["objective/kl"] == 0.0  # both ranks' policies are the reference before the first update
    assert got[2]["kl_coef"] != got[1]["kl_coef"]  # the controller moved, from the ranks' joint KL


WORKER = '''
import os, sys, time
from workbench.train.sft import SFTStage

loss = SFTStage.loss

def failing(self, batch):
    if self.engine.world.rank == 1 and self.engine.step == 1:
        open(os.environ["FAIL_STAMP"], "w").write(str(time.time()))
        if os.environ.get("STALL"):
            time.sleep(120)  # alive but stuck: rank 0 waits in its next collective
        raise ValueError("planted failure on rank 1")
    return loss(self, batch)

SFTStage.loss = failing
from workbench.cli import main
main()
'''


def test_a_failing_rank_ends_the_job_quickly_with_its_error(tmp_path, dense, monkeypatch):
    from workbench.errors import WorkbenchError

    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    monkeypatch.setenv("FAIL_STAMP", str(tmp_path / "failed_at"))
    out = tmp_path / "run"
    with pytest.raises(WorkbenchError, match=r"rank 1 of 2 failed: ValueError: planted failure on rank 1"):
        launch("train", "sft", "--from", dense, "--out", out, *COMMON, f"data={SAMPLE / 'chat.jsonl'}",
               "max_len=64", "batch_size=2", "max_steps=50", entry=(str(worker),))
    ended = time.time()
    assert ended - float((tmp_path / "failed_at").read_text()) < 15  # not a collective timeout (600 s)
    lineage = json.loads((out / "lineage.json").read_text())  # rank 0 recorded how the job ended
    assert lineage["status"] == "failed" and "rank 0 of 2" in lineage["error"]
    assert sorted(records(out)) == [1]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL will not put 2 ranks on one)")
def test_cuda_two_gpus_nccl_ddp_and_fsdp_follow_one_gpu(tmp_path, dense):
    """bf16 on 2 GPUs (NCCL), DDP and FSDP2, against 1 GPU with the same global batch: bf16 roundings differ
    with the batch shapes, so the losses agree to ~1e-2 rather than 1e-5."""
    args = ("tensorboard=false", "eval_every=0", "save_every=0", "schedule=constant", "warmup_steps=0",
            "device=cuda", f"data={SAMPLE / 'chat.jsonl'}", "max_len=96", "lr=3e-3", "max_steps=4")
    _, ref = run("sft", tmp_path / "one", f"init_from={dense}", *args, "batch_size=8")
    ref = [r["loss"] for r in ref if r["event"] == "train"]
    for name, extra in (("ddp", ()), ("fsdp", ("fsdp=true",))):
        launch("train", "sft", "--from", dense, "--out", tmp_path / name, *args, *extra, "batch_size=4")
        start = records(tmp_path / name, "start")[0]
        assert start["world_size"] == 2 and start["device"] == "cuda:0" and start["dtype"] == "bf16"
        assert start["fsdp"] is (name == "fsdp")
        got = [r["loss"] for r in records(tmp_path / name).values()]
        assert got == pytest.approx(ref, rel=1e-2), name


@pytest.mark.slow  # ~17 s: a launch, then the 8 s timeout
def test_a_stuck_rank_ends_the_job_at_the_collective_timeout(tmp_path, dense, monkeypatch):
    from workbench.errors import WorkbenchError

    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    monkeypatch.setenv("FAIL_STAMP", str(tmp_path / "stalled_at"))
    monkeypatch.setenv("STALL", "1")
    monkeypatch.setenv("WORKBENCH_DIST_TIMEOUT", "8")  # above the ranks' start-up skew on a busy machine
    with pytest.raises(WorkbenchError, match=r"rank 0 of 2 failed: a collective waited 8 s for the other ranks"):
        launch("train", "sft", "--from", dense, "--out", tmp_path / "run", *COMMON, f"data={SAMPLE / 'chat.jsonl'}",
               "max_len=64", "batch_size=2", "max_steps=50", entry=(str(worker),))
    assert time.time() - float((tmp_path / "stalled_at").read_text()) < 30  # not the 120 s stall


def test_shard_gives_each_rank_its_slice_of_the_global_batch():
    from workbench.train.data import ExampleLoader
    from workbench.train.distributed import World, shard

    items = list(range(10))
    one = ExampleLoader(items, 4, seed=1, collate=list)
    two = [shard(ExampleLoader(items, 2, seed=1, collate=list).batches(6), World(r, 2)) for r in (0, 1)]
    ref = one.batches(6)
    for _ in range(4):  # across an epoch boundary too
        position, batch = next(ref)
        (p0, b0), (p1, b1) = next(two[0]), next(two[1])
        assert b0 + b1 == batch and p0 == p1 == position


def test_whitening_across_ranks_is_whitening_of_all_their_positions():
    """Two 'ranks' (threads) whiten their halves with a summing all_sum: the result is the whole's whitening."""
    import threading

    from workbench.train.rlhf import whiten

    gen = torch.Generator().manual_seed(0)
    x, mask = torch.randn(6, 5, generator=gen) * 3 + 1, torch.rand(6, 5, generator=gen) > 0.3
    barrier, slots = threading.Barrier(2), [None, None]

    def all_sum_for(rank):
        def all_sum(t):
            slots[rank] = t
            barrier.wait()
            total = slots[0] + slots[1]
            barrier.wait()
            return total
        return all_sum

    out = [None, None]

    def work(rank):
        rows = slice(0, 2) if rank == 0 else slice(2, 6)  # unequal shares
        out[rank] = whiten(x[rows], mask[rows], all_sum=all_sum_for(rank))

    threads = [threading.Thread(target=work, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.allclose(torch.cat(out), whiten(x, mask), atol=1e-6)
    assert torch.allclose(whiten(x, mask, shift_mean=False, all_sum=lambda t: t), whiten(x, mask, shift_mean=False),
                          atol=1e-6)
