"""Writing outputs so a crash never leaves something half-written that looks complete.

    with atomic_dir("runs/tiny", force=True) as tmp:   # build everything inside tmp ...
        save_file(tensors, tmp / "model.safetensors")  # ... it becomes runs/tiny only on success
    atomic_write_text("tok.tiktoken", text)            # a file: temporary sibling, fsync, rename

The directory is built as a hidden sibling and renamed into place at the end. On an exception the
temporary directory is removed and whatever was at the destination before is untouched. Replacing
an existing directory needs force=True (it is moved aside, the new one renamed in, then the old one
deleted), so the destination is at every moment either the old complete directory or the new one.

Everything in the finished directory gets the usual permissions (the umask's), whatever wrote it:
mkdtemp's folders are private, and so are the files safetensors' `save_file` writes (0600), which
would leave checkpoints, adapters and quality models unreadable to the other users of a machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from workbench.errors import WorkbenchError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_permissions(folder: Path) -> None:
    """Widen what is stricter than the umask's default (0600 from save_file, 0700 from mkdtemp) to it;
    nothing is narrowed, links are not followed (os.walk and lstat never leave the folder)."""
    mask = _umask()
    for root, dirs, files in os.walk(folder):
        for name, usual in [*((d, 0o777 & ~mask) for d in dirs), *((f, 0o666 & ~mask) for f in files)]:
            p = os.path.join(root, name)
            st = os.lstat(p)
            if (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) and st.st_mode & usual != usual:
                os.chmod(p, stat.S_IMODE(st.st_mode) | usual)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False, protect=()):
    """`protect`: paths (the inputs) that must not be inside `path`, since replacing it would delete them."""
    path = Path(path).expanduser()
    if not str(path) or path.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise WorkbenchError(f"refusing to write into {str(path) or '(empty path)'!r}: it is the current directory "
                             f"or one of its parents; name a new directory")
    target = path.resolve()
    for p in protect:
        p = Path(p).expanduser().resolve()
        if p == target or target in p.parents:
            raise WorkbenchError(f"{path} contains the input {p}; writing there would delete it — choose another output")
    if path.exists() and not path.is_dir():
        raise WorkbenchError(f"{path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise WorkbenchError(f"{path} already exists and is not empty (use --force to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    except OSError as e:
        raise WorkbenchError(f"cannot write to {path.parent}: {e.strerror or e}") from None
    try:
        yield tmp
        _usual_permissions(tmp)
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write a file via a temporary sibling, fsync and rename: readers see the old or the new file."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`atomic_write_text` for bytes (an image, a binary file), with the usual permissions (umask)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_yaml(path: str | os.PathLike):
    """A YAML file through yaml.safe_load (an empty file is {}); unreadable or invalid ones say why."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkbenchError(f"config file {path} not found") from None
    except OSError as e:
        raise WorkbenchError(f"cannot read config {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise WorkbenchError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise WorkbenchError(f"{path}: not valid YAML: {e}") from None
    return {} if data is None else data
