"""The files of a run directory besides its checkpoints: train.log, metrics.jsonl (+ TensorBoard),
lineage.json and config.yaml. The engine (engine.py) owns one `RunFiles` per run.

    RUN/config.yaml     the resolved config (what --resume reads)
    RUN/metrics.jsonl   one JSON object per event, flushed as written; NaN/inf written as null
    RUN/lineage.json    parent checkpoint (path, sha256), inputs, started/ended, resumes, status
    RUN/train.log       data summary, resumes, skipped steps, errors
    RUN/tensorboard/    when the tensorboard package is installed
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

from workbench.io import atomic_write_text


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def clean(value):
    """JSON-safe: tensors as numbers, NaN and infinities as null."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def parent_info(init_from: str | None) -> dict | None:
    """Path, weights sha256, stage, kind and step of a parent checkpoint (for lineage.json)."""
    if not init_from:
        return None
    from workbench.model.checkpoint import file_sha256, read_meta, weights_file
    from workbench.train.checkpoint import resolve_checkpoint

    path = resolve_checkpoint(init_from)
    extra = read_meta(path).get("extra", {})
    return {"path": str(path.resolve()), "sha256": file_sha256(weights_file(path)),
            "stage": extra.get("stage"), "kind": extra.get("kind", "policy"), "step": extra.get("step")}


class RunFiles:
    def __init__(self, path: Path):
        self.path = path
        self._log = self._jsonl = self._tb = None
        self._early: list[str] = []  # lines logged during setup, before train.log is opened

    def log(self, message: str) -> None:
        line = f"{now()} {message}\n"
        if self._log is None:
            self._early.append(line)
        else:
            self._log.write(line)
            self._log.flush()

    def open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._log = open(self.path / "train.log", "a", encoding="utf-8")
        self._log.writelines(self._early)  # the stage's setup messages (data counts, truncation)
        self._log.flush()  # someone following the run (the TUI's Monitor) sees them now
        self._early = []

    def open_metrics(self, config_yaml: str, tensorboard: bool) -> None:
        """Write config.yaml and open the metrics sinks. Called once a resume has loaded its checkpoint
        (so a failed resume leaves the saved config as it was) and after any truncate_metrics (which
        replaces the file, so an earlier handle would write to the old one)."""
        atomic_write_text(self.path / "config.yaml", config_yaml)
        self._jsonl = open(self.path / "metrics.jsonl", "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path / "tensorboard"))
            except ImportError:  # the tensorboard package is optional
                self._tb = None

    def write(self, record: dict) -> None:
        """A cleaned record to metrics.jsonl (flushed) and, for train/eval events, TensorBoard."""
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        if self._tb is not None and record.get("event") in ("train", "eval"):
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self._tb.add_scalar(f"{record['event']}/{k}" if "/" not in k else k, v, record["step"])

    def truncate_metrics(self, step: int) -> None:
        """Drop records past `step` (written after the checkpoint a resume starts from) so curves stay clean."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        atomic_write_text(path, "".join(f"{line}\n" for line in keep))

    def _lineage(self) -> dict:
        try:
            return json.loads((self.path / "lineage.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def start_lineage(self, stage: str, parent, inputs: dict, step: int) -> str:
        """Create lineage.json (or rebuild an unreadable one), or record a resume in it; returns the
        run's start time. `parent()` describes the parent checkpoint (hashing it is only done here)."""
        lineage = self._lineage()
        if not lineage:
            lineage = {"stage": stage, "run_dir": str(self.path.resolve()), "parent": parent(), "inputs": inputs,
                       "started": now(), "resumes": []}
        else:
            lineage.setdefault("resumes", []).append({"at": now(), "from_step": step})
        lineage.update(status="running", ended=None)
        atomic_write_text(self.path / "lineage.json", json.dumps(lineage, indent=2) + "\n")
        return lineage["started"]

    def finish_lineage(self, stage: str, started: str, status: str, step: int, error, final) -> None:
        lineage = self._lineage() or {"stage": stage, "started": started}
        lineage.update(status=status, ended=now(), step=step, error=error,
                       final_checkpoint=str(Path(final).resolve()) if final else lineage.get("final_checkpoint"))
        atomic_write_text(self.path / "lineage.json", json.dumps(lineage, indent=2) + "\n")

    def close(self, status: str, error) -> None:
        if status in ("failed", "crashed", "interrupted") and self._log is not None:
            self._log.write(f"{now()} run {status}: {error}\n")  # the caller reports it to the user
        for f in (self._jsonl, self._log):
            if f is not None:
                f.close()
        if self._tb is not None:
            self._tb.close()
        self._jsonl = self._log = self._tb = None
