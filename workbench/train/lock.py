"""The run lock: one trainer at a time per run directory.

    with RunLock("runs/sft", what="workbench train sft --resume runs/sft") as lock:
        ...                                     # train; RUN/.lock names this process meanwhile
    holder = read_lock("runs/sft")              # LockInfo (pid, host, since, what, alive) or None

The engine takes the lock before it changes anything in the run directory and drops it however the
run ends (finished, stopped, failed, an exception, KeyboardInterrupt). A second trainer — another
`workbench train --resume`, the TUI, or another thread of the same process — is refused with a
WorkbenchError that names the holder.

RUN/.lock is created with O_CREAT|O_EXCL (exactly one creator wins) and holds JSON: pid, host, the
holder's process start time (field 22 of /proc/PID/stat, so a pid reused by another process is not
mistaken for the holder), the boot id (so a pid from before a reboot is not either), since and what.
A lock whose process is gone is stale: the next trainer takes it over (the engine logs that in
train.log). A lock from another host cannot be checked from here: it is refused, with how to
remove it when the user is sure that run has ended.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError

LOCK = ".lock"
TAKEOVER = ".lock.takeover"  # held (O_EXCL) while a stale lock is replaced, so two takers cannot both win
PARTIAL_GRACE_S = 5.0  # an empty or half-written lock younger than this is a creator still writing it


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None when unknown or gone."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    try:  # the command name (field 2) is in parentheses and may itself contain spaces or ")"
        return int(stat.rpartition(")")[2].split()[19])
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    return _read("/proc/sys/kernel/random/boot_id")


def pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is someone else's
        return True
    except OSError:
        return False
    return True


def _what() -> str:
    """What holds the lock, for the refusal message: the command line (+ the thread when not the main one)."""
    argv = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    thread = threading.current_thread()
    if thread is not threading.main_thread():
        argv += f" (thread {thread.name})"
    return argv if len(argv) <= 200 else argv[:197] + "..."


@dataclass
class LockInfo:
    """Who holds a run's lock. `alive`: the holder still runs (or, from another host, cannot be checked)."""

    path: Path
    pid: int | None
    host: str | None
    since: str | None
    what: str | None
    alive: bool
    local: bool  # on this host: `alive` was checked; otherwise it is assumed
    reason: str = ""  # why it is not alive (for the takeover log) or why it cannot be read
    raw: str = ""

    def describe(self) -> str:
        parts = [f"pid {self.pid}" if self.pid is not None else "an unknown process"]
        if self.host:
            parts.append(f"on {self.host}")
        if self.since:
            parts.append(f"since {self.since}")
        text = " ".join(parts)
        return f"{text} ({self.what})" if self.what else text


def read_lock(run_dir: str | Path) -> LockInfo | None:
    """The holder of RUN/.lock and whether it is alive; None when the run is not locked."""
    path = Path(run_dir) / LOCK
    try:
        raw = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        return LockInfo(path, None, None, None, None, alive=True, local=False, reason=f"unreadable: {e}")
    try:
        data = json.loads(raw)
        pid = int(data["pid"])
    except (ValueError, KeyError, TypeError):
        # A creator writes the lock right after creating it; an old one that stayed unreadable was
        # left by a process killed in between, so it blocks nobody.
        young = time.time() - mtime < PARTIAL_GRACE_S
        return LockInfo(path, None, None, None, None, alive=young, local=True, raw=raw,
                        reason="being written" if young else "an unreadable lock file (a trainer killed while creating it)")
    host, since, what = data.get("host"), data.get("since"), data.get("what")
    if host != socket.gethostname():
        return LockInfo(path, pid, host, since, what, alive=True, local=False, raw=raw, reason="on another host")
    alive, reason = True, ""
    if data.get("boot_id") and boot_id() and data["boot_id"] != boot_id():
        alive, reason = False, "the machine has rebooted since"
    elif not pid_exists(pid):
        alive, reason = False, "that process is gone"
    else:
        started, now_started = data.get("proc_start"), process_start(pid)
        if started is not None and now_started is not None and int(started) != now_started:
            alive, reason = False, "that process is gone (its pid now belongs to another process)"
    return LockInfo(path, pid, host, since, what, alive=alive, local=True, reason=reason, raw=raw)


