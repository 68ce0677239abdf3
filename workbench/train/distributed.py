"""Data-parallel training over torch.distributed (gloo on CPU, NCCL on CUDA), launched by torchrun.

    workbench train sft --from runs/pretrain --out runs/sft --nproc 2      # the CLI starts torchrun
    torchrun --standalone --nproc-per-node 2 -m workbench train sft --from runs/pretrain --out runs/sft
    # two machines, the same paths on both (data, parents, the run directory on a shared disk):
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 --rdzv-endpoint HOST:29500 -m workbench train ...

Every process (rank) runs the engine's one loop (engine.py); this module holds what differs when
there are several of them. With one process none of it runs: no process group, the same code path.

- Data: the stages' batch order is unchanged; each optimizer step's micro-batch `i` of the job is the
  `world` consecutive `batch_size` batches one process would draw, rank r training on the r-th
  (`shard`). So 2 ranks x batch B see exactly the rows, in the same order, of 1 rank x batch 2B (the
  loaders hand out items one after another: two batches of B are one batch of 2B). Every rank
  collates the others' batches too (cheap next to a forward) and knows the job's position: the
  position saved is global, so a run resumes at any world size, replaying and skipping nothing.
- Gradients: every trainable module is replicated in place (`replicate`, DDP's composable form:
  the stage's own module keeps its methods and state-dict keys, so checkpoints stay the plain
  safetensors that load at any world size). Micro-batches before the last of a step skip the
  all-reduce (no_sync). With `fsdp: true` (pretrain, sft) the model is sharded instead (FSDP2,
  `fully_shard` per block): a save gathers the whole weights and AdamW state on rank 0, so the
  checkpoint is the same plain one, and any world size, with or without FSDP, resumes it.
- The loss is the one a single process would compute on the global micro-batch: a stage names the
  metric its loss is a mean over (`Stage.loss_weight`, e.g. SFT's trained tokens); the counts are
  all-reduced and each rank's loss is scaled by its share, so the DDP average is the global mean
  (numerators and denominators reduced, not means of means). MoE balance terms are per rank.
- Metrics are all-reduced before they reach metrics.jsonl: counts (tokens, samples) summed, the rest
  averaged (weighted as the loss is). Only rank 0 writes logs, metrics and checkpoints. Evaluation
  runs the batches of batch_size x world on every rank (`global_batch`): its figures are those of
  one process, whatever the world size.
- Stop (Ctrl-C, which torchrun forwards to every rank) is agreed at the end of each step, so all ranks
  stop after the same one. A non-finite loss on any rank skips the step on all of them.
- Failure: a rank that fails writes its error for torchrun (TORCHELASTIC_ERROR_FILE) and exits; torchrun
  stops the others (SIGTERM, turned into a clean `PeerLost` here) and the launcher names the rank and
  its error. Collectives time out after WORKBENCH_DIST_TIMEOUT seconds (default 600: long enough for
  rank 0 to write a big checkpoint while the others wait), so a lost rank never hangs the job forever.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import timedelta

import torch

from workbench.errors import WorkbenchError

TIMEOUT_S = 600
GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")  # gloo: a rank has gone
SUMMED = ("tokens", "samples")  # counts: summed over micro-batches (engine.SUMMED) and over ranks


class PeerLost(WorkbenchError):
    """This rank stopped because another one failed or was stopped: its error is the one to read."""


class Terminated(BaseException):
    """SIGTERM from torchrun (another rank failed): unwinds the loop so the run records how it ended."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def from_env() -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK); one process otherwise."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return World()
        return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise WorkbenchError("WORLD_SIZE is set but RANK/LOCAL_RANK are not valid: start the processes with "
                             "torchrun (or `workbench train STAGE --nproc N`)") from None


def under_launcher() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def device_name(name: str, world: World) -> str:
    """Each rank of a CUDA job gets its own GPU: cuda:LOCAL_RANK."""
    if not world.active or name == "cpu":
        return name
    if name.startswith("cuda:"):
        raise WorkbenchError(f"device={name}: under torchrun each process uses the GPU of its local rank; "
                             f"use device=cuda or auto (CUDA_VISIBLE_DEVICES chooses the GPUs)")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return f"cuda:{world.local_rank}"
    return name


def init(world: World, device: torch.device) -> None:
    """Join the process group (once per process): NCCL on CUDA, gloo on CPU, with collective timeouts."""
    import torch.distributed as dist

    if not world.active or dist.is_initialized():
        return
    timeout = timedelta(seconds=_timeout_s())
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    try:
        signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread: keep the default (the process just ends)
        pass


