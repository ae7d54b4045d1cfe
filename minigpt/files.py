"""Files on disk, written whole or not at all, and read back only when they are what they claim.

Every file minigpt writes (checkpoints, metrics, tokenizers, token and corpus caches) goes
through :func:`atomic_write` or :func:`atomic_folder`: the data is written to a staging
file (or folder) beside the target, flushed to the disk (``fsync``), renamed over the
target in one step, and the rename itself is flushed by syncing the folder. A reader sees
the old file or the new one, never half of one, even after a crash or a power cut; a
write that fails leaves no staging file behind. :func:`check_format` is the one check that
a file read back is the kind and version of file the reader expects.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def _staging_name(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


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
    staging = _staging_name(path)
    try:
        with open(staging, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(staging, path)
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