def refusal(run_dir: Path, holder: LockInfo) -> str:
    """The message for a trainer (or a delete) that finds the run locked by a live or uncheckable holder."""
    if not holder.local:
        return (f"{run_dir} is locked by {holder.describe()}; it is {holder.reason or 'not checkable'}, so whether "
                f"that run still trains cannot be checked from here. If you are sure it has ended, delete "
                f"{holder.path} and try again")
    if holder.pid is None:
        return f"{run_dir} is being locked by another trainer right now; try again in a few seconds"
    return f"{run_dir} is being trained by {holder.describe()}; wait for it to end or stop it first"


class RunLock:
    """Holds RUN/.lock while training. `took_over`: the stale holder it replaced, if any (to log)."""

    def __init__(self, run_dir: str | Path, what: str | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.what = what or _what()
        self.token = uuid.uuid4().hex  # tells our lock from a later holder's when releasing
        self.took_over: LockInfo | None = None
        self.held = False
        self._made: list[Path] = []  # folders created for the lock: removed on release if still empty

    def _content(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "proc_start": process_start(os.getpid()),
                           "boot_id": boot_id(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                           "what": self.what, "token": self.token}) + "\n"

    def _mkdirs(self) -> None:
        missing = []
        p = self.run_dir
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WorkbenchError(f"cannot create {self.run_dir}: {e.strerror or e}") from None
        self._made = missing  # deepest first

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise WorkbenchError(f"cannot create the run lock {self.path}: {e.strerror or e}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self._content())
            f.flush()
            os.fsync(f.fileno())
        return True

    def _take_over(self, stale: LockInfo) -> bool:
        """Replace a stale lock with ours, unless another taker got there first. True when it is ours."""
        mutex = self.run_dir / TAKEOVER
        try:
            fd = os.open(mutex, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:  # a taker killed inside these few lines left it behind
                if time.time() - mutex.stat().st_mtime > 10:
                    mutex.unlink(missing_ok=True)
            except OSError:
                pass
            time.sleep(0.05)
            return False
        os.close(fd)
        try:
            again = read_lock(self.run_dir)
            if again is None or again.raw != stale.raw or again.alive:
                return False  # it changed meanwhile: start over and look again
            tmp = self.run_dir / f"{LOCK}.{self.token}.tmp"
            tmp.write_text(self._content(), encoding="utf-8")
            os.replace(tmp, self.path)  # atomic: readers see the stale lock or ours, never no lock
            return True
        finally:
            mutex.unlink(missing_ok=True)

    def acquire(self) -> "RunLock":
        self._mkdirs()
        for _ in range(20):
            if self._create():
                self.held = True
                return self
            holder = read_lock(self.run_dir)
            if holder is None:
                continue  # released between our attempt and the read: try again
            if holder.alive:
                self._cleanup_dirs()
                raise WorkbenchError(refusal(self.run_dir, holder))
            if self._take_over(holder):
                self.took_over, self.held = holder, True
                return self
        self._cleanup_dirs()
        raise WorkbenchError(f"{self.run_dir}: could not take the run lock {self.path} (other trainers keep "
                             f"taking it); try again")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:  # only our own lock: if it was (wrongly) taken over meanwhile, the new holder keeps it
            if json.loads(self.path.read_text(encoding="utf-8")).get("token") == self.token:
                self.path.unlink()
        except (OSError, ValueError):
            pass
        self._cleanup_dirs()

    def _cleanup_dirs(self) -> None:
        for p in self._made:  # a run that never started leaves nothing behind
            try:
                p.rmdir()
            except OSError:
                break
        self._made = []

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