def leave(world: World) -> None:
    """Leave the process group after a finished run (a failed one just exits: its peers may be gone)."""
    import torch.distributed as dist

    if world.active and dist.is_initialized():
        dist.destroy_process_group()


class NoFiles:
    """What a rank other than 0 has instead of the run's files (run_files.RunFiles): nothing is written."""

    def log(self, message: str) -> None: ...
    def open(self) -> None: ...
    def open_metrics(self, config_yaml: str, tensorboard: bool) -> None: ...
    def write(self, record: dict) -> None: ...
    def truncate_metrics(self, step: int) -> None: ...
    def start_lineage(self, stage, parent, inputs, step) -> str: return ""
    def finish_lineage(self, stage, started, status, step, error, final) -> None: ...
    def close(self, status, error) -> None: ...


def _terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the unwinding itself must not be cut short
    raise Terminated()


def lost_peer(error: BaseException) -> bool:
    """Did this rank fail because another one went away (torchrun's SIGTERM, a broken collective)?"""
    import torch.distributed as dist

    if isinstance(error, (Terminated, getattr(dist, "DistError", Terminated))):
        return True
    # gloo reports a peer that went away as a plain RuntimeError from its transport
    return isinstance(error, RuntimeError) and any(s in str(error) for s in GONE)


def job_failure(world: World, error: BaseException) -> tuple[str, bool] | None:
    """What `error` means for a job of several ranks: (message, lost), lost when another rank's error
    is the one to read (the run raises PeerLost); None for an error not about the other ranks."""
    if not world.active:
        return None
    if timed_out(error):  # this rank's own finding: its error to report
        return timeout_message(error), False
    if lost_peer(error):
        return peer_lost_message(world, error), True
    return None


def timed_out(error: BaseException) -> bool:
    """A collective gave up waiting (the process group's timeout): some rank is stuck, not gone."""
    return isinstance(error, RuntimeError) and any(s in str(error) for s in ("Timed out", "timed out"))


def timeout_message(error: BaseException) -> str:
    return (f"a collective waited {_timeout_s():g} s for the other ranks (WORKBENCH_DIST_TIMEOUT): one of them "
            f"is stuck or far slower ({_first_line(error)})")


def _timeout_s() -> float:
    return float(os.environ.get("WORKBENCH_DIST_TIMEOUT", TIMEOUT_S))


def peer_lost_message(world: World, error: BaseException) -> str:
    why = "stopped by torchrun" if isinstance(error, Terminated) else f"a collective failed ({_first_line(error)})"
    return (f"rank {world.rank} of {world.size}: {why}: another process of the job failed or was stopped; "
            f"its error is the one to read")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# ---------------------------------------------------------------------- data and gradients
def shard(batches, world: World):
    """This rank's batch of each group of `world` consecutive ones, with the position after the group."""
    it = iter(batches)
    for group in zip(*[it] * world.size):
        yield group[-1][0], group[world.rank][1]


def replicate_modules(modules) -> list:
    """DDP on each module with something to train, in place (hooks on its forward)."""
    from torch.distributed._composable.replicate import replicate

    out = []
    for m in modules:
        backbone = getattr(m, "backbone", None)  # a scalar-head model reads hidden states, not the LM head
        reads_head = getattr(m, "logprob", None) is not None  # (unless its score has the response's log-prob):
        if backbone is not None and not reads_head and not backbone.cfg.tie_embeddings:  # DDP would wait for its gradient
            backbone.lm_head.weight.requires_grad_(False)
        if any(p.requires_grad for p in m.parameters()) and m not in out:
            replicate(m)
            out.append(m)
    return out


def shard_modules(modules) -> list:
    """FSDP2 on each module, in place: every transformer block its own unit, then the whole (the
    embeddings, final norm and tied head). Gradients are reduce-scattered, AdamW state is sharded."""
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import fully_shard

    out = []
    for m in modules:
        for block in getattr(m, "layers", ()):
            fully_shard(block)
        fully_shard(m)
        out.append(m)
    return out


def parallelize(stage, world: World, sharded: bool, resume_from) -> list:
    """The stage's trainable modules put under FSDP2 (sharded) or DDP (several ranks), in place: the
    modules wrapped, [] with one process. A sharded run being resumed loads its weights here."""
    if sharded:
        if resume_from is not None:  # whole tensors go in before they are sharded
            stage.load_model(resume_from)
        return shard_modules(stage.trainable().values())
    if world.active:
        return replicate_modules(stage.trainable().values())
    return []


