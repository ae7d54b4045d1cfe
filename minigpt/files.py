"""Files on disk, written whole or not at all, and read back only when they are what they claim.

Every file minigpt writes (checkpoints, metrics, tokenizers, token and corpus caches) goes
through :func:`atomic_write` or :func:`atomic_folder`: the data is written to a staging
file (or folder) beside the target, flushed to the disk (``fsync``), renamed over the
target in one step, and the rename itself is flushed by syncing the folder. A reader sees
the old file or the new one, never half of one, even after a crash or a power cut; a
write that fails leaves no staging file behind, and one left by a process that died is
removed by the next write of the same file. A full disk is said in those words.

What is read back is checked: :func:`check_format` that a file is the kind and version of
file the reader expects, :func:`digest` (a SHA-256 over its content, tensors included) that
not one byte of it changed since it was written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import torch


def _staging_name(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def remove_stale_staging(path: Path) -> list[Path]:
    """Remove staging copies of ``path`` left by processes that died mid-write; returns them."""
    removed = []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp(\d+)")
    if not path.parent.is_dir():
        return removed
    for child in path.parent.iterdir():
        match = pattern.fullmatch(child.name)
        if match and int(match[1]) != os.getpid() and not _pid_alive(int(match[1])):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    child.unlink()
            removed.append(child)
    return removed


def _disk_full(err: OSError, path: Path) -> OSError:
    free = shutil.disk_usage(path.parent).free
    return OSError(
        errno.ENOSPC,
        f"the disk is full: writing {path} failed with {free / 1e6:.1f} MB free there; "
        f"free some space and try again ({path} was left as it was)",
    )


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename inside it) to the disk, where the OS allows it."""
    with contextlib.suppress(OSError):  # e.g. Windows cannot open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes, atomically.

    Example: ``atomic_write("a.bin", lambda f: f.write(b"data"))``. If ``write`` raises,
    ``path`` is left as it was and the staging file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    staging = _staging_name(path)
    try:
        with open(staging, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(staging, path)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise _disk_full(err, path) from err
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
    fsync_folder(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of ``text`` in UTF-8."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Fill a staging folder inside the ``with`` block; it becomes ``folder`` at the end.

    If the block raises, the staging folder is removed and ``folder`` is untouched. If
    another process created ``folder`` first (two processes filling the same cache), theirs
    is kept and this one's copy is dropped: both hold the same content.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(folder)
    staging = _staging_name(folder)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        for child in staging.rglob("*"):
            if child.is_file():
                with open(child, "rb") as f:
                    os.fsync(f.fileno())
        try:
            os.replace(staging, folder)
        except OSError:
            if not folder.is_dir():  # not a lost race: a real failure, say so
                raise
        fsync_folder(folder.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none): enough to say
    what went wrong in a one-line message that names the file."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_format(
    data: object, path: Path, *, kind: str, format: str, version: int, error: type[Exception]
) -> None:
    """Raise ``error`` naming ``path`` unless ``data`` is a dict of this ``format`` and ``version``.

    ``kind`` says what the file should be, in words ("minigpt tokenizer").
    """
    if not isinstance(data, dict) or data.get("format") != format:
        raise error(f"{path} is not a {kind} (no format={format!r} in it)")
    if data.get("version") != version:
        raise error(
            f"{path} has {kind} version {data.get('version')!r}; this minigpt reads {version}"
        )


def digest(obj: object) -> str:
    """SHA-256 of a nest of dicts, lists, tensors, arrays and plain values, in hex.

    Two objects get the same digest exactly when they hold the same values: dict keys in
    sorted order, each tensor's dtype, shape and bytes. It is stored beside what it covers
    and recomputed when the file is read, so a flipped byte anywhere is caught.
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj: object) -> None:
    if isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=str):
            h.update(json.dumps(str(key)).encode())
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, list | tuple):
        h.update(b"[")
        for item in obj:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif hasattr(obj, "tobytes") and hasattr(obj, "dtype"):  # a numpy array
        h.update(f"A{obj.dtype}{obj.shape}".encode())
        h.update(obj.tobytes())
    else:
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())


class FileLock:
    """An advisory lock on a file (POSIX ``flock``), held by one process at a time.

    The operating system releases it when the process ends, however it ends, so a lock
    left by a crash is never stale. ``with FileLock(path):`` waits for it;
    :meth:`acquire` with ``wait=False`` returns ``False`` at once when another process
    holds it. The file records the holder's process id, for the message of whoever waits.
    (Where ``flock`` does not exist, e.g. on Windows, no lock is taken.)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def acquire(self, wait: bool = True) -> bool:
        try:
            import fcntl
        except ImportError:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            return False
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f
        return True

    def holder(self) -> str:
        """The process id written by the current holder ('?' if unknown)."""
        with contextlib.suppress(OSError):
            return self.path.read_text().strip() or "?"
        return "?"

    def release(self) -> None:
        if self._file is not None:
            import fcntl

            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> FileLock:
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()
