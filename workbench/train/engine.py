"""The one training loop every stage runs through: optimiser, schedule, checkpoints, resume, metrics.

    from workbench.train.engine import train, Control
    result = train(cfg, "runs/sft", control=Control(), callbacks=[print])   # cfg from train.config
    result = train(None, "runs/sft", resume=True)                           # continue where it stopped

A stage (workbench/train/{pretrain,sft,reward,dpo,ppo}.py, a `Stage` of stage.py) supplies models, data
and a loss; the engine does everything else, the same way for all of them:
- AdamW (fused on CUDA), no weight decay on norms, biases and embeddings; warmup then cosine or
  linear decay to `lr * min_lr_ratio`; gradient accumulation; clipping (the norm is logged either way);
  bf16 autocast on CUDA only (fp32 on CPU, where bf16 matmuls are hundreds of times slower).
- A non-finite loss or gradient skips the step (nothing is applied), is counted and logged; after
  `max_nonfinite` in a row the run stops with a message.
- Between steps it checks a `Control` (stop, pause/resume), which the CLI's Ctrl-C and the TUI use.
- After every step one flat dict (event, step, stage, loss, lr, grad_norm, tokens, tokens_per_s,
  elapsed, peak_mem_mb, + the stage's keys) goes to RUN/metrics.jsonl (flushed), TensorBoard when installed,
  and every callback. Evaluations, checkpoints, skipped steps and the end are events too.
- RUN/ holds config.yaml (resolved), metrics.jsonl, lineage.json, train.log and checkpoints/.
  Resume restores model, optimiser, RNG states, the data position and the stage's own state, so
  a run stopped at step k and resumed gives the same losses as one that never stopped.
- While a run trains, RUN/.lock names its process (lock.py): a second trainer is refused.
- Under torchrun (`workbench train STAGE --nproc N`) every rank runs this loop; distributed.py holds
  what differs (data shards, DDP, all-reduced losses and metrics, rank 0 alone writing the run).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.train import checkpoint as ckpt_io
from workbench.train import distributed
from workbench.train.config import TrainConfig, dump_yaml, load_config
from workbench.train.lock import LOCK, RunLock
from workbench.train.memory import is_out_of_memory, out_of_memory_message, peak_memory_mb
from workbench.train.run_files import RunFiles, clean, parent_info
from workbench.train.stage import Stage  # the stages import it from here too

STAGE_CLASSES = {"pretrain": "workbench.train.pretrain:PretrainStage", "sft": "workbench.train.sft:SFTStage",
                 "rm": "workbench.train.reward:RewardStage", "dpo": "workbench.train.dpo:DPOStage",
                 "ppo": "workbench.train.ppo:PPOStage"}
# Settings that decide what the checkpoints contain: a resume may not change them.
FIXED_ON_RESUME = ("stage", "init_from", "reward_model", "preset", "model", "tokenizer", "score_logprob")
SUMMED = distributed.SUMMED  # per-micro-batch metrics that add up over accumulation (others average)


class Control:
    """Thread-safe stop / pause / resume, checked by the engine between steps."""

    def __init__(self):
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused run wakes up to stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self) -> None:
        while not self._running.wait(0.2):
            pass


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for optimizer step `step` (1-based): linear warmup, then decay to the floor."""
    if cfg.warmup_steps and step <= cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    if cfg.schedule == "constant" or cfg.max_steps <= cfg.warmup_steps:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / (cfg.max_steps - cfg.warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WorkbenchError(f"device {name!r} asked for, but torch sees no CUDA GPU (use device=cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise WorkbenchError(f"device {name!r} is not a valid torch device") from None


class Engine:
    def __init__(self, cfg: TrainConfig | None, run_dir: str | Path, *, resume: bool = False,
                 control: Control | None = None, callbacks=(), overrides=None):
        self.run_dir = Path(run_dir).expanduser()
        self.control = control or Control()
        self.callbacks = list(callbacks)
        self.resume_from = None
        self.world = distributed.from_env()  # one process unless started by torchrun
        if resume:
            saved = self.run_dir / "config.yaml"
            if not saved.is_file():
                raise WorkbenchError(f"{self.run_dir}: not a run directory (no config.yaml); nothing to resume")
            from workbench.io import read_yaml

            base = read_yaml(saved)
            stage = base.get("stage") if isinstance(base, dict) else None
            if stage not in STAGE_CLASSES:
                raise WorkbenchError(f"{saved}: no valid stage recorded ({stage!r})")
            if cfg is not None and cfg.stage != stage:
                raise WorkbenchError(f"{self.run_dir} is a {stage} run, not {cfg.stage}")
            cfg = load_config(stage, None, overrides, base=base)
            fixed = [k for k in FIXED_ON_RESUME if getattr(cfg, k, None) != base.get(k, getattr(cfg, k, None))]
            if fixed:
                raise WorkbenchError(f"--resume cannot change {', '.join(fixed)}: they define the model and its "
                                     f"parents, which the checkpoints were made with; start a new run instead")
            self.resume_from = ckpt_io.latest_checkpoint(self.run_dir)
        elif cfg is None:
            raise WorkbenchError("no config given")
        elif self.world.main:  # other ranks may already see rank 0's first files
            self._check_new_dir()
        self.resume = resume
        self.cfg = cfg
        self.device = resolve_device(distributed.device_name(cfg.device, self.world))
        self.amp_dtype = torch.bfloat16 if (self.device.type == "cuda" and cfg.dtype != "fp32") else None
        if self.device.type != "cuda" and cfg.dtype == "bf16":
            raise WorkbenchError("dtype=bf16 is for CUDA; on CPU bf16 matmuls are hundreds of times slower "
                                 "than fp32 (use dtype=auto or fp32)")
        self.step = 0
        self.position = 0
        self.nonfinite_in_row = 0
        self.nonfinite_total = 0
        self.updates = 0  # optimizer steps applied in this session
        self.tokens_total = 0
        self.elapsed_before = 0.0
        self.stage: Stage | None = None
        self.optimizer = None
        self._params: list[torch.nn.Parameter] = []
        self.replicated: list[torch.nn.Module] = []  # the trainable modules under DDP or FSDP (several ranks)
        self.sharded = self.world.active and bool(getattr(cfg, "fsdp", False))  # FSDP2 instead of DDP
        self.files = RunFiles(self.run_dir) if self.world.main else distributed.NoFiles()
        distributed.init(self.world, self.device)

    # ------------------------------------------------------------------ helpers for stages
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def log(self, message: str) -> None:
        self.files.log(message)
        self._send({"event": "log", "step": self.step, "stage": self.cfg.stage, "message": message}, sinks=False)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def apply(self, loss_ok: bool = True) -> tuple[float, bool]:
        """Clip, check and take the optimizer step. (grad_norm, applied). Skips non-finite steps."""
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(self._params, clip))
        applied = loss_ok and math.isfinite(norm)
        if applied:
            self.optimizer.step()
            self.updates += 1
        self.optimizer.zero_grad(set_to_none=True)
        return norm, applied

    def update(self, loss: torch.Tensor) -> tuple[float, bool]:
        """backward + apply, for stages that take several optimizer steps per engine step (PPO)."""
        ok = bool(torch.isfinite(loss.detach()))
        if self.world.active:  # a step is skipped on every rank or on none (DDP's all-reduce needs them all)
            ok = distributed.all_finite(ok, self.device)
        if ok:
            self.backward(loss)
        return self.apply(ok)

    def accumulate(self, micro: list) -> dict:
        """The default step: loss on each micro-batch, gradients averaged, one optimizer step."""
        if self.world.active:
            return distributed.accumulate(self, micro)
        sums: dict = defaultdict(float)
        ok, total = True, 0.0
        for batch in micro:
            with self.autocast():
                loss, metrics = self.stage.loss(batch)
            finite = bool(torch.isfinite(loss.detach()))
            ok &= finite
            if finite:
                self.backward(loss / len(micro))
            total += float(loss.detach())
            for k, v in metrics.items():
                sums[k] += float(v)
        out = {k: (int(v) if k in SUMMED else v / len(micro)) for k, v in sums.items()}
        out["grad_norm"], out["applied"] = self.apply(ok)
        out["loss"] = total / len(micro)
        return out

    def _check_new_dir(self) -> None:
        d = self.run_dir
        if d.exists() and (not d.is_dir() or any(p.name != LOCK for p in d.iterdir())):
            raise WorkbenchError(f"{d} already exists and is not empty; choose a new --out "
                                 f"or continue it with --resume {d}")

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        """Train under the run directory's lock (lock.py), taken before anything in it changes and
        released however the run ends: a second trainer on the same directory is refused.
        Under torchrun only rank 0 touches the run directory (and holds its lock)."""
        if not self.world.main:
            result = self._run()
        else:
            with RunLock(self.run_dir) as lock:
                if lock.took_over is not None:
                    self.log(f"took over the stale run lock of {lock.took_over.describe()}: {lock.took_over.reason}")
                if not self.resume:
                    self._check_new_dir()  # again: another trainer may have filled it before we got the lock
                result = self._run()
        distributed.leave(self.world)
        return result

    def _setup(self) -> str:
        """Seeds, the stage's models and data, DDP/FSDP, the optimizer and the run directory (a resume's
        state restored). Returns the run's start time (lineage.json)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        import random

        random.seed(cfg.seed)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        module, _, cls = STAGE_CLASSES[cfg.stage].partition(":")
        if self.resume_from is None:  # pin parents: a run dir's `latest` may move on before a resume
            for key in ("init_from", "reward_model"):
                if getattr(cfg, key, None):
                    setattr(cfg, key, str(ckpt_io.resolve_checkpoint(getattr(cfg, key)).resolve()))
        self.stage = getattr(importlib.import_module(module), cls)(cfg, self)
        self.stage.setup()
        self.replicated = distributed.parallelize(self.stage, self.world, self.sharded, self.resume_from)
        self._params = [p for m in self.stage.trainable().values() for p in m.parameters() if p.requires_grad]
        self.optimizer = self._make_optimizer()
        started = self._open_run_dir()
        self._send({"event": "start", "step": self.step, "stage": cfg.stage, "max_steps": cfg.max_steps,
                    "device": str(self.device), "dtype": "bf16" if self.amp_dtype else "fp32",
                    "params": sum(p.numel() for p in self._params), "run_dir": str(self.run_dir),
                    "world_size": self.world.size, "fsdp": self.sharded,
                    "resumed_from": str(self.resume_from) if self.resume_from else None})
        return started

    def _run(self) -> dict:
        cfg = self.cfg
        started = self._setup()
        status, error = "finished", None
        last_saved = self.step if self.resume_from else None
        t_start = time.perf_counter()
        data = self.stage.batches(self.position)
        if self.world.active:
            data = distributed.shard(data, self.world)
        committed = self.position  # the data position after the last completed step
        updates_committed = self.updates  # optimizer updates up to the last completed step
        stop_all = False  # several ranks: a stop asked of any, agreed at the end of each step
        lost = False
        try:
            while self.step < cfg.max_steps:
                if not self.world.active:
                    self.control.wait_while_paused()
                if stop_all if self.world.active else self.control.stopped:
                    status = "stopped"
                    break
                t0 = time.perf_counter()
                micro = []
                for _ in range(cfg.grad_accum):
                    self.position, batch = next(data)
                    micro.append(batch)
                for m in self.stage.trainable().values():
                    m.train()
                lr = lr_at(cfg, self.step + 1)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                metrics = self.stage.train_step(micro)
                if self.world.active:
                    metrics, stop_all = distributed.reduce_step(metrics, self.control.stopped, self.device, self.world)
                self.step += 1
                committed = self.position
                updates_committed = self.updates
                dt = time.perf_counter() - t0
                applied = bool(metrics.pop("applied", True))
                self.tokens_total += int(metrics.get("tokens", 0))
                record = {"event": "train", "step": self.step, "stage": cfg.stage, "loss": metrics.pop("loss"),
                          "lr": lr, "grad_norm": metrics.pop("grad_norm", None),
                          "tokens": int(metrics.pop("tokens", 0)), "step_time": dt,
                          "elapsed": self.elapsed_before + time.perf_counter() - t_start, **metrics}
                record["tokens_per_s"] = record["tokens"] / dt if dt > 0 else 0.0
                record["peak_mem_mb"] = peak_memory_mb(self.device)
                if not applied:
                    self.nonfinite_in_row += 1
                    self.nonfinite_total += 1
                    record.update(skipped=1, nonfinite_total=self.nonfinite_total)
                    self.log(f"step {self.step}: non-finite loss or gradient; step skipped "
                             f"({self.nonfinite_in_row} in a row, {self.nonfinite_total} in all)")
                else:
                    self.nonfinite_in_row = 0
                self._send(record)
                if self.nonfinite_in_row >= cfg.max_nonfinite:
                    raise WorkbenchError(
                        f"stopped at step {self.step}: {self.nonfinite_in_row} steps in a row had a non-finite loss "
                        f"or gradient (the run diverged). Lower lr (now {cfg.lr}), raise warmup_steps or set "
                        f"grad_clip; the last good checkpoint is in {self.run_dir / ckpt_io.CHECKPOINTS}")
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                    self._evaluate()
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.max_steps:
                    self._save(t_start)
                    last_saved = self.step
            if status == "finished":
                self._evaluate()
        except WorkbenchError as e:
            status, error = "failed", str(e)
        except KeyboardInterrupt:  # mid-step: the unfinished step's batches were never trained on
            self.position = committed
            if self.updates == updates_committed:
                status = "stopped"
            else:  # the step had already changed the weights (PPO updates several times per step):
                status, error = "interrupted", (  # saving them as step k would not resume exactly
                    f"interrupted inside step {self.step + 1} after it had updated the weights; "
                    f"not saved, the last checkpoint stands")
        except BaseException as e:
            failure = distributed.job_failure(self.world, e)  # a collective timed out, or a peer went away
            if failure is not None:
                status, (error, lost) = "failed", failure
            elif not is_out_of_memory(e):
                status, error = "crashed", f"{type(e).__name__}: {e}"
                self._finish(started, status, error, None, t_start)
                raise
            else:
                status, error = "failed", out_of_memory_message(cfg, self.device, e, self.step + 1)
        final = None
        try:
            if status in ("finished", "stopped") and self.step > 0:
                final = self._save(t_start) if last_saved != self.step else ckpt_io.latest_checkpoint(self.run_dir)
        except BaseException as e:  # the final checkpoint failed (disk full...): the lineage must say so
            self._finish(started, "crashed", f"{type(e).__name__}: {e}", None, t_start)
            raise
        self._finish(started, status, error, final, t_start)
        if status == "failed":
            raise (distributed.PeerLost if lost else WorkbenchError)(error)
        return {"status": status, "step": self.step, "checkpoint": str(final) if final else None,
                "run_dir": str(self.run_dir)}

    # ------------------------------------------------------------------ internals
    def _make_optimizer(self):
        decay, no_decay, seen = [], [], set()
        for m in self.stage.trainable().values():
            for name, p in m.named_parameters():
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                (no_decay if p.dim() < 2 or "embed" in name else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        kwargs = {"fused": True} if self.device.type == "cuda" else {}
        return torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(self.cfg.beta1, self.cfg.beta2),
                                 eps=self.cfg.eps, **kwargs)

    def _open_run_dir(self) -> str:
        resumed_empty = self.resume_from is None and (self.run_dir / "lineage.json").exists()
        self.files.open()
        if self.resume_from is not None:
            trainer, state = ckpt_io.load_state(self.resume_from)
            if not self.sharded:
                self.stage.load_model(self.resume_from)
            if self.world.active or any(isinstance(k, str) for k in state["optimizer"].get("state", {})):
                distributed.load_optimizer(self, state["optimizer"], self.sharded)  # either format (FSDP's by name)
            else:
                self.optimizer.load_state_dict(state["optimizer"])
            ckpt_io.restore_rng(state["rng"])
            self.step, self.position = int(trainer["step"]), int(trainer["position"])
            saved_world = int(trainer.get("world_size", 1))
            self.nonfinite_total = int(trainer.get("nonfinite_total", 0))
            self.tokens_total = int(trainer.get("tokens_total", 0))
            self.elapsed_before = float(trainer.get("elapsed", 0.0))
            self.stage.load_state_dict(trainer.get("stage_state", {}))
            self.files.truncate_metrics(self.step)
            self.log(f"resumed from {self.resume_from} at step {self.step}")
            if saved_world != self.world.size:
                self.log(f"saved by {saved_world} process(es), resumed by {self.world.size}: the data continues at "
                         f"the same position; each step now takes batch_size x grad_accum x {self.world.size}")
        elif resumed_empty:
            self.log("resumed a run that had no checkpoint yet: starting again from step 0")
            self.files.truncate_metrics(0)
        started = self.files.start_lineage(self.cfg.stage, lambda: parent_info(self.cfg.init_from),
                                           self.stage.lineage(), self.step)
        self.files.open_metrics(dump_yaml(self.cfg), self.cfg.tensorboard)
        return started

    def _evaluate(self) -> None:
        was = {name: m.training for name, m in self.stage.trainable().items()}
        for m in self.stage.trainable().values():
            m.eval()
        t0 = time.perf_counter()
        with torch.no_grad(), self.autocast(), distributed.global_batch(self.cfg, self.world):
            metrics = self.stage.evaluate()
        for name, m in self.stage.trainable().items():
            m.train(was[name])
        if metrics:
            self._send({"event": "eval", "step": self.step, "stage": self.cfg.stage,
                        "eval_time": time.perf_counter() - t0, **metrics})

    def _save(self, t_start: float) -> Path | None:
        write_model, optimizer = self.stage.write_model, self.optimizer
        if self.sharded:  # every rank takes part in gathering the whole weights and AdamW state on rank 0
            write_model, optimizer = distributed.gathered(self.stage, self.optimizer)
        if not self.world.main:  # rank 0 writes the checkpoint; the others wait for it in the next collective
            return None
        trainer = {"position": self.position, "stage": self.cfg.stage, "nonfinite_total": self.nonfinite_total,
                   "world_size": self.world.size,
                   "tokens_total": self.tokens_total,
                   "elapsed": self.elapsed_before + time.perf_counter() - t_start,
                   "stage_state": self.stage.state_dict()}
        path = ckpt_io.save(self.run_dir, self.step, write_model, optimizer, trainer,
                            keep=self.cfg.keep_checkpoints)
        self._send({"event": "checkpoint", "step": self.step, "stage": self.cfg.stage, "path": str(path)})
        return path

    def _finish(self, started, status, error, final, t_start) -> None:
        self.files.finish_lineage(self.cfg.stage, started, status, self.step, error, final)
        self._send({"event": "end", "step": self.step, "stage": self.cfg.stage, "status": status,
                    "error": error, "checkpoint": str(final) if final else None,
                    "elapsed": self.elapsed_before + time.perf_counter() - t_start})
        self.files.close(status, error)

    def _send(self, record: dict, sinks: bool = True) -> None:
        if not self.world.main:  # the records are all-reduced: rank 0 reports them for the job
            return
        record = {k: clean(v) for k, v in record.items()}
        if sinks:
            self.files.write(record)
        for cb in self.callbacks:
            cb(record)


def train(cfg: TrainConfig | None, run_dir: str | Path, *, resume: bool = False, control: Control | None = None,
          callbacks=(), overrides=None) -> dict:
    """Run (or, with resume=True, continue) one stage. Returns {status, step, checkpoint, run_dir}."""
    return Engine(cfg, run_dir, resume=resume, control=control, callbacks=callbacks, overrides=overrides).run()