def full_state(module, optimizer) -> tuple[dict, dict]:
    """A sharded module's whole weights and AdamW state, gathered on rank 0's CPU (empty dicts on the
    others): a collective every rank calls. The optimizer state is keyed by parameter name."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def write_full(stage, weights: dict, dest) -> None:
    """Rank 0: the stage's checkpoint files from gathered weights, through a plain copy of its model
    (built on the meta device, so only the gathered tensors take memory): the files any world size
    and `workbench generate` load."""
    from workbench.model.transformer import Transformer

    live = stage.model
    with torch.device("meta"):
        plain = Transformer(live.cfg, init=False)
    plain.load_state_dict(weights, assign=True)
    if live.cfg.tie_embeddings:
        plain.lm_head.weight = plain.embed_tokens.weight
    stage.model = plain
    try:
        stage.write_model(dest)
    finally:
        stage.model = live


def gathered(stage, optimizer) -> tuple:
    """A sharded run's save: (write_model for checkpoint.save, the AdamW state), from the whole weights
    and optimizer state gathered on rank 0 (a collective every rank calls)."""
    (module,) = stage.trainable().values()
    weights, state = full_state(module, optimizer)
    return (lambda dest: write_full(stage, weights, dest)), state


def _param_names(engine) -> list[str]:
    """The name of each optimizer parameter, in the optimizer's order (the same under DDP and FSDP)."""
    names = {id(p): n for m in engine.stage.trainable().values() for n, p in m.named_parameters()}
    return [names[id(p)] for g in engine.optimizer.param_groups for p in g["params"]]


def load_optimizer(engine, saved: dict, sharded: bool) -> None:
    """Resume AdamW from either format: by position (one process, DDP) or by name (FSDP's gathered
    state), into a plain or a sharded optimizer. Both are the whole state: any world size loads them."""
    by_name = any(isinstance(k, str) for k in saved.get("state", {})) or any(
        isinstance(p, str) for g in saved.get("param_groups", []) for p in g["params"])
    names = _param_names(engine)
    if sharded:
        if not by_name:
            saved = {"state": {names[i]: v for i, v in saved["state"].items()},
                     "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in saved["param_groups"]]}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        (module,) = engine.stage.trainable().values()
        set_optimizer_state_dict(module, engine.optimizer, saved, options=StateDictOptions(full_state_dict=True))
        return
    if by_name:
        index = {n: i for i, n in enumerate(names)}
        saved = {"state": {index[n]: v for n, v in saved["state"].items()},
                 "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in saved["param_groups"]]}
    engine.optimizer.load_state_dict(saved)


def set_sync(modules, on: bool) -> None:
    """no_sync for the replicated modules: gradients of the next backward stay local when off."""
    for m in modules:
        if hasattr(m, "set_requires_gradient_sync"):
            m.set_requires_gradient_sync(on)
        else:  # older torch: the same switch, before it had a public setter
            from torch.distributed._composable.replicate import replicate

            replicate.state(m)._no_sync = not on


@contextlib.contextmanager
def global_batch(cfg, world: World):
    """Evaluation on several ranks: each evaluates the batches one process with batch_size x world would
    (the same on every rank, so the figures do not depend on the world size; rank 0 reports them)."""
    if not world.active:
        yield
        return
    per_rank = cfg.batch_size
    cfg.batch_size = per_rank * world.size
    try:
        yield
    finally:
        cfg.batch_size = per_rank


def all_sum(values, device) -> torch.Tensor:
    """The sum over ranks of a tensor or a list of numbers (float64: counts stay exact)."""
    import torch.distributed as dist

    t = values.detach().clone() if torch.is_tensor(values) else torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t


def accumulate(engine, micro: list) -> dict:
    """engine.accumulate across ranks: each micro-batch's loss is the mean over the job's whole
    micro-batch (see the module docstring), gradients all-reduced once per step."""
    stage, world, n = engine.stage, engine.world, len(micro)
    key = stage.loss_weight
    sums: dict = {}
    ok, total = True, 0.0
    for i, batch in enumerate(micro):
        set_sync(engine.replicated, i == n - 1)
        with engine.autocast():
            loss, metrics = stage.loss(batch)
        weight = float(metrics[key]) if key else 1.0
        finite = bool(torch.isfinite(loss.detach()))
        job_weight, bad = all_sum([weight, 0.0 if finite else 1.0], engine.device).tolist()
        share = weight * world.size / job_weight if job_weight > 0 else 0.0
        if bad:
            ok = False
        else:
            engine.backward(loss * (share / n))
        total += float(loss.detach()) * share
        for k, v in metrics.items():
            # each rank's value is pre-scaled so that the mean over ranks (reduce_step) is the job's
            add = job_weight if k == key else (float(v) if k in SUMMED else float(v) * share)
            sums[k] = sums.get(k, 0.0) + add
    set_sync(engine.replicated, True)
    out = {k: (int(v) if k in SUMMED else v / n) for k, v in sums.items()}
    out["grad_norm"], out["applied"] = engine.apply(ok)
    out["loss"] = total / n
    return out


def all_finite(ok: bool, device) -> bool:
    """True when the flag holds on every rank (a step is skipped everywhere or nowhere)."""
    return float(all_sum([0.0 if ok else 1.0], device)) == 0.0


def reduce_step(metrics: dict, stop: bool, device, world: World) -> tuple[dict, bool]:
    """One all-reduce per step: counts summed, `applied` on every rank, the rest averaged; and whether
    any rank was asked to stop (so all stop after this same step)."""
    keys = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and k != "applied")
    values = [float(metrics[k]) for k in keys] + [0.0 if metrics.get("applied", True) else 1.0, float(stop)]
    summed = all_sum(values, device).tolist()
    out = dict(metrics)
    for k, v in zip(keys, summed):
        out[k] = int(round(v)) if k in SUMMED else v / world.size
    out["applied"] = summed[-2] == 0.0
    return out, summed[-1] > 0


def gather_rows(rows: list, width: int, device) -> torch.Tensor:
    """Per-batch results [n_b, width] that each rank computed for its own batches (`rows[b]` is the
    tensor, or for another rank's batch its number of rows): the whole table, on every rank."""
    full = torch.cat([r.to(device, torch.float32) if torch.is_tensor(r) else torch.zeros(r, width, device=device)
                      for r in rows]) if rows else torch.zeros(0, width, device=device)
    return all_sum(full, device)  # each row comes from exactly one rank: x + 0 + ... is x exactly


# ---------------------------------------------------------------------- failure and launch
def record_failure(world: World, error: BaseException) -> None:
    """Write this rank's error where torchrun looks for it (TORCHELASTIC_ERROR_FILE), so the launcher
    can name it. A rank that only followed another's failure (PeerLost) writes nothing."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not world.active or not path or isinstance(error, (PeerLost, KeyboardInterrupt)):
        return
    message = str(error) if isinstance(error, WorkbenchError) else f"{type(error).__name__}: {error}"
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"message": message, "timestamp": int(time.time())}, f)
    except OSError:
        pass


def torchrun_args(nproc: int, nnodes: int = 1, node_rank: int = 0, endpoint: str | None = None) -> list[str]:
    """torchrun's options for this job (what `workbench train --nproc` runs, and what it prints)."""
    if nnodes > 1 or endpoint:
        if not endpoint:
            raise WorkbenchError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the machine of node rank 0)")
        if not 0 <= node_rank < nnodes:
            raise WorkbenchError(f"--node-rank must be between 0 and {nnodes - 1}, got {node_rank}")
        where = ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--rdzv-endpoint", endpoint]
    else:
        where = ["--standalone"]
    return [*where, "--nproc-per-node", str(nproc), "--max-restarts", "0"]


def launch(argv: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0, endpoint: str | None = None,
           entry: tuple[str, ...] = ("-m", "workbench")) -> None:
    """Run `python -m workbench ARGV` in `nproc` processes through torch's own launcher (torchrun),
    in this process. Returns when every rank has finished; raises WorkbenchError naming the rank that
    failed and its error (the others were stopped by torchrun)."""
    if nproc < 1 or nnodes < 1:
        raise WorkbenchError(f"--nproc and --nnodes must be at least 1, got {nproc} and {nnodes}")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    parser = get_args_parser()
    options = torchrun_args(nproc, nnodes, node_rank, endpoint)
    if "--shutdown-timeout" in parser._option_string_actions:  # torch >= 2.6; earlier ones wait 30 s
        options += ["--shutdown-timeout", "60"]  # a rank stopping (Ctrl-C) gets time to write its checkpoint
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would give each rank 1 thread; share the cores instead
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    try:
        run(parser.parse_args([*options, *entry, *argv]))
    except ChildFailedError as e:
        raise WorkbenchError(failure_message(e.failures, nproc * nnodes)) from None


def failure_message(failures: dict, world_size: int) -> str:
    """The failure to report: a rank that wrote its own error (not one stopped after it), else the first."""
    def own(item):
        data = getattr(item[1], "error_file_data", None)
        return 0 if data else 1

    rank, f = min(failures.items(), key=lambda item: (own(item), getattr(item[1], "timestamp", 0), item[0]))
    message = getattr(f, "message", "") if getattr(f, "error_file_data", None) else ""
    if message:
        return f"rank {rank} of {world_size} failed: {message}"
    how = f"was killed by {f.signal_name()}" if getattr(f, "exitcode", 0) < 0 else f"exited with code {f.exitcode}"
    return f"rank {rank} of {world_size} {how} (its output is above); torchrun stopped the other processes"
